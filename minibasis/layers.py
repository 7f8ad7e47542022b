"""The layers around the convolutions, as pure functions written with ``autograd.numpy``.

Each function is its equation; autograd differentiates it, to any order. Activations are
NCHW, linear weights PyTorch's ``(out, in)``. Batch norm in training mode also has a fast form,
:mod:`minibasis.layers_fast` (threaded passes, one primitive with a hand-written in-place VJP),
chosen in one line of :func:`batch_norm` outside :func:`minibasis.reference_mode`;
:func:`batch_norm_train` here, the equation, is its reference form (:mod:`minibasis.mode`).

Conventions (every module): ``anp`` is ``autograd.numpy`` (traced by autograd), ``np`` is
plain NumPy (constants, masks, statistics that are not differentiated).
"""

import autograd.numpy as anp
import numpy as np
from autograd.tracer import getval

from . import checks, layers_fast, recording
from .conv import conv2d, output_size
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
        return _relu_if(relu, x * scale[None, :, None, None] + shift[None, :, None, None]), state
    n = x.shape[0] * x.shape[2] * x.shape[3]
    if n < 2:
        checks.fail("x", "more than 1 value per channel in training mode", f"shape {x.shape}")
    form = batch_norm_train if is_reference() else layers_fast.batch_norm_train  # the two forms (mode.py)
    y, mean, var = form(x, weight, bias, eps=eps, relu=relu)
    return y, _updated_state(state, mean, var, n, momentum)


def _updated_state(state, mean, var, n, momentum):
    """The running statistics after one training batch (PyTorch: unbiased variance)."""
    running_mean, running_var = state["running_mean"], state["running_var"]
    return {
        "running_mean": ((1 - momentum) * running_mean + momentum * mean).astype(running_mean.dtype),
        "running_var": ((1 - momentum) * running_var + momentum * var * (n / (n - 1))).astype(running_var.dtype),
        "num_batches_tracked": state["num_batches_tracked"] + np.int64(1),
    }


def batch_norm_train(x, weight, bias, /, *, eps=BN_EPS, relu=False):
    """Training-mode BN as its equation in ``autograd.numpy`` (the reference form of
    :func:`minibasis.layers_fast.batch_norm_train`): -> (y, μ, σ²), y = weight·(x − μ)/√(σ² + ε)
    + bias (then max(y, 0) when ``relu``); μ, σ² the biased batch statistics, untraced."""
    mean = _mean(x, _CHANNELS)
    centered = x - mean[None, :, None, None]
    var = _mean(centered**2, _CHANNELS)
    y = centered * (weight / anp.sqrt(var + eps))[None, :, None, None] + bias[None, :, None, None]
    return _relu_if(relu, y), getval(mean), getval(var)


def batch_norm_state(channels, dtype=np.float32):
    """Fresh BN state: running_mean 0, running_var 1, num_batches_tracked 0 (as PyTorch)."""
    return {
        "running_mean": np.zeros(channels, dtype),
        "running_var": np.ones(channels, dtype),
        "num_batches_tracked": np.zeros((), np.int64),
    }


def relu(x, /):
    """max(x, 0); the derivative at 0 is 0 (as PyTorch)."""
    recording.activation("relu", x)  # (for the oracle; nothing when not recording)
    # x·[x > 0] rather than anp.where: autograd's VJP of where allocates float64 zeros.
    return x * (getval(x) > 0)


def _relu_if(wanted, y):
    """relu(y) when ``wanted`` (batch norm's flag ``relu`` hides the function inside it)."""
    return relu(y) if wanted else y


def relu6(x, /):
    """ReLU6(x) = min(max(x, 0), 6) (MobileNetV2): x where 0 < x < 6, 6 from 6 up; the
    derivative is 0 at 0 and at 6, as PyTorch's."""
    recording.activation("relu6", x)
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
    recording.activation("max_pool", x)
    N, C, H, W = x.shape
    Ho, Wo = output_size(H, kh, sh, ph), output_size(W, kw, sw, pw)
    if Ho < 1 or Wo < 1:
        checks.fail("x", f"an input of at least {kh - 2 * ph}×{kw - 2 * pw} pixels", f"shape {x.shape}")
    xpad = anp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), mode="constant", constant_values=-np.inf)
    windows = anp.stack(
        [xpad[:, :, i : i + sh * Ho : sh, j : j + sw * Wo : sw] for i in range(kh) for j in range(kw)], axis=-1
    )
    flat = anp.reshape(windows, (-1, kh * kw))
    arg_max = np.argmax(getval(flat), axis=1)
    return anp.reshape(flat[np.arange(flat.shape[0]), arg_max], (N, C, Ho, Wo))


def avg_pool2d(x, /, *, kernel_size):
    """PyTorch's ``AvgPool2d(k)`` (``F.avg_pool2d(x, k)``: stride k, no padding): the mean of each
    k×k window; rows and columns past the last whole window are dropped, as PyTorch's floor.
    (DenseNet's transitions: k = 2; ResNeXt's head: k = 4.)"""
    checks.array("x", x, ndim=4)
    k = checks.integer("kernel_size", kernel_size, 1)
    N, C, H, W = x.shape
    Ho, Wo = H // k, W // k
    if Ho < 1 or Wo < 1:
        checks.fail("x", f"an input of at least {k}×{k} pixels", f"shape {x.shape}")
    windows = anp.reshape(x[:, :, : Ho * k, : Wo * k], (N, C, Ho, k, Wo, k))
    return anp.sum(windows, axis=(3, 5)) / (k * k)


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
    recording.output(weight, logits[:, 0], stride=1, padding=(k - 1) // 2)  # the Conv1d's output, (N, 1, C)
    return x * sigmoid(logits[:, 0, 0, :])[:, :, None, None]


def linear(x, weight, bias, /):
    """y = x·weightᵀ + bias.  x: (N, in), weight: (out, in), bias: (out,) -> (N, out)."""
    if x.ndim != 2 or weight.ndim != 2 or x.shape[1] != weight.shape[1]:
        checks.fail("weight", f"shape (out, {x.shape[-1]}) for x of shape {x.shape}", f"shape {weight.shape}")
    checks.shape("bias", bias, (weight.shape[0],))
    y = anp.dot(x, weight.T) + bias
    recording.output(weight, y)
    return y


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
