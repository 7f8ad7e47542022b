"""minibasis as a test oracle: prove a fast implementation right, array by array, in float64.

The recipe of tutorial 07, as functions::

    params, state = random_weights(model, seed=0)               # no array at a symmetric default
    save_state_dict("w.npz", model, params, state)              # load it *strictly* on the other side
    ...                                                         # run both on the same inputs
    compare(flatten(grads), their_grads).check(1e-8)            # every key; the worst one named

``compare`` returns a :class:`Comparison`: the relative difference of every array, the worst
key, and a report; ``check(tol)`` raises an AssertionError naming the worst key.

**Key maps.** minibasis names every array by the authors' ``state_dict`` key. Another
implementation may name them otherwise; ``key_map`` (in :func:`export_state_dict`,
:func:`save_state_dict` and :func:`compare`) renames minibasis' keys to the other side's: a
dict (keys not in it keep their name; a key mapped to None is left out) or a function
``key -> new key or None``. The common case: a PyTorch model that keeps each shared basis as a
top-level ``nn.Parameter`` (``self.shared_basis_1_1 = nn.Parameter(...)``, handed to the
blocks in ``forward``) has the key ``shared_basis_1_1`` where the authors' model, whose shared
basis is an ``nn.Conv2d`` module, has ``shared_basis_1_1.weight``; and its blocks hold no
copies (``layer1.1.shared_basis_1.weight``, …), so a strict load of a minibasis file fails on
both. :func:`shared_bases_as_parameters` is that map::

    save_state_dict("w.npz", model, params, state, key_map=shared_bases_as_parameters)
    net.load_state_dict({k: torch.from_numpy(v) for k, v in np.load("w.npz").items()}, strict=True)
    theirs = {name: p.grad.numpy() for name, p in net.named_parameters()}
    compare(flatten(grads), theirs, key_map=shared_bases_as_parameters).check(1e-8)
"""

import math
import re
from dataclasses import dataclass

import numpy as np

from .checks import fail, integer, real
from .files import atomic_savez
from .tree import flatten, unflatten
from .weights import to_state_dict

# ------------------------------------------------------------------------ differences


