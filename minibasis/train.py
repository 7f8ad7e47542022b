"""Training and evaluation on CIFAR: the loop, its metrics, and the guard against non-finite values.

One step::

    uint8 batch ─augment─normalize─► x ─model.apply(train=True)─► logits
    loss = cross_entropy(logits, y) + λ·R(params)        (R: the orthogonality regulariser)
    grads = gradient_and_aux(loss)  ─► sgd_step ─► params, momentum     (minibasis.autodiff)

After every epoch the run folder (:mod:`minibasis.runs`) gets ``weights.npz``, a line of
``log.jsonl`` and ``checkpoint.npz``, each written atomically; ``resume=True`` continues from the
checkpoint, and the interrupted-and-resumed run ends bit-identical to an uninterrupted one.
One process at a time trains into a folder (a lock), a fresh run never replaces another run's
files unless asked to (``overwrite=True``), and no file ever holds a NaN or infinity: every
loss, gradient, updated parameter, BN statistic and test metric is checked, and the first
non-finite one stops the run, named, with the last checkpoint intact.
"""

import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from . import backend, runs
from .autodiff import gradient_and_aux
from .checks import boolean, fail, integer, one_of, real
from .data import DATASETS, augment, batches, load_cifar, normalize, resolve_data, stratified_subset
from .files import folder_lock
from .layers import cross_entropy
from .models import create_model
from .optim import SCHEDULES, learning_rate, sgd_step
from .progress import DEFAULT_EVERY, Progress
from .tree import flatten
from .weights import save_weights

DEFAULT_LAMBDA = 10.0  # the authors' λ for the shared variants (train_cifar10.py, --lambdaR)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a run. Defaults: a short run of the paper's S16U1 model.

    ``schedule="step"`` multiplies the lr by 0.1 at epochs ⌈E/2⌉ and ⌈3E/4⌉ (0-based) of an
    E-epoch run: the authors' 150 and 225 of 300, and a 1-epoch run trains at ``lr`` (see
    :func:`minibasis.optim.step_lr`).
    """

    model: str = "resnet20-s16u1"
    dataset: str = "cifar10"
    train_size: int = 2000  # None: every training image
    test_size: int = 1000  # None: every test image
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
        """Every field, before any data or file is touched."""
        try:
            create_model(self.model)
        except ValueError as error:  # it lists the valid specs
            raise ValueError(f"model: {error}") from None
        one_of("dataset", self.dataset, sorted(DATASETS))
        for name in ("train_size", "test_size"):
            if getattr(self, name) is not None:  # None: all images
                integer(name, getattr(self, name), 1)
        integer("epochs", self.epochs, 1)
        integer("batch_size", self.batch_size, 1)
        for name in ("lr", "momentum", "weight_decay"):
            real(name, getattr(self, name), 0)
        boolean("nesterov", self.nesterov)
        if self.nesterov and self.momentum == 0:
            fail("nesterov", "a momentum > 0 with Nesterov momentum", f"momentum {self.momentum}")
        one_of("schedule", self.schedule, SCHEDULES)
        if self.lam is not None:
            real("lam", self.lam, 0)
        boolean("augment", self.augment)
        integer("seed", self.seed, 0)


class NonFiniteValue(RuntimeError):
    """A loss, gradient, parameter, BN statistic or test metric became NaN or infinite; training
    stopped, and the last checkpoint (written before it) is intact."""


def training_loss(model, params, state, x, labels, lam, rng=None):
    """``cross_entropy + λ·R`` and, as auxiliary output, ``(loss, cross-entropy, R or None, logits,
    new BN state)`` (R is not computed when λ = 0). ``rng`` draws dropout's masks (MobileNetV2)."""
    logits, new_state = model.apply(params, state, x, train=True, rng=rng)
    ce = cross_entropy(logits, labels)
    if not lam:
        return ce, (ce, ce, None, logits, new_state)
    r = model.orthogonality(params)
    loss = ce + lam * r
    return loss, (loss, ce, r, logits, new_state)


def evaluate(model, params, state, images, labels, *, mean, std, batch_size=500, progress=None):
    """Eval-mode (running BN statistics) mean cross-entropy and top-1 accuracy of uint8 images.
    ``progress``: a :class:`~minibasis.progress.Progress` to report to, or None."""
    total_loss, correct, seen = 0.0, 0, 0
    try:
        for x, y in batches(images, labels, batch_size):
            logits, _ = model.apply(params, state, normalize(x, mean, std), train=False)
            total_loss += float(cross_entropy(logits, y)) * len(y)
            correct += int(np.sum(np.argmax(logits, axis=1) == y))
            seen += len(y)
            if progress is not None:
                progress.update(seen)
    finally:
        if progress is not None:
            progress.close()
    return total_loss / len(labels), correct / len(labels)


