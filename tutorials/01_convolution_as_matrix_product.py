# %% [markdown]
# # 01 · Convolution as a matrix product
#
# **What this teaches.** A convolution layer is one matrix product in disguise. We write the
# convolution of a ConvNet three ways and check that they agree to 1e-10 in float64:
#
# 1. the definition, as nested loops;
# 2. **im2col + GEMM**: copy every receptive field into a row of a matrix (im2col), then
#    multiply by the filters, flattened to a matrix (one GEMM, "general matrix multiply");
# 3. `minibasis.conv2d`, the library's primitive, which is (2) done carefully.
#
# Then we look at the im2col matrix of a tiny input, and meet its *adjoint* col2im, which sums
# overlapping patches back into an image. col2im is what the backward pass of a convolution
# is made of (tutorial 02), and the matrix view, "filters are rows of a matrix", is where the
# paper's filter bases come from (tutorials 03 and 04): a filter basis is a set of rows whose
# span contains the layer's filters (Kim & Kang, arXiv 2006.05066, Sec. 3).
#
# **Time.** Full mode about 3 s on a 2-core laptop (most of it in the Python loops);
# `MINIBASIS_FAST=1` about 1 s.
# Output: `01_im2col_matrix.png` and its plotted data (`.json`) in `MINIBASIS_FIGURES` (a temporary
# folder unless given; the committed figure: `MINIBASIS_FIGURES=tutorials/figures`, full mode).

# %%
import time

import numpy as np

from minibasis import col2im, conv2d, im2col
from tutorial_setup import FAST, plt, save_figure  # this checkout's minibasis, the mode, the paths

START = time.perf_counter()
rng = np.random.default_rng(0)
print(f"mode: {'FAST' if FAST else 'full'}")


def pair(v):
    """int or (int, int) -> (int, int)."""
    return (v, v) if isinstance(v, int) else tuple(v)


# %% [markdown]
# ## 1. The definition
#
# Layouts are PyTorch's: a batch of images x has shape (N, C, H, W): N images, C channels,
# H × W pixels. A layer has O filters, each a C × k_h × k_w block of weights; stacked they form
# w of shape (O, C, k_h, k_w). With stride s and zero padding p (both per axis), the output
# y = x ⋆ w has shape (N, O, H_o, W_o) and
#
#     y[n, o, a, b] = Σ_c Σ_i Σ_j  w[o, c, i, j] · x_pad[n, c, s_h·a + i, s_w·b + j],
#
# where x_pad is x with p zeros added on each side. (This is a cross-correlation: the kernel is
# not flipped. Deep-learning libraries call it convolution anyway, and so do we.)
#
# How many outputs fit along one axis? The window starts at 0, s, 2s, …; the last start t must
# leave room for the kernel, t + k ≤ H + 2p. So the starts are 0, s, …, s·⌊(H + 2p − k)/s⌋:
#
#     H_o = ⌊(H + 2p − k) / s⌋ + 1.
#
# With k = 3, p = 1, s = 1 the size is kept ("same" padding); s = 2 halves it (rounding up).
# The loop below does not use the formula: it tries every start and keeps those that fit,
# so comparing its output shape with the formula checks the formula.
#
# Seven indices appear in the sum. We loop over six of them and let NumPy handle the batch
# index n: the naive convolution.


# %%
def conv_naive(x, w, stride=1, padding=0):
    """The definition, six nested loops (o, a, b, c, i, j); vectorised over the batch only."""
    (sh, sw), (ph, pw) = pair(stride), pair(padding)
    N, C, H, W = x.shape
    O, _, kh, kw = w.shape
    xp = np.zeros((N, C, H + 2 * ph, W + 2 * pw), dtype=x.dtype)
    xp[:, :, ph : ph + H, pw : pw + W] = x
    rows = [a for a in range(xp.shape[2]) if a * sh + kh <= xp.shape[2]]  # window starts that fit
    cols = [b for b in range(xp.shape[3]) if b * sw + kw <= xp.shape[3]]
    y = np.zeros((N, O, len(rows), len(cols)), dtype=x.dtype)
    for o in range(O):
        for a in rows:
            for b in cols:
                for c in range(C):
                    for i in range(kh):
                        for j in range(kw):
                            y[:, o, a, b] += w[o, c, i, j] * xp[:, c, a * sh + i, b * sw + j]
    return y


def out_size(size, k, s, p):
    return (size + 2 * p - k) // s + 1


