"""The backend seam: the GPU code path run with NumPy standing in for the device, and the
real GPU (skipped where there is no cupy or no CUDA device)."""

import importlib.util

import autograd
import numpy as np
import pytest

from minibasis import backend
from minibasis.conv import conv2d, conv2d_input_grad, conv2d_weight_grad
from minibasis.models import create_model
from minibasis.train import training_loss

RESNET56_CONV_SHAPES = [  # (C_in, C_out, size, kernel, stride, padding)
    (3, 16, 32, 3, 1, 1),
    (16, 16, 32, 3, 1, 1),
    (16, 17, 32, 3, 1, 1),
    (17, 16, 32, 1, 1, 0),
    (16, 32, 32, 3, 2, 1),
    (32, 32, 16, 3, 1, 1),
    (32, 34, 16, 3, 1, 1),
    (34, 32, 16, 1, 1, 0),
    (32, 64, 16, 3, 2, 1),
    (64, 64, 8, 3, 1, 1),
    (64, 68, 8, 3, 1, 1),
    (68, 64, 8, 1, 1, 0),
]


def counting_stand_in(chunk_bytes):
    """NumPy as the 'device', counting the transfers each way."""
    counts = {"in": 0, "out": 0}
    base = backend.stand_in(np, chunk_bytes)

    def to_device(a):
        counts["in"] += 1
        return base.to_device(a)

    def to_host(a):
        counts["out"] += 1
        return base.to_host(a)

    return backend.Backend("counting", np, to_device, to_host, chunk_bytes), counts


def conv_all(x, w, g, hp):
    return (
        conv2d(x, w, **hp),
        conv2d_input_grad(g, w, x_shape=x.shape, **hp),
        conv2d_weight_grad(x, g, w_shape=w.shape, **hp),
    )


@pytest.mark.parametrize("chunk_bytes", [1, 2**16, 2**30])
@pytest.mark.parametrize("C, O, size, k, s, p", RESNET56_CONV_SHAPES)
def test_device_code_path_equals_the_host_path(C, O, size, k, s, p, chunk_bytes):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, C, size, size))
    w = rng.standard_normal((O, C, k, k))
    hp = dict(stride=s, padding=p)
    g = rng.standard_normal(conv2d(x, w, **hp).shape)
    expected = conv_all(x, w, g, hp)
    device, counts = counting_stand_in(chunk_bytes)
    with backend.use(device):
        got = conv_all(x, w, g, hp)
    for e, r in zip(expected, got):
        assert type(r) is np.ndarray and r.dtype == e.dtype
        np.testing.assert_allclose(r, e, rtol=1e-12, atol=1e-12)
    # Each primitive moves its two inputs in and its result out, once.
    assert counts == {"in": 6, "out": 3}

    # conv2d's first-order VJP of both arguments (what a training step asks for): for a
    # stride-1 k×k conv it is the fused path (conv_fast.both_grads, one im2col of g per chunk).
    def make_vjp():
        return autograd.make_vjp(lambda x, w: conv2d(x, w, **hp), (0, 1))(x, w)

    expected_vjp, expected_y = make_vjp()
    expected_grads = expected_vjp(g)
    counts.update({"in": 0, "out": 0})
    with backend.use(device):
        vjp, y = make_vjp()
        assert counts == {"in": 2, "out": 1}  # the forward conv2d
        counts.update({"in": 0, "out": 0})
        grads = vjp(g)
    np.testing.assert_allclose(y, expected_y, rtol=1e-12, atol=1e-12)
    for e, r, a in zip(expected_grads, grads, (x, w)):
        assert type(r) is np.ndarray and r.dtype == e.dtype and r.shape == a.shape
        np.testing.assert_allclose(r, e, rtol=1e-12, atol=1e-12)
    # ...and both equal the separate primitives (conv_all above): dx exactly as computed, dw to
    # rounding (the fused path sums the products in another order).
    np.testing.assert_allclose(grads[0], expected[1], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grads[1], expected[2], rtol=1e-12, atol=1e-12)
    if k > 1 and s == 1 and p < k:
        # Fused: w, g and x moved in once each; dx and dw out.
        assert counts == {"in": 3, "out": 2}
    else:
        # 1×1 (pointwise) or stride 2: the two separate gradient primitives, two in and one
        # out each; nothing moved for a fused path that does not apply.
        assert counts == {"in": 4, "out": 2}


