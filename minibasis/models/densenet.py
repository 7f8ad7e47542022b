"""DenseNet121 (DenseNet-BC) for CIFAR-100 and its shared variant, as the authors built them
(``models/cifar100/densenet.py``; Huang et al. 2017).

``conv1``: 3×3 conv 3→64. Four dense blocks of 6, 12, 24, 16 layers; each layer sees the
concatenation of every feature map before it in its block and adds k = 32 maps of its own:

    BottleNeck:          BN → ReLU → 1×1 conv (4k) → BN → ReLU → 3×3 conv (k),       then concat
    BottleNeck_Single…:  BN → ReLU → 1×1 conv (4k) → BN → ReLU → [U; S] 3×3 basis conv → BN
                         → 1×1 coefficients (k),                                      then concat

(pre-activation: BN and ReLU before each conv; the basis layer has no BN after its
coefficients). Between blocks a transition halves the channels and the map: BN → 1×1 conv →
2×2 average pool (no ReLU). Then BN, ReLU, global average pooling, linear → classes.

Where the basis is shared (``cifar100-densenet121-single-s{S}u{U}``): in each dense block, every
layer's 3×3 conv uses the block's one basis S (S filters on the 4k = 128 channels) beside U
unique filters of its own. Two quirks of the authors' code, copied:

- ``features`` is registered before the model's ``shared_basis_1…4``, so PyTorch names each
  basis after its first user, ``features.dense_block_layer_0.bottle_neck_layer_0.shared_basis``,
  and lists ``shared_basis_g`` again after the blocks;
- their loop hands the last dense block ``shared_basis_3`` (its loop variable stops at 2), so the
  third basis serves blocks 2 and 3, and ``shared_basis_4`` is registered and regularised but
  used by no layer.

Every conv and the linear layer keep PyTorch's default init (the authors re-initialise nothing).
"""

import autograd.numpy as anp

from ..basis import basis_conv, shared_orthogonality_loss
from ..layers import avg_pool2d, global_avg_pool, linear
from .blocks import conv, norm
from .core import Model, Module, at, bn_module, conv_module
from .sharing import StageBases

LAYERS = (6, 12, 24, 16)  # dense layers per block (DenseNet121)
GROWTH = 32  # k: maps each layer adds
STEM = 2 * GROWTH  # conv1's output channels
INNER = 4 * GROWTH  # the bottleneck's 1×1 conv output: the 3×3 conv's (and the basis') input


