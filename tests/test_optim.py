"""Tests of minibasis.optim: PyTorch-exact SGD over parameter trees and the lr schedules.

The reference below is an independent, element-by-element transcription of the algorithm
box in PyTorch's ``torch.optim.SGD`` documentation, in Python floats; when torch is
importable the results are also compared with ``torch.optim.SGD`` and torch's schedulers.
"""

import math

import numpy as onp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minibasis.optim import SCHEDULES, cosine_lr, learning_rate, sgd_step, step_lr
from minibasis.tree import flatten, unflatten
from support.run_files import assert_trees_equal

# ------------------------------------------------------------------------------ helpers


def reference_sgd(params_flat, grads_flat, bufs_flat, *, lr, momentum, weight_decay, nesterov, dampening):
    """PyTorch's documented SGD, one scalar at a time, on flat ``{name: array}`` dicts.

    ``bufs_flat`` is ``None`` on the first step. Returns new flat params and buffers (as
    float64 arrays; the caller compares them with the leaf's dtype tolerance).
    """
    new_params, new_bufs = {}, {}
    for name, p_arr in params_flat.items():
        p_in = onp.asarray(p_arr, dtype=onp.float64).ravel().tolist()
        g_in = onp.asarray(grads_flat[name], dtype=onp.float64).ravel().tolist()
        b_in = None if bufs_flat is None else (onp.asarray(bufs_flat[name], dtype=onp.float64).ravel().tolist())
        p_out, b_out = [], []
        for i, (p, g) in enumerate(zip(p_in, g_in)):
            if weight_decay != 0:
                g = g + weight_decay * p
            if momentum != 0:
                if b_in is None:
                    b = g
                else:
                    b = momentum * b_in[i] + (1 - dampening) * g
                b_out.append(b)
                g = g + momentum * b if nesterov else b
            p_out.append(p - lr * g)
        shape = onp.shape(p_arr)
        new_params[name] = onp.array(p_out, dtype=onp.float64).reshape(shape)
        new_bufs[name] = onp.array(b_out, dtype=onp.float64).reshape(shape) if b_out else None
    return new_params, (new_bufs if momentum != 0 else bufs_flat)


def tolerance(dtype):
    return dict(rtol=1e-12, atol=1e-12) if dtype == onp.float64 else dict(rtol=2e-5, atol=2e-5)


def deep_copy(tree):
    return unflatten({k: onp.array(v, copy=True) for k, v in flatten(tree).items()})


KEYS = st.sampled_from(["conv", "bn", "weight", "bias", "0", "1", "coeff", "basis"])
SHAPES = st.lists(st.integers(1, 4), min_size=0, max_size=3).map(tuple)
DTYPES = st.sampled_from([onp.float64, onp.float32])


@st.composite
def tree_specs(draw, depth=2):
    """Nested dict of (shape, dtype) leaf specs, at least one leaf."""
    keys = draw(st.lists(KEYS, min_size=1, max_size=3, unique=True))
    spec = {}
    for key in keys:
        if depth > 0 and draw(st.booleans()):
            spec[key] = draw(tree_specs(depth=depth - 1))
        else:
            spec[key] = (draw(SHAPES), draw(DTYPES))
    return spec


def spec_dtypes(spec):
    return {k: spec_dtypes(v) if isinstance(v, dict) else v[1] for k, v in spec.items()}


def random_tree(spec, rng, scale=1.0):
    return {
        k: random_tree(v, rng, scale) if isinstance(v, dict) else (scale * rng.standard_normal(v[0])).astype(v[1])
        for k, v in spec.items()
    }


@st.composite
def sgd_options(draw):
    momentum = draw(st.sampled_from([0.0, 0.5, 0.9]))
    nesterov = momentum > 0 and draw(st.booleans())
    dampening = 0.0 if nesterov else draw(st.sampled_from([0.0, 0.1, 0.5]))
    return dict(
        lr=draw(st.sampled_from([0.0, 0.01, 0.1, 0.5])),
        momentum=momentum,
        weight_decay=draw(st.sampled_from([0.0, 5e-4, 0.1])),
        nesterov=nesterov,
        dampening=dampening,
    )


