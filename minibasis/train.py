"""Training and evaluation on CIFAR: the loop, its metrics, and the guard against non-finite values.

One step::

    uint8 batch ─augment─normalize─► x ─model.apply(train=True)─► logits
    loss = cross_entropy(logits, y) + λ·R(params)        (R: the orthogonality regulariser)
    grads = gradient_and_aux(loss)  ─► sgd_step ─► params, momentum     (minibasis.autodiff)

After every epoch the run folder (:mod:`minibasis.runs`) gets ``checkpoint.npz``, ``weights.npz``
and a line of ``log.jsonl``, each written atomically; ``resume=True`` continues from the
checkpoint (the run's source of truth), and the interrupted-and-resumed run ends bit-identical
to an uninterrupted one. One process at a time trains into a folder (a lock), a fresh run never
replaces another run's files unless asked to (``overwrite=True``) nor a file minibasis did not
write, a resume never starts again over a run's files, and no file ever holds a NaN or
infinity: every loss, gradient, updated parameter, BN statistic and test metric is checked, and
the first non-finite one stops the run, named, with the last checkpoint intact.
"""

import math
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np

from . import backend, runs
from .autodiff import gradient_and_aux
from .checks import boolean, fail, integer, one_of, real
from .data import DATASETS, augment, batches, load_cifar, normalize, resolve_data, stratified_subset
from .files import folder_lock
from .layers import cross_entropy
from .mode import is_reference
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
    lam: float = None  # None: 10 for the shared variants, 0 for the original and NonShared (train() records which)
    augment: bool = True
    seed: int = 0

    def resolved_lambda(self):
        if self.lam is not None:
            return float(self.lam)
        return DEFAULT_LAMBDA if create_model(self.model).regulariser else 0.0  # as the authors' scripts

    def check(self, where=None):
        """Every field, before any data or file is touched. ``where``: the file the values come
        from (errors then name ``<file>['<field>']``, not an option the user did not type)."""
        name = (lambda field: f"{where}['{field}']") if where else (lambda field: field)
        try:
            spec = create_model(self.model).spec
        except (ValueError, TypeError) as error:  # it lists the valid specs
            raise ValueError(f"{name('model')}: {error}") from None
        one_of(name("dataset"), self.dataset, sorted(DATASETS))
        if spec.dataset in DATASETS and spec.name.startswith(f"{spec.dataset}-") and spec.dataset != self.dataset:
            fail(
                name("model"),
                f"a model for {self.dataset} (dataset), not one the spec names for {spec.dataset}",
                repr(self.model),
            )
        for field in ("train_size", "test_size"):
            if getattr(self, field) is not None:  # None: all images
                integer(name(field), getattr(self, field), 1)
        integer(name("epochs"), self.epochs, 1)
        integer(name("batch_size"), self.batch_size, 1)
        for field in ("lr", "momentum", "weight_decay"):
            real(name(field), getattr(self, field), 0)
        boolean(name("nesterov"), self.nesterov)
        if self.nesterov and self.momentum == 0:
            fail(name("nesterov"), "a momentum > 0 with Nesterov momentum", f"momentum {self.momentum}")
        one_of(name("schedule"), self.schedule, SCHEDULES)
        if self.lam is not None:
            real(name("lam"), self.lam, 0)
        boolean(name("augment"), self.augment)
        integer(name("seed"), self.seed, 0)


def config_from_saved(saved, where):
    """The TrainConfig a run's saved configuration (config.json, or a checkpoint's) holds,
    every field checked and named ``<where>['<field>']``; λ resolved (a first-round run saved
    None for the default)."""
    known = [f.name for f in fields(TrainConfig)]
    extra = sorted(set(saved) - set(known) - {"format", "data", "extensions"})
    if extra:
        fail(str(where), "only the fields of a run's configuration", f"an unknown field {extra[0]!r}")
    missing = [name for name in known if name not in saved]
    if missing:
        fail(str(where), "a run configuration with every field", f"one without {', '.join(missing)}")
    if "format" in saved and saved["format"] != runs.FORMAT:
        fail(f"{where}['format']", repr(runs.FORMAT), repr(saved["format"]))
    config = TrainConfig(**{name: saved[name] for name in known})
    config.check(where)
    return replace(config, lam=config.resolved_lambda())


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
    if len(labels) == 0:
        fail("images", "at least one image to evaluate", "none")
    dtype = _float_dtype(params)  # the images are normalised in the parameters' dtype
    total_loss, correct, seen = 0.0, 0, 0
    try:
        for x, y in batches(images, labels, batch_size):
            logits, _ = model.apply(params, state, normalize(x, mean, std).astype(dtype, copy=False), train=False)
            total_loss += float(cross_entropy(logits, y)) * len(y)
            correct += int(np.sum(np.argmax(logits, axis=1) == y))
            seen += len(y)
            if progress is not None:
                progress.update(seen)
    finally:
        if progress is not None:
            progress.close()
    return total_loss / len(labels), correct / len(labels)


