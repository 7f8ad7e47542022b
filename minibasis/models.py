"""CIFAR ResNets (depth 6n + 2) with shared filter bases, as the authors built them.

Structure (He et al. 2016, CIFAR variant; Kim & Kang's ``models/cifar10/resnet.py``):
stem 3×3 conv 3→16, BN, ReLU; three stages of n blocks at widths 16/32/64 (32/16/8 px);
the first block of every stage is a plain BasicBlock (conv, BN, ReLU, conv, BN, + shortcut,
ReLU; stride 2 and the option-A shortcut in stages 2 and 3); blocks 2…n are basis blocks (two
basis layers, ReLU after the first, identity shortcut, ReLU after the add); global average
pooling; linear 64 → classes. In stage g (m = 1, 2, 4) a shared basis has s·m elements and
every basis layer u·m unique elements.

Variants (spec strings, see :func:`parse_spec`):

============  ====================  ==========================================================
variant       spec                  bases in stage g
============  ====================  ==========================================================
original      ``resnet56``          none: plain 3×3 convs
double        ``resnet56-s16u1``    two shared (``shared_basis_g_1`` for every block's first
                                    layer, ``shared_basis_g_2`` for every second) + unique
single        ``resnet56-single-s16u1``  one shared ``shared_basis_g`` for both layers + unique
shared_only   ``resnet56-s16u0``    two shared, no unique part
non_shared    ``resnet56-s0u1``     unique only (no sharing, no orthogonality loss)
============  ====================  ==========================================================

A model is a pair of pure functions over explicit trees::

    model = create_model("resnet56-s16u1")
    params, state = model.init(seed=0)
    logits, state = model.apply(params, state, x, train=True)

``params`` is a nested dict whose dotted paths are the authors' PyTorch ``state_dict`` names
(``layer1.1.coeff_conv2.weight``); BN running statistics live in ``state``. A shared basis is
one array (``params["shared_basis_1_1"]["weight"]``) used by every block of the stage;
autograd sums its gradients.
"""

import re
from dataclasses import dataclass

import numpy as onp

from .basis import basis_layer, orthogonal, orthogonal_bases, orthogonality_loss
from .conv import conv2d
from .layers import batch_norm, batch_norm_state, global_avg_pool, linear, relu, shortcut_a
from .tree import unflatten

VARIANTS = ("original", "double", "single", "shared_only", "non_shared")
WIDTHS = (16, 32, 64)
STAGE_MULTIPLIERS = (1, 2, 4)  # ranks scale with the width
SPEC_HELP = (
    "valid model specs: 'resnet{D}' (original), 'resnet{D}-s{S}u{U}' (DoubleShared with S, U > 0; "
    "SharedOnly with U = 0; NonShared with S = 0), 'resnet{D}-single-s{S}u{U}' (SingleShared), "
    "'resnet{D}-double-s{S}u{U}' (explicit DoubleShared); D = 6n + 2 (20, 32, 44, 56, 110, …), "
    "e.g. resnet56-s16u1 (the paper's ResNet56-S16U1*)"
)


@dataclass(frozen=True)
class ModelSpec:
    depth: int
    variant: str
    shared_rank: int = 0
    unique_rank: int = 0
    num_classes: int = 10

    @property
    def blocks_per_stage(self):
        return (self.depth - 2) // 6

    @property
    def name(self):
        if self.variant == "original":
            return f"resnet{self.depth}"
        prefix = {"single": "-single", "double": "", "shared_only": "", "non_shared": ""}[self.variant]
        return f"resnet{self.depth}{prefix}-s{self.shared_rank}u{self.unique_rank}"


def parse_spec(spec, num_classes=10):
    """'resnet56-s16u1' -> ModelSpec. An unknown or malformed spec is a ValueError listing what is valid."""
    if not isinstance(spec, str):
        raise TypeError(f"spec: expected a string such as 'resnet56-s16u1', got {type(spec).__name__}")
    match = re.fullmatch(r"resnet(\d+)(?:-(?:(single|double)-)?s(\d+)u(\d+))?", spec.strip().lower())
    if not match:
        raise ValueError(f"spec: expected a model spec, got {spec!r}; {SPEC_HELP}")
    depth = int(match.group(1))
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"spec: expected a depth 6n + 2 ≥ 8, got {depth} in {spec!r}; {SPEC_HELP}")
    if not isinstance(num_classes, (int, onp.integer)) or num_classes < 1:
        raise ValueError(f"num_classes: expected a positive int, got {num_classes!r}")
    if match.group(3) is None:
        return ModelSpec(depth, "original", num_classes=num_classes)
    kind, s, u = match.group(2), int(match.group(3)), int(match.group(4))
    if s == 0 and u == 0:
        raise ValueError(f"spec: expected s > 0 or u > 0, got {spec!r}; {SPEC_HELP}")
    if kind == "single":
        if s == 0:
            raise ValueError(f"spec: expected s > 0 for SingleShared, got {spec!r}; {SPEC_HELP}")
        variant = "single"
    elif s == 0:
        variant = "non_shared"
    elif u == 0:
        variant = "shared_only"
    else:
        variant = "double"
    if kind == "double" and variant != "double":
        raise ValueError(f"spec: expected s > 0 and u > 0 for an explicit DoubleShared, got {spec!r}; {SPEC_HELP}")
    return ModelSpec(depth, variant, s, u, num_classes)


