"""The authors' whole zoo: every model against what the authors' own PyTorch classes compute
(``../shared/data/golden``), the exact counts, state_dict layouts, initialisation, specs.

Expected values come from the golden files (made by the authors' classes in PyTorch), from the
table of counts below, measured from those classes, or from independent computations here.
"""

import autograd
import numpy as np
import pytest
from scipy import stats

from minibasis.layers import cross_entropy
from minibasis.models import create_model, info_table, parse_spec
from minibasis.tree import flatten, unflatten
from minibasis.weights import from_state_dict, load_weights, save_weights, state_dict_layout
from support.golden import SPECS, golden_file, golden_state_dict

pytestmark = pytest.mark.reference  # also run with MINIBASIS_REFERENCE=1 (see README)

LAMBDA = 10.0  # the golden files' loss_total = loss_ce + 10·R

# spec -> (params, MACs of one image at 32 px (CIFAR) or 224 px (ImageNet)), measured from the
# authors' classes (the golden files hold the same numbers for their models).
COUNTS = {
    "cifar100-resnet34": (21_328_292, 1_159_448_576),
    "cifar100-resnet34-single-s32u1": (7_726_676, 772_524_032),
    "cifar100-resnet34-single-s16u1": (6_485_844, 520_865_792),
    "cifar100-resnet34-s32u0": (7_442_340, 756_795_392),
    "cifar100-resnet34-s0u1": (5_245_012, 269_207_552),
    "cifar100-densenet121": (7_048_548, 888_442_880),
    "cifar100-densenet121-single-s16u1": (5_084_504, 704_212_992),
    "cifar100-resnext50": (23_177_124, 1_344_151_552),
    "cifar100-resnext50-single-s64u4": (19_333_380, 1_179_000_832),
    "cifar100-mobilenetv2": (2_428_004, 67_356_736),
    "cifar100-mobilenetv2-shared": (2_163_812, 67_356_736),
    "cifar100-mobilenetv2-shared++": (1_899_620, 67_356_736),
    "imagenet-resnet34": (21_797_672, 3_663_761_408),
    "imagenet-resnet34-s48u1": (11_786_968, 3_249_508_352),
    "imagenet-resnet34-single-s48u1": (9_436_888, 3_249_508_352),
    "imagenet-resnet50": (25_557_032, 4_089_184_256),
    "imagenet-resnet50-shared": (20_506_664, 4_089_184_256),
    "imagenet-resnet50-shared++": (18_262_056, 4_089_184_256),
    "imagenet-resnet101-shared": (29_471_784, 7_801_405_440),
    "imagenet-resnet101-shared++": (22_770_728, 7_801_405_440),
    "imagenet-mobilenetv2": (3_507_272, 313_619_328),
    "imagenet-mobilenetv2-shared": (3_243_080, 313_619_328),
    "imagenet-mobilenetv2-shared++": (2_978_905, 313_621_120),
}


@pytest.mark.parametrize("spec, counts", COUNTS.items(), ids=list(COUNTS))
def test_counts_are_the_authors(spec, counts):
    model = create_model(spec)
    assert (model.count_params(), model.count_macs()) == counts
    assert str(counts[0]) in info_table(spec).replace(",", "")


def test_info_lists_every_family_with_its_counts():
    table = info_table().replace(",", "")
    for spec, (params, macs) in COUNTS.items():
        line = next((line for line in table.splitlines() if line.split()[:1] == [spec]), None)
        if line is not None:
            assert str(params) in line and str(macs) in line, line
    families = (
        "resnet56-s16u1",
        "cifar100-resnet34-single-s32u1",
        "imagenet-resnet50-shared++",
        "imagenet-mobilenetv2-shared++",
        "cifar100-densenet121-single-s16u1",
        "cifar100-resnext50-single-s64u4",
        "cifar100-mobilenetv2-shared++",
    )
    for family in families:
        assert family in table


