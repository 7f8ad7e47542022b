# %% [markdown]
# # 08 · Sharing whole convolutions: the ImageNet models
#
# **What this teaches.** On ImageNet the authors share more than filter bases. ResNet34-S48U1\*
# is the basis form of tutorial 04 (two shared bases per stage plus unique filters), but
# ResNet50/101-Shared and MobileNetV2-Shared share **whole convolutions**: every block of a
# stage but the first uses *the same* 3×3 conv (ResNet50-Shared), the same 3×3 and 1×1
# expansion convs (Shared++), the same 1×1 expansion (MobileNetV2-Shared) or expansion and
# projection (Shared++, whose shared blocks also end with ECA channel attention). We
#
# 1. list which arrays each model shares and how many blocks use each, read off the model's
#    modules (the authors' `state_dict` lists a shared conv under its owner and again under
#    every block that uses it);
# 2. count parameters and MACs: the paper's table (11.79M, 20.51M, 18.26M, 29.47M, 3.24M,
#    2.98M), and sharing whole convs leaves the MACs exactly where they were;
# 3. run MobileNetV2-Shared++ forward and backward at a small image size, check its gradient
#    against finite differences, and see that the gradient of a shared conv is the **sum** of
#    what each block that uses it would get from its own copy;
# 4. see where the CIFAR-100 DenseNet121 shares its basis, in each dense block, and the
#    parameter count falling with the basis' rank.
#
# **Time.** About 5 s, in full mode and with `MINIBASIS_FAST=1` alike. No figures.

# %%
import autograd
import numpy as np

from minibasis.layers import cross_entropy
from minibasis.models import create_model
from minibasis.testing import check_gradients
from minibasis.tree import flatten, tree_map
from tutorial_setup import FAST  # this checkout's minibasis, the mode, the paths

print(f"mode: {'FAST' if FAST else 'full'}")

# %% [markdown]
# ## 1. What each model shares
#
# `model.stages` holds, per stage, what its blocks share: a `StageBases` (minibasis/models/sharing.py)
# with the arrays (the block's name for each, the owner's name, the shape) and the blocks that
# use them: `layer1.1.shared_basis_1` is block `layer1.1`'s name for `shared_basis_1_1`.

# %%
SPECS = {
    "ResNet34-S48U1*": "imagenet-resnet34-s48u1",
    "ResNet50-Shared": "imagenet-resnet50-shared",
    "ResNet50-Shared++": "imagenet-resnet50-shared++",
    "ResNet101-Shared": "imagenet-resnet101-shared",
    "ResNet101-Shared++": "imagenet-resnet101-shared++",
    "MobileNetV2-Shared": "imagenet-mobilenetv2-shared",
    "MobileNetV2-Shared++": "imagenet-mobilenetv2-shared++",
}


def shared_arrays(model):
    """{owner name: (weight shape, [the block modules that use it])}."""
    return {
        owner: (shape, [f"{user}.{local}" for user in bases.users])
        for bases in model.stages.values()
        for local, owner, shape in bases.arrays
    }


for label, spec in SPECS.items():
    model = create_model(spec)
    shared = shared_arrays(model)
    print(f"{label} ({spec}): {len(shared)} shared arrays; the first two:")
    for owner, (shape, users) in list(shared.items())[:2]:
        kind = f"{shape[2]}×{shape[3]} conv {shape[1]}→{shape[0]}"
        print(
            f"    {owner:<18} {kind:<20} used by {len(users)} blocks: "
            f"{users[0].rsplit('.', 1)[0]} … {users[-1].rsplit('.', 1)[0]}"
        )

r50 = shared_arrays(create_model("imagenet-resnet50-shared++"))
assert r50["shared_basis_3_1"][0] == (256, 256, 3, 3) and len(r50["shared_basis_3_1"][1]) == 5, (
    "stage 3 (6 blocks) shares its 3×3 conv among blocks 1–5"
)
assert r50["shared_basis_3_2"][0] == (1024, 256, 1, 1), "Shared++ also shares the 1×1 expansion, 256 → 1024"
mb = shared_arrays(create_model("imagenet-mobilenetv2-shared++"))
assert mb["shared_basis_2_1"][0] == (384, 64, 1, 1) and mb["shared_basis_2_2"][0] == (64, 384, 1, 1), (
    "MobileNetV2 stage 4: expansion ×6 and projection"
)
assert len(mb["shared_basis_2_1"][1]) == 3, "stage 4 has 4 blocks; blocks 1–3 share"

