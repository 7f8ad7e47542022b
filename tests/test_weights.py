"""Weight files: the authors' state_dict layout, exact round trips, validation, atomic saving,
and the authors' released ResNet56-S16U1* checkpoint (logits and accuracy on the shared data).

The expected key lists are re-derived from the authors' ``models/cifar10/resnet.py`` here
(:func:`authors_state_dict_keys`), independently of ``minibasis.weights``.
"""

import os
import re
import time

import numpy as np
import pytest

from minibasis.data import CIFAR10, load_cifar, normalize
from minibasis.models import create_model
from minibasis.tree import flatten, unflatten
from minibasis.weights import from_state_dict, load_weights, save_weights, state_dict_layout, to_state_dict

VARIANT_SPECS = [
    "resnet20",
    "resnet20-s16u1",
    "resnet20-single-s8u1",
    "resnet20-single-s4u0",
    "resnet20-s16u0",
    "resnet20-s0u1",
    "resnet32-s4u2",
]


from support.authors_layout import authors_state_dict_keys  # noqa: E402
from support.run_files import assert_trees_equal  # noqa: E402


def random_trees(model, seed, dtype=np.float32):
    """Params and state with every value random (so a swap or a dropped array shows)."""
    rng = np.random.default_rng(seed)
    params, state = model.init(seed=seed, dtype=dtype)
    params = unflatten({k: rng.standard_normal(v.shape).astype(dtype) for k, v in flatten(params).items()})
    flat_state = {}
    for k, v in flatten(state).items():
        if k.endswith("num_batches_tracked"):
            flat_state[k] = np.int64(rng.integers(0, 10**6))
        else:
            flat_state[k] = rng.uniform(0.1, 2.0, v.shape).astype(dtype)
    return params, unflatten(flat_state)


# ---- 1. exact round trip, the authors' layout ---------------------------------------------


@pytest.mark.parametrize("spec", VARIANT_SPECS)
def test_save_load_round_trip_is_exact(tmp_path, spec):
    model = create_model(spec)
    params, state = random_trees(model, seed=1)
    path = save_weights(tmp_path / "w.npz", model, params, state)
    loaded_params, loaded_state = load_weights(path, model)
    assert_trees_equal(loaded_params, params)
    assert_trees_equal(loaded_state, state)
    with np.load(path, allow_pickle=False) as f:
        keys = list(f.files)
        assert keys == authors_state_dict_keys(model.spec.depth, model.spec.variant, model.spec.unique_rank)
        assert keys == [k for k, *_ in state_dict_layout(model)]
        for key in keys:
            if key.endswith("num_batches_tracked"):
                assert f[key].dtype == np.int64 and f[key].shape == (), key
            else:
                assert f[key].dtype == np.float32, key
        flat_params, flat_state = flatten(params), flatten(state)
        for key in keys:
            block_copy = re.fullmatch(r"layer(\d)\.\d+\.shared_basis(_[12])?\.weight", key)
            if block_copy:
                owner = f"shared_basis_{block_copy.group(1)}{block_copy.group(2) or ''}.weight"
                assert np.array_equal(f[key], f[owner]), key
                assert np.array_equal(f[key], flat_params[owner]), key
            else:
                assert np.array_equal(f[key], flat_params.get(key, flat_state.get(key))), key


def test_shared_copies_are_in_the_file(tmp_path):
    model = create_model("resnet20-s16u1")
    params, state = random_trees(model, seed=2)
    path = save_weights(tmp_path / "w.npz", model, params, state)
    with np.load(path) as f:
        for g in (1, 2, 3):
            for b in (1, 2):
                for i in (1, 2):
                    assert np.array_equal(f[f"layer{g}.{b}.shared_basis_{i}.weight"], f[f"shared_basis_{g}_{i}.weight"])
        assert np.array_equal(f["layer1.1.shared_basis_1.weight"], params["shared_basis_1_1"]["weight"])
        assert not np.array_equal(f["layer1.1.shared_basis_1.weight"], f["layer1.1.shared_basis_2.weight"])
        assert "layer1.0.shared_basis_1.weight" not in f.files  # plain first blocks use no basis
        assert len(f.files) == len(authors_state_dict_keys(20, "double"))


def test_float64_round_trip(tmp_path):
    model = create_model("resnet14-single-s2u1")
    params, state = random_trees(model, seed=3, dtype=np.float64)
    path = save_weights(tmp_path / "sub" / "w64.npz", model, params, state)  # folders are created
    loaded_params, loaded_state = load_weights(path, model)
    assert_trees_equal(loaded_params, params)
    assert_trees_equal(loaded_state, state)


