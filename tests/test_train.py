"""Tests of minibasis.train: resume, checkpoints, non-finite losses, evaluation, the log.

Training in pure NumPy is slow, so every run here uses a tiny archive in the official
CIFAR-10 format written to a temporary folder (40 training + 20 test images of random
pixels, 4 and 2 per class) and the smallest models (``resnet8``; ``resnet14-s2u1`` where the
shared bases, their orthogonality loss and their momentum must take part), with subsets of
10–20 images and batches of 10.
"""

import json
import math
import os
import re
import shutil
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest

import minibasis.train as T
from minibasis.data import DATASETS
from minibasis.models import create_model
from minibasis.tree import flatten, tree_map, unflatten

from cifar_files import write_cifar10_archive
from run_files import (assert_npz_identical, assert_trees_equal, logits_by_hand, loss_and_accuracy,
                       npz_arrays, read_log, without_timing)

ROOT = Path(__file__).resolve().parents[1]
LOG_KEYS = {"epoch", "train_loss", "train_acc", "test_loss", "test_acc", "orthogonality", "lr", "seconds"}


# ------------------------------------------------------------------ a tiny CIFAR-10 archive


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """cifar-10-python.tar.gz: 40 training and 20 test images (4 and 2 per class), seed 0."""
    return write_cifar10_archive(tmp_path_factory.mktemp("data"), train_per_class=4, test_per_class=2, seed=0)


# The configuration of the resume / checkpoint tests: shared bases (two per stage), λ = 10,
# augmentation on, 2 steps per epoch.
SHARED = T.TrainConfig(model="resnet14-s2u1", train_size=20, test_size=10, epochs=2, batch_size=10)
# The cheapest configuration: a plain ResNet8, 1 step per epoch.
TINY = T.TrainConfig(model="resnet8", train_size=10, test_size=10, epochs=1, batch_size=10)


def quiet_train(config, out, archive, **kwargs):
    return T.train(config, out, data_path=archive, quiet=True, print_fn=lambda *a: None, **kwargs)


def cli_args(config, out, archive):
    """`minibasis train` arguments that give exactly ``config``."""
    args = ["train", "--data", str(archive), "--out", str(out), "--quiet",
            "--model", config.model, "--dataset", config.dataset,
            "--train-size", str(config.train_size or 0), "--test-size", str(config.test_size or 0),
            "--epochs", str(config.epochs), "--batch-size", str(config.batch_size),
            "--lr", repr(config.lr), "--momentum", repr(config.momentum),
            "--weight-decay", repr(config.weight_decay), "--schedule", config.schedule,
            "--seed", str(config.seed)]
    args += ["--nesterov"] if config.nesterov else []
    args += [] if config.augment else ["--no-augment"]
    args += [] if config.lam is None else ["--lam", repr(config.lam)]
    return args


@pytest.fixture(scope="module")
def straight(archive, tmp_path_factory):
    """SHARED trained for its 2 epochs in one call: (run folder, returned records)."""
    out = tmp_path_factory.mktemp("straight")
    return out, quiet_train(SHARED, out, archive)


@pytest.fixture(scope="module")
def first_epoch(archive, tmp_path_factory):
    """SHARED stopped after its first epoch (stop_after=1), left untouched: copy before use."""
    out = tmp_path_factory.mktemp("first_epoch")
    records = quiet_train(SHARED, out, archive, stop_after=1)
    assert [r["epoch"] for r in records] == [1]
    return out


def copy_run(run, tmp_path):
    return Path(shutil.copytree(run, tmp_path / "run"))


# --------------------------------------------------------------------------------- resume