def _float_dtype(params):
    return next(np.asarray(leaf).dtype for leaf in flatten(params).values() if np.asarray(leaf).dtype.kind == "f")


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
    index = stratified_subset(labels, size, seed=seed, num_classes=num_classes, name=name)
    return images[index], labels[index]


def evaluation_subset(data, size, *, seed, name="test_size"):
    """The test images a run with ``seed`` evaluates on (``minibasis eval`` picks the same)."""
    return subset(
        data.test_images, data.test_labels, size, seed=seed + 1, num_classes=data.num_classes, name=name
    )  # + 1: not the training draw


def load_run_data(data_path, dataset, *, download=False):
    """``load_cifar`` of what ``resolve_data`` finds, refusing an archive of another dataset."""
    data = load_cifar(resolve_data(data_path, name=dataset, download=download))
    if data.name != dataset:
        fail("dataset", f"a {dataset} archive", f"{data.name} data from {data_path}")
    return data


def saved_config(out_dir):
    """The configuration of the run in ``out_dir`` (its checkpoint's, the source of truth, else
    its ``config.json``'s), or None when it holds neither: what ``minibasis train --resume``
    starts from."""
    saved = _saved_run(Path(out_dir))
    return None if saved is None else config_from_saved(*saved)


def _saved_run(folder):
    """``(saved configuration dict, where it comes from)`` of the run in ``folder``, or None."""
    checkpoint, config = folder / runs.CHECKPOINT, folder / runs.CONFIG
    if checkpoint.is_file():
        return runs.read_checkpoint_run(checkpoint), f"{checkpoint}['config']"
    if config.is_file():
        return runs.read_config(config), config
    return None


def recorded_data(out_dir):
    """The data path the run in ``out_dir`` recorded (None: none recorded)."""
    saved = _saved_run(Path(out_dir))
    data = saved[0].get("data") if saved else None
    return data.get("path") if isinstance(data, dict) else None


# ------------------------------------------------------------------------------------ train