x = rng.standard_normal((2, 3, 7, 6))
w = rng.standard_normal((4, 3, 3, 3))
y = conv_naive(x, w, stride=2, padding=1)
print("x", x.shape, "⋆ w", w.shape, "stride 2, padding 1 ->", y.shape)
assert y.shape == (2, 4, out_size(7, 3, 2, 1), out_size(6, 3, 2, 1)) == (2, 4, 4, 3), (
    f"the output-size formula ⌊(H + 2p − k)/s⌋ + 1 disagrees with the loops: {y.shape}"
)

# %% [markdown]
# The formula, checked on many sizes at once: against the windows that fit (counted by brute
# force) and against the shape `minibasis.conv2d` returns.

# %%
checked = 0
for size in range(3, 12):
    for k in (1, 2, 3, 5):
        for s in (1, 2, 3):
            for p in (0, 1, 2):
                if k > size + 2 * p:
                    continue
                fits = sum(1 for t in range(size + 2 * p) if t % s == 0 and t + k <= size + 2 * p)
                got = conv2d(np.zeros((1, 1, size, size)), np.zeros((1, 1, k, k)), stride=s, padding=p).shape[2]
                assert fits == out_size(size, k, s, p) == got, (
                    f"H={size}, k={k}, s={s}, p={p}: brute force {fits}, "
                    f"formula {out_size(size, k, s, p)}, conv2d {got}"
                )
                checked += 1
print(f"output-size formula checked on {checked} (H, k, s, p) combinations")

# %% [markdown]
# ## 2. im2col: every receptive field becomes a row
#
# Look at the sum again. For a fixed output pixel (n, a, b), the numbers x_pad[n, c, s·a + i,
# s·b + j] over all (c, i, j) form the *receptive field* of that pixel: a C × k_h × k_w block of
# the input. Flatten it into a row vector of length K = C·k_h·k_w. Flatten each filter
# w[o] the same way, into a row of the matrix W_mat of shape (O, K). Then y[n, o, a, b] is the
# dot product of the two rows. Collect all N·H_o·W_o receptive fields as the rows of one
# matrix X_col (shape (N·H_o·W_o, K)), and *all* outputs are one matrix product:
#
#     Y_mat = X_col · W_matᵀ,      shape (N·H_o·W_o, O),
#
# which is reshaped to (N, H_o, W_o, O) and transposed to (N, O, H_o, W_o). Building X_col is
# called **im2col** ("image to columns"; our rows are its columns, a matter of convention).
#
# The cost is all in one GEMM of N·H_o·W_o × K × O multiply-accumulates, the same count as the
# loops, but done by a tuned BLAS instead of the Python interpreter. The price is memory:
# each input pixel is copied into up to k_h·k_w rows, so X_col is about k² times larger than x
# (exactly k² for stride 1 and "same" padding).
#
# im2col from scratch: for each kernel offset (i, j), the pixels x_pad[:, :, s·a + i, s·b + j]
# over all (a, b) are one strided slice of x_pad. So im2col is k_h·k_w slice copies, not
# N·H_o·W_o small ones.


