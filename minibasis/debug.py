"""Looking at values in a debugger, also while autograd traces them, and stopping in the textbook.

Under ``autograd.grad`` every array that depends on the parameters is an ``ArrayBox``, and pdb's
``p h`` prints ``<ArrayBox with value [...]>``. :func:`value` gives the array inside (of a tree of
boxes too), and :func:`show` a one-line summary::

    (Pdb) from minibasis.debug import value, show
    (Pdb) p value(out).shape
    (Pdb) show(out)
    ArrayBox float64 (8, 17, 8, 8), min -2.31, max 3.02, mean 0.0103

pdb reads one-letter names as its commands (``p``, ``s``, ``n``, ``c``, ``l``, ``b``, ``h``, ``j``…):
print such a variable with ``p name`` or ``!name``. minibasis' model code avoids those names.

To stop in a kernel's textbook form, run in reference mode (``MINIBASIS_REFERENCE=1``, see
:mod:`minibasis.mode`) and set :func:`break_in`'s breakpoint: ``break_in("conv2d")`` stops at
the first line of :func:`minibasis.conv_reference.conv2d` the next time a convolution runs. A
``step`` from a line that calls ``conv2d`` gets there too, but first passes autograd's wrapper
and the argument checks (README, "Two forms of every kernel", counts the steps).
"""

import bdb
import pdb
import sys

import numpy as np
from autograd.tracer import getval, isbox

from . import checks, conv_reference, layers


def value(x):
    """The NumPy value of ``x``: an autograd box's array, or a tree (dict/list/tuple) of them."""
    if isinstance(x, dict):
        return {k: value(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(value(v) for v in x)
    return getval(x)


def show(x):
    """Print one line about ``x``: traced or not, dtype, shape, min, max, mean."""
    array = np.asarray(value(x))
    kind = "ArrayBox" if isbox(x) else type(x).__name__
    if array.size and array.dtype.kind in "fiu":
        low, high, mean = (float(v) + 0.0 for v in (array.min(), array.max(), array.mean()))  # + 0.0: no "-0"
        print(f"{kind} {array.dtype} {array.shape}, min {low:.4g}, max {high:.4g}, mean {mean:.4g}")
    else:
        print(f"{kind} {array.dtype} {array.shape}")


# The textbook form of each kernel, by the name of its public function.
TEXTBOOK = {
    "conv2d": conv_reference.conv2d,
    "conv2d_input_grad": conv_reference.conv2d_input_grad,
    "conv2d_weight_grad": conv_reference.conv2d_weight_grad,
    "im2col": conv_reference.im2col,
    "col2im": conv_reference.col2im,
    "batch_norm_train": layers.batch_norm_train,
}


def break_in(name):
    """Set a pdb breakpoint at the first line of the textbook form of kernel ``name`` (a key of
    :data:`TEXTBOOK`: ``"conv2d"`` is :func:`minibasis.conv_reference.conv2d`); it is reached in
    reference mode only. At a pdb prompt (``python -m pdb``, ``breakpoint()``) it joins that
    session's breakpoints: ``continue`` then stops there. Called from a program that runs without
    a debugger, it starts pdb, which stops there when the program gets there."""
    function = TEXTBOOK.get(name) if isinstance(name, str) else None
    if function is None:
        checks.fail("name", f"one of {', '.join(map(repr, TEXTBOOK))}", repr(name))
    code = function.__code__
    debugger = running_debugger()
    started = debugger is None
    if started:
        debugger = pdb.Pdb()
    error = debugger.set_break(code.co_filename, code.co_firstlineno, funcname=code.co_name)
    if error:
        raise RuntimeError(error)
    number = debugger.get_breaks(debugger.canonic(code.co_filename), code.co_firstlineno)[-1].number
    print(f"Breakpoint {number} at {code.co_filename}:{code.co_firstlineno} ({function.__module__}.{code.co_name})")
    if started:  # bdb's set_trace from the caller on, but stopping only at breakpoints (set_continue)
        debugger.reset()
        frame = sys._getframe(1)
        while frame:
            frame.f_trace, debugger.botframe, frame = debugger.trace_dispatch, frame, frame.f_back
        debugger.set_continue()
        sys.settrace(debugger.trace_dispatch)


def running_debugger():
    """The pdb (any bdb debugger) tracing this thread, or None."""
    debugger = getattr(sys.gettrace(), "__self__", None)
    return debugger if isinstance(debugger, bdb.Bdb) else None
