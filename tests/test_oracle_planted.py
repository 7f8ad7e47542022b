"""The oracle catches and locates planted bugs, without torch: the implementation under test is
minibasis itself with one function wrapped (one BN's eps or momentum changed, an activation
swapped, a stride moved, one use of a shared basis detached, a per-block copy of a shared
array). Each must fail, with the first divergence at the bug's module, or at the next module
where the bug cannot show at its own output (a missing ReLU: the BN before it is unchanged)."""

import sys

import numpy as np
import pytest
from autograd.tracer import getval

from minibasis import layers
from minibasis.oracle import compare_outputs, prepare
from minibasis.oracle.case import _cast
from minibasis.oracle.record import reference_run
from minibasis.tree import flatten


@pytest.fixture(scope="module")
def resnet():
    return prepare("resnet14-s2u1", image_size=16)


@pytest.fixture(scope="module")
def mobilenet():
    return prepare("imagenet-mobilenetv2-shared", image_size=64)


def replace_everywhere(monkeypatch, original, wrapper):
    """``wrapper`` in place of ``original`` in every minibasis module that imported it by name."""
    name = original.__name__
    for module in [m for key, m in sys.modules.items() if key == "minibasis" or key.startswith("minibasis.")]:
        if getattr(module, name, None) is original:
            monkeypatch.setattr(module, name, wrapper)


def outputs_under_test(case, plant=None, monkeypatch=None):
    """minibasis' own arrays (golden keys) for ``case``'s weights and inputs, with
    ``plant(monkeypatch, flat params)`` wrapping a function first."""
    params, state = _cast(case.params), _cast(case.state)
    if plant:
        plant(monkeypatch, flatten(params))
    arrays, _ = reference_run(case.model, params, state, case.x.astype(np.float64), case.labels, case.lam)
    monkeypatch.undo() if monkeypatch else None
    return arrays


def check(case, outputs):
    return compare_outputs(case.reference, case.tolerance(), outputs, copies=case.copies())


def bn_with(target, **changed):
    original = layers.batch_norm

    def planted(x, weight, bias, state, /, **kwargs):
        return original(x, weight, bias, state, **(dict(kwargs, **changed) if getval(weight) is target else kwargs))

    planted.__name__ = "batch_norm"
    return original, planted


def eps_planter(bn, eps=1e-3):
    return lambda mp, flat: replace_everywhere(mp, *bn_with(flat[f"{bn}.weight"], eps=eps))


def test_the_unchanged_implementation_passes(resnet, mobilenet):
    for case in (resnet, mobilenet):
        report = check(case, outputs_under_test(case))
        assert report.passed and report.first_divergence is None, report.text()
        assert max(c.difference for c in report.checks) == 0.0  # the same code on the same inputs


@pytest.mark.parametrize(
    "case_name, bn",
    [
        ("resnet", "layer2.1.basis_bn1"),
        ("resnet", "layer1.0.bn2"),
        ("mobilenet", "stage4.2.bn2"),
        ("mobilenet", "conv1.1"),
    ],
)
def test_one_bn_eps_changed(request, monkeypatch, case_name, bn):
    case = request.getfixturevalue(case_name)
    report = check(
        case,
        outputs_under_test(
            case, lambda mp, flat: replace_everywhere(mp, *bn_with(flat[f"{bn}.weight"], eps=1e-3)), monkeypatch
        ),
    )
    assert not report.passed
    assert report.first_divergence == bn, report.text(every=False)
    assert report.summary[0].startswith(f"first divergence: {bn} (eval and train)")


def test_one_bn_momentum_changed_shows_in_its_state(resnet, monkeypatch):
    bn = "layer3.1.bn2"
    report = check(
        resnet,
        outputs_under_test(
            resnet, lambda mp, flat: replace_everywhere(mp, *bn_with(flat[f"{bn}.weight"], momentum=0.2)), monkeypatch
        ),
    )
    assert not report.passed and report.first_divergence == bn, report.text(every=False)
    assert all(c.passed for c in report.checks if c.key.startswith(("eval:", "train:")))  # no output changes
    assert f"first BN state over tolerance, in forward order: {bn}.running_mean" in report.text()


