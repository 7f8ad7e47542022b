# %% [markdown]
# # 04 · Sharing a basis across layers
#
# **What this teaches.** How Kim & Kang (arXiv 2006.05066, Sec. 3) turn the linear structure of
# tutorial 03 into a smaller network, and what it does and does not save. We
#
# 1. put the five ResNet56 variants side by side (parameters, multiply-accumulates, which arrays
#    are shared and by how many layers), and check the paper's counts: 853,018 parameters for
#    ResNet56, 319,226 for ResNet56-S16U1\*, which costs **more** compute than ResNet56;
# 2. decompose the trained filters of one stage into one shared basis plus small unique parts
#    with `minibasis.basis.shared_decompose`, measure the per-layer error for several (s, u),
#    and compare with the decomposition the trained network actually has;
# 3. fold a basis layer (basis conv → BN → 1×1 coefficients → BN) back into a single
#    convolution with a bias, `fold_basis_layer`, and check it against the layer.
#
# **Time.** Full mode about 2 s on an idle 2-core machine, and beside a busy process (its SVDs
# run with NumPy's BLAS on one thread, set by `tutorial_setup`); `MINIBASIS_FAST=1` about 1 s.
# Section 2 uses the authors' trained weights from `../shared/data/official/` when present and
# a freshly initialised model otherwise. Output: `04_shared_decomposition.png`
# and its plotted data (`.json`) in `MINIBASIS_FIGURES` (a temporary folder unless given; the
# committed figure: `MINIBASIS_FIGURES=tutorials/figures`, full mode).

# %%
import time
from fractions import Fraction

import numpy as np

from minibasis import conv2d
from minibasis.basis import (
    basis_layer,
    basis_layer_macs,
    basis_layer_params,
    conv_macs,
    conv_params,
    fold_basis_layer,
    shared_decompose,
)
from minibasis.models import create_model
from minibasis.tree import tree_map
from minibasis.weights import load_weights
from tutorial_setup import DATA, FAST, plt, save_figure  # this checkout's minibasis, the mode, the paths

WEIGHTS = DATA / "official" / "resnet56-double-s16u1.npz"
START = time.perf_counter()
print(f"mode: {'FAST' if FAST else 'full'}")

# %% [markdown]
# ## 1. Five ways to build ResNet56
#
# ResNet56 has three stages of 9 blocks (widths C = 16, 32, 64 at 32, 16, 8 pixels), two 3×3
# convs per block. Blocks are numbered from 0 within a stage, as in the `state_dict` keys
# (`layer1.0` … `layer1.8`). In the shared variants, block 0 of each stage stays a plain
# block and blocks 1–8 become **basis blocks**: each 3×3 conv is replaced by a basis layer,
# r basis filters (k×k conv, C → r) then coefficients (1×1 conv, r → C), each followed by BN.
# The basis of a layer is [U; S]: u·m unique filters of its own and s·m filters of a basis S
# shared by the stage (m = 1, 2, 4 by stage: the width multiplier, so the basis grows with the
# width). The variants differ in what is shared:
#
# | variant | spec | shared bases per stage |
# | --- | --- | --- |
# | ResNet56 (original) | `resnet56` | none: plain 3×3 convs |
# | DoubleShared S16U1 (the paper's S16U1\*) | `resnet56-s16u1` | two: for every block's first layer, every second |
# | SingleShared S16U1 | `resnet56-single-s16u1` | one, for both layers of every block |
# | SharedOnly S16 | `resnet56-s16u0` | two, and no unique filters |
# | NonShared U1 | `resnet56-s0u1` | none: only a unique basis of 1·m filters per layer |
#
# Why is block 0 plain? That is the authors' structure: their `ResNet_Basis._make_layer`
# (ssregibility/Net_RL2, `models/cifar10/resnet.py`) builds the first block of every stage as
# an original `BasicBlock` and the others as `BasicBlock_Basis`. In stages 2 and 3 the first
# conv of block 0 changes the width and the resolution (16 → 32 channels at stride 2, 32 → 64),
# so it could not take that stage's basis of C-channel filters; but its second conv could,
# and in stage 1 block 0 is 16 → 16 at stride 1 like every other block. Keeping all of block 0
# plain is the authors' choice, one rule for every stage, not a necessity.
#
# `model.count_params()` counts every array once (a shared basis once, at its owner);
# `model.count_macs()` counts the multiply-accumulates of one 3×32×32 image, a shared basis at
# every use. What a stage shares is one object, `model.stages["layer1"]`, a `StageBases`
# (minibasis/models/sharing.py): its shared arrays (block's name, owner's name, shape), the
# blocks that use them, and which basis layer uses which.

