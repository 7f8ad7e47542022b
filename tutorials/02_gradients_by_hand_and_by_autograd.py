# %% [markdown]
# # 02 · Gradients of a convolution, by hand and by autograd
#
# **What this teaches.** How a convolution layer is differentiated, and how minibasis teaches
# that to autograd. We
#
# 1. derive the two vector-Jacobian products (VJPs) of y = x ⋆ w from the matrix form of
#    tutorial 01: ∂L/∂w = Gᵀ·X_col (a GEMM against the im2col matrix) and
#    ∂L/∂x = col2im(G·W_mat) (a *transposed convolution*);
# 2. implement both in a few lines of NumPy and check them against
#    `minibasis.conv2d_input_grad` / `conv2d_weight_grad`, against autograd, and against central
#    finite differences (`minibasis.testing.check_gradients`, float64);
# 3. see how a function becomes an autograd *primitive* with a hand-written VJP (`defvjp`), why
#    the three conv maps are each other's VJPs (they are one trilinear form seen from three
#    sides), and check second derivatives with `autograd.test_util.check_grads`;
# 4. see why the arrays of `minibasis.conv2d` are positional-only: autograd only looks for
#    traced arrays among positional arguments, so an array passed by keyword bypasses the
#    primitive's VJP.
#
# **Time.** About 1 s on a 2-core laptop, in full mode and with `MINIBASIS_FAST=1` alike.
# No figures.

# %%
import inspect
import time
import warnings

import autograd
import autograd.numpy as anp
import numpy as np
from autograd.extend import defvjp, primitive
from autograd.test_util import check_grads
from autograd.tracer import getval

import minibasis
from minibasis import col2im, conv2d, conv2d_input_grad, conv2d_weight_grad, im2col
from minibasis.testing import GradientCheckError, check_gradients
from tutorial_setup import FAST  # this checkout's minibasis, the mode, the paths

START = time.perf_counter()
rng = np.random.default_rng(0)
print(f"mode: {'FAST' if FAST else 'full'}")


def rel_err(a, b):
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def inner(a, b):
    return float(np.sum(a * b))


# %% [markdown]
# ## 1. The two VJPs, derived
#
# From tutorial 01, with M = N·H_o·W_o output pixels and K = C·k_h·k_w weights per filter:
#
#     X_col = A x                 (im2col, M × K; A is linear, a 0/1 matrix)
#     Y_mat = X_col · W_matᵀ      (M × O; W_mat = w reshaped to O × K)
#     y     = Y_mat reshaped to (N, O, H_o, W_o).
#
# A network ends in a scalar loss L. Backpropagation hands the layer G = ∂L/∂y (same shape as
# y; as a matrix G_mat, M × O) and asks for ∂L/∂x and ∂L/∂w. These are vector-Jacobian products:
# the layer never forms its Jacobian (size (N·O·H_o·W_o) × (N·C·H·W)), it only multiplies G by it.
#
# *Weights.* Y_mat[m, o] = Σ_K X_col[m, K] W_mat[o, K], so ∂L/∂W_mat[o, K] = Σ_m G_mat[m, o]
# X_col[m, K]:
#
#     ∂L/∂W_mat = G_matᵀ · X_col          (O × K: one GEMM against the im2col matrix).
#
# *Inputs.* The same index bookkeeping gives ∂L/∂X_col = G_mat · W_mat (M × K). Then
# X_col = A x, and the VJP of a linear map is its transpose: ∂L/∂x = Aᵀ(∂L/∂X_col). By tutorial
# 01, Aᵀ is col2im:
#
#     ∂L/∂x = col2im(G_mat · W_mat)       (scatter-add the rows back to their windows).
#
# Written with the matrices transposed (X_col as K × M, the convention of most texts) these are
# "∂L/∂W = G · im2colᵀ" and "∂L/∂x = col2im(Wᵀ · G)", the latter word for word
# `minibasis.conv_reference.conv2d_input_grad`. Both cost one GEMM of the forward's size: the
# backward pass costs about twice the forward. (At stride 1 the library computes the same
# ∂L/∂x as a convolution of G with the flipped kernel w′[c, o, i, j] = w[o, c, kh−1−i, kw−1−j]
# and padding k−1−p, because contiguous im2col copies beat col2im's scatter-adds in NumPy;
# and a training step gets ∂L/∂W from that same im2col of G.)


