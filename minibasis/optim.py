"""SGD with momentum and learning-rate schedules as pure functions over parameter trees.

The semantics follow PyTorch's ``torch.optim.SGD`` exactly (the algorithm box of its
documentation, https://pytorch.org/docs/stable/generated/torch.optim.SGD.html), so that a
run here is step-for-step comparable with the authors' PyTorch training:

.. code-block:: text

    input: γ (lr), θ_0 (params), f(θ) (objective), λ (weight_decay), μ (momentum),
           τ (dampening), nesterov
    for t = 1, 2, ...
        g_t ← ∇f_t(θ_{t-1})
        if λ ≠ 0:  g_t ← g_t + λ θ_{t-1}
        if μ ≠ 0:
            if t > 1:  b_t ← μ b_{t-1} + (1 − τ) g_t
            else:      b_t ← g_t
            if nesterov:  g_t ← g_t + μ b_t
            else:         g_t ← b_t
        θ_t ← θ_{t-1} − γ g_t

Nothing is updated in place: :func:`sgd_step` returns new parameter and momentum-buffer
trees. The schedules are closed forms of PyTorch's ``MultiStepLR`` and
``CosineAnnealingLR``, evaluated at a 0-based epoch (the learning rate used during it).
"""

import math
from dataclasses import dataclass

import numpy as np

from .checks import boolean, fail, integer, one_of, real
from .tree import flatten, unflatten

__all__ = ["sgd_step", "step_lr", "cosine_lr", "learning_rate", "SCHEDULES", "STEP_MILESTONES"]

#: Names accepted by :func:`learning_rate`.
SCHEDULES = ("step", "cosine", "constant")

#: The step schedule's milestones as fractions of the epochs: the authors' 150 and 225 of 300.
STEP_MILESTONES = (0.5, 0.75)


# --------------------------------------------------------------------------------- SGD


def sgd_step(
    params, grads, momentum_buffers=None, /, *, lr, momentum=0.9, weight_decay=0.0, nesterov=False, dampening=0.0
):
    r"""One step of PyTorch's ``torch.optim.SGD`` over parameter trees: ``(new_params, new_buffers)``.

    Per leaf, with γ = ``lr``, λ = ``weight_decay``, μ = ``momentum``, τ = ``dampening``::

        d ← g + λ p
        if μ ≠ 0:
            b ← d                       on the first step (momentum_buffers is None)
            b ← μ b + (1 − τ) d         afterwards
            d ← d + μ b   if nesterov   else   d ← b
        p ← p − γ d

    ``grads`` (and ``momentum_buffers`` after the first step) have the dotted keys and shapes
    of ``params``; gradients are cast to their parameter's dtype, and every product is taken
    in that dtype (float32 stays float32). With ``momentum == 0`` no buffers are used and
    ``momentum_buffers`` comes back unchanged (``None`` stays ``None``), as PyTorch leaves its
    state alone. The inputs are never modified. Hyper-parameters: ``lr``, ``momentum``,
    ``weight_decay`` ≥ 0; ``nesterov`` needs ``momentum > 0`` and ``dampening == 0``.
    """
    hyper = _SGD.checked(lr, momentum, weight_decay, nesterov, dampening)
    _check_trees(params, grads, momentum_buffers if hyper.momentum else None)
    grads = flatten(grads)
    buffers = flatten(momentum_buffers) if hyper.momentum and momentum_buffers is not None else {}  # {}: the first step
    updated = {key: _update(p, grads[key], buffers.get(key), hyper) for key, p in flatten(params).items()}
    new_params = unflatten({key: p for key, (p, _) in updated.items()})
    if hyper.momentum == 0:
        return new_params, momentum_buffers
    return new_params, unflatten({key: b for key, (_, b) in updated.items()})


def _update(p, g, buf, hyper):
    """One leaf of the algorithm box: ``(new p, new buffer or None)``."""
    p = np.asarray(p)
    scalar = p.dtype.type  # every product in the leaf's own dtype (no upcast)
    d = np.asarray(g).astype(p.dtype, copy=False)
    if hyper.weight_decay != 0:
        d = d + scalar(hyper.weight_decay) * p
    if hyper.momentum != 0:
        if buf is None:
            buf = np.array(d, dtype=p.dtype, copy=True)
        else:
            buf = scalar(hyper.momentum) * np.asarray(buf).astype(p.dtype, copy=False) + scalar(1 - hyper.dampening) * d
        buf = np.asarray(buf)  # 0-d leaves stay arrays, not NumPy scalars
        d = d + scalar(hyper.momentum) * buf if hyper.nesterov else buf
    return np.asarray(p - scalar(hyper.lr) * d), buf


@dataclass(frozen=True)
class _SGD:
    """The hyper-parameters of one step, checked."""

    lr: float
    momentum: float
    weight_decay: float
    nesterov: bool
    dampening: float

    @classmethod
    def checked(cls, lr, momentum, weight_decay, nesterov, dampening):
        hyper = cls(
            real("lr", lr, 0),
            real("momentum", momentum, 0),
            real("weight_decay", weight_decay, 0),
            boolean("nesterov", nesterov),
            real("dampening", dampening),
        )
        if hyper.nesterov and (hyper.momentum <= 0 or hyper.dampening != 0):
            fail(
                "nesterov",
                "momentum > 0 and dampening == 0 with nesterov=True",
                f"momentum={hyper.momentum!r}, dampening={hyper.dampening!r}",
            )
        return hyper