OPTION_GRID = [
    dict(momentum=0.0, nesterov=False, weight_decay=0.0, dampening=0.0),
    dict(momentum=0.0, nesterov=False, weight_decay=1e-2, dampening=0.0),
    dict(momentum=0.9, nesterov=False, weight_decay=0.0, dampening=0.0),
    dict(momentum=0.9, nesterov=False, weight_decay=5e-4, dampening=0.0),
    dict(momentum=0.9, nesterov=False, weight_decay=5e-4, dampening=0.3),
    dict(momentum=0.9, nesterov=True, weight_decay=0.0, dampening=0.0),
    dict(momentum=0.9, nesterov=True, weight_decay=5e-4, dampening=0.0),
    dict(momentum=0.5, nesterov=False, weight_decay=0.0, dampening=1.0),
]


# --------------------------------------------------------------------- SGD vs reference


@given(spec=tree_specs(), options=sgd_options(), steps=st.integers(1, 4), seed=st.integers(0, 2**32 - 1))
def test_sgd_matches_reference_loop(spec, options, steps, seed):
    rng = onp.random.default_rng(seed)
    params = random_tree(spec, rng)
    ref_params, ref_bufs = flatten(params), None
    dtypes = flatten(spec_dtypes(spec))
    bufs = None
    for _ in range(steps):
        grads = random_tree(spec, rng)
        params, bufs = sgd_step(params, grads, bufs, **options)
        ref_params, ref_bufs = reference_sgd(ref_params, flatten(grads), ref_bufs, **options)

        got = flatten(params)
        assert list(got) == list(ref_params)
        for name, leaf in got.items():
            dtype = onp.dtype(dtypes[name])
            assert isinstance(leaf, onp.ndarray) and leaf.dtype == dtype, name
            assert leaf.shape == ref_params[name].shape, name
            onp.testing.assert_allclose(leaf, ref_params[name], err_msg=name, **tolerance(dtype))
            # Keep the reference in step with the leaf's own precision.
            ref_params[name] = leaf.astype(onp.float64)
        if options["momentum"] == 0:
            assert bufs is None
        else:
            got_bufs = flatten(bufs)
            assert list(got_bufs) == list(ref_bufs)
            for name, buf in got_bufs.items():
                assert buf.dtype == got[name].dtype and buf.shape == got[name].shape, name
                onp.testing.assert_allclose(buf, ref_bufs[name], err_msg=name, **tolerance(buf.dtype))
                ref_bufs[name] = buf.astype(onp.float64)


def test_plain_sgd_is_exact():
    rng = onp.random.default_rng(0)
    p = {"a": rng.standard_normal((3, 2)), "b": {"c": rng.standard_normal(4)}}
    g = {"a": rng.standard_normal((3, 2)), "b": {"c": rng.standard_normal(4)}}
    new, bufs = sgd_step(p, g, None, lr=0.1, momentum=0.0)
    assert bufs is None
    onp.testing.assert_array_equal(new["a"], p["a"] - 0.1 * g["a"])
    onp.testing.assert_array_equal(new["b"]["c"], p["b"]["c"] - 0.1 * g["b"]["c"])


def test_first_momentum_step_uses_gradient_as_buffer():
    p = {"w": onp.array([1.0, -2.0])}
    g = {"w": onp.array([0.5, 0.25])}
    new, bufs = sgd_step(p, g, None, lr=0.1, momentum=0.9, dampening=0.5)
    # First step: buf = d (no dampening), p -= lr * buf.
    onp.testing.assert_array_equal(bufs["w"], g["w"])
    onp.testing.assert_array_equal(new["w"], p["w"] - 0.1 * g["w"])
    new2, bufs2 = sgd_step(new, g, bufs, lr=0.1, momentum=0.9, dampening=0.5)
    onp.testing.assert_allclose(bufs2["w"], 0.9 * g["w"] + 0.5 * g["w"], rtol=1e-15)
    onp.testing.assert_allclose(new2["w"], new["w"] - 0.1 * bufs2["w"], rtol=1e-15)


def test_zero_momentum_passes_buffers_through():
    p, g = {"w": onp.ones(2)}, {"w": onp.ones(2)}
    bufs = {"w": onp.full(2, 7.0)}
    _, out = sgd_step(p, g, bufs, lr=0.1, momentum=0.0)
    assert out is bufs


