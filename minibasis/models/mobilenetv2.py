"""MobileNetV2 for ImageNet and its shared variants, as the authors built them
(``models/ilsvrc/mobilenetv2.py``).

``pre``: 3×3 conv 3→32 (stride 2, with a bias), BN, ReLU6. Seven stages of inverted-residual
blocks (1×1 expansion ×t → BN → ReLU → 3×3 depthwise (stride) → BN → ReLU → 1×1 projection →
BN, + x when the shape is kept; the authors' blocks use ReLU, not ReLU6); ``conv1``: 1×1 conv
320→1280 (with a bias), BN, ReLU6; global average pooling; dropout 0.2; linear → classes.

Stages 3–6 of the shared variants share WHOLE 1×1 convolutions across their blocks 2…n:

========================  ===============================  ====================================
spec                      authors' constructor             shared in stage 3 + g − 1 (g = 1…4)
========================  ===============================  ====================================
``imagenet-mobilenetv2``  ``MobileNetV2()``                nothing
``…-shared``              ``MobileNetV2_Shared()``         the expansion ``shared_basis_g``
``…-shared++``            ``MobileNetV2_SharedDouble()``   the expansion ``shared_basis_g_1`` and
                                                           the projection ``shared_basis_g_2``;
                                                           the shared blocks end with ECA
                                                           channel attention before the add
========================  ===============================  ====================================
"""

from ..basis import separate_orthogonality_loss, shared_orthogonality_loss
from ..layers import dropout, efficient_channel_attention, global_avg_pool, linear, relu6
from .blocks import conv, norm
from .core import Model, Module, bn_module, conv_module
from .sharing import StageBases

# (name, blocks, input channels, output channels, stride of the first block, expansion t);
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
DROPOUT = 0.2


def attention_kernel(channels):
    """The ECA Conv1d's kernel size in the authors' blocks: 1 below 96 channels, else 3."""
    return 1 if channels < 96 else 3


class MobileNetV2(Model):
    """An ImageNet MobileNetV2 of a given spec (see the module docstring)."""

    standard_size = 224
    conv_init = "pytorch_default"  # the authors' MobileNetV2 classes keep PyTorch's defaults

    @property
    def regulariser(self):
        return {"shared": "train_ilsvrc.py:train_basis_single", "shared++": "train_ilsvrc.py:train_basis_double_separate"}.get(self.spec.variant)

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
                arrays = [("shared_basis1", f"shared_basis_{g}_1", expand), ("shared_basis2", f"shared_basis_{g}_2", (channels, t * channels, 1, 1))]
            stages.append(StageBases(stage, arrays, [f"{stage}.{index}" for index in range(1, blocks)]))
        return stages

    def build(self, image_size):
        pre, size = conv_module("pre.0", (32, 3, 3, 3), image_size, stride=2, padding=1, bias=True, stage="pre")
        mods = [pre, bn_module("pre.1", 32, "pre")]
        for stage, blocks, c_in, c_out, stride, t in STAGES:
            bases = self.stages.get(stage)
            mods += bases.owner_modules() if bases else []
            for index in range(blocks):
                path = stage if blocks == 1 else f"{stage}.{index}"
                block, size = _block_modules(path, c_in if index == 0 else c_out, c_out, t, stride if index == 0 else 1, size, stage, bases)
                mods += block
        last, _ = conv_module("conv1.0", (1280, 320, 1, 1), size, bias=True, stage="head")
        return mods + [last, bn_module("conv1.1", 1280, "head"), Module("classifier.1", "linear", (self.spec.num_classes, 1280), stage="head")]

    def forward(self, params, state, x, /, *, train, rng=None):
        new_state = {"pre": {}, "conv1": {}}
        out = conv(x, params["pre"]["0"], stride=2, padding=1)
        out, new_state["pre"]["1"] = norm(out, params["pre"]["1"], state["pre"]["1"], train)
        out = relu6(out)
        for stage, blocks, _, _, stride, _ in STAGES:
            if blocks == 1:
                out, new_state[stage] = inverted_residual(out, params[stage], state[stage], train, stride=stride)
                continue
            new_state[stage] = {}
            for index in range(blocks):
                block_params = self.block(params, f"{stage}.{index}")
                out, new_state[stage][str(index)] = inverted_residual(out, block_params, state[stage][str(index)], train, stride=stride if index == 0 else 1)
        out = conv(out, params["conv1"]["0"])
        out, new_state["conv1"]["1"] = norm(out, params["conv1"]["1"], state["conv1"]["1"], train)
        features = dropout(global_avg_pool(relu6(out)), rate=DROPOUT, rng=rng if train else None)
        return linear(features, params["classifier"]["1"]["weight"], params["classifier"]["1"]["bias"]), new_state

    def regularise(self, params):
        """train_ilsvrc.py's ``train_basis_single`` (Shared: the expansion convs) and
        ``train_basis_double_separate`` (Shared++: expansions and projections apart)."""
        if self.spec.variant == "shared":
            return shared_orthogonality_loss(self.shared_weights(params))
        return separate_orthogonality_loss(self.shared_weights(params, index=1), self.shared_weights(params, index=2))


def inverted_residual(x, params, state, train, *, stride):
    """The authors' Block / BlockShared / BlockSharedDoubleAttention: 1×1 expansion → BN → ReLU
    → 3×3 depthwise (stride) → BN → ReLU → 1×1 projection → BN (→ ECA attention), + x when the
    stride is 1 and the channels are kept. The expansion is the stage's ``shared_basis1`` in
    the shared blocks, the projection its ``shared_basis2`` in Shared++."""
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
    return (x + out if stride == 1 and x.shape[1] == out.shape[1] else out), new


def _block_modules(path, c_in, c_out, t, stride, size, stage, bases):
    """A block's modules in registration order -> (modules, output size). A block that uses
    its stage's shared convs (``bases``, a StageBases) registers them first."""
    shared = bases.local_names(path) if bases else []
    planes = t * c_in

    def pointwise(local, default, shape, in_size):  # a 1×1 conv: the stage's shared one, or the block's own
        return bases.use(path, local, in_size) if local in shared else conv_module(f"{path}.{default}", shape, in_size, stage=stage)

    expand, _ = pointwise("shared_basis1", "conv1", (planes, c_in, 1, 1), size)
    depthwise, out = conv_module(f"{path}.conv2", (planes, 1, 3, 3), size, stride=stride, padding=1, stage=stage, groups=planes)
    project, _ = pointwise("shared_basis2", "conv3", (c_out, planes, 1, 1), out)
    bns = [bn_module(f"{path}.bn1", planes, stage), bn_module(f"{path}.bn2", planes, stage), bn_module(f"{path}.bn3", c_out, stage)]
    if "shared_basis2" in shared:  # BlockSharedDoubleAttention: shared convs first, ECA last
        attention = Module(f"{path}.chan_attention.conv", "conv", (1, 1, attention_kernel(c_in)), out_pixels=c_out, stage=stage)
        return [expand, project, bns[0], depthwise, bns[1], bns[2], attention], out
    return [expand, bns[0], depthwise, bns[1], project, bns[2]], out
