# %% [markdown]
# # 03 · Trained filters have linear structure
#
# **What this teaches.** The premise of filter bases (Kim & Kang, arXiv 2006.05066, Sec. 3):
# the O filters of a trained convolution layer, read as the rows of a matrix, are far from
# "O independent directions". We take the authors' trained ResNet56-S16U1\* and
#
# 1. write a k×k convolution with O filters as "r basis filters, then an O × r matrix of
#    coefficients" (a k×k conv followed by a 1×1 conv), exactly when r ≥ rank;
# 2. look at the singular value spectra of its plain 3×3 convolutions and of the effective
#    filters of its basis layers;
# 3. truncate the SVD (`minibasis.basis.decompose`) and check the Eckart–Young theorem: the
#    truncated SVD is the best rank-r approximation, better than any other basis of r filters;
# 4. measure what truncation costs in test accuracy on real CIFAR-10 images.
#
# **Time.** Full mode (1,000 test images, 5 ranks) about 45 s on an idle 2-core machine, almost
# all of it in the 6 network evaluations; `MINIBASIS_FAST=1` (10 images, 2 ranks) about 3 s.
# Beside a busy process it took 1.9× as long (the evaluations share the cores); NumPy's
# BLAS runs on one thread from the first line (`tutorial_setup`), so its spinning threads no
# longer make the SVDs 40× slower. README, "Tutorials", gives the measurements. Needs
# `../shared/data/` (the official weights and the CIFAR-10 subset); without it, the parts that
# need it are skipped with a message.
# Output: `03_spectra.png`, `03_accuracy_vs_rank.png` and their plotted data (`.json`) in
# `MINIBASIS_FIGURES` (a temporary folder unless given; the committed figures:
# `MINIBASIS_FIGURES=tutorials/figures`, full mode).

# %%
import time

import numpy as np

from minibasis import conv2d
from minibasis.basis import decompose, fold_basis_layer, reconstruct
from minibasis.data import CIFAR10, load_cifar, normalize
from minibasis.models import create_model
from minibasis.tree import flatten, tree_map, unflatten
from minibasis.weights import load_weights
from tutorial_setup import DATA, FAST, plt, save_figure  # this checkout's minibasis, the mode, the paths

WEIGHTS = DATA / "official" / "resnet56-double-s16u1.npz"
OFFICIAL_LOGITS = DATA / "official" / "resnet56-double-s16u1.logits.npz"
CIFAR = DATA / "cifar-10-subset-python.tar.gz"
START = time.perf_counter()

N_TEST = 10 if FAST else 1000  # first N images of the test batch (the official logits cover 1,000)
FRACTIONS = (1 / 8, 1) if FAST else (1 / 8, 1 / 4, 1 / 2, 3 / 4, 1)  # rank / full rank
print(f"mode: {'FAST' if FAST else 'full'}; {N_TEST} test images, rank fractions {[round(f, 3) for f in FRACTIONS]}")

model = create_model("resnet56-s16u1")
if WEIGHTS.exists():
    params, state = load_weights(WEIGHTS, model)
    TRAINED = True
    print(f"loaded the authors' trained {model.spec.name} from {WEIGHTS}")
else:
    params, state = model.init(seed=0)
    TRAINED = False
    print(
        f"{WEIGHTS} not found: the trained-network parts are skipped; the linear algebra runs on a "
        "freshly initialised model instead (its filters are random, so their spectra are flat)"
    )

PLAIN = [f"layer{g}.0.conv{c}" for g in (1, 2, 3) for c in (1, 2)]  # the plain 3×3 convs
flat_params = flatten(params)  # {"layer2.0.conv2.weight": array, …}, the state_dict names


def matrix(W):
    """(O, C, k, k) -> (O, C·k·k): one filter per row."""
    return W.reshape(W.shape[0], -1)


