"""Batch norm, ReLU, pooling, linear, option-A shortcut and cross-entropy: values and gradients."""

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
from autograd.test_util import check_grads
from hypothesis import given
from hypothesis import strategies as st

from minibasis.layers import (
    batch_norm,
    batch_norm_state,
    cross_entropy,
    dropout,
    efficient_channel_attention,
    global_avg_pool,
    linear,
    max_pool2d,
    relu,
    relu6,
    shortcut_a,
    sigmoid,
)
from minibasis.mode import reference_mode
from minibasis.testing import check_gradients

pytestmark = pytest.mark.reference  # also run with MINIBASIS_REFERENCE=1 (see README)

shapes = st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 4), st.integers(1, 4))


def draw_array(shape, seed, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


@given(shapes.filter(lambda s: s[0] * s[2] * s[3] > 1), st.integers(0, 2**32 - 1))
def test_batch_norm_train_mode_matches_its_formula_and_running_statistics(shape, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * 3 + 1
    C = shape[1]
    gamma, beta = rng.standard_normal(C), rng.standard_normal(C)
    state = {
        "running_mean": rng.standard_normal(C),
        "running_var": rng.uniform(0.5, 2, C),
        "num_batches_tracked": np.int64(7),
    }
    y, new = batch_norm(x, gamma, beta, state, train=True)
    n = shape[0] * shape[2] * shape[3]
    for c in range(C):
        values = x[:, c].ravel()
        mu = values.sum() / n
        var = ((values - mu) ** 2).sum() / n
        expected = gamma[c] * (x[:, c] - mu) / np.sqrt(var + 1e-5) + beta[c]
        np.testing.assert_allclose(y[:, c], expected, rtol=1e-10, atol=1e-12)
        assert new["running_mean"][c] == pytest.approx(0.9 * state["running_mean"][c] + 0.1 * mu, rel=1e-12)
        assert new["running_var"][c] == pytest.approx(
            0.9 * state["running_var"][c] + 0.1 * var * n / (n - 1), rel=1e-12
        )
    assert new["num_batches_tracked"] == 8
    assert state["num_batches_tracked"] == 7  # the input state is not mutated


@given(shapes, st.integers(0, 2**32 - 1))
def test_batch_norm_eval_mode_uses_running_statistics(shape, seed):
    rng = np.random.default_rng(seed)
    x, C = rng.standard_normal(shape), shape[1]
    gamma, beta = rng.standard_normal(C), rng.standard_normal(C)
    state = {
        "running_mean": rng.standard_normal(C),
        "running_var": rng.uniform(0.5, 2, C),
        "num_batches_tracked": np.int64(3),
    }
    y, new = batch_norm(x, gamma, beta, state, train=False)
    m, v = state["running_mean"][None, :, None, None], state["running_var"][None, :, None, None]
    np.testing.assert_allclose(
        y, gamma[None, :, None, None] * (x - m) / np.sqrt(v + 1e-5) + beta[None, :, None, None], rtol=1e-12
    )
    assert new is state


def test_batch_norm_running_statistics_after_three_steps_equal_the_closed_form():
    """running_T = 0.9^T·running_0 + Σ_t 0.1·0.9^(T−t)·stat_t, stat_t the batch statistics."""
    rng = np.random.default_rng(0)
    C = 3
    batches = [rng.standard_normal((4, C, 3, 2)) * (t + 1) + t for t in range(3)]
    state = batch_norm_state(C, np.float64)
    for x in batches:
        _, state = batch_norm(x, np.ones(C), np.zeros(C), state, train=True)
    n = 4 * 3 * 2  # values per channel in a batch (N·H·W)
    means = [x.mean(axis=(0, 2, 3)) for x in batches]
    biased = [((x - m[None, :, None, None]) ** 2).mean(axis=(0, 2, 3)) for x, m in zip(batches, means)]
    unbiased = [v * n / (n - 1) for v in biased]  # Bessel's correction: the running var uses n − 1
    for x, v in zip(batches, unbiased):  # n is the right count: NumPy's ddof=1 variance agrees
        np.testing.assert_allclose(v, x.var(axis=(0, 2, 3), ddof=1), rtol=1e-12)
    expected_mean = sum(0.1 * 0.9 ** (2 - t) * means[t] for t in range(3))
    expected_var = 0.9**3 * np.ones(C) + sum(0.1 * 0.9 ** (2 - t) * unbiased[t] for t in range(3))
    np.testing.assert_allclose(state["running_mean"], expected_mean, rtol=1e-12)
    np.testing.assert_allclose(state["running_var"], expected_var, rtol=1e-12)
    assert state["num_batches_tracked"] == 3 and state["num_batches_tracked"].dtype == np.int64
    assert n == 24 and all(x.size == n * C for x in batches)  # n is the per-channel count used above
    # Without the n / (n − 1) correction the expectation would differ: n matters here.
    assert not np.allclose(
        0.9**3 * np.ones(C) + sum(0.1 * 0.9 ** (2 - t) * biased[t] for t in range(3)), expected_var, rtol=1e-3
    )


@given(shapes.filter(lambda s: s[0] * s[2] * s[3] > 1), st.booleans(), st.integers(0, 2**32 - 1))
def test_batch_norm_gradients_pass_finite_differences(shape, train, seed):
    rng = np.random.default_rng(seed)
    x, C = rng.standard_normal(shape), shape[1]
    gamma, beta = rng.standard_normal(C), rng.standard_normal(C)
    state = {
        "running_mean": rng.standard_normal(C),
        "running_var": rng.uniform(0.5, 2, C),
        "num_batches_tracked": np.int64(0),
    }
    g = rng.standard_normal(shape)

    def loss(x, gamma, beta):
        return anp.sum(anp.sin(batch_norm(x, gamma, beta, state, train=train)[0]) * g)

    check_gradients(loss, x, gamma, beta, mode="elementwise", rtol=1e-5, atol=1e-8)


@given(shapes, st.integers(0, 2**32 - 1))
def test_relu_pool_and_shortcut_values_and_gradients(shape, seed):
    x = draw_array(shape, seed)
    np.testing.assert_array_equal(relu(x), np.where(x > 0, x, 0))
    np.testing.assert_allclose(global_avg_pool(x), x.sum(axis=(2, 3)) / (shape[2] * shape[3]), rtol=1e-12)
    out = shortcut_a(x, out_channels=3 * shape[1])
    N, C, H, W = shape
    assert out.shape == (N, 3 * C, (H + 1) // 2, (W + 1) // 2)
    np.testing.assert_array_equal(out[:, C : 2 * C], x[:, :, ::2, ::2])
    assert not out[:, :C].any() and not out[:, 2 * C :].any()
    g = draw_array(out.shape, seed + 1)
    check_gradients(lambda x: anp.sum(shortcut_a(x, out_channels=3 * C) * g), x, mode="elementwise")
    check_gradients(lambda x: anp.sum(global_avg_pool(x) ** 2), x, mode="elementwise")
    check_gradients(lambda x: anp.sum(relu(x) ** 2), x, mode="elementwise")


def test_relu_gradient_is_zero_at_zero_as_pytorch():
    assert autograd.grad(lambda x: anp.sum(relu(x)))(np.zeros(3)).tolist() == [0.0, 0.0, 0.0]


@given(st.integers(1, 4), st.integers(1, 5), st.integers(1, 5), st.integers(0, 2**32 - 1))
def test_linear_value_and_gradients(n, fan_in, fan_out, seed):
    rng = np.random.default_rng(seed)
    x, w, b = rng.standard_normal((n, fan_in)), rng.standard_normal((fan_out, fan_in)), rng.standard_normal(fan_out)
    y = linear(x, w, b)
    for i in range(n):
        for o in range(fan_out):
            assert y[i, o] == pytest.approx(sum(x[i, k] * w[o, k] for k in range(fan_in)) + b[o], rel=1e-12, abs=1e-12)
    check_gradients(lambda x, w, b: anp.sum(anp.tanh(linear(x, w, b))), x, w, b, mode="elementwise")


@given(st.integers(1, 5), st.integers(2, 6), st.integers(0, 2**32 - 1))
def test_cross_entropy_value_and_gradient(n, k, seed):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((n, k)) * 3
    labels = rng.integers(0, k, n)
    expected = np.mean([-np.log(np.exp(logits[i, labels[i]]) / np.exp(logits[i]).sum()) for i in range(n)])
    assert cross_entropy(logits, labels) == pytest.approx(expected, rel=1e-12)
    check_gradients(lambda z: cross_entropy(z, labels), logits, mode="elementwise")
    # d/dz = (softmax − onehot)/n
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    p[np.arange(n), labels] -= 1
    np.testing.assert_allclose(autograd.grad(cross_entropy)(logits, labels), p / n, rtol=1e-10, atol=1e-14)


def test_cross_entropy_is_stable_for_huge_logits():
    logits = np.array([[1000.0, 0.0], [-1000.0, 1000.0]], dtype=np.float32)
    value = cross_entropy(logits, np.array([0, 0]))
    assert np.isfinite(value) and value == pytest.approx(1000.0, rel=1e-6)
    assert value.dtype == np.float32


def test_every_layer_keeps_float32():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 4, 4)).astype(np.float32)
    state = batch_norm_state(4)
    params = {
        "g": np.ones(4, np.float32),
        "b": np.zeros(4, np.float32),
        "w": rng.standard_normal((3, 8)).astype(np.float32),
        "fb": np.zeros(3, np.float32),
    }

    def loss(params, x):
        h, _ = batch_norm(x, params["g"], params["b"], state, train=True)
        h = shortcut_a(relu(h), out_channels=8)
        return cross_entropy(linear(global_avg_pool(h), params["w"], params["fb"]), np.array([0, 2]))

    assert loss(params, x).dtype == np.float32
    grads = autograd.grad(loss)(params, x)
    assert all(g.dtype == np.float32 for g in grads.values())
    assert autograd.grad(loss, 1)(params, x).dtype == np.float32
    _, new_state = batch_norm(x, params["g"], params["b"], state, train=True)
    assert new_state["running_mean"].dtype == np.float32 and new_state["running_var"].dtype == np.float32


@given(shapes.filter(lambda s: s[0] * s[2] * s[3] > 1), st.booleans(), st.integers(0, 2**32 - 1))
def test_batch_norm_with_fused_relu_equals_batch_norm_then_relu(shape, train, seed):
    rng = np.random.default_rng(seed)
    x, C = rng.standard_normal(shape), shape[1]
    gamma, beta, g = rng.standard_normal(C), rng.standard_normal(C), rng.standard_normal(shape)
    state = {
        "running_mean": rng.standard_normal(C),
        "running_var": rng.uniform(0.5, 2, C),
        "num_batches_tracked": np.int64(0),
    }

    def fused(x, gamma, beta):
        return anp.sum(batch_norm(x, gamma, beta, state, train=train, relu=True)[0] * g)

    def separate(x, gamma, beta):
        return anp.sum(relu(batch_norm(x, gamma, beta, state, train=train)[0]) * g)

    assert fused(x, gamma, beta) == pytest.approx(separate(x, gamma, beta), rel=1e-12, abs=1e-12)
    for a, b in zip(
        autograd.grad(fused, (0, 1, 2))(x, gamma, beta), autograd.grad(separate, (0, 1, 2))(x, gamma, beta)
    ):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    check_gradients(fused, x, gamma, beta, rtol=1e-5, atol=1e-8)


# ---- both forms of batch norm, to any order ---------------------------------------------


@pytest.mark.parametrize("relu_after", [False, True])
@given(shapes.filter(lambda s: s[0] * s[2] * s[3] > 1), st.integers(0, 2**32 - 1))
def test_batch_norm_forms_agree_on_outputs_state_and_gradients(relu_after, shape, seed):
    """Reference form (autograd.numpy equation, textbook statistics) and fast form (fused
    primitive): outputs, running statistics and gradients to 1e-12 of their scale in float64."""
    rng = np.random.default_rng(seed)
    x, C = rng.standard_normal(shape) * 2 + 1, shape[1]
    gamma, beta, g = rng.standard_normal(C), rng.standard_normal(C), rng.standard_normal(shape)
    state = {
        "running_mean": rng.standard_normal(C),
        "running_var": rng.uniform(0.5, 2, C),
        "num_batches_tracked": np.int64(0),
    }

    def run():
        def loss(x, gamma, beta):
            return anp.sum(batch_norm(x, gamma, beta, state, train=True, relu=relu_after)[0] * g)

        y, new = batch_norm(x, gamma, beta, state, train=True, relu=relu_after)
        return [y, new["running_mean"], new["running_var"], *autograd.grad(loss, (0, 1, 2))(x, gamma, beta)]

    with reference_mode(False):  # (also under MINIBASIS_REFERENCE=1)
        fast = run()
    with reference_mode():
        reference = run()
    for f, r in zip(fast, reference):
        np.testing.assert_allclose(f, r, rtol=1e-11, atol=1e-12 * (np.abs(r).max() + 1))


@pytest.mark.parametrize("form", ["fast", "reference"])
@pytest.mark.parametrize("relu_after", [False, True])
def test_training_batch_norm_passes_check_grads_to_second_order(form, relu_after):
    """Second-order derivatives, reverse and forward mode, through training-mode BN (the fast
    VJP switches to its traceable formulas when a higher-order derivative traces it; the fast
    form's JVPs are such formulas)."""
    rng = np.random.default_rng(3)
    x, gamma, beta = rng.standard_normal((3, 2, 2, 2)) + 0.5, rng.uniform(0.5, 1.5, 2), rng.standard_normal(2)
    state = batch_norm_state(2, np.float64)
    with reference_mode(form == "reference"):
        f = lambda x, gamma, beta: anp.tanh(batch_norm(x, gamma, beta, state, train=True, relu=relu_after)[0])
        check_grads(f, modes=["fwd", "rev"], order=2)(x, gamma, beta)


# ---- the ImageNet models' layers ----------------------------------------------------------


def test_relu6_and_sigmoid_values_and_gradients():
    x = np.array([-7.0, -1.0, 0.0, 1e-3, 2.5, 5.999, 6.0, 6.001, 30.0, 1e17])
    np.testing.assert_array_equal(relu6(x), np.clip(x, 0, 6))
    np.testing.assert_array_equal(
        relu6(x.astype(np.float32)), np.clip(x, 0, 6).astype(np.float32)
    )  # no cancellation at 1e9
    np.testing.assert_array_equal(
        autograd.elementwise_grad(relu6)(x), ((x > 0) & (x < 6)).astype(float)
    )  # 0 at 0 and 6, as PyTorch
    z = np.array([-800.0, -30.0, -1.0, 0.0, 2.0, 800.0])
    with np.errstate(over="ignore"):
        expected = 1 / (1 + np.exp(-z))
    np.testing.assert_allclose(sigmoid(z), expected, rtol=4e-15, atol=1e-300)  # a few ulps, also where tiny
    np.testing.assert_allclose(
        autograd.elementwise_grad(sigmoid)(z), expected * (1 - expected), rtol=1e-12, atol=1e-300
    )
    assert relu6(x.astype(np.float32)).dtype == sigmoid(z.astype(np.float32)).dtype == np.float32


def naive_max_pool(x, k, s, p):
    """Loops over every output pixel and window element; out-of-range elements are skipped
    (the same as padding with −∞)."""
    N, C, H, W = x.shape
    Ho, Wo = (H + 2 * p - k) // s + 1, (W + 2 * p - k) // s + 1
    y, where = np.full((N, C, Ho, Wo), -np.inf), {}
    for n, c, a, b in np.ndindex(N, C, Ho, Wo):
        for i in range(k):
            for j in range(k):
                u, v = a * s + i - p, b * s + j - p
                if 0 <= u < H and 0 <= v < W and x[n, c, u, v] > y[n, c, a, b]:  # first maximum wins
                    y[n, c, a, b], where[n, c, a, b] = x[n, c, u, v], (u, v)
    return y, where


@given(
    st.integers(1, 2),
    st.integers(1, 3),
    st.integers(1, 7),
    st.integers(1, 7),
    st.sampled_from([(3, 2, 1), (2, 2, 0), (3, 1, 1), (1, 1, 0)]),
    st.integers(0, 2**32 - 1),
)
def test_max_pool_values_and_gradient_go_to_the_arg_max(N, C, H, W, ksp, seed):
    k, s, p = ksp
    if H + 2 * p < k or W + 2 * p < k:
        return
    x = np.random.default_rng(seed).standard_normal((N, C, H, W))
    expected, where = naive_max_pool(x, k, s, p)
    y = max_pool2d(x, kernel_size=k, stride=s, padding=p)
    np.testing.assert_array_equal(y, expected)
    g = np.random.default_rng(seed + 1).standard_normal(y.shape)
    dx = autograd.grad(lambda x: anp.sum(max_pool2d(x, kernel_size=k, stride=s, padding=p) * g))(x)
    routed = np.zeros_like(x)
    for (n, c, a, b), (u, v) in where.items():
        routed[n, c, u, v] += g[n, c, a, b]
    np.testing.assert_allclose(dx, routed, rtol=1e-15, atol=0)


def test_max_pool_ties_pick_the_first_element_as_pytorch_and_second_order_away_from_ties():
    x = np.zeros((1, 1, 3, 3))
    dx = autograd.grad(lambda x: anp.sum(max_pool2d(x, kernel_size=3, stride=2, padding=1)))(x)
    # All values tie; output (a, b) reads rows 2a−1…2a+1, columns 2b−1…2b+1, and its first
    # in-range element, (2a, 2b) clipped to ≥ 0 … i.e. (0,0), (0,1), (1,0), (1,1), gets the gradient.
    np.testing.assert_array_equal(dx[0, 0], [[1, 1, 0], [1, 1, 0], [0, 0, 0]])
    x = np.random.default_rng(0).permutation(2 * 3 * 5 * 4).reshape(2, 3, 5, 4) / 7.0  # distinct values: no ties
    check_grads(lambda x: anp.tanh(max_pool2d(x)), modes=["fwd", "rev"], order=2)(x)


def test_dropout_masks_from_the_generator_and_is_the_identity_without_one():
    x = np.ones((400, 50), np.float32)
    y = dropout(x, rate=0.2, rng=np.random.default_rng(5))
    assert y.dtype == np.float32
    assert set(np.unique(y)) == {0.0, np.float32(1 / 0.8)}
    assert abs((y == 0).mean() - 0.2) < 0.01  # 20,000 draws: standard error 0.003
    np.testing.assert_array_equal(y, dropout(x, rate=0.2, rng=np.random.default_rng(5)))  # the seed fixes the mask
    assert dropout(x, rate=0.2) is x and dropout(x, rate=0.0, rng=np.random.default_rng(5)) is x
    assert not np.any(dropout(x, rate=1.0, rng=np.random.default_rng(5)))  # all dropped: zeros, not 0/0
    mask = (y != 0) / 0.8
    np.testing.assert_allclose(
        autograd.grad(lambda x: anp.sum(dropout(x, rate=0.2, rng=np.random.default_rng(5))))(x), mask
    )


def naive_eca(x, w):
    """The authors' eca_layer by loops: pooled mean per channel, a zero-padded 1-D correlation
    along the channels, a sigmoid gate."""
    N, C = x.shape[:2]
    k = w.shape[-1]
    pooled = x.mean(axis=(2, 3))
    z = np.zeros((N, C))
    for n, c in np.ndindex(N, C):
        for t in range(k):
            src = c + t - (k - 1) // 2
            if 0 <= src < C:
                z[n, c] += w[0, 0, t] * pooled[n, src]
    return x / (1 + np.exp(-z))[:, :, None, None]


@given(st.integers(1, 3), st.integers(1, 6), st.sampled_from([1, 3, 5]), st.integers(0, 2**32 - 1))
def test_efficient_channel_attention_values_and_gradients(N, C, k, seed):
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal((N, C, 2, 3)), rng.standard_normal((1, 1, k))
    np.testing.assert_allclose(efficient_channel_attention(x, w), naive_eca(x, w), rtol=1e-12, atol=1e-14)
    g = rng.standard_normal(x.shape)
    check_gradients(
        lambda x, w: anp.sum(efficient_channel_attention(x, w) * g), x, w, mode="elementwise", rtol=1e-6, atol=1e-8
    )