# %%
def _G_mat(g):
    """(N, O, Ho, Wo) -> (N·Ho·Wo, O): rows in the order of im2col's rows."""
    return g.transpose(0, 2, 3, 1).reshape(-1, g.shape[1])


def weight_grad_by_hand(x, g, w_shape, stride=1, padding=0):
    """∂L/∂w = G_matᵀ · X_col, reshaped to w's shape."""
    X_col = im2col(x, kernel_size=w_shape[2:], stride=stride, padding=padding)
    return (_G_mat(g).T @ X_col).reshape(w_shape)


def input_grad_by_hand(g, w, x_shape, stride=1, padding=0):
    """∂L/∂x = col2im(G_mat · W_mat)."""
    dX_col = _G_mat(g) @ w.reshape(w.shape[0], -1)
    return col2im(dX_col, x_shape=x_shape, kernel_size=w.shape[2:], stride=stride, padding=padding)


# %% [markdown]
# Three independent checks of the hand-written gradients, on several geometries:
#
# * against the library's primitives `conv2d_input_grad(g, w, x_shape=…)` and
#   `conv2d_weight_grad(x, g, w_shape=…)`;
# * against `autograd.grad` of L(x, w) = ⟨G, conv2d(x, w)⟩, whose gradient is exactly the VJP
#   with G (autograd calls the library's registered VJPs);
# * against central finite differences with `check_gradients`, which knows nothing about
#   convolutions: it perturbs the inputs and re-evaluates.

# %%
geometries = [
    # (x shape, w shape, stride, padding)
    ((2, 3, 6, 6), (4, 3, 3, 3), 1, 1),
    ((2, 3, 7, 6), (4, 3, 3, 3), 2, 1),
    ((1, 2, 5, 8), (3, 2, 2, 3), (1, 2), (0, 1)),
]
if not FAST:
    geometries += [
        ((3, 8, 9, 9), (5, 8, 3, 3), 2, 0),
        ((2, 4, 8, 8), (6, 4, 1, 1), 1, 0),
        ((1, 3, 9, 9), (2, 3, 5, 5), 1, 2),
    ]
for xs, ws, s, p in geometries:
    x, w = rng.standard_normal(xs), rng.standard_normal(ws)
    g = rng.standard_normal(conv2d(x, w, stride=s, padding=p).shape)
    dx, dw = input_grad_by_hand(g, w, xs, s, p), weight_grad_by_hand(x, g, ws, s, p)
    assert rel_err(dx, conv2d_input_grad(g, w, x_shape=xs, stride=s, padding=p)) < 1e-10, (
        f"dx vs the library, {xs} {ws} {s} {p}"
    )
    assert rel_err(dw, conv2d_weight_grad(x, g, w_shape=ws, stride=s, padding=p)) < 1e-10, (
        f"dw vs the library, {xs} {ws} {s} {p}"
    )
    L = lambda x, w: anp.sum(g * conv2d(x, w, stride=s, padding=p))  # noqa: E731
    ag_dx, ag_dw = autograd.grad(L, (0, 1))(x, w)
    assert rel_err(dx, ag_dx) < 1e-10 and rel_err(dw, ag_dw) < 1e-10, f"hand VJPs vs autograd.grad, {xs} {ws} {s} {p}"
    worst = check_gradients(L, x, w, mode="directional", directions=4)
    print(
        f"x {xs}, w {ws}, stride {s}, padding {p}: hand = library = autograd; finite differences agree to {worst:.1e}"
    )

# %% [markdown]
# A linear L is an easy case for finite differences (central differences are exact for
# quadratics). Here is a nonlinear loss through two convolutions, checked element by element
# (every single entry of x and w perturbed in turn, so keep the arrays tiny), then in random
# directions on a larger one. A wrong gradient raises `GradientCheckError` naming the entry.

# %%
rng = np.random.default_rng(1)  # the same draws in fast and full mode
x = rng.standard_normal((1, 2, 5, 5))
w1 = rng.standard_normal((3, 2, 3, 3))
w2 = rng.standard_normal((2, 3, 3, 3))
target = rng.standard_normal((1, 2, 3, 3))


def two_layers(x, w1, w2):
    h = anp.tanh(conv2d(x, w1, stride=1, padding=1))
    return anp.sum((conv2d(h, w2, stride=2, padding=1) - target) ** 2)