def test_to_and_from_state_dict_round_trip():
    model = create_model("resnet20-s8u0")
    params, state = random_trees(model, seed=4)
    sd = to_state_dict(model, params, state)
    assert list(sd) == authors_state_dict_keys(20, "shared_only", 0)
    p, s = from_state_dict(model, sd)
    assert_trees_equal(p, params)
    assert_trees_equal(s, state)


def test_missing_file_is_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.npz"):
        load_weights(tmp_path / "nothing.npz", create_model("resnet20"))


# ---- 2. validation ----------------------------------------------------------------------


@pytest.fixture
def good_state_dict():
    model = create_model("resnet20-s16u1")
    params, state = random_trees(model, seed=5)
    return model, to_state_dict(model, params, state)


def test_missing_key_is_named(good_state_dict):
    model, sd = good_state_dict
    del sd["layer2.1.coeff_conv1.weight"]
    with pytest.raises(ValueError, match=re.escape("'layer2.1.coeff_conv1.weight'")) as info:
        from_state_dict(model, sd)
    assert "missing" in str(info.value)


def test_missing_block_copy_of_a_shared_basis_is_named(good_state_dict):
    model, sd = good_state_dict
    del sd["layer3.2.shared_basis_2.weight"]
    with pytest.raises(ValueError, match=re.escape("'layer3.2.shared_basis_2.weight'")):
        from_state_dict(model, sd)


def test_extra_key_is_named(good_state_dict):
    model, sd = good_state_dict
    sd["layer1.0.shortcut.0.weight"] = np.zeros((16, 16, 1, 1), np.float32)
    with pytest.raises(ValueError, match=re.escape("'layer1.0.shortcut.0.weight'")) as info:
        from_state_dict(model, sd)
    assert "unexpected" in str(info.value)


def test_wrong_shape_is_named(good_state_dict):
    model, sd = good_state_dict
    sd["fc.weight"] = np.zeros((100, 64), np.float32)
    with pytest.raises(ValueError, match=re.escape("'fc.weight'")) as info:
        from_state_dict(model, sd)
    assert "(10, 64)" in str(info.value) and "(100, 64)" in str(info.value)


def test_unequal_shared_copies_are_named(good_state_dict):
    model, sd = good_state_dict
    sd["layer2.2.shared_basis_1.weight"] = sd["layer2.2.shared_basis_1.weight"].copy()
    sd["layer2.2.shared_basis_1.weight"][0, 0, 0, 0] += 1e-3
    with pytest.raises(ValueError, match=re.escape("'layer2.2.shared_basis_1.weight'")) as info:
        from_state_dict(model, sd)
    assert "shared_basis_2_1" in str(info.value)


def test_all_problems_are_named_in_one_error(good_state_dict, tmp_path):
    model, sd = good_state_dict
    del sd["layer1.2.bn2.running_var"]
    sd["extra.weight"] = np.zeros(3, np.float32)
    sd["layer3.0.conv1.weight"] = np.zeros((64, 32, 1, 1), np.float32)
    sd["layer1.1.shared_basis_2.weight"] = sd["layer1.1.shared_basis_2.weight"] + 1
    path = tmp_path / "bad.npz"
    np.savez(path, **sd)
    for attempt in (lambda: from_state_dict(model, sd), lambda: load_weights(path, model)):
        with pytest.raises(ValueError) as info:
            attempt()
        message = str(info.value)
        for key in (
            "layer1.2.bn2.running_var",
            "extra.weight",
            "layer3.0.conv1.weight",
            "layer1.1.shared_basis_2.weight",
        ):
            assert repr(key) in message, key


def test_a_file_of_another_variant_is_refused(tmp_path):
    single = create_model("resnet20-single-s16u1")
    path = save_weights(tmp_path / "single.npz", single, *random_trees(single, seed=6))
    with pytest.raises(ValueError, match=re.escape("'shared_basis_1_1.weight'")):
        load_weights(path, create_model("resnet20-s16u1"))


# ---- 3. atomic saving --------------------------------------------------------------------------


