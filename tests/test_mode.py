"""Reference mode: every kernel's textbook form gives the training step the fast forms give,
and both differentiate to second order (a Hessian-vector product against finite differences)."""

import os
import subprocess
import sys

import autograd
import autograd.numpy as anp
import numpy as np
import pytest

import minibasis
from minibasis.layers import cross_entropy
from minibasis.mode import is_reference, reference_mode
from minibasis.models import create_model
from minibasis.tree import flatten, tree_map, unflatten

pytestmark = pytest.mark.reference


def perturbed(model, seed):
    """float64 params/state away from the init's symmetric values (BN weights ≠ 1, statistics ≠ 0/1)."""
    params, state = model.init(seed, dtype=np.float64)
    rng = np.random.default_rng(seed)
    params = tree_map(lambda v: v + 0.1 * rng.standard_normal(v.shape), params)
    state = unflatten({k: v + rng.uniform(0.1, 0.5, v.shape) if v.dtype.kind == "f" else v for k, v in flatten(state).items()})
    return params, state


def training_step(model, params, state, x, labels):
    """(logits, loss, gradients, new BN state) of one training step, λ = 10."""

    def loss(params):
        logits, _ = model.apply(params, state, x, train=True)
        return cross_entropy(logits, labels) + 10.0 * model.orthogonality(params)

    logits, new_state = model.apply(params, state, x, train=True)
    return {"logits": logits, "loss": loss(params), **{f"grad {k}": g for k, g in flatten(autograd.grad(loss)(params)).items()},
            **{f"state {k}": v for k, v in flatten(new_state).items()}}


@pytest.mark.parametrize(
    "spec, size",
    [("resnet14", 8), ("resnet14-s2u1", 8), ("resnet14-single-s2u1", 8), ("resnet14-s2u0", 8), ("resnet14-s0u2", 8),
     ("imagenet-mobilenetv2-shared++", 32), ("imagenet-resnet50-shared++", 32)],
)
def test_a_training_step_is_the_same_in_both_modes(spec, size):
    """Logits, loss, every gradient and the BN state: 1e-10 of each array's scale in float64,
    plus, for a gradient, 1e-13 of the largest gradient: a bias followed by a training-mode BN
    has gradient 0 and both forms give rounding noise there (the golden files' README shows
    PyTorch's own kernels differ likewise)."""
    model = create_model(spec, num_classes=5)
    params, state = perturbed(model, seed=3)
    rng = np.random.default_rng(0)
    x, labels = rng.standard_normal((4, 3, size, size)), np.array([0, 1, 2, 4])
    with reference_mode(False):  # (also under MINIBASIS_REFERENCE=1)
        fast = training_step(model, params, state, x, labels)
    with reference_mode():
        reference = training_step(model, params, state, x, labels)
    assert fast.keys() == reference.keys()
    largest_gradient = max(np.max(np.abs(v)) for k, v in reference.items() if k.startswith("grad"))
    for key in fast:
        floor = 1e-13 * largest_gradient if key.startswith("grad") else 0.0
        assert np.max(np.abs(np.asarray(fast[key]) - reference[key])) <= 1e-10 * np.max(np.abs(reference[key])) + floor, key


@pytest.mark.parametrize("form", ["reference", "fast"])
def test_a_hessian_vector_product_equals_finite_differences_of_the_gradient(form):
    """H·v of a shared model's training loss (conv, BN in training mode, ReLU, basis layers,
    pooling, cross-entropy, R) against (∇L(θ + εv) − ∇L(θ − εv)) / 2ε, in the direction v."""
    model = create_model("resnet14-s2u1", num_classes=3)
    params, state = perturbed(model, seed=5)
    rng = np.random.default_rng(1)
    x, labels = rng.standard_normal((3, 3, 6, 6)), np.array([0, 2, 1])
    names = list(flatten(params))
    theta = np.concatenate([flatten(params)[k].ravel() for k in names])
    shapes = [flatten(params)[k].shape for k in names]

    def loss(vector):
        leaves, start = {}, 0
        for name, shape in zip(names, shapes):
            size = int(np.prod(shape))
            leaves[name] = anp.reshape(vector[start : start + size], shape)
            start += size
        logits, _ = model.apply(unflatten(leaves), state, x, train=True)
        return cross_entropy(logits, labels) + 10.0 * model.orthogonality(unflatten(leaves))

    v = rng.standard_normal(theta.size)
    v /= np.linalg.norm(v)
    with reference_mode(form == "reference"):
        gradient = autograd.grad(loss)
        hvp = autograd.grad(lambda t: anp.dot(gradient(t), v))(theta)
        eps = 1e-5
        finite = (gradient(theta + eps * v) - gradient(theta - eps * v)) / (2 * eps)
    error = np.linalg.norm(hvp - finite) / np.linalg.norm(finite)
    assert error < 1e-6, error  # central differences: O(ε²) ≈ 1e-10 plus rounding O(1e-16/ε) ≈ 1e-11


def test_reference_mode_is_scoped_and_nests():
    outside = is_reference()  # True in the suite's second run, under MINIBASIS_REFERENCE=1
    with minibasis.reference_mode():
        assert is_reference()
        with reference_mode(False):
            assert not is_reference()
        assert is_reference()
    assert is_reference() == outside
    with pytest.raises(ValueError, match="enabled: expected True or False"):
        with reference_mode("yes"):
            pass


@pytest.mark.parametrize("value, expected", [("1", "True"), ("0", "False"), ("", "False")])
def test_the_environment_variable_switches_a_whole_process(value, expected):
    env = {**os.environ, "MINIBASIS_REFERENCE": value}
    out = subprocess.run([sys.executable, "-c", "from minibasis.mode import is_reference; print(is_reference())"], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == expected, out.stderr


def test_a_bad_environment_value_is_one_clear_line():
    env = {**os.environ, "MINIBASIS_REFERENCE": "yes"}
    out = subprocess.run([sys.executable, "-c", "import minibasis; minibasis.mode.is_reference()"], env=env,
                         capture_output=True, text=True)
    assert out.returncode != 0  # read at the first use, not at import (so that the CLI says it in one line: test_cli)
    assert "MINIBASIS_REFERENCE: expected '1' (reference mode), '0' or unset, got 'yes'" in out.stderr
