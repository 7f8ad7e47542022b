"""``minibasis info SPEC --layers``: per layer the facts a reimplementer needs (kind, kernel,
stride, padding, groups, channels, output shape, the activation after it, sharing), checked
against the authors' structure as written by hand (their models/*.py)."""

import pytest

from minibasis.models import create_model
from minibasis.models.info import layer_details


def fields(line):
    """A detail line's columns: conv rows have 7 before the note, bn/linear rows 3."""
    parts = line.split()
    count = 7 if parts[0] in ("conv", "conv1d") else 3
    return parts[:count], " ".join(parts[count:])


@pytest.mark.parametrize(
    "spec, name, columns, note",
    [
        ("resnet56-s16u1", "conv1", ["conv", "3×3", "1", "1", "1", "3→16", "16×32×32"], ""),
        ("resnet56-s16u1", "bn1", ["bn", "16→16", "16×32×32"], "ReLU"),
        ("resnet56-s16u1", "layer2.0.conv1", ["conv", "3×3", "2", "1", "1", "16→32", "32×16×16"], ""),
        ("resnet56-s16u1", "layer2.0.bn2", ["bn", "32→32", "32×16×16"], "+ skip, ReLU"),
        (
            "resnet56-s16u1",
            "layer2.1.shared_basis_1",
            ["conv", "3×3", "1", "1", "1", "32→32", "32×16×16"],
            "= shared_basis_2_1",
        ),
        ("resnet56-s16u1", "layer2.1.basis_conv1", ["conv", "3×3", "1", "1", "1", "32→2", "2×16×16"], ""),
        ("resnet56-s16u1", "layer2.1.basis_bn1", ["bn", "34→34", "34×16×16"], ""),  # no ReLU inside a basis layer
        ("resnet56-s16u1", "layer2.1.coeff_conv1", ["conv", "1×1", "1", "0", "1", "34→32", "32×16×16"], ""),
        ("resnet56-s16u1", "layer2.1.bn1", ["bn", "32→32", "32×16×16"], "ReLU"),
        ("resnet56-s16u1", "layer2.1.bn2", ["bn", "32→32", "32×16×16"], "+ skip, ReLU"),
        ("resnet56-s16u1", "shared_basis_2_1", ["conv", "3×3", "-", "-", "1", "32→32", "-"], "used by 8 blocks"),
        ("resnet56-s16u1", "fc", ["linear", "64→10", "10"], ""),
        ("imagenet-resnet50-shared", "bn1", ["bn", "64→64", "64×112×112"], "ReLU, max pool 3×3/2"),
        ("imagenet-resnet50-shared", "layer2.0.conv2", ["conv", "3×3", "2", "1", "1", "128→128", "128×28×28"], ""),
        ("imagenet-resnet50-shared", "layer2.0.shortcut.0", ["conv", "1×1", "2", "0", "1", "256→512", "512×28×28"], ""),
        (
            "imagenet-resnet50-shared",
            "layer2.1.shared_basis",
            ["conv", "3×3", "1", "1", "1", "128→128", "128×28×28"],
            "= shared_basis_2",
        ),
        ("imagenet-mobilenetv2-shared", "pre.0", ["conv", "3×3", "2", "1", "1", "3→32", "32×112×112"], ""),
        ("imagenet-mobilenetv2-shared", "pre.1", ["bn", "32→32", "32×112×112"], "ReLU6"),
        ("imagenet-mobilenetv2-shared", "stage2.0.bn1", ["bn", "96→96", "96×112×112"], "ReLU"),
        ("imagenet-mobilenetv2-shared", "stage2.0.conv2", ["conv", "3×3", "2", "1", "96", "96→96", "96×56×56"], ""),
        (
            "imagenet-mobilenetv2-shared",
            "stage2.0.bn3",
            ["bn", "24→24", "24×56×56"],
            "",
        ),  # no ReLU after the projection
        ("imagenet-mobilenetv2-shared", "conv1.1", ["bn", "1280→1280", "1280×7×7"], "ReLU6"),
        (
            "imagenet-mobilenetv2-shared++",
            "stage4.1.chan_attention.conv",
            ["conv1d", "1", "1", "0", "1", "1→1", "1×64"],
            "ECA gate",
        ),
        (
            "imagenet-mobilenetv2-shared++",
            "stage6.1.chan_attention.conv",
            ["conv1d", "3", "1", "1", "1", "1→1", "1×160"],
            "ECA gate",
        ),
    ],
)
def test_layer_details(spec, name, columns, note):
    details = layer_details(create_model(spec), create_model(spec).standard_size)
    assert fields(details[name]) == (columns, note), details[name]


def test_every_module_has_a_line_and_shapes_follow_the_image_size():
    model = create_model("resnet56-s16u1")
    small = layer_details(model, 16)
    assert set(small) == {mod.name for mod in model.modules}
    assert fields(small["layer3.0.conv1"])[0][-1] == "64×4×4"
