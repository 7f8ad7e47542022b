"""The ``minibasis`` command: ``train``, ``eval`` and ``info``."""

import argparse
import json
import sys
from pathlib import Path

from . import backend
from . import train as training
from .data import DATASETS
from .models import SPEC_HELP, create_model, info_table
from .optim import SCHEDULES
from .weights import load_weights

DEFAULTS = training.TrainConfig()


def _add_data_args(p):
    p.add_argument("--data", metavar="PATH", help="CIFAR archive (.tar.gz) or extracted folder; default: the cache")
    p.add_argument("--dataset", default=DEFAULTS.dataset, choices=sorted(DATASETS))
    p.add_argument("--download", action="store_true", help="download the official archive into the cache if missing")


def build_parser():
    parser = argparse.ArgumentParser(prog="minibasis", description="Shared filter bases for ConvNets, in NumPy.")
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model on a CIFAR subset", description="Train a model on a CIFAR subset. " + SPEC_HELP)
    t.add_argument("--model", default=DEFAULTS.model, help=f"model spec (default {DEFAULTS.model})")
    _add_data_args(t)
    t.add_argument("--train-size", type=int, default=DEFAULTS.train_size, help="stratified training subset (0: all)")
    t.add_argument("--test-size", type=int, default=DEFAULTS.test_size, help="stratified test subset (0: all)")
    t.add_argument("--epochs", type=int, default=DEFAULTS.epochs)
    t.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size)
    t.add_argument("--lr", type=float, default=DEFAULTS.lr)
    t.add_argument("--momentum", type=float, default=DEFAULTS.momentum)
    t.add_argument("--weight-decay", type=float, default=DEFAULTS.weight_decay)
    t.add_argument("--nesterov", action="store_true")
    t.add_argument("--schedule", default=DEFAULTS.schedule, choices=SCHEDULES, help="step: ×0.1 at 50%% and 75%% of the epochs")
    t.add_argument("--lam", type=float, default=None, help="orthogonality weight λ (default 10 for shared variants, else 0)")
    t.add_argument("--no-augment", dest="augment", action="store_false", help="no random crop / flip")
    t.add_argument("--seed", type=int, default=DEFAULTS.seed)
    t.add_argument("--out", default=None, help="run folder (default runs/MODEL)")
    t.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.npz")
    t.add_argument("--stop-after", type=int, default=None, metavar="K", help="stop after K epochs of this call (resume later)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument("--device", default="cpu", choices=backend.NAMES, help="where convolutions run (gpu: needs cupy and a CUDA GPU)")

    e = sub.add_parser("eval", help="loss and accuracy of a weights file", description="Evaluate a weights .npz (authors' state_dict keys).")
    e.add_argument("weights", help="weights .npz (e.g. runs/NAME/weights.npz)")
    e.add_argument("--model", default=None, help="model spec (default: from config.json beside the weights)")
    _add_data_args(e)
    e.add_argument("--test-size", type=int, default=0, help="stratified test subset (0: the whole test set)")
    e.add_argument("--seed", type=int, default=None, help="subset seed (default: the run's seed + 1, as training)")
    e.add_argument("--batch-size", type=int, default=500)

    i = sub.add_parser("info", help="parameters and MACs of a model, per layer and total")
    i.add_argument("spec", help="model spec, e.g. resnet56-s16u1")
    i.add_argument("--num-classes", type=int, default=10)
    i.add_argument("--layers", action="store_true", help="print every layer, not only the totals per stage")
    return parser


def _eval(args):
    weights = Path(args.weights)
    if not weights.is_file():
        raise FileNotFoundError(f"weights: expected an existing .npz weight file, got {str(weights)!r}")
    config_path = weights.with_name("config.json")
    saved = json.loads(config_path.read_text()) if config_path.exists() else {}
    spec = args.model or saved.get("model")
    if spec is None:
        raise ValueError(f"--model: expected a model spec (no config.json beside {weights}), got none")
    data = training.load_run_data(args.data, args.dataset, download=args.download)
    model = create_model(spec, num_classes=data.num_classes)
    params, state = load_weights(weights, model)
    size = args.test_size or None
    if args.seed is None:  # the images the run itself evaluated on
        images, labels = training.evaluation_subset(data, size, seed=saved.get("seed", 0))
    else:
        images, labels = training.subset(data.test_images, data.test_labels, size, seed=args.seed)
    mean, std = data.stats
    loss, acc = training.evaluate(model, params, state, images, labels, mean=mean, std=std, batch_size=args.batch_size)
    print(json.dumps({"model": model.spec.name, "images": int(len(labels)), "test_loss": loss, "test_acc": acc}))


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        if args.command == "info":
            print(info_table(args.spec, args.num_classes, args.layers))
        elif args.command == "eval":
            _eval(args)
        else:
            args.train_size = args.train_size or None
            args.test_size = args.test_size or None
            config = training.config_from_args(args)
            out = args.out or f"runs/{config.model}"
            training.train(config, out, data_path=args.data, download=args.download, resume=args.resume, stop_after=args.stop_after, quiet=args.quiet, device=args.device)
            print(f"run folder: {out} (log.jsonl, checkpoint.npz, weights.npz)")
    except BrokenPipeError:  # e.g. `minibasis info … | head`
        return 0
    except (ValueError, TypeError, FileNotFoundError, FileExistsError, ConnectionError, training.NonFiniteLoss, backend.BackendUnavailable) as error:
        print(f"minibasis {args.command}: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