def test_a_missing_relu_shows_at_the_next_module(resnet, monkeypatch):
    """basis layer 1 of layer2.1 without its ReLU: its BN's output is unchanged, the next conv's is not."""
    from minibasis import basis

    def plant(mp, flat):
        original = basis.basis_layer
        target = flat["layer2.1.bn1.weight"]

        def planted(x, params, state, /, **kwargs):
            relu = kwargs.pop("relu", False) and getval(params["bn"]["weight"]) is not target
            return original(x, params, state, relu=relu, **kwargs)

        planted.__name__ = "basis_layer"
        replace_everywhere(mp, original, planted)

    report = check(resnet, outputs_under_test(resnet, plant, monkeypatch))
    assert report.first_divergence == "layer2.1.basis_conv2", report.text(every=False)
    assert all(c.passed for c in report.checks if c.key.endswith(":layer2.1.bn1"))


@pytest.mark.parametrize("channels, expected", [(32, "stage1.conv1"), (1280, "classifier.1")])
def test_relu6_swapped_for_relu_in_mobilenet_pre_and_head(mobilenet, monkeypatch, channels, expected):
    """ReLU where the authors have ReLU6 (``pre``: 32 channels; the head: 1280): the probe
    inputs make the ReLU6 clip, so the next module differs."""

    def plant(mp, flat):
        original = layers.relu6

        def planted(x, /):
            return layers.relu(x) if x.shape[1] == channels else original(x)

        planted.__name__ = "relu6"
        replace_everywhere(mp, original, planted)

    report = check(mobilenet, outputs_under_test(mobilenet, plant, monkeypatch))
    assert report.first_divergence == expected, report.text(every=False)


def test_a_stride_moved_to_the_other_conv(resnet, monkeypatch):
    from minibasis.models import blocks

    def plant(mp, flat):
        original = blocks.conv
        conv1, conv2 = flat["layer2.0.conv1.weight"], flat["layer2.0.conv2.weight"]

        def planted(x, params, **hyper):
            weight = getval(params["weight"])
            if weight is conv1 or weight is conv2:
                hyper["stride"] = 1 if weight is conv1 else 2
            return original(x, params, **hyper)

        planted.__name__ = "conv"
        replace_everywhere(mp, original, planted)

    report = check(resnet, outputs_under_test(resnet, plant, monkeypatch))
    assert report.first_divergence == "layer2.0.conv1", report.text(every=False)
    assert "shape (2, 32, 16, 16), minibasis' (2, 32, 8, 8)" in report.summary[0]


def detach_one_use(owner, use, uses):
    """A planter: the ``use``-th of the ``uses`` uses per forward of shared basis ``owner`` detached."""
    from minibasis import basis

    def plant(mp, flat):
        original, target, calls = basis.stack_basis, flat[f"{owner}.weight"], [0]

        def planted(unique, shared):
            if shared is not None and getval(shared) is target:
                calls[0] += 1
                if (calls[0] - 1) % uses == use:
                    shared = getval(shared)
            return original(unique, shared)

        planted.__name__ = "stack_basis"
        replace_everywhere(mp, original, planted)

    return plant


def test_one_use_of_a_shared_basis_detached(resnet, monkeypatch):
    outputs = outputs_under_test(resnet, detach_one_use("shared_basis_2_1", 0, 1), monkeypatch)
    report = check(resnet, outputs)
    assert report.first_divergence == "shared_basis_2_1", report.text(every=False)
    assert [c.key for c in report.failures] == ["grad:shared_basis_2_1.weight"]
    assert report.sharing and "a use of it is missing from" in report.sharing[0]


def test_a_per_block_copy_of_a_shared_array(monkeypatch):
    """One block holds its own copy of the stage's basis: the owner's gradient lacks that
    block's use, and the copy has a gradient of its own (that use's)."""
    case = prepare("resnet20-s2u1", image_size=16)  # 2 basis blocks per stage
    full = outputs_under_test(case)
    outputs = outputs_under_test(case, detach_one_use("shared_basis_2_1", 1, 2), monkeypatch)
    key = "shared_basis_2_1.weight"
    outputs["grad:layer2.2.shared_basis_1.weight"] = full[f"grad:{key}"] - outputs[f"grad:{key}"]
    report = check(case, outputs)
    assert not report.passed and report.first_divergence == "shared_basis_2_1", report.text(every=False)
    assert "held" not in report.sharing[0] and "layer2.2.shared_basis_1.weight" in report.sharing[0]
    assert "your side holds a shared array per block" in report.sharing[0]


