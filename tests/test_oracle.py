"""Tests of minibasis.oracle without torch: minibasis on one side and, on the other, the
authors' own numbers (the golden files in ../shared/data/golden, computed by their PyTorch
classes; see its README.md) or minibasis itself."""

import autograd
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from minibasis import cross_entropy
from minibasis.models import create_model
from minibasis.models.info import ZOO
from minibasis.oracle import (
    Comparison,
    compare,
    export_state_dict,
    map_keys,
    random_weights,
    relative_difference,
    save_state_dict,
    shared_bases_as_parameters,
)
from minibasis.tree import flatten, unflatten
from minibasis.weights import from_state_dict, save_weights, state_dict_layout
from support.golden import SPECS, golden_file, golden_state_dict

# golden file -> minibasis spec, for the CIFAR-10 models used here
GOLDEN_SPECS = {
    stem: SPECS[stem]
    for stem in (
        "cifar10-ResNet20",
        "cifar10-ResNet32_DoubleShared-s16u1",
        "cifar10-ResNet32_SingleShared-s16u1",
        "cifar10-ResNet32_SharedOnly-s16",
    )
}
SHARED_GOLDEN = [name for name in GOLDEN_SPECS if "Shared" in name]


def parameter_style_names(keys, owners):
    """``{authors' key: its name in a PyTorch model holding each shared basis as a top-level
    nn.Parameter, or None}``, from each key's owner (the first key holding the same tensor): a
    shared array appears once, under its model-level name (``shared_basis_1_1``: the one with no
    dot before ``.weight``) without ``.weight``; the blocks' copies are gone."""
    shared = {o for k, o in zip(keys, owners) if k != o}
    in_group = {k for k, o in zip(keys, owners) if o in shared}
    # model-level convs named shared_basis…: the shared ones, and DenseNet121_SingleShared's
    # shared_basis_4, which the authors register and regularise but no layer uses
    top_level = {k for k in keys if k.startswith("shared_basis") and "." not in k[: -len(".weight")]}
    return {key: key[: -len(".weight")] if key in top_level else None if key in in_group else key for key in keys}


def parameter_style(f, arrays):
    """``arrays`` (by the authors' keys) under :func:`parameter_style_names`."""
    names = parameter_style_names(f["keys"].tolist(), f["owners"].tolist())
    return {name: arrays[key] for key, name in names.items() if name is not None and key in arrays}


# ------------------------------------------------------------------ relative_difference


@pytest.mark.parametrize(
    "value, reference, expected",
    [
        ([1.0, 2.0], [1.0, 2.5], 0.5 / 2.5),  # large reference: relative
        ([0.1], [0.3], 0.2),  # below 1: absolute
        ([[3e6, 0.0]], [[3e6 + 3, 1.0]], 3 / (3e6 + 3)),
        (np.zeros((0, 4)), np.zeros((0, 4)), 0.0),
        (7, 7, 0.0),
    ],
)
def test_relative_difference_by_hand(value, reference, expected):
    assert relative_difference(value, reference) == pytest.approx(expected, rel=1e-12)


@given(
    reference=hnp.arrays(
        np.float64, hnp.array_shapes(max_dims=4, max_side=5), elements=st.integers(-1000, 1000).map(float)
    ),
    where=st.integers(0, 10**6),
    delta=st.sampled_from([2.0**-20, -0.5, 3.0, 64.0]),
)
def test_relative_difference_of_one_changed_entry(reference, where, delta):
    value = reference.copy()
    value.flat[where % value.size] += delta  # integers plus powers of two: exact
    assert relative_difference(value, reference) == abs(delta) / max(1.0, np.abs(reference).max())
    assert relative_difference(reference, reference) == 0.0


def test_relative_difference_refuses_other_shapes_and_shows_nan():
    with pytest.raises(ValueError, match=r"^value: expected shape \(2,\) \(that of reference\), got shape \(3,\)$"):
        relative_difference(np.zeros(3), np.zeros(2))
    assert np.isnan(relative_difference([1.0, np.nan], [1.0, 2.0]))


