"""The other layers of a CIFAR ResNet, as pure functions written with ``autograd.numpy``.

Each function is its equation; autograd differentiates it (to any order). Activations are
NCHW, linear weights PyTorch's ``(out, in)``.
"""

import autograd.numpy as np
import numpy as onp
from autograd.extend import defvjp_argnums, primitive
from autograd.tracer import getval

BN_MOMENTUM = 0.1
BN_EPS = 1e-5


def batch_norm(x, weight, bias, state, /, *, train, relu=False, momentum=BN_MOMENTUM, eps=BN_EPS):
    """Batch normalisation over (N, H, W) per channel, PyTorch's ``BatchNorm2d``.

    ``x: (N, C, H, W)``, ``weight, bias: (C,)``; ``state`` holds ``running_mean``,
    ``running_var`` (C,) and ``num_batches_tracked`` (int64 scalar). Returns ``(y, state)``.

    train:  μ = mean(x),  σ² = mean((x − μ)²)  (biased),  y = weight·(x − μ)/√(σ² + ε) + bias,
            running_mean ← (1 − m)·running_mean + m·μ,
            running_var  ← (1 − m)·running_var + m·σ²·n/(n − 1)  (unbiased, n = N·H·W),
            num_batches_tracked ← num_batches_tracked + 1.
    eval:   y = weight·(x − running_mean)/√(running_var + ε) + bias;  state unchanged.
    relu=True returns max(y, 0) (fused: one primitive, one VJP).

    Training mode runs the fused primitive :func:`batch_norm_train` (hand-written VJP, few
    passes over memory); :func:`batch_norm_train_reference` is the same equation in plain
    autograd.numpy, the reference it is tested against.
    """
    _check_nchw("x", x)
    C = x.shape[1]
    for name, a in (("weight", weight), ("bias", bias)):
        if a.shape != (C,):
            raise ValueError(f"{name}: expected shape ({C},) (channels of x), got {a.shape}")
    if not train:
        scale = weight / np.sqrt(state["running_var"].astype(x.dtype) + eps)
        shift = bias - state["running_mean"].astype(x.dtype) * scale
        y = x * scale[None, :, None, None] + shift[None, :, None, None]
        return (_relu(y) if relu else y), state
    n = x.shape[0] * x.shape[2] * x.shape[3]
    if n < 2:
        raise ValueError(f"x: expected more than 1 value per channel in training mode, got shape {x.shape}")
    mean, var = _channel_stats(getval(x))
    y = batch_norm_train(x, weight, bias, eps=eps, relu=relu, stats=(mean, var))
    running_mean, running_var = state["running_mean"], state["running_var"]
    state = {
        "running_mean": ((1 - momentum) * running_mean + momentum * mean).astype(running_mean.dtype),
        "running_var": ((1 - momentum) * running_var + momentum * var * (n / (n - 1))).astype(running_var.dtype),
        "num_batches_tracked": state["num_batches_tracked"] + onp.int64(1),
    }
    return y, state


def _channel_stats(x):
    """Per-channel mean and biased variance of x: (N, C, H, W) (plain NumPy, no tracing).

    Two passes (mean, then the centred squares) rather than E[x²] − μ², which cancels badly
    when |μ| ≫ σ."""
    N, C = x.shape[:2]
    flat = x.reshape(N, C, -1)
    n = flat.shape[0] * flat.shape[2]
    mean = flat.sum(axis=2).sum(axis=0) / n
    centered = flat - mean[None, :, None]
    var = onp.einsum("ncp,ncp->c", centered, centered) / n
    return mean.astype(x.dtype), var.astype(x.dtype)


@primitive
def batch_norm_train(x, weight, bias, /, *, eps=BN_EPS, relu=False, stats=None):
    """Training-mode BN: weight·x̂ + bias, x̂ = (x − μ)/√(σ² + ε) with batch statistics;
    then max(·, 0) when ``relu``. ``stats``: (μ, σ²) of x when the caller already computed
    them (a constant here; the VJP accounts for their dependence on x). x: (N, C, H, W).

    Centred first, ``(x − μ)·α + bias``: PyTorch's CPU kernel computes ``x·α + (bias − μ·α)``,
    one pass fewer, but that cancels when |μ| ≫ σ (float32 errors of ε·|μ|/σ)."""
    mean, var = _channel_stats(x) if stats is None else stats
    y = x - mean[None, :, None, None]
    y *= (weight / onp.sqrt(var + eps))[None, :, None, None]
    y += bias[None, :, None, None]
    return onp.maximum(y, 0, out=y) if relu else y


def _batch_norm_train_vjp(argnums, y, args, kwargs):
    """With g the incoming gradient (times [y > 0] when fused with ReLU), per channel:
    ∂L/∂x = (weight/σ̂)·(g − mean(g) − x̂·mean(g·x̂)),  ∂L/∂weight = Σ g·x̂,  ∂L/∂bias = Σ g
    (μ and σ² depend on x; the two means are what that dependence contributes)."""
    x, weight, _ = args
    eps, stats = kwargs.get("eps", BN_EPS), kwargs.get("stats")
    mean, var = _channel_stats(x) if stats is None else stats
    inv_std = 1 / onp.sqrt(var + eps)
    N, C = x.shape[:2]
    n = N * x.shape[2] * x.shape[3]

    def vjp(g):
        if kwargs.get("relu"):
            g = g * (y > 0)  # (np.where with a scalar 0 is ~7× slower)
        centered, g3 = (x - mean[None, :, None, None]).reshape(N, C, -1), g.reshape(N, C, -1)
        sum_g = g3.sum(axis=2).sum(axis=0)
        sum_gx = inv_std * onp.einsum("ncp,ncp->c", g3, centered)  # Σ g·x̂
        grads = {1: sum_gx, 2: sum_g}
        if 0 in argnums:  # in place, on x − μ
            dx = centered
            dx *= (-inv_std * sum_gx / n)[None, :, None]  # −x̂·mean(g·x̂) = (x − μ)·(−σ̂⁻¹·Σg·x̂/n)
            dx += g3
            dx -= (sum_g / n)[None, :, None]
            dx *= (weight * inv_std)[None, :, None]
            grads[0] = dx.reshape(x.shape)
        return tuple(grads[i] for i in argnums)

    return vjp


