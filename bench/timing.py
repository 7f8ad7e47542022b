"""What the benchmarks share: the command-line header, the timer (minibasis.machine's, which
``minibasis info --machine`` uses too) and the machine description."""

import argparse

import numpy as np

from minibasis.machine import best_time  # noqa: F401 (re-exported to the benches)


def arguments(doc, repeat=True):
    """An argument parser with ``doc`` as its help and the options every benchmark takes:
    ``--batch`` (128), ``--dtype`` (float32 or float64) and, when ``repeat``, ``--repeat`` (5).
    Add a script's own options to it, then ``parse_args()``."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=128, help="images per batch (default 128)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"], help="default float32")
    if repeat:
        parser.add_argument(
            "--repeat", type=int, default=5, help="timed calls per measurement, the best one counts (default 5)"
        )
    return parser


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
        from minibasis.parallel import pin_blas

        blas = f"{', '.join(pin_blas()) or 'unknown'} "
        blas += "(set to 1 thread by minibasis; pip install threadpoolctl for its version)"
    n = 1024
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n)).astype(dtype), rng.standard_normal((n, n)).astype(dtype)
    peak = 2 * n**3 / best_time(lambda: a @ b, repeat) / 1e9
    return f"numpy {np.__version__}, BLAS: {blas}; square {np.dtype(dtype)} GEMM ({n}³): {peak:.0f} GFLOP/s"