# %%
def im2col_scratch(x, kernel_size, stride=1, padding=0):
    """(N, C, H, W) -> (N·Ho·Wo, C·kh·kw); row (n, a, b) = receptive field of (a, b), in (c, i, j) order."""
    (kh, kw), (sh, sw), (ph, pw) = pair(kernel_size), pair(stride), pair(padding)
    N, C, H, W = x.shape
    Ho, Wo = out_size(H, kh, sh, ph), out_size(W, kw, sw, pw)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    cols = np.empty((N, Ho, Wo, C, kh, kw), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            # output pixel (a, b) at kernel offset (i, j) reads xp[..., sh·a + i, sw·b + j]
            patch = xp[:, :, i : i + sh * (Ho - 1) + 1 : sh, j : j + sw * (Wo - 1) + 1 : sw]  # (N, C, Ho, Wo)
            cols[:, :, :, :, i, j] = patch.transpose(0, 2, 3, 1)
    return cols.reshape(N * Ho * Wo, C * kh * kw)


def conv_gemm(x, w, stride=1, padding=0, im2col_fn=im2col_scratch):
    """im2col, one GEMM, reshape: the convolution as a matrix product."""
    (sh, sw), (ph, pw) = pair(stride), pair(padding)
    N, _, H, W = x.shape
    O, _, kh, kw = w.shape
    if im2col_fn is im2col:
        X_col = im2col(x, kernel_size=(kh, kw), stride=stride, padding=padding)
    else:
        X_col = im2col_fn(x, (kh, kw), stride, padding)
    Y = X_col @ w.reshape(O, -1).T  # (N·Ho·Wo, K) @ (K, O): the GEMM
    Ho, Wo = out_size(H, kh, sh, ph), out_size(W, kw, sw, pw)
    return Y.reshape(N, Ho, Wo, O).transpose(0, 3, 1, 2)


# %% [markdown]
# Now all four computations (loops; our im2col + GEMM; `minibasis.im2col` + GEMM;
# `minibasis.conv2d`) on a range of shapes, strides and paddings, including rectangular
# kernels and different strides per axis. float64 throughout, so 1e-10 is a strict test:
# the four differ only in the order of the additions.

# %%
configs = [
    # (x shape, w shape, stride, padding)
    ((2, 3, 7, 6), (4, 3, 3, 3), 1, 0),
    ((2, 3, 7, 6), (4, 3, 3, 3), 1, 1),
    ((2, 3, 7, 6), (4, 3, 3, 3), 2, 1),
    ((1, 2, 8, 8), (3, 2, 3, 3), 2, 0),
    ((1, 2, 9, 7), (5, 2, 1, 1), 1, 0),
    ((2, 1, 6, 9), (2, 1, 2, 4), (2, 1), (0, 2)),
    ((1, 4, 5, 5), (3, 4, 5, 5), 3, 2),
]
if not FAST:
    configs += [
        ((4, 8, 12, 12), (16, 8, 3, 3), 1, 1),
        ((3, 16, 10, 10), (8, 16, 3, 3), 2, 1),
        ((2, 3, 11, 13), (6, 3, 5, 3), (3, 2), (2, 1)),
    ]
for xs, ws, s, p in configs:
    x = rng.standard_normal(xs)
    w = rng.standard_normal(ws)
    y_loops = conv_naive(x, w, s, p)
    y_ours = conv_gemm(x, w, s, p)
    y_lib_cols = conv_gemm(x, w, s, p, im2col_fn=im2col)
    y_lib = conv2d(x, w, stride=s, padding=p)
    scale = np.abs(y_loops).max()
    for name, y in (
        ("our im2col + GEMM", y_ours),
        ("minibasis.im2col + GEMM", y_lib_cols),
        ("minibasis.conv2d", y_lib),
    ):
        assert y.shape == y_loops.shape, f"{name}: shape {y.shape}, loops {y_loops.shape}"
        err = np.abs(y - y_loops).max() / scale
        assert err < 1e-10, f"{name} disagrees with the loops by {err:.2e} for x {xs}, w {ws}, stride {s}, padding {p}"
    kh, kw = ws[2:]
    assert np.array_equal(im2col_scratch(x, (kh, kw), s, p), im2col(x, kernel_size=(kh, kw), stride=s, padding=p)), (
        f"our im2col and minibasis.im2col build different matrices for x {xs}, w {ws}, stride {s}, padding {p}"
    )
print(f"loops = im2col + GEMM = minibasis.im2col + GEMM = minibasis.conv2d on {len(configs)} configurations (1e-10)")

# %% [markdown]
# The two im2col matrices are not just close but *identical*: im2col only copies numbers.
#
# The memory price, checked: for stride 1 and "same" padding the im2col matrix holds exactly
# k_h·k_w times as many numbers as the input; with stride 2 about four times fewer.

# %%
x = rng.standard_normal((2, 8, 16, 16))
for k, s in ((3, 1), (5, 1), (3, 2)):
    X_col = im2col(x, kernel_size=k, stride=s, padding=k // 2)
    ratio = X_col.size / x.size
    print(f"k = {k}, stride {s}: im2col holds {ratio:.2f}× the numbers of x")
    if s == 1:
        assert X_col.size == k * k * x.size, f"expected k² = {k * k}× the input, got {ratio}×"
    else:
        assert X_col.size == k * k * x.size // (s * s), f"expected k²/s² = {k * k / s**2}× the input, got {ratio}×"

# %% [markdown]
# And the speed. The loops run the same arithmetic as the GEMM; the difference is who runs it.

# %%
x = rng.standard_normal((2, 4, 8, 8) if FAST else (8, 16, 16, 16))
w = rng.standard_normal((x.shape[1], x.shape[1], 3, 3))


def best_of(f, repeat=3):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return min(times)


t_loops = best_of(lambda: conv_naive(x, w, 1, 1), repeat=1)
t_ours = best_of(lambda: conv_gemm(x, w, 1, 1))
t_lib = best_of(lambda: conv2d(x, w, padding=1))
print(
    f"x {x.shape}, w {w.shape}: loops {t_loops * 1e3:.0f} ms, our im2col + GEMM {t_ours * 1e3:.1f} ms, "
    f"minibasis.conv2d {t_lib * 1e3:.1f} ms"
)
if not FAST:
    assert t_lib * 10 < t_loops, (
        f"expected conv2d to beat the Python loops by 10× at least: {t_lib:.3f} s vs {t_loops:.3f} s"
    )

# %% [markdown]
# `minibasis.conv2d` has two forms. Its *reference form* (`minibasis/conv_reference.py`, run
# under `minibasis.reference_mode()`) is exactly `conv_gemm` above: one strided copy per kernel
# offset, then one GEMM. Its *fast form* (`minibasis/conv_fast.py`, the default) uses the same
# idea with two refinements: it flattens each padded channel to one long vector, so that the
# im2col row of offset (i, j) is a *single* slice of that vector (the "flat shift"), and it
# processes images in chunks small enough for the im2col block to stay in cache, on all cores.
#
# ## 3. A picture of the im2col matrix
#
# One image, C = 2 channels of 3 × 3 pixels, numbered 1 … 18 so that every entry of the matrix
# says which pixel it copies; a 3 × 3 kernel with padding 1. There are H_o·W_o = 9 output pixels
# (rows) and K = C·3·3 = 18 weights per filter (columns). The zeros are the padding.

# %%
C, H, W, k = 2, 3, 3, 3
x_tiny = np.arange(1, C * H * W + 1, dtype=np.float64).reshape(1, C, H, W)
X_col = im2col(x_tiny, kernel_size=k, padding=1)
print("im2col of pixels numbered 1 … 18 (rows: output pixel (a, b); columns: weight (c, i, j)):")
print(X_col.astype(int))
assert X_col.shape == (H * W, C * k * k), f"expected ({H * W}, {C * k * k}), got {X_col.shape}"
# the centre column (c, i, j) = (c, 1, 1) of each channel is that channel itself, in raster order
for c in range(C):
    centre = c * k * k + (k // 2) * k + k // 2
    assert np.array_equal(X_col[:, centre], x_tiny[0, c].ravel()), f"column (c={c}, 1, 1) should be channel {c}"
# the centre output pixel (1, 1) sees the whole unpadded image: its row is x itself
assert np.array_equal(X_col[4], x_tiny.ravel()), "the row of the centre pixel should hold all 18 input pixels"
# every pixel is copied into as many rows as there are windows covering it: 4 (corner) … 9 (centre)
copies = [int(np.sum(X_col == v)) for v in range(1, C * H * W + 1)]
print("copies of each pixel:", copies)
assert np.array_equal(np.array(copies).reshape(C, H, W)[0], [[4, 6, 4], [6, 9, 6], [4, 6, 4]]), copies

if plt is not None:

    def text_color(v):
        return "0.5" if v == 0 else ("white" if v > 11 else "black")

    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10.5, 3.8), gridspec_kw={"width_ratios": [1, 2.6]})
    # left: the input, channels side by side with the zero padding shown
    shown = np.zeros((H + 2, 2 * (W + 2) + 1))
    shown[:, W + 2] = np.nan
    for c in range(C):
        shown[1 : 1 + H, c * (W + 3) + 1 : c * (W + 3) + 1 + W] = x_tiny[0, c]
    ax0.imshow(shown, cmap="Blues", vmin=-4, vmax=C * H * W)
    for (r, q), v in np.ndenumerate(shown):
        if not np.isnan(v):
            ax0.text(q, r, f"{int(v)}", ha="center", va="center", fontsize=8, color=text_color(v))
    for c in range(C):
        ax0.add_patch(plt.Rectangle((c * (W + 3) - 0.5, -0.5), k, k, fill=False, lw=2, color="tab:red"))
    ax0.set_title("x padded: channel 0 | channel 1\n(red: window of output pixel (0, 0))", fontsize=9)
    ax0.set_xticks([])
    ax0.set_yticks([])
    # right: the im2col matrix
    ax1.imshow(X_col, cmap="Blues", vmin=-4, vmax=C * H * W, aspect="auto")
    for (r, q), v in np.ndenumerate(X_col):
        ax1.text(q, r, f"{int(v)}", ha="center", va="center", fontsize=7, color=text_color(v))
    ax1.add_patch(plt.Rectangle((-0.5, -0.5), C * k * k, 1, fill=False, lw=2, color="tab:red"))
    ax1.set_yticks(range(H * W))
    ax1.set_yticklabels([f"({a},{b})" for a in range(H) for b in range(W)], fontsize=7)
    ax1.set_xticks(range(C * k * k))
    ax1.set_xticklabels([f"{c}{i}{j}" for c in range(C) for i in range(k) for j in range(k)], fontsize=7)
    ax1.axvline(k * k - 0.5, color="k", lw=1)
    ax1.set_ylabel("output pixel (a, b)")
    ax1.set_xlabel("weight index (c, i, j)")
    ax1.set_title("im2col(x): one row per output pixel, one column per filter weight", fontsize=9)
    fig.tight_layout()
    save_figure(fig, "01_im2col_matrix.png", {"x": x_tiny, "im2col": X_col})

# %% [markdown]
# Multiply this matrix by a filter flattened in the same (c, i, j) order and each row gives one
# output pixel. Each number appears several times: pixel 5 (the centre of channel 0) is in all
# 9 rows, pixel 1 (a corner) in 4. That duplication is the memory price from section 2.
#
# ## 4. col2im, the adjoint of im2col
#
# im2col is a *linear* map from images to matrices, A: ℝ^{N·C·H·W} → ℝ^{(N·H_o·W_o) × K}. Each
# entry of its output is a copy of one input pixel or a padding zero, so in a basis A is a 0/1
# matrix with at most one 1 per row. Its adjoint Aᵀ (col2im) is defined by
#
#     ⟨A x, c⟩ = ⟨x, Aᵀ c⟩      for all images x and matrices c,
#
# with ⟨·,·⟩ the sum of element-wise products. Write out the left side: every entry c[r, q]
# meets the pixel that A copied into position (r, q), so the right side collects, for each
# pixel, the sum of the c entries that A copied it into. That is col2im: **scatter each row of
# c back to the window it came from, adding up where windows overlap**, and drop what lands on
# the padding. The sum is not a design choice; it is forced by the adjoint. A pixel copied into
# m places receives the sum of those m entries, just as the derivative of a variable used m
# times is the sum of m partial derivatives. That is why col2im appears in the backward pass
# (tutorial 02).
#
# col2im is *not* the inverse of im2col: col2im(im2col(x)) = x ⊙ m, where m counts the windows
# covering each pixel. When the windows do not overlap (stride = kernel size, no padding), A
# only permutes the pixels, and col2im is its inverse.


# %%
def col2im_scratch(cols, x_shape, kernel_size, stride=1, padding=0):
    """Adjoint of im2col_scratch: scatter-add every row back to its window."""
    (kh, kw), (sh, sw), (ph, pw) = pair(kernel_size), pair(stride), pair(padding)
    N, C, H, W = x_shape
    Ho, Wo = out_size(H, kh, sh, ph), out_size(W, kw, sw, pw)
    cols = cols.reshape(N, Ho, Wo, C, kh, kw)
    xp = np.zeros((N, C, H + 2 * ph, W + 2 * pw), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            xp[:, :, i : i + sh * (Ho - 1) + 1 : sh, j : j + sw * (Wo - 1) + 1 : sw] += cols[
                :, :, :, :, i, j
            ].transpose(0, 3, 1, 2)
    return xp[:, :, ph : ph + H, pw : pw + W]


for xs, ks, s, p in [
    ((2, 3, 7, 6), 3, 1, 1),
    ((2, 3, 7, 6), 3, 2, 1),
    ((1, 2, 9, 8), (2, 3), (2, 1), (1, 0)),
    ((3, 1, 5, 5), 5, 1, 2),
]:
    x = rng.standard_normal(xs)
    cols = im2col(x, kernel_size=ks, stride=s, padding=p)
    c = rng.standard_normal(cols.shape)
    lhs = np.sum(cols * c)
    rhs = np.sum(x * col2im(c, x_shape=xs, kernel_size=ks, stride=s, padding=p))
    assert abs(lhs - rhs) <= 1e-10 * (abs(lhs) + 1), (
        f"⟨im2col(x), c⟩ = {lhs} but ⟨x, col2im(c)⟩ = {rhs} for x {xs}, k {ks}, s {s}, p {p}"
    )
    ours = col2im_scratch(c, xs, ks, s, p)
    assert np.allclose(ours, col2im(c, x_shape=xs, kernel_size=ks, stride=s, padding=p), rtol=0, atol=1e-12), (
        f"our scatter-add col2im and minibasis.col2im disagree for x {xs}, k {ks}, s {s}, p {p}"
    )
print("⟨im2col(x), c⟩ = ⟨x, col2im(c)⟩ for random x, c, and our col2im = minibasis.col2im")

# %% [markdown]
# The same statement as matrices: build A column by column by applying im2col to each unit
# image e_m (one pixel 1, the rest 0), build B the same way from col2im applied to each unit
# matrix, and check B = Aᵀ. Small sizes only: A has (N·H_o·W_o·K) × (N·C·H·W) entries.

# %%
xs, k, s, p = (1, 2, 4, 4), 3, 1, 1
n_in = int(np.prod(xs))
A = np.stack(
    [im2col(np.eye(n_in)[m].reshape(xs), kernel_size=k, stride=s, padding=p).ravel() for m in range(n_in)], axis=1
)
n_out = A.shape[0]
cols_shape = (xs[0] * out_size(xs[2], k, s, p) * out_size(xs[3], k, s, p), xs[1] * k * k)
B = np.stack(
    [
        col2im(np.eye(n_out)[q].reshape(cols_shape), x_shape=xs, kernel_size=k, stride=s, padding=p).ravel()
        for q in range(n_out)
    ],
    axis=1,
)
print(
    f"im2col as a matrix: {A.shape}, entries in {{{', '.join(map(str, np.unique(A).astype(int)))}}}; "
    f"col2im as a matrix: {B.shape}"
)
assert set(np.unique(A)) <= {0.0, 1.0} and (A.sum(axis=1) <= 1).all(), (
    "im2col should be a 0/1 matrix with at most one 1 per row"
)
assert np.array_equal(B, A.T), "col2im should be exactly the transpose of im2col"
# Aᵀ A is diagonal: its diagonal is the number of windows covering each pixel
multiplicity = col2im(im2col(np.ones(xs), kernel_size=k, padding=p), x_shape=xs, kernel_size=k, padding=p)
assert np.array_equal(A.T @ A, np.diag(multiplicity.ravel())), "AᵀA should be diag(window counts)"
print("window counts m (channel 0):\n", multiplicity[0, 0].astype(int))
assert np.array_equal(multiplicity[0, 0], [[4, 6, 6, 4], [6, 9, 9, 6], [6, 9, 9, 6], [4, 6, 6, 4]]), multiplicity[0, 0]

x = rng.standard_normal((2, 3, 6, 6))
roundtrip = col2im(im2col(x, kernel_size=3, padding=1), x_shape=x.shape, kernel_size=3, padding=1)
counts = col2im(im2col(np.ones_like(x), kernel_size=3, padding=1), x_shape=x.shape, kernel_size=3, padding=1)
assert np.allclose(roundtrip, x * counts, rtol=1e-12, atol=0), "col2im(im2col(x)) should be x times the window counts"
x = rng.standard_normal((2, 3, 6, 8))
assert np.array_equal(col2im(im2col(x, kernel_size=2, stride=2), x_shape=x.shape, kernel_size=2, stride=2), x), (
    "with non-overlapping windows (stride = kernel), col2im should invert im2col"
)
print("col2im(im2col(x)) = x ⊙ (window counts); = x exactly when the windows do not overlap")

# %% [markdown]
# ## Summary
#
# * A convolution is y = X_col · W_matᵀ: receptive fields as rows (im2col) times filters as
#   rows (W_mat, shape O × C·k²). Loops, im2col + GEMM and `minibasis.conv2d` agree to 1e-10.
# * H_o = ⌊(H + 2p − k)/s⌋ + 1; im2col costs k² times the memory of the input at stride 1.
# * col2im is the transpose of im2col, not its inverse: it scatters rows back and *sums* where
#   windows overlap, because a pixel used m times collects m contributions.
# * Tutorial 02 differentiates the convolution and finds im2col and col2im again; tutorial 03
#   looks at the rows of W_mat of a trained network and finds that far fewer than O directions
#   matter, which is what a filter basis exploits.

# %%
print(f"done in {time.perf_counter() - START:.1f} s")
