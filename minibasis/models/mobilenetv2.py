"""MobileNetV2 for ImageNet and CIFAR-100 and their shared variants, as the authors built them
(``models/ilsvrc/mobilenetv2.py``, ``models/cifar100/mobilenetv2.py``).

``pre``: a conv 3→32 with a bias, BN, ReLU6. Seven stages of inverted-residual blocks (1×1
expansion ×t → BN → ReLU → 3×3 depthwise (stride) → BN → ReLU → 1×1 projection → BN, + the
skip; the authors' blocks use ReLU, not ReLU6); ``conv1``: 1×1 conv 320→1280 (with a bias), BN,
ReLU6; global average pooling; the classifier. The two files differ in five places:

=========================  ===================================  ===================================
                           ImageNet                             CIFAR-100
=========================  ===================================  ===================================
``pre.0``                  3×3, stride 2, padding 1             1×1, stride 1, padding 1 (34×34 out)
stage6's stride            2                                    1 (their "1->2 for ilsvrc")
skip of a stride-1 block   x when the channels are kept,        a 1×1 conv + BN (``shortcut``) when
                           none otherwise                       they change
classifier                 dropout 0.2, linear ``classifier.1``  a 1×1 conv with a bias, ``conv2``
Shared++ blocks            end with ECA attention               no attention
=========================  ===================================  ===================================

Stages 3–6 of the shared variants share WHOLE 1×1 convolutions across their blocks 2…n:

==================================  ==============================  ================================
spec (``cifar100-`` alike)          authors' constructor            shared in stage 3 + g − 1
==================================  ==============================  ================================
``imagenet-mobilenetv2``            ``MobileNetV2()``               nothing
``…-shared``                        ``MobileNetV2_Shared()``        the expansion ``shared_basis_g``
``…-shared++``                      ``MobileNetV2_SharedDouble()``  the expansion ``shared_basis_g_1``
                                                                    and the projection
                                                                    ``shared_basis_g_2``
==================================  ==============================  ================================
"""

import autograd.numpy as anp

from ..basis import separate_orthogonality_loss, shared_orthogonality_loss
from ..layers import dropout, efficient_channel_attention, global_avg_pool, linear, relu6
from .blocks import conv, norm
from .core import Model, Module, bn_module, conv_module
from .sharing import StageBases

# (name, blocks, input channels, output channels, stride of the first block (ImageNet), expansion t);
# stage1 and stage7 are single blocks (their state_dict names carry no block index).
STAGES = (
    ("stage1", 1, 32, 16, 1, 1),
    ("stage2", 2, 16, 24, 2, 6),
    ("stage3", 3, 24, 32, 2, 6),
    ("stage4", 4, 32, 64, 2, 6),
    ("stage5", 3, 64, 96, 1, 6),
    ("stage6", 3, 96, 160, 2, 6),
    ("stage7", 1, 160, 320, 1, 6),
)
SHARED_STAGES = ("stage3", "stage4", "stage5", "stage6")  # shared_basis_1 … _4
CIFAR100_STRIDES = {"stage6": 1}  # models/cifar100/mobilenetv2.py: "1->2 for ilsvrc"
DROPOUT = 0.2
REGULARISERS = {
    ("imagenet", "shared"): "train_ilsvrc.py:train_basis_single",
    ("imagenet", "shared++"): "train_ilsvrc.py:train_basis_double_separate",
    ("cifar100", "shared"): "train_cifar100.py:train_basis",
    ("cifar100", "shared++"): "train_cifar100.py:train_basis_double_separate",
}


def attention_kernel(channels):
    """The ECA Conv1d's kernel size in the authors' blocks: 1 below 96 channels, else 3."""
    return 1 if channels < 96 else 3


