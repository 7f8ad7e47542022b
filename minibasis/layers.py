"""The layers around the convolutions, as pure functions written with ``autograd.numpy``.

Each function is its equation; autograd differentiates it, to any order. Activations are
NCHW, linear weights PyTorch's ``(out, in)``. Batch norm in training mode has two forms
(:mod:`minibasis.mode`): the equation in ``autograd.numpy`` (the reference form) and a fused
primitive with a hand-written, in-place VJP (the fast form, the default). The fast VJP is
itself written as ``autograd.numpy`` formulas when a higher-order derivative traces it, so
both forms are differentiable to any order. Everything else has one form, the equation.

Conventions (every module): ``anp`` is ``autograd.numpy`` (traced by autograd), ``np`` is
plain NumPy (constants, masks, statistics that are not differentiated).
"""

import autograd.numpy as anp
import numpy as np
from autograd.extend import defjvp, defvjp_argnums, primitive
from autograd.tracer import getval, isbox

from . import checks, parallel
from .conv import conv2d
from .mode import is_reference

BN_MOMENTUM = 0.1
BN_EPS = 1e-5
_CHANNELS = (0, 2, 3)  # the axes batch norm averages over: all but the channel axis


def batch_norm(x, weight, bias, state, /, *, train, relu=False, momentum=BN_MOMENTUM, eps=BN_EPS):
    """Batch normalisation over (N, H, W) per channel, PyTorch's ``BatchNorm2d``.

    ``x: (N, C, H, W)``, ``weight, bias: (C,)``; ``state`` holds ``running_mean``,
    ``running_var`` (C,) and ``num_batches_tracked`` (int64 scalar). Returns ``(y, state)``.

    train:  μ = mean(x),  σ² = mean((x − μ)²)  (biased),  y = weight·(x − μ)/√(σ² + ε) + bias,
            running_mean ← (1 − m)·running_mean + m·μ,
            running_var  ← (1 − m)·running_var + m·σ²·n/(n − 1)  (unbiased, n = N·H·W),
            num_batches_tracked ← num_batches_tracked + 1.
    eval:   y = weight·(x − running_mean)/√(running_var + ε) + bias;  state unchanged.
    relu=True returns max(y, 0) (fused with the BN in the fast form: one primitive, one VJP).
    """
    checks.boolean("train", train), checks.boolean("relu", relu)  # "False" is not False
    checks.array("x", x, ndim=4)
    C = x.shape[1]
    checks.shape("weight", weight, (C,), "(the channels of x)")
    checks.shape("bias", bias, (C,), "(the channels of x)")
    if not train:
        scale = weight / anp.sqrt(state["running_var"].astype(x.dtype) + eps)
        shift = bias - state["running_mean"].astype(x.dtype) * scale
        y = x * scale[None, :, None, None] + shift[None, :, None, None]
        return (_relu(y) if relu else y), state
    n = x.shape[0] * x.shape[2] * x.shape[3]
    if n < 2:
        checks.fail("x", "more than 1 value per channel in training mode", f"shape {x.shape}")
    if is_reference():
        y = batch_norm_train_reference(x, weight, bias, eps=eps)
        y = _relu(y) if relu else y
        mean, var = getval(x).mean(axis=_CHANNELS), getval(x).var(axis=_CHANNELS)  # the textbook statistics
    else:
        mean, var = _channel_stats(getval(x))
        y = batch_norm_train(x, weight, bias, eps=eps, relu=relu, stats=(mean, var))
    return y, _updated_state(state, mean, var, n, momentum)


def _updated_state(state, mean, var, n, momentum):
    """The running statistics after one training batch (PyTorch: unbiased variance)."""
    running_mean, running_var = state["running_mean"], state["running_var"]
    return {
        "running_mean": ((1 - momentum) * running_mean + momentum * mean).astype(running_mean.dtype),
        "running_var": ((1 - momentum) * running_var + momentum * var * (n / (n - 1))).astype(running_var.dtype),
        "num_batches_tracked": state["num_batches_tracked"] + np.int64(1),
    }


def batch_norm_train_reference(x, weight, bias, /, *, eps=BN_EPS):
    """The training-mode BN output as its equation in autograd.numpy (the reference form)."""
    mean = _mean(x, _CHANNELS)
    centered = x - mean[None, :, None, None]
    var = _mean(centered**2, _CHANNELS)
    return centered * (weight / anp.sqrt(var + eps))[None, :, None, None] + bias[None, :, None, None]


