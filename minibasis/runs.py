"""The run folder: the files a training run writes, and reading them back for a resume.

::

    RUN/config.json      "format": "minibasis run 2", the configuration (λ resolved), the data's
                         identity, the extensions (written when the run starts)
    RUN/log.jsonl        one JSON record per finished epoch
    RUN/weights.npz      the state_dict of the last finished epoch (PyTorch's keys)
    RUN/checkpoint.npz   weights, BN state, SGD momentum, epoch, RNG state, configuration, log
                         records, data identity, kernel form: the run's source of truth
    RUN/.lock            while a process trains into the folder (files.folder_lock)

Each file is written atomically (:mod:`minibasis.files`). After every epoch the checkpoint
comes first, then the weights, then the log: an epoch counts as done once its checkpoint is
written, and the weights and the log are views of it that a resume rewrites. So a folder with
weights or log records but no checkpoint has lost its checkpoint, and is refused, never
restarted over. A folder is a run folder only if minibasis wrote it: :func:`foreign_file`
tells a file minibasis wrote from one with the same name that it did not.

Reading checks everything, so that a resume can read the whole folder before it changes any
file: a damaged or inconsistent file is a ``ValueError`` that names it, ``"<file>: expected …,
got …"``.
"""

import json
import zipfile
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path

import numpy as np

from .checks import fail
from .files import atomic_savez, atomic_write, temp_files
from .tree import flatten, unflatten
from .weights import from_state_dict, read_npz, to_state_dict

CHECKPOINT, WEIGHTS, LOG, CONFIG = "checkpoint.npz", "weights.npz", "log.jsonl", "config.json"
#: The files of a run, in the order a replacement removes them: the checkpoint first, so that a
#: kill midway never leaves an old checkpoint beside a new configuration.
RUN_FILES = (CHECKPOINT, WEIGHTS, LOG, CONFIG)
CHECKPOINT_FORMAT = "a minibasis checkpoint .npz"  # what errors say a checkpoint should be
FORMAT = "minibasis run 2"  # config.json's and checkpoint.npz's "format": the folder is minibasis's
#: config.json of the first round of runs (no "format"): recognised by its exact fields ("extensions" came later).
LEGACY_CONFIG_KEYS = {
    "model",
    "dataset",
    "train_size",
    "test_size",
    "epochs",
    "batch_size",
    "lr",
    "momentum",
    "weight_decay",
    "nesterov",
    "schedule",
    "lam",
    "augment",
    "seed",
    "extensions",
}
NOT_OURS = "a file minibasis did not write (or one damaged since)"  # what foreign_file says of one
STATE_DICT_SUFFIXES = (".weight", ".bias", ".running_mean", ".running_var", ".num_batches_tracked")


def run_files(folder):
    """The run files in ``folder``, with the temp files a killed write of one left behind."""
    found = []
    for name in RUN_FILES:
        path = Path(folder) / name
        found += ([path] if path.exists() else []) + temp_files(path)
    return found


def stale_temp_files(folder):
    """The temp files of run files in ``folder`` (stale when the caller holds the folder's lock)."""
    return [path for name in RUN_FILES for path in temp_files(Path(folder) / name)]


def remove(paths):
    for path in paths:
        Path(path).unlink(missing_ok=True)


def foreign_file(folder):
    """``(path, what it is)`` of the first run-file name in ``folder`` that minibasis did not
    write, or None. Ours: a config.json with our "format" (or the first round's exact fields), a
    checkpoint.npz with our entries, a weights.npz of state_dict keys, a log.jsonl of epoch
    records, a temp file of one of them (by its name); never a link or anything but a file."""
    for name in RUN_FILES:
        path = Path(folder) / name
        if path.is_symlink() or (path.exists() and not path.is_file()):
            return path, "a symbolic link" if path.is_symlink() else "not a regular file"
        if path.is_file() and not _ours(path, name):
            return path, NOT_OURS
    return None


def is_run_config(saved):
    """True for the JSON object of a config.json that minibasis wrote (this format or the first round's)."""
    return saved.get("format") == FORMAT or set(saved) | {"extensions"} == LEGACY_CONFIG_KEYS  # (older: no extensions)


def _ours(path, name):
    try:
        if name == CONFIG:
            return is_run_config(read_config(path))
        if name == LOG:
            return read_log(path) is not None
        with zipfile.ZipFile(path) as archive:  # the names only: nothing is loaded
            names = archive.namelist()
    except (ValueError, OSError, zipfile.BadZipFile):
        return False
    if name == CHECKPOINT:
        return {"config.npy", "epoch.npy", "rng_state.npy"} <= set(names)
    return bool(names) and all(n.endswith(".npy") and n[:-4].endswith(STATE_DICT_SUFFIXES) for n in names)


# ------------------------------------------------------------------------------ checkpoint


