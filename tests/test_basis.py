"""Filter bases: the orthogonality losses, orthogonal init, (shared) decomposition, the basis
layer against a two-conv reference, folding, and the MAC / parameter counts."""

from fractions import Fraction

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from minibasis.basis import (
    basis_layer,
    basis_layer_macs,
    basis_layer_params,
    conv_macs,
    conv_params,
    decompose,
    fold_basis_layer,
    orthogonal,
    orthogonal_bases,
    orthogonality_loss,
    reconstruct,
    shared_decompose,
    shared_orthogonality_loss,
)
from minibasis.conv import conv2d
from minibasis.layers import batch_norm
from minibasis.testing import check_gradients

pytestmark = pytest.mark.reference  # also run with MINIBASIS_REFERENCE=1 (see README)

seeds = st.integers(0, 2**32 - 1)


def random_orthonormal_rows(rng, rows, cols):
    """(rows, cols) with orthonormal rows, from numpy's QR (independent of minibasis.orthogonal)."""
    q, _ = np.linalg.qr(rng.standard_normal((cols, cols)))
    return q[:, :rows].T.copy()


# ---- orthogonality losses -------------------------------------------------------------------


@st.composite
def stage_layouts(draw, max_stages=3):
    """Per stage: C, k, the row counts of its 0–2 shared bases (s each) and of its 0–4 layers'
    unique bases (u_l ≥ 0 each). C is raised so C·k·k holds all the stage's rows (so the same
    layout can also be filled with orthonormal rows)."""
    layout = []
    for _ in range(draw(st.integers(1, max_stages))):
        k = draw(st.sampled_from([1, 3]))
        s = draw(st.integers(1, 3))
        shared = [s] * draw(st.integers(0, 2))
        unique = draw(st.lists(st.integers(0, 3), min_size=0, max_size=4))
        rows = sum(shared) + sum(unique)
        C = max(draw(st.integers(1, 3)), -(-rows // (k * k)))
        layout.append(dict(C=C, k=k, shared=shared, unique=unique))
    return layout


def total_rows(layout):
    return sum(sum(g["shared"]) + sum(g["unique"]) for g in layout)


def random_stages(layout, rng):
    return [
        (
            [rng.standard_normal((s, g["C"], g["k"], g["k"])) for s in g["shared"]],
            [rng.standard_normal((u, g["C"], g["k"], g["k"])) for u in g["unique"]],
        )
        for g in layout
    ]


def orthonormal_stages(layout, rng):
    """Each stage's rows are rows of one random orthogonal matrix, split among its bases."""
    stages = []
    for g in layout:
        C, k = g["C"], g["k"]
        Q = random_orthonormal_rows(rng, sum(g["shared"]) + sum(g["unique"]), C * k * k)
        parts, start = [], 0
        for n in g["shared"] + g["unique"]:
            parts.append(Q[start : start + n].reshape(n, C, k, k))
            start += n
        stages.append((parts[: len(g["shared"])], parts[len(g["shared"]) :]))
    return stages


def flat(basis):
    """(r, C, k, k) -> (r, C·k·k), also for r = 0."""
    return np.asarray(basis).reshape(basis.shape[0], int(np.prod(basis.shape[1:])))


def reference_orthogonality_loss(stages):
    """R by a double loop over pairs of rows (a, c) of each stage: D[a, c] = (⟨b_a, b_c⟩ − δ_ac)²
    counts when a is a shared row (any c), or a and c are unique rows of the same layer."""
    numerator, denominator = 0.0, 0
    for shared, unique in stages:
        rows = []  # (vector, layer): layer None for shared rows
        for basis in shared:
            rows += [(row, None) for row in flat(basis)]
        for layer, basis in enumerate(unique):
            if basis is not None:
                rows += [(row, layer) for row in flat(basis)]
        m = sum(1 for _, layer in rows if layer is None)
        N = len(rows)
        unique_sq = sum(b.shape[0] ** 2 for b in unique if b is not None)
        denominator += m * N + unique_sq
        for a, (va, la) in enumerate(rows):
            for c, (vc, lc) in enumerate(rows):
                if la is None or (lc is not None and la == lc):
                    numerator += (float(np.dot(va, vc)) - (1.0 if a == c else 0.0)) ** 2
    return numerator / denominator


@given(stage_layouts(), seeds)
def test_orthogonality_loss_equals_double_loop_reference(layout, seed):
    assume(total_rows(layout) > 0)
    stages = random_stages(layout, np.random.default_rng(seed))
    R = orthogonality_loss(stages)
    assert R >= 0
    expected = reference_orthogonality_loss(stages)
    assert R == pytest.approx(expected, rel=1e-12)


@given(stage_layouts(), seeds)
def test_orthogonality_loss_is_zero_on_orthonormal_rows(layout, seed):
    assume(total_rows(layout) > 0)
    R = orthogonality_loss(orthonormal_stages(layout, np.random.default_rng(seed)))
    assert abs(R) <= 1e-12


def covered_pairs(layout):
    """[(stage, (part, row), (part, row), weight)] for pairs of distinct covered rows, with
    ``weight`` how many times D[a, c] / D[c, a] enter R (2: shared–shared or same layer's
    unique–unique; 1: shared–unique). Parts index shared + unique bases of the stage."""
    pairs = []
    for g_index, g in enumerate(layout):
        sizes = g["shared"] + g["unique"]
        n_shared = len(g["shared"])
        rows = [(p, r) for p, n in enumerate(sizes) for r in range(n)]
        for i, a in enumerate(rows):
            for c in rows[i + 1 :]:
                a_shared, c_shared = a[0] < n_shared, c[0] < n_shared
                if a_shared and c_shared:
                    pairs.append((g_index, a, c, 2))
                elif a_shared or c_shared:
                    pairs.append((g_index, a, c, 1))
                elif a[0] == c[0]:
                    pairs.append((g_index, a, c, 2))
    return pairs


def loss_denominator(layout):
    return sum(
        sum(g["shared"]) * (sum(g["shared"]) + sum(g["unique"])) + sum(u * u for u in g["unique"]) for g in layout
    )


def part(stages, g, p):
    """The p-th basis of stage g (shared ones first, then unique ones)."""
    shared, unique = stages[g]
    return shared[p] if p < len(shared) else unique[p - len(shared)]


@given(stage_layouts(), seeds, st.data())
def test_orthogonality_loss_is_positive_when_a_covered_row_is_scaled(layout, seed, data):
    rows = [
        (g, p, r) for g, lay in enumerate(layout) for p, n in enumerate(lay["shared"] + lay["unique"]) for r in range(n)
    ]
    assume(rows)
    g, p, r = data.draw(st.sampled_from(rows))
    stages = orthonormal_stages(layout, np.random.default_rng(seed))
    part(stages, g, p)[r] *= 2.0
    R = orthogonality_loss(stages)
    assert R > 1e-3
    # Row a scaled by 2: D[a, a] = (4 − 1)² counts once; every covered off-diagonal term stays 0.
    assert R == pytest.approx(9.0 / loss_denominator(layout), rel=1e-10)


@given(stage_layouts(), seeds, st.data())
def test_orthogonality_loss_is_positive_when_two_covered_rows_are_not_orthogonal(layout, seed, data):
    pairs = covered_pairs(layout)
    assume(pairs)
    g, (pa, ra), (pc, rc), weight = data.draw(st.sampled_from(pairs))
    stages = orthonormal_stages(layout, np.random.default_rng(seed))
    a, c = part(stages, g, pa)[ra].copy(), part(stages, g, pc)[rc]
    part(stages, g, pc)[rc] = (c + a) / np.sqrt(2.0)  # still unit norm, ⟨a, c'⟩ = 1/√2
    R = orthogonality_loss(stages)
    assert R > 1e-3
    assert R == pytest.approx(weight * 0.5 / loss_denominator(layout), rel=1e-10)


@given(stage_layouts(), seeds, st.data())
def test_orthogonality_loss_ignores_unique_rows_of_different_layers(layout, seed, data):
    """Tilt a row of one layer's unique basis towards (then onto) a row of another layer's,
    keeping every covered pair orthonormal: R stays 0, cross-layer pairs are not covered."""
    candidates = [
        (g, i, j)
        for g, lay in enumerate(layout)
        for i, ui in enumerate(lay["unique"])
        for j, uj in enumerate(lay["unique"])
        if i != j and ui > 0 and uj > 0
    ]
    assume(candidates)
    g, i, j = data.draw(st.sampled_from(candidates))
    stages = orthonormal_stages(layout, np.random.default_rng(seed))
    unique = stages[g][1]
    tilted = (unique[j][0] + unique[i][0]) / np.sqrt(2.0)  # unit norm, ⟨·, layer i's row⟩ = 1/√2
    unique[j][0] = tilted  # still orthogonal to the shared rows and to layer j's other rows
    assert abs(orthogonality_loss(stages)) <= 1e-12
    unique[j][0] = unique[i][0]  # identical rows in two layers: ⟨·,·⟩ = 1, not a covered pair
    assert abs(orthogonality_loss(stages)) <= 1e-12


def test_orthogonality_loss_cross_layer_terms_do_not_enter():
    """Hand-made: one stage, no shared basis, two layers with unit-norm rows equal to each other."""
    e = np.zeros((1, 1, 3, 3))
    e[0, 0, 0, 0] = 1.0
    assert orthogonality_loss([([], [e, e.copy()])]) == 0.0
    f = e.copy()
    f[0, 0, 0, 1] = 1.0  # ‖f‖² = 2: D = (2 − 1)² = 1 within its own layer
    # numerator 1 (f's diagonal); denominator 1² + 1² = 2
    assert orthogonality_loss([([], [e, f])]) == pytest.approx(0.5, rel=1e-15)


def test_orthogonality_loss_skips_none_and_rejects_no_rows():
    rng = np.random.default_rng(0)
    S, U = rng.standard_normal((2, 2, 3, 3)), rng.standard_normal((1, 2, 3, 3))
    assert orthogonality_loss([([S], [None, U, None])]) == pytest.approx(orthogonality_loss([([S], [U])]), rel=1e-15)
    with pytest.raises(ValueError, match="stages"):
        orthogonality_loss([([], []), ([], [None])])


@given(stage_layouts(max_stages=2), seeds)
def test_orthogonality_loss_passes_finite_differences(layout, seed):
    assume(total_rows(layout) > 0)
    stages = random_stages(layout, np.random.default_rng(seed))
    check_gradients(lambda stages: orthogonality_loss(stages), stages, directions=4)


# shared-only form


@st.composite
def shared_layouts(draw):
    layout = []
    for _ in range(draw(st.integers(1, 3))):
        k = draw(st.sampled_from([1, 3]))
        shared = [draw(st.integers(1, 3))] * draw(st.integers(0, 2))
        C = max(draw(st.integers(1, 3)), -(-sum(shared) // (k * k)))
        layout.append(dict(C=C, k=k, shared=shared, unique=[]))
    return layout


def reference_shared_orthogonality_loss(stages):
    numerator, denominator = 0.0, 0
    for shared in stages:
        rows = [row for b in shared for row in b.reshape(b.shape[0], -1)]
        for a, va in enumerate(rows):
            for c, vc in enumerate(rows):
                numerator += (float(np.dot(va, vc)) - (1.0 if a == c else 0.0)) ** 2
        denominator += len(rows) ** 2
    return numerator / denominator


@given(shared_layouts(), seeds)
def test_shared_orthogonality_loss_matches_reference_and_vanishes_on_orthonormal_rows(layout, seed):
    assume(total_rows(layout) > 0)
    rng = np.random.default_rng(seed)
    stages = [shared for shared, _ in random_stages(layout, rng)]
    R = shared_orthogonality_loss(stages)
    assert R >= 0
    assert R == pytest.approx(reference_shared_orthogonality_loss(stages), rel=1e-12)
    ortho = [shared for shared, _ in orthonormal_stages(layout, rng)]
    assert abs(shared_orthogonality_loss(ortho)) <= 1e-12
    g = next(i for i, stage in enumerate(ortho) if stage)
    ortho[g][0][0] *= 2.0
    assert shared_orthogonality_loss(ortho) == pytest.approx(
        9.0 / sum(sum(s["shared"]) ** 2 for s in layout), rel=1e-10
    )
    check_gradients(lambda stages: shared_orthogonality_loss(stages), stages, directions=4)


# ---- orthogonal initialisation --------------------------------------------------------------


@st.composite
def init_shapes(draw):
    k = draw(st.sampled_from([1, 3]))
    C = draw(st.integers(1, 4))
    count = draw(st.integers(1, 2))
    s = draw(st.integers(1, max(1, C * k * k // count)))
    assume(count * s <= C * k * k)
    return count, (s, C, k, k)


@given(init_shapes(), seeds)
def test_orthogonal_rows_are_orthonormal_and_reproducible(drawn, seed):
    count, shape = drawn
    B = orthogonal(np.random.default_rng(seed), shape, dtype=np.float64)
    assert B.shape == shape and B.dtype == np.float64
    rows = B.reshape(shape[0], -1)
    np.testing.assert_allclose(rows @ rows.T, np.eye(shape[0]), atol=1e-12)
    np.testing.assert_array_equal(B, orthogonal(np.random.default_rng(seed), shape, dtype=np.float64))
    single = orthogonal(np.random.default_rng(seed), shape)
    assert single.dtype == np.float32
    np.testing.assert_allclose(single, B.astype(np.float32), rtol=0, atol=1e-7)


@given(init_shapes(), seeds)
def test_orthogonal_bases_are_jointly_orthonormal(drawn, seed):
    count, shape = drawn
    bases = orthogonal_bases(np.random.default_rng(seed), count, shape, dtype=np.float64)
    assert len(bases) == count
    assert all(b.shape == shape and b.dtype == np.float64 for b in bases)
    joint = np.concatenate([b.reshape(shape[0], -1) for b in bases])
    np.testing.assert_allclose(joint @ joint.T, np.eye(count * shape[0]), atol=1e-12)
    again = orthogonal_bases(np.random.default_rng(seed), count, shape, dtype=np.float64)
    for a, b in zip(bases, again):
        np.testing.assert_array_equal(a, b)
    assert all(b.dtype == np.float32 for b in orthogonal_bases(np.random.default_rng(seed), count, shape))


def test_orthogonal_differs_between_seeds_and_is_sign_symmetric():
    """Different seeds give different bases; the sign correction makes each entry's sign a fair
    coin (without it, LAPACK's QR makes the first entry of a single row always ≤ 0)."""
    shape = (1, 2, 2, 2)
    assert not np.allclose(orthogonal(np.random.default_rng(1), shape), orthogonal(np.random.default_rng(2), shape))
    rng = np.random.default_rng(123)
    first = np.array([orthogonal(rng, shape, dtype=np.float64)[0, 0, 0, 0] for _ in range(400)])
    assert 0.4 < np.mean(first > 0) < 0.6


@given(st.sampled_from([(10, 1, 3, 3), (2, 1, 1, 1), (5, 4, 1, 1), (256, 64, 1, 1), (192, 32, 1, 1)]), seeds)
def test_with_more_rows_than_columns_the_columns_are_orthonormal(shape, seed):
    """As PyTorch's orthogonal_ (ResNet50-Shared++'s 1×1 expansion, 4C filters of C values):
    no more than C·k·k rows can be orthonormal, so the columns are."""
    W = orthogonal(np.random.default_rng(seed), shape, dtype=np.float64).reshape(shape[0], -1)
    np.testing.assert_allclose(W.T @ W, np.eye(W.shape[1]), atol=1e-12)


def test_jointly_initialised_bases_with_too_many_rows_have_orthonormal_columns_together():
    bases = orthogonal_bases(np.random.default_rng(0), 2, (5, 1, 3, 3), dtype=np.float64)
    joint = np.concatenate([b.reshape(5, -1) for b in bases])  # 10 rows of 9 values
    np.testing.assert_allclose(joint.T @ joint, np.eye(9), atol=1e-12)


# ---- decomposition --------------------------------------------------------------------------


@st.composite
def decompositions(draw):
    O = draw(st.integers(1, 6))
    C = draw(st.integers(1, 3))
    k = draw(st.sampled_from([1, 3]))
    rank = draw(st.integers(1, min(O, C * k * k)))
    return O, C, k, rank


@given(decompositions(), seeds)
def test_decompose_is_the_eckart_young_best_approximation(drawn, seed):
    O, C, k, rank = drawn
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((O, C, k, k))
    basis, coefficients = decompose(W, rank)
    assert basis.shape == (rank, C, k, k) and coefficients.shape == (O, rank, 1, 1)
    rows = basis.reshape(rank, -1)
    np.testing.assert_allclose(rows @ rows.T, np.eye(rank), atol=1e-12)
    sigma = np.linalg.svd(W.reshape(O, -1), compute_uv=False)
    expected = np.sqrt(np.sum(sigma[rank:] ** 2))
    error = np.linalg.norm(W - reconstruct(basis, coefficients))
    assert error == pytest.approx(expected, rel=1e-8, abs=1e-12 * np.linalg.norm(W))
    if rank == min(O, C * k * k):
        np.testing.assert_allclose(reconstruct(basis, coefficients), W, atol=1e-12)


def test_reconstruct_is_the_matrix_product():
    basis = np.arange(2 * 1 * 2 * 2, dtype=float).reshape(2, 1, 2, 2)
    coefficients = np.array([1.0, -2.0, 0.5, 3.0]).reshape(2, 2, 1, 1)
    W = reconstruct(basis, coefficients)
    # filter 0 = 1·b0 − 2·b1 ; filter 1 = 0.5·b0 + 3·b1
    np.testing.assert_array_equal(W[0], basis[0] - 2 * basis[1])
    np.testing.assert_array_equal(W[1], 0.5 * basis[0] + 3 * basis[1])


@given(decompositions(), st.integers(1, 2), st.integers(2, 5), st.integers(2, 5), seeds)
def test_basis_conv_then_coefficients_equals_reconstructed_conv(drawn, N, H, Wd, seed):
    O, C, k, rank = drawn
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((O, C, k, k))
    x = rng.standard_normal((N, C, H, Wd))
    basis, coefficients = decompose(W, rank)
    for p in sorted({0, k // 2, k - 1}):
        if k > H + 2 * p or k > Wd + 2 * p:
            continue
        two_step = conv2d(conv2d(x, basis, padding=p), coefficients)
        one_step = conv2d(x, reconstruct(basis, coefficients), padding=p)
        np.testing.assert_allclose(two_step, one_step, rtol=1e-10, atol=1e-10)


# ---- shared decomposition -------------------------------------------------------------------


@st.composite
def shared_problems(draw):
    C = draw(st.integers(1, 3))
    k = draw(st.sampled_from([1, 3]))
    dim = C * k * k
    outs = draw(st.lists(st.integers(1, 5), min_size=1, max_size=3))
    s = draw(st.integers(0, dim))
    u = draw(st.integers(0, dim - s))
    assume(s + u > 0)
    return C, k, outs, s, u


@given(shared_problems(), seeds, st.data())
def test_shared_decompose_is_exact_when_the_stacked_rank_fits(problem, seed, data):
    C, k, outs, s, u = problem
    q = data.draw(st.integers(1, s + u), label="stacked rank")
    rng = np.random.default_rng(seed)
    V = rng.standard_normal((q, C * k * k))  # rank q ≤ s + u, shared by all layers
    filters = [(rng.standard_normal((O, q)) @ V).reshape(O, C, k, k) for O in outs]
    result = shared_decompose(filters, s, u)
    S = result["shared_basis"]
    assert S.shape == (s, C, k, k)
    rows = flat(S)
    np.testing.assert_allclose(rows @ rows.T, np.eye(s), atol=1e-12)
    assert len(result["unique_bases"]) == len(result["coefficients"]) == len(result["relative_errors"]) == len(outs)
    for W, U, coefficients, error in zip(
        filters, result["unique_bases"], result["coefficients"], result["relative_errors"]
    ):
        assert U.shape == (u, C, k, k)
        assert coefficients.shape == (W.shape[0], u + s, 1, 1)
        assert 0 <= error < 1e-10
        W_hat = reconstruct(np.concatenate([U, S]), coefficients)  # unique rows first
        np.testing.assert_allclose(W_hat, W, rtol=0, atol=1e-10 * max(1.0, np.abs(W).max()))


@given(shared_problems(), seeds)
def test_shared_decompose_errors_and_subspaces_match_independent_computation(problem, seed):
    C, k, outs, s, u = problem
    rng = np.random.default_rng(seed)
    filters = [rng.standard_normal((O, C, k, k)) for O in outs]
    result = shared_decompose(filters, s, u)
    S = flat(result["shared_basis"])
    np.testing.assert_allclose(S @ S.T, np.eye(s), atol=1e-12)
    # Ky Fan: S holds the top-s right singular subspace of the stacked filters iff it captures
    # the s largest squared singular values (robust to ties, unlike comparing vectors).
    stacked = np.concatenate([W.reshape(W.shape[0], -1) for W in filters])
    sigma = np.linalg.svd(stacked, compute_uv=False)
    assert np.sum((stacked @ S.T) ** 2) == pytest.approx(np.sum(sigma[:s] ** 2), rel=1e-10, abs=1e-12)
    for W, U, coefficients, error in zip(
        filters, result["unique_bases"], result["coefficients"], result["relative_errors"]
    ):
        M = W.reshape(W.shape[0], -1)
        Urows = flat(U)
        # unique basis: orthonormal rows capturing the top-u energy of the layer's residual
        np.testing.assert_allclose(Urows @ Urows.T, np.eye(u), atol=1e-12)
        residual = M - M @ S.T @ S
        sigma_l = np.linalg.svd(residual, compute_uv=False)
        assert np.sum((residual @ Urows.T) ** 2) == pytest.approx(np.sum(sigma_l[:u] ** 2), rel=1e-10, abs=1e-12)
        # the reported error is that of the returned coefficients...
        reported = np.linalg.norm(
            W - reconstruct(np.concatenate([U, result["shared_basis"]]), coefficients)
        ) / np.linalg.norm(W)
        assert error == pytest.approx(reported, rel=1e-8, abs=1e-13)
        # ... and those are least squares: the error of projecting M on the span of [U; S]
        basis = np.concatenate([Urows, S])
        _, sv, Vt = np.linalg.svd(basis, full_matrices=False)
        span = Vt[sv > 1e-10 * sv.max()]
        best = np.linalg.norm(M - M @ span.T @ span) / np.linalg.norm(M)
        assert error == pytest.approx(best, rel=1e-8, abs=1e-13)


# ---- the basis layer ------------------------------------------------------------------------


def make_layer(rng, C, k, u, s, C_out, random_state=False):
    """float64 params (``unique_basis``/``shared_basis`` None when u/s is None) and a state."""
    r = (u or 0) + (s or 0)

    def bn(n):
        return {"weight": rng.uniform(0.5, 1.5, n) * rng.choice([-1.0, 1.0], n), "bias": rng.standard_normal(n)}

    def state(n):
        if not random_state:
            return {"running_mean": np.zeros(n), "running_var": np.ones(n), "num_batches_tracked": np.int64(0)}
        return {
            "running_mean": rng.standard_normal(n),
            "running_var": rng.uniform(0.5, 2.0, n),
            "num_batches_tracked": np.int64(5),
        }

    params = {
        "unique_basis": None if u is None else rng.standard_normal((u, C, k, k)),
        "shared_basis": None if s is None else rng.standard_normal((s, C, k, k)),
        "basis_bn": bn(r),
        "coefficients": rng.standard_normal((C_out, r, 1, 1)),
        "bn": bn(C_out),
    }
    return params, {"basis_bn": state(r), "bn": state(C_out)}


def reference_basis_layer(x, params, state, train, stride):
    """Two separate convs (unique, shared), concatenated unique first, then BN → 1×1 → BN."""
    U, S = params["unique_basis"], params["shared_basis"]
    k = (U if U is not None else S).shape[-1]
    parts = [conv2d(x, b, stride=stride, padding=k // 2) for b in (U, S) if b is not None]
    h = anp.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
    h, s1 = batch_norm(h, params["basis_bn"]["weight"], params["basis_bn"]["bias"], state["basis_bn"], train=train)
    h = conv2d(h, params["coefficients"])
    h, s2 = batch_norm(h, params["bn"]["weight"], params["bn"]["bias"], state["bn"], train=train)
    return h, {"basis_bn": s1, "bn": s2}


def split_params(params):
    """(the array-only part for autograd / check_gradients, the keys that were None)."""
    return {key: value for key, value in params.items() if value is not None}, [
        k for k, v in params.items() if v is None
    ]


def with_nones(trainable, none_keys):
    return {**trainable, **{key: None for key in none_keys}}


variants = st.sampled_from(["both", "shared_only", "non_shared"])


@st.composite
def layer_problems(draw, max_channels=3):
    variant = draw(variants)
    u = None if variant == "shared_only" else draw(st.integers(1, 3))
    s = None if variant == "non_shared" else draw(st.integers(1, 3))
    return dict(
        N=draw(st.integers(1, 2)),
        C=draw(st.integers(1, max_channels)),
        H=draw(st.integers(3, 5)),
        W=draw(st.integers(3, 5)),
        k=draw(st.sampled_from([1, 3])),
        u=u,
        s=s,
        C_out=draw(st.integers(1, max_channels)),
        stride=draw(st.sampled_from([1, 2])),
    )


@given(layer_problems(), st.booleans(), seeds)
def test_basis_layer_matches_two_conv_reference_values_and_gradients(p, train, seed):
    rng = np.random.default_rng(seed)
    params, state = make_layer(rng, p["C"], p["k"], p["u"], p["s"], p["C_out"], random_state=not train)
    x = rng.standard_normal((p["N"], p["C"], p["H"], p["W"]))
    y, new_state = basis_layer(x, params, state, train=train, stride=p["stride"])
    y_ref, ref_state = reference_basis_layer(x, params, state, train, p["stride"])
    Ho, Wo = -(-p["H"] // p["stride"]), -(-p["W"] // p["stride"])
    assert y.shape == (p["N"], p["C_out"], Ho, Wo)
    np.testing.assert_allclose(y, y_ref, rtol=1e-9, atol=1e-10)
    for bn in ("basis_bn", "bn"):
        for key in ("running_mean", "running_var", "num_batches_tracked"):
            np.testing.assert_allclose(new_state[bn][key], ref_state[bn][key], rtol=1e-10, atol=1e-12)

    g = rng.standard_normal(y.shape)
    trainable, none_keys = split_params(params)

    def loss(layer, x, trainable):
        return anp.sum(layer(x, with_nones(trainable, none_keys), state, train=train, stride=p["stride"])[0] * g)

    def under_test(x, trainable):
        return loss(basis_layer, x, trainable)

    def reference(x, trainable):
        return loss(lambda x, prm, st, train, stride: reference_basis_layer(x, prm, st, train, stride), x, trainable)

    for argnum in (0, 1):
        got = autograd.grad(under_test, argnum)(x, trainable)
        want = autograd.grad(reference, argnum)(x, trainable)
        if argnum == 0:
            np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-9)
            continue
        assert set(got) == set(trainable)
        for key in trainable:
            for leaf_got, leaf_want in zip(
                got[key].values() if isinstance(got[key], dict) else [got[key]],
                want[key].values() if isinstance(want[key], dict) else [want[key]],
            ):
                np.testing.assert_allclose(leaf_got, leaf_want, rtol=1e-8, atol=1e-9, err_msg=key)


@given(layer_problems(max_channels=2), seeds)
def test_basis_layer_passes_finite_differences_in_train_mode(p, seed):
    assume(p["N"] * -(-p["H"] // p["stride"]) * -(-p["W"] // p["stride"]) > 1)
    rng = np.random.default_rng(seed)
    params, state = make_layer(rng, p["C"], p["k"], p["u"], p["s"], p["C_out"])
    x = rng.standard_normal((p["N"], p["C"], p["H"], p["W"]))
    g = rng.standard_normal(basis_layer(x, params, state, train=True, stride=p["stride"])[0].shape)
    trainable, none_keys = split_params(params)

    def loss(x, trainable):
        y, _ = basis_layer(x, with_nones(trainable, none_keys), state, train=True, stride=p["stride"])
        return anp.sum(anp.tanh(y) * g)

    check_gradients(loss, x, trainable, directions=4, rtol=1e-5, atol=1e-8)


@given(st.integers(1, 3), st.integers(1, 2), st.integers(1, 2), st.sampled_from([1, 3]), seeds)
def test_shared_basis_gradient_is_the_sum_over_the_layers_that_use_it(C, u, s, k, seed):
    rng = np.random.default_rng(seed)
    p1, st1 = make_layer(rng, C, k, u, s, C)
    p2, st2 = make_layer(rng, C, k, u, s, C + 1)
    shared = rng.standard_normal((s, C, k, k))
    x = rng.standard_normal((2, C, 4, 4))
    g = rng.standard_normal((2, C + 1, 4, 4))

    def untied(S1, S2):
        h, _ = basis_layer(x, {**p1, "shared_basis": S1}, st1, train=True)
        y, _ = basis_layer(anp.tanh(h), {**p2, "shared_basis": S2}, st2, train=True)
        return anp.sum(anp.tanh(y) * g)

    def tied(S):
        return untied(S, S)

    g_tied = autograd.grad(tied)(shared)
    g1 = autograd.grad(untied, 0)(shared, shared.copy())
    g2 = autograd.grad(untied, 1)(shared, shared.copy())
    if C * k * k > 1:  # with one weight per basis row, BN's scale invariance zeroes the gradient
        assert np.abs(g1).max() > 0 and np.abs(g2).max() > 0
    np.testing.assert_allclose(g_tied, g1 + g2, rtol=1e-10, atol=1e-12)

    # tied(S) is untied(S, S), so the sum above holds for any gradient rule of basis_layer.
    # Hold g_tied to gradients that do not go through basis_layer: the same net built from the
    # two-conv reference layer, and central finite differences of tied itself.
    def reference_tied(S):
        h, _ = reference_basis_layer(x, {**p1, "shared_basis": S}, st1, True, 1)
        y, _ = reference_basis_layer(anp.tanh(h), {**p2, "shared_basis": S}, st2, True, 1)
        return anp.sum(anp.tanh(y) * g)

    assert tied(shared) == pytest.approx(reference_tied(shared), rel=1e-10, abs=1e-12)
    np.testing.assert_allclose(g_tied, autograd.grad(reference_tied)(shared), rtol=1e-8, atol=1e-10)
    check_gradients(tied, shared, directions=3, rtol=1e-5, atol=1e-7)  # atol: FD round-off of an O(10) loss


# ---- folding --------------------------------------------------------------------------------


@given(layer_problems(), st.sampled_from([1, 3, 5]), seeds)
def test_folded_conv_equals_eval_mode_basis_layer(p, k, seed):
    rng = np.random.default_rng(seed)
    params, state = make_layer(rng, p["C"], k, p["u"], p["s"], p["C_out"], random_state=True)
    x = rng.standard_normal((p["N"], p["C"], p["H"], p["W"]))
    W_eff, b_eff = fold_basis_layer(params, state)
    assert W_eff.shape == (p["C_out"], p["C"], k, k) and b_eff.shape == (p["C_out"],)
    folded = conv2d(x, W_eff, padding=k // 2) + b_eff[None, :, None, None]
    y, _ = basis_layer(x, params, state, train=False)
    np.testing.assert_allclose(folded, y, rtol=1e-10, atol=1e-10)


# ---- counting -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, expected",
    [
        ((3, 16, 3, 3), 432),  # 16·3·9
        ((16, 32, 3, 3), 4608),  # 32·16·9
        ((16, 64, 1, 1), 1024),
        ((32, 32, 3, 3, 32), 288),  # depthwise: 32·1·9
        ((8, 4, 3, 5, 2), 240),  # 4·(8/2)·15
    ],
)
def test_conv_params_hand_worked(args, expected):
    assert conv_params(*args) == expected


@pytest.mark.parametrize(
    "args, expected",
    [
        ((32, 32, 3, 16, 3, 3), 442368),  # 1024·432
        ((16, 16, 16, 32, 3, 3), 1179648),  # 256·4608
        ((8, 8, 32, 32, 3, 3, 32), 18432),  # 64·288
        ((7, 5, 8, 4, 3, 5, 2), 8400),  # 35·240
        ((1, 1, 1, 1, 1, 1), 1),
    ],
)
def test_conv_macs_hand_worked(args, expected):
    assert conv_macs(*args) == expected


def test_basis_layer_macs_hand_worked_and_the_papers_ratios():
    # r = 17, C = 16, 32×32: 1024·17·(16·9 + 16) = 2 785 280 against 1024·16·16·9 = 2 359 296
    assert basis_layer_macs(32, 32, 16, 16, 17) == 2785280
    assert conv_macs(32, 32, 16, 16, 3, 3) == 2359296
    ratio = basis_layer_macs(32, 32, 16, 16, 17) / conv_macs(32, 32, 16, 16, 3, 3)
    assert round(ratio, 2) == 1.18 and ratio > 1  # S16U1 costs more than the conv it replaces
    assert basis_layer_macs(8, 8, 16, 16, 9) / conv_macs(8, 8, 16, 16, 3, 3) == 0.625  # S8U1


@given(st.integers(1, 64), st.integers(1, 64), st.sampled_from([16, 32, 64]))
def test_basis_layer_mac_ratio_is_r_times_ten_over_nine_c(H, W, C):
    for r, expected in ((C + C // 16, Fraction(170, 144)), (C // 2 + C // 16, Fraction(90, 144))):
        macs = basis_layer_macs(H, W, C, C, r)
        assert macs == H * W * r * (C * 9 + C)
        assert Fraction(macs, conv_macs(H, W, C, C, 3, 3)) == expected


@given(
    st.integers(1, 64),
    st.integers(1, 64),
    st.integers(1, 8),
    st.integers(1, 8),
    st.integers(1, 8),
    st.sampled_from([1, 3, 5]),
)
def test_basis_layer_macs_formula(H, W, c_in, c_out, r, k):
    assert basis_layer_macs(H, W, c_in, c_out, r, k) == H * W * r * (c_in * k * k + c_out)


def test_basis_layer_params_hand_worked():
    # S16U1, 16 → 16: 1·16·9 + 2·17 + 17·16 + 2·16 = 144 + 34 + 272 + 32
    assert basis_layer_params(16, 16, 1, 16) == 482
    # SharedOnly, 32 → 64, s = 8: 0 + 16 + 512 + 128
    assert basis_layer_params(32, 64, 0, 8) == 656


@given(st.integers(1, 64), st.integers(1, 64), st.integers(0, 8), st.integers(0, 16))
def test_basis_layer_params_formula(c_in, c_out, u, s):
    r = u + s
    assert basis_layer_params(c_in, c_out, u, s) == u * c_in * 9 + 2 * r + r * c_out + 2 * c_out


def test_shared_decompose_unique_basis_is_orthogonal_to_the_shared_one_even_when_residual_rank_is_small():
    rng = np.random.default_rng(0)
    V = rng.standard_normal((2, 9))  # stacked rank 2: the residuals are zero
    filters = [(rng.standard_normal((3, 2)) @ V).reshape(3, 1, 3, 3) for _ in range(2)]
    result = shared_decompose(filters, 2, 3)
    S = result["shared_basis"].reshape(2, -1)
    for U in result["unique_bases"]:
        U = U.reshape(3, -1)
        np.testing.assert_allclose(U @ S.T, 0, atol=1e-12)
        np.testing.assert_allclose(U @ U.T, np.eye(3), atol=1e-12)
    assert max(result["relative_errors"]) < 1e-10


def test_orthogonality_loss_skips_an_empty_shared_basis():
    U = np.eye(4)[:2].reshape(2, 1, 2, 2) * 2.0  # two rows of norm 2: D diagonal (4 − 1)² = 9
    assert orthogonality_loss([([np.zeros((0, 1, 2, 2))], [U])]) == pytest.approx(9 * 2 / 4)