worst = check_gradients(two_layers, x, w1, w2, mode="elementwise")  # raises on any entry out of tolerance
print(
    "two conv layers with tanh, every entry of x, w1, w2 within |Δ| ≤ 1e-8 + 1e-5·|fd| "
    f"(largest relative gap {worst:.1e})"
)
if not FAST:
    x = rng.standard_normal((4, 8, 12, 12))
    w1, w2 = rng.standard_normal((16, 8, 3, 3)) * 0.2, rng.standard_normal((2, 16, 3, 3)) * 0.2
    target = rng.standard_normal((4, 2, 6, 6))
    worst = check_gradients(two_layers, x, w1, w2, mode="directional", directions=5)
    print(f"the same on x {x.shape}, 5 random directions: worst relative error {worst:.1e}")

# %% [markdown]
# And a wrong gradient is caught. Pretend we forgot that col2im *sums* overlapping windows and
# only kept the last write (a classic bug); the check fails.


# %%
@primitive
def conv_buggy(x, w):
    return conv2d(x, w, padding=1)


def _input_grad_last_write_wins(g, w, x_shape):
    dX_col = _G_mat(g) @ w.reshape(w.shape[0], -1)
    N, C, H, W = x_shape
    k = w.shape[2]
    cols = dX_col.reshape(N, H, W, C, k, k)
    xp = np.zeros((N, C, H + 2, W + 2))
    for i in range(k):
        for j in range(k):
            xp[:, :, i : i + H, j : j + W] = cols[:, :, :, :, i, j].transpose(0, 3, 1, 2)  # "=" instead of "+="
    return xp[:, :, 1:-1, 1:-1]


defvjp(
    conv_buggy,
    lambda y, x, w: lambda g: _input_grad_last_write_wins(g, w, x.shape),
    lambda y, x, w: lambda g: weight_grad_by_hand(x, g, w.shape, 1, 1),
)
x, w = rng.standard_normal((1, 2, 5, 5)), rng.standard_normal((3, 2, 3, 3))
try:
    check_gradients(lambda x, w: anp.sum(anp.tanh(conv_buggy(x, w))), x, w)
except GradientCheckError as err:
    print("caught, as it should be:", str(err)[:110], "…")
else:
    raise AssertionError("check_gradients should reject an input gradient that overwrites overlapping windows")

# %% [markdown]
# ## 2. The input gradient is a transposed convolution
#
# col2im(G_mat · W_mat) has a second reading. For stride 1, input pixel (u, v) sits at
# position (u + p, v + p) of x_pad, where output pixel (a, b) reads it at kernel offset
# (i, j) = (u + p − a, v + p − b). So
#
#     ∂L/∂x[n, c, u, v] = Σ_{o, i, j} w[o, c, i, j] · G[n, o, u + p − i, v + p − j]
#
# (terms outside G are zero): a convolution of G, zero-padded by k − 1 − p, with the kernel
# **flipped** in space and its in/out channels swapped. For
# stride s, first spread G out by inserting s − 1 zeros between its entries. Deep-learning
# libraries call this "transposed convolution" (or, inaccurately, "deconvolution"), and it is
# exactly the layer that upsamples in decoders. Checked against the library's input gradient:


# %%
def input_grad_as_convolution(g, w, x_shape, stride, padding):
    """Zero-upsample g by the stride, pad by k − 1 − p, convolve with the flipped, transposed kernel."""
    N, O, Ho, Wo = g.shape
    k, s, p = w.shape[2], stride, padding
    H = x_shape[2]
    up = np.zeros((N, O, (Ho - 1) * s + 1, (Wo - 1) * s + 1))
    up[:, :, ::s, ::s] = g
    extra = (H + 2 * p - k) % s  # rows the forward's floor dropped
    up = np.pad(up, ((0, 0), (0, 0), (k - 1 - p, k - 1 - p + extra), (k - 1 - p, k - 1 - p + extra)))
    w_flipped = w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)  # (C, O, k, k)
    return conv2d(up, np.ascontiguousarray(w_flipped))


for xs, ws, s, p in [
    ((2, 3, 6, 6), (4, 3, 3, 3), 1, 1),
    ((2, 3, 7, 7), (4, 3, 3, 3), 2, 1),
    ((1, 2, 8, 8), (3, 2, 3, 3), 2, 0),
    ((1, 2, 9, 9), (3, 2, 5, 5), 1, 2),
]:
    x, w = rng.standard_normal(xs), rng.standard_normal(ws)
    g = rng.standard_normal(conv2d(x, w, stride=s, padding=p).shape)
    dx = input_grad_as_convolution(g, w, xs, s, p)
    assert rel_err(dx, conv2d_input_grad(g, w, x_shape=xs, stride=s, padding=p)) < 1e-10, (
        f"the transposed-convolution formula disagrees with conv2d_input_grad for {xs} {ws} stride {s} padding {p}"
    )