def _channel_stats(x):
    """Per-channel mean and biased variance of x: (N, C, H, W) (plain NumPy, no tracing), over
    fixed channel ranges on minibasis' workers (:mod:`minibasis.parallel`).

    Two passes (mean, then the centred squares) rather than E[x²] − μ², which cancels badly
    when |μ| ≫ σ."""
    N, C = x.shape[:2]
    n = N * x[0, 0].size

    def stats(channels):
        flat = x[:, channels].reshape(N, channels.stop - channels.start, -1)
        mean = flat.sum(axis=2).sum(axis=0) / n
        centered = flat - mean[None, :, None]
        return mean, np.einsum("ncp,ncp->c", centered, centered) / n

    parts = parallel.for_each(stats, parallel.slices(C, x.size))
    return np.concatenate([m for m, _ in parts]).astype(x.dtype), np.concatenate([v for _, v in parts]).astype(x.dtype)


@primitive
def batch_norm_train(x, weight, bias, /, *, eps=BN_EPS, relu=False, stats=None):
    """Training-mode BN (the fast form): weight·x̂ + bias, x̂ = (x − μ)/√(σ² + ε) with batch
    statistics; then max(·, 0) when ``relu``. ``stats``: (μ, σ²) of x when the caller already
    computed them (a constant here; the VJP accounts for their dependence on x).

    Centred first, ``(x − μ)·α + bias``: PyTorch's CPU kernel computes ``x·α + (bias − μ·α)``,
    one pass fewer, but that cancels when |μ| ≫ σ (float32 errors of ε·|μ|/σ)."""
    mean, var = _channel_stats(x) if stats is None else stats
    scale = weight / np.sqrt(var + eps)
    y = np.empty_like(x)

    def normalise(c):  # one fixed channel range
        out = y[:, c]
        np.subtract(x[:, c], mean[None, c, None, None], out=out)
        out *= scale[None, c, None, None]
        out += bias[None, c, None, None]
        if relu:
            np.maximum(out, 0, out=out)

    parallel.for_each(normalise, parallel.slices(x.shape[1], x.size))
    return y


def _batch_norm_train_vjp(argnums, y, args, kwargs):
    """With g the incoming gradient (times [y > 0] when fused with ReLU), per channel:
    ∂L/∂x = (weight/σ̂)·(g − mean(g) − x̂·mean(g·x̂)),  ∂L/∂weight = Σ g·x̂,  ∂L/∂bias = Σ g
    (μ and σ² depend on x; the two means are what that dependence contributes)."""
    x, weight, _ = args
    eps, relu = kwargs.get("eps", BN_EPS), kwargs.get("relu", False)

    def vjp(g):
        if relu:
            g = g * (getval(y) > 0)  # (np.where with a scalar 0 is ~7× slower)
        if any(isbox(a) for a in (g, x, weight)):  # a higher-order derivative traces this VJP
            return _batch_norm_train_vjp_traceable(argnums, g, x, weight, eps)
        return _batch_norm_train_vjp_in_place(argnums, g, x, weight, eps, kwargs.get("stats"))

    return vjp


def _batch_norm_train_vjp_in_place(argnums, g, x, weight, eps, stats):
    """The VJP in few passes over memory, in place on x − μ (first order only), over fixed
    channel ranges on minibasis' workers."""
    mean, var = _channel_stats(x) if stats is None else stats
    inv_std = 1 / np.sqrt(var + eps)
    N, C = x.shape[:2]
    n = N * x[0, 0].size
    dx = np.empty_like(x) if 0 in argnums else None

    def channels(c):
        count = c.stop - c.start
        centered, g3 = (x[:, c] - mean[None, c, None, None]).reshape(N, count, -1), g[:, c].reshape(N, count, -1)
        sum_g = g3.sum(axis=2).sum(axis=0)
        sum_gx = inv_std[c] * np.einsum("ncp,ncp->c", g3, centered)  # Σ g·x̂
        if dx is not None:  # in place, on x − μ
            centered *= (-inv_std[c] * sum_gx / n)[None, :, None]  # −x̂·mean(g·x̂) = (x − μ)·(−σ̂⁻¹·Σg·x̂/n)
            centered += g3
            centered -= (sum_g / n)[None, :, None]
            centered *= (weight[c] * inv_std[c])[None, :, None]
            dx[:, c] = centered.reshape(N, count, *x.shape[2:])
        return sum_gx, sum_g

    parts = parallel.for_each(channels, parallel.slices(C, x.size))
    grads = {0: dx, 1: np.concatenate([a for a, _ in parts]), 2: np.concatenate([b for _, b in parts])}
    return tuple(grads[i] for i in argnums)


def _batch_norm_train_vjp_traceable(argnums, g, x, weight, eps):
    """The same VJP as ``autograd.numpy`` formulas (μ, σ̂ recomputed from x), so that autograd
    can differentiate it again: Hessian-vector products through the fast form."""
    mean = _mean(x, _CHANNELS)[None, :, None, None]
    inv_std = 1 / anp.sqrt(_mean((x - mean) ** 2, _CHANNELS) + eps)[None, :, None, None]
    x_hat = (x - mean) * inv_std
    grads = {1: anp.sum(g * x_hat, axis=_CHANNELS), 2: anp.sum(g, axis=_CHANNELS)}
    if 0 in argnums:
        mean_g, mean_gx = _mean(g, _CHANNELS)[None, :, None, None], _mean(g * x_hat, _CHANNELS)[None, :, None, None]
        grads[0] = weight[None, :, None, None] * inv_std * (g - mean_g - x_hat * mean_gx)
    return tuple(grads[i] for i in argnums)


