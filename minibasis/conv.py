"""2-D convolution and its two gradients, as autograd primitives with hand-written VJPs.

Layouts are PyTorch's: ``x: (N, C, H, W)``, ``w: (O, C/G, kh, kw)`` (``G = groups``; 1 for a
dense convolution, C for a depthwise one), ``y: (N, O, Ho, Wo)`` with
``Ho = floor((H + 2·ph − kh) / sh) + 1`` (likewise ``Wo``). Like ``torch.nn.functional.conv2d``
this is a cross-correlation: ``y[n, o, a, b] = Σ_{c ∈ group(o), i, j} w[o, c, i, j] · xpad[n, c, a·sh + i, b·sw + j]``.

The three functions are one bilinear map seen from three sides, so their VJPs are each other::

    y  = conv2d(x, w)                      ∂/∂x: g ↦ conv2d_input_grad(g, w)
                                           ∂/∂w: g ↦ conv2d_weight_grad(x, g)
    dx = conv2d_input_grad(dy, w)          ∂/∂dy: g ↦ conv2d(g, w)
                                           ∂/∂w:  g ↦ conv2d_weight_grad(g, dy)
    dw = conv2d_weight_grad(x, dy)         ∂/∂x:  g ↦ conv2d_input_grad(dy, g)
                                           ∂/∂dy: g ↦ conv2d(x, g)

and ``autograd.grad`` works to any order, in both forms below. Arrays are positional-only and
hyper-parameters keyword-only: autograd traces only positional arguments, so an array passed by
keyword would silently bypass the hand-written VJPs (still correct, ~10⁴× slower). Python
forbids that here.

Two forms compute each map (:mod:`minibasis.mode`):

- the **reference form** (:mod:`minibasis.conv_reference`, under ``reference_mode()``): pad,
  im2col by a loop over the kernel offsets, one GEMM per group; col2im for the input gradient;
- the **fast form** (:mod:`minibasis.conv_fast`, the default): flat-shift im2col in chunks, the
  stride-1 input gradient as a convolution, depthwise convolutions as shifted multiply-adds,
  and, when autograd wants both gradients of a stride-1 dense k×k convolution at first order
  (a training step), both from one im2col of dy.

Inside a ``minibasis.backend.use(...)`` block the fast form moves its inputs to that backend's
device, computes with its array module and returns host arrays, so autograd only ever sees
NumPy arrays.
"""

import numpy as np
from autograd.extend import defjvp, defvjp, defvjp_argnums, primitive
from autograd.tracer import isbox

from . import backend, checks, conv_fast, conv_reference
from .mode import is_reference


def check_geometry(x_shape, w_shape, stride, padding, groups, x_name="x", w_name="w"):
    """Check a convolution's shapes and hyper-parameters; -> (stride, padding, groups, y shape)."""
    stride, padding = checks.pair("stride", stride, 1), checks.pair("padding", padding, 0)
    groups = checks.integer("groups", groups, 1)
    N, C, H, W = x_shape
    O, C_per_group, kh, kw = w_shape
    if kh < 1 or kw < 1:
        checks.fail(w_name, "a kernel of at least 1×1", f"shape {tuple(w_shape)}")
    if C % groups or O % groups:
        checks.fail("groups", f"a divisor of the input ({C}) and output ({O}) channels", repr(groups))
    if C_per_group * groups != C:
        per_group = " per group" if groups > 1 else ""
        checks.fail(w_name, f"{C // groups} input channels{per_group} (those of {x_name}, shape {tuple(x_shape)})", f"shape {tuple(w_shape)}")
    for axis, size, k, p in ((2, H, kh, padding[0]), (3, W, kw, padding[1])):
        if k > size + 2 * p:
            checks.fail(w_name, f"a kernel no larger than the padded input ({size} + 2·{p} = {size + 2 * p} along axis {axis})", k)
    Ho, Wo = (conv_reference.output_size(s, k, st, p) for s, k, st, p in ((H, kh, stride[0], padding[0]), (W, kw, stride[1], padding[1])))
    return stride, padding, groups, (N, O, Ho, Wo)


def _shape_argument(name, shape, minimum):
    """A shape passed as a keyword (x_shape, w_shape): four ints ≥ minimum -> tuple."""
    if not isinstance(shape, (tuple, list)) or len(shape) != 4:
        checks.fail(name, "a shape of 4 ints", repr(shape))
    return tuple(checks.integer(f"{name}[{i}]", s, minimum) for i, s in enumerate(shape))


def _check_pair_of_arrays(a, b, a_name, b_name):
    checks.array(a_name, a, ndim=4)
    checks.array(b_name, b, ndim=4)
    checks.same_dtype(b_name, b, a, a_name)


def _compute(fast, reference, arrays, *args):
    """Run the reference form in reference mode; else the fast form on the current backend."""
    if is_reference():
        return reference(*arrays, *args)
    device = backend.current()
    return device.to_host(fast(*(device.to_device(a) for a in arrays), *args, device))


@primitive
def conv2d(x, w, /, *, stride=1, padding=0, groups=1):
    """y = x ⋆ w.  x: (N, C, H, W), w: (O, C/groups, kh, kw) -> y: (N, O, Ho, Wo)."""
    _check_pair_of_arrays(x, w, "x", "w")
    stride, padding, groups, _ = check_geometry(x.shape, w.shape, stride, padding, groups)
    return _compute(conv_fast.conv2d, conv_reference.conv2d, (x, w), stride, padding, groups)


