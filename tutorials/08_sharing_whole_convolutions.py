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
#    what each block that uses it would get from its own copy.
#
# **Time.** About 5 s, in full mode and with `MINIBASIS_FAST=1` alike. No figures.

# %%
import autograd
import numpy as np

from tutorial_setup import FAST  # this checkout's minibasis, the mode, the paths
from minibasis.layers import cross_entropy
from minibasis.models import create_model
from minibasis.testing import check_gradients
from minibasis.tree import flatten, tree_map

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
        print(f"    {owner:<18} {kind:<20} used by {len(users)} blocks: {users[0].rsplit('.', 1)[0]} … {users[-1].rsplit('.', 1)[0]}")

r50 = shared_arrays(create_model("imagenet-resnet50-shared++"))
assert r50["shared_basis_3_1"][0] == (256, 256, 3, 3) and len(r50["shared_basis_3_1"][1]) == 5, "stage 3 (6 blocks) shares its 3×3 conv among blocks 1–5"
assert r50["shared_basis_3_2"][0] == (1024, 256, 1, 1), "Shared++ also shares the 1×1 expansion, 256 → 1024"
mb = shared_arrays(create_model("imagenet-mobilenetv2-shared++"))
assert mb["shared_basis_2_1"][0] == (384, 64, 1, 1) and mb["shared_basis_2_2"][0] == (64, 384, 1, 1), "MobileNetV2 stage 4: expansion ×6 and projection"
assert len(mb["shared_basis_2_1"][1]) == 3, "stage 4 has 4 blocks; blocks 1–3 share"

# %% [markdown]
# ## 2. Parameters and MACs
#
# Unique trainable parameters (a shared array once) against the paper's table, and the MACs of
# one 224×224 image (a shared conv at every use), against the original model of each family.

# %%
PAPER_MILLIONS = {"ResNet34-S48U1*": 11.79, "ResNet50-Shared": 20.51, "ResNet50-Shared++": 18.26, "ResNet101-Shared": 29.47, "MobileNetV2-Shared": 3.24, "MobileNetV2-Shared++": 2.98}
ORIGINAL = {"ResNet34": "imagenet-resnet34", "ResNet50": "imagenet-resnet50", "ResNet101": "imagenet-resnet101", "MobileNetV2": "imagenet-mobilenetv2"}
print(f"{'model':<22}{'params':>13}{'paper':>8}{'× original':>12}{'MACs':>16}{'× original':>12}")
for label, spec in SPECS.items():
    model = create_model(spec)
    base = create_model(ORIGINAL[label.split("-")[0]])
    params, macs = model.count_params(), model.count_macs()
    paper = PAPER_MILLIONS.get(label)
    paper_text = f"{paper:.2f}" if paper else "—"
    print(f"{label:<22}{params:>13,}{paper_text:>8}{params / base.count_params():>12.2f}{macs:>16,}{macs / base.count_macs():>12.4f}")
    if paper is not None:
        assert round(params / 1e6, 2) == paper, f"{label}: {params:,} parameters, the paper says {paper}M"
    if "Shared" in label and "S48" not in label:
        assert abs(macs / base.count_macs() - 1) < 1e-5, "sharing whole convs saves parameters, not a single MAC"

# ECA's 1-D convolutions are the only MACs MobileNetV2-Shared++ adds: 1,792 of 313.6 million.
assert create_model("imagenet-mobilenetv2-shared++").count_macs() - create_model("imagenet-mobilenetv2").count_macs() == 1_792

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
print(f"{model.regulariser} = {float(model.orthogonality(params)):.4f} at initialisation (PyTorch's default init, not orthogonal)")


def loss(params):
    logits, _ = model.apply(params, state, x, train=True)
    return cross_entropy(logits, labels) + 10.0 * model.orthogonality(params)


grads = autograd.grad(loss)(params)
worst = check_gradients(loss, params, mode="directional", directions=2, rtol=1e-5, atol=1e-8)
print(f"gradient against central finite differences, 2 random directions through all {model.count_params():,} parameters: worst relative error {worst:.1e}")

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