@pytest.mark.parametrize("options", OPTION_GRID)
def test_float32_stays_float32(options):
    rng = onp.random.default_rng(1)
    p = {"w": rng.standard_normal((2, 3)).astype(onp.float32), "s": onp.array(1.5, dtype=onp.float32)}
    bufs = None
    for _ in range(3):
        # float64 gradients and NumPy float64 hyper-parameters must not upcast the params.
        g = {"w": rng.standard_normal((2, 3)), "s": onp.asarray(0.25)}
        p, bufs = sgd_step(
            p,
            g,
            bufs,
            lr=onp.float64(0.1),
            **{k: (onp.float64(v) if isinstance(v, float) else v) for k, v in options.items()},
        )
        for name, leaf in flatten(p).items():
            assert isinstance(leaf, onp.ndarray) and leaf.dtype == onp.float32, name
        if bufs is not None:
            for name, leaf in flatten(bufs).items():
                assert isinstance(leaf, onp.ndarray) and leaf.dtype == onp.float32, name
    assert p["s"].shape == ()


@given(spec=tree_specs(), options=sgd_options(), seed=st.integers(0, 2**32 - 1))
def test_inputs_not_mutated(spec, options, seed):
    rng = onp.random.default_rng(seed)
    params, grads = random_tree(spec, rng), random_tree(spec, rng)
    bufs = random_tree(spec, rng) if options["momentum"] else None
    snapshot = [deep_copy(params), deep_copy(grads), bufs and deep_copy(bufs)]
    options = dict(options, lr=0.1)  # a nonzero step, so aliasing would show
    new_params, new_bufs = sgd_step(params, grads, None, **options)
    new_params2, new_bufs2 = sgd_step(params, grads, bufs, **options)
    assert_trees_equal(params, snapshot[0])
    assert_trees_equal(grads, snapshot[1])
    if bufs is not None:
        assert_trees_equal(bufs, snapshot[2])
    inputs = list(flatten(params).values()) + list(flatten(grads).values())
    if bufs is not None:
        inputs += list(flatten(bufs).values())
    outputs = [t for t in (new_params, new_bufs, new_params2, new_bufs2) if t is not None]
    for out in outputs:
        for name, leaf in flatten(out).items():
            assert not any(onp.shares_memory(leaf, x) for x in inputs), name


# -------------------------------------------------------------------- argument checking

P = {"layer1": {"0": {"weight": onp.zeros((2, 3))}}, "fc": {"bias": onp.zeros(4)}}
G = {"layer1": {"0": {"weight": onp.ones((2, 3))}}, "fc": {"bias": onp.ones(4)}}


def test_lr_is_required():
    with pytest.raises(TypeError):
        sgd_step(P, G, None)


@pytest.mark.parametrize(
    "grads, error, message",
    [
        (
            {"layer1": {"0": {"weight": onp.ones((3, 2))}}, "fc": {"bias": onp.ones(4)}},
            ValueError,
            "grads['layer1.0.weight']: expected shape (2, 3) (as in params), got shape (3, 2)",
        ),
        (
            {"layer1": {"0": {}}, "fc": {"bias": onp.ones(4)}},
            ValueError,
            "grads['layer1.0.weight']: expected an array of shape (2, 3) (as in params), got no entry",
        ),
        (
            {"layer1": {"0": {"weight": onp.ones((2, 3))}}, "fc": {"bias": onp.ones(4), "weight": onp.ones(1)}},
            ValueError,
            "grads: expected only the keys of params, got the unexpected key 'fc.weight' (shape (1,))",
        ),
        (
            {"layer1": {"0": {"weight": onp.ones((2, 3))}}, "fc": onp.ones(4)},
            ValueError,
            "grads['fc.bias']: expected an array of shape (4,) (as in params), got no entry",
        ),
        (
            [onp.ones((2, 3)), onp.ones(4)],
            TypeError,
            "grads: expected a parameter tree (nested dict) like params, got list",
        ),
    ],
)
def test_mismatching_grads_raise(grads, error, message):
    with pytest.raises(error) as info:
        sgd_step(P, grads, None, lr=0.1)
    assert str(info.value) == message


