"""Tests of minibasis.autodiff: per-leaf autograd roots give autograd's own gradients.

The expected values come from ``autograd.grad`` / ``autograd.make_vjp`` of the whole tree (the
function tree_vjp replaces for speed), never from minibasis.autodiff itself.
"""

import numpy as np
import pytest
from autograd import grad, make_vjp
from autograd import numpy as anp
from autograd.tracer import isbox
from hypothesis import given
from hypothesis import strategies as st

from minibasis.autodiff import gradient_and_aux, tree_vjp
from minibasis.layers import cross_entropy
from minibasis.models import create_model
from minibasis.train import training_loss
from minibasis.tree import flatten


@pytest.mark.parametrize("spec", ["resnet8", "resnet14-s2u1", "resnet14-single-s2u1"])
def test_gradient_and_aux_equals_autograd_grad_of_the_tree(spec):
    """Per-leaf roots give the gradient that autograd.grad of the whole dict gives: shared
    bases summed over the blocks that use them, and zeros for a leaf the loss never reads."""
    model = create_model(spec)
    params, state = model.init(seed=1, dtype=np.float64)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((4, 3, 8, 8)), rng.integers(0, 10, 4)
    lam = 0.0 if model.spec.variant == "original" else 10.0

    def loss_fn(p, s, x, y):  # p: the model's parameters and one leaf the loss never reads
        return training_loss(model, {k: v for k, v in p.items() if k != "unused"}, s, x, y, lam)

    grads, (loss, ce, r, logits, new_state) = gradient_and_aux(loss_fn)(
        dict(params, unused={"weight": np.ones(3)}), state, x, y
    )
    expected = grad(lambda p: training_loss(model, p, state, x, y, lam)[0])(params)
    assert list(flatten(grads)) == list(flatten(expected)) + ["unused.weight"]
    for name, g in flatten(expected).items():
        np.testing.assert_allclose(flatten(grads)[name], g, rtol=1e-12, atol=1e-14, err_msg=name)
    np.testing.assert_array_equal(grads["unused"]["weight"], np.zeros(3))
    reference_logits, reference_state = model.apply(params, state, x, train=True)
    np.testing.assert_array_equal(logits, reference_logits)
    np.testing.assert_array_equal(ce, cross_entropy(reference_logits, y))
    if lam:
        np.testing.assert_array_equal(r, model.orthogonality(params))
        assert loss == ce + lam * r
    else:
        assert r is None and loss == ce
    for name, value in flatten(reference_state).items():
        assert not isbox(flatten(new_state)[name]), name
        np.testing.assert_array_equal(flatten(new_state)[name], value, err_msg=name)


@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 4), m=st.integers(1, 4))
def test_tree_vjp_equals_make_vjp_of_the_whole_tree(seed, n, m):
    """A vector-valued function that reads one leaf twice and another not at all, against any
    cotangent g: autograd's make_vjp of the dict is the reference."""
    rng = np.random.default_rng(seed)
    tree = {
        "a": {"w": rng.standard_normal((n, m))},
        "b": rng.standard_normal(m),
        "c": {"unused": rng.standard_normal(2)},
    }

    def fn(t):
        h = anp.tanh(t["a"]["w"] @ t["b"])
        return h * anp.sum(t["a"]["w"] ** 2) + 3.0

    value, vjp = tree_vjp(fn, tree)
    expected_vjp, expected_value = make_vjp(fn)(tree)
    np.testing.assert_array_equal(value, expected_value)
    g = rng.standard_normal(n)
    got, expected = flatten(vjp(g)), flatten(expected_vjp(g))
    assert list(got) == list(expected) == ["a.w", "b", "c.unused"]
    for name in got:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-13, atol=1e-15, err_msg=name)
    np.testing.assert_array_equal(got["c.unused"], np.zeros(2))


def test_gradient_and_aux_lets_errors_inside_the_loss_through():
    model = create_model("resnet8")
    params, state = model.init(seed=0)
    fn = gradient_and_aux(lambda p, s, x, y: training_loss(model, p, s, x, y, 0.0))
    with pytest.raises(ValueError, match=r"^x: expected 4 dimensions, got shape \(2, 3, 8\)$"):
        fn(params, state, np.zeros((2, 3, 8), np.float32), np.zeros(2, int))