# %% [markdown]
# ## 2. Parameters and MACs
#
# Unique trainable parameters (a shared array once) against the paper's table, and the MACs of
# one 224×224 image (a shared conv at every use), against the original model of each family.

# %%
PAPER_MILLIONS = {
    "ResNet34-S48U1*": 11.79,
    "ResNet50-Shared": 20.51,
    "ResNet50-Shared++": 18.26,
    "ResNet101-Shared": 29.47,
    "MobileNetV2-Shared": 3.24,
    "MobileNetV2-Shared++": 2.98,
}
ORIGINAL = {
    "ResNet34": "imagenet-resnet34",
    "ResNet50": "imagenet-resnet50",
    "ResNet101": "imagenet-resnet101",
    "MobileNetV2": "imagenet-mobilenetv2",
}
print(f"{'model':<22}{'params':>13}{'paper':>8}{'× original':>12}{'MACs':>16}{'× original':>12}")
for label, spec in SPECS.items():
    model = create_model(spec)
    base = create_model(ORIGINAL[label.split("-")[0]])
    params, macs = model.count_params(), model.count_macs()
    paper = PAPER_MILLIONS.get(label)
    paper_text = f"{paper:.2f}" if paper else "—"
    print(
        f"{label:<22}{params:>13,}{paper_text:>8}{params / base.count_params():>12.2f}"
        f"{macs:>16,}{macs / base.count_macs():>12.4f}"
    )
    if paper is not None:
        assert round(params / 1e6, 2) == paper, f"{label}: {params:,} parameters, the paper says {paper}M"
    if "Shared" in label and "S48" not in label:
        assert abs(macs / base.count_macs() - 1) < 1e-5, "sharing whole convs saves parameters, not a single MAC"

# ECA's 1-D convolutions are the only MACs MobileNetV2-Shared++ adds: 1,792 of 313.6 million.
assert (
    create_model("imagenet-mobilenetv2-shared++").count_macs() - create_model("imagenet-mobilenetv2").count_macs()
    == 1_792
)

# %% [markdown]
# ## 3. Forward, backward, and the gradient of a shared conv
#
# MobileNetV2-Shared++ in float64 on four random 64×64 images, cross-entropy plus λ·R with the
# authors' `train_basis_double_separate` regulariser. (Smaller inputs work too, but at 32×32 the
# last stages see 1×1 maps: training-mode BN then normalises 2 values per channel, the loss
# turns steep and central differences stop being a fair judge.)

# %%
model = create_model("imagenet-mobilenetv2-shared++", num_classes=10)
params, state = model.init(seed=0, dtype=np.float64)
rng = np.random.default_rng(1)
x, labels = rng.standard_normal((4, 3, 64, 64)), np.array([3, 7, 0, 9])
print(
    f"{model.regulariser} = {float(model.orthogonality(params)):.4f} at initialisation "
    "(PyTorch's default init, not orthogonal)"
)


def loss(params):
    logits, _ = model.apply(params, state, x, train=True)
    return cross_entropy(logits, labels) + 10.0 * model.orthogonality(params)


grads = autograd.grad(loss)(params)
worst = check_gradients(loss, params, mode="directional", directions=2, rtol=1e-5, atol=1e-8)
print(
    "gradient against central finite differences, 2 random directions through all "
    f"{model.count_params():,} parameters: worst relative error {worst:.1e}"
)

# %% [markdown]
# Untie the expansion conv of stage 4: give each of its three blocks a copy of its own, take
# the gradient with respect to the copies, and add them up. That is the tied gradient: a shared
# array receives the sum of what every use contributes (autograd adds them, as PyTorch does).

# %%
owner, (_, users) = "shared_basis_2_1", mb["shared_basis_2_1"]
blocks = [user.rsplit(".", 1)[0] for user in users]


class Untied(type(model)):
    """The same model, but the blocks of ``copies`` use their own array for the shared conv."""

    def block(self, params, path):
        node = super().block(params, path)
        return {**node, **self.copies.get(path, {})}


untied = Untied(model.spec)


