"""CIFAR ResNets with shared filter bases: exact parameter / MAC counts, spec parsing, the
authors' parameter names, initialisation, forward, full-network gradients, gradient sharing,
the orthogonality regulariser (the comparison with PyTorch is in test_torch_reference.py).

Expected values come from the authors' ``models/cifar10/resnet.py`` (re-derived by
:func:`authors_layout.authors_modules`, independently of ``minibasis.models``), from the exact
counts of that re-derivation written out as literals (``COUNTS_TABLE``, also README.md's table),
or from independent computations; never from the code under test.
"""

import copy
import math
import re

import autograd
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from minibasis.basis import basis_layer, orthogonality_loss
from minibasis.conv import conv2d
from minibasis.layers import batch_norm, cross_entropy, global_avg_pool, linear, relu, shortcut_a
from minibasis.models import ModelSpec, create_model, parse_spec
from minibasis.testing import check_gradients
from minibasis.train import training_loss
from minibasis.tree import flatten, tree_map, unflatten

pytestmark = pytest.mark.reference  # also run with MINIBASIS_REFERENCE=1 (see README)

from support.authors_layout import (  # noqa: E402
    WIDTHS,
    authors_buffers,
    authors_macs,
    authors_parameters,
    shared_owner_names,
)


def spec_args(spec):
    return (spec.depth, spec.variant, spec.shared_rank, spec.unique_rank, spec.num_classes)


def random_images(seed, n, size, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal((n, 3, size, size)).astype(dtype)


# ---- 1. a table of exact counts ----------------------------------------------------------------

# Where these digits come from: they were not transcribed from the paper (nor checked digit
# for digit against it). They are the exact parameter and MAC counts of the authors'
# architectures as re-derived in tests/support/authors_layout.py (authors_parameters / authors_macs,
# read off their models/cifar10/resnet.py), written out as literals so that a change in either
# the re-derivation or minibasis.models shows up; README.md's table quotes the same integers.
# The test below holds both the re-derivation and the model to them.
COUNTS_TABLE = [
    ("resnet20", 269_722, 40_551_040),
    ("resnet32", 464_154, 68_862_592),
    ("resnet56", 853_018, 125_485_696),
    ("resnet110", 1_727_962, 252_887_680),
    ("resnet32-s16u1", 245_642, 79_086_208),
    ("resnet32-single-s8u1", 150_666, 47_628_928),
    ("resnet56-s16u1", 319_226, 145_932_928),
    ("resnet56-single-s16u1", 270_842, 145_932_928),
    ("resnet56-s16u0", 265_242, 138_068_608),
    ("resnet56-s0u1", 132_858, 20_103_808),
]


def authors_args(spec):
    """'resnet56-single-s16u1' -> authors_modules' (depth, variant, s, u), parsed here (not by
    minibasis.models.parse_spec) so that the re-derivation's side stays independent."""
    depth, single, s, u = re.fullmatch(r"resnet(\d+)(?:-(single-)?s(\d+)u(\d+))?", spec).groups()
    s, u = int(s or 0), int(u or 0)
    variant = (
        "original"
        if not (s or u)
        else "single"
        if single
        else "non_shared"
        if not s
        else "shared_only"
        if not u
        else "double"
    )
    return int(depth), variant, s, u


@pytest.mark.parametrize("spec, params, macs", COUNTS_TABLE)
def test_counts_match_the_table_of_exact_counts(spec, params, macs):
    # The literals are the re-derivation's counts (independent of minibasis.models) ...
    args = authors_args(spec)
    assert sum(int(np.prod(shape)) for _, shape in authors_parameters(*args)) == params
    assert authors_macs(*args) == macs
    # ... and the model's.
    model = create_model(spec)
    assert model.count_params() == params
    assert model.count_macs() == macs
    p, _ = model.init(seed=0)
    assert sum(np.size(leaf) for leaf in flatten(p).values()) == params  # BN affine included, each shared basis once


CIFAR10_VARIANTS = ("original", "double", "single", "shared_only", "non_shared")
spec_draws = st.builds(
    lambda n, kind, s, u, classes: (6 * (n if kind == "original" else max(n, 2)) + 2, kind, s, u, classes),
    st.integers(1, 9),
    st.sampled_from(CIFAR10_VARIANTS),
    st.integers(1, 8),
    st.integers(1, 3),
    st.integers(1, 20),
)


def make_spec(depth, variant, s, u, classes):
    s, u = {"original": (0, 0), "double": (s, u), "single": (s, u), "shared_only": (s, 0), "non_shared": (0, u)}[
        variant
    ]
    return ModelSpec(depth, variant, s, u, classes)


@given(spec_draws)
def test_counts_equal_the_authors_modules_and_the_params_tree(draw):
    spec = make_spec(*draw)
    model = create_model(spec)
    expected_params = sum(int(np.prod(shape)) for _, shape in authors_parameters(*spec_args(spec)))
    assert model.count_params() == expected_params
    assert model.count_macs() == authors_macs(*spec_args(spec))
    params, _ = model.init(seed=1)
    assert sum(np.size(leaf) for leaf in flatten(params).values()) == expected_params


# ---- 2. spec parsing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("resnet20", ModelSpec(20, "original")),
        ("resnet110", ModelSpec(110, "original")),
        ("resnet56-s16u1", ModelSpec(56, "double", 16, 1)),
        ("resnet56-double-s16u1", ModelSpec(56, "double", 16, 1)),
        ("resnet32-single-s8u1", ModelSpec(32, "single", 8, 1)),
        ("resnet56-single-s16u0", ModelSpec(56, "single", 16, 0)),
        ("resnet56-s16u0", ModelSpec(56, "shared_only", 16, 0)),
        ("resnet56-s0u1", ModelSpec(56, "non_shared", 0, 1)),
        ("resnet14-s2u1", ModelSpec(14, "double", 2, 1)),
    ],
)
def test_valid_specs_parse_to_variant_and_ranks(text, expected):
    assert parse_spec(text) == expected
    model = create_model(text)
    assert model.spec == expected
    assert create_model(expected).spec == expected