# ------------------------------------------------------------------------------ compare


@pytest.fixture(scope="module")
def small():
    """resnet14-s2u1 in float64, random weights, and the gradient tree of a cross-entropy."""
    model = create_model("resnet14-s2u1")
    params, state = random_weights(model, seed=0)
    rng = np.random.default_rng(1)
    x, labels = rng.standard_normal((2, 3, 16, 16)), rng.integers(0, 10, 2)

    def loss(p):
        return cross_entropy(model.apply(p, state, x, train=True)[0], labels)

    return model, params, state, autograd.grad(loss)(params)


def test_compare_a_tree_with_itself_and_with_one_changed_array(small):
    _, _, _, grads = small
    same = compare(grads, flatten(grads))  # a tree against its flat form
    assert set(same.differences) == set(flatten(grads)) and same.largest == 0.0
    assert same.check(0.0) is same
    key = "layer2.1.coeff_conv1.weight"
    other = dict(flatten(grads))
    other[key] = other[key].copy()
    other[key].flat[5] += 2.0**-10
    result = compare(grads, other)
    assert result.worst == key
    assert result.largest == pytest.approx(2.0**-10 / max(1.0, np.abs(flatten(grads)[key]).max()), rel=1e-9)
    assert all(d == 0.0 for k, d in result.differences.items() if k != key)
    assert result.check(1e-2) is result
    with pytest.raises(AssertionError, match=rf"^{key}: expected a relative difference ≤ 1e-08, got 9\.8e-04"):
        result.check(1e-8)


def test_compare_float64_against_float32_gradients(small):
    """The oracle's use: the same gradients computed in float32 agree to ~1e-6, not to 1e-12."""
    model, params, state, grads = small
    rng = np.random.default_rng(1)
    x, labels = rng.standard_normal((2, 3, 16, 16)), rng.integers(0, 10, 2)
    params32 = unflatten({k: v.astype(np.float32) for k, v in flatten(params).items()})
    state32 = unflatten({k: v.astype(np.float32) if v.dtype == np.float64 else v for k, v in flatten(state).items()})

    def loss32(p):
        return cross_entropy(model.apply(p, state32, x.astype(np.float32), train=True)[0], labels)

    result = compare(grads, autograd.grad(loss32)(params32))
    assert 1e-9 < result.largest < 1e-4, result.report()
    result.check(1e-4)
    with pytest.raises(AssertionError, match=result.worst):
        result.check(1e-9)


def test_compare_names_missing_unexpected_and_misshapen_keys():
    reference = {"a": {"weight": np.ones(2)}, "b": np.ones(3)}
    with pytest.raises(
        ValueError,
        match=r"^other: expected the keys of reference, got 1 missing \['b'\], "
        r"1 unexpected \['c'\]$",
    ):
        compare(reference, {"a.weight": np.ones(2), "c": np.ones(3)})
    with pytest.raises(
        ValueError, match=r"^other\['b'\]: expected shape \(3,\) \(that of reference\), got shape \(1, 3\)$"
    ):
        compare(reference, {"a.weight": np.ones(2), "b": np.ones((1, 3))})
    with pytest.raises(ValueError, match="reference: expected at least one array"):
        compare(reference, {}, key_map=lambda key: None)


def test_report_names_the_worst_first_and_nan_counts_as_worst():
    result = Comparison({"small": 1e-16, "nan": float("nan"), "large": 1e-3})
    assert result.worst == "nan"
    lines = result.report().splitlines()
    assert lines[0] == "3 arrays compared; worst nan: nan"
    assert lines[1:] == ["  large: 1.0e-03", "  small: 1.0e-16"]
    with pytest.raises(AssertionError, match="^nan: "):
        result.check(1.0)
    assert str(Comparison({"x": 2e-15, "y": 3e-15})).startswith("2 arrays compared; worst y: 3.0e-15")


