"""The ``minibasis`` command: ``train``, ``eval``, ``info`` and ``golden``.

Every failure the library reports on purpose (a bad value, a missing or damaged file, a run
folder in use, a non-finite value, no GPU) is one line on stderr and exit status 1::

    minibasis train: error: runs/x/checkpoint.npz: expected a readable .npz archive, got …

A usage error is one line too (status 2), and Ctrl-C is one line saying where the last
checkpoint is and the command that continues the run (status 130; a second Ctrl-C while it is
said is ignored). Running out of memory is one line naming the model and the batch size.
Anything else (a TypeError, a KeyError, …) is a bug in minibasis and keeps its traceback.

A closed or broken stdout or stderr never stops training: what cannot be printed is dropped.
"""

import argparse
import json
import os
import shlex
import signal
import sys
import textwrap
import threading
from dataclasses import fields, replace
from pathlib import Path

from . import backend, runs
from . import train as training
from .backend import available_cores, set_threads
from .checks import fail, integer, real
from .data import DATASETS, default_cache_dir
from .files import FolderBusy
from .machine import describe as machine_speed
from .mode import is_reference
from .models import SPEC_HELP, create_model, info_table
from .optim import SCHEDULES
from .progress import DEFAULT_EVERY, Progress
from .weights import load_weights

DEFAULTS = training.TrainConfig()
EVAL_BATCH = 500

#: What the library raises on purpose; each becomes one line on stderr.
ERRORS = (ValueError, OSError, FolderBusy, training.NonFiniteValue, backend.BackendUnavailable)


class _Formatter(argparse.HelpFormatter):
    """argparse's help, wrapped at spaces only: a spec name (cifar100-resnet34-single-s32u1) stays whole."""

    def _fill_text(self, text, width, indent):
        text = " ".join(text.split())
        return textwrap.fill(text, width, initial_indent=indent, subsequent_indent=indent, break_on_hyphens=False)

    def _split_lines(self, text, width):
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line: ``minibasis train: error: argument --epochs: …``."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _help(text, default):
    return f"{text} (default: {default})"


def build_parser():
    parser = _Parser(prog="minibasis", description="Shared filter bases for ConvNets, in NumPy.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{train,eval,info,golden}")
    _train_parser(sub)
    _eval_parser(sub)
    _golden_parser(sub)
    i = sub.add_parser(
        "info",
        formatter_class=_Formatter,
        help="the zoo, or the parameters and MACs of one model per stage or per layer",
        description="Without a spec: every model of the authors' zoo with its counts. " + SPEC_HELP,
    )
    i.add_argument("spec", nargs="?", help="model spec, e.g. resnet56-s16u1 (default: list the zoo)")
    i.add_argument(
        "--num-classes", type=int, help=_help("classes of the final layer", "10, 100 or 1000 by the spec's dataset")
    )
    i.add_argument(
        "--image-size", type=int, help=_help("image side the MACs are counted for", "32 for CIFAR, 224 for ImageNet")
    )
    i.add_argument(
        "--layers",
        action="store_true",
        help=_help(
            "every layer, with kind, kernel, stride, padding, groups, channels, output shape, activation, sharing",
            "per stage",
        ),
    )
    i.add_argument(
        "--machine",
        action="store_true",
        help=_help(
            "this machine's speed, measured now (GEMM GFLOP/s, training img/s, load): what the README's times are "
            "stated with",
            "off",
        ),
    )
    _threads_option(i)  # --machine measures a training step on them
    return parser


def _golden_parser(sub):
    g = sub.add_parser(
        "golden",
        help="write a golden file: minibasis' outputs, module by module, to check another implementation",
        description="Write inputs, weights, every module's output in both modes, logits, loss, R, the full gradient "
        "and the BN state after a train pass, with a JSON manifest, to one .npz (minibasis.oracle.golden). "
        + SPEC_HELP,
    )
    g.add_argument("spec", help="model spec, e.g. resnet56-s16u1")
    g.add_argument("--out", required=True, help="the .npz to write (an existing file is refused without --overwrite)")
    g.add_argument("--batch", type=int, default=2, help=_help("probe images (at least 2: train-mode BN)", 2))
    g.add_argument("--image-size", type=int, help=_help("image side", "32 for CIFAR, 224 for ImageNet"))
    g.add_argument("--seed", type=int, default=0, help=_help("seed of the weights, the inputs and the labels", 0))
    g.add_argument(
        "--dtype",
        default="float64",
        choices=("float64", "float32"),
        help=_help("dtype of the weights and inputs", "float64"),
    )
    g.add_argument("--overwrite", action="store_true", help=_help("replace an existing --out", "refuse"))
    _threads_option(g)