@given(spec_draws)
def test_spec_names_round_trip(draw):
    spec = make_spec(*draw)
    text = (
        f"resnet{spec.depth}"
        if spec.variant == "original"
        else (
            f"resnet{spec.depth}{'-single' if spec.variant == 'single' else ''}-s{spec.shared_rank}u{spec.unique_rank}"
        )
    )
    assert parse_spec(text, num_classes=spec.num_classes) == spec
    assert parse_spec(spec.name, num_classes=spec.num_classes) == spec


@pytest.mark.parametrize(
    "text",
    [
        "resnet57",
        "resnet56-s16",
        "vgg16",
        "resnet56-single-s0u1",
        "resnet56-s0u0",
        "resnet",
        "",
        "resnet56-u1s16",
        "resnet56-s16u1-single",
        "resnet56_s16u1",
        "resnet56-s-1u1",
        "resnet56-singles16u1",
        "resnet56-double-s16u0",
        "resnet56-double-s0u1",
        "resnet2",
        "resnet56-s16u1x",
        "resnet56-triple-s16u1",
        "resnet56--s16u1",
    ],
)
def test_malformed_specs_raise_listing_the_valid_forms(text):
    with pytest.raises(ValueError) as info:
        create_model(text)
    message = str(info.value)
    assert "spec" in message
    assert repr(text) in message
    for form in ("resnet{D}", "resnet{D}-s{S}u{U}", "resnet{D}-single-s{S}u{U}", "6n + 2"):
        assert form in message


@given(st.integers(3, 400).filter(lambda d: (d - 2) % 6))
def test_depths_other_than_6n_plus_2_are_refused(depth):
    with pytest.raises(ValueError, match="6n"):
        parse_spec(f"resnet{depth}-s4u1")


def test_spec_type_and_num_classes_are_checked():
    with pytest.raises(TypeError, match="spec"):
        create_model(56)
    for bad in (0, -3, 2.5):
        with pytest.raises(ValueError, match="num_classes"):
            create_model("resnet20", num_classes=bad)


@pytest.mark.parametrize("spec", ["resnet20", "resnet20-s16u1", "resnet20-single-s8u1"])
def test_num_classes_sets_the_classifier(spec):
    model = create_model(spec, num_classes=100)
    params, _ = model.init(seed=0)
    assert params["fc"]["weight"].shape == (100, 64)
    assert params["fc"]["bias"].shape == (100,)
    logits, _ = model.apply(params, model.init(seed=0)[1], random_images(0, 2, 8, np.float32), train=False)
    assert logits.shape == (2, 100)
    assert model.count_params() - create_model(spec).count_params() == 90 * 65


# ---- 3. parameter names --------------------------------------------------------------------


def test_names_of_resnet20_s16u1_are_the_authors():
    params, state = create_model("resnet20-s16u1").init(seed=0)
    names = list(flatten(params))
    assert names[:32] == [
        "conv1.weight",
        "bn1.weight",
        "bn1.bias",
        "shared_basis_1_1.weight",
        "shared_basis_1_2.weight",
        "layer1.0.conv1.weight",
        "layer1.0.bn1.weight",
        "layer1.0.bn1.bias",
        "layer1.0.conv2.weight",
        "layer1.0.bn2.weight",
        "layer1.0.bn2.bias",
        "layer1.1.basis_conv1.weight",
        "layer1.1.basis_bn1.weight",
        "layer1.1.basis_bn1.bias",
        "layer1.1.coeff_conv1.weight",
        "layer1.1.bn1.weight",
        "layer1.1.bn1.bias",
        "layer1.1.basis_conv2.weight",
        "layer1.1.basis_bn2.weight",
        "layer1.1.basis_bn2.bias",
        "layer1.1.coeff_conv2.weight",
        "layer1.1.bn2.weight",
        "layer1.1.bn2.bias",
        "layer1.2.basis_conv1.weight",
        "layer1.2.basis_bn1.weight",
        "layer1.2.basis_bn1.bias",
        "layer1.2.coeff_conv1.weight",
        "layer1.2.bn1.weight",
        "layer1.2.bn1.bias",
        "layer1.2.basis_conv2.weight",
        "layer1.2.basis_bn2.weight",
        "layer1.2.basis_bn2.bias",
    ]
    assert names[-2:] == ["fc.weight", "fc.bias"]
    assert "shared_basis_2_1.weight" in names and "shared_basis_3_2.weight" in names
    assert params["layer1"]["1"]["coeff_conv1"]["weight"].shape == (16, 17, 1, 1)
    assert params["layer3"]["2"]["basis_conv2"]["weight"].shape == (4, 64, 3, 3)
    assert params["shared_basis_3_1"]["weight"].shape == (64, 64, 3, 3)
    assert not any("running" in n or "num_batches" in n for n in names)
    assert "layer1.1.bn1.running_var" in flatten(state)