class MobileNetV2(Model):
    """An ImageNet or CIFAR-100 MobileNetV2 of a given spec (see the module docstring)."""

    conv_init = "pytorch_default"  # the authors' MobileNetV2 classes keep PyTorch's defaults

    @property
    def standard_size(self):
        return 224 if self.imagenet else 32

    @property
    def imagenet(self):
        return self.spec.dataset == "imagenet"

    @property
    def regulariser(self):
        return REGULARISERS.get((self.spec.dataset, self.spec.variant))

    def stages_of_blocks(self):
        """STAGES with this dataset's strides."""
        strides = {} if self.imagenet else CIFAR100_STRIDES
        return [
            (name, blocks, c_in, c_out, strides.get(name, stride), t) for name, blocks, c_in, c_out, stride, t in STAGES
        ]

    def stage_bases(self):
        """Stages 3–6 share whole 1×1 convs across their blocks 2…n: the expansion
        ``shared_basis_g`` (Shared), or the expansion ``shared_basis_g_1`` and the projection
        ``shared_basis_g_2`` (Shared++). The authors keep PyTorch's default init for them."""
        if self.spec.variant == "original":
            return []
        stages = []
        for stage, blocks, _, channels, _, t in STAGES:
            if stage not in SHARED_STAGES:
                continue
            g = SHARED_STAGES.index(stage) + 1
            expand = (t * channels, channels, 1, 1)
            if self.spec.variant == "shared":
                arrays = [("shared_basis1", f"shared_basis_{g}", expand)]
            else:
                arrays = [
                    ("shared_basis1", f"shared_basis_{g}_1", expand),
                    ("shared_basis2", f"shared_basis_{g}_2", (channels, t * channels, 1, 1)),
                ]
            stages.append(StageBases(stage, arrays, [f"{stage}.{index}" for index in range(1, blocks)]))
        return stages

    def pre_conv(self):
        """``pre.0``'s weight shape and hyper-parameters: ImageNet 3×3 / 2; CIFAR-100 1×1, padding 1."""
        return ((32, 3, 3, 3), {"stride": 2, "padding": 1}) if self.imagenet else ((32, 3, 1, 1), {"padding": 1})

    def build(self, image_size):
        shape, hyper = self.pre_conv()
        pre, size = conv_module("pre.0", shape, image_size, bias=True, stage="pre", **hyper)
        mods = [pre, bn_module("pre.1", 32, "pre")]
        for stage, blocks, c_in, c_out, stride, t in self.stages_of_blocks():
            bases = self.stages.get(stage)
            mods += bases.owner_modules() if bases else []
            for index in range(blocks):
                path = stage if blocks == 1 else f"{stage}.{index}"
                block_in, block_stride = (c_in, stride) if index == 0 else (c_out, 1)
                block, size = _block_modules(path, block_in, c_out, t, block_stride, size, stage, bases, self.imagenet)
                mods += block
        last, _ = conv_module("conv1.0", (1280, 320, 1, 1), size, bias=True, stage="head")
        mods += [last, bn_module("conv1.1", 1280, "head")]
        if self.imagenet:
            return mods + [Module("classifier.1", "linear", (self.spec.num_classes, 1280), stage="head")]
        return mods + [conv_module("conv2", (self.spec.num_classes, 1280, 1, 1), 1, bias=True, stage="head")[0]]

    def forward(self, params, state, x, /, *, train, rng=None):
        new_state = {"pre": {}, "conv1": {}}
        out = conv(x, params["pre"]["0"], **self.pre_conv()[1])
        out, new_state["pre"]["1"] = norm(out, params["pre"]["1"], state["pre"]["1"], train)
        out = relu6(out)
        for stage, blocks, _, _, stride, _ in self.stages_of_blocks():
            if blocks == 1:
                out, new_state[stage] = inverted_residual(out, params[stage], state[stage], train, stride=stride)
                continue
            new_state[stage] = {}
            for index in range(blocks):
                block_params = self.block(params, f"{stage}.{index}")
                out, new_state[stage][str(index)] = inverted_residual(
                    out, block_params, state[stage][str(index)], train, stride=stride if index == 0 else 1
                )
        out = conv(out, params["conv1"]["0"])
        out, new_state["conv1"]["1"] = norm(out, params["conv1"]["1"], state["conv1"]["1"], train)
        features = global_avg_pool(relu6(out))
        if not self.imagenet:  # CIFAR-100: a 1×1 conv of the pooled (N, 1280, 1, 1) map, flattened; no dropout
            logits = conv(features[:, :, None, None], params["conv2"])
            return anp.reshape(logits, logits.shape[:2]), new_state
        features = dropout(features, rate=DROPOUT, rng=rng if train else None)
        return linear(features, params["classifier"]["1"]["weight"], params["classifier"]["1"]["bias"]), new_state

    def regularise(self, params):
        """train_ilsvrc.py's ``train_basis_single`` / train_cifar100.py's ``train_basis`` (Shared: the
        expansion convs) and ``train_basis_double_separate`` (Shared++: expansions and projections apart)."""
        if self.spec.variant == "shared":
            return shared_orthogonality_loss(self.shared_weights(params))
        return separate_orthogonality_loss(self.shared_weights(params, index=1), self.shared_weights(params, index=2))


