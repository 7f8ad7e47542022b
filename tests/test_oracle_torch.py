"""check_torch on the torch_reference models: the correct ones pass in float64 and float32;
the planted bugs of test_oracle_planted.py, planted in PyTorch, are caught and located."""

import copy

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from minibasis.models import create_model  # noqa: E402 (after importorskip)
from minibasis.oracle import check_torch, export_state_dict, random_weights  # noqa: E402 (after importorskip)
from minibasis.torch_reference import build_torch_model  # noqa: E402 (after importorskip)

torch.set_num_threads(1)


def reference_net(spec, dtype=torch.float64):
    model = create_model(spec)
    params, state = random_weights(model, 0)
    return build_torch_model(model, export_state_dict(model, params, state), dtype=dtype)


def orthogonality(net):
    return net.orthogonality()


@pytest.mark.parametrize(
    "spec, size, dtype",
    [
        ("resnet20-s16u1", 32, torch.float64),
        ("resnet14-single-s2u1", 16, torch.float64),
        ("imagenet-mobilenetv2-shared++", 64, torch.float64),
        ("imagenet-resnet50-shared", 64, torch.float64),
        ("resnet56-s16u1", 32, torch.float32),
        ("imagenet-mobilenetv2-shared", 224, torch.float32),
    ],
)
def test_correct_models_pass(spec, size, dtype):
    net = reference_net(spec, dtype)
    regulariser = orthogonality if hasattr(net, "orthogonality") else None
    report = check_torch(net, spec, image_size=size, regulariser=regulariser)
    assert report.passed and report.first_divergence is None, report.text()
    assert len(report.checks) > 100 and not report.not_compared
    if dtype == torch.float64:
        assert max(c.difference for c in report.checks) < 1e-11


def planted_cases():
    """(spec, image size, dtype, plant(net), the expected first divergence)."""

    def eps(path, value=1e-3):
        return lambda net: setattr(net.get_submodule(path), "eps", value)

    def momentum(path):
        return lambda net: setattr(net.get_submodule(path), "momentum", 0.2)

    def stride(net):
        block = net.get_submodule("layer2.0")
        block.conv1.stride, block.conv2.stride = (1, 1), (2, 2)

    def pre_relu(net):
        net.pre[2] = nn.ReLU()

    def head_relu(net):
        net.conv1[2] = nn.ReLU()

    return [
        ("resnet20-s16u1", 32, torch.float64, eps("layer2.1.basis_bn1"), "layer2.1.basis_bn1"),
        ("resnet20-s16u1", 32, torch.float32, eps("layer2.1.basis_bn1"), "layer2.1.basis_bn1"),
        ("imagenet-mobilenetv2-shared", 64, torch.float32, eps("stage4.2.bn2"), "stage4.2.bn2"),
        ("resnet20-s16u1", 32, torch.float64, momentum("layer3.1.bn2"), "layer3.1.bn2"),
        ("resnet20-s16u1", 32, torch.float64, stride, "layer2.0.conv1"),
        ("imagenet-mobilenetv2-shared", 64, torch.float64, pre_relu, "stage1.conv1"),
        ("imagenet-mobilenetv2-shared", 64, torch.float64, head_relu, "classifier.1"),
    ]


@pytest.mark.parametrize("spec, size, dtype, plant, expected", planted_cases())
def test_planted_bugs_are_located(spec, size, dtype, plant, expected):
    net = reference_net(spec, dtype)
    plant(net)
    report = check_torch(
        net, spec, image_size=size, regulariser=orthogonality if hasattr(net, "orthogonality") else None
    )
    assert not report.passed
    assert report.first_divergence == expected, report.text(every=False)


def test_a_missing_relu_in_a_basis_block(monkeypatch):
    net = reference_net("resnet20-s16u1")
    block = net.get_submodule("layer2.1")
    layer = type(block).layer
    monkeypatch.setattr(block, "forward", lambda x: torch.relu(layer(block, layer(block, x, 1), 2) + x))
    report = check_torch(net, "resnet20-s16u1", regulariser=orthogonality)
    assert report.first_divergence == "layer2.1.basis_conv2", report.text(every=False)


