"""Recording what the layers compute, for the oracle (:mod:`minibasis.oracle`): off by default.

The models are pure functions; to compare them module by module with another implementation,
the places where a module is applied (a conv, a batch norm, a linear layer) and where a
nonlinearity is applied (ReLU, ReLU6, max pool) call :func:`output` / :func:`activation`.
Outside :func:`recording` these return at once (one context-variable read) and nothing is
kept; inside, each call appends ``(kind, id of the module's weight array, value, hyper)`` to the list
the ``with`` block yields. Recording reads values only (``getval``: a traced array's value),
so it changes no computed number, under autograd or not. :mod:`minibasis.oracle.record` turns
the weight ids into the authors' module names.
"""

import contextlib
import contextvars

from autograd.tracer import getval

_events = contextvars.ContextVar("minibasis_recording", default=None)


def active():
    """True inside :func:`recording`."""
    return _events.get() is not None


def output(weight, y, **hyper):
    """Module output ``y`` of the module whose weight array is ``weight``, applied with ``hyper``
    (a conv's stride, padding, groups; nothing when off)."""
    events = _events.get()
    if events is not None:
        events.append(("module", id(getval(weight)), getval(y), hyper))


def activation(kind, x):
    """The input ``x`` of a nonlinearity ``kind`` ('relu', 'relu6', 'max_pool'; nothing when off)."""
    events = _events.get()
    if events is not None:
        events.append((kind, None, getval(x), {}))


@contextlib.contextmanager
def recording():
    """``with recording() as events:`` every :func:`output` and :func:`activation` inside, in order."""
    events = []
    token = _events.set(events)
    try:
        yield events
    finally:
        _events.reset(token)
