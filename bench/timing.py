"""The one timer the benchmarks share."""

import time


def best_time(fn, repeat):
    """Fastest of ``repeat`` calls of ``fn`` (after one warm-up call), in seconds."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)
