"""Check autograd's gradient of your function against central finite differences.

    from minibasis.testing import check_gradients
    check_gradients(lambda x, w: np.sum(conv2d(x, w) ** 2), x, w)

Each argument may be an array or a tree (nested dicts / lists / tuples of arrays). All floating
leaves must be float64: central differences in float32 have an error around 1e-3 and prove
nothing. Three modes, per argument:

* ``directional``: for random unit directions v, compare ∇f·v with
  (f(θ + εv) − f(θ − εv)) / 2ε. Two function calls per direction: cheap for a whole network.
* ``leafwise``: one random direction inside each leaf of a tree in turn: every parameter
  array of a network is checked on its own, and a failure names the leaf (its dotted path).
* ``elementwise``: the same with v = each basis vector, for small inputs; a failure names the
  leaf and the element index.

A failure raises ``GradientCheckError`` naming the argument and printing both numbers.
"""

import inspect

import autograd
import numpy as np

from . import checks
from .tree import flatten, tree_map


class GradientCheckError(AssertionError):
    """Autograd's gradient and the finite difference disagree."""


def _leaves(tree):
    """[(dotted path, array)] of a tree's leaves in a fixed order ("" for a bare array)."""
    return list(flatten(tree).items()) if isinstance(tree, (dict, list, tuple)) else [("", tree)]


def _arg_names(fun, n):
    try:
        params = list(inspect.signature(fun).parameters.values())
    except (TypeError, ValueError):
        params = []
    names = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return [names[i] if i < len(names) else f"argument {i}" for i in range(n)]


def check_gradients(fun, *args, wrt=None, mode="directional", directions=3, eps=1e-6, rtol=1e-5, atol=1e-8, seed=0):
    """Compare ``autograd.grad(fun)`` with central differences for each argument in ``wrt``.

    fun: scalar-valued function of ``args``; wrt: indices of the arguments to check (default:
    all); mode: ``"directional"``, ``"leafwise"`` or ``"elementwise"``; passes when
    ``|autograd − finite difference| ≤ atol + rtol·|finite difference|``.
    Returns the largest relative error seen (for reporting).
    """
    checks.one_of("mode", mode, ("directional", "leafwise", "elementwise"))
    checks.real("eps", eps)
    if eps <= 0:
        checks.fail("eps", "a step > 0", repr(eps))
    names = _arg_names(fun, len(args))
    rng = np.random.default_rng(seed)
    worst = 0.0
    for index in range(len(args)) if wrt is None else wrt:
        checks.integer("wrt", index, 0, len(args) - 1)
        leaves, labels = _float64_leaves(args[index], names[index])

        def f_of(values, index=index):  # fun with argument ``index``'s leaves replaced
            replacements, new_args = iter(values), list(args)
            new_args[index] = tree_map(lambda _: next(replacements), args[index])
            return fun(*new_args)

        analytic = autograd.grad(f_of)(leaves)
        for perturbation, label in _directions(mode, leaves, labels, names[index], directions, rng):
            exact = float(sum(np.sum(g * p) for g, p in zip(analytic, perturbation)))
            numeric = _central_difference(f_of, leaves, perturbation, eps, names[index])
            error = abs(exact - numeric)
            worst = max(worst, error / max(abs(numeric), 1e-300))
            if not error <= atol + rtol * abs(numeric):
                raise GradientCheckError(
                    f"{label}: autograd gives {exact!r}, central finite difference (eps={eps}) gives "
                    f"{numeric!r}; |difference| = {error:.3e} > atol + rtol·|fd| = {atol + rtol * abs(numeric):.3e}"
                )
    return worst


def _float64_leaves(argument, name):
    """(leaves, the label a failure names for each) of one argument; float64 arrays only."""
    leaves = _leaves(argument)
    labels = [f"{name}.{path}" if path else name for path, _ in leaves]
    for (_, leaf), label in zip(leaves, labels):
        if not isinstance(leaf, np.ndarray) or leaf.dtype != np.float64:
            checks.fail(
                label,
                "a float64 array for finite differences",
                leaf.dtype if isinstance(leaf, np.ndarray) else type(leaf).__name__,
            )
    return [leaf for _, leaf in leaves], labels


def _directions(mode, leaves, labels, name, count, rng):
    """(perturbation of every leaf, label) pairs: random unit directions through all leaves,
    one random unit direction inside each leaf, or every basis vector of every leaf."""
    if mode == "directional":
        for d in range(count):
            perturbation = [rng.standard_normal(v.shape) for v in leaves]
            norm = np.sqrt(sum(np.sum(p * p) for p in perturbation)) or 1.0
            yield [p / norm for p in perturbation], f"{name}, random direction {d}"
    elif mode == "leafwise":
        for k, label in enumerate(labels):
            perturbation = [np.zeros_like(v) for v in leaves]
            direction = rng.standard_normal(leaves[k].shape)
            perturbation[k] = direction / (np.linalg.norm(direction) or 1.0)
            yield perturbation, label
    else:
        perturbation = [np.zeros_like(v) for v in leaves]
        for k, label in enumerate(labels):
            for element in np.ndindex(leaves[k].shape):
                perturbation[k][element] = 1.0  # the basis vector e_element of leaf k
                yield perturbation, f"{label}{list(element)}"
                perturbation[k][element] = 0.0


def _central_difference(f_of, leaves, perturbation, eps, name):
    """(f(θ + ε·v) − f(θ − ε·v)) / 2ε."""
    values = []
    for step in (eps, -eps):
        value = float(f_of([v + step * p for v, p in zip(leaves, perturbation)]))
        if not np.isfinite(value):
            checks.fail("fun", "a finite value near the point checked", f"{value} (argument {name})")
        values.append(value)
    return (values[0] - values[1]) / (2 * eps)