def test_resume_in_new_process_is_bit_identical(archive, straight, first_epoch, tmp_path):
    straight_run, straight_records = straight
    run = copy_run(first_epoch, tmp_path)
    assert T.load_checkpoint(run / "checkpoint.npz", create_model(SHARED.model))[3] == 1

    # The remaining epoch in a fresh interpreter, through the command line.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, "-m", "minibasis.cli", *cli_args(SHARED, run, archive), "--resume"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "epoch   2/2" in proc.stdout

    assert_npz_identical(straight_run / "weights.npz", run / "weights.npz")
    assert_npz_identical(straight_run / "checkpoint.npz", run / "checkpoint.npz")
    ckpt = npz_arrays(run / "checkpoint.npz")
    assert int(ckpt["epoch"]) == 2
    assert any(k.startswith("momentum/") for k in ckpt) and "rng_state" in ckpt
    assert any(k.startswith("model/shared_basis_") for k in ckpt)  # the shared bases took part

    resumed = read_log(run)
    assert [r["epoch"] for r in resumed] == [1, 2]
    assert without_timing(resumed) == without_timing(read_log(straight_run))
    assert without_timing(resumed) == without_timing(straight_records)
    assert json.loads((run / "config.json").read_text()) == asdict(SHARED)


def test_resume_in_process_and_finished_run(archive, straight, first_epoch, tmp_path):
    """train(resume=True) in this process gives the same bits; resuming a finished run trains nothing."""
    straight_run, _ = straight
    run = copy_run(first_epoch, tmp_path)
    records = quiet_train(SHARED, run, archive, resume=True)
    assert without_timing(records) == without_timing(read_log(straight_run))
    assert_npz_identical(straight_run / "checkpoint.npz", run / "checkpoint.npz")

    before = (run / "checkpoint.npz").read_bytes()
    again = quiet_train(SHARED, run, archive, resume=True)
    assert again == records  # the log read back, nothing retrained
    assert (run / "checkpoint.npz").read_bytes() == before


@pytest.mark.parametrize("change, field", [
    ({"epochs": 3}, "epochs"),
    ({"lr": 0.05}, "lr"),
    ({"seed": 1}, "seed"),
    ({"lam": 1.0}, "lam"),
    ({"augment": False}, "augment"),
])
def test_resume_with_other_config_is_refused(archive, first_epoch, tmp_path, change, field):
    run = copy_run(first_epoch, tmp_path)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    with pytest.raises(ValueError, match=field) as info:
        quiet_train(replace(SHARED, **change), run, archive, resume=True)
    others = {f for f in asdict(SHARED) if f not in change}
    assert not any(f"'{f}'" in str(info.value) for f in others), str(info.value)  # only the differing field
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before  # nothing touched


def test_resume_without_checkpoint(archive, tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint"):
        quiet_train(TINY, tmp_path / "empty", archive, resume=True)


def test_a_fresh_run_never_overwrites_an_existing_run(archive, first_epoch, tmp_path):
    run = copy_run(first_epoch, tmp_path)
    before = (run / "checkpoint.npz").read_bytes()
    with pytest.raises(FileExistsError, match="resume"):
        quiet_train(TINY, run, archive)
    assert (run / "checkpoint.npz").read_bytes() == before


# ----------------------------------------------------------------------- non-finite loss


def nan_cross_entropy_from(monkeypatch, call):
    """Make minibasis.train.cross_entropy return NaN from its ``call``-th call on (1-based)."""
    original, calls = T.cross_entropy, []

    def patched(logits, labels):
        calls.append(None)
        value = original(logits, labels)
        return value * np.nan if len(calls) >= call else value

    monkeypatch.setattr(T, "cross_entropy", patched)
    return calls


def test_non_finite_loss_stops_and_keeps_last_checkpoint(archive, first_epoch, tmp_path, monkeypatch):
    # SHARED: per epoch 2 training steps, then 1 evaluation batch, so the 5th call is epoch 2, step 2.
    nan_cross_entropy_from(monkeypatch, 5)
    run = tmp_path / "run"
    with pytest.raises(T.NonFiniteLoss) as info:
        quiet_train(SHARED, run, archive)
    message = str(info.value)
    assert "epoch 2" in message and "step 2" in message, message
    assert "checkpoint" in message

    params, state, momentum, epoch, rng, config = T.load_checkpoint(run / "checkpoint.npz", create_model(SHARED.model))
    assert epoch == 1 and config == asdict(SHARED) and momentum is not None
    assert_npz_identical(run / "checkpoint.npz", first_epoch / "checkpoint.npz")  # epoch 1's, untouched
    assert_npz_identical(run / "weights.npz", first_epoch / "weights.npz")
    assert [r["epoch"] for r in read_log(run)] == [1]
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]

    # The run can be resumed from there once the loss is finite again.
    monkeypatch.undo()
    records = quiet_train(SHARED, run, archive, resume=True)
    assert [r["epoch"] for r in records] == [1, 2]