# %%
SPECS = {
    "ResNet56": "resnet56",
    "DoubleShared S16U1": "resnet56-s16u1",
    "SingleShared S16U1": "resnet56-single-s16u1",
    "SharedOnly S16": "resnet56-s16u0",
    "NonShared U1": "resnet56-s0u1",
}
SIZE = {1: 32, 2: 16, 3: 8}  # pixels per side in each stage


def sharing(model):
    """{shared array name: number of basis layers that use it}, from each stage's StageBases."""
    uses = {}
    for bases in model.stages.values():
        for local, owner, _ in bases.arrays:
            layers = sum(bases.layer_basis(layer) == local for layer in (1, 2))  # 1 (two bases) or 2 (one basis)
            uses[owner] = layers * len(bases.users)
    return uses


models = {label: create_model(spec) for label, spec in SPECS.items()}
base = models["ResNet56"]
print(f"{'variant':<20}{'spec':<24}{'params':>10}{'×':>6}{'MACs':>14}{'×':>6}   shared arrays")
for label, model in models.items():
    p, m = model.count_params(), model.count_macs()
    uses = sharing(model)
    shared = f"{len(uses)} arrays, used by {sorted(set(uses.values()))} layers each" if uses else "none"
    print(
        f"{label:<20}{model.spec.name:<24}{p:>10,}{p / base.count_params():>6.2f}"
        f"{m:>14,}{m / base.count_macs():>6.2f}   {shared}"
    )

s16u1 = models["DoubleShared S16U1"]
print("\nthe shared arrays of resnet56-s16u1 (shape: used by):")
for name, n in sharing(s16u1).items():
    bases = next(bases for bases in s16u1.stages.values() if any(owner == name for _, owner, _ in bases.arrays))
    shape = next(shape for _, owner, shape in bases.arrays if owner == name)
    users = bases.users
    print(f"  {name:<18}{str(shape):<18} {n} basis layers: {users[0]} … {users[-1]}")

# %% [markdown]
# The paper's numbers, and the sharing structure:

# %%
assert base.count_params() == 853_018, f"ResNet56 should have 853,018 parameters, got {base.count_params():,}"
assert s16u1.count_params() == 319_226, f"ResNet56-S16U1* should have 319,226 parameters, got {s16u1.count_params():,}"
assert s16u1.count_macs() > base.count_macs(), "S16U1 should cost MORE multiply-accumulates than ResNet56"
blocks = base.spec.blocks_per_stage - 1  # basis blocks per stage: 8
assert sharing(s16u1) == {f"shared_basis_{g}_{i}": blocks for g in (1, 2, 3) for i in (1, 2)}, sharing(s16u1)
assert sharing(models["SingleShared S16U1"]) == {f"shared_basis_{g}": 2 * blocks for g in (1, 2, 3)}
assert sharing(models["SharedOnly S16"]) == sharing(s16u1) and not sharing(models["NonShared U1"]) and not sharing(base)
print(
    f"S16U1: {s16u1.count_params() / base.count_params():.1%} of the parameters, "
    f"{s16u1.count_macs() / base.count_macs():.2f}× the MACs of ResNet56"
)

# %% [markdown]
# **Sharing saves parameters, not compute.** Where do the parameters go? Per basis layer of
# stage 1 (C = 16, m = 1) the layer *owns* its unique filter (1·16·9), its coefficients
# (17·16), and two BNs (2·17 + 2·16): 482 numbers against 16·16·9 = 2,304 for the plain conv.
# The shared basis (16·16·9 = 2,304) is paid once and used by 8 layers.
#
# Compute is a different story: every layer still runs its whole basis. A basis layer costs
#
#     H·W·(C·r·k² + r·C) = H·W·C·r·(k² + 1)    against    H·W·C²·k²    for the plain conv,
#
# a ratio (r/C)·(k² + 1)/k². For S16U1, r/C = 17/16, so each basis layer costs
# (17/16)·(10/9) = 170/144 ≈ 1.18× the conv it replaces; with the plain blocks 0, the stem
# and the classifier unchanged, the whole network costs 1.16× ResNet56. Only a smaller basis
# saves compute: S8U1 (r/C = 9/16) costs 0.63× per layer.