# ---- against the authors' own classes ----------------------------------------------------------


def relative(a, b):
    return np.max(np.abs(np.asarray(a) - b)) / max(np.max(np.abs(b)), 1e-300)


@pytest.mark.parametrize("stem", SPECS, ids=list(SPECS))
def test_the_authors_state_dict_layout_and_counts(stem):
    f = golden_file(stem)
    model = create_model(SPECS[stem], int(f["num_classes"]))
    layout = state_dict_layout(model)
    assert [key for key, *_ in layout] == f["keys"].tolist()  # the same keys in the same order
    shapes = [tuple(int(d) for d in row if d >= 0) for row in f["shapes"]]
    assert [tuple(shape) for _, shape, *_ in layout] == shapes
    owner_of = {key: source.rsplit(".", 1)[0] for key, _, where, source in layout if where == "params"}
    for key, owner in zip(f["keys"].tolist(), f["owners"].tolist()):
        if key in owner_of:  # a shared conv's copies point at the module that owns the array
            assert owner_of[key] == owner.rsplit(".", 1)[0], key
    assert model.count_params() == int(f["num_params"])
    assert model.count_macs(int(f["input_size"])) == int(f["macs_at_input"])
    assert model.count_macs() == int(f["macs_standard"])
    assert (model.regulariser or "none") == str(f["R_function"])


def golden_outputs(model, params, state, x, labels):
    """What the golden files store, computed by minibasis."""
    logits_eval, _ = model.apply(params, state, x, train=False)
    logits_train, after = model.apply(params, state, x, train=True)  # rng=None: dropout off, as the files

    def loss_total(params):
        logits, _ = model.apply(params, state, x, train=True)
        return cross_entropy(logits, labels) + LAMBDA * model.orthogonality(params)

    grads = flatten(autograd.grad(loss_total)(params))
    return (
        logits_eval,
        logits_train,
        cross_entropy(logits_train, labels),
        model.orthogonality(params),
        grads,
        flatten(after),
    )


@pytest.mark.parametrize("stem", SPECS, ids=list(SPECS))
def test_outputs_gradients_and_statistics_equal_the_authors_pytorch_in_float64(stem):
    """Every model of the zoo, with the golden README's weights and input: eval and train logits,
    cross-entropy, R, the loss, every gradient (norm, sum, 8 samples) and the BN statistics after
    the step, to the README's tolerances."""
    f = golden_file(stem)
    model = create_model(SPECS[stem], int(f["num_classes"]))
    params, state = from_state_dict(model, golden_state_dict(f))
    logits_eval, logits_train, ce, R, grads, after = golden_outputs(model, params, state, f["x"], f["labels"])
    assert relative(logits_eval, f["logits_eval"]) <= 1e-10
    assert relative(logits_train, f["logits_train"]) <= 1e-10
    assert abs(ce - f["loss_ce"]) <= 1e-10 * abs(f["loss_ce"])
    assert abs(R - f["R"]) <= 1e-10 * abs(f["R"]) and (R == 0) == (str(f["R_function"]) == "none")
    assert abs(ce + LAMBDA * R - f["loss_total"]) <= 1e-10 * abs(f["loss_total"])
    largest = max(float(f[f"grad_norm:{key}"]) for key in grads)
    assert {k[len("grad_norm:") :] for k in f.files if k.startswith("grad_norm:")} == set(grads)
    for key, g in grads.items():
        scale = max(float(f[f"grad_norm:{key}"]), 1e-6 * largest)
        assert abs(np.linalg.norm(g) - f[f"grad_norm:{key}"]) <= 1e-8 * scale, key
        assert abs(g.sum() - f[f"grad_sum:{key}"]) <= 1e-8 * scale, key
        assert np.max(np.abs(g.reshape(-1)[f[f"grad_index:{key}"]] - f[f"grad_sample:{key}"])) <= 1e-8 * scale, key
    for key in (k for k in f.files if k.startswith("after:")):
        assert relative(after[key[len("after:") :]], f[key]) <= 1e-10, key