# %% [markdown]
# ## 1. Filters as rows of a matrix, and what a basis is
#
# A conv layer's weights w, shape (O, C, k, k), are O filters; flatten each into a row and the
# layer is the matrix W of shape O × Ck² (tutorial 01: y = X_col · Wᵀ). Its singular value
# decomposition W = U Σ Vᵀ writes every filter as a combination of the orthonormal rows of Vᵀ,
# which are themselves filters (reshape a row back to C × k × k). Keep the first r:
#
#     W ≈ W_r = (U_r Σ_r) · V_rᵀ = coefficients (O × r) · basis (r × Ck²).
#
# Because the convolution is linear in w, convolving with W_r is the same as convolving with the
# r basis filters and then mixing the r resulting channels with the coefficients, a 1×1
# convolution:
#
#     x ⋆ W_r = coefficients ⋆₁ₓ₁ (x ⋆ basis).
#
# That is the paper's basis layer (Sec. 3) and `minibasis.basis.decompose` returns exactly
# (basis (r, C, k, k), coefficients (O, r, 1, 1)). At full rank it is exact.

# %%
W = flat_params["layer2.0.conv2.weight"].astype(np.float64)  # (32, 32, 3, 3)
x = np.random.default_rng(0).standard_normal((2, 32, 8, 8))
full = min(matrix(W).shape)
for r in (4, full):
    basis, coefficients = decompose(W, r)
    two_step = conv2d(conv2d(x, basis, padding=1), coefficients)
    one_step = conv2d(x, reconstruct(basis, coefficients), padding=1)
    assert np.abs(two_step - one_step).max() < 1e-10 * np.abs(one_step).max(), "basis-then-coefficients ≠ conv with W_r"
    print(
        f"r = {r:2d}: basis {basis.shape}, coefficients {coefficients.shape}; "
        f"conv(basis) then 1×1 conv(coefficients) = conv(W_r)"
    )
    assert np.allclose(matrix(basis) @ matrix(basis).T, np.eye(r), atol=1e-12), "the basis rows should be orthonormal"
exact = np.abs(conv2d(x, reconstruct(*decompose(W, full)), padding=1) - conv2d(x, W, padding=1)).max()
assert exact < 1e-10, f"at full rank the basis layer should reproduce the conv exactly, error {exact:.1e}"

# %% [markdown]
# ## 2. Singular value spectra
#
# If the O filters were unrelated random vectors in ℝ^{Ck²} (O ≤ Ck²), the singular values
# would all be of similar size: for a Gaussian O × Ck² matrix σ_max/σ_min ≈ (√(Ck²) + √O) /
# (√(Ck²) − √O), which is 2 to 2.8 for our shapes (Ck² = 9C, O = C or 2C), and 90 % of the
# energy needs 80–90 % of the directions. We look at the trained network's six plain 3×3
# convolutions (block 0 of each stage, `layer{g}.0.conv1/conv2`) and report the
# *energy rank*, the r at which Σ_{i≤r} σ_i² reaches 90 % of ‖W‖²_F, next to that of a Gaussian
# matrix of the same shape.

# %%
plain = {name: flat_params[name + ".weight"].astype(np.float64) for name in PLAIN}
spectra = {name: np.linalg.svd(matrix(W), compute_uv=False) for name, W in plain.items()}


def energy_rank(sigma, level=0.9):
    return int(np.searchsorted(np.cumsum(sigma**2) / np.sum(sigma**2), level) + 1)


gaussian = np.random.default_rng(1)
print(
    f"{'layer':<16}{'W shape':>16}{'full rank':>11}{'90% energy':>12}{'(Gaussian)':>12}"
    f"{'σ_1/σ_2':>9}{'σ_max/σ_min':>13}"
)
for name, sigma in spectra.items():
    random_sigma = np.linalg.svd(gaussian.standard_normal(matrix(plain[name]).shape), compute_uv=False)
    print(
        f"{name:<16}{str(plain[name].shape):>16}{len(sigma):>11}{energy_rank(sigma):>12}{energy_rank(random_sigma):>12}"
        f"{sigma[0] / sigma[1]:>9.2f}{sigma[0] / sigma[-1]:>13.3g}"
    )
    if TRAINED:
        assert energy_rank(sigma) < energy_rank(random_sigma), (
            f"{name}: trained filters should be more concentrated than random ones"
        )
        assert energy_rank(sigma) < 0.8 * len(sigma), f"{name}: expected 90 % of the energy in < 80 % of the directions"