def train(
    config,
    out_dir,
    *,
    data_path=None,
    download=False,
    resume=False,
    overwrite=False,
    stop_after=None,
    quiet=False,
    progress_every=DEFAULT_EVERY,
    device="cpu",
    print_fn=print,
    allow_other_data=False,
):
    """Train ``config.model`` on a CIFAR subset into the run folder ``out_dir``; returns the
    per-epoch records (those of ``log.jsonl``).

    out_dir: created if missing, locked while training; refused if it is the file-system root
    or the home folder. A fresh run refuses a folder that holds another run's files (config,
    log, weights, checkpoint, or a temp file of one) unless ``overwrite=True``, which removes
    them first; it refuses, even then, a file of one of those names that minibasis did not
    write. ``resume=True`` continues the run there from its checkpoint, having checked the whole
    folder against it; every field of ``config`` must equal the run's (λ compared as resolved)
    except ``epochs``, which may grow to extend the run (the remaining epochs then follow the
    schedule of a run of the new length; the change is recorded in ``config.json`` and each log
    record's ``"epochs"``). A resume without ``data_path`` reads the data the run recorded; data
    other than the run's (by SHA-256) is refused unless ``allow_other_data=True``. A finished run
    resumed without more epochs trains nothing and says so. A folder whose log or weights
    outlived its checkpoint is refused, never started again. stop_after: leave after this many
    epochs of this call. quiet: no progress; else progress on stderr (a plain line every
    ``progress_every`` seconds when stderr is not a terminal). device: 'cpu' or 'gpu' (the
    convolutions on CuPy, see :mod:`minibasis.backend`).

    Raises :class:`NonFiniteValue` naming the first non-finite value, ``FileExistsError`` /
    ``FileNotFoundError`` for a folder that holds a run / none to resume, ``ValueError`` for a
    bad argument or a damaged run file, :class:`minibasis.files.FolderBusy` when another
    process trains into the folder.
    """
    config.check()
    folder = _check_call(out_dir, resume, overwrite, stop_after, quiet, progress_every)
    boolean("allow_other_data", allow_other_data)
    config = replace(config, lam=config.resolved_lambda())  # the run records the λ it uses
    if resume and data_path is None:
        data_path = recorded_data(folder)
    with backend.use(backend.get(device)):
        data = load_run_data(data_path, config.dataset, download=download)  # a bad --data leaves no folder
        run = _Run.of(config, folder, data, None if quiet else progress_every, print_fn)
        legacy_lock_ok = bool(runs.run_files(folder)) and runs.foreign_file(folder) is None  # a run of ours there
        with folder_lock(folder, adopt=legacy_lock_ok):
            state = _resume(run, allow_other_data) if resume else _start(run, overwrite)
            with np.errstate(all="ignore"):  # every value is checked (_guard): no warnings besides
                return _train_epochs(run, state, stop_after)


def _check_call(out_dir, resume, overwrite, stop_after, quiet, progress_every):
    """train()'s own arguments; returns the run folder as a Path."""
    folder = Path(out_dir)
    if folder.is_symlink() and not folder.exists():
        fail(
            "out_dir",
            "a folder for the run (or a path to create one)",
            f"{str(folder)!r}, a symbolic link to {str(folder.readlink())!r}, which does not exist",
        )
    if folder.exists() and not folder.is_dir():
        fail("out_dir", "a folder for the run (or a path to create one)", f"the file {str(folder)!r}")
    if folder.resolve() in (Path(folder.anchor or "/").resolve(), Path.home().resolve()):
        fail("out_dir", "a folder of the run's own (not the file-system root or the home folder)", repr(str(folder)))
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
    data: dict  # the identity of the data (CifarData.source)
    kernels: str  # 'fast' or 'reference' (MINIBASIS_REFERENCE)
    progress_every: float  # None: quiet
    print_fn: object
    step_fn: object  # params, BN state, x, y, rng -> (grads, training_loss's aux)

    @classmethod
    def of(cls, config, folder, data, progress_every, print_fn):
        model = create_model(config.model, num_classes=data.num_classes)
        lam = config.resolved_lambda()
        train = subset(
            data.train_images,
            data.train_labels,
            config.train_size,
            seed=config.seed,
            num_classes=data.num_classes,
            name="train_size",
        )
        test = evaluation_subset(data, config.test_size, seed=config.seed)
        step_fn = gradient_and_aux(lambda p, s, x, y, rng: training_loss(model, p, s, x, y, lam, rng))
        kernels = "reference" if is_reference() else "fast"
        return cls(
            config,
            folder,
            model,
            lam,
            *train,
            *test,
            *data.stats,
            data.source,
            kernels,
            progress_every,
            print_fn,
            step_fn,
        )

    def progress(self, label, total, run_left):
        """Progress of a phase; ``run_left(rate)``: the seconds the run takes after it."""
        return Progress(label, total, every=self.progress_every, run_left=run_left)


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


def _fresh_state(run, extensions=()):
    params, bn_state = run.model.init(run.config.seed)
    return _State(params, bn_state, None, np.random.default_rng(run.config.seed), 0, [], list(extensions))