def _golden(args):
    from .oracle import write_golden

    integer("seed", args.seed, 0)
    path = write_golden(
        args.out,
        args.spec,
        batch=args.batch,
        image_size=args.image_size,
        seed=args.seed,
        dtype=args.dtype,
        overwrite=args.overwrite,
    )
    print(f"{path}: golden file of {args.spec} ({args.batch} images, seed {args.seed}, {args.dtype})")


def _threads_option(p):
    p.add_argument(
        "--threads",
        type=int,
        default=available_cores(),
        help=_help(
            "worker threads of the kernels; results are bit-identical for any number", "the cores this process may use"
        ),
    )


def _train_parser(sub):
    """The train options. Each defaults to None, meaning "not given": a fresh run takes the
    TrainConfig default (shown in --help), a resumed run the run's own value."""
    t = sub.add_parser(
        "train",
        formatter_class=_Formatter,
        help="train a model on a CIFAR subset",
        description="Train a model on a CIFAR subset into a run folder. " + SPEC_HELP,
    )
    t.add_argument("--model", help=_help("model spec", DEFAULTS.model))
    _data_options(t)
    t.add_argument(
        "--train-size",
        type=int,
        help=_help(
            "stratified training subset (0: every image; more than the data holds is an error)", DEFAULTS.train_size
        ),
    )
    t.add_argument("--test-size", type=int, help=_help("stratified test subset (0: every image)", DEFAULTS.test_size))
    t.add_argument(
        "--epochs",
        type=int,
        help=_help(
            "epochs; with --resume, more than the run's extend it: the remaining epochs "
            "follow the schedule of a run of the new length",
            DEFAULTS.epochs,
        ),
    )
    t.add_argument("--batch-size", type=int, help=_help("images per SGD step", DEFAULTS.batch_size))
    t.add_argument("--lr", type=float, help=_help("learning rate", DEFAULTS.lr))
    t.add_argument("--momentum", type=float, help=_help("SGD momentum", DEFAULTS.momentum))
    t.add_argument("--weight-decay", type=float, help=_help("L2 weight decay", DEFAULTS.weight_decay))
    t.add_argument("--nesterov", action="store_const", const=True, help=_help("Nesterov momentum", "off"))
    t.add_argument(
        "--schedule",
        choices=SCHEDULES,
        help=_help(
            "lr schedule over E epochs. step: lr x 0.1 from epoch ceil(E/2) and x 0.01 from ceil(3E/4) "
            "(0-based; the authors' 150 and 225 of 300, and the first epoch always at --lr); "
            "cosine: from --lr down to 0; constant",
            DEFAULTS.schedule,
        ),
    )
    t.add_argument(
        "--lam",
        type=float,
        help=_help("orthogonality weight λ", "10 for the shared variants, 0 for the original and NonShared"),
    )
    t.add_argument(
        "--no-augment",
        dest="augment",
        action="store_const",
        const=False,
        help=_help("no random crop and flip", "augment"),
    )
    t.add_argument(
        "--seed", type=int, help=_help("seed of the initial weights, the subsets and the batches", DEFAULTS.seed)
    )
    t.add_argument("--out", help=_help("run folder", "runs/MODEL"))
    t.add_argument(
        "--resume",
        action="store_true",
        help=_help("continue the run in --out; options not given (--data included) are the run's", "a fresh run"),
    )
    t.add_argument(
        "--allow-other-data",
        action="store_true",
        help=_help(
            "with --resume, train on --data other than the run's (recorded)",
            "refuse data whose SHA-256 is not the run's",
        ),
    )
    t.add_argument(
        "--overwrite",
        action="store_true",
        help=_help(
            "replace the run in --out (the run files minibasis wrote are deleted first)",
            "refuse a folder that holds a run",
        ),
    )
    t.add_argument(
        "--stop-after",
        type=int,
        metavar="K",
        help=_help("leave after K epochs of this call (continue later with --resume)", "train to the last epoch"),
    )
    _progress_options(t)
    t.add_argument(
        "--device",
        default="cpu",
        choices=backend.NAMES,
        help=_help("where convolutions run (gpu: needs cupy and a CUDA GPU)", "cpu"),
    )
    _threads_option(t)


