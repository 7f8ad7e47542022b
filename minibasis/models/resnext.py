"""ResNeXt50 (32×4d) for CIFAR-100 and its shared variant, as the authors built them
(``models/cifar100/resnext.py``; Xie et al. 2017).

Stem: 3×3 conv 3→64, BN, ReLU. Four stages of 3, 4, 6, 3 bottleneck blocks of planes
64/128/256/512 (stride 1, 2, 2, 2 at their first block) and width 2·planes (32 groups of 4):

    BottleNeck:             1×1 conv (width) → BN → ReLU → 3×3 conv, 32 groups (stride) → BN → ReLU
                            → 1×1 conv (4·planes) → BN, + shortcut, ReLU
    BottleNeck_SingleShared: 1×1 conv (width) → BN → ReLU → [U; S] 3×3 basis conv → BN → ReLU
                            → 1×1 conv (4·planes) → BN, + x, ReLU

(the shortcut: a 1×1 conv + BN where the shape changes, else x); then a 4×4 average pool (the
authors' ``F.avg_pool2d(out, 4)``: the whole map of a 32 px image) and linear 2048 → classes.

In ``cifar100-resnext50-single-s{S}u{U}`` the blocks 2…n of stage g (m = 1, 2, 4, 8) replace the
grouped 3×3 conv with a basis conv of rank (S + U)·m: the stage's shared basis
``shared_basis_g`` (S·m filters, a conv of S/4 groups) beside U·m unique filters of the block's
own (``basis_conv2``, a conv of U·m/4 groups); the 1×1 ``conv3`` is the basis layer's
coefficients. Both bases are grouped, in different groups, so ``[U; S]`` is two convs
(:func:`~minibasis.basis.basis_conv`). The shared bases are re-initialised orthogonally, one at
a time; everything else keeps PyTorch's default init.
"""

from .. import checks
from ..basis import basis_conv, shared_orthogonality_loss
from ..layers import avg_pool2d, linear, relu
from .blocks import conv, norm, shortcut
from .core import Model, Module, block_stride, bn_module, conv_module
from .sharing import StageBases
from .spec import resnext_groups

PLANES = (64, 128, 256, 512)
BLOCKS = (3, 4, 6, 3)
STAGE_MULTIPLIERS = (1, 2, 4, 8)  # basis ranks scale with the width
GROUPS = 32  # cardinality
EXPANSION = 4
POOL = 4  # the authors' F.avg_pool2d(out, 4)


def width(planes):
    """The bottleneck's inner width, ``int(planes · base_width / 64) · groups`` = 2·planes."""
    return planes * 4 // 64 * GROUPS


