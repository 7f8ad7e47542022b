"""minibasis against the authors' structure in PyTorch (skipped when torch is not installed):
logits, the full training loss and every parameter gradient, for all five variants."""

import autograd
import numpy as np
import pytest

from minibasis.models import create_model
from minibasis.train import training_loss
from minibasis.tree import flatten
from minibasis.weights import to_state_dict

torch = pytest.importorskip("torch")
from minibasis.torch_reference import build_torch_model  # noqa: E402


@pytest.mark.parametrize(
    "spec", ["resnet14", "resnet14-s2u1", "resnet14-single-s2u1", "resnet14-s2u0", "resnet14-s0u1", "resnet20-s4u1"]
)
def test_logits_loss_and_gradients_equal_pytorch_in_float64(spec):
    model = create_model(spec)
    params, state = model.init(3, dtype=np.float64)
    net = build_torch_model(model, to_state_dict(model, params, state), dtype=torch.float64)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((4, 3, 8, 8)), np.array([0, 1, 2, 3])
    lam = 0.0 if model.spec.variant == "original" else 10.0

    net.eval()
    with torch.no_grad():
        eval_logits = net(torch.tensor(x)).numpy()
    np.testing.assert_allclose(model.apply(params, state, x, train=False)[0], eval_logits, rtol=1e-10, atol=1e-12)

    net.train()
    logits_t = net(torch.tensor(x))
    loss_t = torch.nn.functional.cross_entropy(logits_t, torch.tensor(y)) + (lam * net.orthogonality() if lam else 0)
    loss_t.backward()

    def loss(params):
        return training_loss(model, params, state, x, y, lam)[0]  # CE + λ·R, minibasis' training loss

    assert float(loss(params)) == pytest.approx(loss_t.item(), rel=1e-12)
    grads = flatten(autograd.grad(loss)(params))
    torch_grads = {name: p.grad.numpy() for name, p in net.named_parameters()}
    assert grads.keys() == torch_grads.keys()  # named_parameters lists a shared basis once
    for name in grads:
        np.testing.assert_allclose(grads[name], torch_grads[name], rtol=1e-9, atol=1e-12, err_msg=name)
    # The BN running statistics after the step agree too.
    _, new_state = model.apply(params, state, x, train=True)
    torch_state = net.state_dict()
    for key, value in flatten(new_state).items():
        np.testing.assert_allclose(value, torch_state[key].numpy(), rtol=1e-12, atol=1e-12, err_msg=key)


@pytest.mark.parametrize(
    "spec",
    [
        "imagenet-resnet50-shared",
        "imagenet-resnet50-shared++",
        "imagenet-mobilenetv2-shared",
        "imagenet-mobilenetv2-shared++",
    ],
)
def test_the_zoo_models_equal_pytorch_in_float64(spec):
    """The ImageNet ResNet50 "Shared" and MobileNetV2 models of torch_reference against minibasis:
    train-mode logits and every gradient (dropout off on both sides)."""
    from minibasis.layers import cross_entropy
    from minibasis.oracle import random_weights

    model = create_model(spec, num_classes=5)
    params, state = random_weights(model, seed=2, dtype=np.float64)
    net = build_torch_model(model, to_state_dict(model, params, state), dtype=torch.float64)
    x, y = np.random.default_rng(0).standard_normal((2, 3, 64, 64)), np.array([1, 4])
    net.train()
    for module in net.modules():
        if isinstance(module, torch.nn.Dropout):
            module.eval()
    loss_t = torch.nn.functional.cross_entropy(net(torch.tensor(x)), torch.tensor(y))
    loss_t.backward()
    loss = lambda p: cross_entropy(model.apply(p, state, x, train=True)[0], y)
    assert float(loss(params)) == pytest.approx(loss_t.item(), rel=1e-11)
    grads = flatten(autograd.grad(loss)(params))
    torch_grads = {name: p.grad.numpy() for name, p in net.named_parameters()}
    assert grads.keys() == torch_grads.keys()
    largest = max(np.abs(g).max() for g in torch_grads.values())
    for name in grads:
        np.testing.assert_allclose(grads[name], torch_grads[name], rtol=1e-8, atol=1e-12 * largest, err_msg=name)