def outputs_in_float32(case, plant=None, monkeypatch=None):
    """The implementation under test in float32: minibasis on the case's float32 weights."""
    params, state = _cast(case.params, np.float32), _cast(case.state, np.float32)
    if plant:
        plant(monkeypatch, flatten(params))
    arrays, _ = reference_run(case.model, params, state, case.x.astype(np.float32), case.labels, case.lam)
    monkeypatch.undo() if monkeypatch else None
    return arrays


@pytest.mark.parametrize(
    "spec, size, bn",
    [("resnet20-s16u1", 32, "layer2.1.basis_bn1"), ("imagenet-mobilenetv2-shared", 64, "stage4.2.bn2")],
)
def test_float32_tolerances_catch_one_bn_eps(monkeypatch, spec, size, bn):
    """float32: a correct run passes its measured tolerances (from the floor up, over an order of
    magnitude apart); a 1e-3 BN eps in one layer fails, with the first divergence at that layer."""
    case = prepare(spec, image_size=size, dtype=np.float32)
    tolerances = case.tolerance()
    assert min(tolerances.values()) == 1e-6 and max(tolerances.values()) > 10e-6
    assert check(case, outputs_in_float32(case)).passed
    planted = outputs_in_float32(case, eps_planter(bn), monkeypatch)
    report = check(case, planted)
    assert not report.passed and report.first_divergence == bn, report.text(every=False)


def test_relu_swapped_for_relu6_in_a_mobilenet_block(mobilenet, monkeypatch):
    """The third place of the swap: a block's ReLU (after stage2.0.bn1) as ReLU6. The probes'
    spikes drive that BN's train-mode output past 6, so the depthwise conv after it differs."""
    from minibasis.models import blocks

    def plant(mp, flat):
        original, target = blocks.norm, flat["stage2.0.bn1.weight"]

        def planted(x, params, state, train, relu=False):
            if relu and getval(params["weight"]) is target:
                y, new = original(x, params, state, train)
                return layers.relu6(y), new
            return original(x, params, state, train, relu=relu)

        planted.__name__ = "norm"
        replace_everywhere(mp, original, planted)

    report = check(mobilenet, outputs_under_test(mobilenet, plant, monkeypatch))
    assert report.first_divergence == "stage2.0.conv2", report.text(every=False)
    assert report.summary[0].startswith("first divergence: stage2.0.conv2 (train)")


def test_an_eca_kernel_reversed_shows_at_its_conv1d():
    """MobileNetV2-Shared++'s ECA gate with its 3-tap kernel reversed (a correlation/convolution
    mix-up): the first divergence is the gate's Conv1d, ``chan_attention.conv``."""
    case = prepare("imagenet-mobilenetv2-shared++", image_size=64)
    mp = pytest.MonkeyPatch()

    def plant(monkeypatch, flat):
        eca, conv2d, inside = layers.efficient_channel_attention, layers.conv2d, []
        target = flat["stage6.1.chan_attention.conv.weight"]

        def planted_eca(x, weight, /):  # the same weight array goes in: the recorder still knows it
            inside.append(getval(weight) is target)
            try:
                return eca(x, weight)
            finally:
                inside.pop()

        def planted_conv2d(x, weight, **hyper):
            return conv2d(x, weight[..., ::-1] if inside and inside[-1] else weight, **hyper)

        planted_eca.__name__, planted_conv2d.__name__ = "efficient_channel_attention", "conv2d"
        replace_everywhere(monkeypatch, eca, planted_eca)
        monkeypatch.setattr(layers, "conv2d", planted_conv2d)

    report = check(case, outputs_under_test(case, plant, mp))
    assert report.first_divergence == "stage6.1.chan_attention.conv", report.text(every=False)