def test_mismatching_buffers_raise():
    bufs = {"layer1": {"0": {"weight": onp.ones((2, 3))}}, "fc": {"bias": onp.ones(5)}}
    with pytest.raises(
        ValueError, match=r"^momentum_buffers\['fc\.bias'\]: expected shape \(4,\) \(as in params\), got shape \(5,\)$"
    ):
        sgd_step(P, G, bufs, lr=0.1, momentum=0.9)
    # Without momentum the buffers are not used, so they are not checked either.
    assert sgd_step(P, G, bufs, lr=0.1, momentum=0.0)[1] is bufs


def test_params_must_be_a_tree_of_floating_arrays():
    with pytest.raises(ValueError, match=r"^params\['n'\]: expected a floating dtype, got dtype int"):
        sgd_step({"n": onp.arange(3)}, {"n": onp.ones(3)}, None, lr=0.1)
    with pytest.raises(TypeError, match=r"^params: expected a parameter tree \(nested dict\), got list$"):
        sgd_step([onp.ones(3)], {"n": onp.ones(3)}, None, lr=0.1)


# ----------------------------------------------------------------------------- schedules


def test_step_lr_paper_schedule():
    # Kim & Kang: 300 epochs, lr divided by 10 at epochs 150 and 225.
    base = 0.1
    for epoch in range(0, 150):
        assert step_lr(epoch, base_lr=base, epochs=300) == base
    for epoch in range(150, 225):
        assert step_lr(epoch, base_lr=base, epochs=300) == pytest.approx(base * 0.1, rel=1e-12)
    for epoch in range(225, 300):
        assert step_lr(epoch, base_lr=base, epochs=300) == pytest.approx(base * 0.01, rel=1e-12)
    assert step_lr(149, base_lr=base, epochs=300) == base
    assert learning_rate("step", 224, base_lr=base, epochs=300) == pytest.approx(0.01)
    assert learning_rate("step", 225, base_lr=base, epochs=300) == pytest.approx(0.001)


def test_step_lr_options():
    assert step_lr(5, base_lr=1.0, epochs=10, milestones=(0.2,), gamma=0.5) == 0.5
    assert step_lr(1, base_lr=1.0, epochs=10, milestones=(0.2,), gamma=0.5) == 1.0
    assert step_lr(2, base_lr=1.0, epochs=10, milestones=(0.2,), gamma=0.5) == 0.5
    assert step_lr(0, base_lr=1.0, epochs=10, milestones=()) == 1.0
    # 0.7 · 10 is 7.000000000000001 in floating point: still epoch 7, not 8.
    assert step_lr(6, base_lr=1.0, epochs=10, milestones=(0.7,)) == 1.0
    assert step_lr(7, base_lr=1.0, epochs=10, milestones=(0.7,)) == pytest.approx(0.1)


# The learning rates of the default step schedule for short runs, written out: the
# milestones are ⌈E/2⌉ and ⌈3E/4⌉, so no run starts decayed (int() would give a 1-epoch run
# lr/100 throughout and a 2-epoch run lr/100 in its second epoch).
SHORT_RUNS = {
    1: [1],
    2: [1, 0.1],
    3: [1, 1, 0.1],
    4: [1, 1, 0.1, 0.01],
    5: [1, 1, 1, 0.1, 0.01],
    6: [1, 1, 1, 0.1, 0.1, 0.01],
    8: [1, 1, 1, 1, 0.1, 0.1, 0.01, 0.01],
}


@pytest.mark.parametrize("epochs, factors", SHORT_RUNS.items())
def test_step_lr_short_runs_start_at_the_full_rate(epochs, factors):
    lrs = [step_lr(e, base_lr=0.1, epochs=epochs) for e in range(epochs)]
    assert lrs == pytest.approx([0.1 * f for f in factors], rel=1e-12)
    assert lrs[0] == 0.1


