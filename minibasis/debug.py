"""Looking at values in a debugger, also while autograd traces them.

Under ``autograd.grad`` every array that depends on the parameters is an ``ArrayBox``, and pdb's
``p h`` prints ``<ArrayBox with value [...]>``. :func:`value` gives the array inside (of a tree of
boxes too), and :func:`show` a one-line summary::

    (Pdb) from minibasis.debug import value, show
    (Pdb) p value(out).shape
    (Pdb) show(out)
    ArrayBox float64 (8, 17, 8, 8), min -2.31, max 3.02, mean 0.0103

pdb reads one-letter names as its commands (``p``, ``s``, ``n``, ``c``, ``l``, ``b``, ``h``, ``j``…):
print such a variable with ``p name`` or ``!name``. minibasis' model code avoids those names.
To step through the textbook kernels, run in reference mode (``MINIBASIS_REFERENCE=1``, see
:mod:`minibasis.mode`): then ``step`` into ``conv2d`` lands in the im2col loop.
"""

import numpy as np
from autograd.tracer import getval, isbox


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
        print(f"{kind} {array.dtype} {array.shape}, min {array.min():.4g}, max {array.max():.4g}, mean {array.mean():.4g}")
    else:
        print(f"{kind} {array.dtype} {array.shape}")
