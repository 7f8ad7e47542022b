"""Probe inputs reach every branch: ReLUs see both signs, ReLU6s clip, max pools have windows of
distinct values; a branch never reached is a warning that names it."""

import numpy as np
import pytest

from minibasis.models import create_model
from minibasis.oracle import coverage, prepare, probe_inputs, random_weights
from minibasis.oracle.probes import reached
from minibasis.oracle.record import reference_run


@pytest.mark.parametrize(
    "kind, values, expected",
    [
        ("relu", [-1.0, 2.0], True),
        ("relu", [0.0, 2.0], False),
        ("relu", [-1.0, -2.0], False),
        ("relu6", [-1.0, 7.0], True),
        ("relu6", [-1.0, 5.9], False),
        ("relu6", [0.5, 7.0], False),
    ],
)
def test_reached_by_hand(kind, values, expected):
    assert reached(kind, np.array(values).reshape(1, 1, 1, 2))[0] is expected


def test_max_pool_windows():
    flat = np.zeros((1, 1, 4, 4))
    assert reached("max_pool", flat) == (False, "0% of windows with distinct values")
    bumpy = flat.copy()
    bumpy[0, 0, 1, 1] = 1.0  # in the windows at (0, 0), (0, 1), (1, 0) and (1, 1) of the 2×2 output
    assert reached("max_pool", bumpy)[0] and reached("max_pool", bumpy)[1] == "100% of windows with distinct values"


def test_probe_inputs_are_reproducible_scaled_and_spiked():
    x = probe_inputs(4, 16, seed=3)
    assert x.shape == (4, 3, 16, 16) and x.dtype == np.float64
    assert np.array_equal(x, probe_inputs(4, 16, seed=3)) and not np.array_equal(x, probe_inputs(4, 16, seed=4))
    scales = np.median(np.abs(x), axis=(1, 2, 3))
    assert np.all(np.diff(scales) > 0) and 15 < scales[-1] / scales[0] < 60  # 1× to 30×
    assert probe_inputs(2, 8, 0, np.float32).dtype == np.float32


def test_mobilenet_relu6_clip_on_probes_not_on_standard_normal_images():
    """On N(0, 1) images the ReLU6 of ``pre`` never clips in eval mode (a ReLU
    in its place would go unseen); on the probes it does, and the report says so."""
    model = create_model("imagenet-mobilenetv2-shared")
    params, state = random_weights(model, 0)
    labels = np.array([1, 2])
    plain = np.random.default_rng(0).standard_normal((2, 3, 64, 64))
    _, activations = reference_run(model, params, state, plain, labels, 0.0)
    _, warnings = coverage(activations)
    assert "relu6 after pre.1 (eval) not reached by the inputs" in " ".join(warnings)
    case = prepare(model, image_size=64)
    assert not any("pre.1" in w for w in case.warnings)
    assert "coverage: 68 of 68 relu (eval and train) see both signs" in case.coverage
    assert any(line.startswith("coverage: 3 of 4 relu6") for line in case.coverage)
    assert case.warnings == ("relu6 after conv1.1 (train) not reached by the inputs: 0.0% > 6, 49% < 0",)


def test_resnet_max_pool_and_relu_coverage():
    case = prepare("imagenet-resnet50-shared", image_size=64)
    assert case.coverage == (
        "coverage: 98 of 98 relu (eval and train) see both signs",
        "coverage: 2 of 2 max_pool (eval and train) have windows of distinct values",
    )
    assert case.warnings == ()