@dataclass(frozen=True)
class Module:
    """One PyTorch module of the authors' model, in ``state_dict`` order.

    kind: 'conv' (weight shape), 'bn' (channels), 'linear' (weight shape (out, in)).
    alias: for a block's view of a shared basis, the dotted name of the module it uses.
    out_pixels: H_out·W_out of a conv's use (0 for a shared basis' owner, which is only used
    through its aliases).
    """

    name: str
    kind: str
    shape: tuple
    alias: str = None
    out_pixels: int = 0


class Model:
    """A CIFAR ResNet of a given spec: ``init``, ``apply``, ``orthogonality``, ``modules``."""

    def __init__(self, spec):
        self.spec = spec
        self.modules = self._build_modules()

    def __repr__(self):
        return f"Model({self.spec.name!r}, num_classes={self.spec.num_classes})"

    @property
    def regulariser(self):
        """Name of the authors' orthogonality regulariser this model is trained with, or None
        (trained with cross-entropy alone): the default λ is 10 exactly when it is not None."""
        return {"double": "train_basis_double", "single": "train_basis_single", "shared_only": "train_basis_sharedonly"}.get(self.spec.variant)

    # ---- structure --------------------------------------------------------------------------

    def shared_names(self, stage):
        """Model-level names of stage g's shared bases, in the order the blocks' layers use them."""
        v = self.spec.variant
        if v in ("double", "shared_only"):
            return [f"shared_basis_{stage}_1", f"shared_basis_{stage}_2"]
        if v == "single":
            return [f"shared_basis_{stage}"]
        return []

    def block_shared(self, stage):
        """[(name inside a block, model-level name)] for layer 1 and layer 2 of a basis block."""
        names = self.shared_names(stage)
        if self.spec.variant == "single":
            return [("shared_basis", names[0])]
        return [(f"shared_basis_{i + 1}", n) for i, n in enumerate(names)]

    def _layer_shared_names(self, stage):
        """Model-level names of the shared basis of a basis block's layer 1 and layer 2 (None: none)."""
        names = self.shared_names(stage)
        return (names * 2)[:2] if names else [None, None]

    def basis_layer_trees(self, params, state, stage, block, layer):
        """``(params, state)`` of basis layer ``layer`` (1 or 2) of ``block`` in ``stage``, as
        :func:`minibasis.basis.basis_layer` (and ``fold_basis_layer``) take them."""
        name = self._layer_shared_names(stage)[layer - 1]
        shared = params[name]["weight"] if name else None
        return _basis_layer_trees(params[f"layer{stage}"][str(block)], state[f"layer{stage}"][str(block)], shared, layer)

    def _build_modules(self):
        spec = self.spec
        mods = [Module("conv1", "conv", (16, 3, 3, 3), out_pixels=32 * 32), Module("bn1", "bn", (16,))]
        c_in, size = 16, 32
        for g, (width, m) in enumerate(zip(WIDTHS, STAGE_MULTIPLIERS), start=1):
            s, u = spec.shared_rank * m, spec.unique_rank * m
            for name in self.shared_names(g):
                mods.append(Module(name, "conv", (s, width, 3, 3)))
            for b in range(spec.blocks_per_stage):
                p = f"layer{g}.{b}"
                if b == 0 or spec.variant == "original":
                    size = size if g == 1 or b > 0 else size // 2
                    mods += [
                        Module(f"{p}.conv1", "conv", (width, c_in, 3, 3), out_pixels=size * size),
                        Module(f"{p}.bn1", "bn", (width,)),
                        Module(f"{p}.conv2", "conv", (width, width, 3, 3), out_pixels=size * size),
                        Module(f"{p}.bn2", "bn", (width,)),
                    ]
                    c_in = width
                    continue
                for local, owner in self.block_shared(g):
                    uses = 2 if spec.variant == "single" else 1  # one shared basis, both layers
                    mods.append(Module(f"{p}.{local}", "conv", (s, width, 3, 3), alias=owner, out_pixels=uses * size * size))
                for layer in (1, 2):
                    r = u + (s if self.shared_names(g) else 0)
                    if u:
                        mods.append(Module(f"{p}.basis_conv{layer}", "conv", (u, width, 3, 3), out_pixels=size * size))
                    mods += [
                        Module(f"{p}.basis_bn{layer}", "bn", (r,)),
                        Module(f"{p}.coeff_conv{layer}", "conv", (width, r, 1, 1), out_pixels=size * size),
                        Module(f"{p}.bn{layer}", "bn", (width,)),
                    ]
        mods.append(Module("fc", "linear", (spec.num_classes, 64)))
        return mods

    # ---- parameters -------------------------------------------------------------------------

    def init(self, seed, dtype=onp.float32):
        """Fresh ``(params, state)`` as the authors initialise them, reproducible from ``seed``.

        Every conv Kaiming-normal with fan_out (std = √(2 / (C_out·kh·kw))), BN weight 1 and
        bias 0 (running mean 0, var 1), linear as PyTorch's default (weight and bias uniform
        ±1/√fan_in); then the shared bases orthogonal: jointly per stage for DoubleShared and
        SharedOnly (their two bases are orthogonal to each other too), one at a time for
        SingleShared.
        """
        rng = onp.random.default_rng(seed)
        flat_params, flat_state = {}, {}
        for mod in self.modules:
            if mod.alias:
                continue
            if mod.kind == "conv":
                fan_out = mod.shape[0] * mod.shape[2] * mod.shape[3]
                flat_params[f"{mod.name}.weight"] = (rng.standard_normal(mod.shape) * onp.sqrt(2.0 / fan_out)).astype(dtype)
            elif mod.kind == "bn":
                flat_params[f"{mod.name}.weight"] = onp.ones(mod.shape, dtype)
                flat_params[f"{mod.name}.bias"] = onp.zeros(mod.shape, dtype)
                for key, value in batch_norm_state(mod.shape[0], dtype).items():
                    flat_state[f"{mod.name}.{key}"] = value
            else:
                bound = 1.0 / onp.sqrt(mod.shape[1])
                flat_params[f"{mod.name}.weight"] = rng.uniform(-bound, bound, mod.shape).astype(dtype)
                flat_params[f"{mod.name}.bias"] = rng.uniform(-bound, bound, mod.shape[:1]).astype(dtype)
        for g in range(1, 4):
            names = self.shared_names(g)
            if not names:
                continue
            shape = flat_params[f"{names[0]}.weight"].shape
            if self.spec.variant == "single":
                bases = [orthogonal(rng, shape, dtype)]
            else:
                bases = orthogonal_bases(rng, len(names), shape, dtype)
            for name, basis in zip(names, bases):
                flat_params[f"{name}.weight"] = basis
        return unflatten(flat_params), unflatten(flat_state)

    # ---- forward ----------------------------------------------------------------------------

    def apply(self, params, state, x, /, *, train):
        """Logits of ``x: (N, 3, H, W)``; returns ``(logits: (N, classes), new_state)``.

        train=True: BN normalises with batch statistics and the returned state holds the
        updated running statistics; train=False: BN uses the running statistics.
        """
        if getattr(x, "ndim", None) != 4 or x.shape[1] != 3:
            raise ValueError(f"x: expected shape (N, 3, H, W), got {getattr(x, 'shape', type(x).__name__)}")
        new = {}
        h = conv2d(x, params["conv1"]["weight"], padding=1)
        h, new["bn1"] = _bn(h, params["bn1"], state["bn1"], train, relu=True)
        for g, width in enumerate(WIDTHS, start=1):
            stage, stage_state = params[f"layer{g}"], state[f"layer{g}"]
            new_stage = new[f"layer{g}"] = {}
            shared = [params[n]["weight"] if n else None for n in self._layer_shared_names(g)]
            for b in range(self.spec.blocks_per_stage):
                key = str(b)
                if b == 0 or self.spec.variant == "original":
                    stride = 2 if g > 1 and b == 0 else 1
                    h, new_stage[key] = _basic_block(h, stage[key], stage_state[key], width, stride, train)
                else:
                    h, new_stage[key] = _basis_block(h, stage[key], stage_state[key], shared, train)
        logits = linear(global_avg_pool(h), params["fc"]["weight"], params["fc"]["bias"])
        return logits, new

    # ---- orthogonality ----------------------------------------------------------------------

    def orthogonality(self, params):
        """The authors' orthogonality regulariser R over the three stages (see
        :func:`minibasis.basis.orthogonality_loss`); 0.0 for the original ResNet."""
        if self.spec.variant == "original":
            return 0.0
        stages = []
        for g in range(1, 4):
            shared = [params[n]["weight"] for n in self.shared_names(g)]
            unique = []
            if self.spec.unique_rank:
                for b in range(1, self.spec.blocks_per_stage):
                    block = params[f"layer{g}"][str(b)]
                    unique += [block["basis_conv1"]["weight"], block["basis_conv2"]["weight"]]
            stages.append((shared, unique))
        return orthogonality_loss(stages)

    # ---- accounting -------------------------------------------------------------------------

    def accounting(self):
        """Rows ``(name, params, macs)`` per module use, for one 3×32×32 image.

        Parameters count BN affine weights and each shared basis once (at its owner);
        MACs count conv and linear multiply-accumulates, a shared basis at every use.
        """
        rows = []
        for mod in self.modules:
            if mod.kind == "conv":
                weights = int(onp.prod(mod.shape))
                rows.append((mod.name, 0 if mod.alias else weights, mod.out_pixels * weights))
            elif mod.kind == "bn":
                rows.append((mod.name, 2 * mod.shape[0], 0))
            else:
                out, fan_in = mod.shape
                rows.append((mod.name, out * fan_in + out, out * fan_in))
        return rows

    def count_params(self):
        return sum(p for _, p, _ in self.accounting())

    def count_macs(self):
        return sum(m for _, _, m in self.accounting())


