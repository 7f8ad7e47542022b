"""The authors' CIFAR ResNets (ssregibility/Net_RL2, models/cifar10/resnet.py), re-derived
independently of minibasis: module order, shapes and state_dict keys, for the tests."""

import numpy as np

WIDTHS = (16, 32, 64)
MULTIPLIERS = (1, 2, 4)


# ---- the authors' model, re-derived from their PyTorch code --------------------------------


def shared_owner_names(variant, g):
    """The model-level shared bases of stage ``g`` (1-based), in registration order:
    ``shared_basis_g_1, shared_basis_g_2`` (DoubleShared, SharedOnly), ``shared_basis_g``
    (SingleShared), none (original, NonShared)."""
    if variant in ("double", "shared_only"):
        return [f"shared_basis_{g}_1", f"shared_basis_{g}_2"]
    if variant == "single":
        return [f"shared_basis_{g}"]
    return []


def authors_modules(depth, variant, s=0, u=0, num_classes=10):
    """The authors' modules in ``state_dict`` order: [(name, kind, shape, alias, uses)].

    kind 'conv' (weight shape), 'bn' (channels,), 'linear' ((out, in)); ``alias``: True for a
    block's reference to a model-level shared basis (a state_dict copy, not a parameter of its
    own); ``uses``: [output pixels of each use of this conv on a 32×32 image].
    ResNet_Basis registers ``shared_basis_g_1, shared_basis_g_2`` before ``layer{g}``; a
    BasicBlock_Basis assigns ``self.shared_basis_1/2`` before its own convs, so its copies come
    first in the block; SingleShared uses ``shared_basis_g`` / the block's ``shared_basis``.
    """
    n = (depth - 2) // 6
    mods = [("conv1", "conv", (16, 3, 3, 3), False, [32 * 32]), ("bn1", "bn", (16,), False, [])]
    in_planes, size = 16, 32
    for g, (planes, m) in enumerate(zip(WIDTHS, MULTIPLIERS), start=1):
        S, U = s * m, u * m
        owners = shared_owner_names(variant, g)
        local = {
            "double": ["shared_basis_1", "shared_basis_2"],
            "shared_only": ["shared_basis_1", "shared_basis_2"],
            "single": ["shared_basis"],
        }.get(variant, [])  # a block's attributes referencing them
        for name in owners:
            mods.append((name, "conv", (S, planes, 3, 3), False, []))
        for b in range(n):
            p = f"layer{g}.{b}"
            if b == 0 or variant == "original":
                stride = 2 if g > 1 and b == 0 else 1
                size //= stride
                mods += [
                    (f"{p}.conv1", "conv", (planes, in_planes, 3, 3), False, [size * size]),
                    (f"{p}.bn1", "bn", (planes,), False, []),
                    (f"{p}.conv2", "conv", (planes, planes, 3, 3), False, [size * size]),
                    (f"{p}.bn2", "bn", (planes,), False, []),
                ]
                in_planes = planes
                continue
            rank = U + (S if owners else 0)
            for name in local:
                uses = [size * size] * (2 if variant == "single" else 1)
                mods.append((f"{p}.{name}", "conv", (S, planes, 3, 3), True, uses))
            for layer in (1, 2):
                if U:
                    mods.append((f"{p}.basis_conv{layer}", "conv", (U, planes, 3, 3), False, [size * size]))
                mods += [
                    (f"{p}.basis_bn{layer}", "bn", (rank,), False, []),
                    (f"{p}.coeff_conv{layer}", "conv", (planes, rank, 1, 1), False, [size * size]),
                    (f"{p}.bn{layer}", "bn", (planes,), False, []),
                ]
    mods.append(("fc", "linear", (num_classes, 64), False, [1]))
    return mods


def authors_parameters(*args, **kwargs):
    """``named_parameters()`` of the authors' model: [(name, shape)], shared bases once."""
    out = []
    for name, kind, shape, alias, _ in authors_modules(*args, **kwargs):
        if alias:
            continue
        if kind == "conv":
            out.append((f"{name}.weight", shape))
        else:
            out += [(f"{name}.weight", shape), (f"{name}.bias", shape[:1])]
    return out


def authors_buffers(*args, **kwargs):
    out = []
    for name, kind, shape, _, _ in authors_modules(*args, **kwargs):
        if kind == "bn":
            out += [
                (f"{name}.running_mean", shape),
                (f"{name}.running_var", shape),
                (f"{name}.num_batches_tracked", ()),
            ]
    return out


def authors_macs(*args, **kwargs):
    """Conv and linear multiply-accumulates on one 3×32×32 image, a shared basis at each use."""
    return sum(
        int(np.prod(shape)) * pixels
        for _, kind, shape, _, uses in authors_modules(*args, **kwargs)
        if kind != "bn"
        for pixels in uses
    )


def authors_state_dict_keys(depth, variant, unique_rank=1):
    """The authors' ``state_dict().keys()``: modules in registration order, a block's reference
    to a shared basis listed again under the block (before its own convs), BN buffers after
    the affine weights."""
    keys = []
    for name, kind, _, _, _ in authors_modules(depth, variant, 1, unique_rank):
        if kind == "conv":
            keys.append(f"{name}.weight")
        elif kind == "bn":
            keys += [f"{name}.{k}" for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")]
        else:
            keys += [f"{name}.weight", f"{name}.bias"]
    return keys
