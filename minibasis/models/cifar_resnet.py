"""CIFAR-10 ResNets (depth 6n + 2) with shared filter bases, as the authors built them.

Structure (He et al. 2016, CIFAR variant; Kim & Kang's ``models/cifar10/resnet.py``):
stem 3×3 conv 3→16, BN, ReLU; three stages of n blocks at widths 16/32/64 (32/16/8 px);
the first block of every stage is a plain BasicBlock (stride 2 and the option-A shortcut in
stages 2 and 3; in stage 1 it is plain too, though its shape does not change: the authors'
choice); blocks 2…n are basis blocks; global average pooling; linear 64 → classes. In stage g
(m = 1, 2, 4) a shared basis has s·m filters and every basis layer u·m unique filters.

============  =========================  ====================================================
variant       spec                       bases in stage g
============  =========================  ====================================================
original      ``resnet56``               none: plain 3×3 convs
double        ``resnet56-s16u1``         two shared (``shared_basis_g_1`` for every block's first
                                         layer, ``shared_basis_g_2`` for every second) + unique
single        ``resnet56-single-s16u1``  one shared ``shared_basis_g`` for both layers + unique
shared_only   ``resnet56-s16u0``         two shared, no unique part
non_shared    ``resnet56-s0u1``          unique only (no sharing; trained without a regulariser)
============  =========================  ====================================================
"""

import warnings

from ..basis import orthogonality_loss, shared_orthogonality_loss
from ..layers import global_avg_pool, linear
from .blocks import basic_block, basic_block_modules, basis_block, basis_block_modules, conv, norm
from .core import Model, Module, block_stride, bn_module, conv_module
from .sharing import StageBases

WIDTHS = (16, 32, 64)
STAGE_MULTIPLIERS = (1, 2, 4)  # ranks scale with the width


class CifarResNet(Model):
    """A CIFAR-10 ResNet of a given spec (see the module docstring)."""

    standard_size = 32

    @property
    def regulariser(self):
        """The authors' train_cifar10.py function for this variant (None: plain cross-entropy)."""
        return {
            "double": "train_cifar10.py:train_basis_double",
            "single": "train_cifar10.py:train_basis_single",
            "shared_only": "train_cifar10.py:train_basis_sharedonly",
        }.get(self.spec.variant)

    def stage_bases(self):
        """Each stage's bases, used by its blocks 2…n: two shared (``shared_basis_g_1`` for every
        block's first layer, ``_2`` for every second; re-initialised jointly), one for both layers
        (``shared_basis_g``; alone), or none (NonShared); ``u·m`` unique filters per layer."""
        spec = self.spec
        if spec.variant == "original":
            return []
        stages = []
        for g, (planes, m) in enumerate(zip(WIDTHS, STAGE_MULTIPLIERS), start=1):
            shape = (spec.shared_rank * m, planes, 3, 3)
            arrays = {
                "double": [
                    ("shared_basis_1", f"shared_basis_{g}_1", shape),
                    ("shared_basis_2", f"shared_basis_{g}_2", shape),
                ],
                "shared_only": [
                    ("shared_basis_1", f"shared_basis_{g}_1", shape),
                    ("shared_basis_2", f"shared_basis_{g}_2", shape),
                ],
                "single": [("shared_basis", f"shared_basis_{g}", shape)],
            }.get(spec.variant, [])
            users = [f"layer{g}.{index}" for index in range(1, spec.blocks_per_stage)]
            init = "each" if spec.variant == "single" else "joint"
            stages.append(StageBases(f"layer{g}", arrays, users, unique_rows=spec.unique_rank * m, init=init))
        return stages

    def shared_names(self, stage):
        """Deprecated (kept for one release): ``[owner for _, owner, _ in model.stages[f"layer{stage}"].arrays]``."""
        warnings.warn("shared_names is deprecated: use model.stages[stage].arrays", DeprecationWarning, stacklevel=2)
        bases = self.stages.get(f"layer{stage}")
        return [owner for _, owner, _ in bases.arrays] if bases else []

    def basis_layer_trees(self, params, state, stage, block, layer):
        """Deprecated (kept for one release):
        ``model.basis_layer_inputs(params, state, f"layer{stage}.{block}", layer)``."""
        warnings.warn("basis_layer_trees is deprecated: use model.basis_layer_inputs", DeprecationWarning, stacklevel=2)
        return self.basis_layer_inputs(params, state, f"layer{stage}.{block}", layer)

    def build(self, image_size):
        conv1, size = conv_module("conv1", (16, 3, 3, 3), image_size, padding=1, stage="stem")
        mods, in_planes = [conv1, bn_module("bn1", 16, "stem")], 16
        for g, planes in enumerate(WIDTHS, start=1):
            stage, bases = f"layer{g}", self.stages.get(f"layer{g}")
            mods += bases.owner_modules() if bases else []
            for index in range(self.spec.blocks_per_stage):
                path = f"{stage}.{index}"
                if bases and path in bases.users:
                    mods += basis_block_modules(path, planes, bases, size)
                else:  # the authors' plain BasicBlock; option A shortcut: no modules
                    block, size = basic_block_modules(
                        path, in_planes, planes, size, stage, stride=block_stride(g, index), option_b=False
                    )
                    mods, in_planes = mods + block, planes
        return mods + [Module("fc", "linear", (self.spec.num_classes, 64), stage="head")]

    def forward(self, params, state, x, /, *, train, rng=None):
        new_state = {}
        out = conv(x, params["conv1"], padding=1)
        out, new_state["bn1"] = norm(out, params["bn1"], state["bn1"], train, relu=True)
        for g in (1, 2, 3):
            new_stage = new_state[f"layer{g}"] = {}
            bases = self.stages.get(f"layer{g}")
            for index in range(self.spec.blocks_per_stage):
                path, block_state = f"layer{g}.{index}", state[f"layer{g}"][str(index)]
                if bases and path in bases.users:
                    out, new_stage[str(index)] = basis_block(out, self.block(params, path), block_state, train, bases)
                else:
                    out, new_stage[str(index)] = basic_block(
                        out, params[f"layer{g}"][str(index)], block_state, train, stride=block_stride(g, index)
                    )
        return linear(global_avg_pool(out), params["fc"]["weight"], params["fc"]["bias"]), new_state

    def regularise(self, params):
        """train_cifar10.py's R: :func:`~minibasis.basis.orthogonality_loss` of each stage's
        shared bases with the unique bases of its basis blocks (DoubleShared, SingleShared);
        SharedOnly has no unique bases: :func:`~minibasis.basis.shared_orthogonality_loss`."""
        if self.spec.variant == "shared_only":
            return shared_orthogonality_loss(self.shared_weights(params))
        return orthogonality_loss(
            [(bases.weights(params), bases.unique_weights(params)) for bases in self.stages.values()]
        )