def _bn(h, p, s, train, relu=False):
    return batch_norm(h, p["weight"], p["bias"], s, train=train, relu=relu)


def _basic_block(x, p, s, width, stride, train):
    """conv → BN → ReLU → conv → BN, + shortcut (option A when the shape changes), ReLU."""
    new = {}
    h = conv2d(x, p["conv1"]["weight"], stride=stride, padding=1)
    h, new["bn1"] = _bn(h, p["bn1"], s["bn1"], train, relu=True)
    h = conv2d(h, p["conv2"]["weight"], padding=1)
    h, new["bn2"] = _bn(h, p["bn2"], s["bn2"], train)
    shortcut = x if stride == 1 and x.shape[1] == width else shortcut_a(x, out_channels=width)
    return relu(h + shortcut), new


def _basis_block(x, p, s, shared, train):
    """basis layer 1 → ReLU → basis layer 2, + identity, ReLU (the authors' BasicBlock_Basis)."""
    new = {}
    h = x
    for layer, shared_basis in zip((1, 2), shared):
        layer_params, layer_state = _basis_layer_trees(p, s, shared_basis, layer)
        h, out = basis_layer(h, layer_params, layer_state, train=train, relu=layer == 1)
        new[f"basis_bn{layer}"], new[f"bn{layer}"] = out["basis_bn"], out["bn"]
    return relu(h + x), new


