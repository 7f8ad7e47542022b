"""The fast form of the convolution primitives: flat-shift im2col in chunks, depthwise shifts.

What training runs; :mod:`minibasis.conv_reference` is the textbook form it is tested equal to,
function for function: :func:`conv2d`, :func:`conv2d_input_grad` and :func:`conv2d_weight_grad`
take the same checked arguments (pairs ``(int, int)``) and return host arrays. They run on the
current backend (:mod:`minibasis.backend`): the functions below them take and return arrays of
its array module ``device.xp`` (NumPy, or CuPy on a GPU backend).

im2col ("flat shift"). Per image, the zero-padded input is flattened per channel to a vector
``xflat[c]`` of length ``Hq·Wq`` (plus a few zero rows; stored channel-major, (C, N, ·)). For
stride 1, output pixel ``(a, b)`` at kernel offset ``(i, j)`` reads ``xflat[c, (a + i)·Wq + b + j]``.
So, if we let ``b`` run over the whole padded width ``Wq`` instead of ``Wo``, the im2col row of
offset ``(i, j)`` is *one contiguous slice* ``xflat[c, i·Wq + j :][:Ho·Wq]``: a fast copy, not a
gather. The columns with ``b ≥ Wo`` are wasted work (a factor ``Wq/Wo``: 1.06 at 32 px, 1.25 at
8 px) and are dropped after the GEMM; in the gradients they are zero. A stride ``s`` is turned
into stride 1 by splitting the padded input into its ``sh·sw`` phases (see ``Geometry``).
Images are processed in chunks so that the im2col block stays small (in cache), and it is never
kept for the backward pass. 1×1 convolutions with stride 1 and no padding skip im2col: a
matrix product per image.

The backward pass. At stride 1 the input gradient (a transposed convolution) is the forward
convolution of dy with the flipped, transposed kernel, so it runs the same fast im2col + GEMM
instead of col2im's read-add-write passes; other strides use col2im. When autograd wants both
gradients at first order (a training step) of a stride-1 k×k convolution, :func:`both_grads`
computes them from one im2col of dy: the weight gradient then needs no im2col of x.

Groups. A depthwise convolution (one input channel per group, MobileNetV2's 3×3) is ``kh·kw``
shifted multiply-adds over whole arrays, no im2col and no loop over channels; other grouped
convolutions run the dense kernels on each group's channel slices.
"""

import numpy as np
from autograd.tracer import isbox

from . import backend, parallel
from .conv_reference import output_size


class Geometry:
    """Everything the flat-shift im2col needs for one (x shape, w shape, stride, padding).

    Stride ``s`` is handled by splitting the padded input into its ``sh·sw`` *phases*
    ``xpad[ri::sh, rj::sw]`` (space-to-depth). Kernel offset ``(i, j)`` of output pixel
    ``(a, b)`` reads ``xpad[a·sh + i, b·sw + j] = phase(i mod sh, j mod sw)[a + i//sh, b + j//sw]``,
    a stride-1 access: every im2col row is one contiguous slice of one phase, whatever the
    stride. Stride 1 has a single phase, the padded input itself.
    """

    def __init__(self, x_shape, w_shape, stride, padding, device):
        self.xp = device.xp  # numpy, or the device's array module inside the primitives
        self.N, self.C, self.H, self.W = x_shape
        self.O, _, self.kh, self.kw = w_shape
        self.sh, self.sw = stride
        self.ph, self.pw = padding
        self.Ho = output_size(self.H, self.kh, self.sh, self.ph)
        self.Wo = output_size(self.W, self.kw, self.sw, self.pw)
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
            yield (
                p,
                (slice(r0, None, self.sh), slice(c0, None, self.sw)),
                (slice(y0, y0 + len(rows)), slice(x0, x0 + len(cols))),
            )

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


# ---- dense (groups = 1) ------------------------------------------------------------------


def _for_each_piece(device, fn, pieces):
    """``fn`` over the pieces on minibasis' worker threads (host arrays), else one after another."""
    if device.xp is np:
        return parallel.for_each(fn, pieces)
    return [fn(piece) for piece in pieces]