if TRAINED:
    dead = np.linalg.norm(matrix(plain["layer1.0.conv2"]), axis=1) < 1e-3
    print(
        f"layer1.0.conv2: {dead.sum()} filters are (almost) zero, rows {np.flatnonzero(dead).tolist()}; "
        f"their BN scales: {params['layer1']['0']['bn2']['weight'][dead].tolist()}"
    )
    assert dead.sum() == 2, "layer1.0.conv2 of the official model has two dead filters"

# %% [markdown]
# The trained filters are more concentrated than random ones, but per layer only moderately:
# 90 % of the energy still takes half to four fifths of the directions, and σ_1/σ_2 is
# close to 1 (no single dominant filter). The one outlier, layer1.0.conv2, has two filters that
# are zero: their BN scales γ are ≈ 0 (1e-8, 5e-6), so those channels carry nothing, their
# weights get almost no gradient, and weight decay has shrunk them away; its rank is 14, not 16. Per-layer low rank
# alone would be a modest saving.
#
# The picture changes when we look *across* layers.

# %% [markdown]
# The basis layers (blocks 1–8 of each stage) have no weight tensor of their own: their filter
# is "basis [U; S], BN, coefficients, BN". In eval mode BN is a per-channel affine map, so the
# whole layer folds into one k×k convolution with a bias, `fold_basis_layer` (tutorial 04 checks
# the fold). Its effective filter W_eff = diag(a₂)·C·diag(a₁)·[U; S] is a combination of the
# layer's r = 17m basis filters (16m shared, m unique; m = 1, 2, 4 by stage, the width
# multiplier, as in tutorial 04).
#
# Note what this does *not* say: W_eff has O = 16m rows, fewer than r = 17m, so a single basis
# layer of S16U1 is **not** low-rank. The structure is across layers. All 8 layers of a stage
# draw on the same 16m shared filters plus one unique m each, so their 8 × 16m stacked filters
# span at most 16m + 8m = 24m directions of ℝ^{Ck²} (Ck² = 144, 288, 576 by stage), although
# 128m rows could span up to 128m. The stacked spectrum drops to rounding noise at exactly 24m.
# (Per layer, the folded filters are also more concentrated than the plain convs, as the
# 90 %-energy ranks below show, but no single layer is exactly low-rank.)


# %%
def float64(leaf):
    return None if leaf is None else np.asarray(leaf, dtype=np.float64)  # a variant without U or S has None


def layer_in_float64(g, b, layer):
    """(params, state) of basis layer `layer` (1, 2) of block b in stage g, as fold_basis_layer wants them."""
    layer_params, layer_state = model.basis_layer_inputs(params, state, f"layer{g}.{b}", layer)
    return tree_map(float64, layer_params), tree_map(float64, layer_state)


blocks = range(1, model.spec.blocks_per_stage)
effective = {g: [fold_basis_layer(*layer_in_float64(g, b, 1))[0] for b in blocks] for g in (1, 2, 3)}
stacked_spectra = {}
for g, m in zip((1, 2, 3), (1, 2, 4)):
    stack = np.concatenate([matrix(W) for W in effective[g]])
    sigma = np.linalg.svd(stack, compute_uv=False)
    stacked_spectra[g] = sigma
    bound = (model.spec.shared_rank + len(blocks) * model.spec.unique_rank) * m
    per_layer = [energy_rank(np.linalg.svd(matrix(W), compute_uv=False)) for W in effective[g]]
    print(
        f"stage {g}: first basis layers' W_eff {effective[g][0].shape}, 90%-energy ranks {per_layer}; "
        f"stacked {stack.shape}: σ_{bound}/σ_1 = {sigma[bound - 1] / sigma[0]:.1e}, "
        f"σ_{bound + 1}/σ_1 = {sigma[bound] / sigma[0]:.1e}"
    )
    assert sigma[bound] / sigma[0] < 1e-10, f"stage {g}: the stacked filters should have rank ≤ 16m + 8m = {bound}"
    if TRAINED:
        assert sigma[bound - 1] / sigma[0] > 1e-4, (
            f"stage {g}: the trained stacked filters should use all {bound} directions"
        )
        plain_ranks = [energy_rank(spectra[f"layer{g}.0.conv{c}"]) for c in (1, 2)]
        assert max(per_layer) < min(plain_ranks), f"stage {g}: W_eff {per_layer} vs plain convs {plain_ranks}"

