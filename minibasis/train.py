"""Training and evaluation on CIFAR: the loop, metrics, checkpoints and resume.

One step (``../shared/DESIGN.md``)::

    uint8 batch ─augment─normalize─► x ─model.apply(train=True)─► logits
    loss = cross_entropy(logits, y) + λ·R(params)        (R: the orthogonality regulariser)
    grads = gradient_and_aux(loss)  ─► sgd_step ─► params, momentum     (autograd, one root per leaf)

After every epoch the run folder gets, each written atomically (temp file, then rename):
``checkpoint.npz`` (weights and BN state under their ``state_dict`` names, SGD momentum, epoch,
RNG state and the configuration), ``weights.npz`` (the state_dict alone, loadable by PyTorch)
and one JSON line in ``log.jsonl``. ``resume=True`` continues from the checkpoint; the
interrupted-and-resumed run ends bit-identical to an uninterrupted one.
"""

import json
import math
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
from autograd.core import VJPNode, add_outgrads
from autograd.tracer import getval, isbox, new_box, trace_stack
from autograd.util import toposort

from . import backend
from .data import DATASETS, augment, batches, load_cifar, normalize, resolve_data, stratified_subset
from .layers import cross_entropy
from .models import create_model
from .optim import SCHEDULES, _integer, _nonnegative, learning_rate, sgd_step
from .tree import flatten, unflatten
from .files import atomic_savez, atomic_write
from .weights import from_state_dict, save_weights, to_state_dict