print("∂L/∂x = conv2d(zero-upsampled, padded G, flipped and transposed w): checked for strides 1 and 2")

# %% [markdown]
# ## 3. Teaching autograd: a primitive and its VJP
#
# autograd records every operation on a traced value and replays the record backwards. For a
# convolution, recording the hundreds of NumPy operations inside im2col would be slow and
# memory-hungry. Instead we declare the function a **primitive**: autograd treats it as a black
# box and, going backwards, calls a VJP we supply. The recipe, on a toy primitive (a matrix
# product, the GEMM inside every convolution):
#
# * `@primitive` wraps the function. Inside it, arguments are plain NumPy arrays.
# * `defvjp(f, vjp_0, vjp_1, …)` gives one *VJP maker* per positional argument. A VJP maker is
#   called on the forward pass with `(ans, *args, **kwargs)` and returns the function g ↦ ∂/∂arg
#   that autograd calls on the backward pass with the incoming gradient g.
#
# For C = A·B with ∂L/∂C = g: ∂L/∂A = g·Bᵀ and ∂L/∂B = Aᵀ·g. We count the calls, to see that
# autograd uses these and does not trace through `np.dot`.

# %%
calls = {"A": 0, "B": 0}


@primitive
def matmul(A, B):
    return np.dot(A, B)


def _vjp_A(ans, A, B):
    def vjp(g):
        calls["A"] += 1
        return matmul(g, B.T)  # written with the primitive itself, so it can be differentiated again

    return vjp


def _vjp_B(ans, A, B):
    def vjp(g):
        calls["B"] += 1
        return matmul(A.T, g)

    return vjp


defvjp(matmul, _vjp_A, _vjp_B)

A, B = rng.standard_normal((3, 4)), rng.standard_normal((4, 2))
loss = lambda A, B: anp.sum(anp.sin(matmul(A, B)))  # noqa: E731
dA, dB = autograd.grad(loss, (0, 1))(A, B)
assert calls == {"A": 1, "B": 1}, f"each hand-written VJP should have been called once, got {calls}"
assert rel_err(dA, np.cos(A @ B) @ B.T) < 1e-12 and rel_err(dB, A.T @ np.cos(A @ B)) < 1e-12, "toy VJPs are wrong"
print(f"toy primitive matmul: one gradient evaluation, VJP calls {calls}")
worst = check_gradients(loss, A, B, mode="elementwise")
print(f"toy primitive matmul: finite differences agree to {worst:.1e}")

# %% [markdown]
# minibasis registers its convolution's VJPs the same way. In `minibasis/conv.py`, `_conv2d_vjp`
# holds one VJP per argument of `conv2d`:
#
#     vjps = {
#         0: lambda g: conv2d_input_grad(g, w, x_shape=x.shape, **hp),
#         1: lambda g: conv2d_weight_grad(x, g, w_shape=w.shape, **hp),
#     }
#
# registered with `defvjp_argnums`, the form of `defvjp` whose VJP maker also learns which
# arguments autograd wants: when it wants both in the fast form (a training step),
# `conv_fast.conv2d_vjp_both` takes them from one im2col of g. The gradient primitives are
# registered with `defvjp` itself, as `matmul` above:
#
#     defvjp(
#         conv2d_input_grad,
#         lambda dx, dy, w, *, x_shape, **hp: lambda g: conv2d(g, w, **hp),
#         lambda dx, dy, w, *, x_shape, **hp: lambda g: conv2d_weight_grad(g, dy, w_shape=w.shape, **hp),
#     )
#
# Note that the forward pass keeps only x and w, not the im2col matrix (k² times larger): the
# weight gradient rebuilds it. Memory is traded for one extra im2col.

