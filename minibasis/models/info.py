"""What ``minibasis info`` prints: the zoo, and the parameters and MACs of one model.

Counts come from :meth:`Model.accounting` (one formula per module, :mod:`minibasis.basis`):
unique trainable parameters (a shared array once, BN weight and bias included) and the
multiply-accumulates of one image (every conv, a shared one at every use; linear layers).
"""

# The authors' released zoo: (spec, the authors' constructor, what it shares).
ZOO = (
    ("resnet56", "cifar10 ResNet56()", "nothing"),
    (
        "resnet56-s16u1",
        "cifar10 ResNet56_DoubleShared(16, 1): the paper's ResNet56-S16U1*",
        "two bases per stage + unique bases",
    ),
    ("resnet56-single-s16u1", "cifar10 ResNet56_SingleShared(16, 1)", "one basis per stage + unique bases"),
    ("resnet56-s16u0", "cifar10 ResNet56_SharedOnly(16)", "two bases per stage"),
    ("resnet56-s0u1", "cifar10 ResNet56_NonShared(1)", "nothing (unique bases only)"),
    ("resnet32-single-s8u1", "cifar10 ResNet32_SingleShared(8, 1)", "one basis per stage + unique bases"),
    ("cifar100-resnet18", "cifar100 ResNet18()", "nothing"),
    ("cifar100-resnet34", "cifar100 ResNet34()", "nothing"),
    ("cifar100-resnet34-single-s32u1", "cifar100 ResNet34_SingleShared(32, 1)", "one basis per stage + unique bases"),
    ("cifar100-resnet34-single-s16u1", "cifar100 ResNet34_SingleShared(16, 1)", "one basis per stage + unique bases"),
    ("cifar100-resnet34-s32u0", "cifar100 ResNet34_SharedOnly(32)", "ONE basis per stage, both layers"),
    ("cifar100-resnet34-s0u1", "cifar100 ResNet34_NonShared(1)", "nothing (unique bases only)"),
    ("cifar100-densenet121", "cifar100 DenseNet121()", "nothing"),
    (
        "cifar100-densenet121-single-s16u1",
        "cifar100 DenseNet121_SingleShared(16, 1): the authors' README row 'DenseNet121-S64U4'",
        "one basis per dense block (every layer's 3×3 conv) + unique bases",
    ),
    ("cifar100-resnext50", "cifar100 ResNext50_32x4d(100)", "nothing"),
    (
        "cifar100-resnext50-single-s64u4",
        "cifar100 ResNext50_32x4d_SingleShared(64, 4): the authors' README row 'ResNeXt50-S16U1'",
        "one grouped basis per stage + grouped unique bases",
    ),
    ("cifar100-mobilenetv2", "cifar100 MobileNetV2()", "nothing"),
    ("cifar100-mobilenetv2-shared", "cifar100 MobileNetV2_Shared()", "stages 3–6: the whole 1×1 expansion conv"),
    (
        "cifar100-mobilenetv2-shared++",
        "cifar100 MobileNetV2_SharedDouble()",
        "stages 3–6: the 1×1 expansion and projection convs",
    ),
    ("imagenet-resnet34", "ilsvrc ResNet34()", "nothing"),
    (
        "imagenet-resnet34-s48u1",
        "ilsvrc ResNet34_DoubleShared(48, 1): the paper's ResNet34-S48U1*",
        "two bases per stage + unique bases",
    ),
    ("imagenet-resnet34-single-s48u1", "ilsvrc ResNet34_SingleShared(48, 1)", "one basis per stage + unique bases"),
    ("imagenet-resnet50", "ilsvrc ResNet50()", "nothing"),
    (
        "imagenet-resnet50-shared",
        "ilsvrc ResNet50_SharedSingle(): the paper's ResNet50-Shared",
        "each stage's whole 3×3 conv",
    ),
    (
        "imagenet-resnet50-shared++",
        "ilsvrc ResNet50_Shared(): the paper's ResNet50-Shared++",
        "each stage's whole 3×3 and 1×1 expansion convs",
    ),
    (
        "imagenet-resnet101-shared",
        "ilsvrc ResNet101_SharedSingle(): the paper's ResNet101-Shared",
        "each stage's whole 3×3 conv",
    ),
    ("imagenet-resnet101-shared++", "ilsvrc ResNet101_Shared()", "each stage's whole 3×3 and 1×1 expansion convs"),
    ("imagenet-mobilenetv2", "ilsvrc MobileNetV2()", "nothing"),
    ("imagenet-mobilenetv2-shared", "ilsvrc MobileNetV2_Shared()", "stages 3–6: the whole 1×1 expansion conv"),
    (
        "imagenet-mobilenetv2-shared++",
        "ilsvrc MobileNetV2_SharedDouble()",
        "stages 3–6: the 1×1 expansion and projection convs; ECA attention",
    ),
)