# %%
C, k = 16, 3
owned = basis_layer_params(C, C, 1, 16, k=k)
assert owned == 1 * C * 9 + 17 * C + 2 * 17 + 2 * C == 482, owned
print(
    f"stage 1: a basis layer owns {owned} parameters, a plain conv {conv_params(C, C, k, k):,}; the shared basis "
    f"({conv_params(C, 16, k, k):,}) is paid once for {blocks} layers"
)
for label, (s, u) in (("S16U1", (16, 1)), ("S8U1", (8, 1))):
    ratio = Fraction(basis_layer_macs(32, 32, C, C, s + u, k=k), conv_macs(32, 32, C, C, k, k))
    print(f"{label}: a basis layer costs {ratio} = {float(ratio):.3f}× the plain conv's MACs")
    assert ratio == Fraction(s + u, C) * Fraction(k * k + 1, k * k), ratio
assert Fraction(basis_layer_macs(32, 32, C, C, 17, k=k), conv_macs(32, 32, C, C, k, k)) > 1, "S16U1 layers cost more"
assert Fraction(basis_layer_macs(32, 32, C, C, 9, k=k), conv_macs(32, 32, C, C, k, k)) < 1, "S8U1 layers cost less"

# %% [markdown]
# Where the parameters of the whole model are, by kind (from `model.accounting()`, one row per
# module: name, parameters, MACs). The 48 plain convs of blocks 1–8 (774,144 parameters) are
# replaced by six shared bases, 48 unique bases and 48 coefficient matrices (236,544 in all);
# the plain blocks 0, untouched, become almost a quarter of the model.


# %%
def breakdown(model):
    groups = {}
    for name, p, _ in model.accounting():
        leaf = name.split(".")[-1] if "." in name else name
        if name.startswith("shared_basis"):
            key = "shared bases"
        elif leaf.startswith("basis_conv"):
            key = "unique bases"
        elif leaf.startswith("coeff_conv"):
            key = "coefficients"
        elif "bn" in leaf:
            key = "batch norm"
        elif name.startswith("layer") and name.split(".")[1] != "0":
            key = "plain convs, blocks 1–8"
        elif name.startswith("layer"):
            key = "plain convs, blocks 0"
        else:
            key = "stem conv + classifier"
        groups[key] = groups.get(key, 0) + p
    return groups


print(f"\n{'parameters':<28}{'ResNet56':>10}{'S16U1':>10}")
b0, b1 = breakdown(base), breakdown(s16u1)
for key in sorted(set(b0) | set(b1), key=lambda k: -max(b0.get(k, 0), b1.get(k, 0))):
    print(f"{key:<28}{b0.get(key, 0):>10,}{b1.get(key, 0):>10,}")
assert sum(b1.values()) == 319_226 and sum(b0.values()) == 853_018
assert (
    b1["shared bases"] + b1["unique bases"] + b1["coefficients"] == 236_544 and b0["plain convs, blocks 1–8"] == 774_144
)

# %% [markdown]
# ## 2. One shared basis for a whole stage
#
# Tutorial 03 found that the 8 basis layers of a stage have filters in only 24m directions.
# Can we go the other way: given the filters W_1 … W_L of L layers (same C and k), find one
# shared basis S (s filters) and per-layer unique bases U_l (u filters each) such that every
# W_l ≈ C_l · [U_l; S]? `shared_decompose(filters, s, u)` does it in one shot:
#
# * S = the top s right singular vectors of the stacked matrix [W_1; …; W_L] (the best
#   s-dimensional subspace for all layers together, by Eckart–Young);
# * U_l = the top u right singular vectors of what S misses in layer l, W_l (I − SᵀS);
# * C_l = least squares against [U_l; S].
#
# The parameter count of such a stage is s·Ck² (once) + L·(u·Ck² + O·(s + u)), against
# L·O·Ck² for L plain convs. We apply it to the effective filters W_eff (tutorial 03: the
# basis layer folded with its BNs) of the 8 first basis layers of stage 1 of the trained
# network, for a few (s, u), and report the relative error ‖W_l − Ŵ_l‖_F/‖W_l‖_F per layer.

