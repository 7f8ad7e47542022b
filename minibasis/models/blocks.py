"""The residual blocks of the authors' ResNets (CIFAR-10, CIFAR-100 and ImageNet files).

Each block is a pure function ``(x, params, state, train, …) -> (y, new_state)`` over the
block's sub-trees, named as the authors' attributes (``params["conv1"]["weight"]`` is their
``self.conv1.weight``); shared convs reach a block through its stage's
:meth:`~.sharing.StageBases.view`, under the block's own name for them
(``params["shared_basis_1"]``). The functions return the block's new
BN state; nothing is stored anywhere else. Beside each block, the function that lists its
modules in the authors' registration order (the ``state_dict`` order), with the output size.
"""

from .. import recording
from ..basis import basis_layer
from ..conv import conv2d
from ..layers import batch_norm, relu, shortcut_a
from .core import bn_module, conv_module


def conv(x, params, **hyper):
    """A conv module: ``conv2d`` with its weight, plus its bias per channel when it has one."""
    y = conv2d(x, params["weight"], **hyper)
    y = y + params["bias"][None, :, None, None] if "bias" in params else y
    recording.output(params["weight"], y, **hyper)
    return y


def norm(x, params, state, train, relu=False):
    """A BatchNorm2d module (optionally followed by a ReLU): ``(y, new_state)``."""
    if recording.active():  # the oracle records BN's own output, before the ReLU (the same numbers)
        y, new = batch_norm(x, params["weight"], params["bias"], state, train=train)
        recording.output(params["weight"], y)
        return (_relu(y) if relu else y), new
    return batch_norm(x, params["weight"], params["bias"], state, train=train, relu=relu)


def shortcut(x, params, state, train, *, stride, out_channels):
    """The block's skip path: the identity; the authors' ``shortcut`` Sequential (option B:
    1×1 conv with the block's stride, then BN) when the block has one; option A (CIFAR-10:
    every second pixel, channels zero-padded) when the shape changes and it has none."""
    if "shortcut" in params:
        out = conv(x, params["shortcut"]["0"], stride=stride)
        out, new = norm(out, params["shortcut"]["1"], state["shortcut"]["1"], train)
        return out, {"1": new}
    if stride == 1 and x.shape[1] == out_channels:
        return x, None
    return shortcut_a(x, out_channels=out_channels), None


_relu = relu  # for norm, whose flag of the same name hides this function


def basic_block(x, params, state, train, *, stride=1):
    """The authors' BasicBlock: 3×3 conv (stride) → BN → ReLU → 3×3 conv → BN, + shortcut, ReLU."""
    new = {}
    out = conv(x, params["conv1"], stride=stride, padding=1)
    out, new["bn1"] = norm(out, params["bn1"], state["bn1"], train, relu=True)
    out = conv(out, params["conv2"], padding=1)
    out, new["bn2"] = norm(out, params["bn2"], state["bn2"], train)
    skip, skip_state = shortcut(x, params, state, train, stride=stride, out_channels=out.shape[1])
    if skip_state:
        new["shortcut"] = skip_state
    return relu(out + skip), new


def basis_block(x, params, state, train, bases):
    """The authors' basis blocks (``BasicBlock_SingleShared`` / ``_DoubleShared`` /
    ``_SharedOnly`` / ``_NonShared``): basis layer 1 → ReLU → basis layer 2, + identity, ReLU,
    each basis layer ``[unique; shared] basis conv → BN → 1×1 coefficients → BN`` (Kim & Kang,
    Sec. 3, Fig. 2). ``params``: the block's view from its stage's ``bases`` (a StageBases)."""
    new = {}
    out = x
    for layer in (1, 2):
        layer_params, layer_state = bases.basis_layer_trees(params, state, layer)
        out, new_layer_state = basis_layer(out, layer_params, layer_state, train=train, relu=layer == 1)
        new[f"basis_bn{layer}"], new[f"bn{layer}"] = new_layer_state["basis_bn"], new_layer_state["bn"]
    return relu(out + x), new