def _eval_parser(sub):
    e = sub.add_parser(
        "eval",
        help="loss and accuracy of a weights file",
        description="Evaluate a weights .npz (the authors' state_dict keys); prints one JSON line.",
    )
    e.add_argument("weights", help="weights .npz (e.g. runs/NAME/weights.npz)")
    e.add_argument("--model", help=_help("model spec", "the run's, from config.json beside the weights"))
    _data_options(e, default_dataset=DEFAULTS.dataset)
    e.add_argument("--test-size", type=int, default=0, help=_help("stratified test subset (0: the whole test set)", 0))
    e.add_argument(
        "--seed", type=int, help=_help("seed of the subset", "the run's seed + 1, the images the run evaluated on")
    )
    e.add_argument("--batch-size", type=int, default=EVAL_BATCH, help=_help("images per forward pass", EVAL_BATCH))
    _progress_options(e)
    _threads_option(e)


def _data_options(p, default_dataset=None):
    p.add_argument(
        "--data",
        metavar="PATH",
        help=_help("CIFAR archive (.tar.gz) or its extracted folder", f"the cache, {default_cache_dir()}"),
    )
    p.add_argument(
        "--dataset", default=default_dataset, choices=sorted(DATASETS), help=_help("which CIFAR", DEFAULTS.dataset)
    )
    p.add_argument(
        "--download",
        action="store_true",
        help=_help("download the official archive into the cache if it is missing", "never download"),
    )


def _progress_options(p):
    p.add_argument(
        "--quiet",
        action="store_true",
        help=_help("no progress on stderr", "progress: a bar on a terminal, else a line every few seconds"),
    )
    p.add_argument(
        "--progress-every",
        type=float,
        default=DEFAULT_EVERY,
        metavar="S",
        help=_help("seconds between progress lines when stderr is not a terminal (0: every batch)", DEFAULT_EVERY),
    )


# ---------------------------------------------------------------------------------- commands


def _train(args):
    given = _given_config(args)
    out = _out_folder(args)
    base = (training.saved_config(out) if args.resume else None) or DEFAULTS
    config = replace(base, **given)
    records = training.train(
        config,
        out,
        data_path=args.data,
        download=args.download,
        resume=args.resume,
        overwrite=args.overwrite,
        stop_after=args.stop_after,
        quiet=args.quiet,
        progress_every=args.progress_every,
        device=args.device,
        print_fn=_print_now,
        allow_other_data=args.allow_other_data,
    )
    done = len(records)
    files = [name for name in reversed(runs.RUN_FILES) if (out / name).exists()]
    more = "" if done == config.epochs else f"; continue it with: {_resume_command(out)}"
    _print_now(f"run folder: {out} ({', '.join(files) or 'no files yet'}); {done} of {config.epochs} epochs done{more}")


def _resume_command(out):
    return f"minibasis train --resume --out {shlex.quote(str(out))}"


def _print_now(line):
    """Print and flush (a redirected run's log shows each epoch as it ends); a closed or broken
    stdout (``| head``) is silenced, never allowed to stop the training."""
    try:
        print(line, flush=True)
    except (OSError, ValueError, AttributeError):  # AttributeError: sys.stdout is None when fd 1 is closed
        _to_devnull(sys.stdout)


