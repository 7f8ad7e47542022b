"""Weight files: ``.npz`` with exactly the keys of the authors' PyTorch ``state_dict``.

PyTorch lists a module reused by several blocks once per owner, so a shared basis appears under
its own name (``shared_basis_1_1.weight``) and again under every block that uses it
(``layer1.1.shared_basis_1.weight``). Saving writes those copies; loading checks that they are
identical and keeps one array. So ``torch_model.load_state_dict({k: torch.from_numpy(v) for k, v in
np.load(f).items()}, strict=True)`` accepts a minibasis file, and minibasis loads the authors'
checkpoints. No pickle.
"""

import math
import zipfile
from pathlib import Path

import numpy as np

from .files import atomic_savez
from .tree import flatten, unflatten

BN_PARAMS = ("weight", "bias")
BN_STATE = ("running_mean", "running_var", "num_batches_tracked")


def state_dict_layout(model):
    """[(key, shape, where, source)] in PyTorch's order: where is 'params' or 'state'; source is
    the dotted name in that tree (for a shared basis copy, the owner's)."""
    layout = []
    for mod in model.modules:
        owner = model.owner_of(mod.name)
        if mod.kind == "conv":
            layout.append((f"{mod.name}.weight", mod.shape, "params", f"{owner}.weight"))
            if mod.bias:
                layout.append((f"{mod.name}.bias", mod.shape[:1], "params", f"{owner}.bias"))
        elif mod.kind == "bn":
            for key in BN_PARAMS:
                layout.append((f"{mod.name}.{key}", mod.shape, "params", f"{mod.name}.{key}"))
            for key in BN_STATE:
                shape = () if key == "num_batches_tracked" else mod.shape
                layout.append((f"{mod.name}.{key}", shape, "state", f"{mod.name}.{key}"))
        else:
            layout.append((f"{mod.name}.weight", mod.shape, "params", f"{mod.name}.weight"))
            layout.append((f"{mod.name}.bias", mod.shape[:1], "params", f"{mod.name}.bias"))
    return layout


def to_state_dict(model, params, state):
    """(params, state) -> {state_dict key: array}, shared bases repeated as PyTorch does."""
    trees = {"params": flatten(params), "state": flatten(state)}
    return {key: np.asarray(trees[where][source]) for key, _, where, source in state_dict_layout(model)}


def from_state_dict(model, state_dict):
    """{state_dict key: array} -> (params, state), checking every key, shape, dtype, value and
    shared copy.

    The problems are collected and reported in one ValueError (the first six) that names each missing,
    unexpected, misshapen or mistyped key, each non-finite array or negative ``running_var``,
    and each copy of a shared array that differs from its owner. The floating arrays must all
    have one dtype (float32 or float64: what the model then computes in; minibasis never casts
    silently), ``num_batches_tracked`` an integer one.
    """
    layout = state_dict_layout(model)
    expected = {key for key, *_ in layout}
    problems = [f"missing key {key!r}" for key, *_ in layout if key not in state_dict]
    problems += [f"unexpected key {key!r}" for key in state_dict if key not in expected]
    trees, float_dtypes = {"params": {}, "state": {}}, {}
    for key, shape, where, source in layout:
        if key not in state_dict:
            continue
        value = np.asarray(state_dict[key])
        problem = _value_problem(key, value, tuple(shape))
        if problem:
            problems.append(problem)
            continue
        if value.dtype.kind == "f":
            float_dtypes.setdefault(value.dtype, key)
        if source in trees[where]:
            if not np.array_equal(trees[where][source], value):
                problems.append(
                    f"key {key!r}: expected a copy identical to {source!r} (a shared array), got a different array"
                )
            continue
        trees[where][source] = value
    if len(float_dtypes) > 1:
        problems.append(
            "expected one floating dtype for all arrays, got "
            + ", ".join(f"{dtype} (e.g. {key!r})" for dtype, key in float_dtypes.items())
        )
    if problems:
        more = f"; and {len(problems) - 6} more" if len(problems) > 6 else ""
        raise ValueError(f"state_dict does not fit {model.spec.name}: " + "; ".join(problems[:6]) + more)
    return unflatten(trees["params"]), unflatten(trees["state"])


