"""Reference mode: every kernel's fast form equals its textbook form (conv2d and its gradients on
drawn geometries, on several workers; batch norm and its gradients to second order), a whole
training step is the same in both modes, and both differentiate to second order (a
Hessian-vector product against finite differences). Every fast-equals-reference check lives here."""

import os
import subprocess
import sys

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minibasis
from minibasis.conv import conv2d, conv2d_input_grad, conv2d_weight_grad
from minibasis.layers import batch_norm, batch_norm_state, cross_entropy
from minibasis.mode import is_reference, reference_mode
from minibasis.models import create_model
from minibasis.tree import flatten, tree_map, unflatten
from support.conv_geometries import geometries, hyper, random_pair

shapes = st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 4), st.integers(1, 4))  # (N, C, H, W)

pytestmark = pytest.mark.reference


def perturbed(model, seed):
    """float64 params/state away from the init's symmetric values (BN weights ≠ 1, statistics ≠ 0/1)."""
    params, state = model.init(seed, dtype=np.float64)
    rng = np.random.default_rng(seed)
    params = tree_map(lambda v: v + 0.1 * rng.standard_normal(v.shape), params)
    state = unflatten(
        {k: v + rng.uniform(0.1, 0.5, v.shape) if v.dtype.kind == "f" else v for k, v in flatten(state).items()}
    )
    return params, state


def training_step(model, params, state, x, labels):
    """(logits, loss, gradients, new BN state) of one training step, λ = 10."""

    def loss(params):
        logits, _ = model.apply(params, state, x, train=True)
        return cross_entropy(logits, labels) + 10.0 * model.orthogonality(params)

    logits, new_state = model.apply(params, state, x, train=True)
    return {
        "logits": logits,
        "loss": loss(params),
        **{f"grad {k}": g for k, g in flatten(autograd.grad(loss)(params)).items()},
        **{f"state {k}": v for k, v in flatten(new_state).items()},
    }


@pytest.mark.parametrize(
    "spec, size",
    [
        ("resnet14", 8),
        ("resnet14-s2u1", 8),
        ("resnet14-single-s2u1", 8),
        ("resnet14-s2u0", 8),
        ("resnet14-s0u2", 8),
        ("imagenet-mobilenetv2-shared++", 32),
        ("imagenet-resnet50-shared++", 32),
    ],
)
def test_a_training_step_is_the_same_in_both_modes(spec, size):
    """Logits, loss, every gradient and the BN state: 1e-10 of each array's scale in float64,
    plus, for a gradient, 1e-13 of the largest gradient: a bias followed by a training-mode BN
    has gradient 0 and both forms give rounding noise there (the golden files' README shows
    PyTorch's own kernels differ likewise)."""
    model = create_model(spec, num_classes=5)
    params, state = perturbed(model, seed=3)
    rng = np.random.default_rng(0)
    x, labels = rng.standard_normal((4, 3, size, size)), np.array([0, 1, 2, 4])
    with reference_mode(False):  # (also under MINIBASIS_REFERENCE=1)
        fast = training_step(model, params, state, x, labels)
    with reference_mode():
        reference = training_step(model, params, state, x, labels)
    assert fast.keys() == reference.keys()
    largest_gradient = max(np.max(np.abs(v)) for k, v in reference.items() if k.startswith("grad"))
    for key in fast:
        floor = 1e-13 * largest_gradient if key.startswith("grad") else 0.0
        assert (
            np.max(np.abs(np.asarray(fast[key]) - reference[key])) <= 1e-10 * np.max(np.abs(reference[key])) + floor
        ), key


@pytest.mark.parametrize("form", ["reference", "fast"])
def test_a_hessian_vector_product_equals_finite_differences_of_the_gradient(form):
    """H·v of a shared model's training loss (conv, BN in training mode, ReLU, basis layers,
    pooling, cross-entropy, R) against (∇L(θ + εv) − ∇L(θ − εv)) / 2ε, in the direction v."""
    model = create_model("resnet14-s2u1", num_classes=3)
    params, state = perturbed(model, seed=5)
    rng = np.random.default_rng(1)
    x, labels = rng.standard_normal((3, 3, 6, 6)), np.array([0, 2, 1])
    names = list(flatten(params))
    theta = np.concatenate([flatten(params)[k].ravel() for k in names])
    shapes = [flatten(params)[k].shape for k in names]

    def loss(vector):
        leaves, start = {}, 0
        for name, shape in zip(names, shapes):
            size = int(np.prod(shape))
            leaves[name] = anp.reshape(vector[start : start + size], shape)
            start += size
        logits, _ = model.apply(unflatten(leaves), state, x, train=True)
        return cross_entropy(logits, labels) + 10.0 * model.orthogonality(unflatten(leaves))

    v = rng.standard_normal(theta.size)
    v /= np.linalg.norm(v)
    with reference_mode(form == "reference"):
        gradient = autograd.grad(loss)
        hvp = autograd.grad(lambda t: anp.dot(gradient(t), v))(theta)
        eps = 1e-5
        finite = (gradient(theta + eps * v) - gradient(theta - eps * v)) / (2 * eps)
    error = np.linalg.norm(hvp - finite) / np.linalg.norm(finite)
    assert error < 1e-6, error  # central differences: O(ε²) ≈ 1e-10 plus rounding O(1e-16/ε) ≈ 1e-11