defvjp_argnums(batch_norm_train, _batch_norm_train_vjp)


def _batch_norm_train_jvp(argnum):
    """Forward mode: the derivative of the output along a tangent t of one argument, as
    ``autograd.numpy`` formulas (so forward mode works to any order too):
    x: weight/σ̂·(t − mean(t) − x̂·mean(t·x̂)); weight: t·x̂; bias: t (times [y > 0] with ReLU)."""

    def jvp(t, y, x, weight, bias, eps=BN_EPS, relu=False, stats=None):
        mean = _mean(x, _CHANNELS)[None, :, None, None]
        inv_std = 1 / anp.sqrt(_mean((x - mean) ** 2, _CHANNELS) + eps)[None, :, None, None]
        x_hat = (x - mean) * inv_std
        if argnum == 0:
            mean_t, mean_tx = _mean(t, _CHANNELS)[None, :, None, None], _mean(t * x_hat, _CHANNELS)[None, :, None, None]
            out = weight[None, :, None, None] * inv_std * (t - mean_t - x_hat * mean_tx)
        else:
            out = t[None, :, None, None] * (x_hat if argnum == 1 else anp.ones_like(x_hat))
        return out * (getval(y) > 0) if relu else out

    return jvp


defjvp(batch_norm_train, *(_batch_norm_train_jvp(argnum) for argnum in range(3)))


def batch_norm_state(channels, dtype=np.float32):
    """Fresh BN state: running_mean 0, running_var 1, num_batches_tracked 0 (as PyTorch)."""
    return {
        "running_mean": np.zeros(channels, dtype),
        "running_var": np.ones(channels, dtype),
        "num_batches_tracked": np.zeros((), np.int64),
    }


def relu(x, /):
    """max(x, 0); the derivative at 0 is 0 (as PyTorch)."""
    # x·[x > 0] rather than anp.where: autograd's VJP of where allocates float64 zeros.
    return x * (getval(x) > 0)


_relu = relu  # for batch_norm, whose flag of the same name hides this function


def relu6(x, /):
    """ReLU6(x) = min(max(x, 0), 6) (MobileNetV2): x where 0 < x < 6, 6 from 6 up; the
    derivative is 0 at 0 and at 6, as PyTorch's."""
    value = getval(x)
    return x * ((value > 0) & (value < 6)) + (value >= 6) * value.dtype.type(6)


def sigmoid(x, /):
    """1 / (1 + e^(−x)), computed as exp(x − log(1 + eˣ)): no overflow for large |x|, and full
    relative precision where the gate is tiny ((1 + tanh(x/2))/2 would cancel there)."""
    return anp.exp(x - anp.logaddexp(0, x))


def global_avg_pool(x, /):
    """x: (N, C, H, W) -> (N, C): mean over the pixels (PyTorch's ``AdaptiveAvgPool2d(1)``, flattened)."""
    checks.array("x", x, ndim=4)
    return _mean(x, axis=(2, 3))


def max_pool2d(x, /, *, kernel_size=3, stride=2, padding=1):
    """PyTorch's ``MaxPool2d``: the maximum of each window of the input padded with −∞.

    The windows are stacked along a last axis (one strided view per kernel offset); the output
    picks each window's arg-max (the first one in (i, j) order on ties, as PyTorch), so autograd
    routes the gradient to the arg-max, and differentiates that again (a linear map)."""
    checks.array("x", x, ndim=4)
    kh, kw = checks.pair("kernel_size", kernel_size, 1)
    (sh, sw), (ph, pw) = checks.pair("stride", stride, 1), checks.pair("padding", padding, 0)
    if 2 * ph > kh or 2 * pw > kw:
        checks.fail("padding", f"at most half the kernel ({kh}×{kw}), as PyTorch", repr(padding))
    N, C, H, W = x.shape
    Ho, Wo = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
    if Ho < 1 or Wo < 1:
        checks.fail("x", f"an input of at least {kh - 2 * ph}×{kw - 2 * pw} pixels", f"shape {x.shape}")
    xpad = anp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), mode="constant", constant_values=-np.inf)
    windows = anp.stack([xpad[:, :, i : i + sh * Ho : sh, j : j + sw * Wo : sw] for i in range(kh) for j in range(kw)], axis=-1)
    flat = anp.reshape(windows, (-1, kh * kw))
    arg_max = np.argmax(getval(flat), axis=1)
    return anp.reshape(flat[np.arange(flat.shape[0]), arg_max], (N, C, Ho, Wo))


