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

from ..basis import orthogonality_loss, shared_orthogonality_loss
from ..layers import global_avg_pool, linear
from .blocks import basic_block, basic_block_modules, basis_block, basis_block_modules, basis_layer_trees, conv, norm
from .core import Model, Module, bn_module, conv_module, shared_module

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

    def shared_names(self, stage):
        """Model-level names of stage ``stage``'s shared bases, in registration order."""
        if self.spec.variant in ("double", "shared_only"):
            return [f"shared_basis_{stage}_1", f"shared_basis_{stage}_2"]
        return [f"shared_basis_{stage}"] if self.spec.variant == "single" else []

    def basis_layer_trees(self, params, state, stage, block, layer):
        """``(params, state)`` of basis layer ``layer`` (1 or 2) of ``block`` in ``stage``, as
        :func:`minibasis.basis.basis_layer` (and ``fold_basis_layer``) take them."""
        path = f"layer{stage}.{block}"
        return basis_layer_trees(self.view(params, path), state[f"layer{stage}"][str(block)], layer)

    def build(self, image_size):
        spec = self.spec
        conv1, size = conv_module("conv1", (16, 3, 3, 3), image_size, padding=1, group="stem")
        mods, in_planes = [conv1, bn_module("bn1", 16, "stem")], 16
        for stage_index, (planes, m) in enumerate(zip(WIDTHS, STAGE_MULTIPLIERS), start=1):
            stage, rows = f"layer{stage_index}", spec.shared_rank * m
            owners = self.shared_names(stage_index)
            mods += [shared_module(name, (rows, planes, 3, 3), stage) for name in owners]
            locals_ = ["shared_basis"] if spec.variant == "single" else ["shared_basis_1", "shared_basis_2"][: len(owners)]
            for index in range(spec.blocks_per_stage):
                path = f"{stage}.{index}"
                if index == 0 or spec.variant == "original":  # option A shortcut: no modules
                    block, size = basic_block_modules(path, in_planes, planes, size, stage, stride=2 if stage_index > 1 and index == 0 else 1, option_b=False)
                    mods, in_planes = mods + block, planes
                else:
                    shared = [(local, owner, rows) for local, owner in zip(locals_, owners)]
                    mods += basis_block_modules(path, planes, spec.unique_rank * m, shared, size, stage)
        return mods + [Module("fc", "linear", (self.spec.num_classes, 64), group="head")]

    def orthogonal_groups(self):
        """Shared bases re-initialised orthogonally: a stage's two jointly (DoubleShared,
        SharedOnly: orthogonal to each other too), SingleShared's one at a time."""
        return [self.shared_names(g) for g in (1, 2, 3) if self.shared_names(g)]

    def forward(self, params, state, x, /, *, train, rng=None):
        new_state = {}
        out = conv(x, params["conv1"], padding=1)
        out, new_state["bn1"] = norm(out, params["bn1"], state["bn1"], train, relu=True)
        for stage in (1, 2, 3):
            new_stage = new_state[f"layer{stage}"] = {}
            for index in range(self.spec.blocks_per_stage):
                path, block_state = f"layer{stage}.{index}", state[f"layer{stage}"][str(index)]
                if index == 0 or self.spec.variant == "original":
                    out, new_stage[str(index)] = basic_block(out, params[f"layer{stage}"][str(index)], block_state, train, stride=2 if stage > 1 and index == 0 else 1)
                else:
                    out, new_stage[str(index)] = basis_block(out, self.view(params, path), block_state, train)
        return linear(global_avg_pool(out), params["fc"]["weight"], params["fc"]["bias"]), new_state

    def regularise(self, params):
        """train_cifar10.py's R: :func:`~minibasis.basis.orthogonality_loss` of each stage's
        shared bases with the unique bases of its basis blocks (DoubleShared, SingleShared);
        SharedOnly has no unique bases: :func:`~minibasis.basis.shared_orthogonality_loss`."""
        if self.spec.variant == "shared_only":
            return shared_orthogonality_loss(self.shared_weights(params))
        stages = []
        for stage, shared in enumerate(self.shared_weights(params), start=1):
            blocks = [params[f"layer{stage}"][str(index)] for index in range(1, self.spec.blocks_per_stage)]
            unique = [block[f"basis_conv{layer}"]["weight"] for block in blocks for layer in (1, 2) if f"basis_conv{layer}" in block]
            stages.append((shared, unique))
        return orthogonality_loss(stages)