def baseline_spec(spec):
    """The original (unshared) model of the same family and depth."""
    prefix = "" if spec.dataset == "cifar10" else f"{spec.dataset}-"
    return f"{prefix}{spec.architecture}{spec.depth or ''}"


def zoo_table(create_model):
    """Every model of the authors' zoo with its counts, against its family's original."""
    lines = [
        "The authors' zoo (spec grammar: minibasis train --help). Parameters: unique trainable; MACs: one image",
        "at the dataset's size (32 px CIFAR, 224 px ImageNet), a shared conv counted at every use.",
        f"{'spec':<34} {'params':>12} {'MACs':>15} {'×orig MACs':>10}  shares / the authors' model",
    ]
    for spec, constructor, shares in ZOO:
        model = create_model(spec)
        base = create_model(baseline_spec(model.spec))
        ratio = model.count_macs() / base.count_macs()
        counts = f"{model.count_params():>12,} {model.count_macs():>15,} {ratio:>10.2f}"
        lines.append(f"{spec:<34} {counts}  {shares}; {constructor}")
    lines.append(
        "Sharing saves parameters, not compute: sharing whole convs leaves the MACs unchanged, and a basis layer "
        "costs H·W·r·(C·k² + C_out): more than the conv it replaces when r ≳ C (S16U1 on CIFAR-10: 1.16×), "
        "less for small bases."
    )
    return "\n".join(lines)


def model_table(model, base, per_layer=False, image_size=None):
    """One model's parameters and MACs per stage (``per_layer``: per module), against ``base``."""
    rows = model.accounting(image_size)
    lines = [f"{'layer':<40} {'params':>12} {'MACs':>15}" + (f"  {LAYER_HEADER}" if per_layer else "")]
    if per_layer:
        details = layer_details(model, image_size or model.standard_size)
        lines += [f"{name:<40} {p:>12,} {m:>15,}  {details[name]}" for name, p, m in rows]
    else:
        stages = {}
        for mod, (_, p, m) in zip(model.modules, rows):  # a stage's shared convs count with the stage
            totals = stages.setdefault(mod.stage, [0, 0])
            totals[0] += p
            totals[1] += m
        lines += [f"{stage:<40} {p:>12,} {m:>15,}" for stage, (p, m) in stages.items()]
    params, macs = model.count_params(), sum(m for _, _, m in rows)
    base_params, base_macs = base.count_params(), base.count_macs(image_size)
    size = image_size or model.standard_size
    lines.append(f"{'total ' + model.spec.name:<40} {params:>12,} {macs:>15,}")
    lines.append(
        f"against {base.spec.name}: {params / base_params:.2f}× the parameters, {macs / base_macs:.2f}× the MACs "
        f"(per 3×{size}×{size} image; a shared array counted once in parameters, at every use in MACs)"
    )
    if macs > base_macs:
        lines.append("note: sharing saves parameters, not compute; this model costs more MACs than the plain one")
    return "\n".join(lines)


# ---- per layer: what a reimplementer needs (minibasis info SPEC --layers) ------------------

LAYER_HEADER = (
    f"{'kind':<6} {'kernel':>6} {'stride':>6} {'pad':>3} {'groups':>6} {'channels':>11} {'output':>13}  then / shares"
)


