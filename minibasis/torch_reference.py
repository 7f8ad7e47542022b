"""The authors' model zoo in PyTorch, for comparing minibasis against PyTorch (optional).

Needs torch (not a dependency of minibasis). Written from the authors' ssregibility/Net_RL2
``models/cifar10/resnet.py`` (same attribute names, so the same ``state_dict`` keys; a shared
basis is one module registered on the model and on every block that uses it, as there) and
their ``train_cifar10.py`` regulariser loop. It takes only the spec's numbers from minibasis
(depth, variant, ranks, classes) and shares no code with :mod:`minibasis.models` or
:mod:`minibasis.basis`, so that agreement between the two is evidence::

    net = build_torch_model(model.spec, to_state_dict(model, params, state))   # strict load

The ImageNet ResNet50/101 "Shared" models and the MobileNetV2s are here too (written from
``models/ilsvrc/resnet.py`` and ``mobilenetv2.py``), and the CIFAR-100 DenseNet121 and ResNeXt50
(``models/cifar100/densenet.py``, ``resnext.py``), for benchmarks and for users who compare
their own PyTorch code; ``../shared/data/golden/`` holds what the authors' own classes compute
for the whole zoo, and the test suite checks minibasis against it without torch.
"""

from collections import OrderedDict

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class OptionA(nn.Module):
    """Every second pixel, channels zero-padded equally on both sides (the authors' LambdaLayer)."""

    def __init__(self, planes):
        super().__init__()
        self.planes = planes

    def forward(self, x):
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.planes // 4, self.planes // 4))