# %%
model = s16u1
if WEIGHTS.exists():
    params, state = load_weights(WEIGHTS, model)
    SOURCE = "the authors' trained ResNet56-S16U1*"
else:
    params, state = model.init(seed=0)
    SOURCE = "a freshly initialised ResNet56-S16U1 (no trained weights found)"
    print(f"{WEIGHTS} not found: section 2 runs on {SOURCE}")


def float64(leaf):
    return None if leaf is None else np.asarray(leaf, dtype=np.float64)  # a variant without U or S has None


def layer_in_float64(params, state, g, b, layer):
    """(params, state) of basis layer `layer` (1, 2) of block b in stage g, in float64."""
    layer_params, layer_state = model.basis_layer_inputs(params, state, f"layer{g}.{b}", layer)
    return tree_map(float64, layer_params), tree_map(float64, layer_state)


def matrix(W):
    return W.reshape(W.shape[0], -1)


STAGE, LAYER = 1, 1
layers = [layer_in_float64(params, state, STAGE, b, LAYER) for b in range(1, blocks + 1)]
filters = [fold_basis_layer(lp, ls)[0] for lp, ls in layers]
print(f"{SOURCE}: stage {STAGE}, first basis layer of blocks 1–{blocks}: {len(filters)} × W_eff {filters[0].shape}")

CONFIGS = [(16, 0), (16, 1), (24, 0)] if FAST else [(4, 1), (8, 1), (8, 2), (16, 0), (16, 1), (16, 2), (20, 1), (24, 0)]
results, decompositions = {}, {}
dim = filters[0][0].size  # C·k·k = 144
for s, u in CONFIGS:
    res = decompositions[s, u] = shared_decompose(filters, s, u)
    results[s, u] = np.array(res["relative_errors"])
    n_params = s * dim + len(filters) * (u * dim + filters[0].shape[0] * (s + u))
    print(
        f"s = {s:2d}, u = {u}: {n_params:>6,} parameters ({n_params / (len(filters) * filters[0].size):.2f}× the plain "
        f"convs); relative error per layer {np.round(results[s, u], 3).tolist()}"
    )
    # what every decomposition must satisfy: S orthonormal, U_l ⟂ S, shapes as documented
    S = matrix(res["shared_basis"])
    assert np.allclose(S @ S.T, np.eye(s), atol=1e-10), "the shared basis should have orthonormal rows"
    for U, Cf in zip(res["unique_bases"], res["coefficients"]):
        if s and u:
            assert np.abs(matrix(U) @ S.T).max() < 1e-10, "unique bases should be orthogonal to S"
        assert Cf.shape == (filters[0].shape[0], s + u, 1, 1), Cf.shape
assert results[24, 0].max() < 1e-10, "s = 24 ≥ rank of the stacked filters: the decomposition should be exact"
assert np.all(results[16, 1] <= results[16, 0] + 1e-12), "adding a unique filter cannot hurt"
if not FAST:
    assert np.all(results[16, 1] <= results[4, 1] + 1e-12), "a larger shared basis cannot hurt"

# %% [markdown]
# With s = 24 the shared basis spans all 24 directions of the stack, and the decomposition is
# exact. But look at (s, u) = (16, 1): the trained network *is* such a decomposition, with zero
# error, yet `shared_decompose` leaves 14–28 % of each layer behind. The network's own bases
# are the proof: every W_eff lies exactly in the span of its layer's [U_l; S].

# %%
own_errors = []
for (lp, _), W in zip(layers, filters):
    B = np.concatenate([matrix(lp["unique_basis"]), matrix(lp["shared_basis"])])  # [U_l; S], 17 × 144
    Q = np.linalg.qr(B.T)[0]  # orthonormal basis of its span (columns)
    own_errors.append(np.linalg.norm(matrix(W) - matrix(W) @ Q @ Q.T) / np.linalg.norm(matrix(W)))
print(f"the network's own [U_l; S] (s = 16, u = 1): relative error per layer {np.array(own_errors).max():.1e} at most")
assert max(own_errors) < 1e-10, "the trained filters should lie in the span of their own [U_l; S]"
if WEIGHTS.exists():
    assert results[16, 1].min() > 0.05, (
        "the one-shot decomposition should be visibly suboptimal at (16, 1) on trained filters"
    )

