"""2-D convolution as im2col + one GEMM, and its two gradients, as autograd primitives.

Layouts are PyTorch's: ``x: (N, C, H, W)``, ``w: (O, C, kh, kw)``, ``y: (N, O, Ho, Wo)`` with
``Ho = floor((H + 2·ph − kh) / sh) + 1`` (likewise ``Wo``). Like ``torch.nn.functional.conv2d``
this is a cross-correlation: ``y[n, o, a, b] = Σ_{c,i,j} w[o, c, i, j] · xpad[n, c, a·sh + i, b·sw + j]``.

The three functions are one bilinear map seen from three sides, so their VJPs are each other::

    y  = conv2d(x, w)                      ∂/∂x: g ↦ conv2d_input_grad(g, w)
                                           ∂/∂w: g ↦ conv2d_weight_grad(x, g)
    dx = conv2d_input_grad(dy, w)          ∂/∂dy: g ↦ conv2d(g, w)
                                           ∂/∂w:  g ↦ conv2d_weight_grad(g, dy)
    dw = conv2d_weight_grad(x, dy)         ∂/∂x:  g ↦ conv2d_input_grad(dy, g)
                                           ∂/∂dy: g ↦ conv2d(x, g)

and ``autograd.grad`` works to any order. Arrays are positional-only and hyper-parameters
keyword-only: autograd traces only positional arguments, so an array passed by keyword would
silently bypass the hand-written VJPs (still correct, ~10⁴× slower). Python forbids that here.

im2col ("flat shift"). Per image, the zero-padded input is flattened per channel to a vector
``xflat[c]`` of length ``Hq·Wq`` (plus a few zero rows; stored channel-major, (C, N, ·)). For
stride 1, output pixel ``(a, b)`` at kernel offset ``(i, j)`` reads ``xflat[c, (a + i)·Wq + b + j]``.
So, if we let ``b`` run over the whole padded width ``Wq`` instead of ``Wo``, the im2col row of
offset ``(i, j)`` is *one contiguous slice* ``xflat[c, i·Wq + j :][:Ho·Wq]``: a fast copy, not a
gather. The columns with ``b ≥ Wo`` are wasted work (a factor ``Wq/Wo``: 1.06 at 32 px, 1.25 at
8 px) and are dropped after the GEMM; in the gradients they are zero. A stride ``s`` is turned
into stride 1 by splitting the padded input into its ``sh·sw`` phases (see ``_Geometry``).
Images are processed in chunks so that the im2col block stays small (in cache), and it is never
kept for the backward pass. 1×1 convolutions with stride 1 and no padding skip im2col: a
matrix product per image.

The backward pass. At stride 1 the input gradient (a transposed convolution) is the forward
convolution of dy with the flipped, transposed kernel, so it runs the same fast im2col + GEMM
instead of col2im's read-add-write passes; col2im stays as the textbook reference
(:func:`conv2d_input_grad_reference`) and serves the other strides (and padding ≥ kernel).
When autograd wants both gradients at first order (a training step) of a stride-1 k×k
convolution, conv2d's VJP computes them from one im2col of dy (``_both_grads``): the weight
gradient then needs no im2col of x. Everything else (higher orders, one gradient only, 1×1,
other strides) calls the separate primitives; tests hold the two paths to each other.

Inside a ``minibasis.backend.use(...)`` block the primitives move their inputs to that
backend's device, run the same code with its array module, and return host arrays, so
autograd only ever sees NumPy arrays.
"""

import numpy as np
from autograd.extend import defjvp, defvjp, defvjp_argnums, primitive
from autograd.tracer import isbox

from . import backend


def _pair(name, value, minimum):
    """int or (int, int) -> (int, int), each ≥ minimum; ValueError naming the argument."""
    pair = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) for v in pair):
        raise ValueError(f"{name}: expected an int or a pair of ints, got {value!r}")
    if min(pair) < minimum:
        raise ValueError(f"{name}: expected values >= {minimum}, got {value!r}")
    return int(pair[0]), int(pair[1])


def conv_output_size(size, kernel, stride, padding):
    """floor((size + 2·padding − kernel) / stride) + 1, PyTorch's rule."""
    return (size + 2 * padding - kernel) // stride + 1