# ---- weight files ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec", ["cifar100-resnet34-single-s32u1", "imagenet-resnet50-shared++", "imagenet-mobilenetv2-shared++"]
)
def test_weight_files_round_trip_with_the_authors_keys(tmp_path, spec):
    model = create_model(spec)
    params, state = model.init(seed=1)
    rng = np.random.default_rng(0)
    state = unflatten(
        {
            k: (v + rng.uniform(0, 1, v.shape).astype(v.dtype)) if v.dtype.kind == "f" else v + 3
            for k, v in flatten(state).items()
        }
    )
    path = save_weights(tmp_path / "w.npz", model, params, state)
    with np.load(path) as f:
        keys = list(f.files)
        copies = [
            key
            for key, _, where, source in state_dict_layout(model)
            if where == "params" and not source.startswith(key.rsplit(".", 1)[0])
        ]
        assert copies and all(
            np.array_equal(f[key], f[source]) for key, _, _, source in state_dict_layout(model) if key in copies
        )
    assert keys == [key for key, *_ in state_dict_layout(model)]
    loaded_params, loaded_state = load_weights(path, model)
    for a, b in ((params, loaded_params), (state, loaded_state)):
        fa, fb = flatten(a), flatten(b)
        assert fa.keys() == fb.keys() and all(np.array_equal(fa[k], fb[k]) and fa[k].dtype == fb[k].dtype for k in fa)


def test_a_block_copy_of_a_shared_conv_that_differs_is_refused(tmp_path):
    model = create_model("imagenet-mobilenetv2-shared")
    path = save_weights(tmp_path / "w.npz", model, *model.init(seed=0))
    arrays = dict(np.load(path))
    arrays["stage4.2.shared_basis1.weight"] = arrays["stage4.2.shared_basis1.weight"] + 1
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(
        ValueError,
        match=r"bad.npz: .*'stage4.2.shared_basis1.weight': expected a copy identical to 'shared_basis_2.weight'",
    ):
        load_weights(tmp_path / "bad.npz", model)


# ---- initialisation ----------------------------------------------------------------------------


def normal_fit(values, std):
    return stats.kstest(values.ravel() / std, "norm").pvalue


@pytest.mark.parametrize("spec", ["imagenet-resnet50-shared++", "imagenet-resnet34-s48u1", "cifar100-resnet34-s32u0"])
def test_resnet_init_is_the_authors(spec):
    """Kaiming normal fan_out for every conv, BN 1/0, the shared convs orthogonal (jointly for
    ResNet34_DoubleShared's two bases, separately otherwise; tall 1×1s with orthonormal columns)."""
    model = create_model(spec)
    params, state = model.init(seed=0, dtype=np.float64)
    flat = flatten(params)
    shared = {name for name in flat if name.startswith("shared_basis")}
    for name, w in flat.items():
        if w.ndim == 4 and name not in shared and w.size >= 2000:
            assert normal_fit(w, np.sqrt(2 / (w.shape[0] * w.shape[2] * w.shape[3]))) > 1e-4, name
        if name.endswith("bn1.weight"):
            assert np.all(w == 1) and np.all(flat[name.replace("weight", "bias")] == 0)
    for name in shared:
        W = flat[name].reshape(flat[name].shape[0], -1)
        gram = W @ W.T if W.shape[0] <= W.shape[1] else W.T @ W
        np.testing.assert_allclose(gram, np.eye(len(gram)), atol=1e-12, err_msg=name)
    if model.spec.variant == "double":  # the two bases of a stage are orthogonal to each other too
        for g in (1, 2, 3, 4):
            cross = (
                flat[f"shared_basis_{g}_1.weight"].reshape(48 * 2 ** (g - 1), -1)
                @ flat[f"shared_basis_{g}_2.weight"].reshape(48 * 2 ** (g - 1), -1).T
            )
            np.testing.assert_allclose(cross, 0, atol=1e-12)
    assert all(np.all(v == 0) for k, v in flatten(state).items() if k.endswith("running_mean"))