def _check_trees(params, grads, buffers):
    """params: a tree of floating arrays; grads and (unless None) buffers: its keys and shapes."""
    if not isinstance(params, dict):
        fail("params", "a parameter tree (nested dict)", type(params).__name__, TypeError)
    params_flat = flatten(params)
    for key, leaf in params_flat.items():
        if not np.issubdtype(np.asarray(leaf).dtype, np.inexact):
            fail(f"params[{key!r}]", "a floating dtype", f"dtype {np.asarray(leaf).dtype}")
    _check_like("grads", grads, params_flat)
    if buffers is not None:
        _check_like("momentum_buffers", buffers, params_flat)


def _check_like(name, tree, params_flat):
    """``tree`` must have exactly the dotted keys and shapes of ``params_flat``."""
    if not isinstance(tree, dict):
        fail(name, "a parameter tree (nested dict) like params", type(tree).__name__, TypeError)
    flat = flatten(tree)
    for key, leaf in params_flat.items():
        if key not in flat:
            fail(f"{name}[{key!r}]", f"an array of shape {np.shape(leaf)} (as in params)", "no entry")
        if np.shape(flat[key]) != np.shape(leaf):
            fail(f"{name}[{key!r}]", f"shape {np.shape(leaf)} (as in params)", f"shape {np.shape(flat[key])}")
    for key, leaf in flat.items():
        if key not in params_flat:
            fail(name, "only the keys of params", f"the unexpected key {key!r} (shape {np.shape(leaf)})")


# ----------------------------------------------------------------------------- schedules


def step_lr(epoch, *, base_lr, epochs, milestones=STEP_MILESTONES, gamma=0.1):
    """Step schedule: PyTorch ``MultiStepLR`` in closed form, milestones as fractions of ``epochs``.

    The milestone of a fraction ``m`` is epoch ``⌈m · epochs⌉`` (0-based): the authors' 150 and
    225 of 300 epochs, and never epoch 0, so no run's first epoch is decayed (``int(m · epochs)``
    would run a 1-epoch run at lr/100 throughout). The learning rate during ``epoch`` is

        base_lr · gamma ** #{m : epoch >= ⌈m · epochs⌉}

    which is what ``MultiStepLR(milestones=[⌈m · epochs⌉ ...], gamma)`` sets after ``epoch``
    calls of ``scheduler.step()`` (a repeated milestone decays twice, as there). So with the
    default milestones a run of E epochs decays ×0.1 at ⌈E/2⌉ and ×0.1 again at ⌈3E/4⌉; only
    runs of 4 epochs or more reach the second decay.

    epoch: 0-based (int ≥ 0). base_lr ≥ 0. epochs: the run's length (int ≥ 1).
    milestones: fractions in [0, 1] of ``epochs``. gamma: the decay at each milestone (> 0).
    """
    epoch = integer("epoch", epoch, 0)
    base_lr = real("base_lr", base_lr, 0)
    epochs = integer("epochs", epochs, 1)
    gamma = real("gamma", gamma)
    if gamma <= 0:
        fail("gamma", "a real number > 0", repr(gamma))
    passed = sum(1 for m in _fractions(milestones) if epoch >= milestone_epoch(m, epochs))
    return base_lr * gamma**passed


def milestone_epoch(fraction, epochs):
    """``⌈fraction · epochs⌉``, the 0-based epoch a step-schedule milestone falls on. (Rounded to
    9 decimals first, so that 0.7 · 10 = 7.000000000000001 is epoch 7, not 8.)"""
    return math.ceil(round(fraction * epochs, 9))


def _fractions(milestones):
    expected = "a sequence of fractions of the epochs in [0, 1] (e.g. (0.5, 0.75))"
    try:
        fractions = [real("milestones", m, 0, 1) for m in milestones]
    except (TypeError, ValueError):
        fail("milestones", expected, repr(milestones))
    return fractions


def cosine_lr(epoch, *, base_lr, epochs, eta_min=0.0):
    """Cosine schedule: PyTorch ``CosineAnnealingLR(T_max=epochs)`` in closed form.

        lr(epoch) = eta_min + (base_lr − eta_min) · (1 + cos(π · epoch / epochs)) / 2

    so ``lr(0) = base_lr``, ``lr(epochs / 2) = (base_lr + eta_min) / 2`` and
    ``lr(epochs) = eta_min``. epoch: 0-based (int ≥ 0); base_lr, eta_min ≥ 0; epochs: int ≥ 1.
    """
    epoch = integer("epoch", epoch, 0)
    base_lr = real("base_lr", base_lr, 0)
    epochs = integer("epochs", epochs, 1)
    eta_min = real("eta_min", eta_min, 0)
    return eta_min + (base_lr - eta_min) * (1 + math.cos(math.pi * epoch / epochs)) / 2


def learning_rate(schedule, epoch, *, base_lr, epochs):
    """Learning rate during ``epoch`` under a named schedule with default options.

    ``schedule`` is one of :data:`SCHEDULES`: ``'step'`` (:func:`step_lr`),
    ``'cosine'`` (:func:`cosine_lr`) or ``'constant'`` (``base_lr`` throughout).
    """
    one_of("schedule", schedule, SCHEDULES)
    if schedule == "step":
        return step_lr(epoch, base_lr=base_lr, epochs=epochs)
    if schedule == "cosine":
        return cosine_lr(epoch, base_lr=base_lr, epochs=epochs)
    integer("epoch", epoch, 0)
    integer("epochs", epochs, 1)
    return real("base_lr", base_lr, 0)
