"""The convolution as written in textbooks (cs231n): im2col, one GEMM, col2im.

This is the *reference form* of the three convolution primitives of :mod:`minibasis.conv`,
what runs in :func:`minibasis.reference_mode` and what the fast form is tested equal to.
Plain NumPy (the primitives' hand-written VJPs make autograd never trace inside).

A convolution (PyTorch's, a cross-correlation) with ``x: (N, C, H, W)``, ``w: (O, C/G, kh, kw)``,
stride ``(sh, sw)``, zero padding ``(ph, pw)`` and ``G`` groups::

    y[n, o, a, b] = Σ_{c ∈ group of o} Σ_{i,j} w[o, c, i, j] · xpad[n, c, a·sh + i, b·sw + j]

im2col puts the receptive field of every output pixel ``(n, a, b)`` in one row of a matrix
``X_col: (N·Ho·Wo, C·kh·kw)`` (columns in ``(c, i, j)`` order, like ``w.reshape(O, -1)``), so the
convolution is one matrix product per group, ``Y = X_col · Wᵀ``. Its two gradients are the two
other products: ``dW = dYᵀ · X_col`` and ``dX_col = dY · W``, then col2im, the adjoint of
im2col, adds every row of ``dX_col`` back onto the pixels it was copied from.
"""

import numpy as np


def output_size(size, kernel, stride=1, padding=0):
    """The output length of a convolution (or pooling) along one axis: floor((size + 2·padding −
    kernel) / stride) + 1, PyTorch's rule. The one copy of the formula (``minibasis.conv.output_size``)."""
    return (size + 2 * padding - kernel) // stride + 1


def im2col(x, kh, kw, stride, padding):
    """x: (N, C, H, W) -> X_col: (N·Ho·Wo, C·kh·kw), row (n, a, b) = receptive field of pixel (a, b).

    One strided copy per kernel offset ``(i, j)``: column ``(c, i, j)`` of row ``(n, a, b)`` is
    ``xpad[n, c, a·sh + i, b·sw + j]``."""
    (sh, sw), (ph, pw) = stride, padding
    N, C, H, W = x.shape
    Ho, Wo = output_size(H, kh, sh, ph), output_size(W, kw, sw, pw)
    xpad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    cols = np.empty((N, Ho, Wo, C, kh, kw), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            window = xpad[:, :, i : i + sh * Ho : sh, j : j + sw * Wo : sw]  # (N, C, Ho, Wo)
            cols[:, :, :, :, i, j] = window.transpose(0, 2, 3, 1)
    return cols.reshape(N * Ho * Wo, C * kh * kw)


def col2im(cols, x_shape, kh, kw, stride, padding):
    """Adjoint of :func:`im2col`: X_col (N·Ho·Wo, C·kh·kw) -> (N, C, H, W).

    Every entry goes back to the pixel it was copied from; where windows overlap the entries
    are *summed*, which is exactly the chain rule for a value used several times."""
    (sh, sw), (ph, pw) = stride, padding
    N, C, H, W = x_shape
    Ho, Wo = output_size(H, kh, sh, ph), output_size(W, kw, sw, pw)
    cols = cols.reshape(N, Ho, Wo, C, kh, kw)
    xpad = np.zeros((N, C, H + 2 * ph, W + 2 * pw), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            xpad[:, :, i : i + sh * Ho : sh, j : j + sw * Wo : sw] += cols[:, :, :, :, i, j].transpose(0, 3, 1, 2)
    return xpad[:, :, ph : ph + H, pw : pw + W]


def _by_group(matrix, groups):
    """(P, G·K) -> (G, P, K): the columns of each group side by side become a batch of matrices."""
    P, columns = matrix.shape
    return matrix.reshape(P, groups, columns // groups).transpose(1, 0, 2)


def _from_groups(batch):
    """(G, P, K) -> (P, G·K), the inverse of :func:`_by_group`."""
    G, P, K = batch.shape
    return batch.transpose(1, 0, 2).reshape(P, G * K)


def conv2d(x, w, stride, padding, groups):
    """y = x ⋆ w:  Y = X_col · Wᵀ per group.  -> (N, O, Ho, Wo)."""
    N, _, H, W = x.shape
    O, _, kh, kw = w.shape
    Ho, Wo = output_size(H, kh, stride[0], padding[0]), output_size(W, kw, stride[1], padding[1])
    X_col = _by_group(im2col(x, kh, kw, stride, padding), groups)  # (G, N·Ho·Wo, C/G·kh·kw)
    W_mat = w.reshape(groups, O // groups, -1)  # (G, O/G, C/G·kh·kw)
    Y = _from_groups(X_col @ W_mat.transpose(0, 2, 1))  # (N·Ho·Wo, O)
    return Y.reshape(N, Ho, Wo, O).transpose(0, 3, 1, 2)


def _dy_matrix(dy, groups):
    """dy: (N, O, Ho, Wo) -> dY: (G, N·Ho·Wo, O/G), rows ordered like X_col's."""
    N, O = dy.shape[:2]
    return _by_group(dy.transpose(0, 2, 3, 1).reshape(-1, O), groups)


def conv2d_input_grad(dy, w, x_shape, stride, padding, groups):
    """dx = col2im(dY · W): the transposed convolution.  -> (N, C, H, W)."""
    O, _, kh, kw = w.shape
    dX_col = _from_groups(_dy_matrix(dy, groups) @ w.reshape(groups, O // groups, -1))
    return col2im(dX_col, x_shape, kh, kw, stride, padding)


def conv2d_weight_grad(x, dy, w_shape, stride, padding, groups):
    """dw = dYᵀ · X_col per group.  -> (O, C/G, kh, kw)."""
    _, _, kh, kw = w_shape
    X_col = _by_group(im2col(x, kh, kw, stride, padding), groups)
    dW = _dy_matrix(dy, groups).transpose(0, 2, 1) @ X_col  # (G, O/G, C/G·kh·kw)
    return dW.reshape(w_shape)