def layer_details(model, image_size):
    """``{module name: one line}``: kind, kernel, stride, padding, groups, channels in → out, the
    output shape (C×H×W for one image of ``image_size``²), the activation after it, and what it
    shares with whom. Shapes and hyper-parameters are those of one recorded eval pass
    (:mod:`minibasis.recording`) on an empty batch, not restated here."""
    import numpy as np

    from .. import recording
    from ..oracle.record import names_by_array
    from ..tree import unflatten
    from ..weights import state_dict_layout

    trees = {"params": {}, "state": {}}  # zeros, one array per leaf (init's random draws are slow and not needed)
    for key, shape, where, source in state_dict_layout(model):
        integer = key.endswith("num_batches_tracked")
        trees[where].setdefault(source, np.zeros(shape, np.int64 if integer else np.float32))
    params, state = unflatten(trees["params"]), unflatten(trees["state"])
    with recording.recording() as events:
        model.apply(params, state, np.zeros((0, 3, image_size, image_size), np.float32), train=False)  # shapes only
    names, seen, recorded, last = names_by_array(model, params), {}, {}, None
    for kind, ident, value, hyper in events:
        if kind == "module" and ident in names:
            uses = names[ident]
            name = uses[min(seen.get(ident, 0) * len(uses) // _calls(events, ident), len(uses) - 1)]
            seen[ident] = seen.get(ident, 0) + 1
            if name not in recorded:
                recorded[name], last = {"shape": value.shape[1:], "hyper": hyper, "then": [], "out": value}, name
        elif kind != "module" and last is not None:
            entry = recorded[last]
            direct = not entry["then"] and value is entry["out"]
            entry["then"].append(_ACTIVATIONS[kind] if direct or entry["then"] else f"+ skip, {_ACTIVATIONS[kind]}")
    shares = _shares(state_dict_layout(model))
    return {mod.name: _line(mod, recorded.get(mod.name), shares.get(mod.name, "")) for mod in model.modules}


_ACTIVATIONS = {"relu": "ReLU", "relu6": "ReLU6", "max_pool": "max pool 3×3/2"}


def _calls(events, ident):
    return sum(1 for kind, i, *_ in events if kind == "module" and i == ident)


def _shares(layout):
    """``{module: 'shared by N blocks' or '= owner'}`` from the state_dict layout's copies."""
    owners = {}
    for key, _, _, source in layout:
        if key != source:
            owners.setdefault(source[: -len(".weight")], []).append(key[: -len(".weight")])
    out = {owner: f"used by {len(copies)} block{'s' if len(copies) > 1 else ''}" for owner, copies in owners.items()}
    out.update({copy: f"= {owner}" for owner, copies in owners.items() for copy in copies})
    return out


def _line(mod, recorded, shares):
    shape = "×".join(map(str, recorded["shape"])) if recorded else "-"
    then = ", ".join(recorded["then"]) if recorded else ""
    extra = "; ".join(part for part in (then, shares) if part)
    if mod.kind == "conv" and len(mod.shape) == 4:
        hyper = recorded["hyper"] if recorded else {}  # an owner is applied through its blocks' names
        stride, padding = (_pair(hyper.get("stride", 1)), _pair(hyper.get("padding", 0))) if recorded else ("-", "-")
        groups = mod.groups
        kernel = f"{mod.shape[2]}×{mod.shape[3]}"
        channels = f"{mod.shape[1] * groups}→{mod.shape[0]}"
        return f"{'conv':<6} {kernel:>6} {stride:>6} {padding:>3} {groups:>6} {channels:>11} {shape:>13}  {extra}"
    if mod.kind == "conv":  # the ECA Conv1d along the channel axis
        return f"{'conv1d':<6} {mod.shape[2]:>6} {1:>6} {mod.shape[2] // 2:>3} {1:>6} {'1→1':>11} {shape:>13}  ECA gate"
    if mod.kind == "bn":
        channels = f"{mod.shape[0]}→{mod.shape[0]}"
        return f"{'bn':<6} {'':>6} {'':>6} {'':>3} {'':>6} {channels:>11} {shape:>13}  {extra}"
    channels = f"{mod.shape[1]}→{mod.shape[0]}"
    return f"{'linear':<6} {'':>6} {'':>6} {'':>3} {'':>6} {channels:>11} {shape:>13}  {extra}"


def _pair(value):
    return str(value) if not isinstance(value, tuple) else "×".join(map(str, value))