# %%
# The two quotations above are minibasis' code, word for word:
conv_source = inspect.getsource(minibasis.conv)
for quoted in (
    """        0: lambda g: conv2d_input_grad(g, w, x_shape=x.shape, **hp),
        1: lambda g: conv2d_weight_grad(x, g, w_shape=w.shape, **hp),""",
    """    lambda dx, dy, w, *, x_shape, **hp: lambda g: conv2d(g, w, **hp),
    lambda dx, dy, w, *, x_shape, **hp: lambda g: conv2d_weight_grad(g, dy, w_shape=w.shape, **hp),""",
):
    assert quoted in conv_source, f"tutorial 02 quotes minibasis/conv.py, which no longer reads:\n{quoted}"
#
# ## 4. Three maps, one trilinear form
#
# Why are `conv2d_input_grad` and `conv2d_weight_grad` primitives too, with VJPs of their own?
# Because autograd differentiates the backward pass when it computes second derivatives
# (Hessian-vector products, gradients of gradient norms), so the VJPs must themselves be
# differentiable. The neat fact is that no new code is needed. Define the scalar
#
#     T(x, w, g) = ⟨g, conv2d(x, w)⟩ = Σ g[n,o,a,b] · w[o,c,i,j] · x_pad[n,c,s·a+i,s·b+j],
#
# linear in each of its three arguments. Its three partial gradients are the three maps:
#
#     ∂T/∂g = conv2d(x, w),   ∂T/∂x = conv2d_input_grad(g, w),   ∂T/∂w = conv2d_weight_grad(x, g),
#
# so T = ⟨g, conv2d(x, w)⟩ = ⟨x, conv2d_input_grad(g, w)⟩ = ⟨w, conv2d_weight_grad(x, g)⟩.
# Each map is linear in each argument, and the VJP of a linear map u ↦ F(u) is its adjoint,
# read off from T. For example, u ↦ conv2d_input_grad(u, w) has the adjoint v ↦ conv2d(v, w),
# since ⟨v, conv2d_input_grad(u, w)⟩ = T(v, w, u) = ⟨u, conv2d(v, w)⟩. All six VJPs (two per
# map) are the other two maps, as the table in `minibasis/conv.py` lists.

# %%
for xs, ws, s, p in [((2, 3, 6, 6), (4, 3, 3, 3), 2, 1), ((1, 2, 7, 5), (3, 2, 3, 2), (1, 2), (1, 0))]:
    x, w = rng.standard_normal(xs), rng.standard_normal(ws)
    g = rng.standard_normal(conv2d(x, w, stride=s, padding=p).shape)
    hp = dict(stride=s, padding=p)
    t1 = inner(g, conv2d(x, w, **hp))
    t2 = inner(x, conv2d_input_grad(g, w, x_shape=xs, **hp))
    t3 = inner(w, conv2d_weight_grad(x, g, w_shape=ws, **hp))
    assert abs(t1 - t2) < 1e-10 * abs(t1) and abs(t1 - t3) < 1e-10 * abs(t1), f"T differs: {t1}, {t2}, {t3}"
    # the VJPs autograd computes for the two gradient maps are the other maps
    v = rng.standard_normal(xs)  # a cotangent for conv2d_input_grad's output
    vjp_g, vjp_w = autograd.grad(lambda g, w: anp.sum(v * conv2d_input_grad(g, w, x_shape=xs, **hp)), (0, 1))(g, w)
    assert rel_err(vjp_g, conv2d(v, w, **hp)) < 1e-10, "VJP of conv2d_input_grad w.r.t. dy should be conv2d(·, w)"
    assert rel_err(vjp_w, conv2d_weight_grad(v, g, w_shape=ws, **hp)) < 1e-10, (
        "… w.r.t. w should be conv2d_weight_grad(·, dy)"
    )
    u = rng.standard_normal(ws)  # a cotangent for conv2d_weight_grad's output
    vjp_x, vjp_dy = autograd.grad(lambda x, g: anp.sum(u * conv2d_weight_grad(x, g, w_shape=ws, **hp)), (0, 1))(x, g)
    assert rel_err(vjp_x, conv2d_input_grad(g, u, x_shape=xs, **hp)) < 1e-10, "VJP of conv2d_weight_grad w.r.t. x"
    assert rel_err(vjp_dy, conv2d(x, u, **hp)) < 1e-10, "VJP of conv2d_weight_grad w.r.t. dy"
    print(f"T(x, w, g) three ways: {t1:.10f} {t2:.10f} {t3:.10f}; the VJPs of the gradient maps are the other maps")

