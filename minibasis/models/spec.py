"""Model specs: the strings that name every model of the authors' zoo.

======================================================  =====================================
spec                                                    the authors' model
======================================================  =====================================
``resnet{D}``, ``resnet{D}-s{S}u{U}``,                  CIFAR-10 ResNets, D = 6n + 2 ≤ 1202:
``resnet{D}-single-s{S}u{U}``                           original, DoubleShared (SharedOnly
                                                        with U = 0, NonShared with S = 0),
                                                        SingleShared
``cifar100-resnet{18,34}``, ``…-single-s{S}u{U}``,      CIFAR-100 ResNets: original,
``…-s{S}u0``, ``…-s0u{U}``                              SingleShared, SharedOnly, NonShared
``cifar100-densenet121``, ``…-single-s{S}u{U}``         DenseNet121, _SingleShared(S, U)
``cifar100-resnext50``, ``…-single-s{S}u{U}``           ResNext50_32x4d, _SingleShared(S, U)
``cifar100-mobilenetv2``, ``…-shared``, ``…-shared++``  MobileNetV2, _Shared, _SharedDouble
``imagenet-resnet{18,34,50,101}``                       ImageNet originals
``imagenet-resnet{18,34}-s{S}u{U}``, ``…-single-…``     DoubleShared, SingleShared (bases)
``imagenet-resnet{50,101}-shared``, ``…-shared++``      shared whole convs (SharedSingle, Shared)
``imagenet-mobilenetv2``, ``…-shared``, ``…-shared++``  MobileNetV2, _Shared, _SharedDouble
======================================================  =====================================
"""

import re
from dataclasses import dataclass

from .. import checks

MAX_DEPTH = 1202  # He et al.'s deepest CIFAR ResNet: deeper specs are refused before anything is built
MAX_RANK = 256  # basis filters per 16 channels (×1, 2, 4, 8 by stage)
MAX_CLASSES = 100_000  # a classifier's outputs: 100 times ImageNet's, far below a memory error
CIFAR100_DEPTHS = (18, 34)
IMAGENET_DEPTHS = (18, 34, 50, 101)
VARIANTS = ("original", "double", "single", "shared_only", "non_shared", "shared", "shared++")
DEFAULT_CLASSES = {"cifar10": 10, "cifar100": 100, "imagenet": 1000}
# The CIFAR-100 files' other families: architecture -> its one depth
CIFAR100_FAMILIES = {"densenet": 121, "resnext": 50}
SPEC_HELP = (
    "valid model specs: CIFAR-10 'resnet{D}' (original), 'resnet{D}-s{S}u{U}' (DoubleShared; SharedOnly "
    "with U = 0; NonShared with S = 0), 'resnet{D}-single-s{S}u{U}' (SingleShared), D = 6n + 2 ≤ 1202 "
    "(20, 32, 44, 56, 110, …; the shared variants need n ≥ 2), S, U ≤ 256, e.g. resnet56-s16u1 (the paper's "
    "ResNet56-S16U1*); CIFAR-100 'cifar100-resnet{18,34}', 'cifar100-resnet{18,34}-single-s{S}u{U}' "
    "(e.g. cifar100-resnet34-single-s32u1, cifar100-resnet34-single-s16u1), 'cifar100-resnet{18,34}-s{S}u0', "
    "'cifar100-resnet{18,34}-s0u{U}', 'cifar100-densenet121', 'cifar100-densenet121-single-s{S}u{U}' "
    "(S, U ≥ 1, e.g. cifar100-densenet121-single-s16u1), 'cifar100-resnext50', "
    "'cifar100-resnext50-single-s{S}u{U}' (U a multiple of 4, e.g. cifar100-resnext50-single-s64u4), "
    "'cifar100-mobilenetv2', 'cifar100-mobilenetv2-shared', 'cifar100-mobilenetv2-shared++'; ImageNet "
    "'imagenet-resnet{18,34,50,101}', 'imagenet-resnet{18,34}-s{S}u{U}' (e.g. imagenet-resnet34-s48u1, "
    "the paper's ResNet34-S48U1*), 'imagenet-resnet{18,34}-single-s{S}u{U}', 'imagenet-resnet{50,101}-shared', "
    "'imagenet-resnet{50,101}-shared++', 'imagenet-mobilenetv2', 'imagenet-mobilenetv2-shared', "
    "'imagenet-mobilenetv2-shared++'"
)

