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
import numbers
import operator

import numpy as onp

from .tree import flatten, tree_map

__all__ = ["sgd_step", "step_lr", "cosine_lr", "learning_rate", "SCHEDULES"]

#: Names accepted by :func:`learning_rate`.
SCHEDULES = ("step", "cosine", "constant")


# --------------------------------------------------------------------------- validation


def _real(name, value):
    """``value`` as a finite Python float; ValueError naming ``name`` otherwise."""
    if isinstance(value, (bool, onp.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, received {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, received {value!r}")
    return value


def _nonnegative(name, value):
    value = _real(name, value)
    if value < 0:
        raise ValueError(f"{name} must be >= 0, received {value!r}")
    return value


def _integer(name, value, minimum):
    if isinstance(value, (bool, onp.bool_)):
        raise ValueError(f"{name} must be an integer >= {minimum}, received {value!r}")
    try:
        value = operator.index(value)
    except TypeError:
        raise ValueError(
            f"{name} must be an integer >= {minimum}, received {value!r}"
        ) from None
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, received {value!r}")
    return value


def _shape(leaf):
    return tuple(onp.shape(leaf))


def _check_like(name, tree, params_flat):
    """Raise ValueError unless ``tree`` has exactly the dotted keys and shapes of params."""
    if not isinstance(tree, dict):
        raise ValueError(
            f"{name} must be a parameter tree (nested dict) like params, "
            f"received {type(tree).__name__}"
        )
    flat = flatten(tree)
    for key, leaf in params_flat.items():
        if key not in flat:
            raise ValueError(
                f"{name} is missing key {key!r}: expected shape {_shape(leaf)}, received no entry"
            )
        if _shape(flat[key]) != _shape(leaf):
            raise ValueError(
                f"{name} does not match params at key {key!r}: expected shape "
                f"{_shape(leaf)}, received shape {_shape(flat[key])}"
            )
    for key, leaf in flat.items():
        if key not in params_flat:
            raise ValueError(
                f"{name} has unexpected key {key!r} (shape {_shape(leaf)}): expected only "
                f"the keys of params"
            )


# --------------------------------------------------------------------------------- SGD


def sgd_step(
    params,
    grads,
    momentum_buffers=None,
    /,
    *,
    lr,
    momentum=0.9,
    weight_decay=0.0,
    nesterov=False,
    dampening=0.0,
):
    r"""One step of PyTorch's ``torch.optim.SGD`` over parameter trees.

    Per leaf, with γ = ``lr``, λ = ``weight_decay``, μ = ``momentum``, τ = ``dampening``
    (PyTorch's documented SGD algorithm)::

        d ← g + λ p
        if μ ≠ 0:
            b ← d                       on the first step (momentum_buffers is None)
            b ← μ b + (1 − τ) d         afterwards
            d ← d + μ b   if nesterov   else   d ← b
        p ← p − γ d

    Args:
        params: parameter tree (nested dict of floating arrays).
        grads: gradient tree with the same dotted keys and shapes as ``params``; each
            leaf is cast to its parameter's dtype.
        momentum_buffers: tree returned by the previous call, or ``None`` for the first
            step (PyTorch's empty optimizer state).
        lr: learning rate γ >= 0.
        momentum: μ >= 0 (0 disables the buffers).
        weight_decay: L2 penalty λ >= 0 (added to the gradient, not decoupled).
        nesterov: Nesterov momentum; needs ``momentum > 0`` and ``dampening == 0``.
        dampening: τ, the dampening of the buffer update.

    Returns:
        ``(new_params, new_buffers)``. Every leaf keeps its parameter's dtype (float32
        stays float32). With ``momentum == 0`` no buffers are used and
        ``momentum_buffers`` is returned unchanged (``None`` stays ``None``), as PyTorch
        leaves its state alone. The inputs are never modified.

    Raises:
        ValueError: a hyper-parameter is out of range, or ``grads`` /
            ``momentum_buffers`` do not have the keys and shapes of ``params``.
    """
    lr = _nonnegative("lr", lr)
    momentum = _nonnegative("momentum", momentum)
    weight_decay = _nonnegative("weight_decay", weight_decay)
    dampening = _real("dampening", dampening)
    if not isinstance(nesterov, (bool, onp.bool_)):
        raise ValueError(f"nesterov must be a bool, received {nesterov!r}")
    nesterov = bool(nesterov)
    if nesterov and (momentum <= 0 or dampening != 0):
        raise ValueError(
            "nesterov=True requires momentum > 0 and dampening == 0, received "
            f"momentum={momentum!r}, dampening={dampening!r}"
        )

    if not isinstance(params, dict):
        raise ValueError(
            f"params must be a parameter tree (nested dict), received {type(params).__name__}"
        )
    params_flat = flatten(params)
    for key, leaf in params_flat.items():
        dtype = onp.asarray(leaf).dtype
        if not onp.issubdtype(dtype, onp.inexact):
            raise ValueError(
                f"params leaf {key!r} must have a floating dtype, received dtype {dtype}"
            )
    _check_like("grads", grads, params_flat)
    use_buffers = momentum != 0
    first_step = momentum_buffers is None
    if use_buffers and not first_step:
        _check_like("momentum_buffers", momentum_buffers, params_flat)

    def update(p, g, buf=None):
        p = onp.asarray(p)
        dt = p.dtype
        scalar = dt.type  # keep every product in the leaf's own dtype (no upcast)
        d = onp.asarray(g).astype(dt, copy=False)
        if weight_decay != 0:
            d = d + scalar(weight_decay) * p
        if use_buffers:
            if buf is None:
                buf = onp.array(d, dtype=dt, copy=True)
            else:
                buf = onp.asarray(buf).astype(dt, copy=False)
                buf = scalar(momentum) * buf + scalar(1 - dampening) * d
            buf = onp.asarray(buf)  # 0-d leaves stay arrays, not NumPy scalars
            d = d + scalar(momentum) * buf if nesterov else buf
        new_p = onp.asarray(p - scalar(lr) * d)
        return new_p, buf

    if use_buffers and not first_step:
        pairs = tree_map(update, params, grads, momentum_buffers)
    else:
        pairs = tree_map(update, params, grads)
    new_params = tree_map(lambda pair: pair[0], pairs)
    if not use_buffers:
        return new_params, momentum_buffers
    return new_params, tree_map(lambda pair: pair[1], pairs)


# ----------------------------------------------------------------------------- schedules


def step_lr(epoch, *, base_lr, epochs, milestones=(0.5, 0.75), gamma=0.1):
    """Step schedule: PyTorch ``MultiStepLR`` in closed form.

    The milestones are fractions of ``epochs``: epoch ``int(m * epochs)`` for each ``m``
    (the authors' 150 and 225 of 300 epochs). The learning rate during ``epoch`` is

        base_lr · gamma ** #{m : epoch >= int(m · epochs)}

    which is what ``MultiStepLR(milestones=[int(m * epochs) ...], gamma)`` sets after
    ``epoch`` calls of ``scheduler.step()`` (a repeated milestone decays twice, as there).

    Args:
        epoch: 0-based epoch (int >= 0).
        base_lr: initial learning rate (>= 0).
        epochs: total number of training epochs (int >= 1).
        milestones: fractions in [0, 1] of ``epochs``.
        gamma: multiplicative decay at each milestone (> 0).
    """
    epoch = _integer("epoch", epoch, 0)
    base_lr = _nonnegative("base_lr", base_lr)
    epochs = _integer("epochs", epochs, 1)
    gamma = _real("gamma", gamma)
    if gamma <= 0:
        raise ValueError(f"gamma must be > 0, received {gamma!r}")
    try:
        fractions = [float(m) for m in milestones]
    except (TypeError, ValueError):
        raise ValueError(
            f"milestones must be a sequence of fractions in [0, 1], received {milestones!r}"
        ) from None
    for m in fractions:
        if not 0.0 <= m <= 1.0:
            raise ValueError(
                "milestones must be fractions of epochs in [0, 1] (e.g. (0.5, 0.75)), "
                f"received {tuple(milestones)!r}"
            )
    passed = sum(1 for m in fractions if epoch >= int(m * epochs))
    return base_lr * gamma**passed


def cosine_lr(epoch, *, base_lr, epochs, eta_min=0.0):
    """Cosine schedule: PyTorch ``CosineAnnealingLR(T_max=epochs)`` in closed form.

        lr(epoch) = eta_min + (base_lr − eta_min) · (1 + cos(π · epoch / epochs)) / 2

    so ``lr(0) = base_lr``, ``lr(epochs / 2) = (base_lr + eta_min) / 2`` and
    ``lr(epochs) = eta_min``.

    Args:
        epoch: 0-based epoch (int >= 0).
        base_lr: initial learning rate (>= 0).
        epochs: ``T_max``, the total number of training epochs (int >= 1).
        eta_min: final learning rate (>= 0).
    """
    epoch = _integer("epoch", epoch, 0)
    base_lr = _nonnegative("base_lr", base_lr)
    epochs = _integer("epochs", epochs, 1)
    eta_min = _nonnegative("eta_min", eta_min)
    return eta_min + (base_lr - eta_min) * (1 + math.cos(math.pi * epoch / epochs)) / 2


def learning_rate(schedule, epoch, *, base_lr, epochs):
    """Learning rate during ``epoch`` under a named schedule with default options.

    ``schedule`` is one of :data:`SCHEDULES`: ``'step'`` (:func:`step_lr`),
    ``'cosine'`` (:func:`cosine_lr`) or ``'constant'`` (``base_lr`` throughout).
    """
    if schedule == "step":
        return step_lr(epoch, base_lr=base_lr, epochs=epochs)
    if schedule == "cosine":
        return cosine_lr(epoch, base_lr=base_lr, epochs=epochs)
    if schedule == "constant":
        _integer("epoch", epoch, 0)
        _integer("epochs", epochs, 1)
        return _nonnegative("base_lr", base_lr)
    raise ValueError(
        f"schedule must be one of {', '.join(map(repr, SCHEDULES))}, received {schedule!r}"
    )