# %% [markdown]
# ## 3. Truncation and the Eckart–Young theorem
#
# Keeping the top r singular directions gives the relative error
#
#     ‖W − W_r‖_F / ‖W‖_F = √(Σ_{i>r} σ_i²) / √(Σ_i σ_i²),
#
# and the Eckart–Young theorem says no rank-r matrix does better. In particular no other basis
# of r filters does, even with its coefficients chosen optimally (least squares: W P_B with P_B
# the projection onto the basis' span). We check both statements for every layer at a spread
# of ranks (1, 2, 3, 4, 8, …, full), against two other bases: r random orthonormal directions,
# and r of the layer's own filters (the basis that "filter pruning + linear recombination"
# would use). The curves in the figure use the formula, verified at those ranks.


# %%
def tail_error(sigma):
    """Relative error of the rank-r truncation for r = 1 … len(sigma): √(Σ_{i>r} σ_i²) / ‖σ‖."""
    from_the_end = np.append(np.cumsum(sigma[::-1] ** 2)[::-1], 0.0)  # Σ_{i ≥ j} σ_i², summed small to large
    return np.sqrt(from_the_end[1:]) / np.sqrt(from_the_end[0])


errors, others = {}, {}
rng = np.random.default_rng(0)
for name, W in plain.items():
    M, sigma = matrix(W), spectra[name]
    norm = np.linalg.norm(M)
    errors[name] = tail_error(sigma)
    full_rank = len(sigma)
    ranks = sorted({1, 2, 3} | {2**i for i in range(2, 7) if 2**i <= full_rank} | {full_rank // 2 + 1, full_rank})
    for r in ranks:  # a spread of ranks (an SVD each); the curves below use the formula verified here
        err = np.linalg.norm(M - matrix(reconstruct(*decompose(W, r)))) / norm
        assert abs(err - errors[name][r - 1]) < 1e-10, (
            f"{name}, r = {r}: error {err} ≠ √(Σ_(i>r) σ_i²)/‖W‖ = {errors[name][r - 1]}"
        )
        Q = np.linalg.qr(rng.standard_normal((M.shape[1], r)))[0]  # a random r-dimensional basis (columns)
        err_random = np.linalg.norm(M - M @ Q @ Q.T) / norm
        F = np.linalg.qr(M[rng.choice(M.shape[0], r, replace=False)].T)[0]  # the span of r of the filters
        err_filters = np.linalg.norm(M - M @ F @ F.T) / norm
        assert err <= err_random + 1e-12 and err <= err_filters + 1e-12, (
            f"{name}, r = {r}: Eckart–Young violated: SVD {err}, random basis {err_random}, r filters {err_filters}"
        )
        others[name, r] = (err, err_random, err_filters)
    assert np.all(np.diff(errors[name]) <= 1e-12), f"{name}: the SVD error should not grow with r"
    assert errors[name][-1] == 0, f"{name}: full rank should be exact"
name = "layer3.0.conv2"
for r in (8, 16, 32):
    e = others[name, r]
    print(
        f"{name}, r = {r:2d} of 64: relative error SVD {e[0]:.3f}, random basis {e[1]:.3f}, "
        f"{r} of its own filters {e[2]:.3f}"
    )
print(
    "Eckart–Young holds for every layer at every rank checked: the truncated SVD error is √(Σ_{i>r} σ_i²)/‖W‖ "
    "and the smallest"
)

# %%
if plt is not None:
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.4))
    colors = {1: "tab:blue", 2: "tab:orange", 3: "tab:green"}
    for name, sigma in spectra.items():
        g = int(name[5])
        style = "-" if name.endswith("conv1") else "--"
        axes[0].semilogy(np.arange(1, len(sigma) + 1), sigma / sigma[0], style, color=colors[g], label=name)
        axes[2].plot(np.arange(1, len(sigma) + 1) / len(sigma), errors[name], style, color=colors[g])
    random_points = sorted((r, e[1]) for (n, r), e in others.items() if n == "layer3.0.conv2")
    axes[2].plot(
        [r / 64 for r, _ in random_points],
        [e for _, e in random_points],
        "o:",
        ms=3,
        color="0.4",
        label="layer3.0.conv2, random basis\n(other lines: the layers on the left, SVD)",
    )
    axes[0].set(
        xlabel="i (index of the singular value)",
        ylabel=r"$\sigma_i \,/\, \sigma_1$ (log scale)",
        title="plain 3×3 convs: singular values",
    )
    axes[0].legend(fontsize=9)
    for g, sigma in stacked_spectra.items():
        m = 2 ** (g - 1)
        axes[1].semilogy(
            np.arange(1, len(sigma) + 1),
            np.maximum(sigma / sigma[0], 1e-17),
            color=colors[g],
            label=f"stage {g}: 8 layers × {16 * m} filters",
        )
        axes[1].axvline(24 * m, color=colors[g], lw=1, ls=":")
    axes[1].set(
        xlabel="i (index of the singular value)",
        ylabel=r"$\sigma_i \,/\, \sigma_1$ (log scale)",
        title="basis layers' $W_{\\rm eff}$, stacked per stage\n(dotted: 16m shared + 8·m unique = 24m)",
    )
    axes[1].legend(fontsize=9)
    axes[2].set(
        xlabel="rank r / full rank", ylabel=r"$\|W - W_r\|_F \,/\, \|W\|_F$", title="truncated SVD: relative error"
    )
    axes[2].legend(
        fontsize=9, loc="upper right", bbox_to_anchor=(1, 0.9)
    )  # the SVD lines share the left panel's colours and styles
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(
        fig,
        "03_spectra.png",
        {"spectra": spectra, "errors": errors, "stacked": stacked_spectra, "random_basis": random_points},
    )