def subset(images, labels, size, *, seed, num_classes, name="size"):
    """The seeded, stratified ``size``-image subset (every image when ``size`` is None):
    ``(images, labels)``. ``name``: what errors call ``size``. A size larger than the images
    there is refused, not clamped: a run records exactly the images it used."""
    if size is None:
        return images, labels
    if integer(name, size, 1) > len(labels):
        fail(name, f"at most {len(labels)}, the images there (or None: all of them)", repr(size))
    if size % num_classes:
        fail(name, f"a multiple of the {num_classes} classes (a stratified subset)", repr(size))
    index = stratified_subset(labels, size, seed=seed, num_classes=num_classes)
    return images[index], labels[index]


def evaluation_subset(data, size, *, seed, name="test_size"):
    """The test images a run with ``seed`` evaluates on (``minibasis eval`` picks the same)."""
    return subset(data.test_images, data.test_labels, size, seed=seed + 1, num_classes=data.num_classes, name=name)  # + 1: not the training draw


def load_run_data(data_path, dataset, *, download=False):
    """``load_cifar`` of what ``resolve_data`` finds, refusing an archive of another dataset."""
    data = load_cifar(resolve_data(data_path, name=dataset, download=download))
    if data.name != dataset:
        fail("dataset", f"a {dataset} archive", f"{data.name} data from {data_path}")
    return data


def saved_config(out_dir):
    """The configuration of the run in ``out_dir`` (its ``config.json``, else its checkpoint's),
    or None when it holds neither: what ``minibasis train --resume`` starts from."""
    folder = Path(out_dir)
    if (folder / runs.CONFIG).is_file():
        path, saved = folder / runs.CONFIG, runs.read_config(folder / runs.CONFIG)
    elif (folder / runs.CHECKPOINT).is_file():
        path, saved = folder / runs.CHECKPOINT, runs.read_checkpoint_config(folder / runs.CHECKPOINT)
    else:
        return None
    missing = [f.name for f in fields(TrainConfig) if f.name not in saved]
    if missing:
        fail(str(path), "a run configuration with every field", f"one without {', '.join(missing)}")
    return TrainConfig(**{f.name: saved[f.name] for f in fields(TrainConfig)})


# ------------------------------------------------------------------------------------ train


def train(config, out_dir, *, data_path=None, download=False, resume=False, overwrite=False, stop_after=None,
          quiet=False, progress_every=DEFAULT_EVERY, device="cpu", print_fn=print):
    """Train ``config.model`` on a CIFAR subset into the run folder ``out_dir``; returns the
    per-epoch records (those of ``log.jsonl``).

    out_dir: created if missing, locked while training. A fresh run refuses a folder that holds
    another run's files (config, log, weights, checkpoint, or a temp file of one) unless
    ``overwrite=True``, which removes them first. ``resume=True`` continues the run there: every
    field of ``config`` must equal the run's except ``epochs``, which may grow to extend the run
    (the remaining epochs then follow the schedule of a run of the new length; the change is
    recorded in ``config.json`` and each log record's ``"epochs"``). A finished run resumed
    without more epochs trains nothing and says so. stop_after: leave after this many epochs of
    this call. quiet: no progress; else progress on stderr (a plain line every
    ``progress_every`` seconds when stderr is not a terminal). device: 'cpu' or 'gpu' (the
    convolutions on CuPy, see :mod:`minibasis.backend`).

    Raises :class:`NonFiniteValue` naming the first non-finite value, ``FileExistsError`` /
    ``FileNotFoundError`` for a folder that holds a run / none to resume, ``ValueError`` for a
    bad argument or a damaged run file, :class:`minibasis.files.FolderBusy` when another
    process trains into the folder.
    """
    config.check()
    folder = _check_call(out_dir, resume, overwrite, stop_after, quiet, progress_every)
    with backend.use(backend.get(device)):
        data = load_run_data(data_path, config.dataset, download=download)  # a bad --data leaves no folder
        run = _Run.of(config, folder, data, None if quiet else progress_every, print_fn)
        with folder_lock(folder):
            state = _resume(run) if resume else _start(run, overwrite)
            return _train_epochs(run, state, stop_after)


