"""The fast form of training-mode batch norm: threaded passes, an in-place VJP, forward-mode rules.

What training runs; :func:`minibasis.layers.batch_norm_train`, the equation in ``autograd.numpy``,
is the reference form it is tested equal to (:mod:`minibasis.mode` switches between them).

The output is one primitive, :func:`_normalise`, with a hand-written VJP instead of autograd's
trace of a dozen array operations. At first order the VJP works in few passes over memory, in
place on x − μ; when a higher-order derivative traces it, it is the same formula written in
``autograd.numpy`` (differentiable again), and forward mode has its own rules, so this form is
differentiable to any order too. Every pass runs over fixed channel ranges on minibasis' worker
threads (:mod:`minibasis.parallel`): the ranges depend on the shapes alone, so the results are
bit-identical for any number of workers.
"""

import autograd.numpy as anp
import numpy as np
from autograd.extend import defjvp, defvjp_argnums, primitive
from autograd.tracer import getval, isbox

from . import parallel

_CHANNELS = (0, 2, 3)  # the axes batch norm averages over: all but the channel axis


def batch_norm_train(x, weight, bias, /, *, eps, relu=False):
    """Training-mode BN (the fast form): -> (y, μ, σ²), y = weight·(x − μ)/√(σ² + ε) + bias
    (then max(y, 0) when ``relu``), μ and σ² the biased batch statistics per channel (constants,
    for the running state)."""
    mean, var = channel_stats(getval(x))
    return _normalise(x, weight, bias, stats=(mean, var), eps=eps, relu=relu), mean, var


def channel_stats(x):
    """Per-channel mean and biased variance of x: (N, C, H, W), plain NumPy, over channel ranges.

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
def _normalise(x, weight, bias, /, *, stats, eps, relu):
    """weight·(x − μ)/√(σ² + ε) + bias with (μ, σ²) = ``stats``, the batch statistics of x (a
    constant here; the VJP accounts for their dependence on x); then max(·, 0) when ``relu``.

    Centred first, ``(x − μ)·α + bias``: PyTorch's CPU kernel computes ``x·α + (bias − μ·α)``,
    one pass fewer, but that cancels when |μ| ≫ σ (float32 errors of ε·|μ|/σ)."""
    mean, var = stats
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


def _normalise_vjp(argnums, y, args, kwargs):
    """With g the incoming gradient (times [y > 0] when fused with ReLU), per channel:
    ∂L/∂x = (weight/σ̂)·(g − mean(g) − x̂·mean(g·x̂)),  ∂L/∂weight = Σ g·x̂,  ∂L/∂bias = Σ g
    (μ and σ² depend on x; the two means are what that dependence contributes)."""
    x, weight, _ = args

    def vjp(g):
        if kwargs["relu"]:
            g = g * (getval(y) > 0)  # (np.where with a scalar 0 is ~7× slower)
        if any(isbox(a) for a in (g, x, weight)):  # a higher-order derivative traces this VJP
            return _vjp_traceable(argnums, g, x, weight, kwargs["eps"])
        return _vjp_in_place(argnums, g, x, weight, kwargs["eps"], kwargs["stats"])

    return vjp


def _vjp_in_place(argnums, g, x, weight, eps, stats):
    """The VJP in few passes over memory, in place on x − μ (first order only), over channel ranges."""
    mean, var = stats
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
            # −x̂·mean(g·x̂) = (x − μ)·(−σ̂⁻¹·Σg·x̂/n)
            centered *= (-inv_std[c] * sum_gx / n)[None, :, None]
            centered += g3
            centered -= (sum_g / n)[None, :, None]
            centered *= (weight[c] * inv_std[c])[None, :, None]
            dx[:, c] = centered.reshape(N, count, *x.shape[2:])
        return sum_gx, sum_g

    parts = parallel.for_each(channels, parallel.slices(C, x.size))
    grads = {0: dx, 1: np.concatenate([a for a, _ in parts]), 2: np.concatenate([b for _, b in parts])}
    return tuple(grads[i] for i in argnums)


def _channel_mean(a):
    """Σ over (N, H, W) / n, as ``layers._mean``: the count stays a Python int (no float64 promotion)."""
    return anp.sum(a, axis=_CHANNELS) / (a.shape[0] * a.shape[2] * a.shape[3])


def _standardised(x, eps):
    """(x̂, 1/σ̂) broadcast to NCHW, recomputed from x in ``autograd.numpy`` (traceable)."""
    mean = _channel_mean(x)[None, :, None, None]
    inv_std = 1 / anp.sqrt(_channel_mean((x - mean) ** 2) + eps)[None, :, None, None]
    return (x - mean) * inv_std, inv_std


def _vjp_traceable(argnums, g, x, weight, eps):
    """The same VJP as ``autograd.numpy`` formulas, so that autograd can differentiate it again:
    Hessian-vector products through the fast form."""
    x_hat, inv_std = _standardised(x, eps)
    grads = {1: anp.sum(g * x_hat, axis=_CHANNELS), 2: anp.sum(g, axis=_CHANNELS)}
    if 0 in argnums:
        mean_g, mean_gx = _channel_mean(g)[None, :, None, None], _channel_mean(g * x_hat)[None, :, None, None]
        grads[0] = weight[None, :, None, None] * inv_std * (g - mean_g - x_hat * mean_gx)
    return tuple(grads[i] for i in argnums)


defvjp_argnums(_normalise, _normalise_vjp)


def _normalise_jvp(argnum):
    """Forward mode: the derivative of the output along a tangent t of one argument, as
    ``autograd.numpy`` formulas (so forward mode works to any order too):
    x: weight/σ̂·(t − mean(t) − x̂·mean(t·x̂)); weight: t·x̂; bias: t (times [y > 0] with ReLU)."""

    def jvp(t, y, x, weight, bias, *, stats, eps, relu):
        x_hat, inv_std = _standardised(x, eps)
        if argnum == 0:
            mean_t, mean_tx = _channel_mean(t)[None, :, None, None], _channel_mean(t * x_hat)[None, :, None, None]
            out = weight[None, :, None, None] * inv_std * (t - mean_t - x_hat * mean_tx)
        else:
            out = t[None, :, None, None] * (x_hat if argnum == 1 else anp.ones_like(x_hat))
        return out * (getval(y) > 0) if relu else out

    return jvp


defjvp(_normalise, *(_normalise_jvp(argnum) for argnum in range(3)))
