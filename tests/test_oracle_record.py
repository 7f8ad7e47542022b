"""Recording every module's output (minibasis.recording) changes no computed number, and names
each output as the authors' module; the torch-free half of check_torch's comparison."""

import numpy as np
import pytest

from minibasis import conv2d, cross_entropy, recording
from minibasis.autodiff import gradient_and_aux
from minibasis.models import create_model
from minibasis.oracle import module_outputs, probe_inputs, random_weights
from minibasis.tree import flatten


@pytest.mark.parametrize(
    "spec, size",
    [("resnet14-single-s2u1", 16), ("imagenet-mobilenetv2-shared++", 32), ("imagenet-resnet50-shared", 32)],
)
def test_recording_changes_no_number(spec, size):
    """Logits, new BN state and every gradient bit-identical with the recorder on and off."""
    model = create_model(spec)
    params, state = random_weights(model, 0)
    x, labels = probe_inputs(2, size, 0), np.array([0, 1])

    def step():
        def loss(p):
            logits, new_state = model.apply(p, state, x, train=True)
            return cross_entropy(logits, labels), (logits, new_state)

        grads, (logits, new_state) = gradient_and_aux(loss)(params)
        return {
            **flatten(grads),
            **{f"s:{k}": v for k, v in flatten(new_state).items()},
            "logits": logits,
            "eval": model.apply(params, state, x, train=False)[0],
        }

    plain = step()
    with recording.recording() as events:
        recorded = step()
    assert events and not recording.active()
    assert plain.keys() == recorded.keys()
    assert all(np.array_equal(plain[k], recorded[k]) for k in plain), [
        k for k in plain if not np.array_equal(plain[k], recorded[k])
    ]


def test_module_outputs_are_named_in_forward_order():
    model = create_model("resnet14-single-s2u1")
    params, state = random_weights(model, 0)
    x = probe_inputs(2, 16, 0)
    outputs = module_outputs(model, params, state, x, train=False)
    names = [name for name, _ in outputs]
    assert names[:4] == ["conv1", "bn1", "layer1.0.conv1", "layer1.0.bn1"] and names[-1] == "fc"
    block = names[names.index("layer1.1.basis_conv1") : names.index("layer2.0.conv1")]
    assert block == [
        "layer1.1.basis_conv1",
        "layer1.1.shared_basis",
        "layer1.1.basis_bn1",
        "layer1.1.coeff_conv1",
        "layer1.1.bn1",
        "layer1.1.basis_conv2",
        "layer1.1.shared_basis@2",
        "layer1.1.basis_bn2",
        "layer1.1.coeff_conv2",
        "layer1.1.bn2",
    ]  # SingleShared: one basis, used by both layers
    values = dict(outputs)
    np.testing.assert_array_equal(values["conv1"], conv2d(x, params["conv1"]["weight"], padding=1))
    np.testing.assert_array_equal(values["fc"], model.apply(params, state, x, train=False)[0])
    assert (values["bn1"] < 0).any()  # BN's own output, before the ReLU that follows it
    # the stacked basis conv, reported as the authors' two convs: each is its own conv of the block's input
    block_input = np.maximum(values["layer1.0.bn2"] + np.maximum(values["bn1"], 0), 0)
    for name, weight in (
        ("layer1.1.basis_conv1", params["layer1"]["1"]["basis_conv1"]["weight"]),
        ("layer1.1.shared_basis", params["shared_basis_1"]["weight"]),
    ):
        np.testing.assert_allclose(values[name], conv2d(block_input, weight, padding=1), rtol=0, atol=1e-12)