DEFAULT_LAMBDA = 10.0  # the authors' λ for the shared variants (train_cifar10.py, --lambdaR)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a run. Defaults: a short run of the paper's S16U1 model."""

    model: str = "resnet20-s16u1"
    dataset: str = "cifar10"
    train_size: int = 2000
    test_size: int = 1000
    epochs: int = 5
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    schedule: str = "step"
    lam: float = None  # None: 10 for the shared variants, 0 for the original and NonShared
    augment: bool = True
    seed: int = 0

    def resolved_lambda(self):
        if self.lam is not None:
            return float(self.lam)
        return DEFAULT_LAMBDA if create_model(self.model).regulariser else 0.0  # as the authors' scripts

    def check(self):
        """Every field, before any data or file is touched (the rules of optim's own checks)."""
        try:
            create_model(self.model)
        except ValueError as error:  # it lists the valid specs
            raise ValueError(f"model: {error}") from None
        for name in ("lr", "momentum", "weight_decay"):
            _nonnegative(name, getattr(self, name))
        for name in ("epochs", "batch_size"):
            _integer(name, getattr(self, name), 1)
        for name in ("train_size", "test_size"):
            if getattr(self, name) is not None:  # None: all images
                _integer(name, getattr(self, name), 1)
        if self.lam is not None:
            _nonnegative("lam", self.lam)
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset: expected one of {sorted(DATASETS)}, got {self.dataset!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule: expected one of {list(SCHEDULES)}, got {self.schedule!r}")


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite; training stopped, the last checkpoint is intact."""


def training_loss(model, params, state, x, labels, lam):
    """cross_entropy + λ·R and, as auxiliary output, (cross-entropy, logits, new BN state)."""
    logits, new_state = model.apply(params, state, x, train=True)
    ce = cross_entropy(logits, labels)
    loss = ce + lam * model.orthogonality(params) if lam else ce
    return loss, (ce, logits, new_state)


def tree_vjp(fn, tree, *, name="fn"):
    """``(fn(tree), vjp)``, ``vjp(g)`` giving the tree of ∂⟨g, fn(tree)⟩/∂leaf (autograd's make_vjp).

    Each leaf is its own root of autograd's trace and ``fn`` gets a plain dict of boxed
    arrays (empty sub-dicts are dropped; ``name`` is what errors call ``fn``). (``autograd.make_vjp`` of a dict boxes the dict itself: every ``tree[key]`` then
    records a node whose VJP builds and adds a whole zero tree, about 8 % of a
    ResNet-56-S16U1 step.) The backward pass is autograd's own, keeping every root's sum.
    """
    leaves = flatten(tree)
    roots = {name: VJPNode.new_root() for name in leaves}
    with trace_stack.new_trace() as trace_id:
        out = fn(unflatten({name: new_box(leaf, trace_id, roots[name]) for name, leaf in leaves.items()}))
    if not isbox(out) or out._trace != trace_id:
        raise ValueError(f"{name}: expected an output that depends on the tree, got a constant")
    root_names = {node: name for name, node in roots.items()}

    def vjp(g):
        outgrads, grads = {out._node: (g, False)}, {}
        for node in toposort(out._node):  # autograd.core.backward_pass
            g = outgrads.pop(node)[0]
            if node in root_names:
                grads[root_names[node]] = g
            for parent, parent_g in zip(node.parents, node.vjp(g)):
                outgrads[parent] = add_outgrads(outgrads.get(parent), parent_g)
        return unflatten({name: grads[name] if name in grads else np.zeros_like(leaf) for name, leaf in leaves.items()})

    return out._value, vjp


def gradient_and_aux(loss_fn):
    """fn(params, *args) -> (∇_params loss, aux) for loss_fn returning (loss, aux).

    Through :func:`tree_vjp`. (autograd's own grad_and_aux needs a vector space for the aux
    output, which the integer ``num_batches_tracked`` in the BN state does not have.)
    """

    def fn(params, *args):
        aux = []

        def loss_only(p):
            loss, out = loss_fn(p, *args)
            aux.append(out)
            return loss

        loss, vjp = tree_vjp(loss_only, params, name="loss_fn")
        if np.ndim(loss) != 0:
            raise ValueError(f"loss_fn: expected a scalar loss, got shape {np.shape(loss)}")
        aux_values = tuple(getval(a) for a in aux[0]) if isinstance(aux[0], tuple) else getval(aux[0])
        return vjp(np.ones_like(loss)), aux_values

    return fn


def evaluate(model, params, state, images, labels, *, mean, std, batch_size=500):
    """Eval-mode (running BN statistics) mean cross-entropy and top-1 accuracy of uint8 images."""
    total_loss, correct = 0.0, 0
    for x, y in batches(images, labels, batch_size):
        logits, _ = model.apply(params, state, normalize(x, mean, std), train=False)
        total_loss += float(cross_entropy(logits, y)) * len(y)
        correct += int(np.sum(np.argmax(logits, axis=1) == y))
    return total_loss / len(labels), correct / len(labels)


class Progress:
    """A one-line progress bar on stderr (only when it is a terminal and not quiet)."""

    def __init__(self, total, label, quiet):
        self.total, self.label, self.start = total, label, time.perf_counter()
        self.active = not quiet and sys.stderr.isatty()

    def update(self, done, loss, images):
        if not self.active:
            return
        rate = images / max(time.perf_counter() - self.start, 1e-9)
        filled = int(30 * done / self.total)
        sys.stderr.write(
            f"\r{self.label} [{'#' * filled}{'.' * (30 - filled)}] {done}/{self.total} loss {loss:.4f} {rate:.0f} img/s"
        )
        sys.stderr.flush()

    def close(self):
        if self.active:
            sys.stderr.write("\n")


def subset(images, labels, size, *, seed):
    """The seeded, stratified ``size``-image subset (all images when ``size`` is None or at
    least their number): ``(images, labels)``."""
    if size is None or size >= len(labels):
        return images, labels
    index = stratified_subset(labels, size, seed=seed)
    return images[index], labels[index]


def evaluation_subset(data, size, *, seed):
    """The test images a run with ``seed`` evaluates on (``minibasis eval`` picks the same)."""
    return subset(data.test_images, data.test_labels, size, seed=seed + 1)  # + 1: not the training draw


def load_run_data(data_path, dataset, *, download=False):
    """``load_cifar`` of what ``resolve_data`` finds, refusing an archive of another dataset."""
    data = load_cifar(resolve_data(data_path, name=dataset, download=download))
    if data.name != dataset:
        raise ValueError(f"dataset: expected a {dataset} archive, got {data.name} data from {data_path}")
    return data


def _rng_to_json(rng):
    return json.dumps(rng.bit_generator.state)


def _rng_from_json(text):
    rng = np.random.default_rng()
    rng.bit_generator.state = json.loads(text)
    return rng


def save_checkpoint(path, model, params, state, momentum, epoch, rng, config):
    """Atomic .npz: 'model/<state_dict key>', 'momentum/<param name>', epoch, rng, config."""
    arrays = {f"model/{k}": v for k, v in to_state_dict(model, params, state).items()}
    if momentum is not None:
        arrays.update({f"momentum/{k}": v for k, v in flatten(momentum).items()})
    arrays["epoch"] = np.int64(epoch)
    arrays["rng_state"] = np.array(_rng_to_json(rng))
    arrays["config"] = np.array(json.dumps(asdict(config)))
    atomic_savez(path, arrays)


def load_checkpoint(path, model):
    """-> (params, state, momentum or None, epoch, rng, config dict)."""
    with np.load(path, allow_pickle=False) as f:
        state_dict = {k[len("model/") :]: f[k] for k in f.files if k.startswith("model/")}
        momentum = {k[len("momentum/") :]: f[k] for k in f.files if k.startswith("momentum/")}
        params, state = from_state_dict(model, state_dict)
        config = json.loads(str(f["config"]))
        return params, state, unflatten(momentum) if momentum else None, int(f["epoch"]), _rng_from_json(str(f["rng_state"])), config


def _write_text(path, text):
    atomic_write(path, lambda f: f.write(text.encode()))


def _write_log(path, records):
    """Rewrite the JSON-lines log (one record per epoch) atomically."""
    _write_text(path, "".join(json.dumps(r) + "\n" for r in records))


def train(config, out_dir, *, data_path=None, download=False, resume=False, stop_after=None, quiet=False, device="cpu", print_fn=print):
    """Train ``config.model`` on a CIFAR subset; returns the list of per-epoch records.

    out_dir: the run folder (created). resume: continue from ``out_dir/checkpoint.npz`` (its
    configuration must equal ``config``). stop_after: leave after this many epochs of this
    call (the run can be resumed later). device: 'cpu' or 'gpu' (the convolutions on CuPy,
    see :mod:`minibasis.backend`). Raises :class:`NonFiniteLoss` on a NaN/inf loss,
    leaving the last checkpoint intact.
    """
    config.check()
    with backend.use(backend.get(device)):
        return _train(config, Path(out_dir), data_path, download, resume, stop_after, quiet, print_fn)


def _train(config, out_dir, data_path, download, resume, stop_after, quiet, print_fn):
    data = load_run_data(data_path, config.dataset, download=download)  # before the run folder exists
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint, log_path = out_dir / "checkpoint.npz", out_dir / "log.jsonl"
    model = create_model(config.model, num_classes=data.num_classes)
    lam = config.resolved_lambda()
    mean, std = data.stats
    train_x, train_y = subset(data.train_images, data.train_labels, config.train_size, seed=config.seed)
    test_x, test_y = evaluation_subset(data, config.test_size, seed=config.seed)

    if resume:
        if not checkpoint.exists():
            raise FileNotFoundError(f"resume: expected a checkpoint at {checkpoint}, found none")
        params, state, momentum, done, rng, saved = load_checkpoint(checkpoint, model)
        if saved != asdict(config):
            diff = {k: (saved.get(k), v) for k, v in asdict(config).items() if saved.get(k) != v}
            raise ValueError(f"resume: expected the checkpoint's configuration, got differences (saved, given): {diff}")
        records = [json.loads(line) for line in log_path.read_text().splitlines()] if log_path.exists() else []
        records = [r for r in records if r["epoch"] <= done]
    else:
        if checkpoint.exists():
            raise FileExistsError(
                f"out_dir: expected a folder without a run, but {checkpoint} exists; "
                f"continue it with resume (--resume) or choose another folder (--out)"
            )
        params, state = model.init(config.seed)
        momentum, done, rng, records = None, 0, np.random.default_rng(config.seed), []
    _write_log(log_path, records)
    _write_text(out_dir / "config.json", json.dumps(asdict(config), indent=1) + "\n")

    step_fn = gradient_and_aux(lambda p, s, x, y: training_loss(model, p, s, x, y, lam))
    steps_per_epoch = math.ceil(len(train_y) / config.batch_size)
    last = config.epochs if stop_after is None else min(config.epochs, done + stop_after)
    for epoch in range(done, last):
        lr = learning_rate(config.schedule, epoch, base_lr=config.lr, epochs=config.epochs)
        start = time.perf_counter()
        progress = Progress(steps_per_epoch, f"epoch {epoch + 1}/{config.epochs}", quiet)
        loss_sum, correct, seen = 0.0, 0, 0
        for step, (xb, yb) in enumerate(batches(train_x, train_y, config.batch_size, rng=rng), start=1):
            if config.augment:
                xb = augment(xb, rng)
            grads, (ce, logits, state) = step_fn(params, state, normalize(xb, mean, std), yb)
            ce = float(ce)
            if not math.isfinite(ce) or not all(np.isfinite(g).all() for g in flatten(grads).values()):
                progress.close()
                saved = f"The last good checkpoint (after epoch {epoch}) is {checkpoint}." if epoch else "No checkpoint was written yet."
                raise NonFiniteLoss(
                    f"non-finite loss ({ce}) at epoch {epoch + 1}, step {step} (global step "
                    f"{epoch * steps_per_epoch + step}); stopped. {saved} Try a smaller --lr."
                )
            params, momentum = sgd_step(
                params, grads, momentum, lr=lr, momentum=config.momentum,
                weight_decay=config.weight_decay, nesterov=config.nesterov,
            )
            loss_sum += ce * len(yb)
            correct += int(np.sum(np.argmax(logits, axis=1) == yb))
            seen += len(yb)
            progress.update(step, loss_sum / seen, seen)
        progress.close()
        train_seconds = time.perf_counter() - start
        test_loss, test_acc = evaluate(model, params, state, test_x, test_y, mean=mean, std=std)
        record = {
            "epoch": epoch + 1,
            "train_loss": loss_sum / seen,
            "train_acc": correct / seen,
            "test_loss": test_loss,
            "test_acc": test_acc,
            "orthogonality": float(model.orthogonality(params)),
            "lr": lr,
            "images_per_second": seen / train_seconds,
            "seconds": time.perf_counter() - start,
        }
        records.append(record)
        # The checkpoint last: an epoch counts as done (for --resume) only once its weights
        # and log line are written; resume drops log lines newer than the checkpoint.
        save_weights(out_dir / "weights.npz", model, params, state)
        _write_log(log_path, records)
        save_checkpoint(checkpoint, model, params, state, momentum, epoch + 1, rng, config)
        print_fn(
            f"epoch {record['epoch']:3d}/{config.epochs}  train loss {record['train_loss']:.4f} acc {record['train_acc']:.4f}  "
            f"test loss {record['test_loss']:.4f} acc {record['test_acc']:.4f}  R {record['orthogonality']:.4g}  "
            f"lr {lr:.4g}  {record['seconds']:.1f}s ({record['images_per_second']:.0f} img/s)"
        )
    return records


def config_from_args(args):
    """TrainConfig from an argparse namespace holding its field names."""
    return TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})