def _start(run, overwrite):
    """A fresh run: refuse a folder holding another run's files (remove them if ``overwrite``)
    or a file minibasis did not write, then write ``config.json`` and an empty log."""
    foreign = runs.foreign_file(run.folder)
    if foreign:
        fail(
            str(foreign[0]),
            f"a folder without a run, or a run's {foreign[0].name} that minibasis wrote",
            f"{foreign[1]}; move it away or choose another folder (--out); nothing was changed",
            FileExistsError,
        )
    existing = runs.run_files(run.folder)
    if existing and not overwrite:
        fail(
            str(run.folder),
            "a folder without a run",
            f"one holding {', '.join(sorted(p.name for p in existing))}; continue that run with resume (--resume), "
            "replace it with overwrite (--overwrite), or choose another folder (--out)",
            FileExistsError,
        )
    runs.remove(existing)  # the checkpoint first (runs.RUN_FILES)
    state = _fresh_state(run)
    _write_views(run, state)
    return state


def _resume(run, allow_other_data):
    """Continue the run in the folder: read and check all of it first (configuration, checkpoint,
    log, data, RNG state), and only then write (stale temp files removed; the checkpoint if the
    run was extended or its data changed, then config.json, the log and the weights, as views of
    the checkpoint)."""
    saved = _read_run(run, allow_other_data)
    checkpoint, extension = saved["checkpoint"], saved["extension"]
    if checkpoint:
        state = _State(
            checkpoint.params,
            checkpoint.state,
            checkpoint.momentum,
            checkpoint.rng,
            checkpoint.epoch,
            saved["records"],
            saved["extensions"],
        )
    else:  # killed before its first checkpoint: nothing was trained, the run starts from its beginning
        state = _fresh_state(run, saved["extensions"])
    if extension is not None:
        state.extensions = state.extensions + [extension]
        run.print_fn(_extension_note(run.config, extension))
    elif state.done == run.config.epochs:
        run.print_fn(
            f"{run.folder}: the run is already complete ({state.done} of {state.done} epochs); "
            f"nothing to train. To extend it, resume with more epochs (--epochs N, N > {state.done})."
        )
    else:
        run.print_fn(f"{run.folder}: resuming at epoch {state.done + 1} of {run.config.epochs}")
    runs.remove(runs.stale_temp_files(run.folder))  # we hold the lock: nobody else is writing them
    if checkpoint and saved["changed"]:
        _save_checkpoint(run, state)
    _write_views(run, state)
    return state


def _read_run(run, allow_other_data):
    """Every file a resume reads, each checked, the configuration first (so that another
    model's checkpoint is reported as a different configuration, not as missing weights):
    {checkpoint, records, extension, extensions, changed}."""
    folder = run.folder
    foreign = runs.foreign_file(folder)
    if foreign and foreign[1] != runs.NOT_OURS:  # a link or a FIFO: never read; the rest, read and named
        fail(str(foreign[0]), f"the run's {foreign[0].name}", f"{foreign[1]}; move it away", FileExistsError)
    checkpoint_path, config_path = folder / runs.CHECKPOINT, folder / runs.CONFIG
    config_json = runs.read_config(config_path) if config_path.exists() else None
    if not checkpoint_path.exists():
        return _read_run_without_checkpoint(run, config_json, allow_other_data)
    saved = runs.read_checkpoint_run(checkpoint_path)
    _check_same_run(config_from_saved(saved, f"{checkpoint_path}['config']"), run.config, checkpoint_path)
    checkpoint = runs.load_checkpoint(checkpoint_path, run.model)
    dtype = _float_dtype(checkpoint.params)
    if dtype != np.float32:  # minibasis train computes in float32
        fail(
            str(checkpoint_path),
            "float32 weights, what minibasis train writes",
            f"{dtype} ones (not a checkpoint of "
            "minibasis train); start a fresh run from the beginning (--overwrite, or another --out)",
        )
    if config_json is not None:
        _check_config_agrees(config_json, saved, config_path, checkpoint_path, checkpoint.epoch)
    records = _check_log(run, checkpoint, checkpoint_path)
    changed = _check_data(run, checkpoint.data, checkpoint_path, allow_other_data)
    if checkpoint.kernels not in (None, run.kernels):
        run.print_fn(
            f"note: {checkpoint_path} was written with the {checkpoint.kernels} kernels and this run uses the "
            f"{run.kernels} ones (MINIBASIS_REFERENCE): the continuation differs from an uninterrupted run "
            "in the last bits"
        )
    extension = _extension(saved["epochs"], run.config.epochs, checkpoint.epoch)
    return {
        "checkpoint": checkpoint,
        "records": records,
        "extension": extension,
        "extensions": checkpoint.extensions,
        "changed": changed or extension is not None or checkpoint.kernels != run.kernels,
    }


