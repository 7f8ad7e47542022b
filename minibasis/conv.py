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

from . import checks, conv_fast, conv_reference
from .conv_reference import output_size
from .mode import is_reference

__all__ = ["conv2d", "conv2d_input_grad", "conv2d_weight_grad", "im2col", "col2im", "output_size"]


@primitive
def conv2d(x, w, /, *, stride=1, padding=0, groups=1):
    """y = x ⋆ w.  x: (N, C, H, W), w: (O, C/groups, kh, kw) -> y: (N, O, Ho, Wo)."""
    stride, padding, groups = _checked_conv2d(x, w, stride, padding, groups)
    form = conv_reference if is_reference() else conv_fast  # the two forms (mode.py)
    return form.conv2d(x, w, stride, padding, groups)


@primitive
def conv2d_input_grad(dy, w, /, *, x_shape, stride=1, padding=0, groups=1):
    """dx = ∂⟨dy, x ⋆ w⟩/∂x (the transposed convolution).  dy: (N, O, Ho, Wo) -> (N, C, H, W)."""
    x_shape, stride, padding, groups = _checked_input_grad(dy, w, x_shape, stride, padding, groups)
    form = conv_reference if is_reference() else conv_fast
    return form.conv2d_input_grad(dy, w, x_shape, stride, padding, groups)


@primitive
def conv2d_weight_grad(x, dy, /, *, w_shape, stride=1, padding=0, groups=1):
    """dw = ∂⟨dy, x ⋆ w⟩/∂w.  x: (N, C, H, W), dy: (N, O, Ho, Wo) -> (O, C/groups, kh, kw)."""
    w_shape, stride, padding, groups = _checked_weight_grad(x, dy, w_shape, stride, padding, groups)
    form = conv_reference if is_reference() else conv_fast
    return form.conv2d_weight_grad(x, dy, w_shape, stride, padding, groups)


def _conv2d_vjp(argnums, y, args, hp):
    """The first two rows of the table above. When autograd wants both gradients in the fast form
    (a training step), :func:`minibasis.conv_fast.conv2d_vjp_both` may take them in one pass."""
    x, w = args
    vjps = {
        0: lambda g: conv2d_input_grad(g, w, x_shape=x.shape, **hp),
        1: lambda g: conv2d_weight_grad(x, g, w_shape=w.shape, **hp),
    }
    vjp = lambda g: tuple(vjps[i](g) for i in argnums)  # noqa: E731
    if argnums == (0, 1) and not is_reference():
        vjp = conv_fast.conv2d_vjp_both(x, w, *_checked_geometry(x.shape, w.shape, **hp)[:3], separately=vjp)

    def checked_vjp(g):
        checks.array("g", g, ndim=4)
        checks.same_dtype("g", g, x, "the convolution's output")
        checks.shape("g", g, y.shape, "(the convolution's output)")
        return vjp(g)

    return checked_vjp


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


# ---- the argument checks: one call at the top of each public function -----------------------


def _checked_geometry(x_shape, w_shape, stride=1, padding=0, groups=1, x_name="x", w_name="w"):
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
        expected = f"{C // groups} input channels{per_group} (those of {x_name}, shape {tuple(x_shape)})"
        checks.fail(w_name, expected, f"shape {tuple(w_shape)}")
    for axis, size, k, p in ((2, H, kh, padding[0]), (3, W, kw, padding[1])):
        if k > size + 2 * p:
            expected = f"a kernel no larger than the padded input ({size} + 2·{p} = {size + 2 * p} along axis {axis})"
            checks.fail(w_name, expected, k)
    Ho, Wo = output_size(H, kh, stride[0], padding[0]), output_size(W, kw, stride[1], padding[1])
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


def _checked_conv2d(x, w, stride, padding, groups):
    """conv2d's arguments checked; -> (stride, padding, groups), pairs of ints and an int."""
    _check_pair_of_arrays(x, w, "x", "w")
    return _checked_geometry(x.shape, w.shape, stride, padding, groups)[:3]


def _checked_input_grad(dy, w, x_shape, stride, padding, groups):
    """conv2d_input_grad's arguments checked; -> (x_shape, stride, padding, groups)."""
    _check_pair_of_arrays(w, dy, "w", "dy")
    x_shape = _shape_argument("x_shape", x_shape, 0)
    stride, padding, groups, y_shape = _checked_geometry(x_shape, w.shape, stride, padding, groups, x_name="x_shape")
    checks.shape("dy", dy, y_shape, "(the output of x_shape ⋆ w)")
    return x_shape, stride, padding, groups


def _checked_weight_grad(x, dy, w_shape, stride, padding, groups):
    """conv2d_weight_grad's arguments checked; -> (w_shape, stride, padding, groups)."""
    _check_pair_of_arrays(x, dy, "x", "dy")
    w_shape = _shape_argument("w_shape", w_shape, 0)
    stride, padding, groups, y_shape = _checked_geometry(x.shape, w_shape, stride, padding, groups, w_name="w_shape")
    checks.shape("dy", dy, y_shape, "(the output of x ⋆ w_shape)")
    return w_shape, stride, padding, groups


# ---- im2col and col2im, the textbook's, public for the tutorials ---------------------------


def im2col(x, /, *, kernel_size, stride=1, padding=0):
    """Textbook im2col (:func:`minibasis.conv_reference.im2col`).  x: (N, C, H, W) -> (N·Ho·Wo, C·kh·kw).

    Row ``(n, a, b)`` holds the receptive field of output pixel ``(a, b)`` of image ``n``,
    flattened in ``(c, i, j)`` order, so ``conv2d(x, w) == (im2col(x) @ w.reshape(O, -1).T)``
    reshaped to ``(N, Ho, Wo, O)`` and transposed to NCHW.
    """
    checks.array("x", x, ndim=4)
    kh, kw = checks.pair("kernel_size", kernel_size, 1)
    geometry = _checked_geometry(x.shape, (1, x.shape[1], kh, kw), stride, padding, 1, w_name="kernel_size")
    stride, padding = geometry[:2]
    return conv_reference.im2col(np.asarray(x), kh, kw, stride, padding)


def col2im(cols, /, *, x_shape, kernel_size, stride=1, padding=0):
    """Adjoint of :func:`im2col`: (N·Ho·Wo, C·kh·kw) -> (N, C, H, W), overlaps summed."""
    checks.array("cols", cols, ndim=2)
    x_shape = _shape_argument("x_shape", x_shape, 0)
    kh, kw = checks.pair("kernel_size", kernel_size, 1)
    geometry = _checked_geometry(x_shape, (1, x_shape[1], kh, kw), stride, padding, 1, "x_shape", "kernel_size")
    stride, padding, _, (N, _, Ho, Wo) = geometry
    checks.shape("cols", cols, (N * Ho * Wo, x_shape[1] * kh * kw))
    return conv_reference.col2im(np.asarray(cols), x_shape, kh, kw, stride, padding)
