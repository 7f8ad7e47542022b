"""Golden files: everything minibasis computes for one check, for implementations outside PyTorch.

An ``.npz`` (a zip of ``.npy`` files; no pickles) holding, under these keys:

* ``x``, ``labels``: the probe inputs (in the file's dtype) and the integer labels;
* ``weight:K``: every ``state_dict`` array (weights and BN buffers; a shared array under its
  owner and again under every block, as PyTorch lists it), in the file's dtype;
* ``eval:M``, ``train:M``: every module's output in forward order (minibasis' float64);
* ``logits_eval``, ``logits_train``, ``loss_ce``, ``R`` (when the model has a regulariser),
  ``loss`` (CE + λ·R), ``state:K`` (BN state after the train pass), ``grad:K`` (the full
  gradient of the loss for every parameter);
* ``manifest``: a JSON string: spec, minibasis version, dtype, sizes, seed, λ and the
  regulariser's name, the module order, the blocks' copies of shared arrays, coverage, and
  the tolerance of every compared key for float64 and for float32.

The reference arrays are float64, computed from the file's weights and inputs (for a float32
file: rounded to float32 once, then computed in float64).
"""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from .. import __version__
from ..checks import fail
from ..files import atomic_savez
from ..weights import read_npz, to_state_dict
from .case import prepare
from .report import compare_outputs

FORMAT = "minibasis golden 1"


def golden_arrays(case):
    """``{key: array}`` of a golden file for :class:`Case` ``case``, the manifest included."""
    model = case.model
    arrays = {"x": case.x, "labels": case.labels}
    arrays.update({f"weight:{k}": v for k, v in to_state_dict(model, case.params, case.state).items()})
    arrays.update(case.reference)
    manifest = {
        "format": FORMAT,
        "spec": model.spec.name,
        "minibasis_version": __version__,
        "dtype": case.dtype.name,
        "batch": int(case.x.shape[0]),
        "image_size": int(case.x.shape[2]),
        "lambda": case.lam,
        "regulariser": model.regulariser,
        "modules": [key.partition(":")[2] for key in case.reference if key.startswith("eval:")],
        "shared_copies": case.copies(),
        "coverage": list(case.coverage),
        "warnings": list(case.warnings),
        "tolerances": case.tolerances,
    }
    arrays["manifest"] = np.array(json.dumps(manifest))
    return arrays


def write_golden(path, spec, *, batch=2, image_size=None, seed=0, dtype="float64", lam=None, overwrite=False):
    """Write the golden file of ``spec`` to ``path`` (atomically: a temp file, then a rename);
    returns ``path``. An existing file is refused unless ``overwrite``."""
    path = Path(path)
    if path.exists() and not overwrite:
        fail(
            "out",
            "a path with no file (or overwrite=True, --overwrite)",
            f"{str(path)!r}, which exists",
            FileExistsError,
        )
    if path.suffix != ".npz":
        fail("out", "a path ending in .npz", repr(str(path)))
    case = prepare(spec, batch=batch, image_size=image_size, seed=seed, dtype=dtype, lam=lam, measure_float32=True)
    return atomic_savez(path, golden_arrays(case))


def read_golden(path):
    """``(arrays, manifest)`` of a golden file; a ValueError naming the file if it is not one."""
    arrays = read_npz(path, "a minibasis golden file (.npz)")
    if "manifest" not in arrays:
        raise ValueError(f"{path}: expected a minibasis golden file (a 'manifest' entry), got an .npz without one")
    manifest = json.loads(str(arrays.pop("manifest")))
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{path}: expected format {FORMAT!r}, got {manifest.get('format')!r}")
    return arrays, manifest


def check_golden(path, outputs, *, key_map=None, dtype=None):
    """:class:`OracleReport` of ``outputs`` (your arrays under the golden keys, your names
    through ``key_map``: ``logits_eval``, ``grad:conv1.weight``, ``train:layer1.0.bn1`` …; give
    what you have, the rest is listed as not compared) against the golden file ``path``. An
    implementation outside Python writes them to an ``.npz`` under those keys: pass its path.

    dtype: the tolerances' (``'float64'`` or ``'float32'``); default float32 when any floating
    array of ``outputs`` is float32, else float64."""
    arrays, manifest = read_golden(path)
    if isinstance(outputs, (str, Path)):
        outputs = read_npz(outputs, "an .npz of your outputs under the golden file's keys")
    if not isinstance(outputs, dict) or not outputs:
        expected = "a non-empty dict of arrays (or an .npz) under the golden file's keys"
        fail("outputs", expected, "an empty dict" if outputs == {} else type(outputs).__name__, TypeError)
    if dtype is None:
        single = any(np.asarray(v).dtype == np.float32 for v in outputs.values())
        dtype = "float32" if single else "float64"
    tolerances = manifest["tolerances"].get(np.dtype(dtype).name)
    if tolerances is None:
        fail("dtype", "float64 or float32", repr(dtype))
    reference = {k: v for k, v in arrays.items() if k in tolerances}
    title = (
        f"minibasis oracle: your outputs against {Path(path).name} ({manifest['spec']}, {manifest['batch']} images "
        f"{manifest['image_size']}×{manifest['image_size']}, λ = {manifest['lambda']:g}), "
        f"{np.dtype(dtype).name} tolerances"
    )
    report = compare_outputs(
        reference, tolerances, outputs, key_map=key_map, copies=manifest["shared_copies"], title=title
    )
    return replace(report, coverage=tuple(manifest["coverage"]), warnings=tuple(manifest["warnings"]))
