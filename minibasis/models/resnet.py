"""The four-stage ResNets of the CIFAR-100 and ImageNet (ILSVRC) experiments, as the authors
built them (``models/cifar100/resnet.py``, ``models/ilsvrc/resnet.py``).

Stem: CIFAR-100 a 3×3 conv 3→64 (stride 1), BN, ReLU; ImageNet a 7×7 conv (stride 2, padding
3), BN, ReLU, 3×3 max pool (stride 2). Four stages of planes 64/128/256/512 (stride 1, 2, 2, 2
at their first block), basic blocks (ResNet18/34) or bottleneck blocks with 4× expansion
(ResNet50/101); global average pooling; linear → classes. The first block of every stage is
an original block, with an option-B shortcut (1×1 conv + BN) where the shape changes.

The shared variants replace the other blocks of each stage:

=====================  =================================  ======================================
spec                   authors' constructor               what the blocks 2…n of stage g share
=====================  =================================  ======================================
``cifar100-resnet34-single-s32u1``  ``ResNet34_SingleShared(32, 1)``  a basis ``shared_basis_g``
                       (CIFAR-100)                        (32·m filters) + 1·m unique per layer
``cifar100-resnet34-s32u0``  ``ResNet34_SharedOnly(32)``  ONE basis ``shared_basis_g`` for both layers
``cifar100-resnet34-s0u1``   ``ResNet34_NonShared(1)``    nothing (unique bases only)
``imagenet-resnet34-s48u1``  ``ResNet34_DoubleShared(48, 1)``  two bases ``shared_basis_g_1/_2``
                       (the paper's ResNet34-S48U1*)      (48·m each) + 1·m unique per layer
``imagenet-resnet34-single-s48u1``  ``ResNet34_SingleShared(48, 1)``  one basis + unique
``imagenet-resnet50-shared``  ``ResNet50_SharedSingle()``  the WHOLE 3×3 conv (planes→planes)
``imagenet-resnet50-shared++``  ``ResNet50_Shared()``     the whole 3×3 conv and the 1×1 expansion
=====================  =================================  ======================================

(m = 1, 2, 4, 8 by stage; ResNet101 likewise.) The ResNet50/101 "Shared" models share whole
convolutions, not a basis with coefficients.
"""

from ..basis import separate_orthogonality_loss, shared_orthogonality_loss
from ..conv import output_size
from ..layers import global_avg_pool, linear, max_pool2d
from .blocks import (
    basic_block,
    basic_block_modules,
    basis_block,
    basis_block_modules,
    bottleneck_block,
    bottleneck_modules,
    conv,
    norm,
)
from .core import Model, Module, block_stride, bn_module, conv_module
from .sharing import StageBases

PLANES = (64, 128, 256, 512)
STAGE_MULTIPLIERS = (1, 2, 4, 8)  # basis ranks scale with the width
BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
BOTTLENECK_DEPTHS = (50, 101)

# The authors' training-script function for each (dataset, variant) that has one.
REGULARISERS = {
    ("cifar100", "single"): "train_cifar100.py:train_basis",
    ("cifar100", "shared_only"): "train_cifar100.py:train_basis",
    ("imagenet", "double"): "train_ilsvrc.py:train_basis_double",
    ("imagenet", "single"): "train_ilsvrc.py:train_basis_single",
    ("imagenet", "shared"): "train_ilsvrc.py:train_basis_single",
    ("imagenet", "shared++"): "train_ilsvrc.py:train_basis_double_separate",
}