def _read_run_without_checkpoint(run, config_json, allow_other_data):
    """A folder without a checkpoint resumes only as a run killed before its first one: its
    config.json (or the temp file of one) and an empty log, nothing trained to lose."""
    folder = run.folder
    checkpoint_path, log_path = folder / runs.CHECKPOINT, folder / runs.LOG
    records = runs.read_log(log_path) if log_path.exists() else []
    if records or (folder / runs.WEIGHTS).exists():
        what = f"{log_path} records {len(records)} epochs" if records else f"{folder / runs.WEIGHTS} exists"
        fail(
            str(checkpoint_path),
            "the checkpoint of the run (a resume continues from it)",
            f"no file, though {what}; restore it, or start the run again with --overwrite (which deletes the "
            "run's files)",
            FileNotFoundError,
        )
    if config_json is None:
        if not runs.stale_temp_files(folder):
            fail(
                str(folder),
                "a run to resume (checkpoint.npz or config.json)",
                "a folder without one; start the run without resume (--resume)",
                FileNotFoundError,
            )
        return {"checkpoint": None, "records": [], "extension": None, "extensions": [], "changed": False}
    saved = config_from_saved(config_json, folder / runs.CONFIG)
    _check_same_run(saved, run.config, folder / runs.CONFIG)
    _check_data(run, config_json.get("data"), folder / runs.CONFIG, allow_other_data)
    extensions = config_json.get("extensions", [])
    if not isinstance(extensions, list):
        fail(f"{folder / runs.CONFIG}['extensions']", "a JSON list", repr(extensions))
    return {
        "checkpoint": None,
        "records": [],
        "extension": _extension(saved.epochs, run.config.epochs, 0),
        "extensions": extensions,
        "changed": False,
    }


def _extension(saved_epochs, epochs, done):
    return None if epochs == saved_epochs else {"at_epoch": done, "from_epochs": saved_epochs, "to_epochs": epochs}


def _check_same_run(saved, config, source):
    """``config`` must be the run's ``saved`` configuration (a TrainConfig, λ resolved in both)
    but for ``epochs``, which may grow to extend the run."""
    differences = [
        f"{k} {v!r} (the run's: {getattr(saved, k)!r})"
        for k, v in asdict(config).items()
        if k != "epochs" and getattr(saved, k) != v
    ]
    if differences:
        fail(
            "config",
            f"the configuration of the run in {source} (only epochs may change, to extend it)",
            "; ".join(differences),
        )
    if config.epochs < saved.epochs:
        fail(
            "epochs",
            f"at least {saved.epochs}, the run's epochs (a run can be extended, not shortened)",
            repr(config.epochs),
        )


def _check_config_agrees(config_json, saved, config_path, checkpoint_path, done):
    """config.json must say what the checkpoint holds, or what it held before the resume that
    extended it at ``done`` epochs (a kill between the two writes)."""
    config_from_saved(config_json, config_path)  # its own fields first: a bad one is named as such
    mine = {"data": None, "extensions": [], **{k: v for k, v in config_json.items() if k != "format"}}
    last = saved["extensions"][-1] if saved["extensions"] else None
    before = (
        last
        and last.get("at_epoch") == done
        and {**saved, "epochs": last["from_epochs"], "extensions": saved["extensions"][:-1]}
    )
    if mine in (saved, before):
        return
    differences = [
        f"{k} {mine.get(k)!r} (the checkpoint's: {saved.get(k)!r})"
        for k in {**saved, **mine}
        if mine.get(k) != saved.get(k)
    ]
    fail(
        str(config_path),
        f"the configuration that {checkpoint_path} holds (the run's record; delete "
        f"{config_path.name} to have it written again from the checkpoint)",
        "; ".join(sorted(differences)[:3]),
    )


