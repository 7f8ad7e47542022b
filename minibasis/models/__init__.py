"""The authors' models: CIFAR-10 ResNets, CIFAR-100 and ImageNet ResNets and MobileNetV2s, CIFAR-100
DenseNet121s and ResNeXt50s.

A model is a pair of pure functions over explicit trees::

    model = create_model("resnet56-s16u1")
    params, state = model.init(seed=0)
    logits, state = model.apply(params, state, x, train=True)
    R = model.orthogonality(params)          # the regulariser the authors train it with (0: none)

``params`` is a nested dict whose dotted paths are the authors' PyTorch ``state_dict`` names
(``layer1.1.coeff_conv2.weight``); BN running statistics live in ``state``. A shared array
lives once, under its owner's name (``params["shared_basis_1_1"]["weight"]``), and every
block of the stage uses it; autograd sums its gradients.

One module per family (:mod:`.cifar_resnet`, :mod:`.resnet`, :mod:`.mobilenetv2`, :mod:`.densenet`,
:mod:`.resnext`) over the
shared machinery of :mod:`.core`; what a stage shares is one object, :class:`.sharing.StageBases`;
the residual blocks the ResNets share are in :mod:`.blocks`, the spec grammar in :mod:`.spec`.
"""

from .. import checks
from . import info
from .cifar_resnet import CifarResNet
from .core import Model, Module
from .densenet import DenseNet
from .mobilenetv2 import MobileNetV2
from .resnet import ResNet
from .resnext import ResNeXt
from .sharing import StageBases
from .spec import SPEC_HELP, VARIANTS, ModelSpec, parse_spec


def create_model(spec, num_classes=None):
    """A model from a spec string (see :mod:`.spec`; ``num_classes`` defaults to its dataset's)
    or a :class:`ModelSpec`."""
    if isinstance(spec, ModelSpec):  # the same rules as a string's
        if parse_spec(spec.name, spec.num_classes) != spec:
            checks.fail("spec", f"a ModelSpec that parse_spec({spec.name!r}) gives", repr(spec))
    else:
        spec = parse_spec(spec, num_classes)
    families = {"mobilenetv2": MobileNetV2, "densenet": DenseNet, "resnext": ResNeXt}
    if spec.architecture in families:
        return families[spec.architecture](spec)
    return CifarResNet(spec) if spec.dataset == "cifar10" else ResNet(spec)


def info_table(spec=None, num_classes=None, per_layer=False, image_size=None):
    """``minibasis info``: the whole zoo with its counts (no spec), or one model's parameters
    and MACs per stage (``per_layer``: per module) against its family's original."""
    if spec is None:
        return info.zoo_table(create_model)
    model = create_model(spec, num_classes)
    return info.model_table(
        model, create_model(info.baseline_spec(model.spec), model.spec.num_classes), per_layer, image_size
    )


__all__ = [
    "SPEC_HELP",
    "VARIANTS",
    "Model",
    "ModelSpec",
    "Module",
    "StageBases",
    "create_model",
    "info_table",
    "parse_spec",
]