@pytest.mark.parametrize(
    "spec",
    [
        "resnet20",
        "resnet20-s16u1",
        "resnet20-double-s8u2",
        "resnet20-single-s8u1",
        "resnet20-single-s4u0",
        "resnet20-s16u0",
        "resnet20-s0u1",
        "resnet32-s4u2",
        "resnet14-s0u3",
    ],
)
def test_parameter_and_state_names_and_shapes_are_the_authors(spec):
    model = create_model(spec)
    params, state = model.init(seed=0)
    args = spec_args(model.spec)
    assert [(k, v.shape) for k, v in flatten(params).items()] == authors_parameters(*args)
    assert [(k, v.shape) for k, v in flatten(state).items()] == authors_buffers(*args)
    names = list(flatten(params))
    variant = model.spec.variant
    has = lambda pattern: any(re.search(pattern, n) for n in names)  # noqa: E731
    assert has(r"^shared_basis_\d_[12]\.") == (variant in ("double", "shared_only"))
    assert has(r"^shared_basis_\d\.") == (variant == "single")
    blocks = (model.spec.depth - 2) // 6
    assert has(r"basis_conv\d") == (
        variant in ("double", "single", "non_shared") and model.spec.unique_rank > 0 and blocks > 1
    )
    assert not has(r"^layer.*shared_basis")  # a shared basis is one array, owned by the model
    assert not any("running" in n or "num_batches" in n for n in names)
    for key, value in flatten(state).items():
        assert value.dtype == (np.int64 if key.endswith("num_batches_tracked") else np.float32)


# ---- 4. initialisation ---------------------------------------------------------------------


def conv_groups(model, params):
    """{group: (expected std, [weights])}: the convs grouped by role and stage."""
    groups = {}
    for name, w in flatten(params).items():
        if w.ndim != 4 or "shared_basis" in name:
            continue
        role = re.sub(r"layer(\d)\.\d+\.", r"stage\1.", name)
        std = math.sqrt(2.0 / (w.shape[0] * w.shape[2] * w.shape[3]))  # Kaiming normal, fan_out
        entry = groups.setdefault(role, (std, []))
        assert entry[0] == std
        entry[1].append(w.ravel())
    return {k: (std, np.concatenate(ws)) for k, (std, ws) in groups.items()}


@pytest.mark.parametrize("spec", ["resnet56-s16u1", "resnet56", "resnet32-single-s8u1"])
def test_convs_are_kaiming_normal_fan_out(spec):
    model = create_model(spec)
    params, _ = model.init(seed=3)
    pooled = []
    for role, (std, w) in conv_groups(model, params).items():
        tolerance = 5 / math.sqrt(2 * w.size)  # five standard errors of an empirical std
        assert abs(w.std() / std - 1) < max(tolerance, 0.02), role
        assert abs(w.mean()) < 5 * std / math.sqrt(w.size), role
        pooled.append(w / std)
    pooled = np.concatenate(pooled)
    assert stats.kstest(pooled, "norm").pvalue > 1e-3
    big = params["layer3"]["8"]["conv2"]["weight"] if spec == "resnet56" else params["layer3"]["0"]["conv2"]["weight"]
    assert big.size == 64 * 64 * 9
    assert abs(big.std() / math.sqrt(2 / (64 * 9)) - 1) < 0.03


@pytest.mark.parametrize(
    "spec", ["resnet20-s16u1", "resnet20-single-s8u1", "resnet20-s16u0", "resnet20-s0u1", "resnet20"]
)
def test_bn_fc_and_state_init(spec):
    model = create_model(spec)
    params, state = model.init(seed=0)
    for name, value in flatten(params).items():
        if re.search(r"(^|\.)(basis_)?bn\d?\.weight$", name):
            assert np.array_equal(value, np.ones_like(value)), name
        if re.search(r"(^|\.)(basis_)?bn\d?\.bias$", name):
            assert np.array_equal(value, np.zeros_like(value)), name
        assert value.dtype == np.float32, name
    for name, value in flatten(state).items():
        expected = {"running_mean": 0, "running_var": 1, "num_batches_tracked": 0}[name.rsplit(".", 1)[1]]
        assert np.all(value == expected), name
    bound = 1 / math.sqrt(64)
    w, b = params["fc"]["weight"], params["fc"]["bias"]
    assert np.all(np.abs(w) <= bound) and np.all(np.abs(b) <= bound)
    assert np.abs(w).max() > 0.9 * bound and abs(w.std() / (bound / math.sqrt(3)) - 1) < 0.15
    assert len(np.unique(b)) == 10


def assert_orthonormal_rows(*bases, atol=1e-5):
    rows = np.concatenate([b.reshape(b.shape[0], -1).astype(np.float64) for b in bases])
    np.testing.assert_allclose(rows @ rows.T, np.eye(len(rows)), atol=atol)


@settings(max_examples=5)
@given(st.integers(0, 2**32 - 1))
def test_shared_bases_are_orthonormal(seed):
    for spec in ("resnet20-s16u1", "resnet20-s16u0", "resnet20-s8u3"):
        params, _ = create_model(spec).init(seed=seed)
        for g in (1, 2, 3):
            b1, b2 = params[f"shared_basis_{g}_1"]["weight"], params[f"shared_basis_{g}_2"]["weight"]
            assert b1.dtype == np.float32
            assert_orthonormal_rows(b1, b2)  # jointly: each orthonormal and orthogonal to the other
    params, _ = create_model("resnet20-single-s16u1").init(seed=seed)
    for g in (1, 2, 3):
        assert_orthonormal_rows(params[f"shared_basis_{g}"]["weight"])