def dropout(x, /, *, rate, rng=None):
    """PyTorch's ``Dropout(rate)`` in training mode: zero each value with probability ``rate``
    and scale the others by 1/(1 − rate). ``rng`` (a ``numpy.random.Generator``) draws the
    mask; ``rng=None`` is the identity (evaluation, or training with dropout off)."""
    rate = checks.real("rate", rate, 0, 1)
    if rng is None or rate == 0:
        return x
    if rate == 1:  # every value dropped (no 0/0)
        return x * 0
    if not isinstance(rng, np.random.Generator):
        checks.fail("rng", "None or a numpy.random.Generator", type(rng).__name__, TypeError)
    keep = rng.random(x.shape) >= rate
    return x * (keep.astype(x.dtype) / x.dtype.type(1 - rate))


def efficient_channel_attention(x, weight, /):
    """ECA channel attention (Wang et al. 2020), the authors' ``eca_layer``: a gate per channel,
    ``x · sigmoid(w ∗ pooled)``, where ``pooled = mean over pixels (N, C)`` and ``w ∗`` is a
    bias-free 1-D convolution along the channel axis (``weight: (1, 1, k)``, zero padding
    (k − 1)/2), run as a 1×k conv2d of the pooled values laid out as a (N, 1, 1, C) image."""
    checks.array("x", x, ndim=4)
    checks.array("weight", weight, ndim=3)
    k = weight.shape[2]
    if weight.shape[:2] != (1, 1) or k % 2 == 0:
        checks.fail("weight", "shape (1, 1, k) with k odd (a Conv1d(1, 1, k))", f"shape {weight.shape}")
    pooled = global_avg_pool(x)[:, None, None, :]  # (N, 1, 1, C)
    logits = conv2d(pooled, anp.reshape(weight, (1, 1, 1, k)), padding=(0, (k - 1) // 2))
    return x * sigmoid(logits[:, 0, 0, :])[:, :, None, None]


def linear(x, weight, bias, /):
    """y = x·weightᵀ + bias.  x: (N, in), weight: (out, in), bias: (out,) -> (N, out)."""
    if x.ndim != 2 or weight.ndim != 2 or x.shape[1] != weight.shape[1]:
        checks.fail("weight", f"shape (out, {x.shape[-1]}) for x of shape {x.shape}", f"shape {weight.shape}")
    checks.shape("bias", bias, (weight.shape[0],))
    return anp.dot(x, weight.T) + bias


def shortcut_a(x, /, *, out_channels):
    """Option-A shortcut of the CIFAR ResNet (He et al. 2016): no parameters.

    Take every second pixel and zero-pad the channels equally on both sides:
    ``(N, C, H, W) -> (N, out_channels, ceil(H/2), ceil(W/2))``, the input in the middle
    channels ``[(out_channels − C)/2, (out_channels + C)/2)``.
    """
    checks.array("x", x, ndim=4)
    pad = out_channels - x.shape[1]
    if pad < 0 or pad % 2:
        checks.fail("out_channels", f"C + an even number ≥ 0 (C = {x.shape[1]})", repr(out_channels))
    sub = x[:, :, ::2, ::2]
    zeros = np.zeros((x.shape[0], pad // 2) + sub.shape[2:], dtype=x.dtype)
    return anp.concatenate([zeros, sub, zeros], axis=1)


def cross_entropy(logits, labels, /):
    """Mean softmax cross-entropy: mean_n [log Σ_k exp(z_nk) − z_n,label_n].

    ``logits: (N, K)`` float, ``labels: (N,)`` integers in [0, K). The log-sum-exp is
    shifted by the row maximum, so large logits do not overflow.
    """
    checks.array("logits", logits, ndim=2)
    labels = np.asarray(labels)
    checks.array("labels", labels, kind="iu")
    checks.shape("labels", labels, (logits.shape[0],), "(one per row of logits)")
    K = logits.shape[1]
    if labels.size and (labels.min() < 0 or labels.max() >= K):
        checks.fail("labels", f"values in [0, {K})", f"values in [{labels.min()}, {labels.max()}]")
    shift = getval(logits).max(axis=1, keepdims=True)  # a constant: the shift cancels exactly
    z = logits - shift
    log_sum_exp = anp.log(anp.sum(anp.exp(z), axis=1))
    return _mean(log_sum_exp - z[np.arange(logits.shape[0]), labels], axis=(0,))


def _mean(x, axis):
    """Σ x / n. Not anp.mean: autograd's VJP of mean divides by a NumPy int64, which NumPy 2
    promotes to float64, so float32 gradients would silently become float64."""
    n = int(np.prod([x.shape[a] for a in axis]))
    return anp.sum(x, axis=axis) / n