def test_mobilenet_init_is_pytorchs_default():
    """The authors' MobileNetV2 classes keep PyTorch's defaults: conv and linear weights and biases
    uniform ±1/√fan_in (fan_in = C_in/groups·kh·kw), the shared convs too (no orthogonal init)."""
    params, _ = create_model("imagenet-mobilenetv2-shared").init(seed=0, dtype=np.float64)
    flat = flatten(params)
    for name in (
        "stage5.0.conv1.weight",
        "stage5.0.conv2.weight",
        "shared_basis_3.weight",
        "classifier.1.weight",
        "conv1.0.bias",
    ):
        w = flat[name]
        fan_in = {"conv1.0.bias": 320, "classifier.1.weight": 1280}.get(name, int(np.prod(w.shape[1:])))
        bound = 1 / np.sqrt(fan_in)
        assert np.all(np.abs(w) <= bound) and np.abs(w).max() > 0.95 * bound, name
        assert stats.kstest((w.ravel() + bound) / (2 * bound), "uniform").pvalue > 1e-4, name


# ---- the forward's options and checks ----------------------------------------------------------


def test_mobilenet_dropout_draws_from_the_rng_only_in_training():
    model = create_model("imagenet-mobilenetv2", num_classes=5)
    params, state = model.init(seed=0)
    x = np.random.default_rng(1).standard_normal((2, 3, 32, 32)).astype(np.float32)
    off, _ = model.apply(params, state, x, train=True)
    on1, _ = model.apply(params, state, x, train=True, rng=np.random.default_rng(7))
    on2, _ = model.apply(params, state, x, train=True, rng=np.random.default_rng(7))
    evaluated, _ = model.apply(params, state, x, train=False, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(on1, on2)
    assert not np.allclose(on1, off)
    np.testing.assert_array_equal(evaluated, model.apply(params, state, x, train=False)[0])


def test_apply_with_another_models_params_names_the_leaf():
    params, state = create_model("resnet20-s16u1").init(seed=0)
    with pytest.raises(
        ValueError, match=r"params: expected the leaves of resnet20-single-s16u1, among them 'shared_basis_1.weight'"
    ):
        create_model("resnet20-single-s16u1").apply(params, state, np.zeros((1, 3, 8, 8), np.float32), train=False)
    with pytest.raises(
        ValueError,
        match=r"params: expected only the leaves of resnet20, got an unexpected leaf 'shared_basis_1_1.weight'",
    ):
        p20, s20 = create_model("resnet20").init(seed=0)
        create_model("resnet20").apply(
            {**p20, **{k: v for k, v in params.items() if k.startswith("shared")}},
            s20,
            np.zeros((1, 3, 8, 8), np.float32),
            train=False,
        )


def test_a_float64_input_to_a_float32_model_says_how_to_cast():
    model = create_model("resnet20")
    params, state = model.init(seed=0)
    with pytest.raises(
        ValueError,
        match=r"x: expected dtype float32, that of the model's parameters \(conv1.weight\); cast "
        r".*x.astype\(numpy.float32\).*model.init\(seed, dtype=numpy.float64\), got float64",
    ):
        model.apply(params, state, np.zeros((1, 3, 8, 8)), train=False)


# ---- specs -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    list(COUNTS)
    + ["imagenet-resnet18", "cifar100-resnet18-single-s8u1", "imagenet-resnet18-s8u1", "imagenet-resnet101"],
)
def test_spec_names_round_trip(spec):
    assert parse_spec(spec).name == spec
    assert create_model(spec).spec.num_classes == (100 if spec.startswith("cifar100") else 1000)