def test_square_shared_bases_are_orthogonal_matrices():
    # as many basis rows as C·3·3 in every stage: the joint (or single) basis is a square
    # orthogonal matrix, the largest size that can be orthonormal
    params, _ = create_model("resnet14-single-s144u0").init(seed=0)
    for g in (1, 2, 3):
        assert_orthonormal_rows(params[f"shared_basis_{g}"]["weight"])
    params, _ = create_model("resnet14-s72u0").init(seed=0)
    for g in (1, 2, 3):
        assert_orthonormal_rows(params[f"shared_basis_{g}_1"]["weight"], params[f"shared_basis_{g}_2"]["weight"])
    # one row more than C·3·3 per basis: no more rows can be orthonormal, so (as PyTorch's
    # orthogonal_) the joint matrix has orthonormal columns
    params, _ = create_model("resnet14-s73u0").init(seed=0, dtype=np.float64)
    for g in (1, 2, 3):
        joint = np.concatenate(
            [params[f"shared_basis_{g}_{i}"]["weight"].reshape(73 * 2 ** (g - 1), -1) for i in (1, 2)]
        )
        np.testing.assert_allclose(joint.T @ joint, np.eye(joint.shape[1]), atol=1e-12)


def test_init_is_reproducible_from_the_seed():
    model = create_model("resnet20-s16u1")
    a, sa = model.init(seed=7)
    b, sb = model.init(seed=7)
    c, _ = model.init(seed=8)
    for key, value in flatten(a).items():
        assert np.array_equal(value, flatten(b)[key]), key
    for key, value in flatten(sa).items():
        assert np.array_equal(value, flatten(sb)[key]), key
    differ = [k for k, v in flatten(a).items() if not np.array_equal(v, flatten(c)[k])]
    random_keys = [k for k in flatten(a) if not re.search(r"bn\d?\.(weight|bias)$", k)]
    assert differ == random_keys


def test_init_dtype_float64():
    params, state = create_model("resnet14-s2u1").init(seed=0, dtype=np.float64)
    assert all(v.dtype == np.float64 for v in flatten(params).values())
    assert all(v.dtype == (np.int64 if k.endswith("tracked") else np.float64) for k, v in flatten(state).items())
    assert_orthonormal_rows(params["shared_basis_3_1"]["weight"], params["shared_basis_3_2"]["weight"], atol=1e-12)


# ---- 5. forward ----------------------------------------------------------------------------


def perturbed(params, state, seed):
    """Params and state as after training: BN affine and running statistics away from 1/0."""
    rng = np.random.default_rng(seed)
    flat_p = {
        k: (v + 0.2 * rng.standard_normal(v.shape)).astype(v.dtype) if re.search(r"bn\d?\.", k) else v
        for k, v in flatten(params).items()
    }
    flat_s = {}
    for k, v in flatten(state).items():
        if k.endswith("running_mean"):
            v = (0.3 * rng.standard_normal(v.shape)).astype(v.dtype)
        elif k.endswith("running_var"):
            v = rng.uniform(0.5, 2.0, v.shape).astype(v.dtype)
        elif k.endswith("num_batches_tracked"):
            v = np.int64(rng.integers(1, 1000))
        flat_s[k] = v
    return unflatten(flat_p), unflatten(flat_s)


@pytest.mark.parametrize(
    "spec", ["resnet20-s16u1", "resnet20-single-s8u1", "resnet20-s8u0", "resnet20-s0u1", "resnet20"]
)
def test_forward_shapes_dtypes_and_state(spec):
    model = create_model(spec)
    params, state = model.init(seed=0)
    x = random_images(1, 3, 16, np.float32)
    before = copy.deepcopy(state)
    logits, new = model.apply(params, state, x, train=True)
    assert logits.shape == (3, 10) and logits.dtype == np.float32
    assert np.all(np.isfinite(logits))
    flat_new, flat_old = flatten(new), flatten(state)
    assert list(flat_new) == list(flat_old)
    for key, value in flat_new.items():
        assert np.array_equal(flat_old[key], flatten(before)[key]), f"{key}: input state mutated"
        if key.endswith("num_batches_tracked"):
            assert value == 1 and value.dtype == np.int64, key
        else:
            assert value.dtype == np.float32, key
            assert not np.array_equal(value, flat_old[key]), f"{key}: running statistic unchanged"
    # eval mode: state values unchanged; per-sample (no batch statistics)
    logits_eval, after = model.apply(params, new, x, train=False)
    assert logits_eval.shape == (3, 10) and logits_eval.dtype == np.float32
    for key, value in flatten(after).items():
        assert np.array_equal(value, flat_new[key]), key
    one, _ = model.apply(params, new, x[1:2], train=False)
    np.testing.assert_allclose(one[0], logits_eval[1], rtol=1e-4, atol=1e-5)


def test_training_step_increments_every_batch_counter():
    model = create_model("resnet20-single-s4u1")
    params, state = perturbed(*model.init(seed=0), seed=9)  # counters at random values
    _, new = model.apply(params, state, random_images(2, 2, 8, np.float32), train=True)
    counters = {k: v for k, v in flatten(state).items() if k.endswith("num_batches_tracked")}
    assert len(counters) == len([m for m in authors_buffers(*spec_args(model.spec))]) // 3
    for key, value in counters.items():
        assert flatten(new)[key] == value + 1, key


def test_forward_float64_and_batch_dependence_in_training():
    model = create_model("resnet14-s2u1")
    params, state = model.init(seed=0, dtype=np.float64)
    x = random_images(2, 4, 8)
    logits, _ = model.apply(params, state, x, train=True)
    assert logits.dtype == np.float64
    part, _ = model.apply(params, state, x[:2], train=True)
    assert not np.allclose(part, logits[:2])  # batch statistics couple the samples in training