# %% [markdown]
# Why does the one-shot method miss it? The top 16 singular directions of the stack are the
# best 16 directions *for all layers at once*, and the unique directions of the layers are
# large enough to pull them away from the true S; each U_l (one direction per layer) then
# cannot repair what S missed. The problem, minimise Σ_l ‖W_l − W_l P_{[U_l; S]}‖²_F over S and
# the U_l, has no closed form, but it is easy to improve by **alternating**: with S fixed, the
# best U_l is the top-u part of W_l(I − SᵀS) (what `shared_decompose` does); with the U_l fixed,
# take S as the top s directions of the stacked residuals W_l(I − U_lᵀU_l). Neither step can
# increase the error, so the total error decreases monotonically. Starting from the one-shot
# answer:


# %%
def alternate(filters, S, u, steps):
    """Alternating minimisation of Σ_l ‖W_l − W_l P_[U_l; S]‖², starting from the shared basis S."""
    mats = [matrix(W) for W in filters]
    S = matrix(S)
    s = S.shape[0]
    history, per_layer = [], None
    for _ in range(steps + 1):
        Us = []
        for M in mats:  # U step: the top u directions of what S misses, orthogonal to S
            Us.append(np.linalg.svd(M - M @ S.T @ S, full_matrices=False)[2][:u])
        per_layer = []
        for M, U in zip(mats, Us):
            Q = np.linalg.qr(np.concatenate([U, S]).T)[0]
            per_layer.append(np.linalg.norm(M - M @ Q @ Q.T) / np.linalg.norm(M))
        history.append(sum(e**2 * np.linalg.norm(M) ** 2 for e, M in zip(per_layer, mats)))
        # S step: the top s directions of the residuals once each layer's unique part is removed
        stacked = np.concatenate([M - M @ U.T @ U for M, U in zip(mats, Us)])
        S = np.linalg.svd(stacked, full_matrices=False)[2][:s]
    return np.array(per_layer), np.array(history)


STEPS = 2 if FAST else 60
refined, history = alternate(filters, decompositions[16, 1]["shared_basis"], 1, STEPS)
print(f"(16, 1) after {STEPS} alternating steps: relative error per layer {np.round(refined, 3).tolist()}")
print(f"total squared error: {history[0]:.4f} (one-shot) → {history[-1]:.2e}")
assert np.all(np.diff(history) <= 1e-9 * history[0]), "alternating steps should never increase the error"
assert history[-1] < history[0], "the alternating steps should improve on the one-shot decomposition"
if not FAST and WEIGHTS.exists():
    assert refined.max() < 0.05 < results[16, 1].min(), (
        "60 steps should recover most of the network's own decomposition"
    )

if plt is not None:
    fig, ax = plt.subplots(figsize=(11, 4.4))
    xs = np.arange(1, len(filters) + 1)
    for (s, u), errs in results.items():
        if (s, u) == (24, 0):
            continue
        ax.plot(xs, errs, "o-", ms=4, label=f"shared_decompose s={s}, u={u}")
    ax.plot(xs, refined, "k^--", ms=6, label=f"s=16, u=1 after {STEPS} alternating steps")
    floor = 3e-4  # the network's own error (~1e-16) is far below: drawn as ▼ on the floor
    ax.plot(
        xs,
        np.full(len(xs), floor),
        "kv",
        ms=8,
        clip_on=False,
        zorder=5,
        label=f"the network's own $[U_l;\\,S]$ (s=16, u=1): exact,\n"
        f"error ≤ {max(own_errors):.0e}, far below the axis (▼)",
    )
    ax.set_yscale("log")
    ax.set_ylim(floor, 1)
    ax.set(
        xlabel=f"block of stage {STAGE} (its first basis layer)",
        ylabel=r"$\|W_l - \hat W_l\|_F \,/\, \|W_l\|_F$ (log scale)",
        title=f"One shared basis for the {len(xs)} basis layers of stage {STAGE}: error per layer",
    )
    ax.legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    plotted = {f"s={s},u={u}": errs for (s, u), errs in results.items() if (s, u) != (24, 0)}
    save_figure(fig, "04_shared_decomposition.png", dict(plotted, refined=refined))  # own_errors: rounding

