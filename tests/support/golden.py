"""The golden files of ``../shared/data/golden/``: what the authors' own PyTorch classes compute,
in float64, for seeded weights and inputs (see that folder's README.md, which this follows).

Nothing here uses minibasis: the weight rule is the README's, written out again.
"""

import numpy as np
import pytest

from conftest import SHARED_DATA

GOLDEN = SHARED_DATA / "golden"

# golden file stem -> the minibasis spec of the same authors' constructor
SPECS = {
    "cifar10-ResNet20": "resnet20",
    "cifar10-ResNet32": "resnet32",
    "cifar10-ResNet32_DoubleShared-s16u1": "resnet32-s16u1",
    "cifar10-ResNet32_SingleShared-s16u1": "resnet32-single-s16u1",
    "cifar10-ResNet32_SingleShared-s8u1": "resnet32-single-s8u1",
    "cifar10-ResNet32_SharedOnly-s16": "resnet32-s16u0",
    "cifar10-ResNet32_NonShared-u1": "resnet32-s0u1",
    "cifar100-ResNet34": "cifar100-resnet34",
    "cifar100-ResNet34_SingleShared-s32u1": "cifar100-resnet34-single-s32u1",
    "cifar100-ResNet34_SharedOnly-s32": "cifar100-resnet34-s32u0",
    "cifar100-ResNet34_NonShared-u1": "cifar100-resnet34-s0u1",
    "cifar100-ResNet18": "cifar100-resnet18",
    "cifar100-DenseNet121": "cifar100-densenet121",
    "cifar100-DenseNet121_SingleShared-s16u1": "cifar100-densenet121-single-s16u1",
    "cifar100-ResNext50": "cifar100-resnext50",
    "cifar100-ResNext50_SingleShared-s64u4": "cifar100-resnext50-single-s64u4",
    "cifar100-MobileNetV2": "cifar100-mobilenetv2",
    "cifar100-MobileNetV2_Shared": "cifar100-mobilenetv2-shared",
    "cifar100-MobileNetV2_SharedDouble": "cifar100-mobilenetv2-shared++",
    "ilsvrc-ResNet34": "imagenet-resnet34",
    "ilsvrc-ResNet34_DoubleShared-s48u1": "imagenet-resnet34-s48u1",
    "ilsvrc-ResNet34_SingleShared-s48u1": "imagenet-resnet34-single-s48u1",
    "ilsvrc-ResNet50": "imagenet-resnet50",
    "ilsvrc-ResNet50_Shared": "imagenet-resnet50-shared++",
    "ilsvrc-ResNet50_SharedSingle": "imagenet-resnet50-shared",
    "ilsvrc-ResNet101_Shared": "imagenet-resnet101-shared++",
    "ilsvrc-ResNet101_SharedSingle": "imagenet-resnet101-shared",
    "ilsvrc-MobileNetV2": "imagenet-mobilenetv2",
    "ilsvrc-MobileNetV2_Shared": "imagenet-mobilenetv2-shared",
    "ilsvrc-MobileNetV2_SharedDouble": "imagenet-mobilenetv2-shared++",
}


def golden_file(stem):
    """The opened golden file ``stem``.npz; skips the test when ``../shared`` does not have it."""
    path = GOLDEN / f"{stem}.npz"
    if not path.exists():
        pytest.skip(f"golden file not found at {path}")
    return np.load(path)


def golden_state_dict(f):
    """The README's weight rule: the authors' state_dict (shared keys hold their owner's array)."""
    seed, shapes, state_dict = int(f["seed"]), f["shapes"], {}
    for j, (key, owner, kind) in enumerate(zip(f["keys"].tolist(), f["owners"].tolist(), f["kinds"].tolist())):
        shape = tuple(int(d) for d in shapes[j] if d >= 0)
        if owner != key:
            state_dict[key] = state_dict[owner]
            continue
        if kind == "bn_num_batches_tracked":
            state_dict[key] = np.zeros(shape, np.int64)
            continue
        z = np.random.default_rng([seed, j]).standard_normal(shape)
        assert np.array_equal(z.reshape(-1)[:4], f["fingerprint:" + key]), key
        if kind in ("conv_weight", "linear_weight"):
            state_dict[key] = z * np.sqrt(2 / np.prod(shape[1:]))
        elif kind == "bn_weight":
            state_dict[key] = 1 + 0.1 * z
        elif kind == "bn_running_var":
            state_dict[key] = 1 + 0.1 * z**2
        else:  # conv_bias, linear_bias, bn_bias, bn_running_mean
            state_dict[key] = 0.1 * z
    return state_dict