def _sum_in_order(partials, like):
    """Σ partials, added in the pieces' order (the same sum whatever thread made which)."""
    total = like
    for partial in partials:
        total += partial
    return total


def _dense_conv2d(x, w, stride, padding, device):
    """y = x ⋆ w per chunk of images, y = W · im2col(x).  -> (N, O, Ho, Wo)."""
    geo = Geometry(x.shape, w.shape, stride, padding, device)
    w_mat = w.reshape(geo.O, geo.K)
    y = geo.xp.empty((geo.N, geo.O, geo.Ho, geo.Wo), dtype=x.dtype)
    if geo.pointwise:  # y[n] = W · x[n]

        def run(part):
            y[part] = _channel_major(geo, x[part], lambda x_cm: w_mat @ x_cm, geo.O)

        _for_each_piece(device, run, parallel.slices(geo.N, x.size + y.size))  # 1×1: no im2col to size chunks by
        return y

    def run(part):
        y[part] = geo.narrow(w_mat @ geo.im2col(geo.pad_flat(x[part])), part.stop - part.start)

    _for_each_piece(device, run, geo.chunks())
    return y


BATCHED_PIXELS = 256  # a 1×1 conv of maps this large runs one GEMM per image; smaller, one GEMM in all


def _as_channel_major(a):
    """(n, C, H, W) -> (C, n·H·W)."""
    return a.transpose(1, 0, 2, 3).reshape(a.shape[1], -1)


def _channel_major(geo, x, product, rows):
    """A 1×1 map ``product`` (C × pixels -> rows × pixels) of x: (n, C, H, W) -> (n, rows, H, W).
    Large maps: one GEMM per image, in NCHW; small ones (the late stages of the ImageNet
    models, 2×2 to 8×8): one GEMM over every pixel of every image, in channel-major layout."""
    if geo.H * geo.W >= BATCHED_PIXELS:  # (rows, C) @ (n, C, H·W): a GEMM per image
        return product(x.reshape(x.shape[0], geo.C, -1)).reshape(x.shape[0], rows, geo.H, geo.W)
    out = product(_as_channel_major(x))  # (rows, n·H·W)
    return out.reshape(rows, x.shape[0], geo.H, geo.W).transpose(1, 0, 2, 3)


def _flipped(w, padding):
    """(w', padding') of the stride-1 transposed convolution as a convolution of dy:
    ``w'[c, o, i, j] = w[o, c, kh−1−i, kw−1−j]``, padding ``k−1−p``."""
    kh, kw = w.shape[2:]
    return w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3).copy(), (kh - 1 - padding[0], kw - 1 - padding[1])


def transposable(w_shape, stride, padding):
    """Stride 1 and padding < kernel: the transposed convolution is a convolution."""
    return tuple(stride) == (1, 1) and padding[0] < w_shape[2] and padding[1] < w_shape[3]


def _dense_input_grad(dy, w, x_shape, stride, padding, device):
    """dx = ∂⟨dy, x ⋆ w⟩/∂x: stride 1 as dy ⋆ w' (see :func:`_flipped`), else col2im(Wᵀ · dy)."""
    if transposable(w.shape, stride, padding):
        w_flipped, padding_t = _flipped(w, padding)
        return _dense_conv2d(dy, w_flipped, (1, 1), padding_t, device)
    geo = Geometry(x_shape, w.shape, stride, padding, device)
    dx = geo.xp.empty(tuple(x_shape), dtype=dy.dtype)
    w_mat_t = w.reshape(geo.O, geo.K).T

    def run(part):
        geo.unpad(geo.col2im(w_mat_t @ geo.wide(dy[part]), part.stop - part.start), out=dx[part])

    _for_each_piece(device, run, geo.chunks())
    return dx