# ------------------------------------------------------------------------------ key maps


def test_map_keys_by_dict_and_by_function():
    arrays = {"a.weight": 1, "b.weight": 2, "c": 3}
    assert map_keys(arrays, None) == arrays
    assert map_keys(arrays, {"a.weight": "a", "c": None}) == {"a": 1, "b.weight": 2}
    assert map_keys(arrays, lambda key: key.upper()) == {"A.WEIGHT": 1, "B.WEIGHT": 2, "C": 3}
    with pytest.raises(
        ValueError, match=r"^key_map: expected distinct new names, got 'a.weight' and 'b.weight' both renamed 'x'$"
    ):
        map_keys(arrays, {"a.weight": "x", "b.weight": "x"})
    with pytest.raises(TypeError, match=r"^key_map: expected None, a dict or a function, got list$"):
        map_keys(arrays, ["a"])
    with pytest.raises(TypeError, match=r"^key_map: expected a str or None for 'a.weight', got 1$"):
        map_keys(arrays, lambda key: 1)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_shared_bases_as_parameters_on_the_authors_keys(name):
    """Every model of the zoo (the authors' keys and owners, from their own classes): the
    blocks' copies dropped, each shared owner without ``.weight``, every other key kept."""
    f = golden_file(name)
    keys = f["keys"].tolist()
    assert list(map_keys(dict.fromkeys(keys), shared_bases_as_parameters)) == list(
        parameter_style(f, dict.fromkeys(keys))
    )


@pytest.mark.parametrize("name", SHARED_GOLDEN)
def test_export_and_save_with_the_key_map(tmp_path, name):
    """minibasis' file for a PyTorch model whose shared bases are
    top-level nn.Parameters has exactly that model's keys (a strict load), values unchanged."""
    f = golden_file(name)
    model = create_model(GOLDEN_SPECS[name])
    authors = golden_state_dict(f)
    params, state = from_state_dict(model, authors)
    theirs = parameter_style(f, authors)
    assert "shared_basis_1_1" in theirs or "shared_basis_1" in theirs
    exported = export_state_dict(model, params, state, key_map=shared_bases_as_parameters)
    assert list(exported) == list(theirs)
    assert compare(exported, theirs).largest == 0.0
    path = save_state_dict(tmp_path / "w.npz", model, params, state, key_map=shared_bases_as_parameters)
    with np.load(path) as saved:
        assert saved.files == list(theirs)
        assert all(np.array_equal(saved[key], theirs[key]) for key in theirs)
    # Without the map the authors' layout: save_weights' file, which that model refuses.
    save_weights(tmp_path / "plain.npz", model, params, state)
    with (
        np.load(save_state_dict(tmp_path / "mapped-none.npz", model, params, state)) as a,
        np.load(tmp_path / "plain.npz") as b,
    ):
        assert a.files == b.files == f["keys"].tolist()
    with pytest.raises(ValueError, match=r"missing \[.*'shared_basis_1.*\.weight'"):
        compare(export_state_dict(model, params, state), theirs)


def test_golden_logits_and_gradients_through_the_key_map():
    """minibasis against the authors' PyTorch numbers: eval logits, and the gradient norms of
    CE + 10·R compared with keys as a top-level-parameter model names them."""
    name = "cifar10-ResNet32_DoubleShared-s16u1"
    f = golden_file(name)
    model = create_model(GOLDEN_SPECS[name])
    params, state = from_state_dict(model, golden_state_dict(f))
    x, labels = f["x"], f["labels"]
    logits, _ = model.apply(params, state, x, train=False)
    assert relative_difference(logits, f["logits_eval"]) < 1e-10

    def loss_total(p):
        return cross_entropy(model.apply(p, state, x, train=True)[0], labels) + 10 * model.orthogonality(p)

    norms = {key: np.linalg.norm(g) for key, g in flatten(autograd.grad(loss_total)(params)).items()}
    stored = {key[len("grad_norm:") :]: f[key] for key in f.files if key.startswith("grad_norm:")}
    result = compare(norms, parameter_style(f, stored), key_map=shared_bases_as_parameters)
    assert "shared_basis_1_1" in result.differences
    result.check(1e-8)