def _basis_layer_trees(p, s, shared_basis, layer):
    """A basis block's ``state_dict``-named params/state -> basis_layer's trees for one layer."""
    layer_params = {
        "unique_basis": p[f"basis_conv{layer}"]["weight"] if f"basis_conv{layer}" in p else None,
        "shared_basis": shared_basis,
        "basis_bn": p[f"basis_bn{layer}"],
        "coefficients": p[f"coeff_conv{layer}"]["weight"],
        "bn": p[f"bn{layer}"],
    }
    return layer_params, {"basis_bn": s[f"basis_bn{layer}"], "bn": s[f"bn{layer}"]}


def info_table(spec, num_classes=10, per_layer=False):
    """The accounting table as text, against the original ResNet of the same depth."""
    model = create_model(spec, num_classes)
    rows = model.accounting()
    lines = [f"{'layer':<36} {'params':>12} {'MACs':>14}"]
    if per_layer:
        lines += [f"{name:<36} {p:>12,} {m:>14,}" for name, p, m in rows]
    else:
        groups = {}
        for name, p, m in rows:
            key = name.split(".")[0]
            stage = re.fullmatch(r"shared_basis_(\d)(_\d)?", key)
            key = f"layer{stage.group(1)}" if stage else key  # a stage's shared bases count with it
            totals = groups.setdefault(key, [0, 0])
            totals[0] += p
            totals[1] += m
        lines += [f"{name:<36} {p:>12,} {m:>14,}" for name, (p, m) in groups.items()]
    params, macs = model.count_params(), model.count_macs()
    lines.append(f"{'total ' + model.spec.name:<36} {params:>12,} {macs:>14,}")
    base = create_model(f"resnet{model.spec.depth}", num_classes)
    lines.append(
        f"against resnet{model.spec.depth}: {params / base.count_params():.2f}× the parameters, "
        f"{macs / base.count_macs():.2f}× the MACs (per 3×32×32 image; a shared basis counted once "
        f"in parameters, at every use in MACs)"
    )
    if macs > base.count_macs():
        lines.append("note: sharing saves parameters, not compute; this basis costs more MACs than the plain convs")
    return "\n".join(lines)


def create_model(spec, num_classes=10):
    """A :class:`Model` from a spec string (see :func:`parse_spec`) or a :class:`ModelSpec`."""
    if isinstance(spec, ModelSpec):
        return Model(spec)
    return Model(parse_spec(spec, num_classes))
