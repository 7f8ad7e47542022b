"""Reference mode: every kernel runs its textbook form, for reading and stepping through.

Each kernel has a *fast form* (what training runs, in ``conv_fast.py`` and ``layers_fast.py``:
flat-shift im2col in chunks, fused batch norm with an in-place backward, the one-im2col
first-order conv VJP) and a *reference form* under the same name (``conv_reference.py``,
``layers.py``: the equation in a few lines: im2col by a loop over the kernel offsets, one GEMM,
col2im; batch norm as ``autograd.numpy`` formulas that autograd differentiates). ``conv.py`` and
``layers.py`` pick one in a line with :func:`is_reference`. The reference form is the
specification; the tests hold the fast form equal to it. Like ``jax.disable_jit()``::

    with minibasis.reference_mode():
        logits, state = model.apply(params, state, x, train=True)   # conv2d runs the textbook

or ``MINIBASIS_REFERENCE=1 python script.py`` for a whole script or debugger session.
Reference mode computes on the host with NumPy (a GPU backend chosen with
``minibasis.backend.use`` is not used inside it) and is several times slower.
"""

import contextlib
import contextvars
import os

ENVIRONMENT_VARIABLE = "MINIBASIS_REFERENCE"


def _from_environment():
    value = os.environ.get(ENVIRONMENT_VARIABLE, "").strip()
    if value not in ("", "0", "1"):
        raise ValueError(f"{ENVIRONMENT_VARIABLE}: expected '1' (reference mode), '0' or unset, got {value!r}")
    return value == "1"


_reference = contextvars.ContextVar("minibasis_reference_mode", default=None)  # None: as the environment says


def is_reference():
    """True inside ``reference_mode()`` (or with ``MINIBASIS_REFERENCE=1``). The variable is
    read here, not at import, so that a bad value is one error line from the command, not an
    import traceback."""
    value = _reference.get()
    return _from_environment() if value is None else value


@contextlib.contextmanager
def reference_mode(enabled=True):
    """Run every kernel's reference (textbook) form inside the ``with`` block.

    ``reference_mode(False)`` switches back to the fast forms inside it (e.g. under
    ``MINIBASIS_REFERENCE=1``)."""
    if not isinstance(enabled, bool):
        raise ValueError(f"enabled: expected True or False, got {enabled!r}")
    token = _reference.set(enabled)
    try:
        yield
    finally:
        _reference.reset(token)
