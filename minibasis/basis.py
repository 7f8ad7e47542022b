"""Filter bases: the basis layer, the orthogonality loss, orthogonal init, decomposition, folding.

A k×k convolution with C_out filters, ``W ≈ coefficients · basis``, is computed as a k×k
convolution with r basis filters followed by a 1×1 convolution r → C_out (the coefficients).
Several layers may *share* one basis; each may add a few *unique* basis filters of its own
(Kim & Kang, arXiv 2006.05066, Sec. 3).

Compute: the basis layer costs ``H·W·C·r·(k² + 1)`` MACs against ``H·W·C²·k²`` for the conv it
replaces (C_in = C_out = C). For the paper's S16U1 (r = 17 per 16 channels) that is **1.18×
more** compute; only small bases save compute (S8U1: 0.63×). The parameter saving comes from
sharing the basis across layers, not from fewer operations.
"""

import autograd.numpy as anp
import numpy as np

from . import checks, recording
from .conv import conv2d
from .layers import BN_EPS, batch_norm
from .layers import relu as relu_


def stack_basis(unique_basis, shared_basis):
    """[U; S]: the layer's basis, unique elements first (as the authors' ``torch.cat``).

    Either part may be ``None`` (SharedOnly: no unique part; NonShared: no shared part).
    Convolving with the stack is ``concat([U ∗ x, S ∗ x], channels)`` in one GEMM.
    """
    parts = [b for b in (unique_basis, shared_basis) if b is not None]
    if not parts:
        checks.fail("unique_basis, shared_basis", "at least one basis array", "None for both")
    return parts[0] if len(parts) == 1 else anp.concatenate(parts, axis=0)


def basis_conv(x, unique_basis, shared_basis, /, *, stride=1, padding=0, unique_groups=1, shared_groups=1):
    """``[U; S] ∗ x``, the basis conv of a basis layer: ``concat([U ∗ x, S ∗ x], channels)``, unique
    channels first (the authors' ``torch.cat((basis_conv(x), shared_basis(x)), dim=1)``).

    Dense bases (groups 1) are stacked into one conv, one GEMM. Grouped bases (ResNeXt's: U with
    U/4 groups beside S with S/4) cannot be: stacking would regroup their filters; two convs."""
    parts = [(b, g) for b, g in ((unique_basis, unique_groups), (shared_basis, shared_groups)) if b is not None]
    if all(groups == 1 for _, groups in parts):
        basis = stack_basis(unique_basis, shared_basis)  # [U; S]: one conv, one GEMM
        out = conv2d(x, basis, stride=stride, padding=padding)
        outs = anp.split(out, [len(parts[0][0])], axis=1) if recording.active() and len(parts) == 2 else [out]
    else:
        outs = [conv2d(x, b, stride=stride, padding=padding, groups=groups) for b, groups in parts]
        out = anp.concatenate(outs, axis=1)
    for (basis, groups), part in zip(parts, outs):  # the oracle sees the authors' two convs (unique, shared)
        recording.output(basis, part, stride=stride, padding=padding, groups=groups)
    return out