class _Geometry:
    """Everything the flat-shift im2col needs for one (x shape, w shape, stride, padding).

    Stride ``s`` is handled by splitting the padded input into its ``sh·sw`` *phases*
    ``xpad[ri::sh, rj::sw]`` (space-to-depth). Kernel offset ``(i, j)`` of output pixel
    ``(a, b)`` reads ``xpad[a·sh + i, b·sw + j] = phase(i mod sh, j mod sw)[a + i//sh, b + j//sw]``,
    a stride-1 access: every im2col row is one contiguous slice of one phase, whatever the
    stride. Stride 1 has a single phase, the padded input itself.
    """

    def __init__(self, x_shape, w_shape, stride, padding, device=backend.CPU):
        self.xp = device.xp  # numpy, or the device's array module inside the primitives
        self.N, self.C, self.H, self.W = x_shape
        self.O, _, self.kh, self.kw = w_shape
        self.sh, self.sw = stride
        self.ph, self.pw = padding
        self.Ho = conv_output_size(self.H, self.kh, self.sh, self.ph)
        self.Wo = conv_output_size(self.W, self.kw, self.sw, self.pw)
        # A phase is (Hq, Wq): the padded input's rows/columns a·s + r, rounded up. Output row a
        # is computed over the whole phase width Wq ≥ Wo ("wide grid"); the Wq − Wo extra
        # columns are wasted work (1.06× at 32 px, 1.25× at 8 px), dropped after the GEMM.
        self.Wq = -(-(self.W + 2 * self.pw) // self.sw)
        self.L = self.Ho * self.Wq  # im2col columns per image
        self.slices = [  # (phase, start) of the im2col row of kernel offset (i, j)
            ((i % self.sh) * self.sw + j % self.sw, (i // self.sh) * self.Wq + j // self.sw)
            for i in range(self.kh)
            for j in range(self.kw)
        ]
        last = max(start for _, start in self.slices) + self.L  # one past the last index read
        self.Hq = max(-(-(self.H + 2 * self.ph) // self.sh), -(-last // self.Wq))  # + spare zero rows
        self.K = self.C * self.kh * self.kw
        # 1×1, stride 1, no padding: a plain matrix product per image, no im2col at all.
        self.pointwise = (self.kh, self.kw, self.sh, self.sw, self.ph, self.pw) == (1, 1, 1, 1, 0, 0)
        # Stride 1 and padding < kernel: the transposed convolution is a convolution (see _transposed).
        self.transposable = (self.sh, self.sw) == (1, 1) and self.ph < self.kh and self.pw < self.kw
        # Images per chunk, so that the im2col block (K × chunk·L) stays small (in cache); sized
        # for 8-byte floats, so a float32 block is half of device.chunk_bytes.
        per_image = self.K * self.L * 8
        self.chunk = max(1, min(self.N, device.chunk_bytes // max(per_image, 1)))

    # Internally the images of a chunk are channel-major, (C, n, ·): then im2col's slice copies
    # and col2im's slice additions read and write the same layout (no transposes in the
    # kh·kw-fold inner loop); the transposes to and from NCHW happen once, in pad and unpad.

    def phase_windows(self):
        """(p, x window, phase window) for each phase p: x rows r0::sh and columns c0::sw fill
        the phase's rows y0 : y0 + (their number) and columns x0 : x0 + (theirs)."""
        for p in range(self.sh * self.sw):
            ri, rj = divmod(p, self.sw)
            r0, c0 = (ri - self.ph) % self.sh, (rj - self.pw) % self.sw  # first x row/column in phase p
            rows, cols = range(r0, self.H, self.sh), range(c0, self.W, self.sw)
            y0, x0 = (r0 + self.ph) // self.sh, (c0 + self.pw) // self.sw
            yield p, (slice(r0, None, self.sh), slice(c0, None, self.sw)), (slice(y0, y0 + len(rows)), slice(x0, x0 + len(cols)))

    def pad_flat(self, x):
        """x: (n, C, H, W) -> zero-padded phases, flattened: (C, n, sh·sw, Hq·Wq)."""
        phases = self.xp.zeros((self.C, x.shape[0], self.sh * self.sw, self.Hq, self.Wq), dtype=x.dtype)
        for p, (rows, cols), (prows, pcols) in self.phase_windows():
            phases[:, :, p, prows, pcols] = x[:, :, rows, cols].transpose(1, 0, 2, 3)
        return phases.reshape(self.C, x.shape[0], self.sh * self.sw, self.Hq * self.Wq)

    def im2col(self, xflat):
        """(C, n, sh·sw, Hq·Wq) -> cols (C·kh·kw, n·L), rows ordered (c, i, j) like w.reshape(O, -1)."""
        n = xflat.shape[1]
        cols = self.xp.empty((self.C, self.kh * self.kw, n, self.L), dtype=xflat.dtype)
        for k, (phase, start) in enumerate(self.slices):
            cols[:, k] = xflat[:, :, phase, start : start + self.L]
        return cols.reshape(self.K, n * self.L)

    def col2im(self, cols, n):
        """Adjoint of im2col: cols (C·kh·kw, n·L) -> (C, n, sh·sw, Hq·Wq), summing overlaps."""
        cols = cols.reshape(self.C, self.kh * self.kw, n, self.L)
        xflat = self.xp.zeros((self.C, n, self.sh * self.sw, self.Hq * self.Wq), dtype=cols.dtype)
        for k, (phase, start) in enumerate(self.slices):
            xflat[:, :, phase, start : start + self.L] += cols[:, k]
        return xflat

    def unpad(self, xflat, out):
        """(C, n, sh·sw, Hq·Wq) -> out (n, C, H, W): back from phases, dropping the zero padding."""
        phases = xflat.reshape(self.C, out.shape[0], self.sh * self.sw, self.Hq, self.Wq)
        for p, (rows, cols), (prows, pcols) in self.phase_windows():
            out[:, :, rows, cols] = phases[:, :, p, prows, pcols].transpose(1, 0, 2, 3)
        return out

    def wide(self, dy):
        """dy: (n, R, Ho, Wo) -> (R, n·L) on the wide output grid, zeros where b ≥ Wo (R: any
        number of rows: O output channels, or K im2col rows)."""
        n, rows = dy.shape[:2]
        grid = self.xp.zeros((rows, n, self.Ho, self.Wq), dtype=dy.dtype)
        grid[..., : self.Wo] = dy.transpose(1, 0, 2, 3)
        return grid.reshape(rows, n * self.L)

    def narrow(self, out, n):
        """(R, n·L) on the wide grid -> (n, R, Ho, Wo)."""
        return out.reshape(-1, n, self.Ho, self.Wq)[..., : self.Wo].transpose(1, 0, 2, 3)

    def chunks(self):
        return [slice(n0, min(n0 + self.chunk, self.N)) for n0 in range(0, self.N, self.chunk)]


def _check(x, w, stride, padding, x_name="x", w_name="w", device=backend.CPU):
    """Validate shapes and hyper-parameters; return the geometry."""
    for name, a in ((x_name, x), (w_name, w)):
        if not isinstance(a, np.ndarray):
            raise TypeError(f"{name}: expected a numpy.ndarray, got {type(a).__name__}")
        if a.ndim != 4:
            raise ValueError(f"{name}: expected 4 dimensions, got shape {a.shape}")
        if a.dtype.kind != "f":
            raise ValueError(f"{name}: expected a floating dtype, got {a.dtype}")
    if x.dtype != w.dtype:
        raise ValueError(
            f"{w_name}: expected dtype {x.dtype} (that of {x_name}; no silent casts), got {w.dtype}"
        )
    if x.shape[1] != w.shape[1]:
        raise ValueError(
            f"{w_name}: expected {x.shape[1]} input channels (those of {x_name}, shape "
            f"{x.shape}), got shape {w.shape}"
        )
    stride = _pair("stride", stride, 1)
    padding = _pair("padding", padding, 0)
    for axis, size, k, p in ((2, x.shape[2], w.shape[2], padding[0]), (3, x.shape[3], w.shape[3], padding[1])):
        if k > size + 2 * p:
            raise ValueError(
                f"{w_name}: expected a kernel no larger than the padded input "
                f"({size} + 2·{p} = {size + 2 * p} along axis {axis}), got {k}"
            )
    return _Geometry(x.shape, w.shape, stride, padding, device)


def _correlate(geo, x, w):
    """The forward loop on device arrays: per chunk, y = W · im2col(x).  -> (N, O, Ho, Wo)."""
    w_mat = w.reshape(geo.O, geo.K)
    if geo.pointwise:  # y[n] = W · x[n], batched over images, in NCHW (no transposes)
        return geo.xp.matmul(w_mat, x.reshape(geo.N, geo.C, geo.H * geo.W)).reshape(geo.N, geo.O, geo.Ho, geo.Wo)
    y = geo.xp.empty((geo.N, geo.O, geo.Ho, geo.Wo), dtype=x.dtype)
    for part in geo.chunks():
        y[part] = geo.narrow(w_mat @ geo.im2col(geo.pad_flat(x[part])), part.stop - part.start)
    return y


@primitive
def conv2d(x, w, /, *, stride=1, padding=0):
    """y = x ⋆ w.  x: (N, C, H, W), w: (O, C, kh, kw) -> y: (N, O, Ho, Wo)."""
    device = backend.current()
    geo = _check(x, w, stride, padding, device=device)
    return device.to_host(_correlate(geo, device.to_device(x), device.to_device(w)))


@primitive
def conv2d_input_grad(dy, w, /, *, x_shape, stride=1, padding=0):
    """dx = ∂⟨dy, x ⋆ w⟩/∂x (the transposed convolution).  dy: (N, O, Ho, Wo) -> (N, C, H, W).

    For stride 1 (and padding < kernel) the transposed convolution is itself a convolution:
    ``dx = dy ⋆ w'`` with ``w'[c, o, i, j] = w[o, c, kh−1−i, kw−1−j]`` and padding ``k−1−p``.
    That runs through im2col's contiguous copies instead of col2im's read-add-write passes,
    and its GEMM has the forward's shape. Otherwise (and as the documented reference, see
    :func:`conv2d_input_grad_reference`): ``dx = col2im(Wᵀ · dy)``.
    """
    device = backend.current()
    geo = _grad_geometry(x_shape, w.shape, stride, padding, dy, "dy", dtype=w.dtype, device=device)
    dy, w = device.to_device(dy), device.to_device(w)
    if geo.transposable:
        geo_t, w_flipped = _transposed(geo, w, device)
        return device.to_host(_correlate(geo_t, dy, w_flipped))
    return device.to_host(_input_grad_by_col2im(geo, dy, w))


def _transposed(geo, w, device):
    """(geometry, w') of the transposed convolution as a convolution of dy (geo.transposable)."""
    w_flipped = w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3).copy()  # (C, O, kh, kw)
    padding = (geo.kh - 1 - geo.ph, geo.kw - 1 - geo.pw)
    return _Geometry((geo.N, geo.O, geo.Ho, geo.Wo), w_flipped.shape, (1, 1), padding, device), w_flipped


def _both_grads(geo_t, w_flipped, dy, x):
    """(dx, dw) of a stride-1 conv from one im2col of dy per chunk, on device arrays.

    With ``Q = im2col(dy)`` of the transposed convolution (rows ``(o, i', j')``, columns the
    input pixels on its wide grid): ``dx = W'·Q`` and ``dw[o, c, i, j] = (Q·xᵀ)[(o, kh−1−i,
    kw−1−j), c]``, since ``∂⟨dy, x ⋆ w⟩/∂w[o,c,i,j] = Σ x[c, u, v]·dy_pad[o, u + kh−1−i, v + kw−1−j]``.
    The weight gradient then needs no im2col of x of its own.
    """
    C, O, kh, kw = w_flipped.shape
    dx = geo_t.xp.empty((geo_t.N, C, geo_t.Ho, geo_t.Wo), dtype=dy.dtype)
    dw_t = geo_t.xp.zeros((geo_t.K, C), dtype=dy.dtype)
    w_mat = w_flipped.reshape(C, geo_t.K)
    for part in geo_t.chunks():
        cols = geo_t.im2col(geo_t.pad_flat(dy[part]))
        dx[part] = geo_t.narrow(w_mat @ cols, part.stop - part.start)
        dw_t += cols @ geo_t.wide(x[part]).T
    dw = dw_t.reshape(O, kh, kw, C)[:, ::-1, ::-1].transpose(0, 3, 1, 2).copy()  # OIHW, contiguous
    return dx, dw


def _input_grad_by_col2im(geo, dy, w):
    """dx = col2im(Wᵀ · dy), per chunk, on device arrays.  dy: (N, O, Ho, Wo) -> (N, C, H, W)."""
    dx = geo.xp.empty((geo.N, geo.C, geo.H, geo.W), dtype=dy.dtype)
    w_mat_t = w.reshape(geo.O, geo.K).T
    for part in geo.chunks():
        n = part.stop - part.start
        geo.unpad(geo.col2im(w_mat_t @ geo.wide(dy[part]), n), out=dx[part])
    return dx


def conv2d_input_grad_reference(dy, w, /, *, x_shape, stride=1, padding=0):
    """The input gradient as written in textbooks, ``dx = col2im(Wᵀ · dy)``, for any stride.

    Not a primitive (no gradients of its own): the reference the stride-1 fast path of
    :func:`conv2d_input_grad` is tested against.
    """
    geo = _grad_geometry(x_shape, w.shape, stride, padding, dy, "dy", dtype=w.dtype)
    return _input_grad_by_col2im(geo, dy, w)


@primitive
def conv2d_weight_grad(x, dy, /, *, w_shape, stride=1, padding=0):
    """dw = ∂⟨dy, x ⋆ w⟩/∂w.  x: (N, C, H, W), dy: (N, O, Ho, Wo) -> (O, C, kh, kw)."""
    device = backend.current()
    geo = _grad_geometry(x.shape, w_shape, stride, padding, dy, "dy", dtype=x.dtype, device=device)
    x, dy = device.to_device(x), device.to_device(dy)
    if geo.pointwise:  # dW = Σ_n dy[n] · x[n]ᵀ
        pixels = geo.H * geo.W
        dw = geo.xp.matmul(dy.reshape(geo.N, geo.O, pixels), x.reshape(geo.N, geo.C, pixels).transpose(0, 2, 1)).sum(axis=0)
        return device.to_host(dw.reshape(w_shape))
    dw_t = geo.xp.zeros((geo.K, geo.O), dtype=x.dtype)
    for part in geo.chunks():
        cols = geo.im2col(geo.pad_flat(x[part]))
        dw_t += cols @ geo.wide(dy[part]).T  # (K, n·L) @ (n·L, O): the faster of the two orders
    return device.to_host(dw_t.T.reshape(w_shape))


def _grad_geometry(x_shape, w_shape, stride, padding, dy, dy_name, dtype, device=backend.CPU):
    """Geometry for a gradient primitive, checking that dy has the output's shape and dtype."""
    geo = _Geometry(tuple(x_shape), tuple(w_shape), _pair("stride", stride, 1), _pair("padding", padding, 0), device)
    expected = (geo.N, geo.O, geo.Ho, geo.Wo)
    if tuple(dy.shape) != expected:
        raise ValueError(f"{dy_name}: expected shape {expected}, got {tuple(dy.shape)}")
    if dy.dtype != dtype:
        raise ValueError(f"{dy_name}: expected dtype {dtype}, got {dy.dtype}")
    return geo


def _conv2d_vjp(argnums, y, args, hp):
    """VJP of conv2d: the two gradient primitives; at first order, when both gradients are
    wanted and the input gradient is a stride-1 convolution, both from one im2col of dy."""
    x, w = args

    def vjp(g):
        device = backend.current()
        geo = _grad_geometry(x.shape, w.shape, hp.get("stride", 1), hp.get("padding", 0), g, "g", dtype=x.dtype, device=device)
        fused = argnums == (0, 1) and geo.transposable and not geo.pointwise
        if fused and not any(isbox(a) for a in (g, x, w)):  # no outer trace differentiates these results
            dx, dw = _both_grads(*_transposed(geo, device.to_device(w), device), device.to_device(g), device.to_device(x))
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
    """Textbook im2col, for reading and teaching.  x: (N, C, H, W) -> (N·Ho·Wo, C·kh·kw).

    Row ``(n, a, b)`` holds the receptive field of output pixel ``(a, b)`` of image ``n``,
    flattened in ``(c, i, j)`` order, so ``conv2d(x, w) == (im2col(x) @ w.reshape(O, -1).T)``
    reshaped to ``(N, Ho, Wo, O)`` and transposed to NCHW.
    """
    kh, kw = _pair("kernel_size", kernel_size, 1)
    w_like = np.empty((1, x.shape[1], kh, kw), dtype=x.dtype)
    geo = _check(x, w_like, stride, padding)
    cols = geo.narrow(geo.im2col(geo.pad_flat(x)), geo.N)  # (N, K, Ho, Wo)
    return cols.transpose(0, 2, 3, 1).reshape(-1, geo.K)


def col2im(cols, /, *, x_shape, kernel_size, stride=1, padding=0):
    """Adjoint of :func:`im2col`: (N·Ho·Wo, C·kh·kw) -> (N, C, H, W), overlaps summed."""
    kh, kw = _pair("kernel_size", kernel_size, 1)
    geo = _Geometry(tuple(x_shape), (1, x_shape[1], kh, kw), _pair("stride", stride, 1), _pair("padding", padding, 0))
    expected = (geo.N * geo.Ho * geo.Wo, geo.K)
    if cols.shape != expected:
        raise ValueError(f"cols: expected shape {expected}, got {cols.shape}")
    wide = geo.wide(cols.reshape(geo.N, geo.Ho, geo.Wo, geo.K).transpose(0, 3, 1, 2))
    return geo.unpad(geo.col2im(wide, geo.N), out=np.empty(tuple(x_shape), dtype=cols.dtype))