@pytest.mark.parametrize("failing", ["savez", "replace"])
def test_a_failed_save_leaves_the_old_file_and_no_temp_file(tmp_path, monkeypatch, failing):
    model = create_model("resnet14-s2u1")
    path = tmp_path / "w.npz"
    save_weights(path, model, *random_trees(model, seed=7))
    before = path.read_bytes()

    class Crash(RuntimeError):
        pass

    if failing == "savez":
        real_savez = np.savez

        def savez(file, *args, **kwds):
            real_savez(file, *args, **kwds)  # half the work is done, then the crash
            raise Crash("disk full")

        monkeypatch.setattr(np, "savez", savez)
    else:

        def replace(src, dst):
            raise Crash("power cut")

        monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(Crash):
        save_weights(path, model, *random_trees(model, seed=8))
    with pytest.raises(Crash):
        save_weights(tmp_path / "new.npz", model, *random_trees(model, seed=8))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.npz"]
    # the old file still loads, and a later save succeeds
    assert_trees_equal(load_weights(path, model)[0], random_trees(model, seed=7)[0])
    save_weights(path, model, *random_trees(model, seed=8))
    assert_trees_equal(load_weights(path, model)[0], random_trees(model, seed=8)[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.npz"]


# ---- 4. the authors' released checkpoint --------------------------------------------------------

# The paths come from conftest's fixtures ``official_weights`` and ``official_checkpoint``,
# which skip the test when the shared data is absent.
EVAL_BATCH = 500


@pytest.fixture(scope="module")
def official(official_checkpoint):
    """(model, params, state, test images uint8, test labels, memo of logits), once per module."""
    model = create_model("resnet56-s16u1")
    params, state = load_weights(official_checkpoint.weights, model)
    data = load_cifar(official_checkpoint.archive)
    return model, params, state, data.test_images, data.test_labels, []


def official_logits(official, stop):
    """Eval-mode logits of the first ``stop`` test images, in batches of 500 (memoised)."""
    model, params, state, images, _, done = official
    while len(done) * EVAL_BATCH < stop:
        start = len(done) * EVAL_BATCH
        x = normalize(images[start : start + EVAL_BATCH], CIFAR10.mean, CIFAR10.std)
        logits, _ = model.apply(params, state, x, train=False)
        assert logits.dtype == np.float32 and logits.shape == (len(x), 10)
        done.append(logits)
    return np.concatenate(done)[:stop]


def test_official_checkpoint_has_the_authors_layout(official_weights):
    model = create_model("resnet56-s16u1")
    with np.load(official_weights, allow_pickle=False) as f:
        keys = list(f.files)
        assert len(keys) == 674
        assert keys == authors_state_dict_keys(56, "double")
        assert keys == [k for k, *_ in state_dict_layout(model)]
    params, state = load_weights(official_weights, model)
    assert sum(v.size for v in flatten(params).values()) == 319_226
    assert all(v.dtype == np.float32 for v in flatten(params).values())


def test_official_checkpoint_logits_match_pytorch(official_checkpoint, official):
    reference = np.load(official_checkpoint.logits)
    labels = official[4]
    assert reference["logits"].shape == (1000, 10)
    assert np.array_equal(reference["labels"], labels[:1000])
    logits = official_logits(official, 1000)
    np.testing.assert_allclose(logits, reference["logits"], rtol=0, atol=1e-4)
    assert np.array_equal(logits.argmax(1), reference["logits"].argmax(1))


@pytest.mark.slow
def test_official_checkpoint_accuracy_is_82_68_percent(official):
    """All 10,000 (JPEG re-encoded) test images, eval mode, in batches of 500."""
    labels = official[4]
    start = time.perf_counter()
    logits = official_logits(official, len(labels))
    assert logits.shape == (10_000, 10)
    correct = int(np.sum(logits.argmax(1) == labels))
    assert correct == 8268, f"{correct} of 10,000 correct ({time.perf_counter() - start:.0f} s)"


@pytest.mark.parametrize("change", ["nan", "float16", "other model"])
def test_save_weights_refuses_what_load_weights_would_refuse_and_writes_nothing(tmp_path, change):
    """What load_weights would refuse (NaN parameters, init(dtype=float16)'s, another model's) is
    refused by save_weights too, and no file is written."""
    model = create_model("resnet8")
    params, state = model.init(0)
    if change == "nan":
        params["fc"]["bias"] = np.full(10, np.nan, np.float32)
    elif change == "float16":
        params = {k: v for k, v in params.items()}
        params["fc"] = {k: v.astype(np.float16) for k, v in params["fc"].items()}
    else:
        params, state = create_model("resnet14-s2u1").init(0)
    with pytest.raises(ValueError):
        save_weights(tmp_path / "w.npz", model, params, state)
    assert list(tmp_path.iterdir()) == []