def _to_devnull(stream):
    """Point ``stream``'s file descriptor at /dev/null (what is left in its buffer is dropped)."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def _given_config(args):
    """The TrainConfig fields given on the command line (``--train-size 0``: every image)."""
    given = {f.name: getattr(args, f.name) for f in fields(training.TrainConfig) if getattr(args, f.name) is not None}
    for name in ("train_size", "test_size"):
        if given.get(name) == 0:
            given[name] = None
    return given


def _out_folder(args):
    return Path(args.out or f"runs/{args.model or DEFAULTS.model}")


def _eval(args):
    weights = Path(args.weights)
    if not weights.is_file():
        fail("weights", "an existing .npz weight file", repr(str(weights)), FileNotFoundError)
    integer("test_size", args.test_size, 0)
    integer("batch_size", args.batch_size, 1)
    real("progress_every", args.progress_every, 0)
    config_path = weights.with_name(runs.CONFIG)
    saved = runs.read_config(config_path) if config_path.exists() else None
    if saved is not None and args.model and not runs.is_run_config(saved):
        saved = None  # not a run's: --model says what the weights are
    run = training.config_from_saved(saved, config_path) if saved is not None else None
    spec = args.model or (run and run.model)
    if spec is None:
        fail("--model", f"a model spec (there is no {runs.CONFIG} beside {weights})", "none")
    seed = integer("seed", args.seed, 0) if args.seed is not None else None
    run_seed = run.seed if run else 0
    data = training.load_run_data(args.data, args.dataset, download=args.download)
    model = create_model(spec, num_classes=data.num_classes)
    params, state = load_weights(weights, model)
    size = args.test_size or None
    if seed is None:  # the images the run itself evaluated on
        images, labels = training.evaluation_subset(data, size, seed=run_seed)
    else:
        images, labels = training.subset(
            data.test_images, data.test_labels, size, seed=seed, num_classes=data.num_classes, name="test_size"
        )
    progress = Progress("eval", len(labels), every=None if args.quiet else args.progress_every)
    mean, std = data.stats
    loss, acc = training.evaluate(
        model, params, state, images, labels, mean=mean, std=std, batch_size=args.batch_size, progress=progress
    )
    print(json.dumps({"model": model.spec.name, "images": int(len(labels)), "test_loss": loss, "test_acc": acc}))


def _info(args):
    if args.machine:
        if args.spec is not None:
            fail("--machine", "no model spec (it measures the machine)", args.spec)
        print(machine_speed())
        return
    if args.spec is None:
        for name, value in (
            ("--num-classes", args.num_classes),
            ("--image-size", args.image_size),
            ("--layers", args.layers or None),
        ):
            if value is not None:
                fail(name, "a model spec to apply to (minibasis info SPEC …)", "none")
    print(info_table(args.spec, args.num_classes, args.layers, args.image_size))


COMMANDS = {"train": _train, "eval": _eval, "info": _info, "golden": _golden}


def main(argv=None):
    _guard_standard_streams()
    args = build_parser().parse_args(argv)
    previous = signal.signal(signal.SIGINT, _interrupt_once) if _main_thread() else None
    try:
        is_reference()  # a bad MINIBASIS_REFERENCE is one line for every command
        threads = getattr(args, "threads", None)  # golden and info --machine run kernels too
        set_threads(available_cores() if threads is None else threads)
        COMMANDS[args.command](args)
    except BrokenPipeError:  # e.g. `minibasis info … | head`
        _to_devnull(sys.stdout)
        return 0
    except KeyboardInterrupt:
        _say(f"minibasis {args.command}: interrupted.{_interrupted_advice(args)}")
        return 130
    except MemoryError as error:
        what = _one_line(error) or "MemoryError"
        _say(f"minibasis {args.command}: error: out of memory ({what}){_memory_advice(args)}")
        return 1
    except ERRORS as error:
        _say(f"minibasis {args.command}: error: {_one_line(error)}")
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    return 0


def _main_thread():
    return threading.current_thread() is threading.main_thread()


def _interrupt_once(signum, frame):
    """The first Ctrl-C stops the command; later ones are ignored while it says where things are."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


def _guard_standard_streams():
    """Open /dev/null on a closed file descriptor 0, 1 or 2 (``2>&-``): else the first file
    minibasis opens would take that number, and what is printed would be written into it."""
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
        except OSError:
            os.open(os.devnull, os.O_RDWR)  # the lowest free number: fd
            setattr(sys, name, open(fd, "r" if fd == 0 else "w", closefd=False))


def _say(line):
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError, AttributeError):  # stderr closed, full or broken: nothing can be said
        pass


def _interrupted_advice(args):
    if args.command != "train":
        return ""
    out = _out_folder(args)
    if not (out.is_dir() and runs.run_files(out)):
        return " No run file was written: run the same command again to start the run."
    return f" {runs.describe_last_checkpoint(out)} Continue with: {_resume_command(out)}"


def _memory_advice(args):
    if args.command == "train":
        model = args.model or ("the run's model" if args.resume else DEFAULTS.model)
        batch = args.batch_size or ("the run's" if args.resume else DEFAULTS.batch_size)
        return f" while training {model} with batch size {batch}; try a smaller --batch-size, or fewer --threads"
    return f"; try a smaller --batch-size (now {args.batch_size})" if args.command == "eval" else ""


def _one_line(error):
    """The message of ``error`` on one line; an OSError from the system as ``<file>: <reason>``."""
    text = str(error)
    if isinstance(error, OSError) and error.strerror and error.filename is not None:
        text = f"{error.filename}: {error.strerror}" + (f" (and {error.filename2})" if error.filename2 else "")
    return " ".join(text.split())


if __name__ == "__main__":
    sys.exit(main())