# %% [markdown]
# **Second order.** `autograd.test_util.check_grads(f, argnum, modes, order=2)` compares
# autograd's first *and second* derivatives with finite differences, in forward mode (JVPs,
# registered with `defjvp`) and reverse mode (VJPs). We check all three primitives with respect
# to *both* array arguments (`argnum=(0, 1)`; the default `argnum=0` would check only the first).

# %%
xs, ws, hp = (1, 2, 5, 5), (3, 2, 3, 3), dict(stride=2, padding=1)
x, w = rng.standard_normal(xs), rng.standard_normal(ws)
dy = rng.standard_normal(conv2d(x, w, **hp).shape)
check_grads(lambda x, w: conv2d(x, w, **hp), argnum=(0, 1), modes=["fwd", "rev"], order=2)(x, w)
check_grads(lambda dy, w: conv2d_input_grad(dy, w, x_shape=xs, **hp), argnum=(0, 1), modes=["fwd", "rev"], order=2)(
    dy, w
)
check_grads(lambda x, dy: conv2d_weight_grad(x, dy, w_shape=ws, **hp), argnum=(0, 1), modes=["fwd", "rev"], order=2)(
    x, dy
)
print("check_grads: conv2d, conv2d_input_grad, conv2d_weight_grad pass to second order, forward and reverse")

# %% [markdown]
# A second derivative we can also write by hand. For the least-squares loss
# L(w) = ½‖conv2d(x, w) − t‖², the map w ↦ conv2d(x, w) is linear, so the Hessian is
# JᵀJ and the Hessian-vector product is "forward, then backward":
#
#     H v = conv2d_weight_grad(x, conv2d(x, v)).
#
# autograd gets it by differentiating the gradient: H v = ∇_w ⟨∇_w L(w), v⟩, which runs the VJP
# of `conv2d_weight_grad`, i.e. the maps of section 4 once more.

# %%
x, w = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3))
t, v = rng.standard_normal((2, 4, 6, 6)), rng.standard_normal((4, 3, 3, 3))
L = lambda w: 0.5 * anp.sum((conv2d(x, w, padding=1) - t) ** 2)  # noqa: E731
hvp = autograd.grad(lambda w: anp.sum(autograd.grad(L)(w) * v))(w)
by_hand = conv2d_weight_grad(x, conv2d(x, v, padding=1), w_shape=w.shape, padding=1)
assert rel_err(hvp, by_hand) < 1e-10, f"Hessian-vector product: autograd and JᵀJv differ by {rel_err(hvp, by_hand):.1e}"
print(
    f"Hessian-vector product by autograd = conv2d_weight_grad(x, conv2d(x, v)) (rel. err {rel_err(hvp, by_hand):.1e})"
)

# %% [markdown]
# ## 5. Why the arrays are positional-only
#
# The signature is `conv2d(x, w, /, *, stride=1, padding=0)`: the `/` makes x and w
# positional-only, the `*` makes the hyper-parameters keyword-only. Python itself refuses a
# keyword call:

# %%
x, w = rng.standard_normal((1, 2, 5, 5)), rng.standard_normal((3, 2, 3, 3))
try:
    minibasis.conv2d(x=x, w=w)
except TypeError as err:
    print("TypeError:", err)
else:
    raise AssertionError("conv2d(x=x, w=w) should raise TypeError: its arrays are positional-only")

# %% [markdown]
# Why be so strict? When a primitive is called, autograd scans the **positional** arguments for
# traced values (boxes) and records one node with the registered VJPs. Keyword arguments are
# passed through untouched, assumed to be hyper-parameters. So a traced array passed by keyword
# is not recorded at the primitive at all: the box reaches the *body* of the function, and what
# happens next depends on what the body does with it. Neither outcome calls your VJP.
#
# A toy primitive that, unlike conv2d, accepts its arrays by keyword. We count VJP calls.

# %%
vjp_calls = {"x": 0}


def _scale_vjp_x(ans, x, w):
    def vjp(g):
        vjp_calls["x"] += 1
        return g * w

    return vjp


@primitive
def scale(x, w):  # arrays may be passed by keyword: the trap
    """x · w element-wise, written with an operator that autograd's boxes support."""
    return x * w


defvjp(scale, _scale_vjp_x, lambda ans, x, w: lambda g: np.sum(g * x))


@primitive
def scale_into_buffer(x, w):
    """The same product, but the body copies x into a preallocated float buffer first, as
    conv2d's im2col does (and as any C, Fortran or GPU kernel does with its input)."""
    buf = np.empty(np.shape(x))
    buf[...] = x
    return buf * w


