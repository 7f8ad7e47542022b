"""The run folder: the files a training run writes, and reading them back for a resume.

::

    RUN/config.json      the configuration and its extensions (written when the run starts)
    RUN/log.jsonl        one JSON record per finished epoch
    RUN/weights.npz      the state_dict of the last finished epoch (PyTorch's keys)
    RUN/checkpoint.npz   weights, BN state, SGD momentum, epoch, RNG state, configuration
    RUN/.lock            locked by the process training into the folder (files.folder_lock)

Each file is written atomically (:mod:`minibasis.files`). After every epoch the weights come
first, then the log, then the checkpoint: an epoch counts as done once its checkpoint is
written, and a resume drops log records newer than the checkpoint.

Reading checks everything, so that a resume can read the whole folder before it changes any
file: a damaged or inconsistent file is a ``ValueError`` that names it, ``"<file>: expected …,
got …"``.
"""

import json
from dataclasses import asdict, dataclass
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


def save_checkpoint(path, model, params, state, momentum, epoch, rng, config, extensions=()):
    """Atomic .npz: 'model/<state_dict key>', 'momentum/<param name>', 'epoch', 'rng_state',
    'config' and 'extensions' (JSON text). ``config``: a TrainConfig."""
    arrays = {f"model/{k}": v for k, v in to_state_dict(model, params, state).items()}
    if momentum is not None:
        arrays.update({f"momentum/{k}": v for k, v in flatten(momentum).items()})
    arrays["epoch"] = np.int64(epoch)
    arrays["rng_state"] = np.array(rng_to_json(rng))
    arrays["config"] = np.array(json.dumps(asdict(config)))
    arrays["extensions"] = np.array(json.dumps(list(extensions)))
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
    extensions = _json_entry(arrays, "extensions", path, list) if "extensions" in arrays else []  # none before extensions existed
    _check_finite(arrays, where)
    try:
        params, state = from_state_dict(model, {k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")})
    except ValueError as error:
        fail(where, f"the weights of a {model.spec.name}", str(error))
    momentum = {k[len("momentum/"):]: v for k, v in arrays.items() if k.startswith("momentum/")}
    _check_momentum(momentum, params, epoch, config, where)
    return Checkpoint(params, state, unflatten(momentum) if momentum else None, epoch, rng, config, extensions)


def read_checkpoint_config(path):
    """The configuration dict a checkpoint holds (without building its model)."""
    return _json_entry(read_npz(path, CHECKPOINT_FORMAT), "config", path, dict)


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
        fail(where, f"a JSON {'object' if kind is dict else 'list'}", repr(_clip(text)))
    return value


def _clip(text, width=40):
    return text if len(text) <= width else text[:width] + "…"


def _epoch(array, config, where):
    epochs = config.get("epochs")
    if not (isinstance(epochs, int) and not isinstance(epochs, bool) and epochs >= 1):
        fail(where.replace("['epoch']", "['config']"), "a configuration with an integer 'epochs' ≥ 1", repr(epochs))
    if array.shape != () or array.dtype.kind not in "iu" or not 0 <= int(array) <= epochs:
        fail(where, f"an integer in [0, {epochs}] (the run's epochs)", repr(array.tolist()) if array.size < 5 else f"shape {array.shape}")
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
            fail(where, f"SGD momentum buffers (momentum/…) after {epoch} epochs with momentum {config['momentum']}", "none")
        return
    for key in shapes.keys() | momentum.keys():
        got = momentum[key].shape if key in momentum else "no entry"
        if got != shapes.get(key, "no such parameter"):
            fail(f"{where}['momentum/{key}']", f"a buffer of shape {shapes.get(key, '(none: no such parameter)')}", f"{got}")


# ------------------------------------------------------------------------- config and log


def write_config(path, config, extensions=()):
    """``config.json``: the TrainConfig's fields and ``"extensions"``, one ``{"at_epoch": k,
    "from_epochs": n, "to_epochs": m}`` per resume that changed the run's epochs from n to m
    after k epochs were done."""
    _write_text(path, json.dumps({**asdict(config), "extensions": list(extensions)}, indent=1) + "\n")


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
