"""Every core, deterministically: kernels split their own work over worker threads, and the
BLAS underneath runs one thread per call.

Why. OpenBLAS' own threads spin between calls, so a second busy process on a 2-core machine
makes both crawl (5–10× slower), and they split sums differently for different thread counts,
so results depended on the machine. minibasis instead pins NumPy's BLAS to one thread (when
it is imported: :mod:`minibasis.backend` calls :func:`pin_blas`) and splits each kernel into
pieces whose boundaries depend only on the shapes (images per chunk for the convolutions,
channels for batch norm), never on how many workers run them; partial sums are added in piece
order. So the same seed gives bit-identical results with 1 worker or
16 (on one machine: NumPy's OpenBLAS picks its GEMM kernels by CPU type, so another CPU, or
another NumPy, may round differently).

    minibasis.set_threads(2)     # or `minibasis … --threads 2`; default: the cores this process may use

NumPy releases the GIL inside BLAS calls, copies and ufuncs on large arrays, so threads run
them in parallel; autograd's tracing stays in the calling thread.
"""

import ctypes
import glob
import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import checks


def available_cores():
    """The cores this process may run on (``os.sched_getaffinity`` where it exists)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


_state = {"threads": available_cores(), "pool": None, "blas": None, "malloc": None}
_lock = threading.Lock()


def _forget_pool_in_child():
    """A forked child inherits the pool object but not its threads: it must make its own."""
    global _lock
    _lock = threading.Lock()
    _state["pool"] = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_in_child)


def set_threads(count):
    """Run minibasis' kernels on ``count`` worker threads (1: in the calling thread only).

    Safe while other threads run kernels: the next kernel makes a pool of the new size, and the
    old pool's threads end once nothing uses it any more (no shutdown that could cut a kernel short)."""
    count = checks.integer("threads", count, 1)
    with _lock:
        if count != _state["threads"]:
            _state["pool"] = None
        _state["threads"] = count
    return count


def threads():
    """The number of worker threads the kernels use."""
    return _state["threads"]


def for_each(fn, pieces):
    """``[fn(piece) for piece in pieces]``, the pieces spread over the workers; the results come
    back in the order of ``pieces`` whatever thread ran them (so a sum over them is the same)."""
    pieces = list(pieces)
    _keep_freed_memory()
    if _state["threads"] == 1 or len(pieces) < 2 or threading.current_thread().name.startswith("minibasis"):
        return [fn(piece) for piece in pieces]
    with _lock:
        if _state["pool"] is None:
            _state["pool"] = ThreadPoolExecutor(_state["threads"], thread_name_prefix="minibasis")
        pool = _state["pool"]
    return list(pool.map(fn, pieces))


PIECE_ELEMENTS = 2**16  # a piece smaller than this costs more to hand to a thread than to compute
MAX_PIECES = 16


def slices(count, elements):
    """``range(count)`` (images, channels) cut into contiguous ranges, as many as ``elements``
    (the values the work touches) allows at ``PIECE_ELEMENTS`` each, at most ``MAX_PIECES``:
    a split that depends on the shapes alone, so small arrays make one piece, run inline."""
    pieces = max(1, min(MAX_PIECES, count, elements // PIECE_ELEMENTS))
    size = -(-count // pieces) if count else 1
    return [slice(start, min(start + size, count)) for start in range(0, count, size)]


def _keep_freed_memory():
    """Ask glibc to keep freed blocks up to 32 MiB in the heap (once per process, Linux only).

    Every piece allocates temporaries of up to a few MiB (an im2col block, a product). glibc
    serves those from fresh mmaps and unmaps them when freed, so every use page-faults anew, and
    the page faults of several threads queue on one kernel lock: measured, a 2-worker step of
    resnet56 ran ~10 % slower. Raising the mmap and trim thresholds recycles the blocks instead
    (the process then keeps its peak memory until it exits: a side effect on the whole process,
    said in the README)."""
    if _state["malloc"] is not None:
        return
    _state["malloc"] = False
    try:
        libc = ctypes.CDLL("libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
        _state["malloc"] = bool(libc.mallopt(M_MMAP_THRESHOLD, 32 * 2**20) and libc.mallopt(M_TRIM_THRESHOLD, 2**30))
    except (OSError, AttributeError):  # not glibc: nothing to tune
        pass


# ---- one BLAS thread -------------------------------------------------------------------------

# The entry points that set the thread count of the BLAS libraries NumPy is built with: the
# OpenBLAS of NumPy's wheels (scipy-openblas, 64-bit interface), plain OpenBLAS, MKL.
_SETTERS = (
    "scipy_openblas_set_num_threads64_",
    "scipy_openblas_set_num_threads",
    "openblas_set_num_threads64_",
    "openblas_set_num_threads",
    "MKL_Set_Num_Threads",
)


def _blas_libraries():
    """Paths of the loaded shared libraries that may be NumPy's BLAS."""
    try:
        with open("/proc/self/maps") as maps:  # Linux: what this process has loaded
            paths = {line.split()[-1] for line in maps if "/" in line}
    except OSError:  # elsewhere: the libraries NumPy's wheels bundle
        root = os.path.dirname(os.path.dirname(np.__file__))
        paths = set(
            glob.glob(os.path.join(root, "numpy*libs", "*"))
            + glob.glob(os.path.join(os.path.dirname(np.__file__), ".dylibs", "*"))
        )
    return sorted(
        p for p in paths if any(name in os.path.basename(p).lower() for name in ("openblas", "mkl_rt", "blas"))
    )


def pin_blas():
    """Set NumPy's BLAS to one thread (once per process); returns what was pinned.

    Warns once when no known BLAS could be pinned: results may then depend on its thread count."""
    if _state["blas"] is not None:
        return _state["blas"]
    np.dot(np.ones((2, 2)), np.ones((2, 2)))  # make sure NumPy's BLAS is loaded
    pinned = []
    for path in _blas_libraries():
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        for name in _SETTERS:
            setter = getattr(library, name, None)
            if setter is not None:
                setter(1)
                pinned.append(f"{os.path.basename(path)}:{name}")
                break
    if not pinned:
        warnings.warn(
            "minibasis could not set NumPy's BLAS to one thread: results may depend on its thread count",
            RuntimeWarning,
            stacklevel=2,
        )
    _state["blas"] = pinned
    return pinned
