"""One check's setup, the same for ``check_torch`` and for a golden file: weights, inputs, and
what minibasis computes from them, with each array's tolerance."""

from dataclasses import dataclass

import numpy as np

from ..checks import fail, integer, one_of
from ..models import create_model
from ..tree import flatten, unflatten
from ..weights import state_dict_layout
from . import tolerance
from .exchange import random_weights
from .probes import coverage, probe_inputs
from .record import reference_run

DEFAULT_LAMBDA = 10.0  # the authors' λ for every model they train with a regulariser (--lambdaR)


@dataclass(frozen=True)
class Case:
    """model; ``params``, ``state``, ``x`` in the dtype under test; ``labels``; ``lam``;
    ``reference``: minibasis' float64 arrays (golden keys, forward order); ``tolerances``
    ``{'float64': {key: tol}, 'float32': {key: tol} or None}``; coverage lines and warnings."""

    model: object
    params: dict
    state: dict
    x: np.ndarray
    labels: np.ndarray
    lam: float
    reference: dict
    tolerances: dict
    coverage: tuple
    warnings: tuple

    @property
    def dtype(self):
        return self.x.dtype

    def tolerance(self, dtype=None):
        """``{key: tol}`` for an implementation computing in ``dtype`` (default: the case's)."""
        name = np.dtype(dtype or self.dtype).name
        if self.tolerances.get(name) is None:
            fail("dtype", f"one of {[k for k, v in self.tolerances.items() if v]} (measured for this case)", name)
        return self.tolerances[name]

    def copies(self):
        """``{a block's copy of a shared array: its owner}``, as ``state_dict`` keys."""
        return {key: source for key, _, _, source in state_dict_layout(self.model) if key != source}


def default_lambda(model):
    return DEFAULT_LAMBDA if model.regulariser else 0.0


def prepare(spec, *, batch=2, image_size=None, seed=0, dtype=np.float64, lam=None, measure_float32=None):
    """The :class:`Case` for ``spec`` (a spec string or a model). The reference runs in float64
    on the weights and inputs of ``dtype`` (rounded once); ``measure_float32`` (default: when
    ``dtype`` is float32) runs minibasis in float32 too, for :func:`tolerance.measured`."""
    model = create_model(spec) if isinstance(spec, str) else spec
    batch = integer("batch", batch, 2)  # train-mode BN needs more than one value per channel
    size = integer("image_size", image_size, 1) if image_size is not None else model.standard_size
    dtype = np.dtype(one_of("dtype", np.dtype(dtype).name, ("float64", "float32")))
    lam = default_lambda(model) if lam is None else lam
    params, state = random_weights(model, seed, dtype=dtype)
    x = probe_inputs(batch, size, seed, dtype)
    labels = np.random.default_rng([seed, 3]).integers(0, model.spec.num_classes, batch)
    reference, activations = reference_run(model, _cast(params), _cast(state), x.astype(np.float64), labels, lam)
    tolerances = {"float64": tolerance.flat(reference), "float32": None}
    if measure_float32 or (measure_float32 is None and dtype == np.float32):
        single, _ = reference_run(
            model, _cast(params, np.float32), _cast(state, np.float32), x.astype(np.float32), labels, lam
        )
        tolerances["float32"] = tolerance.measured(reference, single)
    lines, warnings = coverage(activations)
    warnings += _few_values(model, reference)
    return Case(model, params, state, x, labels, lam, reference, tolerances, tuple(lines), tuple(warnings))


def _few_values(model, reference, minimum=8):
    """Train-mode BNs that normalise fewer than ``minimum`` values per channel: (x − μ)/σ over
    2 values is ±1 whatever x, and rounding is amplified by ~1/σ, so tolerances may misfire."""
    bns = {mod.name for mod in model.modules if mod.kind == "bn"}
    few = [
        (key[len("train:") :], value.shape)
        for key, value in reference.items()
        if key.startswith("train:")
        and key[len("train:") :] in bns
        and value.shape[0] * value.shape[2] * value.shape[3] < minimum
    ]
    if not few:
        return []
    name, shape = few[0]
    warning = (
        f"{len(few)} train-mode BNs normalise fewer than {minimum} values per channel (e.g. {name}: "
        f"{shape[0] * shape[2] * shape[3]}), ill-conditioned: differences there may exceed the tolerances; "
        "use a larger image size or batch"
    )
    return [warning]


def _cast(tree, dtype=np.float64):
    """The tree with its floating arrays in ``dtype`` (num_batches_tracked stays an integer)."""
    return unflatten({k: v.astype(dtype) if v.dtype.kind == "f" else v for k, v in flatten(tree).items()})