def basis_layer(x, params, state, /, *, train, stride=1, relu=False):
    """One basis layer (Kim & Kang, Sec. 3): the k×k conv with C_out filters ``W ≈ A·[U; S]``
    computed as the basis conv with the r = u + s filters ``[U; S]``, BN over the r channels,
    the 1×1 conv with the coefficients ``A`` (r → C_out), BN: ``BN(A ∗ BN([U; S] ∗ x))``. No
    ReLU between basis and coefficients; ``relu=True`` applies one after the last BN (fused).

    ``x: (N, C, H, W)``. ``params``: ``unique_basis (u, C, k, k)`` or None, ``shared_basis
    (s, C, k, k)`` or None, ``basis_bn`` and ``bn`` (``{"weight", "bias"}``), ``coefficients
    (C_out, u + s, 1, 1)``. ``state``: ``{"basis_bn": …, "bn": …}`` running statistics.
    Returns ``(y: (N, C_out, H', W'), new_state)``.
    """
    kernel = next(b for b in (params["unique_basis"], params["shared_basis"]) if b is not None).shape[-1]
    out = basis_conv(x, params["unique_basis"], params["shared_basis"], stride=stride, padding=kernel // 2)
    out, basis_bn_state = batch_norm(
        out, params["basis_bn"]["weight"], params["basis_bn"]["bias"], state["basis_bn"], train=train
    )
    recording.output(params["basis_bn"]["weight"], out)
    out = conv2d(out, params["coefficients"])
    recording.output(params["coefficients"], out)
    fused = relu and not recording.active()
    out, bn_state = batch_norm(out, params["bn"]["weight"], params["bn"]["bias"], state["bn"], train=train, relu=fused)
    recording.output(params["bn"]["weight"], out)
    out = relu_(out) if relu and not fused else out
    return out, {"basis_bn": basis_bn_state, "bn": bn_state}


def _rows(basis):
    """(r, C, kh, kw) -> (r, C·kh·kw): each basis element flattened to a row."""
    return anp.reshape(basis, (basis.shape[0], -1))


def orthogonality_loss(stages):
    """The authors' CIFAR-10 orthogonality regulariser R (train_cifar10.py's ``train_basis_double``
    and ``train_basis_single``; the paper's orthogonality regularisation, Sec. 3), one global
    mean over the stages.

    ``stages``: a list, one entry per stage g, of ``(shared, unique)``: ``shared`` a list of the
    stage's shared bases (0, 1 or 2 arrays ``(s, C, k, k)``), ``unique`` a list of the unique
    bases of the stage's basis layers, in order. With rows flattened to length C·k·k::

        B_g = [S_g; U_g,1; U_g,2; …],   D_g = (B_g B_gᵀ − I)∘²   (element-wise square)

        R = Σ_g [ Σ_{a ∈ shared rows} Σ_{c ∈ all rows} D_g[a, c]
                  + Σ_layers Σ_{a, a' ∈ that layer's unique rows} D_g[a, a'] ]
            / Σ_g [ m_g·N_g + Σ_layers u_g² ]

    (m_g shared rows, N_g rows in all). It covers shared–shared, shared–unique and
    unique–unique pairs within one layer, never unique rows of different layers; the diagonal
    terms pull every covered row to unit norm. R ≥ 0, and R = 0 exactly when those rows are
    unit-norm and those pairs orthogonal.
    """
    numerator, denominator = 0.0, 0
    for shared, unique in stages:
        shared_rows = [_rows(b) for b in shared if b is not None and b.shape[0] > 0]
        unique_rows = [_rows(b) for b in unique if b is not None and b.shape[0] > 0]
        rows = shared_rows + unique_rows
        if not rows:
            continue
        B = anp.concatenate(rows, axis=0)
        N = B.shape[0]
        D = (anp.dot(B, B.T) - np.eye(N, dtype=B.dtype)) ** 2
        m = sum(r.shape[0] for r in shared_rows)
        numerator = numerator + anp.sum(D[:m])
        denominator += m * N
        start = m
        for u in unique_rows:
            end = start + u.shape[0]
            numerator = numerator + anp.sum(D[start:end, start:end])
            denominator += u.shape[0] ** 2
            start = end
    if denominator == 0:
        checks.fail("stages", "at least one basis row", "none")
    return numerator / denominator


def shared_orthogonality_loss(stages):
    """The shared-only form: train_cifar100.py's ``train_basis``, train_ilsvrc.py's
    ``train_basis_double`` (a stage's two bases stacked) and ``train_basis_single``, and
    train_cifar10.py's ``train_basis_sharedonly``.

    ``stages``: per stage, the list of its shared bases. With S_g their stacked rows
    (m_g of them): ``R = Σ_g ‖S_g S_gᵀ − I‖²_F / Σ_g m_g²``.
    """
    if not any(shared for shared in stages):
        checks.fail("stages", "at least one shared basis", "none")
    # With no unique rows, N_g = m_g and the joint form's Σ_a Σ_c D_g[a, c] is ‖S_g S_gᵀ − I‖²_F.
    return orthogonality_loss([(shared, []) for shared in stages])


def separate_orthogonality_loss(first, second):
    """The authors' ``train_basis_double_separate`` (ResNet50/101-Shared++, MobileNetV2-Shared++):
    the two shared convs of a stage are regularised apart, each kind averaged over the stages,

        R = shared_orthogonality_loss(first) + shared_orthogonality_loss(second),

    ``first``/``second``: per stage, ``[shared_basis_g_1]`` / ``[shared_basis_g_2]``."""
    return shared_orthogonality_loss(first) + shared_orthogonality_loss(second)


def orthogonal(rng, shape, dtype=np.float32):
    """A weight with orthonormal rows (or columns), PyTorch's ``nn.init.orthogonal_`` recipe.

    Flatten to (rows, cols) = (shape[0], ∏ shape[1:]), draw a Gaussian matrix of the taller
    orientation, QR-decompose it, correct the signs by sign(diag R) so the result is uniformly
    (Haar) distributed. With rows ≤ cols (a basis of r ≤ C·k·k filters) the *rows* are
    orthonormal; with more rows than columns (ResNet50-Shared++'s 1×1 expansion, 4C filters of
    C values; MobileNetV2's) no more than ``cols`` rows can be, and the *columns* are.
    """
    rows, cols = shape[0], int(np.prod(shape[1:]))
    gaussian = rng.standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(gaussian)
    q = q * np.sign(np.diag(r))
    return (q.T if rows < cols else q).reshape(shape).astype(dtype)


def orthogonal_bases(rng, count, shape, dtype=np.float32):
    """``count`` bases of ``shape``, jointly orthogonal: one (count·s, C·k·k) orthogonal
    matrix split into ``count`` parts (the authors initialise a stage's two shared bases this way
    in their DoubleShared models). While count·s ≤ C·k·k all rows are orthonormal, so the bases
    are orthogonal to each other too; beyond, only the joint matrix's columns are (as in
    :func:`orthogonal`), and the rows are only nearly orthonormal."""
    joint = orthogonal(rng, (count * shape[0],) + tuple(shape[1:]), dtype)
    return [joint[i * shape[0] : (i + 1) * shape[0]] for i in range(count)]


def decompose(W, rank):
    """W (O, C, kh, kw) ≈ coefficients · basis by truncated SVD of W as (O, C·kh·kw).

    Returns ``basis (rank, C, kh, kw)`` (orthonormal rows: the top right singular vectors) and
    ``coefficients (O, rank, 1, 1)`` (U·Σ). By Eckart–Young this is the best rank-r
    approximation: ‖W − coefficients·basis‖_F = √(Σ_{i>r} σ_i²).
    """
    _check_finite("W", W)
    O = W.shape[0]
    matrix = W.reshape(O, -1)
    if not 1 <= rank <= min(matrix.shape):
        checks.fail("rank", f"1 ≤ rank ≤ {min(matrix.shape)} for W of shape {W.shape}", repr(rank))
    U, sigma, Vt = np.linalg.svd(matrix, full_matrices=False)
    basis = Vt[:rank].reshape((rank,) + W.shape[1:])
    coefficients = (U[:, :rank] * sigma[:rank]).reshape(O, rank, 1, 1)
    return basis, coefficients


def _check_finite(name, a):
    if not np.all(np.isfinite(a)):
        checks.fail(name, "finite values", f"{int(np.sum(~np.isfinite(a)))} NaN/inf entries")


def reconstruct(basis, coefficients):
    """coefficients (O, r, 1, 1) · basis (r, C, kh, kw) -> W (O, C, kh, kw)."""
    r = basis.shape[0]
    return (coefficients.reshape(-1, r) @ basis.reshape(r, -1)).reshape((-1,) + basis.shape[1:])


def shared_decompose(filters, shared_rank, unique_rank):
    """Decompose L layers' filters [W_1 … W_L] (same C, k) into one shared basis + unique parts.

    shared basis S: the top ``shared_rank`` right singular vectors of the stacked filters;
    unique basis U_l: the top ``unique_rank`` right singular vectors of layer l's residual
    W_l (I − SᵀS); coefficients by least squares against the layer's basis [U_l; S] (unique
    first, as the basis layer stacks them). Exact when shared_rank + unique_rank ≥ the rank of
    the stacked filters: the residuals then lie in a subspace of dimension ≤ unique_rank.

    Returns a dict: ``shared_basis (s, C, k, k)``, ``unique_bases`` [(u, C, k, k)],
    ``coefficients`` [(O_l, u + s, 1, 1)], ``relative_errors`` [‖W_l − Ŵ_l‖_F / ‖W_l‖_F].
    """
    if not filters:
        checks.fail("filters", "at least one weight array", "none")
    tail = filters[0].shape[1:]
    for i, W in enumerate(filters):
        if W.ndim != 4 or W.shape[1:] != tail:
            checks.fail(f"filters[{i}]", f"shape (O, {', '.join(map(str, tail))})", f"shape {W.shape}")
    dim = int(np.prod(tail))
    if min(shared_rank, unique_rank) < 0 or not 0 < shared_rank + unique_rank <= dim:
        checks.fail(
            "shared_rank, unique_rank", f"ranks ≥ 0 with 0 < sum ≤ C·kh·kw = {dim}", f"{shared_rank}, {unique_rank}"
        )
    for i, W in enumerate(filters):
        _check_finite(f"filters[{i}]", W)
    mats = [W.reshape(W.shape[0], -1) for W in filters]
    _, _, Vt = np.linalg.svd(np.concatenate(mats), full_matrices=True)
    S, complement = Vt[:shared_rank], Vt[shared_rank:]  # orthonormal bases of span(S) and S⊥
    result = {
        "shared_basis": S.reshape((shared_rank,) + tail),
        "unique_bases": [],
        "coefficients": [],
        "relative_errors": [],
    }
    for M in mats:
        # The residual W_l (I − SᵀS) in coordinates of S⊥: its top right singular vectors,
        # mapped back, are orthogonal to S even when the residual has rank < unique_rank.
        _, _, Vt_l = np.linalg.svd(M @ complement.T, full_matrices=True)
        U = Vt_l[:unique_rank] @ complement
        B = np.concatenate([U, S])
        coefficients = np.linalg.lstsq(B.T, M.T, rcond=None)[0].T  # M ≈ coefficients · B
        result["unique_bases"].append(U.reshape((unique_rank,) + tail))
        result["coefficients"].append(coefficients.reshape(M.shape[0], -1, 1, 1))
        result["relative_errors"].append(float(np.linalg.norm(M - coefficients @ B) / max(np.linalg.norm(M), 1e-300)))
    return result


def fold_basis_layer(params, state, eps=BN_EPS):
    """An eval-mode basis layer as one k×k conv with a bias: returns ``(W_eff, b_eff)``.

    With BN in eval mode an affine map per channel, a_i = γ_i / √(v_i + ε), and A the
    coefficients as an (O, r) matrix:
        BN₁(B ∗ x) = (diag(a₁) B) ∗ x + (β₁ − a₁μ₁)
        y = BN₂(A · BN₁(B ∗ x)),  so
        W_eff = diag(a₂) · A · diag(a₁) · B,   b_eff = a₂ ⊙ (A (β₁ − a₁μ₁) − μ₂) + β₂,
    and ``conv2d(x, W_eff) + b_eff`` equals the layer (the BN shift is added at every output
    pixel, padded or not, exactly as the folded bias is).
    """
    basis = np.asarray(stack_basis(params["unique_basis"], params["shared_basis"]))
    r = basis.shape[0]
    a1 = params["basis_bn"]["weight"] / np.sqrt(state["basis_bn"]["running_var"] + eps)
    c1 = params["basis_bn"]["bias"] - a1 * state["basis_bn"]["running_mean"]
    a2 = params["bn"]["weight"] / np.sqrt(state["bn"]["running_var"] + eps)
    A = params["coefficients"].reshape(-1, r)
    W_eff = ((a2[:, None] * A * a1[None, :]) @ basis.reshape(r, -1)).reshape((A.shape[0],) + basis.shape[1:])
    b_eff = a2 * (A @ c1 - state["bn"]["running_mean"]) + params["bn"]["bias"]
    return W_eff, b_eff


# ---- counting -------------------------------------------------------------------------------


def conv_params(c_in, c_out, kh, kw, groups=1):
    """Weights of a bias-free conv: C_out·(C_in/groups)·kh·kw."""
    return c_out * (c_in // groups) * kh * kw


def conv_macs(h_out, w_out, c_in, c_out, kh, kw, groups=1):
    """Multiply-accumulates of a conv: H_out·W_out·C_out·(C_in/groups)·kh·kw."""
    return h_out * w_out * conv_params(c_in, c_out, kh, kw, groups)


def basis_layer_params(c_in, c_out, unique_rank, shared_rank, k=3):
    """Parameters a basis layer owns: its unique basis, both BNs' affine weights and the
    coefficients. The shared basis (shared_rank·C_in·k²) is counted once per model, not here."""
    r = unique_rank + shared_rank
    return conv_params(c_in, unique_rank, k, k) + 2 * r + conv_params(r, c_out, 1, 1) + 2 * c_out


def basis_layer_macs(h_out, w_out, c_in, c_out, rank, k=3):
    """MACs of a basis layer: the k×k basis conv (r filters) plus the 1×1 coefficients,
    H·W·r·(C_in·k² + C_out). For C_in = C_out = C that is H·W·C·r·(k² + 1) against
    H·W·C²·k² for a plain conv: S16U1 (r/C = 17/16) costs 1.18× more, S8U1 0.63×."""
    return conv_macs(h_out, w_out, c_in, rank, k, k) + conv_macs(h_out, w_out, rank, c_out, 1, 1)
