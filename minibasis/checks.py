"""Argument checks: one small vocabulary, one message form, used by every module.

Every check returns the value it accepted (normalised: ``int``, ``float``, a pair) or raises
with one line that names the argument, says what was expected and what was received::

    stride: expected an int ≥ 1 or a pair of them, got 1.5

``ValueError`` for a bad value (a float where an int is needed, a negative size, a wrong
shape or dtype), ``TypeError`` for an object of the wrong kind altogether (a list where an
array is needed, a string where a tree is needed). ``bool`` is never accepted as a number:
``stride=True`` is a mistake, not a 1.
"""

import math
import numbers
import operator

import numpy as np


def fail(name, expected, got, error=ValueError):
    """Raise ``error("name: expected …, got …")``; ``got`` is shown as given (pre-format it)."""
    raise error(f"{name}: expected {expected}, got {got}")


def _is_bool(value):
    return isinstance(value, (bool, np.bool_))


def integer(name, value, minimum=None, maximum=None):
    """``value`` as an ``int`` in [minimum, maximum] (either bound may be None)."""
    bounds = _bounds(minimum, maximum)
    if _is_bool(value):
        fail(name, f"an int{bounds}", repr(value))
    try:
        number = operator.index(value)
    except TypeError:
        fail(name, f"an int{bounds}", repr(value))
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        fail(name, f"an int{bounds}", repr(value))
    return number


def real(name, value, minimum=None, maximum=None):
    """``value`` as a finite ``float`` in [minimum, maximum] (either bound may be None)."""
    bounds = _bounds(minimum, maximum)
    if _is_bool(value) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        fail(name, f"a finite real number{bounds}", repr(value))
    number = float(value)
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        fail(name, f"a finite real number{bounds}", repr(value))
    return number


def _bounds(minimum, maximum):
    if minimum is not None and maximum is not None:
        return f" in [{minimum}, {maximum}]"
    if minimum is not None:
        return f" ≥ {minimum}"
    return f" ≤ {maximum}" if maximum is not None else ""


def pair(name, value, minimum):
    """An int or a pair of ints, each ≥ ``minimum`` -> ``(int, int)`` (conv sizes, strides)."""
    expected = f"an int ≥ {minimum} or a pair of them"
    values = (value, value) if not isinstance(value, (tuple, list)) else tuple(value)
    if len(values) != 2 or any(_is_bool(v) or not isinstance(v, (int, np.integer)) or v < minimum for v in values):
        fail(name, expected, repr(value))
    return int(values[0]), int(values[1])


def one_of(name, value, options):
    """``value`` if it is one of ``options``."""
    if value not in options:
        fail(name, f"one of {', '.join(map(repr, options))}", repr(value))
    return value


def boolean(name, value):
    """``value`` as a ``bool`` (True/False only, not 0/1 or strings)."""
    if not _is_bool(value):
        fail(name, "True or False", repr(value))
    return bool(value)


def array(name, a, *, ndim=None, kind="f"):
    """``a`` if it is a NumPy array (or an autograd box of one) of ``ndim`` dimensions whose
    dtype kind is in ``kind`` (``"f"`` floating, ``"iu"`` integers, None any)."""
    if not (hasattr(a, "shape") and hasattr(a, "dtype") and hasattr(a, "ndim")):
        fail(name, "a numpy.ndarray", type(a).__name__, TypeError)
    if ndim is not None and a.ndim != ndim:
        fail(name, f"{ndim} dimensions", f"shape {tuple(a.shape)}")
    if kind is not None and np.dtype(a.dtype).kind not in kind:
        what = {"f": "a floating dtype", "iu": "an integer dtype"}.get(kind, f"a dtype of kind {kind!r}")
        fail(name, what, str(a.dtype))
    return a


def shape(name, a, expected, why=""):
    """``a`` if ``a.shape == expected`` (``why``: a few words on where the expectation comes from)."""
    if tuple(a.shape) != tuple(expected):
        fail(name, f"shape {tuple(expected)}{' ' + why if why else ''}", f"shape {tuple(a.shape)}")
    return a


def same_dtype(name, a, reference, reference_name, hint=""):
    """``a`` if its dtype is that of ``reference`` (minibasis never casts silently)."""
    if a.dtype != reference.dtype:
        fail(
            name,
            f"dtype {reference.dtype} (that of {reference_name}; no silent casts{'; ' + hint if hint else ''})",
            str(a.dtype),
        )
    return a
