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


def check_gradients(
    fun, *args, wrt=None, mode="directional", directions=3, eps=1e-6, rtol=1e-5, atol=1e-8, seed=0
):
    """Compare ``autograd.grad(fun)`` with central differences for each argument in ``wrt``.

    fun: scalar-valued function of ``args``; wrt: indices of the arguments to check (default:
    all); mode: ``"directional"``, ``"leafwise"`` or ``"elementwise"``; passes when
    ``|autograd − finite difference| ≤ atol + rtol·|finite difference|``.
    Returns the largest relative error seen (for reporting).
    """
    if mode not in ("directional", "leafwise", "elementwise"):
        raise ValueError(f"mode: expected 'directional', 'leafwise' or 'elementwise', got {mode!r}")
    if eps <= 0:
        raise ValueError(f"eps: expected > 0, got {eps}")
    wrt = range(len(args)) if wrt is None else wrt
    names = _arg_names(fun, len(args))
    rng = np.random.default_rng(seed)
    worst = 0.0
    for index in wrt:
        if not 0 <= index < len(args):
            raise ValueError(f"wrt: expected indices in [0, {len(args)}), got {index}")
        name = names[index]
        leaves = _leaves(args[index])
        labels = [f"{name}.{path}" if path else name for path, _ in leaves]  # what a failure names
        for (path, leaf), label in zip(leaves, labels):
            if not isinstance(leaf, np.ndarray) or leaf.dtype != np.float64:
                got = leaf.dtype if isinstance(leaf, np.ndarray) else type(leaf).__name__
                raise ValueError(f"{label}: expected a float64 array for finite differences, got {got}")

        def f_of(values):
            new_args = list(args)
            replacements = iter(values)
            new_args[index] = tree_map(lambda _: next(replacements), args[index])
            return fun(*new_args)

        values = [leaf for _, leaf in leaves]
        analytic = autograd.grad(f_of)(values)

        def f_at(perturbation, step):
            value = float(f_of([v + step * p for v, p in zip(values, perturbation)]))
            if not np.isfinite(value):
                raise ValueError(f"fun: expected a finite value near the point checked, got {value} (argument {name})")
            return value

        def compare(perturbation, label):
            nonlocal worst
            numeric = (f_at(perturbation, eps) - f_at(perturbation, -eps)) / (2 * eps)
            exact = float(sum(np.sum(g * p) for g, p in zip(analytic, perturbation)))
            error = abs(exact - numeric)
            worst = max(worst, error / max(abs(numeric), 1e-300))
            if not error <= atol + rtol * abs(numeric):
                raise GradientCheckError(
                    f"{label}: autograd gives {exact!r}, central finite difference (eps={eps}) gives "
                    f"{numeric!r}; |difference| = {error:.3e} > atol + rtol·|fd| = "
                    f"{atol + rtol * abs(numeric):.3e}"
                )

        if mode == "directional":
            for d in range(directions):
                perturbation = [rng.standard_normal(v.shape) for v in values]
                norm = np.sqrt(sum(np.sum(p * p) for p in perturbation)) or 1.0
                compare([p / norm for p in perturbation], f"{name}, random direction {d}")
        elif mode == "leafwise":
            for k, ((_, leaf), label) in enumerate(zip(leaves, labels)):
                perturbation = [np.zeros_like(v) for v in values]
                direction = rng.standard_normal(leaf.shape)
                perturbation[k] = direction / (np.linalg.norm(direction) or 1.0)
                compare(perturbation, label)
        else:
            perturbation = [np.zeros_like(v) for v in values]
            for k, ((_, leaf), label) in enumerate(zip(leaves, labels)):
                for element in np.ndindex(leaf.shape):
                    perturbation[k][element] = 1.0  # the basis vector e_element of leaf k
                    compare(perturbation, f"{label}{list(element)}")
                    perturbation[k][element] = 0.0
    return worst