def test_non_finite_loss_in_first_step(archive, tmp_path, monkeypatch):
    nan_cross_entropy_from(monkeypatch, 1)
    run = tmp_path / "run"
    with pytest.raises(T.NonFiniteLoss, match=r"epoch 1, step 1\b") as info:
        quiet_train(TINY, run, archive)
    checkpoint = run / "checkpoint.npz"
    assert not checkpoint.exists()
    assert read_log(run) == []
    # Nothing was saved yet, so the message must not point at a checkpoint that does not exist.
    assert str(checkpoint) not in str(info.value), str(info.value)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the overflow that lr=1e30 is meant to cause
def test_non_finite_loss_on_the_command_line(archive, tmp_path, capsys):
    from minibasis import cli

    out = tmp_path / "run"
    code = cli.main(cli_args(replace(TINY, train_size=20, lr=1e30, epochs=2), out, archive))
    captured = capsys.readouterr()
    assert code == 1, captured
    assert "minibasis train: error:" in captured.err
    assert re.search(r"non-finite loss .* at epoch \d+, step \d+", captured.err), captured.err
    assert "Traceback" not in captured.err


# -------------------------------------------------------------------------------- evaluate


def test_evaluate_counts_argmax_and_averages_cross_entropy():
    model = create_model("resnet8")
    params, state = model.init(3)
    rng = np.random.default_rng(7)
    # Running statistics away from (0, 1), so that eval mode visibly uses them.
    flat = flatten(state)
    for key, value in flat.items():
        if key.endswith("running_mean"):
            flat[key] = (0.1 * rng.normal(size=value.shape)).astype(np.float32)
        elif key.endswith("running_var"):
            flat[key] = rng.uniform(0.5, 2.0, size=value.shape).astype(np.float32)
    state = unflatten(flat)
    images = rng.integers(0, 256, size=(25, 3, 32, 32), dtype=np.uint8)
    mean, std = DATASETS["cifar10"].mean, DATASETS["cifar10"].std

    # By hand (run_files): normalised with the constants, eval mode, a hand-written log-softmax.
    logits = logits_by_hand(model, params, state, images, mean, std)
    predicted = logits.argmax(axis=1)
    labels = np.where(np.arange(25) < 12, predicted, (predicted + 1 + np.arange(25) % 9) % 10).astype(np.int64)
    expected_loss, expected_acc = loss_and_accuracy(logits, labels)
    assert expected_acc == 12 / 25

    for batch_size in (500, 10, 7):  # one batch; uneven last batches are weighted by their size
        loss, acc = T.evaluate(model, params, state, images, labels, mean=mean, std=std, batch_size=batch_size)
        assert acc == expected_acc
        assert loss == pytest.approx(expected_loss, rel=1e-5)
        assert isinstance(loss, float) and isinstance(acc, float)


def test_evaluate_uses_running_statistics(archive):
    """Eval mode: the result does not depend on which other images share the batch."""
    model = create_model("resnet8")
    params, state = model.init(0)
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(4, 3, 32, 32), dtype=np.uint8)
    labels = np.arange(4, dtype=np.int64)
    mean, std = DATASETS["cifar10"].mean, DATASETS["cifar10"].std
    whole = T.evaluate(model, params, state, images, labels, mean=mean, std=std)
    singles = [T.evaluate(model, params, state, images[i:i + 1], labels[i:i + 1], mean=mean, std=std) for i in range(4)]
    assert whole[0] == pytest.approx(np.mean([s[0] for s in singles]), rel=1e-5)
    assert whole[1] == np.mean([s[1] for s in singles])