class DenseNet(Model):
    """A CIFAR-100 DenseNet121 of a given spec (see the module docstring)."""

    standard_size = 32
    conv_init = "pytorch_default"

    @property
    def regulariser(self):
        return "train_cifar100.py:train_basis" if self.spec.variant == "single" else None

    def layer_path(self, block, layer):
        """The authors' name of dense layer ``layer`` of block ``block`` (0-based); the original's
        last block is ``dense_block3``, the shared one's ``dense_block_layer_3``."""
        name = "dense_block3" if block == 3 and self.spec.variant == "original" else f"dense_block_layer_{block}"
        return f"features.{name}.bottle_neck_layer_{layer}"

    def stage_bases(self):
        """Blocks 0–2 each share one basis among their layers, owned by the first layer; block 3
        uses block 2's; ``shared_basis_4`` is used by nobody (the module docstring)."""
        if self.spec.variant == "original":
            return []
        shape, unique = (self.spec.shared_rank, INNER, 3, 3), self.spec.unique_rank
        stages = []
        for block in range(3):
            users = [self.layer_path(block, layer) for layer in range(1, LAYERS[block])]
            if block == 2:
                users += [self.layer_path(3, layer) for layer in range(LAYERS[3])]
            owner = f"{self.layer_path(block, 0)}.shared_basis"
            stages.append(
                StageBases(
                    f"dense{block}",
                    [("shared_basis", owner, shape)],
                    users,
                    unique,
                    aliases=[f"shared_basis_{block + 1}"],
                )
            )
        return stages + [StageBases("dense3", [("shared_basis", "shared_basis_4", shape)])]

    def build(self, image_size):
        conv1, size = conv_module("conv1", (STEM, 3, 3, 3), image_size, padding=1, stage="stem")
        mods, channels = [conv1], STEM
        for block, layers in enumerate(LAYERS):
            for layer in range(layers):
                mods += self.layer_modules(self.layer_path(block, layer), channels, size, f"dense{block}")
                channels += GROWTH
            if block < 3:
                path, out = f"features.transition_layer_{block}.down_sample", channels // 2
                squeeze, _ = conv_module(f"{path}.1", (out, channels, 1, 1), size, stage=f"transition{block}")
                mods += [bn_module(f"{path}.0", channels, f"transition{block}"), squeeze]
                size, channels = size // 2, out  # AvgPool2d(2) floors
        mods.append(bn_module("features.bn", channels, "head"))
        if self.stages:  # the model's shared_basis_1…4, registered after ``features``
            mods += [mod for bases in self.stages.values() for mod in bases.alias_modules()]
            mods += self.stages["dense3"].owner_modules()
        return mods + [Module("linear", "linear", (self.spec.num_classes, channels), stage="head")]

    def layer_modules(self, path, c_in, size, stage):
        """A dense layer's modules in registration order: BottleNeck's ``residual_function``
        (0 BN, 2 conv, 3 BN, 5 conv), or BottleNeck_SingleShared's shared_basis (the use, or the
        owner in a block's first layer), bn0, conv1, bn1, basis_conv2, basis_bn2, coeff_conv2."""
        if self.spec.variant == "original":
            fn = f"{path}.residual_function"
            squeeze, _ = conv_module(f"{fn}.2", (INNER, c_in, 1, 1), size, stage=stage)
            grow, _ = conv_module(f"{fn}.5", (GROWTH, INNER, 3, 3), size, padding=1, stage=stage)
            return [bn_module(f"{fn}.0", c_in, stage), squeeze, bn_module(f"{fn}.3", INNER, stage), grow]
        spec, bases = self.spec, self.stage_of(path)
        if bases:
            shared, _ = bases.use(path, "shared_basis", size, padding=1, stage=stage)
        else:
            shared, _ = conv_module(
                f"{path}.shared_basis", (spec.shared_rank, INNER, 3, 3), size, padding=1, stage=stage
            )
        rank = spec.unique_rank + spec.shared_rank
        return [
            shared,
            bn_module(f"{path}.bn0", c_in, stage),
            conv_module(f"{path}.conv1", (INNER, c_in, 1, 1), size, stage=stage)[0],
            bn_module(f"{path}.bn1", INNER, stage),
            conv_module(f"{path}.basis_conv2", (spec.unique_rank, INNER, 3, 3), size, padding=1, stage=stage)[0],
            bn_module(f"{path}.basis_bn2", rank, stage),
            conv_module(f"{path}.coeff_conv2", (GROWTH, rank, 1, 1), size, stage=stage)[0],
        ]

    def forward(self, params, state, x, /, *, train, rng=None):
        out = conv(x, params["conv1"], padding=1)
        new = {}
        dense_layer = bottleneck if self.spec.variant == "original" else basis_bottleneck
        for block, layers in enumerate(LAYERS):
            for layer in range(layers):
                path = self.layer_path(block, layer)
                out, layer_state = dense_layer(out, self.block(params, path), at(state, path), train)
                put(new, path, layer_state)
            if block < 3:
                path = f"features.transition_layer_{block}.down_sample"
                out, transition_state = transition(out, at(params, path), at(state, path), train)
                put(new, path, transition_state)
        out, new["features"]["bn"] = norm(out, params["features"]["bn"], state["features"]["bn"], train, relu=True)
        return linear(global_avg_pool(out), params["linear"]["weight"], params["linear"]["bias"]), new

    def regularise(self, params):
        """train_cifar100.py's ``train_basis``: :func:`~minibasis.basis.shared_orthogonality_loss`
        of shared_basis_1…4 (the unused fourth included, as the authors' loop over 4 groups)."""
        return shared_orthogonality_loss(self.shared_weights(params))


def bottleneck(x, params, state, train):
    """The authors' BottleNeck: ``concat([x, conv3×3(ReLU(BN(conv1×1(ReLU(BN(x))))))])``: the
    layer's k new maps after the ones it saw."""
    fn, fn_state, new = params["residual_function"], state["residual_function"], {}
    out, new["0"] = norm(x, fn["0"], fn_state["0"], train, relu=True)
    out = conv(out, fn["2"])
    out, new["3"] = norm(out, fn["3"], fn_state["3"], train, relu=True)
    out = conv(out, fn["5"], padding=1)
    return anp.concatenate([x, out], axis=1), {"residual_function": new}


def basis_bottleneck(x, params, state, train):
    """The authors' BottleNeck_SingleShared: BN → ReLU → 1×1 conv → BN → ReLU → the basis conv
    ``[U; S] ∗`` (U = ``basis_conv2``, S = the block's ``shared_basis``) → BN → 1×1 coefficients,
    concatenated after x."""
    new = {}
    out, new["bn0"] = norm(x, params["bn0"], state["bn0"], train, relu=True)
    out = conv(out, params["conv1"])
    out, new["bn1"] = norm(out, params["bn1"], state["bn1"], train, relu=True)
    out = basis_conv(out, params["basis_conv2"]["weight"], params["shared_basis"]["weight"], padding=1)
    out, new["basis_bn2"] = norm(out, params["basis_bn2"], state["basis_bn2"], train)
    out = conv(out, params["coeff_conv2"])
    return anp.concatenate([x, out], axis=1), new


def transition(x, params, state, train):
    """The authors' Transition: BN → 1×1 conv → 2×2 average pool (no ReLU)."""
    out, bn_state = norm(x, params["0"], state["0"], train)
    return avg_pool2d(conv(out, params["1"]), kernel_size=2), {"0": bn_state}


def put(tree, path, value):
    """Set the node at dotted ``path`` of a nested dict, making the dicts on the way."""
    *parents, last = path.split(".")
    for key in parents:
        tree = tree.setdefault(key, {})
    tree[last] = value
