"""conv2d against independent references, its adjoints, and its gradients to second order."""

import dataclasses

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
import scipy.signal
from autograd.test_util import check_grads
from hypothesis import example, given
from hypothesis import strategies as st

from minibasis import backend
from minibasis.conv import col2im, conv2d, conv2d_input_grad, conv2d_weight_grad, im2col
from minibasis.mode import reference_mode
from minibasis.testing import check_gradients
from support.conv_geometries import geometries, hyper, random_pair

pytestmark = pytest.mark.reference  # also run with MINIBASIS_REFERENCE=1 (see README)


def naive_conv2d(x, w, stride, padding, groups=1):
    """y[n,o,a,b] = Σ_{c in o's group,i,j} w[o,c,i,j]·xpad[n,c,a·sh+i,b·sw+j], by explicit loops."""
    (sh, sw), (ph, pw) = stride, padding
    N, C, H, W = x.shape
    O, Cg, kh, kw = w.shape
    xp = np.zeros((N, C, H + 2 * ph, W + 2 * pw))
    xp[:, :, ph : ph + H, pw : pw + W] = x
    Ho, Wo = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
    y = np.zeros((N, O, Ho, Wo))
    for n in range(N):
        for o in range(O):
            c0 = (o // (O // groups)) * Cg  # first input channel of o's group
            for a in range(Ho):
                for b in range(Wo):
                    patch = xp[n, c0 : c0 + Cg, a * sh : a * sh + kh, b * sw : b * sw + kw]
                    y[n, o, a, b] = np.sum(patch * w[o])
    return y


def scipy_conv2d(x, w, stride, padding, groups=1):
    """The same through scipy.signal.correlate ('valid' on the padded input, then subsample)."""
    (sh, sw), (ph, pw) = stride, padding
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    O, Cg = w.shape[:2]
    group = lambda o: slice((o // (O // groups)) * Cg, (o // (O // groups) + 1) * Cg)
    y = np.stack(
        [
            np.stack([scipy.signal.correlate(xp[n, group(o)], w[o], mode="valid")[0] for o in range(O)])
            for n in range(x.shape[0])
        ]
    )
    return y[:, :, ::sh, ::sw]


@given(geometries(), st.integers(0, 2**32 - 1))
def test_conv2d_matches_naive_loops_and_scipy(geo, seed):
    x, w = random_pair(geo, seed)
    args = (geo["stride"], geo["padding"], geo["groups"])
    for form in (False, True):
        with reference_mode(form):
            y = conv2d(x, w, **hyper(geo))
        assert y.shape == geo["out"]
        np.testing.assert_allclose(y, naive_conv2d(x, w, *args), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(y, scipy_conv2d(x, w, *args), rtol=1e-10, atol=1e-12)


@given(geometries(), st.integers(0, 2**32 - 1))
def test_im2col_col2im_are_adjoint(geo, seed):
    x, _ = random_pair(geo, seed)
    hp = dict(kernel_size=geo["w"][2:], stride=geo["stride"], padding=geo["padding"])
    cols = im2col(x, **hp)
    c = np.random.default_rng(seed + 1).standard_normal(cols.shape)
    lhs, rhs = np.sum(cols * c), np.sum(x * col2im(c, x_shape=x.shape, **hp))
    assert abs(lhs - rhs) <= 1e-12 * (np.abs(cols * c).sum() + 1)


@given(geometries(max_groups=1), st.integers(0, 2**32 - 1))
def test_im2col_times_weights_is_conv2d(geo, seed):
    x, w = random_pair(geo, seed)
    cols = im2col(x, kernel_size=geo["w"][2:], stride=geo["stride"], padding=geo["padding"])
    N, O, Ho, Wo = geo["out"]
    y = (cols @ w.reshape(O, -1).T).reshape(N, Ho, Wo, O).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(y, naive_conv2d(x, w, geo["stride"], geo["padding"]), rtol=1e-10, atol=1e-12)


@given(geometries(), st.integers(0, 2**32 - 1))
def test_gradient_primitives_are_the_adjoints_of_conv2d(geo, seed):
    """⟨x ⋆ w, g⟩ = ⟨x, conv2d_input_grad(g, w)⟩ = ⟨w, conv2d_weight_grad(x, g)⟩, in both forms."""
    x, w = random_pair(geo, seed)
    g = np.random.default_rng(seed + 1).standard_normal(geo["out"])
    y = naive_conv2d(x, w, geo["stride"], geo["padding"], geo["groups"])
    inner = np.sum(y * g)
    scale = np.abs(y * g).sum() + 1
    for form in (False, True):
        with reference_mode(form):
            dx = conv2d_input_grad(g, w, x_shape=x.shape, **hyper(geo))
            dw = conv2d_weight_grad(x, g, w_shape=w.shape, **hyper(geo))
        assert abs(inner - np.sum(x * dx)) <= 1e-11 * scale
        assert abs(inner - np.sum(w * dw)) <= 1e-11 * scale


@given(geometries(max_channels=2), st.integers(0, 2**32 - 1))
def test_conv2d_passes_finite_differences(geo, seed):
    x, w = random_pair(geo, seed)
    g = np.random.default_rng(seed + 2).standard_normal(geo["out"])

    def loss(x, w):
        return anp.sum(anp.tanh(conv2d(x, w, **hyper(geo))) * g)

    # atol: central differences of a sum of O(10) terms carry ~1e-16·|f|/eps ≈ 1e-9 rounding.
    check_gradients(loss, x, w, mode="elementwise", rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("form", ["fast", "reference"])
@pytest.mark.parametrize(
    "x_shape, w_shape, stride, padding, groups",
    [
        ((2, 2, 5, 4), (3, 2, 3, 2), 1, 1, 1),
        ((1, 2, 7, 6), (2, 2, 3, 3), (2, 1), (1, 0), 1),
        ((2, 3, 3, 3), (2, 3, 1, 1), 1, 0, 1),
        ((2, 4, 6, 5), (4, 1, 3, 3), 2, 1, 4),  # depthwise, stride 2 (MobileNetV2)
        ((1, 2, 5, 5), (4, 1, 3, 3), 1, 1, 2),  # depthwise with 2 outputs per channel
        ((1, 4, 5, 4), (6, 2, 3, 3), 1, 1, 2),  # two groups of two channels
    ],
)
def test_primitives_pass_autograd_check_grads_to_second_order(form, x_shape, w_shape, stride, padding, groups):
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    hp = dict(stride=stride, padding=padding, groups=groups)
    with reference_mode(form == "reference"):
        dy = rng.standard_normal(conv2d(x, w, **hp).shape)
        check_grads(lambda x, w: conv2d(x, w, **hp), argnum=(0, 1), modes=["fwd", "rev"], order=2)(x, w)
        check_grads(
            lambda dy, w: conv2d_input_grad(dy, w, x_shape=x_shape, **hp), argnum=(0, 1), modes=["fwd", "rev"], order=2
        )(dy, w)
        check_grads(
            lambda x, dy: conv2d_weight_grad(x, dy, w_shape=w_shape, **hp), argnum=(0, 1), modes=["fwd", "rev"], order=2
        )(x, dy)


def test_hand_written_vjps_are_used_not_traced_through():
    """The gradient of conv2d must come from the primitives, i.e. equal them (dw to rounding:
    at first order it comes from the im2col of dy, see the next test)."""
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3))
    g = rng.standard_normal((2, 4, 6, 6))
    dx, dw = autograd.grad(lambda x, w: anp.sum(conv2d(x, w, padding=1) * g), argnum=(0, 1))(x, w)
    np.testing.assert_array_equal(dx, conv2d_input_grad(g, w, x_shape=x.shape, padding=1))
    np.testing.assert_allclose(dw, conv2d_weight_grad(x, g, w_shape=w.shape, padding=1), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("chunk_bytes", [None, 1], ids=["default-chunks", "one-image-per-chunk"])
@given(geometries(max_channels=5, max_stride=1), st.integers(0, 2**32 - 1), st.sampled_from([np.float64, np.float32]))
@example(  # several chunks for certain: 3 images, a 3×3 stride-1 conv (the fused path)
    geo=dict(x=(3, 2, 5, 4), w=(3, 2, 3, 3), stride=(1, 1), padding=(1, 0), groups=1, out=(3, 3, 5, 2)),
    seed=0,
    dtype=np.float64,
)
def test_first_order_vjp_of_both_arguments_equals_the_gradient_primitives(chunk_bytes, geo, seed, dtype):
    """At first order the VJP computes dx and dw from one im2col of dy (stride 1); it must
    give what the separate primitives give: 1e-12 in float64, 1e-6 in float32. With
    ``chunk_bytes=1`` the VJP runs one image per chunk (dw summed over the chunks), while the
    expected values are computed with the default chunking."""
    x, w = random_pair(geo, seed, dtype)
    g = np.random.default_rng(seed + 1).standard_normal(geo["out"]).astype(dtype)
    hp = hyper(geo)
    host = backend.CPU if chunk_bytes is None else dataclasses.replace(backend.CPU, chunk_bytes=chunk_bytes)
    with backend.use(host):
        vjp, _ = autograd.make_vjp(lambda x, w: conv2d(x, w, **hp), argnum=(0, 1))(x, w)
        dx, dw = vjp(g)
    expected_dx = conv2d_input_grad(g, w, x_shape=x.shape, **hp)
    expected_dw = conv2d_weight_grad(x, g, w_shape=w.shape, **hp)
    tol = 1e-12 if dtype == np.float64 else 1e-6
    assert dx.dtype == dw.dtype == dtype and dx.shape == x.shape and dw.shape == w.shape
    dx_scale = conv2d_input_grad(np.abs(g), np.abs(w), x_shape=x.shape, **hp)  # Σ|terms|
    dw_scale = conv2d_weight_grad(np.abs(x), np.abs(g), w_shape=w.shape, **hp)
    np.testing.assert_array_less(np.abs(dx - expected_dx), tol * (dx_scale + 1))
    np.testing.assert_array_less(np.abs(dw - expected_dw), tol * (dw_scale + 1))


@pytest.mark.parametrize("call", [lambda x, w: conv2d(x=x, w=w), lambda x, w: conv2d(x, w=w)])
def test_arrays_cannot_be_passed_by_keyword(call):
    x, w = np.zeros((1, 1, 3, 3)), np.zeros((1, 1, 3, 3))
    with pytest.raises(TypeError):
        call(x, w)


def test_hyperparameters_are_keyword_only():
    with pytest.raises(TypeError):
        conv2d(np.zeros((1, 1, 3, 3)), np.zeros((1, 1, 3, 3)), 1, 0)


@pytest.mark.parametrize("stride, padding", [(1, 1), (2, 1), (1, 0)])
def test_float32_stays_float32_through_value_and_gradients(stride, padding):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    hp = dict(stride=stride, padding=padding)
    y = conv2d(x, w, **hp)
    assert y.dtype == np.float32
    dx, dw = autograd.grad(lambda x, w: anp.sum(conv2d(x, w, **hp) ** 2), argnum=(0, 1))(x, w)
    assert dx.dtype == np.float32 and dw.dtype == np.float32
    # And second order, through the gradient primitives.
    hvp = autograd.grad(lambda w: anp.sum(autograd.grad(lambda w: anp.sum(conv2d(x, w, **hp) ** 2))(w) * w))(w)
    assert hvp.dtype == np.float32
    np.testing.assert_allclose(
        y, naive_conv2d(x.astype(float), w.astype(float), (stride,) * 2, (padding,) * 2), rtol=1e-4, atol=1e-4
    )


@pytest.mark.parametrize(
    "call, argument",
    [
        # a weight of the wrong input channels is refused, not answered with a gradient of the wrong shape
        (
            lambda: conv2d_input_grad(np.zeros((1, 2, 3, 3)), np.zeros((2, 3, 3, 3)), x_shape=(1, 1, 5, 5)),
            "w: expected 1 input channels",
        ),
        (
            lambda: conv2d_input_grad(np.zeros((1, 2, 4, 4)), np.zeros((2, 1, 3, 3)), x_shape=(1, 1, 5, 5)),
            "dy: expected shape",
        ),
        (lambda: conv2d_input_grad(np.zeros((1, 2, 3, 3)), np.zeros((2, 1, 3, 3)), x_shape=(1, 1, 5)), "x_shape"),
        (
            lambda: conv2d_input_grad(np.zeros((1, 2, 3, 3), np.float32), np.zeros((2, 1, 3, 3)), x_shape=(1, 1, 5, 5)),
            "dy: expected dtype",
        ),
        (
            lambda: conv2d_weight_grad(np.zeros((1, 1, 5, 5)), np.zeros((1, 2, 3, 3)), w_shape=(2, 3, 3, 3)),
            "w_shape: expected 1 input channels",
        ),
        (
            lambda: conv2d_weight_grad(np.zeros((1, 1, 5, 5)), np.zeros((1, 3, 3, 3)), w_shape=(2, 1, 3, 3)),
            "dy: expected shape",
        ),
        (
            lambda: conv2d_weight_grad(np.zeros((1, 1, 5, 5)), np.zeros((1, 2, 3, 3)), w_shape=(2, 1, 3, 3.0)),
            r"w_shape\[3\]",
        ),
        (
            lambda: conv2d_weight_grad([[0.0]], np.zeros((1, 2, 3, 3)), w_shape=(2, 1, 3, 3)),
            "x: expected a numpy.ndarray",
        ),
    ],
)
def test_gradient_primitives_check_their_arguments_as_conv2d(call, argument):
    with pytest.raises((ValueError, TypeError), match=argument) as info:
        call()
    assert "expected" in str(info.value) and "got" in str(info.value)


@pytest.mark.parametrize(
    "w_shape, hp", [((4, 3, 1, 1), {}), ((4, 3, 3, 3), {"padding": 1}), ((4, 3, 3, 3), {"stride": 2})]
)
def test_an_empty_batch_gives_empty_results(w_shape, hp):
    x, w = np.zeros((0, 3, 6, 6)), np.ones(w_shape)
    y = conv2d(x, w, **hp)
    assert y.shape[:2] == (0, 4)
    dx, dw = autograd.grad(lambda x, w: anp.sum(conv2d(x, w, **hp)), argnum=(0, 1))(x, w)
    assert dx.shape == x.shape and dw.shape == w.shape and not dw.any()


def test_first_order_vjp_checks_the_incoming_gradient_and_returns_contiguous_weights():
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 3, 6, 6)).astype(np.float32), rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    vjp, y = autograd.make_vjp(lambda x, w: conv2d(x, w, padding=1), argnum=(0, 1))(x, w)
    with pytest.raises(ValueError, match="g: expected dtype float32"):
        vjp(np.zeros(y.shape))
    with pytest.raises(ValueError, match=r"g: expected shape \(2, 4, 6, 6\)"):
        vjp(np.zeros((2, 4, 6, 5), np.float32))
    dx, dw = vjp(np.ones(y.shape, np.float32))
    assert dw.flags.c_contiguous and dx.flags.c_contiguous