@dataclass
class Checkpoint:
    """What ``checkpoint.npz`` holds. ``config``: the configuration as a dict (the fields of
    ``minibasis.train.TrainConfig``); ``extensions``: see :func:`write_config`."""

    params: dict
    state: dict
    momentum: dict  # None before the first step, and for momentum 0
    epoch: int  # epochs done
    rng: np.random.Generator
    config: dict
    extensions: list
    records: list  # the log records of the epochs done (None: a first-round checkpoint)
    data: dict  # the identity of the data trained on (None: a first-round checkpoint)
    kernels: str  # 'fast' or 'reference' (None: a first-round checkpoint)


def save_checkpoint(
    path, model, params, state, momentum, epoch, rng, config, extensions=(), *, records, data=None, kernels="fast"
):
    """Atomic .npz: 'model/<state_dict key>', 'momentum/<param name>', 'epoch', 'rng_state',
    'format', 'kernels' (text), 'config', 'extensions', 'log' and 'data' (JSON text).
    ``config``: a TrainConfig (or its dict); ``records``: the log records of the ``epoch``
    epochs; ``data``: the identity of the data (``CifarData.source``)."""
    arrays = {f"model/{k}": v for k, v in to_state_dict(model, params, state).items()}
    if momentum is not None:
        arrays.update({f"momentum/{k}": v for k, v in flatten(momentum).items()})
    arrays["epoch"] = np.int64(epoch)
    arrays["rng_state"] = np.array(rng_to_json(rng))
    arrays["format"] = np.array(FORMAT)
    arrays["kernels"] = np.array(kernels)
    arrays["config"] = np.array(json.dumps(asdict(config) if is_dataclass(config) else dict(config)))
    arrays["extensions"] = np.array(json.dumps(list(extensions)))
    arrays["log"] = np.array(json.dumps(list(records)))
    arrays["data"] = np.array(json.dumps(data))
    atomic_savez(path, arrays)


def load_checkpoint(path, model):
    """Read and check a checkpoint of ``model``'s run -> :class:`Checkpoint`.

    Checked: a readable .npz with every entry; an integer epoch within the run's epochs; a
    PCG64 state; the weights fit ``model``; momentum buffers with the parameters' names and
    shapes; every array finite. ValueError naming the file (and the entry) otherwise.
    """
    where = str(path)
    arrays = read_npz(path, CHECKPOINT_FORMAT)
    config = _json_entry(arrays, "config", path, dict)
    epoch = _epoch(_entry(arrays, "epoch", path), config, f"{where}['epoch']")
    rng = rng_from_json(_text(_entry(arrays, "rng_state", path), f"{where}['rng_state']"), f"{where}['rng_state']")
    extensions = (
        _json_entry(arrays, "extensions", path, list) if "extensions" in arrays else []
    )  # none before extensions existed
    records = _json_entry(arrays, "log", path, list) if "log" in arrays else None  # a first-round checkpoint
    epochs_recorded = [r.get("epoch") if isinstance(r, dict) else None for r in records or []]
    if records is not None and epochs_recorded != list(range(1, epoch + 1)):
        fail(f"{where}['log']", f"the records of epochs 1–{epoch}", repr(_clip(json.dumps(records))))
    data = _json_entry(arrays, "data", path, dict) if "data" in arrays else None
    kernels = _text(arrays["kernels"], f"{where}['kernels']") if "kernels" in arrays else None
    _check_finite(arrays, where)
    try:
        params, state = from_state_dict(
            model, {k[len("model/") :]: v for k, v in arrays.items() if k.startswith("model/")}
        )
    except ValueError as error:
        fail(where, f"the weights of a {model.spec.name}", str(error))
    momentum = {k[len("momentum/") :]: v for k, v in arrays.items() if k.startswith("momentum/")}
    _check_momentum(momentum, params, epoch, config, where)
    momentum = unflatten(momentum) if momentum else None
    return Checkpoint(params, state, momentum, epoch, rng, config, extensions, records, data, kernels)


def read_checkpoint_config(path):
    """The configuration dict a checkpoint holds (without building its model)."""
    return _json_entry(read_npz(path, CHECKPOINT_FORMAT), "config", path, dict)


def read_checkpoint_run(path):
    """What config.json must agree with: ``{**config, "data": …, "extensions": […]}`` of the
    checkpoint at ``path`` (without building its model)."""
    arrays = read_npz(path, CHECKPOINT_FORMAT)
    data = _json_entry(arrays, "data", path, (dict, type(None))) if "data" in arrays else None
    extensions = _json_entry(arrays, "extensions", path, list) if "extensions" in arrays else []
    return {**_json_entry(arrays, "config", path, dict), "data": data, "extensions": extensions}


def checkpoint_epoch(path):
    """The epochs done that the checkpoint at ``path`` holds."""
    arrays = read_npz(path, CHECKPOINT_FORMAT)
    return _epoch(_entry(arrays, "epoch", path), _json_entry(arrays, "config", path, dict), f"{path}['epoch']")


def _entry(arrays, key, path):
    if key not in arrays:
        fail(str(path), f"a minibasis checkpoint (with {key!r})", f"an .npz without it (entries: {_some(arrays)})")
    return arrays[key]


def _json_entry(arrays, key, path, kind):
    """The JSON ``kind`` (dict or list) in the text entry ``key``."""
    where = f"{path}['{key}']"
    return _json(_text(_entry(arrays, key, path), where), where, kind)