# ----------------------------------------------------------------------- atomic checkpoints


def test_checkpoint_write_is_atomic(archive, first_epoch, tmp_path, monkeypatch):
    original, calls, snapshot = np.savez, [], {}
    run = tmp_path / "run"

    def failing_savez(file, *args, **kwargs):
        calls.append(None)
        if len(calls) == 3:  # per epoch: checkpoint.npz, then weights.npz; 3rd = epoch 2's checkpoint
            snapshot.update({p.name: p.read_bytes() for p in run.iterdir() if p.is_file()})
            file.write(b"PK\x03\x04 half a zip file")
            raise OSError("disk full (simulated)")
        return original(file, *args, **kwargs)

    monkeypatch.setattr(np, "savez", failing_savez)
    with pytest.raises(OSError, match="disk full"):
        quiet_train(SHARED, run, archive)
    monkeypatch.undo()
    assert len(calls) == 3

    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.npz", "config.json", "log.jsonl", "weights.npz"]
    for name in ("checkpoint.npz", "weights.npz", "log.jsonl"):
        assert (run / name).read_bytes() == snapshot[name], name  # epoch 1's files, unchanged
    assert T.load_checkpoint(run / "checkpoint.npz", create_model(SHARED.model))[3] == 1
    assert_npz_identical(run / "checkpoint.npz", first_epoch / "checkpoint.npz")
    assert [r["epoch"] for r in read_log(run)] == [1]


def test_interrupted_between_checkpoint_and_log_then_resumed(archive, straight, tmp_path, monkeypatch):
    """An interruption while epoch 2's files are being saved (here: the 4th np.savez, which today
    is epoch 2's weights.npz, written after its checkpoint.npz and before its log line): the
    resumed run must still end as the uninterrupted one, its log record and weights included."""
    straight_run, _ = straight
    original, calls = np.savez, []

    def failing_savez(file, *args, **kwargs):
        calls.append(None)
        if len(calls) == 4:  # 2 saves per epoch: the second save of epoch 2
            raise OSError("disk full (simulated)")
        return original(file, *args, **kwargs)

    run = tmp_path / "run"
    monkeypatch.setattr(np, "savez", failing_savez)
    with pytest.raises(OSError, match="disk full"):
        quiet_train(SHARED, run, archive)
    monkeypatch.undo()
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]

    records = quiet_train(SHARED, run, archive, resume=True)
    assert [r["epoch"] for r in records] == [1, 2]
    assert without_timing(read_log(run)) == without_timing(read_log(straight_run))
    assert_npz_identical(straight_run / "weights.npz", run / "weights.npz")
    assert_npz_identical(straight_run / "checkpoint.npz", run / "checkpoint.npz")


def test_save_load_checkpoint_round_trip(tmp_path):
    model = create_model("resnet14-s2u1")
    params, state = model.init(5)
    momentum = tree_map(lambda v: np.full_like(v, 0.5), params)
    rng = np.random.default_rng(11)
    rng.random(3)
    path = tmp_path / "ck.npz"
    T.save_checkpoint(path, model, params, state, momentum, 7, rng, SHARED)
    p2, s2, m2, epoch, rng2, config = T.load_checkpoint(path, model)
    assert epoch == 7 and config == asdict(SHARED)
    assert rng2.bit_generator.state == rng.bit_generator.state
    assert np.array_equal(rng2.random(5), rng.random(5))
    for a, b in ((params, p2), (state, s2), (momentum, m2)):
        assert_trees_equal(b, a)
    assert [p.name for p in tmp_path.iterdir()] == ["ck.npz"]


# ------------------------------------------------------------------------ config checks


