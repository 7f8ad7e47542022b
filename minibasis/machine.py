"""How fast this machine is, measured now: what to hold the README's stated times against.

The README gives each time with the speed of the machine it was measured on, as
``minibasis info --machine`` prints it; run it on your machine (a few seconds) and scale: half
the GEMM rate and half the images/s there means about twice the stated times here, while a
normal speed line beside a much slower run points at something else (another busy process, a
slow disk). Three numbers:

- **GEMM**: GFLOP/s of a float32 matrix product of 512×512 on NumPy's BLAS, one thread (as
  minibasis runs it, see ``parallel``); im2col + GEMM is where a convolution spends its time;
- **training**: images/s of the quick start's SGD step (``resnet20-s16u1``, λ = 10, batch 64
  of random images: forward, backward; no data loading) on the kernels' worker threads;
- **load**: the 1-minute load average (``os.getloadavg``): above the core count, other
  processes are competing and every time stretches.
"""

import os
import time

import numpy as np

from .autodiff import gradient_and_aux
from .backend import available_cores, threads  # importing backend pins NumPy's BLAS to one thread
from .models import create_model
from .train import training_loss


def best_time(fn, repeat):
    """Fastest of ``repeat`` calls of ``fn`` (after one warm-up call), in seconds (the benches use it too)."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def gemm_gflops(n=512, repeat=20):
    """GFLOP/s of an ``n``×``n`` float32 matrix product (2·n³ flops), BLAS on one thread."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, n, n), dtype=np.float32)
    return 2 * n**3 / best_time(lambda: a @ b, repeat) / 1e9


def training_images_per_second(spec="resnet20-s16u1", batch=64, repeat=2):
    """Images/s of one forward + backward of ``spec`` on a random batch, as ``train`` steps."""
    model = create_model(spec)
    params, state = model.init(seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 3, 32, 32), dtype=np.float32)
    y = rng.integers(0, 10, batch)
    step = gradient_and_aux(lambda p, s, x, y: training_loss(model, p, s, x, y, 10.0))
    return batch / best_time(lambda: step(params, state, x, y), repeat)


def describe():
    """The speed line, e.g. ``GEMM 61 GFLOP/s (float32 512³, 1 BLAS thread); training 96 img/s …``."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"GEMM {gemm_gflops():.0f} GFLOP/s (float32 512³, 1 BLAS thread); training "
        f"{training_images_per_second():.0f} img/s (resnet20-s16u1 step, batch 64, {threads()} threads); "
        f"load {load:.1f} on {available_cores()} cores"
    )
