"""The authors' CIFAR ResNets in PyTorch, for comparing minibasis against PyTorch (optional).

Needs torch (not a dependency of minibasis). The modules are written after the structure of
ssregibility/Net_RL2 models/cifar10/resnet.py (same attribute names, so the same
``state_dict`` keys; a shared basis is one module registered on the model and on every block
that uses it, as there)::

    net = build_torch_model(model, to_state_dict(model, params, state))   # strict load
"""

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class OptionA(nn.Module):
    """Every second pixel, channels zero-padded equally on both sides."""

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
    """Two basis layers: cat(unique ∗ x, shared ∗ x) → basis_bn → 1×1 coeff → bn."""

    def __init__(self, planes, unique, shared):
        super().__init__()
        # Registration order fixes the state_dict order: shared modules first, as the authors.
        for name, module in shared:
            setattr(self, name, module)
        self.shared = [module for _, module in shared]
        if len(self.shared) == 1:
            self.shared = self.shared * 2
        rank = unique + (self.shared[0].weight.shape[0] if self.shared else 0)
        for layer in (1, 2):
            if unique:
                setattr(self, f"basis_conv{layer}", nn.Conv2d(planes, unique, 3, 1, 1, bias=False))
            setattr(self, f"basis_bn{layer}", nn.BatchNorm2d(rank))
            setattr(self, f"coeff_conv{layer}", nn.Conv2d(rank, planes, 1, bias=False))
            setattr(self, f"bn{layer}", nn.BatchNorm2d(planes))

    def layer(self, x, i):
        parts = []
        if hasattr(self, f"basis_conv{i}"):
            parts.append(getattr(self, f"basis_conv{i}")(x))
        if self.shared:
            parts.append(self.shared[i - 1](x))
        out = getattr(self, f"basis_bn{i}")(torch.cat(parts, dim=1))
        return getattr(self, f"bn{i}")(getattr(self, f"coeff_conv{i}")(out))

    def forward(self, x):
        return F.relu(self.layer(F.relu(self.layer(x, 1)), 2) + x)


class ResNet(nn.Module):
    def __init__(self, minibasis_model):
        super().__init__()
        self.model = [minibasis_model]  # a list: not registered as a module
        spec = minibasis_model.spec
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        in_planes = 16
        for g, (planes, m) in enumerate(zip((16, 32, 64), (1, 2, 4)), start=1):
            shared = []
            for local, name in minibasis_model.block_shared(g):
                module = nn.Conv2d(planes, spec.shared_rank * m, 3, 1, 1, bias=False)
                setattr(self, name, module)
                shared.append((local, module))
            blocks = [BasicBlock(in_planes, planes, 1 if g == 1 else 2)]
            for _ in range(1, spec.blocks_per_stage):
                if spec.variant == "original":
                    blocks.append(BasicBlock(planes, planes, 1))
                else:
                    blocks.append(BasisBlock(planes, spec.unique_rank * m, shared))
            setattr(self, f"layer{g}", nn.Sequential(*blocks))
            in_planes = planes
        self.fc = nn.Linear(64, spec.num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    def orthogonality(self):
        """The authors' regulariser R, computed independently of minibasis (same definition)."""
        model = self.model[0]
        numerator, denominator = 0.0, 0
        for g in (1, 2, 3):
            shared = [getattr(self, n).weight for n in model.shared_names(g)]
            unique = []
            for block in list(getattr(self, f"layer{g}"))[1:]:
                unique += [getattr(block, f"basis_conv{i}").weight for i in (1, 2) if hasattr(block, f"basis_conv{i}")]
            rows = [w.reshape(w.shape[0], -1) for w in shared + unique]
            if not rows:
                continue
            B = torch.cat(rows)
            D = (B @ B.T - torch.eye(B.shape[0], dtype=B.dtype)) ** 2
            m = sum(w.shape[0] for w in shared)
            numerator = numerator + D[:m].sum()
            denominator += m * B.shape[0]
            start = m
            for w in unique:
                end = start + w.shape[0]
                numerator = numerator + D[start:end, start:end].sum()
                denominator += w.shape[0] ** 2
                start = end
        return numerator / denominator


def build_torch_model(minibasis_model, state_dict, dtype=torch.float32):
    """The authors' structure for ``minibasis_model``, loaded strictly from ``state_dict``."""
    net = ResNet(minibasis_model).to(dtype)  # before loading: float64 weights stay float64
    net.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state_dict.items()}, strict=True)
    return net