def _dense_weight_grad(x, dy, w_shape, stride, padding, device):
    """dw = ∂⟨dy, x ⋆ w⟩/∂w = Σ_chunks wide(dy) · im2col(x)ᵀ."""
    geo = Geometry(x.shape, w_shape, stride, padding, device)
    if geo.pointwise:  # dW = Σ_n dy[n] · x[n]ᵀ

        def partial(part):
            if geo.H * geo.W >= BATCHED_PIXELS:
                pixels = geo.H * geo.W
                return geo.xp.matmul(
                    dy[part].reshape(-1, geo.O, pixels), x[part].reshape(-1, geo.C, pixels).transpose(0, 2, 1)
                ).sum(axis=0)
            return _as_channel_major(dy[part]) @ _as_channel_major(x[part]).T  # (O, n·H·W) @ (n·H·W, C)

        partials = _for_each_piece(device, partial, parallel.slices(geo.N, x.size + dy.size))
        return _sum_in_order(partials, geo.xp.zeros((geo.O, geo.C), dtype=x.dtype)).reshape(w_shape)

    def partial(part):  # (K, n·L) @ (n·L, O): the faster order
        return geo.im2col(geo.pad_flat(x[part])) @ geo.wide(dy[part]).T

    dw_t = _sum_in_order(_for_each_piece(device, partial, geo.chunks()), geo.xp.zeros((geo.K, geo.O), dtype=x.dtype))
    return dw_t.T.reshape(w_shape)


def fusable(w_shape, stride, padding, groups):
    """Whether :func:`both_grads` applies: a dense stride-1 k×k convolution (not 1×1)."""
    return groups == 1 and transposable(w_shape, stride, padding) and tuple(w_shape[2:]) != (1, 1)


def both_grads(x, w, dy, padding, device):
    """(dx, dw) of a stride-1 conv from one im2col of dy per chunk (see :func:`fusable`).

    With ``Q = im2col(dy)`` of the transposed convolution (rows ``(o, i', j')``, columns the
    input pixels on its wide grid): ``dx = W'·Q`` and ``dw[o, c, i, j] = (Q·xᵀ)[(o, kh−1−i,
    kw−1−j), c]``, since ``∂⟨dy, x ⋆ w⟩/∂w[o,c,i,j] = Σ x[c, u, v]·dy_pad[o, u + kh−1−i, v + kw−1−j]``.
    The weight gradient then needs no im2col of x of its own.
    """
    w_flipped, padding_t = _flipped(w, padding)
    C, O, kh, kw = w_flipped.shape
    geo = Geometry(dy.shape, w_flipped.shape, (1, 1), padding_t, device)
    dx = geo.xp.empty((geo.N, C, geo.Ho, geo.Wo), dtype=dy.dtype)
    w_mat = w_flipped.reshape(C, geo.K)

    def run(part):  # dx of the chunk, and its part of dw
        cols = geo.im2col(geo.pad_flat(dy[part]))
        dx[part] = geo.narrow(w_mat @ cols, part.stop - part.start)
        return cols @ geo.wide(x[part]).T

    dw_t = _sum_in_order(_for_each_piece(device, run, geo.chunks()), geo.xp.zeros((geo.K, C), dtype=dy.dtype))
    dw = dw_t.reshape(O, kh, kw, C)[:, ::-1, ::-1].transpose(0, 3, 1, 2).copy()  # OIHW, contiguous
    return dx, dw


# ---- depthwise (one input channel per group) ----------------------------------------------
# Computed channels-last, (N, H, W, C): each of the kh·kw shifted multiply-adds then runs along
# the contiguous channel axis, not along rows of a few pixels (MobileNetV2's late stages are 2×2
# to 8×8 maps of 384–960 channels). Pieces are ranges of images.


def _channels_last_padded(x, padding, multiplier, xp):
    """x: (n, C, H, W) -> zero-padded (n, H + 2ph, W + 2pw, C·M), each channel repeated for its M outputs."""
    (ph, pw) = padding
    xpad = xp.zeros((x.shape[0], x.shape[2] + 2 * ph, x.shape[3] + 2 * pw, x.shape[1]), dtype=x.dtype)
    xpad[:, ph : ph + x.shape[2], pw : pw + x.shape[3]] = x.transpose(0, 2, 3, 1)
    return xp.repeat(xpad, multiplier, axis=3) if multiplier > 1 else xpad