def relative_difference(value, reference):
    """max |value − reference| / max(1, max |reference|), in float64.

    An absolute difference for arrays of order 1 and below, a relative one for large arrays:
    float64 rounding then shows as ~1e-15 whatever the scale, and a bug as far more. 0.0 for
    empty arrays; NaN when either side holds a NaN.
    """
    value, reference = np.asarray(value, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    if value.shape != reference.shape:
        fail("value", f"shape {reference.shape} (that of reference)", f"shape {value.shape}")
    if value.size == 0:
        return 0.0
    return float(np.max(np.abs(value - reference)) / max(1.0, float(np.max(np.abs(reference)))))


@dataclass(frozen=True)
class Comparison:
    """The relative difference (:func:`relative_difference`) of every array, by key."""

    differences: dict

    @property
    def worst(self):
        """The key of the largest difference (a NaN counts as the largest)."""
        return max(self.differences, key=lambda key: _rank(self.differences[key]))

    @property
    def largest(self):
        return self.differences[self.worst]

    def report(self, top=3):
        """A few lines: how many arrays, the worst key and difference, the next ``top - 1``."""
        ranked = sorted(self.differences, key=lambda key: -_rank(self.differences[key]))
        lines = [f"{len(ranked)} arrays compared; worst {ranked[0]}: {self.largest:.1e}"]
        lines += [f"  {key}: {self.differences[key]:.1e}" for key in ranked[1:top]]
        return "\n".join(lines)

    def __str__(self):
        return self.report()

    def check(self, tol):
        """``self`` if every difference is ≤ ``tol``; else an AssertionError naming the worst key."""
        tol = real("tol", tol, minimum=0)
        if not self.largest <= tol:  # NaN fails too
            raise AssertionError(f"{self.worst}: expected a relative difference ≤ {tol:g}, got {self.largest:.1e} "
                                 f"(the worst of {len(self.differences)} arrays)")
        return self


def _rank(difference):
    return math.inf if math.isnan(difference) else difference


def compare(reference, other, *, key_map=None):
    """:class:`Comparison` of two trees of arrays, key by key: ``reference`` is minibasis'
    (nested dicts or dotted names), ``other`` the implementation under test (a flat dict such
    as ``{name: p.grad.numpy() for name, p in net.named_parameters()}``, or a tree).

    key_map: renames ``reference``'s keys to ``other``'s (see the module docstring). Both
    sides must then hold the same keys and shapes; anything else is a ValueError listing the
    missing and unexpected keys. Tensors are read with ``numpy.asarray`` (detach them first).
    """
    ours, theirs = map_keys(flatten(reference), key_map), flatten(other)
    if not ours:
        fail("reference", "at least one array (after key_map)", "none")
    missing = [key for key in ours if key not in theirs]
    unexpected = [key for key in theirs if key not in ours]
    if missing or unexpected:
        fail("other", "the keys of reference" + (" after key_map" if key_map is not None else ""),
             f"{len(missing)} missing {_some(missing)}, {len(unexpected)} unexpected {_some(unexpected)}")
    differences = {}
    for key, value in ours.items():
        their = np.asarray(theirs[key])
        if their.shape != np.shape(value):
            fail(f"other[{key!r}]", f"shape {np.shape(value)} (that of reference)", f"shape {their.shape}")
        differences[key] = relative_difference(their, value)
    return Comparison(differences)


def _some(keys, shown=4):
    return f"{keys[:shown]}{' …' if len(keys) > shown else ''}"


# --------------------------------------------------------------------------- key maps


def map_keys(arrays, key_map):
    """``arrays`` (a flat dict) with its keys renamed by ``key_map``: None (unchanged), a dict
    (keys not in it keep their name; a key mapped to None is left out) or a function
    ``key -> new key or None``. Two keys mapped to one name are a ValueError."""
    if key_map is None:
        return dict(arrays)
    rename = _renamer(key_map)
    renamed, source = {}, {}
    for key, value in arrays.items():
        new = rename(key)
        if new is None:
            continue
        if not isinstance(new, str):
            fail("key_map", f"a str or None for {key!r}", repr(new), TypeError)
        if new in renamed:
            fail("key_map", "distinct new names", f"{source[new]!r} and {key!r} both renamed {new!r}")
        renamed[new], source[new] = value, key
    return renamed


def _renamer(key_map):
    if isinstance(key_map, dict):
        return lambda key: key_map.get(key, key)
    if callable(key_map):
        return key_map
    fail("key_map", "None, a dict or a function", type(key_map).__name__, TypeError)


_BLOCK_COPY = re.compile(r"layer\d+\.\d+\.shared_basis(_\d+)?\.weight")  # a block's view of a shared basis
_SHARED_OWNER = re.compile(r"(shared_basis_\d+(_\d+)?)\.weight")  # the model-level module's weight


def shared_bases_as_parameters(key):
    """Key map to a PyTorch model whose shared bases are top-level ``nn.Parameter``s:
    ``shared_basis_1_1.weight`` → ``shared_basis_1_1``; the blocks' copies
    (``layer1.1.shared_basis_1.weight``) → None (that model has none); every other key kept."""
    if _BLOCK_COPY.fullmatch(key):
        return None
    owner = _SHARED_OWNER.fullmatch(key)
    return owner.group(1) if owner else key


# -------------------------------------------------------------------- weights to share


def random_weights(model, seed, *, dtype=np.float64):
    """``(params, state)`` for ``model`` in which no array sits at a symmetric default.

    A fresh initialisation is a poor test: every BN has weight 1, bias 0, running mean 0 and
    variance 1, so swapping two of them changes nothing. Here every parameter is
    ``model.init(seed)``'s plus 0.1·N(0, 1) noise, every running mean 0.1·N(0, 1), every
    running variance U(0.5, 2) and every ``num_batches_tracked`` an integer in 1..99, drawn
    from ``numpy.random.default_rng([seed, 1])`` (not init's own stream).
    """
    seed = integer("seed", seed, minimum=0)
    params, state = model.init(seed, dtype=dtype)
    rng = np.random.default_rng([seed, 1])
    flat_params = {name: (value + 0.1 * rng.standard_normal(value.shape)).astype(dtype)
                   for name, value in flatten(params).items()}
    flat_state = {name: _random_statistic(name, value, rng) for name, value in flatten(state).items()}
    return unflatten(flat_params), unflatten(flat_state)


def _random_statistic(name, value, rng):
    if name.endswith("running_var"):
        return rng.uniform(0.5, 2.0, value.shape).astype(value.dtype)
    if name.endswith("running_mean"):
        return (0.1 * rng.standard_normal(value.shape)).astype(value.dtype)
    return np.asarray(rng.integers(1, 100), dtype=value.dtype)  # num_batches_tracked


def export_state_dict(model, params, state, *, key_map=None):
    """``{key: array}`` as :func:`minibasis.weights.to_state_dict` (the authors' keys, a shared
    basis under its owner and again under every block), renamed by ``key_map``."""
    return map_keys(to_state_dict(model, params, state), key_map)


def save_state_dict(path, model, params, state, *, key_map=None):
    """Write :func:`export_state_dict` to ``path`` (.npz, atomically); returns ``path``.
    With ``key_map=None`` this is :func:`minibasis.weights.save_weights`' file."""
    return atomic_savez(path, export_state_dict(model, params, state, key_map=key_map))
