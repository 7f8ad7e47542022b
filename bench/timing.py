"""The timer and the machine description the benchmarks share."""

import time

import numpy as np


def best_time(fn, repeat):
    """Fastest of ``repeat`` calls of ``fn`` (after one warm-up call), in seconds."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def machine(dtype, repeat=5):
    """One line naming numpy's BLAS (threadpoolctl) and its square-GEMM peak, measured now."""
    try:
        from threadpoolctl import threadpool_info

        blas = ", ".join(
            f"{i['internal_api']} {i.get('version')} {i.get('architecture', '')} ({i['num_threads']} threads)"
            for i in threadpool_info()
            if i["user_api"] == "blas"
        )
    except ImportError:
        blas = "unknown (pip install threadpoolctl)"
    n = 1024
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n)).astype(dtype), rng.standard_normal((n, n)).astype(dtype)
    peak = 2 * n**3 / best_time(lambda: a @ b, repeat) / 1e9
    return f"numpy {np.__version__}, BLAS: {blas}; square {np.dtype(dtype)} GEMM ({n}³): {peak:.0f} GFLOP/s"
