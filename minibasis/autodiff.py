"""Reverse-mode gradients over parameter trees: one autograd root per leaf.

Why this module exists: ``autograd.make_vjp`` (and so ``autograd.grad``) of a function of a
nested dict boxes the dict itself. Every ``params["layer1"]["0"]["conv1"]["weight"]`` inside the
model then records a node whose VJP builds a whole zero tree and adds the leaf's gradient
into it: about 8 % of a ResNet56-S16U1 training step, for nothing. Here every leaf is its own
root of autograd's trace instead, and the function receives a plain dict of boxed arrays.

What it mirrors: :func:`tree_vjp` is ``autograd.core.make_vjp`` with many roots, and its
backward pass is ``autograd.core.backward_pass`` line for line (``toposort`` from the output
node, each node's ``vjp`` of its summed output gradient sent to its parents with
``add_outgrads``), except that it keeps the gradient reaching each root instead of returning
the last one. A leaf the output never reads gets zeros, as autograd's ``vspace(x).zeros()``.
Gradients equal ``autograd.grad`` of the whole tree (``tests/test_autodiff.py``).
"""

import numpy as np
from autograd.core import VJPNode, add_outgrads
from autograd.tracer import getval, isbox, new_box, trace_stack
from autograd.util import toposort

from .checks import fail
from .tree import flatten, unflatten

__all__ = ["tree_vjp", "gradient_and_aux"]


def tree_vjp(fn, tree, *, name="fn"):
    """``(fn(tree), vjp)``; ``vjp(g)`` is the tree of ∂⟨g, fn(tree)⟩/∂leaf (``make_vjp``'s).

    ``fn`` gets a plain dict of boxed arrays (empty sub-dicts are dropped); ``name`` is what
    errors call ``fn``.
    """
    leaves = flatten(tree)
    roots = {key: VJPNode.new_root() for key in leaves}
    with trace_stack.new_trace() as trace_id:
        out = fn(unflatten({key: new_box(leaf, trace_id, roots[key]) for key, leaf in leaves.items()}))
    if not isbox(out) or out._trace != trace_id:
        fail(name, "an output that depends on the tree", "a constant")
    root_keys = {node: key for key, node in roots.items()}

    def vjp(g):
        grads = _backward_pass(g, out._node, root_keys)
        return unflatten({key: grads[key] if key in grads else np.zeros_like(leaf) for key, leaf in leaves.items()})

    return out._value, vjp


def _backward_pass(g, end_node, root_keys):
    """autograd.core.backward_pass, keeping the gradient of every root: {root key: gradient}."""
    outgrads, grads = {end_node: (g, False)}, {}
    for node in toposort(end_node):
        g = outgrads.pop(node)[0]
        if node in root_keys:
            grads[root_keys[node]] = g
        for parent, parent_g in zip(node.parents, node.vjp(g)):
            outgrads[parent] = add_outgrads(outgrads.get(parent), parent_g)
    return grads


def gradient_and_aux(loss_fn):
    """``fn(params, *args) -> (∇_params loss, aux)`` for ``loss_fn(params, *args) -> (loss, aux)``.

    Through :func:`tree_vjp`. (autograd's own ``grad_and_aux`` needs a vector space for the aux
    output, which the integer ``num_batches_tracked`` in the BN state does not have.) The aux
    output comes back unboxed (a tuple element by element).
    """

    def fn(params, *args):
        aux = []

        def loss_only(p):
            loss, out = loss_fn(p, *args)
            aux.append(out)
            return loss

        loss, vjp = tree_vjp(loss_only, params, name="loss_fn")
        if np.ndim(loss) != 0:
            fail("loss_fn", "a scalar loss", f"shape {np.shape(loss)}")
        values = tuple(getval(a) for a in aux[0]) if isinstance(aux[0], tuple) else getval(aux[0])
        return vjp(np.ones_like(loss)), values

    return fn