@pytest.mark.parametrize("spec, expected", [
    ("resnet20-s16u1", 10.0),          # double
    ("resnet20-double-s16u1", 10.0),
    ("resnet20-single-s16u1", 10.0),   # single
    ("resnet20-s16u0", 10.0),          # shared_only
    ("resnet20", 0.0),                 # original
    ("resnet20-s0u1", 0.0),            # NonShared
])
def test_default_lambda(spec, expected):
    config = T.TrainConfig(model=spec)
    assert config.lam is None
    assert config.resolved_lambda() == expected
    assert isinstance(config.resolved_lambda(), float)
    assert T.TrainConfig(model=spec, lam=0.25).resolved_lambda() == 0.25
    assert T.TrainConfig(model=spec, lam=0).resolved_lambda() == 0.0


def test_default_config_is_valid():
    T.TrainConfig().check()
    assert T.TrainConfig().resolved_lambda() == T.DEFAULT_LAMBDA == 10.0


@pytest.mark.parametrize("change, field", [
    ({"epochs": 0}, "epochs"),
    ({"epochs": -1}, "epochs"),
    ({"batch_size": 0}, "batch_size"),
    ({"schedule": "linear"}, "schedule"),
    ({"dataset": "cifar20"}, "dataset"),
    ({"lam": -1.0}, "lam"),
    ({"lam": float("nan")}, "lam"),
])
def test_bad_config_values(change, field, archive, tmp_path):
    config = replace(T.TrainConfig(), **change)
    with pytest.raises(ValueError, match=rf"^{field}\b"):
        config.check()
    # train() checks before it touches the data or the run folder.
    with pytest.raises(ValueError, match=rf"^{field}\b"):
        T.train(config, tmp_path / "run", data_path=tmp_path / "no-such-archive", quiet=True)
    assert not (tmp_path / "run").exists()