def _check_log(run, checkpoint, checkpoint_path):
    """The records of the checkpoint's epochs; log.jsonl must hold them, or all but the last (a
    kill between the checkpoint's write and the log's)."""
    log_path = run.folder / runs.LOG
    log = runs.read_log(log_path) if log_path.exists() else None
    if checkpoint.records is None:  # a first-round checkpoint: the log holds the records
        return _records_until(log, checkpoint.epoch, log_path)
    if log is not None and not (log == checkpoint.records[: len(log)] and len(log) >= checkpoint.epoch - 1):
        differing = (i for i, (a, b) in enumerate(zip(log, checkpoint.records)) if a != b)
        first = next(differing, min(len(log), checkpoint.epoch))
        fail(
            str(log_path),
            f"the records of epochs 1–{checkpoint.epoch} that {checkpoint_path} holds (the run's record)",
            f"{len(log)} records, the first that differs epoch {first + 1}; delete {log_path.name} to have it written "
            "again from the checkpoint",
        )
    return checkpoint.records


def _check_data(run, recorded, where, allow_other_data):
    """The data loaded must be the data the run recorded (by SHA-256); True if it changed."""
    if not recorded or recorded.get("sha256") == run.data["sha256"]:
        return bool(recorded) and recorded != run.data  # moved: the new path is recorded
    if not allow_other_data:
        sha = str(recorded.get("sha256"))[:12]
        fail(
            "data",
            f"the data of the run recorded in {where} ({recorded.get('path')}, SHA-256 {sha}…)",
            f"{run.data['path']} (SHA-256 {run.data['sha256'][:12]}…); pass allow_other_data=True "
            "(--allow-other-data) to train on it all the same",
        )
    run.print_fn(f"note: training on {run.data['path']}, not on the run's {recorded.get('path')} (allowed; recorded)")
    return True


def _extension_note(config, extension):
    """What extending a run does to its schedule, in one line."""
    first, last = extension["at_epoch"] + 1, config.epochs
    lrs = [learning_rate(config.schedule, e, base_lr=config.lr, epochs=last) for e in range(first - 1, last)]
    shown = ", ".join(f"{lr:.4g}" for lr in lrs[:12]) + (", …" if len(lrs) > 12 else "")
    return (
        f"extending the run from {extension['from_epochs']} to {last} epochs: epochs {first}–{last} follow the "
        f"{config.schedule} schedule of a {last}-epoch run (lr {shown}); the epochs done keep theirs"
    )


def _records_until(records, done, path):
    """The log records of the ``done`` epochs of a first-round checkpoint (newer ones are dropped)."""
    kept = [r for r in records or [] if r["epoch"] <= done]
    if len(kept) != done:
        fail(
            str(path),
            f"the records of epochs 1–{done} (the checkpoint's)",
            f"records of epochs 1–{len(kept)}" if kept else ("no records" if records is not None else "no log"),
        )
    return kept


def _write_views(run, state):
    """config.json, the log and (once an epoch is done) the weights: what the checkpoint holds."""
    runs.write_config(run.folder / runs.CONFIG, run.config, state.extensions, run.data)
    runs.write_log(run.folder / runs.LOG, state.records)
    if state.done:
        save_weights(run.folder / runs.WEIGHTS, run.model, state.params, state.bn_state)


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
        record = {
            "epoch": epoch + 1,
            "epochs": config.epochs,
            "train_loss": train_loss,
            "train_acc": train_acc,
            **_test_metrics(run, state, epoch, seconds),
            "lr": lr,
            "lam": run.lam,
            "images_per_second": images / seconds,
        }
        record["seconds"] = time.perf_counter() - start
        _save_epoch(run, state, record)
        run.print_fn(_epoch_line(record))
    return state.records