def _check_call(out_dir, resume, overwrite, stop_after, quiet, progress_every):
    """train()'s own arguments; returns the run folder as a Path."""
    folder = Path(out_dir)
    if folder.exists() and not folder.is_dir():
        fail("out_dir", "a folder for the run (or a path to create one)", f"the file {str(folder)!r}")
    boolean("quiet", quiet)
    if boolean("resume", resume) & boolean("overwrite", overwrite):  # & : both checked
        fail("overwrite", "False with resume=True (resume continues a run, overwrite replaces it)", "True")
    if resume and not folder.is_dir():
        fail("out_dir", "the folder of a run to resume", f"{str(folder)!r}, which does not exist", FileNotFoundError)
    if stop_after is not None:
        integer("stop_after", stop_after, 1)
    real("progress_every", progress_every, 0)
    return folder


@dataclass(frozen=True)
class _Run:
    """What stays fixed while a run trains."""

    config: TrainConfig
    folder: Path
    model: object
    lam: float
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    mean: tuple
    std: tuple
    progress_every: float  # None: quiet
    print_fn: object
    step_fn: object  # params, BN state, x, y, rng -> (grads, training_loss's aux)

    @classmethod
    def of(cls, config, folder, data, progress_every, print_fn):
        model = create_model(config.model, num_classes=data.num_classes)
        lam = config.resolved_lambda()
        train = subset(data.train_images, data.train_labels, config.train_size, seed=config.seed,
                       num_classes=data.num_classes, name="train_size")
        test = evaluation_subset(data, config.test_size, seed=config.seed)
        step_fn = gradient_and_aux(lambda p, s, x, y, rng: training_loss(model, p, s, x, y, lam, rng))
        return cls(config, folder, model, lam, *train, *test, *data.stats, progress_every, print_fn, step_fn)

    def progress(self, label, total):
        return Progress(label, total, every=self.progress_every)


@dataclass
class _State:
    """What changes while a run trains (and what a checkpoint saves)."""

    params: dict
    bn_state: dict
    momentum: dict  # None before the first step
    rng: np.random.Generator
    done: int  # epochs finished
    records: list  # their log records
    extensions: list  # see runs.write_config


def _start(run, overwrite):
    """A fresh run: refuse a folder holding another run's files (remove them if ``overwrite``),
    then write ``config.json`` and an empty log."""
    existing = runs.run_files(run.folder)
    if existing and not overwrite:
        fail(str(run.folder), "a folder without a run",
             f"one holding {', '.join(sorted(p.name for p in existing))}; continue that run with resume (--resume), "
             "replace it with overwrite (--overwrite), or choose another folder (--out)", FileExistsError)
    runs.remove(existing)  # the checkpoint first (runs.RUN_FILES)
    params, bn_state = run.model.init(run.config.seed)
    state = _State(params, bn_state, None, np.random.default_rng(run.config.seed), 0, [], [])
    _write_start(run, state)
    return state


def _resume(run):
    """Continue the run in the folder: read and check all of it first (configuration, checkpoint,
    log, RNG state), and only then write (stale temp files removed, config.json and the log
    rewritten)."""
    saved = _read_run(run)
    checkpoint = saved["checkpoint"]
    done = checkpoint.epoch if checkpoint else 0
    records = _records_until(saved["log"], done, run.folder / runs.LOG)
    if checkpoint:
        state = _State(checkpoint.params, checkpoint.state, checkpoint.momentum, checkpoint.rng, done, records, saved["extensions"])
    else:  # killed before its first checkpoint: the run starts again from its beginning
        params, bn_state = run.model.init(run.config.seed)
        state = _State(params, bn_state, None, np.random.default_rng(run.config.seed), 0, [], saved["extensions"])
    extension = saved["extension"]
    if extension is None and done == run.config.epochs:
        run.print_fn(f"{run.folder}: the run is already complete ({done} of {done} epochs); nothing to train. "
                     f"To extend it, resume with more epochs (--epochs N, N > {done}).")
        return state
    if extension is not None:
        state.extensions = state.extensions + [extension]
        run.print_fn(_extension_note(run.config, extension))
    runs.remove(runs.stale_temp_files(run.folder))  # we hold the lock: nobody else is writing them
    _write_start(run, state)
    return state