def inverted_residual(x, params, state, train, *, stride):
    """The authors' Block / BlockShared / BlockSharedDouble(Attention): 1×1 expansion → BN → ReLU
    → 3×3 depthwise (stride) → BN → ReLU → 1×1 projection → BN (→ ECA attention), + the skip when
    the stride is 1: x when the channels are kept, else the CIFAR-100 blocks' ``shortcut`` (1×1
    conv + BN; the ImageNet blocks have none and add nothing). The expansion is the stage's
    ``shared_basis1`` in the shared blocks, the projection its ``shared_basis2`` in Shared++."""
    expand = params.get("conv1") or params["shared_basis1"]
    project = params.get("conv3") or params["shared_basis2"]
    new = {}
    out = conv(x, expand)
    out, new["bn1"] = norm(out, params["bn1"], state["bn1"], train, relu=True)
    out = conv(out, params["conv2"], stride=stride, padding=1, groups=out.shape[1])
    out, new["bn2"] = norm(out, params["bn2"], state["bn2"], train, relu=True)
    out = conv(out, project)
    out, new["bn3"] = norm(out, params["bn3"], state["bn3"], train)
    if "chan_attention" in params:
        out = efficient_channel_attention(out, params["chan_attention"]["conv"]["weight"])
    if stride != 1:
        return out, new
    if "shortcut" in params:
        skip, new["shortcut"] = conv(x, params["shortcut"]["0"]), {}
        skip, new["shortcut"]["1"] = norm(skip, params["shortcut"]["1"], state["shortcut"]["1"], train)
        return out + skip, new
    return (x + out if x.shape[1] == out.shape[1] else out), new


def _block_modules(path, c_in, c_out, t, stride, size, stage, bases, imagenet):
    """A block's modules in registration order -> (modules, output size). A block that uses
    its stage's shared convs (``bases``, a StageBases) registers them first; a CIFAR-100 block
    of stride 1 that changes the channels ends with its ``shortcut`` (1×1 conv, BN)."""
    shared = bases.local_names(path) if bases else []
    planes = t * c_in

    def pointwise(local, default, shape, in_size):  # a 1×1 conv: the stage's shared one, or the block's own
        return (
            bases.use(path, local, in_size)
            if local in shared
            else conv_module(f"{path}.{default}", shape, in_size, stage=stage)
        )

    expand, _ = pointwise("shared_basis1", "conv1", (planes, c_in, 1, 1), size)
    depthwise, out = conv_module(
        f"{path}.conv2", (planes, 1, 3, 3), size, stride=stride, padding=1, stage=stage, groups=planes
    )
    project, _ = pointwise("shared_basis2", "conv3", (c_out, planes, 1, 1), out)
    bns = [
        bn_module(f"{path}.bn1", planes, stage),
        bn_module(f"{path}.bn2", planes, stage),
        bn_module(f"{path}.bn3", c_out, stage),
    ]
    if "shared_basis2" in shared:  # BlockSharedDouble(Attention): shared convs first (ImageNet: ECA last)
        attention = Module(
            f"{path}.chan_attention.conv", "conv", (1, 1, attention_kernel(c_in)), out_pixels=c_out, stage=stage
        )
        return [expand, project, bns[0], depthwise, bns[1], bns[2]] + ([attention] if imagenet else []), out
    mods = [expand, bns[0], depthwise, bns[1], project, bns[2]]
    if not imagenet and stride == 1 and c_in != c_out:
        skip, _ = conv_module(f"{path}.shortcut.0", (c_out, c_in, 1, 1), size, stage=stage)
        mods += [skip, bn_module(f"{path}.shortcut.1", c_out, stage)]
    return mods, out
