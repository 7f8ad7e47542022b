"""The weights both sides run: random, at no symmetric default, exported under the other side's keys."""

import numpy as np

from ..checks import integer
from ..files import atomic_savez
from ..tree import flatten, unflatten
from ..weights import to_state_dict
from .keys import map_keys


def random_weights(model, seed, *, dtype=np.float64):
    """``(params, state)`` for ``model`` in which no array sits at a symmetric default.

    A fresh initialisation is a poor test: every BN has weight 1, bias 0, running mean 0 and
    variance 1, so swapping two of them changes nothing. Here every parameter is
    ``model.init(seed)``'s plus 0.1·N(0, 1) noise, every running mean 0.1·N(0, 1), every
    running variance U(0.5, 2) and every ``num_batches_tracked`` an integer in 1..99, drawn
    from ``numpy.random.default_rng([seed, 1])`` (not init's own stream).
    """
    seed = integer("seed", seed, minimum=0)
    params, state = model.init(seed, dtype=dtype)
    rng = np.random.default_rng([seed, 1])
    flat_params = {
        name: (value + 0.1 * rng.standard_normal(value.shape)).astype(dtype) for name, value in flatten(params).items()
    }
    flat_state = {name: _random_statistic(name, value, rng) for name, value in flatten(state).items()}
    return unflatten(flat_params), unflatten(flat_state)


def _random_statistic(name, value, rng):
    if name.endswith("running_var"):
        return rng.uniform(0.5, 2.0, value.shape).astype(value.dtype)
    if name.endswith("running_mean"):
        return (0.1 * rng.standard_normal(value.shape)).astype(value.dtype)
    return np.asarray(rng.integers(1, 100), dtype=value.dtype)  # num_batches_tracked


def export_state_dict(model, params, state, *, key_map=None):
    """``{key: array}`` as :func:`minibasis.weights.to_state_dict` (the authors' keys, a shared
    basis under its owner and again under every block), renamed by ``key_map``."""
    return map_keys(to_state_dict(model, params, state), key_map)


def save_state_dict(path, model, params, state, *, key_map=None):
    """Write :func:`export_state_dict` to ``path`` (.npz, atomically); returns ``path``.
    With ``key_map=None`` this is :func:`minibasis.weights.save_weights`' file."""
    return atomic_savez(path, export_state_dict(model, params, state, key_map=key_map))