@primitive
def conv2d_input_grad(dy, w, /, *, x_shape, stride=1, padding=0, groups=1):
    """dx = ∂⟨dy, x ⋆ w⟩/∂x (the transposed convolution).  dy: (N, O, Ho, Wo) -> (N, C, H, W)."""
    _check_pair_of_arrays(w, dy, "w", "dy")
    x_shape = _shape_argument("x_shape", x_shape, 0)
    stride, padding, groups, y_shape = check_geometry(x_shape, w.shape, stride, padding, groups, x_name="x_shape")
    checks.shape("dy", dy, y_shape, "(the output of x_shape ⋆ w)")
    return _compute(conv_fast.input_grad, conv_reference.conv2d_input_grad, (dy, w), x_shape, stride, padding, groups)


@primitive
def conv2d_weight_grad(x, dy, /, *, w_shape, stride=1, padding=0, groups=1):
    """dw = ∂⟨dy, x ⋆ w⟩/∂w.  x: (N, C, H, W), dy: (N, O, Ho, Wo) -> (O, C/groups, kh, kw)."""
    _check_pair_of_arrays(x, dy, "x", "dy")
    w_shape = _shape_argument("w_shape", w_shape, 0)
    stride, padding, groups, y_shape = check_geometry(x.shape, w_shape, stride, padding, groups, w_name="w_shape")
    checks.shape("dy", dy, y_shape, "(the output of x ⋆ w_shape)")
    return _compute(conv_fast.weight_grad, conv_reference.conv2d_weight_grad, (x, dy), w_shape, stride, padding, groups)


def _conv2d_vjp(argnums, y, args, hp):
    """VJP of conv2d: the two gradient primitives; in the fast form at first order, when both
    gradients of a stride-1 dense k×k conv are wanted, both from one im2col of dy."""
    x, w = args

    def vjp(g):
        checks.array("g", g, ndim=4)
        checks.same_dtype("g", g, x, "the convolution's output")
        checks.shape("g", g, y.shape, "(the convolution's output)")
        stride, padding = checks.pair("stride", hp.get("stride", 1), 1), checks.pair("padding", hp.get("padding", 0), 0)
        fused = argnums == (0, 1) and not is_reference() and conv_fast.fusable(w.shape, stride, padding, hp.get("groups", 1))
        if fused and not any(isbox(a) for a in (g, x, w)):  # no outer trace differentiates these results
            device = backend.current()
            dx, dw = conv_fast.both_grads(*(device.to_device(a) for a in (x, w, g)), padding, device)
            return device.to_host(dx), device.to_host(dw)
        grads = {0: lambda: conv2d_input_grad(g, w, x_shape=x.shape, **hp), 1: lambda: conv2d_weight_grad(x, g, w_shape=w.shape, **hp)}
        return tuple(grads[i]() for i in argnums)

    return vjp


defvjp_argnums(conv2d, _conv2d_vjp)
defvjp(
    conv2d_input_grad,
    lambda dx, dy, w, *, x_shape, **hp: lambda g: conv2d(g, w, **hp),
    lambda dx, dy, w, *, x_shape, **hp: lambda g: conv2d_weight_grad(g, dy, w_shape=w.shape, **hp),
)
defvjp(
    conv2d_weight_grad,
    lambda dw, x, dy, *, w_shape, **hp: lambda g: conv2d_input_grad(dy, g, x_shape=x.shape, **hp),
    lambda dw, x, dy, *, w_shape, **hp: lambda g: conv2d(x, g, **hp),
)
# Each map is linear in each argument, so its JVP is the map applied to the tangent.
defjvp(
    conv2d,
    lambda t, y, x, w, **hp: conv2d(t, w, **hp),
    lambda t, y, x, w, **hp: conv2d(x, t, **hp),
)
defjvp(
    conv2d_input_grad,
    lambda t, dx, dy, w, **hp: conv2d_input_grad(t, w, **hp),
    lambda t, dx, dy, w, **hp: conv2d_input_grad(dy, t, **hp),
)
defjvp(
    conv2d_weight_grad,
    lambda t, dw, x, dy, **hp: conv2d_weight_grad(t, dy, **hp),
    lambda t, dw, x, dy, **hp: conv2d_weight_grad(x, t, **hp),
)


def im2col(x, /, *, kernel_size, stride=1, padding=0):
    """Textbook im2col (:func:`minibasis.conv_reference.im2col`).  x: (N, C, H, W) -> (N·Ho·Wo, C·kh·kw).

    Row ``(n, a, b)`` holds the receptive field of output pixel ``(a, b)`` of image ``n``,
    flattened in ``(c, i, j)`` order, so ``conv2d(x, w) == (im2col(x) @ w.reshape(O, -1).T)``
    reshaped to ``(N, Ho, Wo, O)`` and transposed to NCHW.
    """
    checks.array("x", x, ndim=4)
    kh, kw = checks.pair("kernel_size", kernel_size, 1)
    stride, padding, _, _ = check_geometry(x.shape, (1, x.shape[1], kh, kw), stride, padding, 1, w_name="kernel_size")
    return conv_reference.im2col(np.asarray(x), kh, kw, stride, padding)


def col2im(cols, /, *, x_shape, kernel_size, stride=1, padding=0):
    """Adjoint of :func:`im2col`: (N·Ho·Wo, C·kh·kw) -> (N, C, H, W), overlaps summed."""
    checks.array("cols", cols, ndim=2)
    x_shape = _shape_argument("x_shape", x_shape, 0)
    kh, kw = checks.pair("kernel_size", kernel_size, 1)
    stride, padding, _, (N, _, Ho, Wo) = check_geometry(x_shape, (1, x_shape[1], kh, kw), stride, padding, 1, "x_shape", "kernel_size")
    checks.shape("cols", cols, (N * Ho * Wo, x_shape[1] * kh * kw))
    return conv_reference.col2im(np.asarray(cols), x_shape, kh, kw, stride, padding)
