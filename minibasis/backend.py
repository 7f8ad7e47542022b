"""Where the convolution's arithmetic runs: the host (NumPy, the default) or a GPU (CuPy).

On the host, the kernels run on minibasis' worker threads (:mod:`minibasis.parallel`;
``set_threads`` here) and NumPy's BLAS on one thread, from ``import minibasis`` on: every
entry point that does linear algebra (the kernels, but also decompositions, orthogonal init,
folding, the tutorials' SVDs) then runs without OpenBLAS' spinning threads.

This is the only module that imports cupy, and only when a GPU backend is asked for. The
choice is explicit and scoped::

    from minibasis import backend
    with backend.use(backend.get("gpu")):
        grads = autograd.grad(loss)(params)      # conv primitives compute on the GPU

Every array autograd sees stays a NumPy array on the host: autograd's own gradient rules
create NumPy arrays and CuPy refuses implicit host↔device mixing (HIPS/autograd #46, #406;
cupy #923). The GPU is used *inside* the raw bodies of the three convolution primitives:
transfer in, im2col / GEMM / col2im with the device's array module, transfer out.
"""

import contextlib
import contextvars
from dataclasses import dataclass

import numpy as np

from . import parallel
from .parallel import available_cores, set_threads, threads  # noqa: F401 (the host's workers, re-exported)

# One BLAS thread from import on, not from the first kernel on: a NumPy SVD before any kernel ran
# (basis.decompose) otherwise meets OpenBLAS' spinning threads, 40× slower beside a busy process.
parallel.pin_blas()


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run here (no cupy, no GPU)."""


@dataclass(frozen=True)
class Backend:
    """An array module plus the two transfers. ``xp`` must offer NumPy's API (numpy, cupy)."""

    name: str
    xp: object
    to_device: object  # host ndarray -> device array
    to_host: object  # device array -> host ndarray
    chunk_bytes: int  # im2col block per chunk of images


CPU = Backend("cpu", np, lambda a: a, lambda a: a, 4 * 2**20)  # measured best for a ResNet-56 step (bench/)
_current = contextvars.ContextVar("minibasis_backend", default=CPU)

NAMES = ("cpu", "gpu")


def get(name):
    """The backend called ``name`` ('cpu' or 'gpu'); BackendUnavailable when it cannot run."""
    if name == "cpu":
        return CPU
    if name != "gpu":
        raise ValueError(f"device: expected one of {NAMES}, got {name!r}")
    try:
        import cupy
    except ImportError as error:
        raise BackendUnavailable(
            "device: 'gpu' needs cupy (pip install 'minibasis[gpu]' or a cupy-cudaXXx wheel), "
            f"but importing it failed: {error}"
        ) from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as error:  # cupy raises its own CUDA runtime errors
        raise BackendUnavailable(f"device: 'gpu' needs a CUDA GPU, but CUDA reports: {error}") from None
    if count < 1:
        raise BackendUnavailable("device: 'gpu' needs a CUDA GPU, but none was found")
    return Backend("gpu", cupy, cupy.asarray, cupy.asnumpy, 256 * 2**20)


def stand_in(xp=np, chunk_bytes=64 * 2**20):
    """A 'device' backend run by another NumPy-compatible module (NumPy itself by default).

    The transfers copy, as a real device's would; the tests use it to run the whole GPU code
    path (transfers, chunking) without a GPU.
    """
    return Backend(
        f"stand-in({xp.__name__})", xp, lambda a: xp.array(a, copy=True), lambda a: np.array(a, copy=True), chunk_bytes
    )


def current():
    """The backend of the innermost ``use`` block (CPU outside any)."""
    return _current.get()


@contextlib.contextmanager
def use(backend):
    """Run the convolution primitives on ``backend`` inside the ``with`` block."""
    if not isinstance(backend, Backend):
        raise TypeError(
            f"backend: expected a minibasis.backend.Backend (see backend.get), got {type(backend).__name__}"
        )
    token = _current.set(backend)
    try:
        yield backend
    finally:
        _current.reset(token)