defvjp_argnums(batch_norm_train, _batch_norm_train_vjp)


def batch_norm_train_reference(x, weight, bias, /, *, eps=BN_EPS):
    """The training-mode BN output written as its equation in autograd.numpy (the reference)."""
    mean = _mean(x, axis=(0, 2, 3))
    centered = x - mean[None, :, None, None]
    var = _mean(centered**2, axis=(0, 2, 3))
    return centered * (weight / np.sqrt(var + eps))[None, :, None, None] + bias[None, :, None, None]


def batch_norm_state(channels, dtype=onp.float32):
    """Fresh BN state: running_mean 0, running_var 1, num_batches_tracked 0 (as PyTorch)."""
    return {
        "running_mean": onp.zeros(channels, dtype),
        "running_var": onp.ones(channels, dtype),
        "num_batches_tracked": onp.zeros((), onp.int64),
    }


def relu(x, /):
    """max(x, 0); the derivative at 0 is 0 (as PyTorch)."""
    # x·[x > 0] rather than np.where: autograd's VJP of where allocates float64 zeros.
    return x * (getval(x) > 0)


_relu = relu  # for batch_norm, whose flag of the same name hides this function


def global_avg_pool(x, /):
    """x: (N, C, H, W) -> (N, C): mean over the pixels."""
    _check_nchw("x", x)
    return _mean(x, axis=(2, 3))


def linear(x, weight, bias, /):
    """y = x·weightᵀ + bias.  x: (N, in), weight: (out, in), bias: (out,) -> (N, out)."""
    if x.ndim != 2 or weight.ndim != 2 or x.shape[1] != weight.shape[1]:
        raise ValueError(f"weight: expected shape (out, {x.shape[-1]}) for x of shape {x.shape}, got {weight.shape}")
    if bias.shape != (weight.shape[0],):
        raise ValueError(f"bias: expected shape ({weight.shape[0]},), got {bias.shape}")
    return np.dot(x, weight.T) + bias


def shortcut_a(x, /, *, out_channels):
    """Option-A shortcut of the CIFAR ResNet (He et al. 2016): no parameters.

    Take every second pixel and zero-pad the channels equally on both sides:
    ``(N, C, H, W) -> (N, out_channels, ceil(H/2), ceil(W/2))``, the input in the middle
    channels ``[(out_channels − C)/2, (out_channels + C)/2)``.
    """
    _check_nchw("x", x)
    pad = out_channels - x.shape[1]
    if pad < 0 or pad % 2:
        raise ValueError(
            f"out_channels: expected C + an even number ≥ 0 (C = {x.shape[1]}), got {out_channels}"
        )
    sub = x[:, :, ::2, ::2]
    zeros = onp.zeros((x.shape[0], pad // 2) + sub.shape[2:], dtype=x.dtype)
    return np.concatenate([zeros, sub, zeros], axis=1)


def cross_entropy(logits, labels, /):
    """Mean softmax cross-entropy: mean_n [log Σ_k exp(z_nk) − z_n,label_n].

    ``logits: (N, K)`` float, ``labels: (N,)`` integers in [0, K). The log-sum-exp is
    shifted by the row maximum, so large logits do not overflow.
    """
    if logits.ndim != 2:
        raise ValueError(f"logits: expected 2 dimensions (N, classes), got shape {logits.shape}")
    labels = onp.asarray(labels)
    if labels.dtype.kind not in "iu":
        raise ValueError(f"labels: expected integers, got dtype {labels.dtype}")
    if labels.shape != (logits.shape[0],):
        raise ValueError(f"labels: expected shape ({logits.shape[0]},), got {labels.shape}")
    K = logits.shape[1]
    if labels.size and (labels.min() < 0 or labels.max() >= K):
        raise ValueError(f"labels: expected values in [0, {K}), got values in [{labels.min()}, {labels.max()}]")
    shift = getval(logits).max(axis=1, keepdims=True)  # a constant: the shift cancels exactly
    z = logits - shift
    log_sum_exp = np.log(np.sum(np.exp(z), axis=1))
    return _mean(log_sum_exp - z[onp.arange(logits.shape[0]), labels], axis=(0,))


def _mean(x, axis):
    """Σ x / n. Not np.mean: autograd's VJP of mean divides by a NumPy int64, which NumPy 2
    promotes to float64, so float32 gradients would silently become float64."""
    n = int(onp.prod([x.shape[a] for a in axis]))
    return np.sum(x, axis=axis) / n


def _check_nchw(name, x):
    if x.ndim != 4:
        raise ValueError(f"{name}: expected 4 dimensions (N, C, H, W), got shape {x.shape}")