defvjp(scale_into_buffer, _scale_vjp_x, lambda ans, x, w: lambda g: np.sum(g * x))

x, w = rng.standard_normal(4), 3.0
expected = np.full(4, w)  # ∂/∂x Σ x·w

# positional: the primitive is recorded, its VJP is called, the gradient is right
vjp_calls["x"] = 0
got = autograd.grad(lambda x: anp.sum(scale(x, w)))(x)
assert vjp_calls["x"] == 1 and np.allclose(got, expected), (vjp_calls, got)
print(f"scale(x, w):              gradient {got}, hand-written VJP called {vjp_calls['x']}×")

# keyword, body autograd can trace: right answer by accident, VJP never called
vjp_calls["x"] = 0
got = autograd.grad(lambda x: anp.sum(scale(w=w, x=x)))(x)
assert vjp_calls["x"] == 0, "passed by keyword, x must bypass the primitive's VJP"
assert np.allclose(got, expected), got
print(
    f"scale(w=w, x=x):          gradient {got}, hand-written VJP called {vjp_calls['x']}× "
    "(autograd traced the body's `*` instead)"
)

# keyword, body that needs real numbers: an exception from deep inside the body
vjp_calls["x"] = 0
try:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        autograd.grad(lambda x: anp.sum(scale_into_buffer(w=w, x=x)))(x)
except (ValueError, TypeError) as err:
    print(f"scale_into_buffer(w=w, x=x): {type(err).__name__}: {err} (VJP called {vjp_calls['x']}×)")
    assert vjp_calls["x"] == 0
else:
    raise AssertionError("a traced array passed by keyword into a buffer-filling body should raise")
# the same body, called positionally, is fine: the body only ever sees plain arrays
got = autograd.grad(lambda x: anp.sum(scale_into_buffer(x, w)))(x)
assert np.allclose(got, expected), got


@primitive
def scale_unwrapped(x, w):
    """The same product, but the body first unwraps its input to a plain array, as code must
    that hands its data to a foreign library (getval returns a box's value, else the input)."""
    return np.asarray(getval(x)) * w


defvjp(scale_unwrapped, _scale_vjp_x, lambda ans, x, w: lambda g: np.sum(g * x))

# keyword, body that unwraps: the right forward value, and a gradient that is silently zero
vjp_calls["x"] = 0
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    value, got = autograd.value_and_grad(lambda x: anp.sum(scale_unwrapped(w=w, x=x)))(x)
assert np.isclose(value, np.sum(x * w)), "the forward value is still right"
assert vjp_calls["x"] == 0 and np.array_equal(got, np.zeros(4)), f"the gradient should be silently zero, got {got}"
messages = [str(m.message) for m in caught]
print(f"scale_unwrapped(w=w, x=x): value right, gradient {got}; the only sign: warning {messages}")
assert any("independent" in m for m in messages), messages

# %% [markdown]
# Three outcomes, none of them the one you wanted:
#
# * the body is made of operations autograd can trace: the answer is right *by accident*, it
#   came from tracing the body operation by operation, not from the VJP you wrote and tested
#   (for a convolution: recording every slice copy of im2col, far slower and hungrier);
# * the body needs real numbers (a preallocated buffer, a compiled kernel): an exception from
#   deep inside the body, far from the mistake;
# * the body unwraps its input: the forward value is right and the gradient is **silently
#   zero**, with only the warning "Output seems independent of input".
#
# Making the arrays positional-only turns all three into one clear TypeError at the call site.
#
# The same holds for your own code that *calls* autograd: `autograd.grad(f, argnum)`
# differentiates a positional argument, so write `f(x, w)`, not `f(x=x, w=w)`.
#
# ## Summary
#
# * ∂L/∂w = G_matᵀ · im2col(x) and ∂L/∂x = col2im(G_mat · W_mat) (a transposed convolution):
#   two GEMMs, checked against the library, autograd and finite differences.
# * A primitive + `defvjp` makes autograd call hand-written VJPs instead of tracing; the three
#   conv maps are the three partial gradients of one trilinear form, so they are each other's
#   VJPs and autograd differentiates them to any order.
# * Arrays positional-only, hyper-parameters keyword-only: otherwise a traced array passed by
#   keyword bypasses the VJP.

# %%
print(f"done in {time.perf_counter() - START:.1f} s")