# ---- 6. the full training loss gradient ------------------------------------------------------


def trained_like(model, seed):
    """float64 params and state away from init, unique bases with unit-norm rows (as the
    orthogonality term drives them): keeps the loss O(1), so central differences are sharp."""
    params, state = perturbed(*model.init(seed=0, dtype=np.float64), seed=seed)
    flat = {
        k: v / np.linalg.norm(v.reshape(v.shape[0], -1), axis=1)[:, None, None, None] if "basis_conv" in k else v
        for k, v in flatten(params).items()
    }
    return unflatten(flat), state


@pytest.mark.parametrize(
    "spec", ["resnet14-s2u1", "resnet14-single-s2u1", "resnet14-s2u0", "resnet14-s0u1", "resnet14"]
)
def test_training_loss_gradient_of_every_parameter_array(spec):
    """Depth 14: one plain block and one basis block per stage; 2 images of 8×8 px (2×2 px in
    stage 3). Every parameter array is checked on its own (leafwise)."""
    model = create_model(spec)
    params, state = trained_like(model, seed=1)
    x, labels = random_images(5, 2, 8), np.array([3, 7])

    def loss(params):
        return training_loss(model, params, state, x, labels, 10.0)[0]  # CE + 10·R, minibasis.train's

    # eps 1e-5: truncation ~1e-10, round-off ~1e-11 for a loss of ~3
    check_gradients(loss, params, mode="leafwise", eps=1e-5, rtol=1e-6, atol=1e-9, seed=2)
    check_gradients(loss, params, mode="directional", directions=2, eps=1e-5, rtol=1e-6, atol=1e-9, seed=3)
    grads = autograd.grad(loss)(params)
    assert [(k, v.shape, v.dtype) for k, v in flatten(grads).items()] == [
        (k, v.shape, v.dtype) for k, v in flatten(params).items()
    ]


def test_shift_before_a_training_mode_bn_gets_no_gradient():
    """basis_bn's bias feeds a 1×1 conv and then a BN: in training mode that BN subtracts the
    batch mean, so the shift cancels and its gradient is 0; in eval mode it does not."""
    model = create_model("resnet20-s2u1")
    params, state = trained_like(model, seed=4)
    x, labels = random_images(6, 2, 8), np.array([2, 5])
    for train in (True, False):
        grads = flatten(
            autograd.grad(lambda p: cross_entropy(model.apply(p, state, x, train=train)[0], labels))(params)
        )
        biases = [v for k, v in grads.items() if re.search(r"basis_bn\d\.bias$", k)]
        assert len(biases) == 12
        if train:
            assert max(np.abs(b).max() for b in biases) < 1e-14
        else:
            assert min(np.abs(b).max() for b in biases) > 1e-6


# ---- 7. sharing: the shared basis' gradient is the sum over its uses ------------------------