# %% [markdown]
# ## 4. What truncation costs in accuracy
#
# A small Frobenius error is not the goal; the network's predictions are. We replace the six
# plain convs *together* by their rank-r truncations, r = f · (full rank) for a fraction f
# (stage 1: r = f·16; stage 2: f·32; stage 3: f·64), and measure test accuracy in eval mode on
# the first images of the shared CIFAR-10 test batch (normalised with the authors' statistics,
# `CIFAR10.mean`/`std`). The images of the shared subset were JPEG re-encoded once, which costs
# this model about 11 points of accuracy against its 93.7 % on the original test set (see
# `../shared/data/README.md`); the comparison between ranks is what matters here.
#
# Checks: the untruncated network reproduces the authors' PyTorch logits; the full-rank
# "truncation" reproduces the untruncated accuracy; the smallest rank is worse.
#
# (No retraining and no re-estimation of the BN statistics after truncation: this measures how
# much of the trained function lives in the top singular directions, nothing more.)

# %%
have_data = TRAINED and CIFAR.exists()
if not have_data:
    print(f"skipping the accuracy experiment: needs {WEIGHTS} and {CIFAR}")
else:
    data = load_cifar(CIFAR)
    images, labels = data.test_images[:N_TEST], data.test_labels[:N_TEST]
    x_test = normalize(images, CIFAR10.mean, CIFAR10.std)

    def logits_of(p, batch=250):
        return np.concatenate(
            [model.apply(p, state, x_test[i : i + batch], train=False)[0] for i in range(0, N_TEST, batch)]
        )

    def with_plain_convs(fraction):
        """A copy of params whose six plain convs are truncated to rank = fraction · full rank."""
        new, ranks = dict(flat_params), {}  # a new flat dict; the arrays not replaced are shared with params
        for name, W in plain.items():
            ranks[name] = r = max(1, round(fraction * min(matrix(W).shape)))
            new[name + ".weight"] = reconstruct(*decompose(W, r)).astype(np.float32)
        return unflatten(new), ranks

    t = time.perf_counter()
    base_logits = logits_of(params)
    base_acc = float(np.mean(base_logits.argmax(1) == labels))
    print(f"untruncated: accuracy {base_acc:.3f} on {N_TEST} images ({time.perf_counter() - t:.1f} s per evaluation)")
    if OFFICIAL_LOGITS.exists():
        official = np.load(OFFICIAL_LOGITS)
        gap = np.abs(base_logits - official["logits"][:N_TEST]).max()
        assert np.array_equal(official["labels"][:N_TEST], labels), "the official logits file is for other images"
        assert gap < 1e-3, f"minibasis and the authors' PyTorch model disagree: max |Δ logit| = {gap:.1e}"
        print(f"  = the authors' PyTorch logits to {gap:.1e}")

    accuracy, rank_table = {}, {}
    for f in FRACTIONS:
        p_f, ranks = with_plain_convs(f)
        lg = logits_of(p_f)
        accuracy[f] = float(np.mean(lg.argmax(1) == labels))
        rank_table[f] = ranks
        print(f"f = {f:.3f} (ranks {list(ranks.values())}): accuracy {accuracy[f]:.3f}")
        if f == 1:
            assert np.abs(lg - base_logits).max() < 1e-3, "full-rank truncation should reproduce the logits"
            assert accuracy[f] == base_acc, f"full rank should reproduce the accuracy: {accuracy[f]} vs {base_acc}"
    if not FAST:
        assert accuracy[FRACTIONS[0]] < accuracy[1], (
            f"rank {FRACTIONS[0]:.3f}·full should cost accuracy: {accuracy[FRACTIONS[0]]} vs {accuracy[1]}"
        )
        assert accuracy[FRACTIONS[0]] < 0.3, f"at rank {FRACTIONS[0]:.3f}·full the network should be near chance"
        assert accuracy[1 / 2] < accuracy[1] - 0.05, "even half rank should cost more than 5 points"
        assert all(a <= base_acc + 0.02 for a in accuracy.values()), (
            "truncation should not improve accuracy by > 2 points"
        )

    if plt is not None:
        fig, ax = plt.subplots(figsize=(6.5, 4.2))
        fs = list(accuracy)
        se = [100 * np.sqrt(accuracy[f] * (1 - accuracy[f]) / N_TEST) for f in fs]  # binomial standard error
        ax.errorbar(
            fs,
            [100 * accuracy[f] for f in fs],
            yerr=se,
            fmt="o-",
            capsize=3,
            label="six plain convs truncated to rank f·full\n(bars: ± 1 binomial standard error)",
        )
        ax.axhline(100 * base_acc, color="0.5", ls="--", label="untruncated")
        ax.axhline(10, color="0.8", ls=":", label="chance")
        ax.set_xscale("log", base=2)
        ax.set_xticks(fs)
        ax.set_xticklabels([f"{f:.3g}\n({rank_table[f]['layer3.0.conv2']})" for f in fs], fontsize=9)
        ax.set(
            xlabel="rank fraction f (rank of layer3.0.conv2)",
            ylabel=f"test accuracy, % ({N_TEST} images)",
            title="ResNet56-S16U1*: accuracy vs rank of its plain convs",
        )
        ax.legend(fontsize=9, loc="center left")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        save_figure(
            fig,
            "03_accuracy_vs_rank.png",
            {"fraction": fs, "accuracy": [accuracy[f] for f in fs], "untruncated": base_acc},
        )

