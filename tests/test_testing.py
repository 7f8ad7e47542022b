"""The public gradient checker catches wrong gradients and names where they are."""

import autograd.numpy as anp
import numpy as np
import pytest
from autograd.extend import defvjp, primitive

from minibasis.testing import GradientCheckError, check_gradients


@primitive
def cube_with_wrong_gradient(x):
    return x**3


defvjp(cube_with_wrong_gradient, lambda ans, x: lambda g: g * 3 * x**2 * 1.001)  # 0.1 % off


def test_correct_gradients_pass_in_both_modes():
    x = np.random.default_rng(0).standard_normal((3, 2))
    tree = {"a": np.ones(2), "b": {"c": np.arange(3.0)}}
    f = lambda x, tree: anp.sum(anp.sin(x)) * anp.sum(tree["a"] ** 2) + anp.sum(tree["b"]["c"] ** 3)
    assert check_gradients(f, x, tree) < 1e-6
    assert check_gradients(f, x, tree, mode="elementwise") < 1e-6
    assert check_gradients(f, x, tree, mode="leafwise") < 1e-6


@pytest.mark.parametrize("mode", ["directional", "leafwise", "elementwise"])
def test_a_wrong_gradient_is_caught_and_the_argument_named(mode):
    def loss(weights, tree):
        return anp.sum(weights) + anp.sum(cube_with_wrong_gradient(tree["layer"]["kernel"]))

    tree = {"layer": {"kernel": np.linspace(1, 2, 4)}}
    check_gradients(loss, np.ones(3), tree, wrt=[0])  # the first argument's gradient is right
    with pytest.raises(GradientCheckError, match="tree") as info:
        check_gradients(loss, np.ones(3), tree, mode=mode)
    message = str(info.value)
    assert "autograd gives" in message and "finite difference" in message
    if mode == "elementwise":
        assert "tree.layer.kernel[0]" in message
    if mode == "leafwise":
        assert "tree.layer.kernel" in message


def test_a_non_finite_function_value_is_a_clear_error():
    with pytest.raises(ValueError, match="finite"), np.errstate(invalid="ignore"):
        check_gradients(lambda x: anp.sum(anp.log(x)), np.array([1e-7, 1.0]), eps=1e-6)