_GRAMMAR = re.compile(
    r"(?:(?P<dataset>cifar100|imagenet)-)?"
    r"(?:(?P<architecture>resnet|densenet|resnext)(?P<depth>\d+)|(?P<mobilenet>mobilenetv2))"
    r"(?:-(?:(?P<kind>single|double)-)?s(?P<s>\d+)u(?P<u>\d+)|-(?P<whole>shared\+\+|shared))?"
)


@dataclass(frozen=True)
class ModelSpec:
    """A parsed spec. ``depth`` is 0 for MobileNetV2 (121 DenseNet, 50 ResNeXt); ranks are 0 where a
    variant has none."""

    depth: int
    variant: str
    shared_rank: int = 0
    unique_rank: int = 0
    num_classes: int = 10
    dataset: str = "cifar10"  # 'cifar10', 'cifar100' or 'imagenet': the architecture's source
    architecture: str = "resnet"  # 'resnet', 'mobilenetv2', 'densenet' or 'resnext'

    @property
    def blocks_per_stage(self):
        """Blocks per stage of a CIFAR-10 ResNet (n of 6n + 2)."""
        return (self.depth - 2) // 6

    @property
    def name(self):
        prefix = "" if self.dataset == "cifar10" else f"{self.dataset}-"
        base = f"{prefix}{self.architecture}" + (str(self.depth) if self.depth else "")
        if self.variant == "original":
            return base
        if self.variant in ("shared", "shared++"):
            return f"{base}-{self.variant}"
        return f"{base}{'-single' if self.variant == 'single' else ''}-s{self.shared_rank}u{self.unique_rank}"


def _refuse(spec, why):
    checks.fail("spec", f"{why}; {SPEC_HELP}", repr(spec))


def parse_spec(spec, num_classes=None):
    """'resnet56-s16u1' -> ModelSpec. A malformed spec is a ValueError listing what is valid.

    ``num_classes``: the classifier's outputs (default: 10, 100 or 1000 by the spec's dataset)."""
    if not isinstance(spec, str):
        checks.fail("spec", "a string such as 'resnet56-s16u1'", type(spec).__name__, TypeError)
    match = _GRAMMAR.fullmatch(spec.strip().lower())
    if not match:
        _refuse(spec, "a model spec")
    dataset = match["dataset"] or "cifar10"
    if num_classes is not None:
        num_classes = checks.integer("num_classes", num_classes, 1, MAX_CLASSES)
    num_classes = DEFAULT_CLASSES[dataset] if num_classes is None else num_classes
    kind, whole = match["kind"], match["whole"]
    if max(len(match["s"] or ""), len(match["u"] or ""), len(match["depth"] or "")) > 5:  # before int(): no digit limit
        _refuse(spec, f"ranks S, U ≤ {MAX_RANK} and a depth ≤ {MAX_DEPTH}")
    s, u = int(match["s"] or 0), int(match["u"] or 0)
    if max(s, u) > MAX_RANK:
        _refuse(spec, f"ranks S, U ≤ {MAX_RANK} and a depth ≤ {MAX_DEPTH}")
    variant = "original" if match["s"] is None and not whole else whole or _basis_variant(spec, kind, s, u)
    if match["mobilenet"]:
        if dataset == "cifar10" or variant not in ("original", "shared", "shared++"):
            _refuse(
                spec, "'imagenet-mobilenetv2' or 'cifar100-mobilenetv2' with nothing, '-shared' or '-shared++' after it"
            )
        return ModelSpec(0, variant, num_classes=num_classes, dataset=dataset, architecture="mobilenetv2")
    architecture, depth = match["architecture"], int(match["depth"])
    if architecture in CIFAR100_FAMILIES:
        _check_cifar100_family(spec, dataset, architecture, depth, variant, s, u)
    else:
        _check_depth_and_variant(spec, dataset, depth, variant)
    return ModelSpec(depth, variant, s, u, num_classes, dataset, architecture)