def _value_problem(key, value, shape):
    """What is wrong with one array of a state_dict (None: nothing)."""
    if value.shape != shape:
        return f"key {key!r}: expected shape {shape}, got {value.shape}"
    if key.endswith("num_batches_tracked"):
        return None if value.dtype.kind in "iu" else f"key {key!r}: expected an integer dtype, got {value.dtype}"
    if value.dtype not in (np.float32, np.float64):
        return f"key {key!r}: expected dtype float32 or float64, got {value.dtype}"
    if not np.all(np.isfinite(value)):
        return f"key {key!r}: expected finite values, got {int(np.sum(~np.isfinite(value)))} NaN/inf"
    if key.endswith("running_var") and np.any(value < 0):
        return f"key {key!r}: expected a variance ≥ 0, got a minimum of {value.min()}"
    return None


def save_weights(path, model, params, state):
    """Write the state_dict to ``path`` (.npz) atomically: a temp file, then rename. Refused
    (ValueError, nothing written) when the file would not load: another model's trees, a
    non-finite value, a dtype other than float32/float64, or mixed floating dtypes."""
    model.check_trees(params, state)
    arrays = to_state_dict(model, params, state)
    problems = [_value_problem(key, arrays[key], tuple(shape)) for key, shape, *_ in state_dict_layout(model)]
    problems = [problem for problem in problems if problem]
    dtypes = sorted({str(a.dtype) for a in arrays.values() if a.dtype.kind == "f"})
    if len(dtypes) > 1:
        problems.append(f"expected one floating dtype for all arrays, got {', '.join(dtypes)}")
    if problems:
        raise ValueError(f"{path}: refusing to write weights that would not load: {'; '.join(problems[:3])}")
    return atomic_savez(path, arrays)


MAX_NPZ_BYTES = 1 << 32  # 4 GiB: far above any model of the zoo (ImageNet ResNet101: 180 MB)


def read_npz(path, what="an .npz file", max_bytes=MAX_NPZ_BYTES):
    """{key: array} of an ``.npz`` file, every problem a ValueError naming the file: not there,
    not an .npz archive (a .npy, a text file, truncated or damaged), holding pickled objects, or
    declaring arrays larger than the bytes it holds or than ``max_bytes`` in all (checked in the
    headers, before anything is allocated)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: expected {what}, found {'a folder' if path.is_dir() else 'no file'}")
    with open(path, "rb") as f:
        magic = f.read(6)
    if not magic.startswith(b"PK"):  # every .npz is a zip archive
        kind = (
            "a single .npy array"
            if magic == b"\x93NUMPY"
            else "an empty file"
            if not magic
            else "a file that is not a zip archive"
        )
        raise ValueError(f"{path}: expected {what}, got {kind}")
    try:
        _check_declared_sizes(path, what, max_bytes)
        with np.load(path, allow_pickle=False) as f:
            return {key: f[key] for key in f.files}
    except ValueError as error:  # pickled objects refused
        raise ValueError(f"{path}: expected {what}, got {_first_line(error)}") from None
    except (OSError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile, KeyError) as error:  # truncated, damaged
        raise ValueError(
            f"{path}: expected {what}, got an unreadable archive ({type(error).__name__}: {_first_line(error)})"
        ) from None


def _check_declared_sizes(path, what, max_bytes):
    """Each entry's declared shape against what the archive holds, before any array is made."""
    total = 0
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            with archive.open(info) as member:
                try:
                    major, _ = np.lib.format.read_magic(member)
                    fmt = np.lib.format
                    read_header = fmt.read_array_header_1_0 if major == 1 else fmt.read_array_header_2_0
                    shape, _, dtype = read_header(member)
                except ValueError:  # np.load says what is wrong
                    continue
            size = math.prod(shape) * dtype.itemsize
            total += size
            if size > info.file_size or total > max_bytes:
                too_big = size > info.file_size
                why = "more than the archive holds" if too_big else f"more than {max_bytes / 2**30:g} GiB in all"
                raise ValueError(
                    f"an entry {info.filename[:-4]!r} that declares shape {shape} of {dtype} "
                    f"({size / 2**30:.3g} GiB), {why}"
                )  # read_npz names the file


def _first_line(error):
    return str(error).strip().splitlines()[0] if str(error).strip() else "no detail"


def load_weights(path, model):
    """Read a state_dict ``.npz`` (the authors' keys) into ``(params, state)`` for ``model``;
    a ValueError naming the file and the first problems when it does not fit."""
    arrays = read_npz(path, "a weights .npz file (PyTorch state_dict keys)")
    try:
        return from_state_dict(model, arrays)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