def test_a_detached_use_and_a_per_block_copy_are_sharing_bugs():
    net = reference_net("resnet20-s16u1")
    block = net.get_submodule("layer2.2")
    shared = block.layer_bases[0]

    class Detached(nn.Module):
        def forward(self, x):
            return torch.nn.functional.conv2d(x, shared.weight.detach(), padding=1)

    block.layer_bases[0] = Detached()
    report = check_torch(net, "resnet20-s16u1", regulariser=orthogonality)
    assert report.first_divergence == "shared_basis_2_1", report.text(every=False)
    assert "a use of it is missing" in report.sharing[0]
    assert report.sharing[0].endswith("uses your side did not record as modules: layer2.2.shared_basis_1")

    net = reference_net("resnet20-s16u1")
    block = net.get_submodule("layer2.2")
    block.shared_basis_1 = copy.deepcopy(block.shared_basis_1)  # the block's own copy
    block.layer_bases[0] = block.shared_basis_1
    report = check_torch(net, "resnet20-s16u1", regulariser=orthogonality)
    assert not report.passed
    assert any(
        s.endswith("holds 1 of them as separate tensors (layer2.2.shared_basis_1.weight): it is held per block")
        for s in report.sharing
    ), report.text(every=False)


def test_a_module_with_other_names_through_key_map():
    """The authors' model inside a Sequential: every name gains '0.'; the key map says so, and
    weights, module outputs, BN state and gradients all line up through it."""
    inner = reference_net("resnet14-s2u1")
    wrapped = nn.Sequential(inner)
    report = check_torch(
        wrapped,
        "resnet14-s2u1",
        key_map=lambda key: f"0.{key}",
        image_size=16,
        regulariser=lambda net: net[0].orthogonality(),
    )
    assert report.passed and not report.not_compared, report.text(every=False)
    assert any(c.theirs == "eval:0.layer1.1.shared_basis_1" for c in report.checks)
    assert any(c.theirs == "grad:0.shared_basis_1_1.weight" for c in report.checks)
    inner.get_submodule("layer1.0.bn2").eps = 1e-3
    report = check_torch(
        wrapped,
        "resnet14-s2u1",
        key_map=lambda key: f"0.{key}",
        image_size=16,
        regulariser=lambda net: net[0].orthogonality(),
    )
    assert report.first_divergence == "0.layer1.0.bn2", report.text(every=False)


def test_a_module_of_another_spec_is_one_line_naming_the_keys():
    with pytest.raises(
        ValueError,
        match=r"^module: expected the state_dict keys of resnet20-s16u1 \(after key_map\), "
        r"got 0 keys minibasis does not have \[\], 78 it lacks \['layer1\.2\.",
    ):
        check_torch(reference_net("resnet14-s2u1"), "resnet20-s16u1")
    net = reference_net("resnet14-s2u1")
    net.fc = nn.Linear(64, 5).double()
    with pytest.raises(
        ValueError, match=r"^module\['fc.weight'\]: expected shape \(10, 64\) \(minibasis'\), got shape \(5, 64\)$"
    ):
        check_torch(net, "resnet14-s2u1")
    with pytest.raises(ValueError, match=r"^module: expected parameters in float32 or float64, got torch.float16$"):
        check_torch(reference_net("resnet14-s2u1").half(), "resnet14-s2u1")


def test_relu6_in_a_mobilenet_block(monkeypatch):
    """The swap's third place, in PyTorch: ReLU6 after stage2.0's expansion BN."""
    net = reference_net("imagenet-mobilenetv2-shared")
    block = net.get_submodule("stage2.0")
    F = torch.nn.functional

    def forward(x):
        out = F.relu6(block.bn1(block.convs[0](x)))
        out = F.relu(block.bn2(block.conv2(out)))
        return block.bn3(block.convs[1](out))

    monkeypatch.setattr(block, "forward", forward)
    report = check_torch(net, "imagenet-mobilenetv2-shared", image_size=64)
    assert report.first_divergence == "stage2.0.conv2", report.text(every=False)