def _train_epoch(run, state, epoch, lr):
    """One pass over the training subset, one SGD step per batch: (mean loss, accuracy, images)."""
    config = run.config
    steps = math.ceil(len(run.train_y) / config.batch_size)

    def run_left(rate):  # this epoch's test, then the epochs after it (as long as the last one, if known)
        return len(run.test_y) / rate + _epochs_after(run, state, epoch) * (
            _last_epoch_seconds(state) or (len(run.train_y) + len(run.test_y)) / rate
        )

    progress = run.progress(f"epoch {epoch + 1}/{config.epochs}", len(run.train_y), run_left)
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
    try:
        x = normalize(xb, run.mean, run.std)
        grads, (loss, ce, r, logits, bn_state) = run.step_fn(state.params, state.bn_state, x, yb, state.rng)
    except ValueError as error:
        if len(yb) == 1 and "more than 1 value per channel" in str(error):  # BN of a 1×1 map from a batch of one
            fail(
                "batch_size",
                f"batches of at least 2 images: {config.model}'s last BN sees 1×1 maps at 32 px",
                f"a last batch of 1 image at {where} (batch_size {config.batch_size}, train_size "
                f"{config.train_size}); "
                "change batch_size (--batch-size) or train_size (--train-size)",
            )
        raise
    _guard(run, where, {"cross-entropy loss": ce, "orthogonality R": r, "loss (cross-entropy + λ·R)": loss})
    _guard(run, where, _named("gradient of", grads), f" (the loss, {float(loss):.4g}, was finite)")
    state.params, state.momentum = sgd_step(
        state.params,
        grads,
        state.momentum,
        lr=lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        nesterov=config.nesterov,
    )
    state.bn_state = bn_state
    _guard(
        run,
        where,
        _named("parameter", state.params)
        | _named("momentum buffer of", state.momentum or {})
        | _named("BN statistic", bn_state),
        f" after the SGD update with lr {lr:.4g}",
    )
    return float(ce), logits


def _epochs_after(run, state, epoch):
    """Epochs of the run after ``epoch`` (0-based)."""
    return run.config.epochs - epoch - 1


def _last_epoch_seconds(state):
    return state.records[-1]["seconds"] if state.records else None


def _test_metrics(run, state, epoch, train_seconds):
    """Test loss and accuracy and R after ``epoch``, checked."""

    def run_left(rate):  # the epochs after this one, each as long as the last (or as this one)
        this_epoch = train_seconds + len(run.test_y) / rate
        return _epochs_after(run, state, epoch) * (_last_epoch_seconds(state) or this_epoch)

    progress = run.progress(f"epoch {epoch + 1}/{run.config.epochs} test", len(run.test_y), run_left)
    test_loss, test_acc = evaluate(
        run.model, state.params, state.bn_state, run.test_x, run.test_y, mean=run.mean, std=run.std, progress=progress
    )
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
                f"{_hint(run.config, run.lam)}"
            )


def _hint(config, lam):
    """Which setting most likely diverged: momentum ≥ 1 always does; then an lr above 1, a
    large λ (the regulariser's pull), a weight decay whose step lr·wd reaches 1."""
    if config.momentum >= 1:
        return f"Momentum {config.momentum:g} ≥ 1 makes SGD diverge: try --momentum 0.9."
    if lam > 1e3 and config.lr <= 1:
        return f"Try a smaller orthogonality weight (--lam {lam:g} is large; the authors use 10)."
    if config.weight_decay * config.lr >= 1 and config.lr <= 1:
        return f"Try a smaller weight decay (--weight-decay {config.weight_decay:g} with lr {config.lr:g})."
    return f"Try a smaller learning rate (--lr {config.lr:g})."


def _save_epoch(run, state, record):
    """The epoch's files: the checkpoint, then the weights, then the log. An epoch counts as
    done once its checkpoint is written; the weights and the log are views of it (runs)."""
    state.records.append(record)
    state.done = record["epoch"]
    _save_checkpoint(run, state)
    save_weights(run.folder / runs.WEIGHTS, run.model, state.params, state.bn_state)
    runs.write_log(run.folder / runs.LOG, state.records)


def _save_checkpoint(run, state):
    runs.save_checkpoint(
        run.folder / runs.CHECKPOINT,
        run.model,
        state.params,
        state.bn_state,
        state.momentum,
        state.done,
        state.rng,
        run.config,
        state.extensions,
        records=state.records,
        data=run.data,
        kernels=run.kernels,
    )


def _epoch_line(r):
    return (
        f"epoch {r['epoch']:3d}/{r['epochs']}  train loss {r['train_loss']:.4f} acc {r['train_acc']:.4f}  "
        f"test loss {r['test_loss']:.4f} acc {r['test_acc']:.4f}  R {r['orthogonality']:.4g}  "
        f"lr {r['lr']:.4g}  {r['seconds']:.1f}s ({r['images_per_second']:.0f} img/s)"
    )