# %% [markdown]
# Truncation is expensive. In the full run (1,000 images; each accuracy ± 1.2–1.5 points, its
# binomial standard error √(p(1 − p)/1000)), three quarters of the rank in all six layers costs
# about 6 points (82 % → 75 %), half rank about 15 points (→ 67 %), and a quarter of the rank
# or less leaves the network at chance. That matches section 3: half rank
# leaves about half of each layer's Frobenius norm behind, six such errors compound through the
# network, and the BN layers that follow each conv still expect the statistics of the
# untruncated filters. A trained network's filters are
# not low-rank enough to be cut after the fact; this is why the paper builds the decomposition
# into the architecture and *trains* the basis and coefficients from the start.
#
# ## Summary
#
# * A conv with O filters *is* "r basis filters, then an O × r coefficient matrix (1×1 conv)"
#   whenever r ≥ its rank; `decompose` finds the best such pair for a smaller r (truncated SVD),
#   with error √(Σ_{i>r} σ_i²), better than any other r-filter basis (Eckart–Young).
# * The trained plain convs are more concentrated than random matrices, but only moderately:
#   90 % of the energy needs half to four fifths of the directions, and cutting the six plain
#   convs of a trained network to half rank costs about 15 points of accuracy (no retraining).
# * In the trained S16U1 model, a single basis layer is not low-rank (17m basis filters for 16m
#   outputs); what is low-dimensional is the *stage*: eight layers' filters live in 24m
#   directions. Tutorial 04 exploits and measures exactly that: one shared basis per stage.

# %%
print(f"done in {time.perf_counter() - START:.1f} s")