def bottleneck_block(x, params, state, train, *, stride=1):
    """The authors' BottleneckBlock (the stride on the 3×3, as torchvision's ResNet v1.5):
    1×1 conv → BN → ReLU → 3×3 conv → BN → ReLU → 1×1 conv (4× channels) → BN, + shortcut, ReLU.

    In the shared blocks of ResNet50/101-Shared the 3×3 conv is the stage's shared
    ``shared_basis`` (``BottleneckBlock_SharedSingle``), in Shared++ ``shared_basis_1`` and the
    last 1×1 conv the stage's ``shared_basis_2`` (``BottleneckBlock_Shared``): whole
    convolutions, the same arrays in every block of the stage but the first."""
    conv_3x3 = params.get("conv2") or params.get("shared_basis") or params["shared_basis_1"]
    conv_expand = params.get("conv3") or params["shared_basis_2"]
    new = {}
    out = conv(x, params["conv1"])
    out, new["bn1"] = norm(out, params["bn1"], state["bn1"], train, relu=True)
    out = conv(out, conv_3x3, stride=stride, padding=1)
    out, new["bn2"] = norm(out, params["bn2"], state["bn2"], train, relu=True)
    out = conv(out, conv_expand)
    out, new["bn3"] = norm(out, params["bn3"], state["bn3"], train)
    skip, skip_state = shortcut(x, params, state, train, stride=stride, out_channels=out.shape[1])
    if skip_state:
        new["shortcut"] = skip_state
    return relu(out + skip), new


# ---- the blocks' modules, in the authors' registration order ------------------------------


def _shortcut_modules(path, in_planes, out_planes, stride, size, stage):
    """Option B (the CIFAR-100 / ImageNet files): ``shortcut.0`` 1×1 conv, ``shortcut.1`` BN,
    when the block changes the shape; none otherwise."""
    if stride == 1 and in_planes == out_planes:
        return []
    skip, _ = conv_module(f"{path}.shortcut.0", (out_planes, in_planes, 1, 1), size, stride=stride, stage=stage)
    return [skip, bn_module(f"{path}.shortcut.1", out_planes, stage)]


def basic_block_modules(path, in_planes, planes, size, stage, *, stride=1, option_b=True):
    """BasicBlock: conv1, bn1, conv2, bn2 (and option B's shortcut.0/.1). -> (modules, output size)."""
    conv1, out = conv_module(f"{path}.conv1", (planes, in_planes, 3, 3), size, stride=stride, padding=1, stage=stage)
    conv2, _ = conv_module(f"{path}.conv2", (planes, planes, 3, 3), out, padding=1, stage=stage)
    mods = [conv1, bn_module(f"{path}.bn1", planes, stage), conv2, bn_module(f"{path}.bn2", planes, stage)]
    return mods + (_shortcut_modules(path, in_planes, planes, stride, size, stage) if option_b else []), out


def basis_block_modules(path, planes, bases, size):
    """A basis block of stage ``bases`` (a StageBases): the block's uses of the shared bases
    first, then per layer basis_conv (if the stage has unique filters), basis_bn, coeff_conv, bn."""
    stage, unique = bases.stage, bases.unique_rows
    layers_using = {
        local: sum(bases.layer_basis(layer) == local for layer in (1, 2)) for local in bases.local_names(path)
    }
    mods = [bases.use(path, local, size, uses=n, padding=1)[0] for local, n in layers_using.items()]
    for layer in (1, 2):
        rank = unique + bases.basis_rows(layer)
        if unique:
            mods.append(
                conv_module(f"{path}.basis_conv{layer}", (unique, planes, 3, 3), size, padding=1, stage=stage)[0]
            )
        mods += [
            bn_module(f"{path}.basis_bn{layer}", rank, stage),
            conv_module(f"{path}.coeff_conv{layer}", (planes, rank, 1, 1), size, stage=stage)[0],
            bn_module(f"{path}.bn{layer}", planes, stage),
        ]
    return mods


def bottleneck_modules(path, in_planes, planes, size, stage, *, stride=1, bases=None):
    """BottleneckBlock: conv1, bn1, conv2, bn2, conv3, bn3 (+ shortcut); in a block that uses
    its stage's shared convs (``bases``, a StageBases) the block's names for them stand where
    conv2 (``shared_basis``/``shared_basis_1``) and conv3 (``shared_basis_2``) were. -> (modules, size)."""
    shared = bases.local_names(path) if bases else []
    conv1, _ = conv_module(f"{path}.conv1", (planes, in_planes, 1, 1), size, stage=stage)
    name2 = next((local for local in ("shared_basis", "shared_basis_1") if local in shared), None)
    if name2:
        conv2, out = bases.use(path, name2, size, stride=stride, padding=1)
    else:
        conv2, out = conv_module(f"{path}.conv2", (planes, planes, 3, 3), size, stride=stride, padding=1, stage=stage)
    if "shared_basis_2" in shared:
        conv3, _ = bases.use(path, "shared_basis_2", out)
    else:
        conv3, _ = conv_module(f"{path}.conv3", (4 * planes, planes, 1, 1), out, stage=stage)
    mods = [conv1, bn_module(f"{path}.bn1", planes, stage), conv2, bn_module(f"{path}.bn2", planes, stage)]
    mods += [conv3, bn_module(f"{path}.bn3", 4 * planes, stage)]
    return mods + _shortcut_modules(path, in_planes, 4 * planes, stride, size, stage), out