def _read_run(run):
    """Every file a resume reads, each checked, the configuration first (so that another
    model's checkpoint is reported as a different configuration, not as missing weights):
    {checkpoint, extension, extensions, log}."""
    folder = run.folder
    has_checkpoint = (folder / runs.CHECKPOINT).exists()
    config_json = runs.read_config(folder / runs.CONFIG) if (folder / runs.CONFIG).exists() else None
    if not has_checkpoint and config_json is None and not runs.stale_temp_files(folder):
        fail(str(folder), "a run to resume (checkpoint.npz or config.json)", "a folder without one; start the run without resume (--resume)",
             FileNotFoundError)
    # The checkpoint is the truth; config.json stands in for it before the first one exists (and
    # when both are missing, the run died writing its config.json: only temp files are left).
    source = folder / (runs.CHECKPOINT if has_checkpoint else runs.CONFIG)
    saved = runs.read_checkpoint_config(source) if has_checkpoint else config_json
    _check_same_run(saved, run.config, source)
    checkpoint = runs.load_checkpoint(source, run.model) if has_checkpoint else None
    extension = None
    if saved is not None and run.config.epochs != saved["epochs"]:
        extension = {"at_epoch": checkpoint.epoch if checkpoint else 0, "from_epochs": saved["epochs"], "to_epochs": run.config.epochs}
    extensions = checkpoint.extensions if checkpoint else (config_json or {}).get("extensions", [])
    if not isinstance(extensions, list):
        fail(f"{folder / runs.CONFIG}['extensions']", "a JSON list", repr(extensions))
    log = runs.read_log(folder / runs.LOG) if (folder / runs.LOG).exists() else None
    return {"checkpoint": checkpoint, "extension": extension, "extensions": extensions, "log": log}


def _check_same_run(saved, config, source):
    """``config`` must be the run's ``saved`` configuration (None: nothing to compare) but for
    ``epochs``, which may grow to extend the run."""
    if saved is None:
        return
    if isinstance(saved.get("epochs"), bool) or not isinstance(saved.get("epochs"), int) or saved["epochs"] < 1:
        fail(str(source), "a run configuration with an integer 'epochs' ≥ 1", repr(saved.get("epochs")))
    given = asdict(config)
    differences = [f"{k} {v!r} (the run's: {saved.get(k, 'none')!r})" for k, v in given.items() if k != "epochs" and saved.get(k) != v]
    differences += [f"no {k} (the run's: {v!r})" for k, v in saved.items() if k not in given and k != "extensions"]
    if differences:
        fail("config", f"the configuration of the run in {source} (only epochs may change, to extend it)", "; ".join(differences))
    if config.epochs < saved["epochs"]:
        fail("epochs", f"at least {saved['epochs']}, the run's epochs (a run can be extended, not shortened)", repr(config.epochs))


def _extension_note(config, extension):
    """What extending a run does to its schedule, in one line."""
    first, last = extension["at_epoch"] + 1, config.epochs
    lrs = [learning_rate(config.schedule, e, base_lr=config.lr, epochs=last) for e in range(first - 1, last)]
    shown = ", ".join(f"{lr:.4g}" for lr in lrs[:12]) + (", …" if len(lrs) > 12 else "")
    return (f"extending the run from {extension['from_epochs']} to {last} epochs: epochs {first}–{last} follow the "
            f"{config.schedule} schedule of a {last}-epoch run (lr {shown}); the epochs done keep theirs")


def _records_until(records, done, path):
    """The log records of the ``done`` epochs of the checkpoint (newer ones are dropped)."""
    kept = [r for r in records or [] if r["epoch"] <= done]
    if len(kept) != done:
        fail(str(path), f"the records of epochs 1–{done} (the checkpoint's)",
             f"records of epochs 1–{len(kept)}" if kept else ("no records" if records is not None else "no log"))
    return kept


def _write_start(run, state):
    runs.write_config(run.folder / runs.CONFIG, run.config, state.extensions)
    runs.write_log(run.folder / runs.LOG, state.records)


# ----------------------------------------------------------------------------------- epochs


def _train_epochs(run, state, stop_after):
    """The epoch loop: train, evaluate, check, save, print."""
    config = run.config
    last = config.epochs if stop_after is None else min(config.epochs, state.done + stop_after)
    for epoch in range(state.done, last):
        lr = learning_rate(config.schedule, epoch, base_lr=config.lr, epochs=config.epochs)
        start = time.perf_counter()
        train_loss, train_acc, images = _train_epoch(run, state, epoch, lr)
        seconds = time.perf_counter() - start
        record = {"epoch": epoch + 1, "epochs": config.epochs, "train_loss": train_loss, "train_acc": train_acc,
                  **_test_metrics(run, state, epoch), "lr": lr, "images_per_second": images / seconds}
        record["seconds"] = time.perf_counter() - start
        _save_epoch(run, state, record)
        run.print_fn(_epoch_line(record))
    return state.records