class BasicBlock(nn.Module):
    def __init__(self, in_planes, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = OptionA(planes) if stride != 1 or in_planes != planes else nn.Sequential()

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class BasisBlock(nn.Module):
    """The authors' BasicBlock_Basis family: per layer cat(unique ∗ x, shared ∗ x) → basis_bn →
    1×1 coeff → bn. ``shared``: {attribute name: module}, assigned first as the authors do."""

    def __init__(self, planes, unique_rank, shared):
        super().__init__()
        for name, module in shared.items():
            setattr(self, name, module)
        if "shared_basis" in shared:  # SingleShared: one basis for both layers
            self.layer_bases = [shared["shared_basis"]] * 2
        else:
            self.layer_bases = [shared.get("shared_basis_1"), shared.get("shared_basis_2")]
        for layer, basis in zip((1, 2), self.layer_bases):
            rank = unique_rank + (basis.weight.shape[0] if basis is not None else 0)
            if unique_rank:
                setattr(self, f"basis_conv{layer}", nn.Conv2d(planes, unique_rank, 3, 1, 1, bias=False))
            setattr(self, f"basis_bn{layer}", nn.BatchNorm2d(rank))
            setattr(self, f"coeff_conv{layer}", nn.Conv2d(rank, planes, 1, bias=False))
            setattr(self, f"bn{layer}", nn.BatchNorm2d(planes))

    def layer(self, x, i):
        parts = [getattr(self, f"basis_conv{i}")(x)] if hasattr(self, f"basis_conv{i}") else []
        if self.layer_bases[i - 1] is not None:
            parts.append(self.layer_bases[i - 1](x))
        out = getattr(self, f"basis_bn{i}")(torch.cat(parts, dim=1))
        return getattr(self, f"bn{i}")(getattr(self, f"coeff_conv{i}")(out))

    def forward(self, x):
        return F.relu(self.layer(F.relu(self.layer(x, 1)), 2) + x)


class ResNet(nn.Module):
    """ResNet_Basis (and the original ResNet) of ``models/cifar10/resnet.py``."""

    def __init__(self, depth, variant, shared_rank, unique_rank, num_classes):
        super().__init__()
        blocks = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        in_planes = 16
        for g, (planes, m) in enumerate(zip((16, 32, 64), (1, 2, 4)), start=1):
            shared = {}
            if variant in ("double", "shared_only"):  # registered before the stage, as the authors
                for i in (1, 2):
                    setattr(self, f"shared_basis_{g}_{i}", nn.Conv2d(planes, shared_rank * m, 3, 1, 1, bias=False))
                    shared[f"shared_basis_{i}"] = getattr(self, f"shared_basis_{g}_{i}")
            elif variant == "single":
                setattr(self, f"shared_basis_{g}", nn.Conv2d(planes, shared_rank * m, 3, 1, 1, bias=False))
                shared["shared_basis"] = getattr(self, f"shared_basis_{g}")
            layer = [BasicBlock(in_planes, planes, 1 if g == 1 else 2)]
            for _ in range(1, blocks):
                layer.append(
                    BasicBlock(planes, planes, 1)
                    if variant == "original"
                    else BasisBlock(planes, unique_rank * m, shared)
                )
            setattr(self, f"layer{g}", nn.Sequential(*layer))
            in_planes = planes
        self.fc = nn.Linear(64, num_classes)
        self.variant = variant

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    def orthogonality(self):
        """train_cifar10.py's regulariser, as its loop computes it: per stage B = the shared rows
        then each basis block's basis_conv1, basis_conv2 rows; D = (B Bᵀ − I)²; the shared rows
        against all rows, plus each unique basis' own block; one mean over the stages."""
        if self.variant not in ("double", "single", "shared_only"):
            return torch.zeros(())
        sim, count = 0.0, 0
        for g in (1, 2, 3):
            layer = getattr(self, f"layer{g}")
            names = (
                [f"shared_basis_{g}"] if self.variant == "single" else [f"shared_basis_{g}_1", f"shared_basis_{g}_2"]
            )
            bases = [getattr(self, name).weight for name in names]
            num_shared = sum(b.shape[0] for b in bases)
            uniques = [
                getattr(block, f"basis_conv{j}").weight
                for block in list(layer)[1:]
                for j in (1, 2)
                if hasattr(block, f"basis_conv{j}")
            ]
            B = torch.cat(bases + uniques).flatten(1)
            D = (B @ B.T - torch.eye(B.shape[0], dtype=B.dtype)) ** 2
            sim = sim + D[:num_shared, :].sum()
            count += num_shared * B.shape[0]
            start = num_shared
            for unique in uniques:  # unique <-> unique within one layer
                u = unique.shape[0]
                sim = sim + D[start : start + u, start : start + u].sum()
                count += u * u
                start += u
        return sim / count


class Bottleneck(nn.Module):
    """BottleneckBlock (stride on the 3×3) and its shared forms: ``conv2``/``conv3`` given as
    ``(attribute name, module)`` are the stage's shared convs, assigned where the authors do."""

    def __init__(self, in_planes, planes, stride, conv2=None, conv3=None):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        name2, module2 = conv2 or ("conv2", nn.Conv2d(planes, planes, 3, stride, 1, bias=False))
        setattr(self, name2, module2)
        self.bn2 = nn.BatchNorm2d(planes)
        name3, module3 = conv3 or ("conv3", nn.Conv2d(planes, 4 * planes, 1, bias=False))
        setattr(self, name3, module3)
        self.bn3 = nn.BatchNorm2d(4 * planes)
        self.convs = [module2, module3]  # a list: not registered again
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != 4 * planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, 4 * planes, 1, stride, bias=False), nn.BatchNorm2d(4 * planes)
            )

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.convs[0](out)))
        return F.relu(self.bn3(self.convs[1](out)) + self.shortcut(x))