def test_dataset_must_match_the_archive(archive, tmp_path, monkeypatch):
    """dataset="cifar100" given a CIFAR-10 archive: a ValueError naming the dataset, before any training."""
    def no_training(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(T, "training_loss", no_training, raising=False)
    run = tmp_path / "run"
    config = replace(TINY, dataset="cifar100")
    with pytest.raises(ValueError, match="dataset"):
        T.train(config, run, data_path=archive, quiet=True, print_fn=lambda *a: None)
    assert not (run / "checkpoint.npz").exists() and not (run / "weights.npz").exists()
    assert not (run / "log.jsonl").exists() or read_log(run) == []


@pytest.mark.parametrize("spec", ["resnet9", "vgg16", "resnet20-s0u0", ""])
def test_unknown_model(spec, tmp_path):
    config = T.TrainConfig(model=spec)
    with pytest.raises(ValueError, match="valid model specs") as info:
        config.check()
    assert repr(spec) in str(info.value)
    with pytest.raises(ValueError, match="valid model specs"):
        T.train(config, tmp_path / "run", data_path=tmp_path / "no-such-archive", quiet=True)
    with pytest.raises(ValueError, match="valid model specs"):
        config.resolved_lambda()


# ------------------------------------------------------------------------------- the log


def test_log_has_one_json_line_per_epoch_and_step_schedule(archive, tmp_path):
    config = replace(TINY, epochs=4, lr=0.05)
    printed = []
    records = T.train(config, tmp_path, data_path=archive, quiet=True, print_fn=printed.append)
    lines = (tmp_path / "log.jsonl").read_text().splitlines()
    assert len(lines) == 4 == len(printed)
    logged = [json.loads(line) for line in lines]
    assert logged == records
    for epoch, record in enumerate(logged, start=1):
        assert LOG_KEYS <= set(record), set(record)
        assert record["epoch"] == epoch
        assert all(isinstance(record[k], (int, float)) and math.isfinite(record[k]) for k in LOG_KEYS)
        assert 0 <= record["train_acc"] <= 1 and 0 <= record["test_acc"] <= 1
        assert record["train_loss"] > 0 and record["test_loss"] > 0 and record["seconds"] > 0
        assert record["orthogonality"] == 0.0  # resnet8: no bases
        assert record["test_acc"] * config.test_size == round(record["test_acc"] * config.test_size)
    # Step schedule: ×0.1 at epochs int(0.5·4) = 2 and int(0.75·4) = 3 (0-based).
    lrs = [r["lr"] for r in logged]
    assert lrs == pytest.approx([0.05, 0.05, 0.005, 0.0005], rel=1e-12)
    # Exactly what step_lr's closed form base_lr · gamma ** (milestones passed) gives, to the bit.
    assert lrs == [0.05, 0.05, 0.05 * 0.1 ** 1, 0.05 * 0.1 ** 2]
    assert [re.match(r"epoch +(\d+)/4 ", line).group(1) for line in printed] == ["1", "2", "3", "4"]


def test_log_of_shared_model(straight):
    run, records = straight
    logged = read_log(run)
    assert logged == records and [r["epoch"] for r in logged] == [1, 2]
    assert all(r["orthogonality"] > 0 for r in logged)  # the basis regulariser is reported
    # epochs=2: both milestones int(1.0) = int(1.5) = 1, so the 2nd epoch decays twice (MultiStepLR).
    assert [r["lr"] for r in logged] == pytest.approx([0.1, 0.001])
    assert json.loads((run / "config.json").read_text()) == asdict(SHARED)


# ------------------------------------------------------------------ the gradient of a step


@pytest.mark.parametrize("spec", ["resnet8", "resnet14-s2u1", "resnet14-single-s2u1"])
def test_gradient_and_aux_equals_autograd_grad_of_the_tree(spec):
    """Per-leaf roots give the gradient that autograd.grad of the whole dict gives: shared
    bases summed over the blocks that use them, and zeros for a leaf the loss never reads."""
    from autograd import grad
    from autograd.tracer import isbox

    model = create_model(spec)
    params, state = model.init(seed=1, dtype=np.float64)
    params = dict(params, unused={"weight": np.ones(3)})
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((4, 3, 8, 8)), rng.integers(0, 10, 4)
    lam = 0.0 if model.spec.variant == "original" else 10.0
    grads, (ce, logits, new_state) = T.gradient_and_aux(lambda p, s, x, y: T.training_loss(model, p, s, x, y, lam))(params, state, x, y)
    expected = grad(lambda p: T.training_loss(model, p, state, x, y, lam)[0])(params)
    assert list(flatten(grads)) == list(flatten(expected))
    for name, g in flatten(expected).items():
        np.testing.assert_allclose(flatten(grads)[name], g, rtol=1e-12, atol=1e-14, err_msg=name)
    np.testing.assert_array_equal(grads["unused"]["weight"], np.zeros(3))
    reference_logits, reference_state = model.apply(params, state, x, train=True)
    np.testing.assert_array_equal(logits, reference_logits)
    np.testing.assert_array_equal(ce, T.cross_entropy(reference_logits, y))
    for name, value in flatten(reference_state).items():
        assert not isbox(flatten(new_state)[name]), name
        np.testing.assert_array_equal(flatten(new_state)[name], value, err_msg=name)


def test_gradient_and_aux_refuses_a_loss_that_ignores_params_or_is_not_scalar():
    fn = T.gradient_and_aux(lambda p, z: (np.float64(1.0), (0.0, np.zeros(1), {})))
    with pytest.raises(ValueError, match="loss_fn: expected an output that depends"):
        fn({"w": np.ones(2)}, 0)
    fn = T.gradient_and_aux(lambda p, z: (p["w"] * 2, (0.0, np.zeros(1), {})))
    with pytest.raises(ValueError, match=r"loss_fn: expected a scalar loss, got shape \(2,\)"):
        fn({"w": np.ones(2)}, 0)


def test_gradient_and_aux_lets_errors_inside_the_loss_through():
    model = create_model("resnet8")
    params, state = model.init(seed=0)
    fn = T.gradient_and_aux(lambda p, s, x, y: T.training_loss(model, p, s, x, y, 0.0))
    with pytest.raises(ValueError, match=r"x: expected shape \(N, 3, H, W\)"):
        fn(params, state, np.zeros((2, 3, 8), np.float32), np.zeros(2, int))