class ResNet(Model):
    """A CIFAR-100 or ImageNet ResNet of a given spec (see the module docstring)."""

    @property
    def standard_size(self):
        return 224 if self.spec.dataset == "imagenet" else 32

    @property
    def regulariser(self):
        return REGULARISERS.get((self.spec.dataset, self.spec.variant))

    @property
    def bottleneck(self):
        return self.spec.depth in BOTTLENECK_DEPTHS

    def stage_bases(self):
        """What the blocks 2…n of each stage share: bases (``shared_basis_g_1``/``_2`` with unique
        filters, re-initialised jointly: DoubleShared; ``shared_basis_g``: SingleShared, SharedOnly;
        none: NonShared) or whole convs (the 3×3 ``shared_basis_g``; Shared++ also the 1×1
        expansion ``shared_basis_g_2``), each re-initialised orthogonally alone."""
        spec = self.spec
        if spec.variant == "original":
            return []
        stages = []
        for g, (planes, m, blocks) in enumerate(zip(PLANES, STAGE_MULTIPLIERS, BLOCKS[spec.depth]), start=1):
            basis = (spec.shared_rank * m, planes, 3, 3)
            arrays = {
                "double": [
                    ("shared_basis_1", f"shared_basis_{g}_1", basis),
                    ("shared_basis_2", f"shared_basis_{g}_2", basis),
                ],
                "single": [("shared_basis", f"shared_basis_{g}", basis)],
                "shared_only": [("shared_basis", f"shared_basis_{g}", basis)],
                "shared": [("shared_basis", f"shared_basis_{g}", (planes, planes, 3, 3))],
                "shared++": [
                    ("shared_basis_1", f"shared_basis_{g}_1", (planes, planes, 3, 3)),
                    ("shared_basis_2", f"shared_basis_{g}_2", (4 * planes, planes, 1, 1)),
                ],
            }.get(spec.variant, [])
            users = [f"layer{g}.{index}" for index in range(1, blocks)]
            init = "joint" if spec.variant == "double" else "each"
            stages.append(StageBases(f"layer{g}", arrays, users, unique_rows=spec.unique_rank * m, init=init))
        return stages

    def build(self, image_size):
        spec = self.spec
        if spec.dataset == "imagenet":
            conv1, size = conv_module("conv1", (64, 3, 7, 7), image_size, stride=2, padding=3, stage="stem")
            size = output_size(size, 3, 2, 1)  # the 3×3 / 2 max pool
        else:
            conv1, size = conv_module("conv1", (64, 3, 3, 3), image_size, padding=1, stage="stem")
        mods, in_planes = [conv1, bn_module("bn1", 64, "stem")], 64
        for g, (planes, blocks) in enumerate(zip(PLANES, BLOCKS[spec.depth]), start=1):
            stage, bases = f"layer{g}", self.stages.get(f"layer{g}")
            mods += bases.owner_modules() if bases else []
            for index in range(blocks):
                path, stride = f"{stage}.{index}", block_stride(g, index)
                if self.bottleneck:
                    block, size = bottleneck_modules(path, in_planes, planes, size, stage, stride=stride, bases=bases)
                    mods, in_planes = mods + block, 4 * planes
                elif bases and path in bases.users:
                    mods += basis_block_modules(path, planes, bases, size)
                else:
                    block, size = basic_block_modules(path, in_planes, planes, size, stage, stride=stride)
                    mods, in_planes = mods + block, planes
        return mods + [Module("fc", "linear", (spec.num_classes, in_planes), stage="head")]

    def forward(self, params, state, x, /, *, train, rng=None):
        new_state = {}
        if self.spec.dataset == "imagenet":
            out = conv(x, params["conv1"], stride=2, padding=3)
            out, new_state["bn1"] = norm(out, params["bn1"], state["bn1"], train, relu=True)
            out = max_pool2d(out, kernel_size=3, stride=2, padding=1)
        else:
            out = conv(x, params["conv1"], padding=1)
            out, new_state["bn1"] = norm(out, params["bn1"], state["bn1"], train, relu=True)
        for g, blocks in enumerate(BLOCKS[self.spec.depth], start=1):
            new_stage = new_state[f"layer{g}"] = {}
            bases = self.stages.get(f"layer{g}")
            for index in range(blocks):
                path, block_state, stride = f"layer{g}.{index}", state[f"layer{g}"][str(index)], block_stride(g, index)
                if self.bottleneck:
                    out, new_stage[str(index)] = bottleneck_block(
                        out, self.block(params, path), block_state, train, stride=stride
                    )
                elif bases and path in bases.users:
                    out, new_stage[str(index)] = basis_block(out, self.block(params, path), block_state, train, bases)
                else:
                    out, new_stage[str(index)] = basic_block(
                        out, params[f"layer{g}"][str(index)], block_state, train, stride=stride
                    )
        return linear(global_avg_pool(out), params["fc"]["weight"], params["fc"]["bias"]), new_state

    def regularise(self, params):
        """train_cifar100.py's ``train_basis`` and train_ilsvrc.py's ``train_basis_single`` /
        ``train_basis_double``: :func:`~minibasis.basis.shared_orthogonality_loss` of each
        stage's shared weights (unique bases are not regularised); ``train_basis_double_separate``
        (Shared++): :func:`~minibasis.basis.separate_orthogonality_loss`."""
        if self.regulariser.endswith("double_separate"):
            return separate_orthogonality_loss(
                self.shared_weights(params, index=1), self.shared_weights(params, index=2)
            )
        return shared_orthogonality_loss(self.shared_weights(params))