class ImageNetBottleneckResNet(nn.Module):
    """ResNet50/101 (``shared`` = None, 'shared' (SharedSingle) or 'shared++' (Shared))."""

    def __init__(self, depth, shared, num_classes):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        in_planes = 64
        for g, (planes, blocks) in enumerate(
            zip((64, 128, 256, 512), {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}[depth]), start=1
        ):
            conv2 = conv3 = None
            if shared == "shared":
                setattr(self, f"shared_basis_{g}", nn.Conv2d(planes, planes, 3, 1, 1, bias=False))
                conv2 = ("shared_basis", getattr(self, f"shared_basis_{g}"))
            elif shared == "shared++":
                setattr(self, f"shared_basis_{g}_1", nn.Conv2d(planes, planes, 3, 1, 1, bias=False))
                setattr(self, f"shared_basis_{g}_2", nn.Conv2d(planes, 4 * planes, 1, bias=False))
                conv2, conv3 = (
                    ("shared_basis_1", getattr(self, f"shared_basis_{g}_1")),
                    ("shared_basis_2", getattr(self, f"shared_basis_{g}_2")),
                )
            layer = [Bottleneck(in_planes, planes, 1 if g == 1 else 2)]
            layer += [Bottleneck(4 * planes, planes, 1, conv2, conv3) for _ in range(1, blocks)]
            setattr(self, f"layer{g}", nn.Sequential(*layer))
            in_planes = 4 * planes
        self.fc = nn.Linear(2048, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class InvertedResidual(nn.Module):
    """Block / BlockShared / BlockSharedDoubleAttention of the authors' mobilenetv2.py."""

    def __init__(self, c_in, c_out, t, stride, expand=None, project=None):
        super().__init__()
        planes = t * c_in
        if expand is None:
            self.conv1 = expand = nn.Conv2d(c_in, planes, 1, bias=False)
        else:
            self.shared_basis1 = expand
        if project is not None:
            self.shared_basis2 = project
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, groups=planes, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        if project is None:
            self.conv3 = project = nn.Conv2d(planes, c_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out)
        if hasattr(self, "shared_basis2"):
            k = 1 if c_in < 96 else 3
            self.chan_attention = nn.Module()
            self.chan_attention.conv = nn.Conv1d(1, 1, k, padding=(k - 1) // 2, bias=False)
        self.convs = [expand, project]  # a list: not registered again
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x):
        out = F.relu(self.bn1(self.convs[0](x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.convs[1](out))
        if hasattr(self, "chan_attention"):
            pooled = F.adaptive_avg_pool2d(out, 1).squeeze(-1).transpose(-1, -2)  # (N, 1, C)
            out = out * torch.sigmoid(self.chan_attention.conv(pooled)).transpose(-1, -2).unsqueeze(-1)
        return x + out if self.residual else out


class MobileNetV2(nn.Module):
    """MobileNetV2 (``shared`` = None), _Shared ('shared'), _SharedDouble ('shared++')."""

    STAGES = (
        (1, 32, 16, 1, 1),
        (2, 16, 24, 2, 6),
        (3, 24, 32, 2, 6),
        (4, 32, 64, 2, 6),
        (3, 64, 96, 1, 6),
        (3, 96, 160, 2, 6),
        (1, 160, 320, 1, 6),
    )

    def __init__(self, shared, num_classes):
        super().__init__()
        self.pre = nn.Sequential(nn.Conv2d(3, 32, 3, 2, 1), nn.BatchNorm2d(32), nn.ReLU6())
        for index, (blocks, c_in, c_out, stride, t) in enumerate(self.STAGES, start=1):
            expand = project = None
            if shared and 3 <= index <= 6:
                g = index - 2
                names = [f"shared_basis_{g}"] if shared == "shared" else [f"shared_basis_{g}_1", f"shared_basis_{g}_2"]
                setattr(self, names[0], nn.Conv2d(c_out, t * c_out, 1, bias=False))
                expand = getattr(self, names[0])
                if shared == "shared++":
                    setattr(self, names[1], nn.Conv2d(t * c_out, c_out, 1, bias=False))
                    project = getattr(self, names[1])
            layer = [InvertedResidual(c_in, c_out, t, stride)]
            layer += [InvertedResidual(c_out, c_out, t, 1, expand, project) for _ in range(1, blocks)]
            setattr(self, f"stage{index}", layer[0] if blocks == 1 else nn.Sequential(*layer))
        self.conv1 = nn.Sequential(nn.Conv2d(320, 1280, 1), nn.BatchNorm2d(1280), nn.ReLU6())
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

    def forward(self, x):
        x = self.pre(x)
        for index in range(1, 8):
            x = getattr(self, f"stage{index}")(x)
        return self.classifier(F.adaptive_avg_pool2d(self.conv1(x), 1).flatten(1))


# ---- CIFAR-100 DenseNet121 and ResNeXt50 (written from the authors' models/cifar100/densenet.py
# and resnext.py: the same attribute names and registration order, so the same state_dict keys)


class DenseLayer(nn.Module):
    """BottleNeck (``basis`` None: BN-ReLU-1×1-BN-ReLU-3×3 as ``residual_function``) or
    BottleNeck_SingleShared (``basis``: the block's shared module, assigned first)."""

    def __init__(self, c_in, growth, basis=None, unique=0):
        super().__init__()
        inner = 4 * growth
        if basis is None:
            self.residual_function = nn.Sequential(
                nn.BatchNorm2d(c_in),
                nn.ReLU(),
                nn.Conv2d(c_in, inner, 1, bias=False),
                nn.BatchNorm2d(inner),
                nn.ReLU(),
                nn.Conv2d(inner, growth, 3, padding=1, bias=False),
            )
            return
        self.shared_basis = basis
        rank = unique + basis.weight.shape[0]
        self.bn0, self.conv1, self.bn1 = (
            nn.BatchNorm2d(c_in),
            nn.Conv2d(c_in, inner, 1, bias=False),
            nn.BatchNorm2d(inner),
        )
        self.basis_conv2 = nn.Conv2d(inner, unique, 3, padding=1, bias=False)
        self.basis_bn2, self.coeff_conv2 = nn.BatchNorm2d(rank), nn.Conv2d(rank, growth, 1, bias=False)

    def forward(self, x):
        if hasattr(self, "residual_function"):
            return torch.cat([x, self.residual_function(x)], 1)
        out = F.relu(self.bn1(self.conv1(F.relu(self.bn0(x)))))
        out = self.basis_bn2(torch.cat([self.basis_conv2(out), self.shared_basis(out)], 1))
        return torch.cat([x, self.coeff_conv2(out)], 1)


class DenseNet121(nn.Module):
    """DenseNet121 (``ranks`` None) or DenseNet121_SingleShared(S, U) (``ranks`` = (S, U)):
    ``features`` registered before shared_basis_1…4; the last block uses shared_basis_3."""

    def __init__(self, ranks, num_classes, growth=32):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 2 * growth, 3, padding=1, bias=False)
        self.features = nn.Sequential()
        if ranks:
            for g in range(1, 5):
                setattr(self, f"shared_basis_{g}", nn.Conv2d(4 * growth, ranks[0], 3, padding=1, bias=False))
        channels = 2 * growth
        for block, layers in enumerate((6, 12, 24, 16)):
            basis = getattr(self, f"shared_basis_{min(block, 2) + 1}") if ranks else None
            unique = ranks[1] if ranks else 0
            dense = nn.Sequential(
                OrderedDict(
                    (f"bottle_neck_layer_{i}", DenseLayer(channels + i * growth, growth, basis, unique))
                    for i in range(layers)
                )
            )
            name = "dense_block3" if block == 3 and not ranks else f"dense_block_layer_{block}"
            self.features.add_module(name, dense)
            channels += layers * growth
            if block < 3:
                transition = nn.Module()
                transition.down_sample = nn.Sequential(
                    nn.BatchNorm2d(channels), nn.Conv2d(channels, channels // 2, 1, bias=False), nn.AvgPool2d(2)
                )
                self.features.add_module(f"transition_layer_{block}", transition)
                channels //= 2
        self.features.add_module("bn", nn.BatchNorm2d(channels))
        self.linear = nn.Linear(channels, num_classes)

    def forward(self, x):
        out = self.conv1(x)
        for name, module in self.features.named_children():
            out = module.down_sample(out) if name.startswith("transition") else module(out)
        return self.linear(torch.flatten(F.adaptive_avg_pool2d(F.relu(out), 1), 1))


class ResNeXtBlock(nn.Module):
    """BottleNeck (``basis`` None; ``residual_function``, 32 groups of width/32) or
    BottleNeck_SingleShared (``basis``: the stage's shared module, S/4 groups; U·m/4 unique)."""

    def __init__(self, in_planes, planes, stride, basis=None, unique=0):
        super().__init__()
        width, out_planes = planes // 64 * 4 * 32, 4 * planes
        if basis is None:
            self.residual_function = nn.Sequential(
                nn.Conv2d(in_planes, width, 1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(),
                nn.Conv2d(width, width, 3, stride, 1, groups=32, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(),
                nn.Conv2d(width, out_planes, 1, bias=False),
                nn.BatchNorm2d(out_planes),
            )
        else:
            self.shared_basis = basis
            rank = unique + basis.weight.shape[0]
            self.conv1, self.bn1 = nn.Conv2d(in_planes, width, 1, bias=False), nn.BatchNorm2d(width)
            self.basis_conv2 = nn.Conv2d(width, unique, 3, stride, 1, groups=unique // 4, bias=False)
            self.bn2, self.conv3, self.bn3 = (
                nn.BatchNorm2d(rank),
                nn.Conv2d(rank, out_planes, 1, bias=False),
                nn.BatchNorm2d(out_planes),
            )
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != out_planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, out_planes, 1, stride, bias=False), nn.BatchNorm2d(out_planes)
            )

    def forward(self, x):
        if hasattr(self, "residual_function"):
            return F.relu(self.residual_function(x) + self.shortcut(x))
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(torch.cat([self.basis_conv2(out), self.shared_basis(out)], 1)))
        return F.relu(self.bn3(self.conv3(out)) + self.shortcut(x))


class ResNeXt50(nn.Module):
    """ResNext50_32x4d (``ranks`` None) or ResNext50_32x4d_SingleShared(S, U) (``ranks`` = (S, U))."""

    def __init__(self, ranks, num_classes):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64)
        in_planes = 64
        for g, (planes, blocks, m) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3), (1, 2, 4, 8)), start=1):
            basis = None
            if ranks:
                setattr(
                    self,
                    f"shared_basis_{g}",
                    nn.Conv2d(planes // 64 * 128, ranks[0] * m, 3, padding=1, groups=ranks[0] // 4, bias=False),
                )
                basis = getattr(self, f"shared_basis_{g}")
            layer = [ResNeXtBlock(in_planes, planes, 1 if g == 1 else 2)]
            layer += [
                ResNeXtBlock(4 * planes, planes, 1, basis, ranks[1] * m if ranks else 0) for _ in range(1, blocks)
            ]
            setattr(self, f"layer{g}", nn.Sequential(*layer))
            in_planes = 4 * planes
        self.linear = nn.Linear(2048, num_classes)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.linear(torch.flatten(F.avg_pool2d(out, 4), 1))


def build_torch_model(spec, state_dict, dtype=torch.float32):
    """The authors' structure for a minibasis ``spec`` (a ModelSpec, or a model: its ``.spec``):
    the CIFAR-10 ResNets, the ImageNet ResNet50/101 (Shared, Shared++) and the MobileNetV2s,
    loaded strictly from ``state_dict``."""
    spec = getattr(spec, "spec", spec)
    shared = None if spec.variant == "original" else spec.variant
    ranks = None if spec.variant == "original" else (spec.shared_rank, spec.unique_rank)
    if spec.architecture in ("densenet", "resnext"):
        net = (DenseNet121 if spec.architecture == "densenet" else ResNeXt50)(ranks, spec.num_classes)
    elif spec.architecture == "mobilenetv2" and spec.dataset == "imagenet":
        net = MobileNetV2(shared, spec.num_classes)
    elif spec.dataset == "imagenet" and spec.depth in (50, 101):
        net = ImageNetBottleneckResNet(spec.depth, shared, spec.num_classes)
    elif spec.dataset == "cifar10":
        net = ResNet(spec.depth, spec.variant, spec.shared_rank, spec.unique_rank, spec.num_classes)
    else:
        expected = "a CIFAR-10 ResNet, an ImageNet ResNet50/101 or MobileNetV2, a CIFAR-100 DenseNet121 or ResNeXt50"
        raise ValueError(f"spec: expected {expected}, got {spec.name!r}")
    net = net.to(dtype)
    net.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state_dict.items()}, strict=True)
    return net