def _offsets(w_shape, stride, out_size):
    """(k, the rows and columns of the padded input that kernel offset k = (i, j) reads)."""
    (sh, sw), (Ho, Wo) = stride, out_size
    return [
        (i * w_shape[3] + j, slice(i, i + sh * Ho, sh), slice(j, j + sw * Wo, sw))
        for i in range(w_shape[2])
        for j in range(w_shape[3])
    ]


def _taps(w):
    """(kh·kw, O): the weight of each kernel offset for every channel, contiguous (broadcast along C)."""
    return w.reshape(w.shape[0], -1).T.copy()


def _depthwise_conv2d(x, w, stride, padding, device):
    """y[n, o] = Σ_{i,j} w[o, 0, i, j] · xpad[n, o // M, i::sh, j::sw]: kh·kw multiply-adds."""
    xp, O, C = device.xp, w.shape[0], x.shape[1]
    out_size = tuple(output_size(s, k, st, p) for s, k, st, p in zip(x.shape[2:], w.shape[2:], stride, padding))
    y, taps = xp.empty((x.shape[0], O) + out_size, dtype=x.dtype), _taps(w)

    def run(images):
        xpad = _channels_last_padded(x[images], padding, O // C, xp)
        out = xp.zeros((xpad.shape[0],) + out_size + (O,), dtype=x.dtype)
        for k, rows, cols in _offsets(w.shape, stride, out_size):
            out += taps[k] * xpad[:, rows, cols]
        y[images] = out.transpose(0, 3, 1, 2)

    _for_each_piece(device, run, parallel.slices(x.shape[0], x.size + y.size))
    return y


def _depthwise_input_grad(dy, w, x_shape, stride, padding, device):
    """dx: each offset's w·dy added back where its window came from (the adjoint of the shifts)."""
    xp, O, (N, C, H, W), (ph, pw) = device.xp, w.shape[0], x_shape, padding
    dx, taps = xp.empty(tuple(x_shape), dtype=dy.dtype), _taps(w)

    def run(images):
        g = xp.ascontiguousarray(dy[images].transpose(0, 2, 3, 1))  # (n, Ho, Wo, O)
        dxpad = xp.zeros((g.shape[0], H + 2 * ph, W + 2 * pw, O), dtype=dy.dtype)
        for k, rows, cols in _offsets(w.shape, stride, dy.shape[2:]):
            dxpad[:, rows, cols] += taps[k] * g
        if O != C:  # an input channel feeds M outputs: sum their gradients
            dxpad = dxpad.reshape(dxpad.shape[:3] + (C, O // C)).sum(axis=4)
        dx[images] = dxpad[:, ph : ph + H, pw : pw + W].transpose(0, 3, 1, 2)

    _for_each_piece(device, run, parallel.slices(N, dy.size + dx.size))
    return dx


def _depthwise_weight_grad(x, dy, w_shape, stride, padding, device):
    """dw[o, 0, i, j] = Σ_{n,a,b} dy[n, o, a, b] · xpad[n, o // M, a·sh + i, b·sw + j]."""
    xp, O, C = device.xp, w_shape[0], x.shape[1]

    def partial(images):  # the images' part of dw, (O, kh·kw)
        xpad = _channels_last_padded(x[images], padding, O // C, xp)
        g = xp.ascontiguousarray(dy[images].transpose(0, 2, 3, 1))
        return xp.stack(
            [
                (g * xpad[:, rows, cols]).sum(axis=(0, 1, 2))
                for _, rows, cols in _offsets(w_shape, stride, dy.shape[2:])
            ],
            axis=1,
        )

    partials = _for_each_piece(device, partial, parallel.slices(x.shape[0], x.size + dy.size))
    return _sum_in_order(partials, xp.zeros((O, w_shape[2] * w_shape[3]), dtype=x.dtype)).reshape(w_shape)


# ---- the three maps, dispatched on groups, on the current backend ---------------------------


def _is_depthwise(x_shape, groups):
    return groups > 1 and groups == x_shape[1]


def _group_slices(total, groups):
    size = total // groups
    return [slice(g * size, (g + 1) * size) for g in range(groups)]


def _conv2d(x, w, stride, padding, groups, device):
    """y = x ⋆ w.  x: (N, C, H, W), w: (O, C/G, kh, kw) -> (N, O, Ho, Wo)."""
    if groups == 1:
        return _dense_conv2d(x, w, stride, padding, device)
    if _is_depthwise(x.shape, groups):
        return _depthwise_conv2d(x, w, stride, padding, device)
    parts = zip(_group_slices(x.shape[1], groups), _group_slices(w.shape[0], groups))
    return device.xp.concatenate([_dense_conv2d(x[:, c], w[o], stride, padding, device) for c, o in parts], axis=1)


def _conv2d_input_grad(dy, w, x_shape, stride, padding, groups, device):
    """dx = ∂⟨dy, x ⋆ w⟩/∂x.  -> x_shape."""
    if groups == 1:
        return _dense_input_grad(dy, w, x_shape, stride, padding, device)
    if _is_depthwise(x_shape, groups):
        return _depthwise_input_grad(dy, w, x_shape, stride, padding, device)
    N, C, H, W = x_shape
    parts = zip(_group_slices(C, groups), _group_slices(w.shape[0], groups))
    return device.xp.concatenate(
        [_dense_input_grad(dy[:, o], w[o], (N, C // groups, H, W), stride, padding, device) for _, o in parts], axis=1
    )


def _conv2d_weight_grad(x, dy, w_shape, stride, padding, groups, device):
    """dw = ∂⟨dy, x ⋆ w⟩/∂w.  -> w_shape."""
    if groups == 1:
        return _dense_weight_grad(x, dy, w_shape, stride, padding, device)
    if _is_depthwise(x.shape, groups):
        return _depthwise_weight_grad(x, dy, w_shape, stride, padding, device)
    O, Cg, kh, kw = w_shape
    parts = zip(_group_slices(x.shape[1], groups), _group_slices(O, groups))
    return device.xp.concatenate(
        [_dense_weight_grad(x[:, c], dy[:, o], (O // groups, Cg, kh, kw), stride, padding, device) for c, o in parts],
        axis=0,
    )


def _on_backend(kernel, arrays, *args):
    """``kernel(*arrays, *args, device)`` on the current backend: the arrays moved to its device,
    the result back to the host (autograd only ever sees NumPy arrays)."""
    device = backend.current()
    return device.to_host(kernel(*(device.to_device(a) for a in arrays), *args, device))


def conv2d(x, w, stride, padding, groups):
    """y = x ⋆ w.  x: (N, C, H, W), w: (O, C/G, kh, kw) -> (N, O, Ho, Wo)."""
    return _on_backend(_conv2d, (x, w), stride, padding, groups)


def conv2d_input_grad(dy, w, x_shape, stride, padding, groups):
    """dx = ∂⟨dy, x ⋆ w⟩/∂x.  -> x_shape."""
    return _on_backend(_conv2d_input_grad, (dy, w), x_shape, stride, padding, groups)


def conv2d_weight_grad(x, dy, w_shape, stride, padding, groups):
    """dw = ∂⟨dy, x ⋆ w⟩/∂w.  -> w_shape."""
    return _on_backend(_conv2d_weight_grad, (x, dy), w_shape, stride, padding, groups)


def conv2d_vjp_both(x, w, stride, padding, groups, separately):
    """autograd's ``g ↦ (dx, dw)`` when it wants both gradients of ``conv2d(x, w)``: from one
    im2col of g (:func:`both_grads`) for a dense stride-1 k×k convolution at first order (a
    training step), else ``separately(g)``: the two gradient primitives, as a higher-order
    derivative needs them (it traces g, x or w)."""
    if not fusable(w.shape, stride, padding, groups):
        return separately

    def vjp(g):
        if any(isbox(a) for a in (g, x, w)):
            return separately(g)
        device = backend.current()
        dx, dw = both_grads(*(device.to_device(a) for a in (x, w, g)), padding, device)
        return device.to_host(dx), device.to_host(dw)

    return vjp