# ------------------------------------------------------------------------ random_weights


def test_random_weights_leave_no_array_at_a_default():
    model = create_model("resnet14-s2u1")
    fresh_params, fresh_state = (flatten(t) for t in model.init(0, dtype=np.float64))
    params, state = (flatten(t) for t in random_weights(model, seed=0))
    assert params.keys() == fresh_params.keys() and state.keys() == fresh_state.keys()
    for key, value in {**params, **state}.items():
        fresh = {**fresh_params, **fresh_state}[key]
        assert value.shape == fresh.shape and value.dtype == fresh.dtype, key
    for key, value in params.items():
        assert np.all(value != fresh_params[key]), key  # BN weights ≠ 1, biases ≠ 0, convs moved
        assert np.abs(value - fresh_params[key]).max() < 0.6, key  # near init: 0.1·N(0, 1)
    for key, value in state.items():
        if key.endswith("running_var"):
            assert np.all((0.5 <= value) & (value <= 2.0)) and np.all(value != 1), key
        elif key.endswith("running_mean"):
            assert np.all(value != 0) and np.abs(value).max() < 0.6, key
        else:
            assert 1 <= int(value) <= 99, key
    arrays = list(params.values()) + [v for k, v in state.items() if v.ndim]
    assert len({a.tobytes() for a in arrays}) == len(arrays), "no two arrays are equal"


def test_random_weights_are_reproducible_and_follow_dtype_and_seed():
    model = create_model("resnet14-s2u1")
    a, b, c = (flatten(random_weights(model, seed=s)[0]) for s in (3, 3, 4))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not any(np.array_equal(a[k], c[k]) for k in a)
    single = flatten(random_weights(model, seed=3, dtype=np.float32)[0])
    assert all(v.dtype == np.float32 for v in single.values())
    with pytest.raises(ValueError, match=r"^seed: expected an int ≥ 0, got -1$"):
        random_weights(model, seed=-1)


def test_random_weights_expose_a_swap_that_a_fresh_init_hides():
    """Swapping two BN layers' weights changes nothing at init (all ones), everything here."""
    model = create_model("resnet14-s2u1")
    x = np.random.default_rng(2).standard_normal((2, 3, 16, 16))

    def swap_changes_logits(params, state):
        flat = flatten(params)
        swapped = dict(
            flat,
            **{"layer1.0.bn1.weight": flat["layer1.0.bn2.weight"], "layer1.0.bn2.weight": flat["layer1.0.bn1.weight"]},
        )
        before = model.apply(params, state, x, train=False)[0]
        after = model.apply(unflatten(swapped), state, x, train=False)[0]
        return relative_difference(after, before) > 1e-6

    assert not swap_changes_logits(*model.init(0, dtype=np.float64))
    assert swap_changes_logits(*random_weights(model, seed=0))


@pytest.mark.parametrize("spec", [row[0] for row in ZOO])
def test_shared_bases_as_parameters_over_the_zoo(spec):
    """Every zoo spec's layout through the map: no block copy left, every owner of copies
    without ``.weight``, every other key unchanged (the strict load of a parameter-style model)."""
    layout = state_dict_layout(create_model(spec))
    keys, owners = [key for key, *_ in layout], [source for *_, source in layout]
    mapped = map_keys({key: None for key in keys}, shared_bases_as_parameters)
    assert list(mapped) == [name for name in parameter_style_names(keys, owners).values() if name is not None]
    assert any(key != owner for key, owner in zip(keys, owners)) == (create_model(spec).regulariser is not None)