class ResNeXt(Model):
    """A CIFAR-100 ResNeXt50 of a given spec (see the module docstring)."""

    standard_size = 32
    conv_init = "pytorch_default"

    @property
    def regulariser(self):
        return "train_cifar100.py:train_basis" if self.spec.variant == "single" else None

    def stage_bases(self):
        """The blocks 2…n of each stage share ``shared_basis_g``: S·m filters, S/4 groups."""
        if self.spec.variant == "original":
            return []
        s, u, stages = self.spec.shared_rank, self.spec.unique_rank, []
        for g, (planes, blocks, m) in enumerate(zip(PLANES, BLOCKS, STAGE_MULTIPLIERS), start=1):
            shape = (s * m, width(planes) // resnext_groups(s, m, shared=True), 3, 3)
            users = [f"layer{g}.{index}" for index in range(1, blocks)]
            stages.append(
                StageBases(
                    f"layer{g}", [("shared_basis", f"shared_basis_{g}", shape)], users, unique_rows=u * m, init="each"
                )
            )
        return stages

    def build(self, image_size):
        conv1, size = conv_module("conv1", (64, 3, 3, 3), image_size, padding=1, stage="stem")
        mods, in_planes = [conv1, bn_module("bn1", 64, "stem")], 64
        for g, (planes, blocks, m) in enumerate(zip(PLANES, BLOCKS, STAGE_MULTIPLIERS), start=1):
            stage, bases = f"layer{g}", self.stages.get(f"layer{g}")
            mods += bases.owner_modules() if bases else []
            for index in range(blocks):
                path = f"{stage}.{index}"
                if bases and path in bases.users:
                    mods += self.basis_block_modules(path, planes, m, bases, size)
                else:
                    block, size = bottleneck_modules(
                        path, in_planes, planes, size, stage, stride=block_stride(g, index)
                    )
                    mods, in_planes = mods + block, EXPANSION * planes
        return mods + [Module("linear", "linear", (self.spec.num_classes, in_planes), stage="head")]

    def basis_block_modules(self, path, planes, m, bases, size):
        """BottleNeck_SingleShared: shared_basis (the use), conv1, bn1, basis_conv2, bn2, conv3, bn3."""
        stage, unique, rank = (
            bases.stage,
            self.spec.unique_rank * m,
            (self.spec.unique_rank + self.spec.shared_rank) * m,
        )
        inner, groups = width(planes), resnext_groups(self.spec.unique_rank, m, shared=False)
        return [
            bases.use(path, "shared_basis", size, padding=1)[0],
            conv_module(f"{path}.conv1", (inner, EXPANSION * planes, 1, 1), size, stage=stage)[0],
            bn_module(f"{path}.bn1", inner, stage),
            conv_module(
                f"{path}.basis_conv2", (unique, inner // groups, 3, 3), size, padding=1, stage=stage, groups=groups
            )[0],
            bn_module(f"{path}.bn2", rank, stage),
            conv_module(f"{path}.conv3", (EXPANSION * planes, rank, 1, 1), size, stage=stage)[0],
            bn_module(f"{path}.bn3", EXPANSION * planes, stage),
        ]

    def forward(self, params, state, x, /, *, train, rng=None):
        new_state = {}
        out = conv(x, params["conv1"], padding=1)
        out, new_state["bn1"] = norm(out, params["bn1"], state["bn1"], train, relu=True)
        for g, blocks in enumerate(BLOCKS, start=1):
            new_stage = new_state[f"layer{g}"] = {}
            for index in range(blocks):
                path, block_state = f"layer{g}.{index}", state[f"layer{g}"][str(index)]
                if self.stage_of(path):
                    out, new_stage[str(index)] = basis_bottleneck(out, self.block(params, path), block_state, train)
                else:
                    out, new_stage[str(index)] = bottleneck(
                        out, self.block(params, path), block_state, train, stride=block_stride(g, index)
                    )
        return linear(pooled_features(out), params["linear"]["weight"], params["linear"]["bias"]), new_state

    def regularise(self, params):
        """train_cifar100.py's ``train_basis``: :func:`~minibasis.basis.shared_orthogonality_loss`
        of shared_basis_1…4 (rows: each filter of C/groups·3·3 values)."""
        return shared_orthogonality_loss(self.shared_weights(params))


def pooled_features(out):
    """The authors' ``F.avg_pool2d(out, 4)``, flattened: 2048 features when the last map is 4…7 px
    (the whole map of a 32 px image; of a larger one, its top-left 4×4 window, as theirs)."""
    pooled = avg_pool2d(out, kernel_size=POOL)
    if pooled.shape[2:] != (1, 1):
        checks.fail(
            "x",
            "images of 25 to 56 px, whose last map (4–7 px) pools to 1×1 for the linear layer",
            f"a {out.shape[2]}×{out.shape[3]} last map",
        )
    return pooled[:, :, 0, 0]


def bottleneck(x, params, state, train, *, stride):
    """The authors' BottleNeck (``residual_function`` 0 conv, 1 BN, 3 grouped conv, 4 BN, 6 conv,
    7 BN), + the shortcut, ReLU."""
    fn, fn_state, new = params["residual_function"], state["residual_function"], {}
    out = conv(x, fn["0"])
    out, new["1"] = norm(out, fn["1"], fn_state["1"], train, relu=True)
    out = conv(out, fn["3"], stride=stride, padding=1, groups=GROUPS)
    out, new["4"] = norm(out, fn["4"], fn_state["4"], train, relu=True)
    out = conv(out, fn["6"])
    out, new["7"] = norm(out, fn["7"], fn_state["7"], train)
    skip, skip_state = shortcut(x, params, state, train, stride=stride, out_channels=out.shape[1])
    new_state = {"residual_function": new, **({"shortcut": skip_state} if skip_state else {})}
    return relu(out + skip), new_state


def basis_bottleneck(x, params, state, train):
    """The authors' BottleNeck_SingleShared: 1×1 conv → BN → ReLU → ``[U; S] ∗`` (U the block's
    ``basis_conv2``, S the stage's ``shared_basis``, each a grouped conv) → BN → ReLU → 1×1
    ``conv3`` (the coefficients) → BN, + x, ReLU."""
    new = {}
    out = conv(x, params["conv1"])
    out, new["bn1"] = norm(out, params["bn1"], state["bn1"], train, relu=True)
    unique, shared = params["basis_conv2"]["weight"], params["shared_basis"]["weight"]
    channels = out.shape[1]  # a grouped conv's groups: its input channels / the weight's per group
    out = basis_conv(
        out,
        unique,
        shared,
        padding=1,
        unique_groups=channels // unique.shape[1],
        shared_groups=channels // shared.shape[1],
    )
    out, new["bn2"] = norm(out, params["bn2"], state["bn2"], train, relu=True)
    out = conv(out, params["conv3"])
    out, new["bn3"] = norm(out, params["bn3"], state["bn3"], train)
    return relu(out + x), new


def bottleneck_modules(path, in_planes, planes, size, stage, *, stride):
    """BottleNeck's modules: residual_function.0/1/3/4/6/7 (+ shortcut.0/1). -> (modules, size)."""
    fn, inner, out_planes = f"{path}.residual_function", width(planes), EXPANSION * planes
    reduce, _ = conv_module(f"{fn}.0", (inner, in_planes, 1, 1), size, stage=stage)
    grouped, out = conv_module(
        f"{fn}.3", (inner, inner // GROUPS, 3, 3), size, stride=stride, padding=1, stage=stage, groups=GROUPS
    )
    expand, _ = conv_module(f"{fn}.6", (out_planes, inner, 1, 1), out, stage=stage)
    mods = [
        reduce,
        bn_module(f"{fn}.1", inner, stage),
        grouped,
        bn_module(f"{fn}.4", inner, stage),
        expand,
        bn_module(f"{fn}.7", out_planes, stage),
    ]
    if stride != 1 or in_planes != out_planes:
        skip, _ = conv_module(f"{path}.shortcut.0", (out_planes, in_planes, 1, 1), size, stride=stride, stage=stage)
        mods += [skip, bn_module(f"{path}.shortcut.1", out_planes, stage)]
    return mods, out