def untied_loss(copies):
    untied.copies = {block: {"shared_basis1": {"weight": copies[block]}} for block in blocks}
    logits, _ = untied.apply(params, state, x, train=True)
    # R reads the owner (not the copies): its gradient is the owner's own term, added below.
    return cross_entropy(logits, labels) + 10.0 * untied.orthogonality(params)


per_block = autograd.grad(untied_loss)({block: params[owner]["weight"] for block in blocks})
R_only = autograd.grad(lambda p: 10.0 * model.orthogonality(p))(params)[owner]["weight"]
summed = sum(per_block.values()) + R_only
error = np.abs(summed - grads[owner]["weight"]).max() / np.abs(grads[owner]["weight"]).max()
for block in blocks:
    print(f"  ‖∂L/∂(copy in {block})‖ = {np.linalg.norm(per_block[block]):.4f}")
print(f"  ‖∂L/∂{owner}‖ = {np.linalg.norm(grads[owner]['weight']):.4f} = ‖Σ copies + ∂(λR)‖ to {error:.1e}")
assert error < 1e-12, "the shared conv's gradient is the sum over the blocks that use it (plus R's)"
assert all(np.linalg.norm(g) > 0 for g in per_block.values()), "every block contributes"
unchanged = tree_map(lambda a, b: np.array_equal(a, b), params, model.init(seed=0, dtype=np.float64)[0])
assert all(flatten(unchanged).values()), "nothing was modified in place"

# %% [markdown]
# ## 4. Where the basis is shared in a DenseNet
#
# The authors' CIFAR-100 DenseNet121 shares a *basis*, as the ResNets of tutorial 04 do, but
# along a dense block rather than a stage: in each dense block, **every layer's 3×3 conv**
# becomes `[U; S] ∗` (U: 1 unique filter of the layer's own, S: 16 filters of the block's basis)
# followed by BN and 1×1 coefficients (32 maps). The 1×1 convs before it are not shared. Two
# quirks of their code show in `model.stages`: PyTorch names each basis after its first user
# (the block's first layer), and their loop hands the last dense block the third block's basis,
# so `shared_basis_4` is registered (and regularised) but used by no layer.

# %%
dense = create_model("cifar100-densenet121-single-s16u1")
for bases in dense.stages.values():
    ((local, owner, shape),) = bases.arrays
    layers = list(bases.users) + ([owner.rsplit(".", 1)[0]] if owner.startswith("features") else [])  # the owner's too
    blocks = sorted({layer.split(".")[1] for layer in layers})
    print(
        f"  {bases.stage}: {owner} {shape}, also listed as {bases.aliases or '—'}; "
        f"{len(layers)} layers in {', '.join(blocks) or 'no block'}"
    )
assert len(dense.stages["dense2"].users) == 23 + 16, "block 2's basis: its 24 layers (one owns it) and block 3's 16"
assert dense.stages["dense3"].users == (), "shared_basis_4: no layer uses it"

# %% [markdown]
# The parameter count falls with the rank of the basis, block by block; the plain 3×3 conv of a
# dense layer has 32·128·9 = 36,864 weights, its basis layer 1·128·9 (U) + 2·17 (BN) + 32·17
# (coefficients) = 1,730 of its own, plus one 16·128·9 = 18,432 basis per block.

# %%
plain = create_model("cifar100-densenet121")


def per_block(model):
    """{dense block: parameters}: its layers and its basis (dense3: the unused shared_basis_4)."""
    totals = {}
    for mod in model.modules:
        if mod.stage.startswith("dense"):
            totals[mod.stage] = totals.get(mod.stage, 0) + mod.count_params()
    return totals


print(f"{'spec':<36}" + "".join(f"{f'dense{i}':>11}" for i in range(4)) + f"{'total':>12}")
counts = []
for spec in (
    "cifar100-densenet121",
    "cifar100-densenet121-single-s32u1",
    "cifar100-densenet121-single-s16u1",
    "cifar100-densenet121-single-s8u1",
):
    model = create_model(spec)
    counts.append(model.count_params())
    print(f"{spec:<36}" + "".join(f"{n:>11,}" for n in per_block(model).values()) + f"{model.count_params():>12,}")
assert counts == sorted(counts, reverse=True), "fewer basis filters, fewer parameters"
assert (dense.count_params(), plain.count_params()) == (5_084_504, 7_048_548), "the authors' 5.08M, DenseNet121's 7.05M"