def test_reference_mode_is_scoped_and_nests():
    outside = is_reference()  # True in the suite's second run, under MINIBASIS_REFERENCE=1
    with minibasis.reference_mode():
        assert is_reference()
        with reference_mode(False):
            assert not is_reference()
        assert is_reference()
    assert is_reference() == outside
    with pytest.raises(ValueError, match="enabled: expected True or False"):
        with reference_mode("yes"):
            pass


@pytest.mark.parametrize("value, expected", [("1", "True"), ("0", "False"), ("", "False")])
def test_the_environment_variable_switches_a_whole_process(value, expected):
    env = {**os.environ, "MINIBASIS_REFERENCE": value}
    out = subprocess.run(
        [sys.executable, "-c", "from minibasis.mode import is_reference; print(is_reference())"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.stdout.strip() == expected, out.stderr


def test_a_bad_environment_value_is_one_clear_line():
    env = {**os.environ, "MINIBASIS_REFERENCE": "yes"}
    out = subprocess.run(
        [sys.executable, "-c", "import minibasis; minibasis.mode.is_reference()"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0  # read at the first use, not at import (so that the CLI says it in one line: test_cli)
    assert "MINIBASIS_REFERENCE: expected '1' (reference mode), '0' or unset, got 'yes'" in out.stderr


# ---- each kernel's fast form against its reference form -----------------------------------


@given(geometries(max_channels=4), st.integers(0, 2**32 - 1), st.sampled_from([np.float64, np.float32]))
def test_fast_form_equals_the_reference_form(geo, seed, dtype):
    """All three maps, every drawn geometry (groups, depthwise, strides, padding): the fast form
    against the textbook im2col / GEMM / col2im, to 1e-12 (float64) or 1e-6 (float32) of the
    sum of the absolute terms (the scale of the rounding)."""
    x, w = random_pair(geo, seed, dtype)
    dy = np.random.default_rng(seed + 1).standard_normal(geo["out"]).astype(dtype)
    hp = hyper(geo)
    maps = {
        "conv2d": (lambda x, w: conv2d(x, w, **hp), (x, w)),
        "input_grad": (lambda dy, w: conv2d_input_grad(dy, w, x_shape=x.shape, **hp), (dy, w)),
        "weight_grad": (lambda x, dy: conv2d_weight_grad(x, dy, w_shape=w.shape, **hp), (x, dy)),
    }
    tol = 1e-12 if dtype == np.float64 else 1e-6
    for name, (f, args) in maps.items():
        with reference_mode():
            reference, scale = f(*args), f(*(np.abs(a) for a in args))
        with reference_mode(False):
            fast = f(*args)
        assert fast.dtype == reference.dtype == dtype and fast.shape == reference.shape, name
        np.testing.assert_array_less(np.abs(fast - reference), tol * (scale + 1), err_msg=name)


@given(shapes.filter(lambda s: s[0] * s[2] * s[3] > 1), st.integers(0, 2**32 - 1))
def test_fused_batch_norm_equals_the_reference_formulation(shape, seed):
    """The fast primitive and the plain autograd.numpy equation: same outputs, batch statistics and gradients,
    to 1e-12 in float64 and 1e-6 in float32, relative to the scale of what is summed
    (max |y| for y; |weight|/σ̂·3·max|g| for ∂x = weight/σ̂·(g − mean g − x̂·mean g·x̂);
    Σ|g·x̂| and Σ|g| for the sums ∂weight and ∂bias)."""
    from minibasis import layers, layers_fast

    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * 2 + 0.5
    gamma, beta, g = rng.standard_normal(shape[1]), rng.standard_normal(shape[1]), rng.standard_normal(shape)
    var = x.var(axis=(0, 2, 3), keepdims=True)
    xhat = (x - x.mean(axis=(0, 2, 3), keepdims=True)) / np.sqrt(var)
    dx_scale = np.abs(gamma)[None, :, None, None] / np.sqrt(var + 1e-5) * 3 * np.abs(g).max() + 1
    for dtype, tol in ((np.float64, 1e-12), (np.float32, 1e-6)):
        args = [a.astype(dtype) for a in (x, gamma, beta)]
        gd = g.astype(dtype)
        fast, fast_mean, fast_var = layers_fast.batch_norm_train(*args, eps=1e-5)
        ref, ref_mean, ref_var = layers.batch_norm_train(*args, eps=1e-5)
        assert fast.dtype == dtype
        assert np.all(np.abs(fast - ref) <= tol * (np.abs(ref).max() + 1)), np.abs(fast - ref).max()
        for statistic, expected in ((fast_mean, x.mean(axis=(0, 2, 3))), (fast_var, var[0, :, 0, 0])):
            assert statistic.dtype == dtype and np.allclose(statistic, expected, rtol=tol * 10, atol=tol * 10)
        np.testing.assert_allclose(ref_mean, x.mean(axis=(0, 2, 3)), rtol=tol * 10, atol=tol * 10)
        np.testing.assert_allclose(ref_var, var[0, :, 0, 0], rtol=tol * 10, atol=tol * 10)
        grads_fast = autograd.grad(
            lambda *a: anp.sum(layers_fast.batch_norm_train(*a, eps=1e-5)[0] * gd), argnum=(0, 1, 2)
        )(*args)
        grads_ref = autograd.grad(lambda *a: anp.sum(layers.batch_norm_train(*a, eps=1e-5)[0] * gd), argnum=(0, 1, 2))(
            *args
        )
        scales = (dx_scale, np.abs(g * xhat).sum(axis=(0, 2, 3)) + 1, np.abs(g).sum(axis=(0, 2, 3)) + 1)
        for f, r, scale in zip(grads_fast, grads_ref, scales):
            assert f.dtype == dtype
            assert np.all(np.abs(f - r) <= tol * scale), (np.abs(f - r) / scale).max()


def test_a_hessian_vector_product_through_fast_batch_norm_equals_the_reference_one():
    rng = np.random.default_rng(4)
    x, gamma, beta = rng.standard_normal((4, 3, 2, 2)), rng.uniform(0.5, 1.5, 3), rng.standard_normal(3)
    v, g = rng.standard_normal(x.shape), rng.standard_normal(x.shape)
    state = batch_norm_state(3, np.float64)
    loss = lambda x: anp.sum(anp.tanh(batch_norm(x, gamma, beta, state, train=True, relu=True)[0]) * g)
    hvp = lambda: autograd.grad(lambda x: anp.sum(autograd.grad(loss)(x) * v))(x)
    with reference_mode(False):
        fast = hvp()
    with reference_mode():
        reference = hvp()
    np.testing.assert_allclose(fast, reference, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "x_shape, w_shape, hyper",
    [
        ((9, 5, 12, 12), (6, 5, 3, 3), dict(padding=1)),  # several chunks, the fused first-order VJP
        ((9, 5, 12, 12), (6, 5, 3, 3), dict(stride=2, padding=1)),  # col2im input gradient
        ((9, 40, 6, 6), (24, 40, 1, 1), {}),  # 1×1 on small maps: one channel-major GEMM per piece
        ((9, 20, 17, 16), (12, 20, 1, 1), {}),  # 1×1 on large maps: a GEMM per image
        ((5, 32, 9, 9), (32, 1, 3, 3), dict(stride=2, padding=1, groups=32)),  # depthwise over ranges of images
        ((5, 8, 9, 9), (16, 1, 3, 3), dict(padding=1, groups=8)),  # depthwise, 2 outputs per channel
    ],
)
def test_kernels_on_several_workers_equal_their_reference_forms(workers, many_pieces, x_shape, w_shape, hyper):
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    y_shape = conv2d(x, w, **hyper).shape
    dy = rng.standard_normal(y_shape)
    loss = lambda x, w: np.sum(conv2d(x, w, **hyper) * dy)
    with reference_mode():
        expected = [
            conv2d(x, w, **hyper),
            conv2d_input_grad(dy, w, x_shape=x_shape, **hyper),
            conv2d_weight_grad(x, dy, w_shape=w_shape, **hyper),
        ]
    workers(3)
    with reference_mode(False):
        fused = autograd.grad(loss, (0, 1))(x, w)  # both gradients at first order
        got = [
            conv2d(x, w, **hyper),
            conv2d_input_grad(dy, w, x_shape=x_shape, **hyper),
            conv2d_weight_grad(x, dy, w_shape=w_shape, **hyper),
        ]
    for a, b in zip(got + list(fused), expected + expected[1:]):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-11 * np.abs(b).max())
    assert max(many_pieces.values()) > 1, many_pieces