# %% [markdown]
# (The network's own error, ~1e-16, lies far below the plot's floor: the ▼ on the axis.) The lesson for training:
# a good shared basis is not simply "the principal directions of the layers"; the paper learns
# S and the unique parts jointly, by gradient descent, with an orthogonality regulariser on
# them (tutorial 05).
#
# ## 3. Folding a basis layer back into one convolution
#
# At inference BN uses its running statistics and is an affine map per channel: with
# a = γ / √(σ² + ε), BN(h) = a ⊙ h + (β − a ⊙ μ). Everything in a basis layer is then linear
# up to constants, so the layer *is* one k×k convolution with a bias:
#
#     y = BN₂(C ⋆₁ₓ₁ BN₁(B ⋆ x))
#       = (diag(a₂) · C · diag(a₁) · B) ⋆ x + a₂ ⊙ (C (β₁ − a₁ ⊙ μ₁) − μ₂) + β₂
#       = W_eff ⋆ x + b_eff.
#
# `fold_basis_layer(params, state)` returns (W_eff, b_eff). One subtlety: the bias is added at
# every output pixel, including those whose window overlaps the zero padding; that is right,
# because BN₁'s shift is added to the basis conv's output everywhere too. We check the fold in
# float64 on a layer of the trained network (when present) and on a freshly initialised layer
# whose BN statistics we randomise (always).

# %%
rng = np.random.default_rng(0)
x = rng.standard_normal((2, 16, 8, 8))  # stage 1: 16 channels
cases = []
if WEIGHTS.exists():
    cases.append(("trained layer1.1, first basis layer", layers[0]))
init_params, init_state = create_model("resnet56-s16u1").init(seed=1)
lp, ls = layer_in_float64(init_params, init_state, 1, 1, 1)
for bn in ("basis_bn", "bn"):
    n = ls[bn]["running_mean"].shape[0]
    lp[bn] = {"weight": rng.uniform(0.5, 1.5, n), "bias": rng.standard_normal(n)}
    ls[bn] = {
        "running_mean": rng.standard_normal(n),
        "running_var": rng.uniform(0.5, 2.0, n),
        "num_batches_tracked": np.int64(100),
    }
cases.append(("initialised layer with random BN statistics", (lp, ls)))
for label, (lp, ls) in cases:
    y_layer, new_state = basis_layer(x, lp, ls, train=False)
    W_eff, b_eff = fold_basis_layer(lp, ls)
    y_folded = conv2d(x, W_eff, padding=1) + b_eff[None, :, None, None]
    err = np.abs(y_folded - y_layer).max() / np.abs(y_layer).max()
    print(f"{label}: W_eff {W_eff.shape}, b_eff {b_eff.shape}; conv2d(x, W_eff) + b_eff vs the layer: {err:.1e}")
    assert err < 1e-10, f"{label}: the folded conv differs from the eval-mode basis layer by {err:.1e}"
    assert all(np.array_equal(new_state[bn][key], ls[bn][key]) for bn in ls for key in ls[bn]), (
        "eval mode changes no state"
    )

# %% [markdown]
# Folding makes the compute trade-off of section 1 concrete: at inference time one could fold
# every basis layer and run a plain ResNet56 (125 M MACs instead of 146 M), at the price of
# storing 8 full W_eff per stage again, i.e. giving back the parameter saving. Sharing pays off
# where parameters (memory, download size, cache) matter more than arithmetic.
#
# ## Summary
#
# * S16U1 keeps 37 % of ResNet56's parameters (319,226 vs 853,018) but costs 1.16× its MACs: a
#   basis layer runs r = 17m filters plus a 1×1 conv, (r/C)·(k² + 1)/k² = 1.18× a plain conv.
#   The saving is in the six shared arrays, each used by 8 layers (16 for SingleShared).
# * `shared_decompose` finds a shared basis + unique parts in one shot; it is exact once s + u
#   reaches the rank of the stacked filters, but not optimal below it: the trained network
#   has an exact (16, 1) decomposition that the one-shot method misses and a few alternating
#   steps recover.
# * An eval-mode basis layer is one convolution with a bias: `fold_basis_layer`.

# %%
print(f"done in {time.perf_counter() - START:.1f} s")
