"""Kernels on several worker threads: bit-identical results whatever the number of workers,
and still equal to the reference forms."""

import autograd
import numpy as np
import pytest

from minibasis import parallel
from minibasis.autodiff import gradient_and_aux
from minibasis.conv import conv2d
from minibasis.layers import batch_norm, batch_norm_state
from minibasis.models import create_model
from minibasis.optim import sgd_step
from minibasis.train import training_loss
from minibasis.tree import flatten


def two_training_steps(spec, dtype):
    """Params and BN state after two SGD steps of ``spec`` on a fixed batch (λ = 10 if shared)."""
    model = create_model(spec)
    params, state = model.init(seed=0, dtype=dtype)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((16, 3, 16, 16)).astype(dtype), rng.integers(0, 10, 16)
    step = gradient_and_aux(lambda p, s, x, y: training_loss(model, p, s, x, y, 10.0 if model.regulariser else 0.0))
    momentum = None
    for _ in range(2):
        grads, aux = step(params, state, x, y)
        state = aux[-1]
        params, momentum = sgd_step(params, grads, momentum, lr=0.1, momentum=0.9, weight_decay=5e-4)
    return {
        **{f"param {k}": v for k, v in flatten(params).items()},
        **{f"state {k}": v for k, v in flatten(state).items()},
    }


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("spec", ["resnet14", "resnet14-s4u1", "imagenet-mobilenetv2-shared++"])
def test_training_steps_are_bit_identical_with_1_2_and_3_workers(workers, many_pieces, spec, dtype):
    results = []
    for count in (1, 2, 3):
        workers(count)
        results.append(two_training_steps(spec, dtype))
    kernels = {"_dense_conv2d", "both_grads", "channel_stats", "_normalise", "_vjp_in_place"}
    if spec.startswith("imagenet"):  # depthwise, and 1×1 weight gradients
        kernels |= {"_depthwise_conv2d", "_depthwise_input_grad", "_depthwise_weight_grad", "_dense_weight_grad"}
    assert all(many_pieces.get(name, 0) > 1 for name in kernels), many_pieces
    for other in results[1:]:
        assert other.keys() == results[0].keys()
        for key in results[0]:
            np.testing.assert_array_equal(other[key], results[0][key], err_msg=key)


def test_batch_norm_on_several_workers_equals_one_worker(workers, many_pieces):
    rng = np.random.default_rng(3)
    x, gamma, beta, g = (
        rng.standard_normal((4, 40, 5, 5)),
        rng.standard_normal(40),
        rng.standard_normal(40),
        rng.standard_normal((4, 40, 5, 5)),
    )
    loss = lambda x, gamma, beta: np.sum(
        batch_norm(x, gamma, beta, batch_norm_state(40, np.float64), train=True, relu=True)[0] * g
    )
    outputs = []
    for count in (1, 3):
        workers(count)
        outputs.append(
            [
                batch_norm(x, gamma, beta, batch_norm_state(40, np.float64), train=True, relu=True)[0],
                *autograd.grad(loss, (0, 1, 2))(x, gamma, beta),
            ]
        )
    for a, b in zip(*outputs):
        np.testing.assert_array_equal(a, b)
    assert many_pieces["channel_stats"] > 1 and many_pieces["_vjp_in_place"] > 1


def test_set_threads_checks_its_argument_and_blas_is_pinned(workers):
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="threads: expected an int ≥ 1"):
            workers(bad)
    assert parallel.available_cores() >= 1
    pinned = parallel.pin_blas()
    assert pinned, "NumPy's BLAS (OpenBLAS in NumPy's wheels) is set to one thread"