def _basis_variant(spec, kind, s, u):
    """The basis variant of '-[single-|double-]s{S}u{U}'."""
    if s == 0 and u == 0:
        _refuse(spec, "s > 0 or u > 0")
    if kind == "single":
        if s == 0:
            _refuse(spec, "s > 0 for SingleShared")
        return "single"
    variant = "non_shared" if s == 0 else "shared_only" if u == 0 else "double"
    if kind == "double" and variant != "double":
        _refuse(spec, "s > 0 and u > 0 for an explicit DoubleShared")
    return variant


def _check_depth_and_variant(spec, dataset, depth, variant):
    """Each dataset's depths, and the variants the authors' files define for it."""
    if dataset == "cifar10":
        if depth > MAX_DEPTH or depth < 8 or (depth - 2) % 6:
            _refuse(spec, f"a depth 6n + 2 with 8 ≤ depth ≤ {MAX_DEPTH}")
        if variant in ("shared", "shared++"):
            _refuse(
                spec,
                "a basis variant for a CIFAR-10 ResNet ('-shared' is for the ImageNet ResNet50/101 and MobileNetV2)",
            )
        if variant != "original" and depth < 14:
            _refuse(
                spec,
                f"a depth ≥ 14 for a shared variant "
                f"(resnet{depth} has one block per stage: no block would use a basis)",
            )
        return
    depths = CIFAR100_DEPTHS if dataset == "cifar100" else IMAGENET_DEPTHS
    if depth not in depths:
        _refuse(spec, f"a depth in {depths} for {dataset}")
    allowed = {
        ("cifar100", False): ("original", "single", "shared_only", "non_shared"),
        ("imagenet", False): ("original", "double", "single"),
        ("imagenet", True): ("original", "shared", "shared++"),
    }[(dataset, depth in (50, 101))]
    if variant not in allowed:
        _refuse(spec, f"one of the authors' {dataset} variants of resnet{depth}: {', '.join(allowed)}")


def _check_cifar100_family(spec, dataset, architecture, depth, variant, s, u):
    """DenseNet121 and ResNeXt50 (models/cifar100): the original and SingleShared(S, U)."""
    name = f"cifar100-{architecture}{CIFAR100_FAMILIES[architecture]}"
    if dataset != "cifar100" or depth != CIFAR100_FAMILIES[architecture] or variant not in ("original", "single"):
        _refuse(spec, f"'{name}' or '{name}-single-s{{S}}u{{U}}'")
    if variant == "single" and u < 1:
        _refuse(spec, f"U ≥ 1 for {name} (the authors' basis layer always has unique filters)")
    if variant == "single" and architecture == "resnext" and not resnext_ranks_fit(s, u):
        _refuse(
            spec,
            "for ResNeXt50 U a multiple of 4 (the unique basis is a conv of U·m/4 groups, m = 1, 2, 4, 8 "
            "by stage) dividing 512, and S ≥ 4 with S // 4 (the shared basis' groups) dividing S and 128",
        )


def resnext_groups(rank, m, shared):
    """The groups of a ResNeXt50_SingleShared basis in stage m (1, 2, 4, 8): the authors'
    ``int(shared_rank / 4)`` for the shared one, ``int(unique_rank·m / base_width)`` (base_width 4)
    for the unique one."""
    return rank // 4 if shared else rank * m // 4


def resnext_ranks_fit(s, u):
    """Whether PyTorch builds ResNext50_32x4d_SingleShared(s, u): every basis' groups ≥ 1 divide its
    filters (s·m, u·m) and its input channels (128·m)."""
    for m in (1, 2, 4, 8):
        for rank, groups in ((s * m, resnext_groups(s, m, True)), (u * m, resnext_groups(u, m, False))):
            if groups < 1 or rank % groups or 128 * m % groups:
                return False
    return True
