"""Comparing two trees of arrays: one difference per array, the worst key named.

``relative_difference`` measures one array against minibasis' (absolute below 1, relative
above), ``compare`` every key of two trees, returning a :class:`Comparison`.
"""

import math
from dataclasses import dataclass

import numpy as np

from ..checks import fail, real
from ..tree import flatten
from .keys import map_keys

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
            raise AssertionError(
                f"{self.worst}: expected a relative difference ≤ {tol:g}, got {self.largest:.1e} "
                f"(the worst of {len(self.differences)} arrays)"
            )
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
        fail(
            "other",
            "the keys of reference" + (" after key_map" if key_map is not None else ""),
            f"{len(missing)} missing {_some(missing)}, {len(unexpected)} unexpected {_some(unexpected)}",
        )
    differences = {}
    for key, value in ours.items():
        their = np.asarray(theirs[key])
        if their.shape != np.shape(value):
            fail(f"other[{key!r}]", f"shape {np.shape(value)} (that of reference)", f"shape {their.shape}")
        differences[key] = relative_difference(their, value)
    return Comparison(differences)


def _some(keys, shown=4):
    return f"{keys[:shown]}{' …' if len(keys) > shown else ''}"