# Run in a fresh interpreter: the BLAS thread count OpenBLAS itself reports before and after
# `import minibasis`, and after a decomposition (an SVD) with every kernel made to fail.
_BLAS_THREADS_AT_IMPORT = """
import ctypes, json
import numpy as np
np.dot(np.ones((2, 2)), np.ones((2, 2)))
paths = sorted({line.split()[-1] for line in open("/proc/self/maps") if "openblas" in line.lower()})
getters = [getattr(ctypes.CDLL(path), name, None) for path in paths
           for name in ("scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_", "openblas_get_num_threads")]
getter = next(g for g in getters if g is not None)
before = getter()
import minibasis
from minibasis import basis, parallel
pinned_at_import = parallel._state["blas"]
def no_kernel(fn, pieces):
    raise AssertionError("a kernel ran")
parallel.for_each = no_kernel
basis_, coefficients = basis.decompose(np.random.default_rng(0).standard_normal((128, 16, 3, 3)), 16)
print(json.dumps({"before": before, "after": getter(), "pinned_at_import": pinned_at_import, "rows": basis_.shape[0]}))
"""


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/maps"), reason="finds OpenBLAS through /proc (Linux)")
def test_import_minibasis_puts_blas_on_one_thread_before_any_kernel_runs():
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "OPENBLAS_NUM_THREADS": "2"}  # OpenBLAS would start 2 threads without minibasis
    run = subprocess.run(
        [sys.executable, "-c", _BLAS_THREADS_AT_IMPORT], env=env, capture_output=True, text=True, timeout=120
    )
    if "StopIteration" in run.stderr:
        pytest.skip("NumPy's BLAS is not OpenBLAS here")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.splitlines()[-1])
    assert report["before"] == 2, "the environment asks OpenBLAS for 2 threads"
    assert report["pinned_at_import"], "import minibasis pinned a BLAS library"
    assert report["after"] == 1 and report["rows"] == 16, "a decomposition ran with BLAS on one thread, no kernel"


def test_only_the_fast_forms_and_backend_import_parallel():
    """The equations (conv.py, layers.py, basis.py, …) never reach for worker threads themselves:
    only ``*_fast.py`` and ``backend.py`` import :mod:`minibasis.parallel`."""
    import ast
    from pathlib import Path

    package = Path(parallel.__file__).parent
    importers = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):  # from . import parallel, from .parallel import x
                names = [node.module or ""] + [f"{node.module or ''}.{alias.name}" for alias in node.names]
            else:
                continue
            if any("parallel" in name.split(".") for name in names):
                importers.add(path.relative_to(package).as_posix())
    assert importers == {"backend.py", "conv_fast.py", "layers_fast.py"}, importers


def _conv_in_child(queue):
    x = np.random.default_rng(0).standard_normal((32, 16, 16, 16))
    queue.put(float(conv2d(x, np.ones((16, 16, 3, 3)), padding=1).sum()))


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="no fork on this system")
def test_a_forked_child_runs_kernels_with_a_pool_of_its_own(workers):
    """A child made with fork (multiprocessing's default on Linux, DataLoader workers) inherits
    the pool object but not its threads; it must not wait on them forever."""
    import multiprocessing

    workers(2)
    x = np.random.default_rng(0).standard_normal((32, 16, 16, 16))
    expected = float(conv2d(x, np.ones((16, 16, 3, 3)), padding=1).sum())  # the parent's pool now exists
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_conv_in_child, args=(queue,))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0, "the child hung or failed"
    assert queue.get(timeout=5) == expected


def test_set_threads_while_another_thread_runs_kernels(workers):
    import threading
    import time

    x, w = np.random.default_rng(0).standard_normal((32, 16, 16, 16)), np.ones((16, 16, 3, 3))
    errors, done = [], threading.Event()

    def keep_convolving():
        while not done.is_set():
            try:
                conv2d(x, w, padding=1)
            except Exception as error:  # noqa: BLE001 (any failure is the finding)
                errors.append(repr(error))
                return

    thread = threading.Thread(target=keep_convolving)
    thread.start()
    start, i = time.perf_counter(), 0
    while time.perf_counter() - start < 1.5:  # change the count again and again while kernels run
        workers(2 + i % 2)
        i += 1
    done.set()
    thread.join()
    assert errors == []
