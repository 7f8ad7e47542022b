"""Weight files: ``.npz`` with exactly the keys of the authors' PyTorch ``state_dict``.

PyTorch lists a module reused by several blocks once per owner, so a shared basis appears under
its own name (``shared_basis_1_1.weight``) and again under every block that uses it
(``layer1.1.shared_basis_1.weight``). Saving writes those copies; loading checks that they are
identical and keeps one array. So ``torch_model.load_state_dict(dict(np.load(f)), strict=True)``
accepts a minibasis file, and minibasis loads the authors' checkpoints. No pickle.
"""

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
        owner = mod.alias or mod.name
        if mod.kind == "conv":
            layout.append((f"{mod.name}.weight", mod.shape, "params", f"{owner}.weight"))
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
    """{state_dict key: array} -> (params, state), checking every key, shape and shared copy.

    All problems are collected and reported in one ValueError that names each missing,
    unexpected or misshapen key and each copy of a shared basis that differs from its owner.
    """
    layout = state_dict_layout(model)
    expected = {key for key, *_ in layout}
    problems = [f"missing key {key!r}" for key, *_ in layout if key not in state_dict]
    problems += [f"unexpected key {key!r}" for key in state_dict if key not in expected]
    trees = {"params": {}, "state": {}}
    for key, shape, where, source in layout:
        if key not in state_dict:
            continue
        value = np.asarray(state_dict[key])
        if value.shape != tuple(shape):
            problems.append(f"key {key!r}: expected shape {tuple(shape)}, got {value.shape}")
            continue
        if source in trees[where]:
            if not np.array_equal(trees[where][source], value):
                problems.append(f"key {key!r}: expected a copy identical to {source!r} (a shared basis), got a different array")
            continue
        trees[where][source] = value
    if problems:
        raise ValueError(f"state_dict does not fit {model.spec.name}: " + "; ".join(problems))
    return unflatten(trees["params"]), unflatten(trees["state"])


def save_weights(path, model, params, state):
    """Write the state_dict to ``path`` (.npz) atomically: a temp file, then rename."""
    return atomic_savez(path, to_state_dict(model, params, state))


def load_weights(path, model):
    """Read a state_dict ``.npz`` (the authors' keys) into ``(params, state)`` for ``model``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"path: expected an existing .npz weight file, got {str(path)!r}")
    with np.load(path, allow_pickle=False) as f:
        return from_state_dict(model, {key: f[key] for key in f.files})