def _some(arrays):
    names = sorted(arrays)
    return ", ".join(names[:5]) + (f", … ({len(names)} in all)" if len(names) > 5 else "") if names else "none"


def _text(array, where):
    if not (isinstance(array, np.ndarray) and array.ndim == 0 and array.dtype.kind == "U"):
        fail(where, "a text scalar", f"{array.dtype} array of shape {array.shape}")
    return str(array)


def _json(text, where, kind):
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        fail(where, f"JSON text ({error.msg} at line {error.lineno}, column {error.colno})", repr(_clip(text)))
    if not isinstance(value, kind):
        fail(where, f"a JSON {'list' if kind is list else 'object'}", repr(_clip(text)))
    return value


def _clip(text, width=40):
    return text if len(text) <= width else text[:width] + "…"


def _epoch(array, config, where):
    epochs = config.get("epochs")
    if not (isinstance(epochs, int) and not isinstance(epochs, bool) and epochs >= 1):
        fail(where.replace("['epoch']", "['config']"), "a configuration with an integer 'epochs' ≥ 1", repr(epochs))
    if array.shape != () or array.dtype.kind not in "iu" or not 0 <= int(array) <= epochs:
        fail(
            where,
            f"an integer in [0, {epochs}] (the run's epochs)",
            repr(array.tolist()) if array.size < 5 else f"shape {array.shape}",
        )
    return int(array)


def rng_to_json(rng):
    return json.dumps(rng.bit_generator.state)


def rng_from_json(text, where):
    """The ``numpy.random.Generator`` (PCG64) whose state is the JSON ``text``."""
    rng = np.random.default_rng()
    try:
        rng.bit_generator.state = json.loads(text)
    except (ValueError, TypeError, KeyError, OverflowError):
        fail(where, "the JSON state of numpy's PCG64 bit generator", repr(_clip(text)))
    return rng


def _check_finite(arrays, where):
    for key, array in arrays.items():
        if array.dtype.kind in "fc" and not np.all(np.isfinite(array)):
            fail(f"{where}['{key}']", "finite values", "NaN or infinity")


def _check_momentum(momentum, params, epoch, config, where):
    shapes = {k: v.shape for k, v in flatten(params).items()}
    if not momentum:
        if config.get("momentum") and epoch > 0:
            fail(
                where,
                f"SGD momentum buffers (momentum/…) after {epoch} epochs with momentum {config['momentum']}",
                "none",
            )
        return
    for key in shapes.keys() | momentum.keys():
        got = momentum[key].shape if key in momentum else "no entry"
        if got != shapes.get(key, "no such parameter"):
            fail(
                f"{where}['momentum/{key}']",
                f"a buffer of shape {shapes.get(key, '(none: no such parameter)')}",
                f"{got}",
            )


# ------------------------------------------------------------------------- config and log


def write_config(path, config, extensions=(), data=None):
    """``config.json``: ``"format"``, the TrainConfig's fields, ``"data"`` (the identity of the
    data, see ``CifarData.source``) and ``"extensions"``, one ``{"at_epoch": k, "from_epochs": n,
    "to_epochs": m}`` per resume that changed the run's epochs from n to m after k epochs were
    done."""
    saved = {"format": FORMAT, **asdict(config), "data": data, "extensions": list(extensions)}
    _write_text(path, json.dumps(saved, indent=1) + "\n")


def read_config(path):
    """The JSON object in ``config.json``."""
    return _json(_read_text(path), str(path), dict)


def write_log(path, records):
    """Rewrite the JSON-lines log (one record per epoch) atomically."""
    _write_text(path, "".join(json.dumps(r) + "\n" for r in records))


def read_log(path):
    """The records of ``log.jsonl``: JSON objects whose ``"epoch"`` counts 1, 2, 3, … (blank
    lines are skipped)."""
    records = []
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}, line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            fail(where, "a JSON record", repr(_clip(line)))
        epoch = record.get("epoch") if isinstance(record, dict) else None
        if not isinstance(record, dict) or isinstance(epoch, bool) or not isinstance(epoch, int):
            fail(where, 'a JSON object with an integer "epoch"', repr(_clip(line)))
        if epoch != len(records) + 1:
            fail(where, f"the record of epoch {len(records) + 1} (records count the epochs)", f"epoch {epoch}")
        records.append(record)
    return records


def _read_text(path):
    try:
        return Path(path).read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        fail(str(path), "UTF-8 text", f"bytes that are not ({error.reason} at byte {error.start})")


def _write_text(path, text):
    atomic_write(path, lambda f: f.write(text.encode()))


def describe_last_checkpoint(folder):
    """One sentence for messages: where the last checkpoint is and which epoch it holds."""
    path = Path(folder) / CHECKPOINT
    if not path.exists():
        return "No checkpoint was written yet."
    try:
        return f"The last checkpoint, {path}, holds epoch {checkpoint_epoch(path)}."
    except ValueError as error:
        return f"The checkpoint cannot be read ({error})."