def _train_epoch(run, state, epoch, lr):
    """One pass over the training subset, one SGD step per batch: (mean loss, accuracy, images)."""
    config = run.config
    steps = math.ceil(len(run.train_y) / config.batch_size)
    progress = run.progress(f"epoch {epoch + 1}/{config.epochs}", len(run.train_y))
    loss_sum, correct, seen = 0.0, 0, 0
    try:
        for step, (xb, yb) in enumerate(batches(run.train_x, run.train_y, config.batch_size, rng=state.rng), start=1):
            where = f"epoch {epoch + 1}, step {step} (global step {epoch * steps + step})"
            ce, logits = _sgd_step(run, state, xb, yb, lr, where)
            loss_sum += ce * len(yb)
            correct += int(np.sum(np.argmax(logits, axis=1) == yb))
            seen += len(yb)
            progress.update(seen, loss=loss_sum / seen)
    finally:
        progress.close()
    return loss_sum / seen, correct / seen, seen


def _sgd_step(run, state, xb, yb, lr, where):
    """Augment, forward, backward, update ``state``, each result checked: (cross-entropy, logits)."""
    config = run.config
    if config.augment:
        xb = augment(xb, state.rng)
    grads, (loss, ce, r, logits, bn_state) = run.step_fn(state.params, state.bn_state, normalize(xb, run.mean, run.std), yb, state.rng)
    _guard(run, where, {"cross-entropy loss": ce, "orthogonality R": r, "loss (cross-entropy + λ·R)": loss})
    _guard(run, where, _named("gradient of", grads), f" (the loss, {float(loss):.4g}, was finite)")
    state.params, state.momentum = sgd_step(state.params, grads, state.momentum, lr=lr, momentum=config.momentum,
                                            weight_decay=config.weight_decay, nesterov=config.nesterov)
    state.bn_state = bn_state
    _guard(run, where, _named("parameter", state.params) | _named("momentum buffer of", state.momentum or {})
           | _named("BN statistic", bn_state), f" after the SGD update with lr {lr:.4g}")
    return float(ce), logits


def _test_metrics(run, state, epoch):
    """Test loss and accuracy and R after ``epoch``, checked."""
    progress = run.progress(f"epoch {epoch + 1}/{run.config.epochs} test", len(run.test_y))
    test_loss, test_acc = evaluate(run.model, state.params, state.bn_state, run.test_x, run.test_y,
                                   mean=run.mean, std=run.std, progress=progress)
    r = float(run.model.orthogonality(state.params))
    _guard(run, f"the end of epoch {epoch + 1}", {"test loss": test_loss, "orthogonality R": r})
    return {"test_loss": test_loss, "test_acc": test_acc, "orthogonality": r}


def _named(what, tree):
    return {f"{what} {name!r}": value for name, value in flatten(tree).items()}


def _guard(run, where, values, context=""):
    """Raise NonFiniteValue naming the first NaN/inf among ``values`` ({what: array or scalar;
    None is skipped})."""
    for what, value in values.items():
        if value is not None and not np.all(np.isfinite(value)):
            raise NonFiniteValue(
                f"non-finite {what}{context} at {where}; stopped. {runs.describe_last_checkpoint(run.folder)} "
                f"Try a smaller learning rate (lr)."
            )


def _save_epoch(run, state, record):
    """The epoch's files: weights, then the log, then the checkpoint. An epoch counts as done
    (for a resume) once its checkpoint is written; a resume drops log lines newer than that."""
    state.records.append(record)
    state.done = record["epoch"]
    save_weights(run.folder / runs.WEIGHTS, run.model, state.params, state.bn_state)
    runs.write_log(run.folder / runs.LOG, state.records)
    runs.save_checkpoint(run.folder / runs.CHECKPOINT, run.model, state.params, state.bn_state, state.momentum,
                         state.done, state.rng, run.config, state.extensions)


def _epoch_line(r):
    return (f"epoch {r['epoch']:3d}/{r['epochs']}  train loss {r['train_loss']:.4f} acc {r['train_acc']:.4f}  "
            f"test loss {r['test_loss']:.4f} acc {r['test_acc']:.4f}  R {r['orthogonality']:.4g}  "
            f"lr {r['lr']:.4g}  {r['seconds']:.1f}s ({r['images_per_second']:.0f} img/s)")