@given(epochs=st.integers(1, 1000))
def test_step_lr_first_epoch_is_never_decayed_and_milestones_are_ceilings(epochs):
    lrs = [step_lr(e, base_lr=1.0, epochs=epochs) for e in range(epochs)]
    assert lrs[0] == 1.0
    first = next((e for e, lr in enumerate(lrs) if lr < 1.0), epochs)
    assert first == min(epochs, -(-epochs // 2))  # ⌈E/2⌉ in integers
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_cosine_lr_endpoints_and_midpoint():
    assert cosine_lr(0, base_lr=0.1, epochs=300) == pytest.approx(0.1, rel=1e-15)
    assert cosine_lr(150, base_lr=0.1, epochs=300) == pytest.approx(0.05, rel=1e-12)
    assert cosine_lr(300, base_lr=0.1, epochs=300) == pytest.approx(0.0, abs=1e-17)
    assert cosine_lr(0, base_lr=0.1, epochs=10, eta_min=0.01) == pytest.approx(0.1)
    assert cosine_lr(5, base_lr=0.1, epochs=10, eta_min=0.01) == pytest.approx(0.055)
    assert cosine_lr(10, base_lr=0.1, epochs=10, eta_min=0.01) == pytest.approx(0.01)
    lrs = [cosine_lr(e, base_lr=0.1, epochs=300) for e in range(301)]
    assert all(a > b for a, b in zip(lrs, lrs[1:]))
    assert learning_rate("cosine", 150, base_lr=0.1, epochs=300) == pytest.approx(0.05)


def test_constant_schedule():
    assert all(learning_rate("constant", e, base_lr=0.1, epochs=300) == 0.1 for e in (0, 150, 299))
    assert set(SCHEDULES) == {"step", "cosine", "constant"}


# ------------------------------------------------------------------------ against torch


@pytest.mark.parametrize("options", OPTION_GRID)
def test_sgd_matches_torch(options):
    torch = pytest.importorskip("torch")
    rng = onp.random.default_rng(2024)
    shapes = {"conv.weight": (4, 3, 3, 3), "conv.bias": (4,), "fc.weight": (10, 4), "scale": ()}
    params = unflatten({k: rng.standard_normal(s) for k, s in shapes.items()})
    tensors = {k: torch.nn.Parameter(torch.tensor(v, dtype=torch.float64)) for k, v in flatten(params).items()}
    opt = torch.optim.SGD(list(tensors.values()), lr=0.05, **options)
    bufs = None
    for _ in range(5):
        grads = {k: rng.standard_normal(s) for k, s in shapes.items()}
        for k, t in tensors.items():
            t.grad = torch.tensor(grads[k], dtype=torch.float64)
        opt.step()
        params, bufs = sgd_step(params, unflatten(grads), bufs, lr=0.05, **options)
        for k, leaf in flatten(params).items():
            onp.testing.assert_allclose(leaf, tensors[k].detach().numpy(), rtol=1e-12, atol=1e-14, err_msg=k)
            state = opt.state[tensors[k]].get("momentum_buffer")
            if options["momentum"]:
                onp.testing.assert_allclose(flatten(bufs)[k], state.numpy(), rtol=1e-12, atol=1e-14, err_msg=k)
            else:
                assert bufs is None and state is None


def torch_lrs(torch, make_scheduler, epochs, base_lr):
    p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = torch.optim.SGD([p], lr=base_lr)
    sched = make_scheduler(opt)
    lrs = []
    for _ in range(epochs):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    lrs.append(opt.param_groups[0]["lr"])  # after the last epoch (T_max for cosine)
    return lrs


@pytest.mark.parametrize("epochs", [1, 2, 3, 7, 10, 90, 300])
def test_schedules_match_torch(epochs):
    torch = pytest.importorskip("torch")
    from torch.optim.lr_scheduler import CosineAnnealingLR, MultiStepLR

    base = 0.1
    milestones = [math.ceil(0.5 * epochs), math.ceil(0.75 * epochs)]  # the documented rule
    expected = torch_lrs(torch, lambda o: MultiStepLR(o, milestones, gamma=0.1), epochs, base)
    got = [step_lr(e, base_lr=base, epochs=epochs) for e in range(epochs + 1)]
    onp.testing.assert_allclose(got, expected, rtol=1e-12)

    for eta_min in (0.0, 1e-3):
        expected = torch_lrs(torch, lambda o: CosineAnnealingLR(o, T_max=epochs, eta_min=eta_min), epochs, base)
        got = [cosine_lr(e, base_lr=base, epochs=epochs, eta_min=eta_min) for e in range(epochs + 1)]
        # torch applies the cosine recursively; allow its accumulated rounding.
        onp.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-15)
    assert math.isclose(cosine_lr(epochs, base_lr=base, epochs=epochs), 0.0, abs_tol=1e-16)