def untied_loss(model, params, state, x, labels, copies):
    """The network written out by hand with every basis layer owning its copy of the shared
    basis: ``copies[(g, b, layer)]``."""
    spec = model.spec

    def bn(h, p, s):
        return batch_norm(h, p["weight"], p["bias"], s, train=True)[0]

    h = relu(bn(conv2d(x, params["conv1"]["weight"], padding=1), params["bn1"], state["bn1"]))
    for g, width in enumerate(WIDTHS, start=1):
        for b in range((spec.depth - 2) // 6):
            p, s = params[f"layer{g}"][str(b)], state[f"layer{g}"][str(b)]
            if b == 0:
                stride = 1 if g == 1 else 2
                y = relu(bn(conv2d(h, p["conv1"]["weight"], stride=stride, padding=1), p["bn1"], s["bn1"]))
                y = bn(conv2d(y, p["conv2"]["weight"], padding=1), p["bn2"], s["bn2"])
                h = relu(y + (h if stride == 1 else shortcut_a(h, out_channels=width)))
                continue
            y = h
            for layer in (1, 2):
                layer_params = {
                    "unique_basis": p[f"basis_conv{layer}"]["weight"] if f"basis_conv{layer}" in p else None,
                    "shared_basis": copies[(g, b, layer)],
                    "basis_bn": p[f"basis_bn{layer}"],
                    "coefficients": p[f"coeff_conv{layer}"]["weight"],
                    "bn": p[f"bn{layer}"],
                }
                layer_state = {"basis_bn": s[f"basis_bn{layer}"], "bn": s[f"bn{layer}"]}
                y, _ = basis_layer(y, layer_params, layer_state, train=True)
                if layer == 1:
                    y = relu(y)
            h = relu(y + h)
    logits = linear(global_avg_pool(h), params["fc"]["weight"], params["fc"]["bias"])
    return cross_entropy(logits, labels)


def owner_of(variant, g, layer):
    owners = shared_owner_names(variant, g)
    return owners[0] if len(owners) == 1 else owners[layer - 1]


@pytest.mark.parametrize("spec", ["resnet20-s2u1", "resnet20-single-s2u1", "resnet20-s2u0"])
def test_shared_basis_gradient_is_the_sum_over_its_uses(spec):
    model = create_model(spec)
    params, state = model.init(seed=0, dtype=np.float64)
    params, state = perturbed(params, state, seed=2)
    x, labels = random_images(3, 2, 8), np.array([1, 4])
    n = (model.spec.depth - 2) // 6
    variant = model.spec.variant
    copies = {
        (g, b, layer): params[owner_of(variant, g, layer)]["weight"] + 0.0
        for g in (1, 2, 3)
        for b in range(1, n)
        for layer in (1, 2)
    }

    def tied(params):
        return cross_entropy(model.apply(params, state, x, train=True)[0], labels)

    assert untied_loss(model, params, state, x, labels, copies) == pytest.approx(tied(params), rel=1e-12)
    grad_copies = autograd.grad(lambda c: untied_loss(model, params, state, x, labels, c))(copies)
    grad_model = autograd.grad(tied)(params)
    for g in (1, 2, 3):
        for owner in shared_owner_names(variant, g):
            uses = [grad_copies[key] for key in copies if owner_of(variant, key[0], key[2]) == owner and key[0] == g]
            assert len(uses) == (n - 1) * (2 if variant == "single" else 1)
            expected = np.sum(uses, axis=0)
            np.testing.assert_allclose(
                grad_model[owner]["weight"], expected, rtol=1e-9, atol=1e-12 * np.abs(expected).max()
            )
            assert not np.allclose(uses[0], uses[1])  # the uses contribute different gradients
    # a copy is not the owner: the model uses one array (no per-block copies in the tree)
    assert not any("shared" in k for k in flatten(grad_model) if k.startswith("layer"))


# ---- 8. the orthogonality regulariser ---------------------------------------------------------


@pytest.mark.parametrize(
    "spec", ["resnet20-s16u1", "resnet32-single-s8u1", "resnet20-single-s4u0", "resnet20-s16u0", "resnet20-s4u2"]
)
def test_orthogonality_is_the_loss_over_the_stages(spec):
    model = create_model(spec)
    params, _ = model.init(seed=4, dtype=np.float64)
    rng = np.random.default_rng(0)
    params = tree_map(lambda v: v + 0.05 * rng.standard_normal(v.shape), params)  # not orthonormal any more
    n = (model.spec.depth - 2) // 6
    stages = []
    for g in (1, 2, 3):
        shared = [params[name]["weight"] for name in shared_owner_names(model.spec.variant, g)]
        unique = []
        for b in range(1, n):
            block = params[f"layer{g}"][str(b)]
            unique += [block[k]["weight"] for k in ("basis_conv1", "basis_conv2") if k in block]
        stages.append((shared, unique))
    assert model.orthogonality(params) == pytest.approx(orthogonality_loss(stages), rel=1e-12)
    assert model.orthogonality(params) > 0


@pytest.mark.parametrize("spec", ["resnet20-s0u1", "resnet32-s0u2"])
def test_non_shared_models_are_trained_without_a_regulariser(spec):
    """The authors' train_cifar10.py trains NonShared models with cross-entropy alone, so their
    R is 0, not the unique bases' orthogonality (328 for resnet20-s0u1 at init)."""
    model = create_model(spec)
    params, _ = model.init(seed=0)
    assert model.regulariser is None and model.orthogonality(params) == 0.0


def test_orthogonality_of_the_original_resnet_is_zero():
    model = create_model("resnet20")
    params, _ = model.init(seed=0)
    assert model.orthogonality(params) == 0.0


@pytest.mark.parametrize("spec", ["resnet20-s16u0", "resnet20-single-s8u0"])
def test_orthogonality_vanishes_at_init_without_unique_bases(spec):
    model = create_model(spec)
    params, _ = model.init(seed=0, dtype=np.float64)
    assert model.orthogonality(params) < 1e-20
    assert_orthonormal_rows(
        params["shared_basis_1_1" if "single" not in spec else "shared_basis_1"]["weight"], atol=1e-12
    )


def test_orthogonality_formula_by_hand_for_one_stage_layout():
    """R from the paper's definition, with plain NumPy, for resnet14-s2u1 (one basis block per
    stage: shared rows S1, S2 and unique rows U1, U2 per stage)."""
    model = create_model("resnet14-s2u1")
    params, _ = model.init(seed=5, dtype=np.float64)
    numerator, denominator = 0.0, 0
    for g in (1, 2, 3):
        rows = lambda a: a.reshape(a.shape[0], -1)  # noqa: E731
        shared = np.concatenate([rows(params[f"shared_basis_{g}_{i}"]["weight"]) for i in (1, 2)])
        u1 = rows(params[f"layer{g}"]["1"]["basis_conv1"]["weight"])
        u2 = rows(params[f"layer{g}"]["1"]["basis_conv2"]["weight"])
        every = np.concatenate([shared, u1, u2])
        for a in range(len(shared)):
            for c in range(len(every)):
                numerator += (every[a] @ every[c] - (a == c)) ** 2
                denominator += 1
        for u in (u1, u2):
            for a in range(len(u)):
                for c in range(len(u)):
                    numerator += (u[a] @ u[c] - (a == c)) ** 2
                    denominator += 1
    assert model.orthogonality(params) == pytest.approx(numerator / denominator, rel=1e-10)


# ---- 9. against the authors' PyTorch model: tests/test_torch_reference.py (all five variants)


# ---- the building blocks of the CIFAR-100 DenseNet121 and ResNeXt50 ------------------------------
# (their whole networks are compared with the authors' PyTorch classes in test_zoo.py)

import autograd.numpy as anp  # noqa: E402
from autograd.test_util import check_grads  # noqa: E402

from minibasis.basis import basis_conv  # noqa: E402
from minibasis.layers import avg_pool2d, batch_norm_state  # noqa: E402
from minibasis.mode import reference_mode  # noqa: E402
from minibasis.models.densenet import basis_bottleneck as dense_basis_layer  # noqa: E402
from minibasis.models.densenet import bottleneck as dense_layer  # noqa: E402
from minibasis.models.densenet import transition  # noqa: E402
from minibasis.models.resnext import basis_bottleneck as resnext_basis_block  # noqa: E402


@settings(max_examples=25, deadline=None)
@given(
    st.integers(1, 2), st.integers(1, 3), st.integers(2, 9), st.integers(2, 9), st.integers(1, 4), st.integers(0, 99)
)
def test_avg_pool_is_the_mean_of_each_whole_window(N, C, H, W, k, seed):
    """PyTorch's AvgPool2d(k): stride k, the partial windows at the bottom and right dropped."""
    if k > min(H, W):
        with pytest.raises(ValueError, match=rf"x: expected an input of at least {k}×{k} pixels"):
            avg_pool2d(np.zeros((N, C, H, W)), kernel_size=k)
        return
    x = np.random.default_rng(seed).standard_normal((N, C, H, W))
    expected = np.array(
        [
            [
                [[x[n, c, a * k : a * k + k, b * k : b * k + k].mean() for b in range(W // k)] for a in range(H // k)]
                for c in range(C)
            ]
            for n in range(N)
        ]
    )
    np.testing.assert_allclose(avg_pool2d(x, kernel_size=k), expected, rtol=1e-13, atol=1e-13)
    assert avg_pool2d(x.astype(np.float32), kernel_size=k).dtype == np.float32
    check_gradients(lambda x: anp.sum(anp.sin(avg_pool2d(x, kernel_size=k))), x, mode="elementwise")
    check_grads(lambda x: anp.sin(avg_pool2d(x, kernel_size=k)), modes=["fwd", "rev"], order=2)(x)


def block_diagonal(w, groups):
    """A grouped conv's weight (O, C/groups, k, k) as the dense weight (O, C, k, k) it stands for:
    zeros outside each output's group (an independent way to compute a grouped conv)."""
    O, per_group = w.shape[:2]
    dense = np.zeros((O, per_group * groups) + w.shape[2:])
    for o in range(O):
        g = o // (O // groups)
        dense[o, g * per_group : (g + 1) * per_group] = w[o]
    return dense


@pytest.mark.parametrize("form", ["fast", "reference"])
@settings(max_examples=10, deadline=None)
@given(
    st.sampled_from([(1, 1), (1, 2), (2, 4), (4, 2), (4, 1)]), st.integers(1, 2), st.integers(1, 2), st.integers(0, 99)
)
def test_basis_conv_of_a_grouped_unique_beside_a_grouped_shared_basis(form, groups, u_per_group, s_per_group, seed):
    """[U; S] ∗ x = concat(U ∗ x, S ∗ x), U and S in different groups (ResNeXt50_SingleShared),
    against dense convs of the block-diagonal weights; gradients by finite differences and to
    second order (both conv forms)."""
    unique_groups, shared_groups = groups
    rng = np.random.default_rng(seed)
    C = 4
    x = rng.standard_normal((2, C, 5, 5))
    U = rng.standard_normal((u_per_group * unique_groups, C // unique_groups, 3, 3))
    S = rng.standard_normal((s_per_group * shared_groups, C // shared_groups, 3, 3))
    with reference_mode(form == "reference"):
        y = basis_conv(x, U, S, padding=1, unique_groups=unique_groups, shared_groups=shared_groups)
        with reference_mode():  # the expected value: dense convs in the textbook form
            expected = np.concatenate(
                [
                    conv2d(x, block_diagonal(U, unique_groups), padding=1),
                    conv2d(x, block_diagonal(S, shared_groups), padding=1),
                ],
                axis=1,
            )
        np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)

        def f(x, U, S):
            return anp.tanh(
                basis_conv(x, U, S, stride=2, padding=1, unique_groups=unique_groups, shared_groups=shared_groups)
            )

        check_gradients(lambda x, U, S: anp.sum(f(x, U, S) ** 2), x, U, S)
        check_grads(f, modes=["fwd", "rev"], order=2)(x, U, S)


def bn_tree(rng, channels):
    return {"weight": rng.uniform(0.5, 1.5, channels), "bias": 0.1 * rng.standard_normal(channels)}


def small_dense_layer(rng, c_in, inner, growth, shared=0, unique=0):
    """A dense layer's trees at toy widths: BottleNeck (``shared=0``) or BottleNeck_SingleShared."""
    conv = lambda *shape: rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))  # noqa: E731
    if not shared:
        params = {
            "residual_function": {
                "0": bn_tree(rng, c_in),
                "2": {"weight": conv(inner, c_in, 1, 1)},
                "3": bn_tree(rng, inner),
                "5": {"weight": conv(growth, inner, 3, 3)},
            }
        }
        state = {
            "residual_function": {"0": batch_norm_state(c_in, np.float64), "3": batch_norm_state(inner, np.float64)}
        }
        return params, state
    rank = shared + unique
    params = {
        "shared_basis": {"weight": conv(shared, inner, 3, 3)},
        "bn0": bn_tree(rng, c_in),
        "conv1": {"weight": conv(inner, c_in, 1, 1)},
        "bn1": bn_tree(rng, inner),
        "basis_conv2": {"weight": conv(unique, inner, 3, 3)},
        "basis_bn2": bn_tree(rng, rank),
        "coeff_conv2": {"weight": conv(growth, rank, 1, 1)},
    }
    state = {name: batch_norm_state(c, np.float64) for name, c in (("bn0", c_in), ("bn1", inner), ("basis_bn2", rank))}
    return params, state


@pytest.mark.parametrize("form", ["fast", "reference"])
@pytest.mark.parametrize("shared", [0, 2], ids=["BottleNeck", "BottleNeck_SingleShared"])
def test_a_dense_layer_concatenates_its_new_maps_after_the_ones_it_saw(form, shared):
    """The output starts with x unchanged and adds ``growth`` maps; in eval mode those maps are
    BN → ReLU → conv (pre-activation), computed here from the layer's equation in NumPy; the
    gradients pass finite differences and check_grads to second order (training-mode BN)."""
    rng = np.random.default_rng(4)
    params, state = small_dense_layer(rng, c_in=3, inner=4, growth=2, shared=shared, unique=1)
    x = rng.standard_normal((2, 3, 4, 4))
    layer = dense_layer if not shared else dense_basis_layer
    with reference_mode(form == "reference"):
        y, _ = layer(x, params, state, False)
        assert y.shape == (2, 5, 4, 4) and np.array_equal(y[:, :3], x)

        def bn_relu(v, p):  # eval mode with fresh statistics: weight·v/√(1 + ε) + bias, then ReLU
            return np.maximum(
                v * (p["weight"] / np.sqrt(1 + 1e-5))[None, :, None, None] + p["bias"][None, :, None, None], 0
            )

        if not shared:
            fn = params["residual_function"]
            inner = np.einsum("oc,nchw->nohw", fn["2"]["weight"][:, :, 0, 0], bn_relu(x, fn["0"]))
            with reference_mode():
                new = conv2d(bn_relu(inner, fn["3"]), fn["5"]["weight"], padding=1)
            np.testing.assert_allclose(y[:, 3:], new, rtol=1e-12, atol=1e-12)

        def f(x, params):
            return anp.tanh(layer(x, params, state, True)[0])

        check_gradients(lambda x, params: anp.sum(f(x, params) ** 2), x, params, mode="leafwise")
        check_grads(f, modes=["rev"], order=2)(x, params)


@pytest.mark.parametrize("form", ["fast", "reference"])
def test_a_transition_is_bn_conv_and_2x2_average_pool_without_relu(form):
    rng = np.random.default_rng(5)
    params = {"0": bn_tree(rng, 4), "1": {"weight": rng.standard_normal((2, 4, 1, 1))}}
    state = {"0": batch_norm_state(4, np.float64)}
    x = rng.standard_normal((2, 4, 5, 5))
    with reference_mode(form == "reference"):
        y, _ = transition(x, params, state, False)
        normalised = (
            x * (params["0"]["weight"] / np.sqrt(1 + 1e-5))[None, :, None, None]
            + params["0"]["bias"][None, :, None, None]
        )
        squeezed = np.einsum("oc,nchw->nohw", params["1"]["weight"][:, :, 0, 0], normalised)[:, :, :4, :4]
        np.testing.assert_allclose(y, squeezed.reshape(2, 2, 2, 2, 2, 2).mean(axis=(3, 5)), rtol=1e-12, atol=1e-12)
        assert (y < 0).any(), "no ReLU: negative values pass"
        f = lambda x, params: anp.tanh(transition(x, params, state, True)[0])  # noqa: E731
        check_gradients(lambda x, params: anp.sum(f(x, params) ** 2), x, params, mode="leafwise")
        check_grads(f, modes=["fwd", "rev"], order=2)(x, params)


@pytest.mark.parametrize("form", ["fast", "reference"])
def test_a_resnext_basis_block_with_grouped_bases_passes_gradient_checks(form):
    """BottleNeck_SingleShared at toy widths: width 8, U = 2 filters in 2 groups beside S = 4 in 4
    groups, 4 output channels (= its input: the identity skip)."""
    rng = np.random.default_rng(6)
    conv = lambda *shape: rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))  # noqa: E731
    params = {
        "shared_basis": {"weight": conv(4, 2, 3, 3)},
        "conv1": {"weight": conv(8, 4, 1, 1)},
        "bn1": bn_tree(rng, 8),
        "basis_conv2": {"weight": conv(2, 4, 3, 3)},
        "bn2": bn_tree(rng, 6),
        "conv3": {"weight": conv(4, 6, 1, 1)},
        "bn3": bn_tree(rng, 4),
    }
    state = {name: batch_norm_state(c, np.float64) for name, c in (("bn1", 8), ("bn2", 6), ("bn3", 4))}
    x = rng.standard_normal((2, 4, 4, 4))
    with reference_mode(form == "reference"):
        f = lambda x, params: anp.tanh(resnext_basis_block(x, params, state, True)[0])  # noqa: E731
        check_gradients(lambda x, params: anp.sum(f(x, params) ** 2), x, params, mode="leafwise")
        check_grads(f, modes=["rev"], order=2)(x, params)


@pytest.mark.parametrize(
    "spec", ["cifar100-densenet121-single-s16u1", "cifar100-resnext50-single-s64u4", "cifar100-mobilenetv2-shared++"]
)
def test_the_cifar100_families_initialise_as_the_authors_classes(spec):
    """PyTorch's defaults (uniform ±1/√fan_in, fan_in = C_in/groups·kh·kw) for every conv and linear
    weight; ResNext50_32x4d_SingleShared alone re-initialises its shared bases orthogonally."""
    params = flatten(create_model(spec).init(seed=0, dtype=np.float64)[0])
    orthogonal = spec.startswith("cifar100-resnext50")
    for name, w in params.items():
        if not name.endswith("weight") or w.ndim < 2:
            continue
        rows = w.reshape(w.shape[0], -1)
        if orthogonal and name.startswith("shared_basis"):
            np.testing.assert_allclose(rows @ rows.T, np.eye(len(rows)), atol=1e-12, err_msg=name)
            continue
        bound = 1 / np.sqrt(rows.shape[1])
        assert np.all(np.abs(w) <= bound) and (w.size < 64 or np.abs(w).max() > 0.8 * bound), name