@pytest.mark.parametrize("spec, size", [("resnet14-s2u1", 8), ("imagenet-mobilenetv2-shared++", 32)])
def test_a_whole_training_step_on_the_device_path_equals_the_host_path(spec, size):
    """The device path (NumPy standing in for CuPy: copies in and out, the device's chunking)
    of a basis model and of a model with depthwise convs, ECA and dropout's layers around them."""
    model = create_model(spec, num_classes=10)
    params, state = model.init(0, dtype=np.float64)
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((4, 3, size, size)), np.array([0, 1, 2, 3])

    def loss(params):
        return training_loss(model, params, state, x, y, 10.0)[0]  # CE + 10·R

    expected = autograd.grad(loss)(params)
    with backend.use(backend.stand_in()):
        got = autograd.grad(loss)(params)
    from minibasis.tree import flatten

    flat_e, flat_g = flatten(expected), flatten(got)
    assert flat_e.keys() == flat_g.keys()
    for key in flat_e:
        np.testing.assert_allclose(flat_g[key], flat_e[key], rtol=1e-10, atol=1e-12, err_msg=key)


def test_use_is_scoped_and_explicit():
    assert backend.current() is backend.CPU  # importing selects nothing
    device = backend.stand_in()
    with backend.use(device):
        assert backend.current() is device
        with backend.use(backend.CPU):
            assert backend.current() is backend.CPU
        assert backend.current() is device
    assert backend.current() is backend.CPU
    with pytest.raises(TypeError, match="backend"):
        with backend.use("gpu"):
            pass


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="cupy is installed here")
def test_gpu_without_cupy_is_a_clear_error():
    with pytest.raises(backend.BackendUnavailable, match="cupy"):
        backend.get("gpu")


def _gpu_or_skip():
    try:
        return backend.get("gpu")
    except backend.BackendUnavailable as error:
        pytest.skip(str(error))


@pytest.mark.gpu
@pytest.mark.parametrize("C, O, size, k, s, p", RESNET56_CONV_SHAPES)
def test_cupy_matches_numpy_for_every_resnet56_conv_shape(C, O, size, k, s, p):
    gpu = _gpu_or_skip()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((128, C, size, size)).astype(np.float32)
    w = rng.standard_normal((O, C, k, k)).astype(np.float32)
    hp = dict(stride=s, padding=p)
    g = rng.standard_normal(conv2d(x, w, **hp).shape).astype(np.float32)
    expected = conv_all(x, w, g, hp)
    with backend.use(gpu):
        got = conv_all(x, w, g, hp)
    for e, r in zip(expected, got):
        assert r.dtype == np.float32
        np.testing.assert_allclose(r, e, rtol=1e-5, atol=1e-5 * np.abs(e).max())


@pytest.mark.gpu
def test_cupy_training_step_of_resnet56_s16u1_matches_numpy():
    gpu = _gpu_or_skip()
    from minibasis.tree import flatten

    model = create_model("resnet56-s16u1")
    params, state = model.init(0)
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((32, 3, 32, 32)).astype(np.float32), rng.integers(0, 10, 32)

    def loss(params):
        return training_loss(model, params, state, x, y, 10.0)[0]  # CE + 10·R

    expected = flatten(autograd.grad(loss)(params))
    with backend.use(gpu):
        got = flatten(autograd.grad(loss)(params))
    for key in expected:
        scale = np.abs(expected[key]).max() + 1e-30
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-5, atol=1e-5 * scale, err_msg=key)
