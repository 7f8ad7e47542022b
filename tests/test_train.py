"""Tests of minibasis.train: resume, extension, the run folder's rules, the non-finite guard,
evaluation and the log.

Training in pure NumPy is slow, so every run here uses a tiny archive in the official
CIFAR-10 format written to a temporary folder (40 training + 20 test images of random
pixels, 4 and 2 per class) and the smallest models (``resnet8``; ``resnet14-s2u1`` where the
shared bases, their orthogonality loss and their momentum must take part), with subsets of
10–20 images and batches of 10.
"""

import hashlib
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
from minibasis import runs
from minibasis.data import DATASETS
from minibasis.files import FolderBusy, folder_lock
from minibasis.models import create_model
from minibasis.tree import flatten, unflatten
from support.cifar_files import write_cifar10_archive
from support.run_files import (
    DAMAGES,
    assert_npz_identical,
    cli_args,
    damage,
    files_of,
    logits_by_hand,
    loss_and_accuracy,
    npz_arrays,
    read_log,
    subprocess_env,
    without_timing,
)

ROOT = Path(__file__).resolve().parents[1]
LOG_KEYS = {
    "epoch",
    "epochs",
    "train_loss",
    "train_acc",
    "test_loss",
    "test_acc",
    "orthogonality",
    "lr",
    "lam",
    "seconds",
    "images_per_second",
}


def saved_config(config, archive, **changes):
    """What config.json must hold for a run of ``config`` on ``archive``: the format, the
    fields with λ resolved, the data's identity (computed here from the file) and extensions."""
    data = {
        "path": str(Path(archive).absolute()),
        "sha256": hashlib.sha256(Path(archive).read_bytes()).hexdigest(),
        "bytes": Path(archive).stat().st_size,
    }
    fields = {**asdict(config), "lam": 10.0 if config.lam is None and "-s" in config.model else config.lam or 0.0}
    return {"format": "minibasis run 2", **fields, "data": data, "extensions": [], **changes}


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
    assert runs.load_checkpoint(run / "checkpoint.npz", create_model(SHARED.model)).epoch == 1

    # The remaining epoch in a fresh interpreter, through the command line.
    proc = subprocess.run(
        [sys.executable, "-m", "minibasis.cli", *cli_args(SHARED, run, archive), "--resume"],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
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
    assert json.loads((run / "config.json").read_text()) == saved_config(SHARED, archive)


def test_resume_in_process_and_finished_run(archive, straight, first_epoch, tmp_path):
    """train(resume=True) in this process gives the same bits; resuming a finished run trains
    nothing, changes no file and says that the run is complete."""
    straight_run, _ = straight
    run = copy_run(first_epoch, tmp_path)
    records = quiet_train(SHARED, run, archive, resume=True)
    assert without_timing(records) == without_timing(read_log(straight_run))
    assert_npz_identical(straight_run / "checkpoint.npz", run / "checkpoint.npz")

    before = files_of(run)
    said = []
    again = T.train(SHARED, run, data_path=archive, quiet=True, resume=True, print_fn=said.append)
    assert again == records  # the log read back, nothing retrained
    assert files_of(run) == before  # (its views written again, byte for byte)
    assert len(said) == 1 and "already complete (2 of 2 epochs)" in said[0] and "--epochs" in said[0], said


@pytest.mark.parametrize(
    "change, field",
    [
        ({"lr": 0.05}, "lr"),
        ({"seed": 1}, "seed"),
        ({"lam": 1.0}, "lam"),
        ({"augment": False}, "augment"),
        ({"model": "resnet14-single-s2u1"}, "model"),
    ],
)
def test_resume_with_other_config_is_refused(archive, first_epoch, tmp_path, change, field):
    run = copy_run(first_epoch, tmp_path)
    before = files_of(run)
    with pytest.raises(ValueError, match=r"^config: expected the configuration of the run") as info:
        quiet_train(replace(SHARED, **change), run, archive, resume=True)
    got = str(info.value).split(", got ", 1)[1]
    # the run records the λ it used (SHARED: the default)
    run_value = 10.0 if field == "lam" else getattr(SHARED, field)
    assert got.startswith(f"{field} {getattr(replace(SHARED, **change), field)!r} (the run's: {run_value!r})"), got
    assert got.count("(the run's") == 1, got  # only the differing field
    assert files_of(run) == before  # nothing touched


def test_resume_cannot_shorten_a_run(archive, first_epoch, tmp_path):
    run = copy_run(first_epoch, tmp_path)
    before = files_of(run)
    with pytest.raises(ValueError, match=r"^epochs: expected at least 2, the run's epochs .*, got 1$"):
        quiet_train(replace(SHARED, epochs=1), run, archive, resume=True)
    assert files_of(run) == before


def test_resume_without_a_run(archive, tmp_path):
    with pytest.raises(
        FileNotFoundError, match=r"^out_dir: expected the folder of a run to resume, got .*does not exist"
    ):
        quiet_train(TINY, tmp_path / "missing", archive, resume=True)
    assert not (tmp_path / "missing").exists()  # a typo in the folder's name creates nothing
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"expected a run to resume \(checkpoint.npz or config.json\)"):
        quiet_train(TINY, tmp_path / "empty", archive, resume=True)
    assert not runs.run_files(tmp_path / "empty")


# ---------------------------------------------------------------- extending a finished run


def test_extending_a_finished_run(archive, straight, tmp_path):
    """SHARED (2 epochs) resumed with epochs=4: epochs 3–4 follow the step schedule of a 4-epoch
    run (lr 0.01, 0.001), the first two keep theirs, and the change is recorded."""
    straight_run, _ = straight
    run = copy_run(straight_run, tmp_path)
    said = []
    records = T.train(replace(SHARED, epochs=4), run, data_path=archive, quiet=True, resume=True, print_fn=said.append)
    assert [r["epoch"] for r in records] == [1, 2, 3, 4]
    assert without_timing(records[:2]) == without_timing(read_log(straight_run))  # the epochs done are kept
    assert [r["epochs"] for r in records] == [2, 2, 4, 4]
    assert [r["lr"] for r in records] == pytest.approx([0.1, 0.01, 0.01, 0.001], rel=1e-12)
    assert "from 2 to 4 epochs" in said[0] and "epochs 3–4" in said[0] and "lr 0.01, 0.001" in said[0], said[0]
    extension = {"at_epoch": 2, "from_epochs": 2, "to_epochs": 4}
    assert json.loads((run / "config.json").read_text()) == saved_config(
        SHARED, archive, epochs=4, extensions=[extension]
    )
    checkpoint = runs.load_checkpoint(run / "checkpoint.npz", create_model(SHARED.model))
    assert checkpoint.epoch == 4 and checkpoint.config["epochs"] == 4 and checkpoint.extensions == [extension]
    assert read_log(run) == records

    # Extended once more, the history grows; a resume with the same epochs is complete.
    quiet_train(replace(SHARED, epochs=5), run, archive, resume=True)
    assert json.loads((run / "config.json").read_text())["extensions"] == [
        extension,
        {"at_epoch": 4, "from_epochs": 4, "to_epochs": 5},
    ]


def test_an_extension_interrupted_before_its_first_checkpoint_resumes_identically(
    archive, straight, tmp_path, monkeypatch
):
    """Killed (here: an error) inside the first extra epoch, then resumed with the same epochs:
    the same files as an extension that ran through."""
    straight_run, _ = straight
    through = copy_run(straight_run, tmp_path / "a")
    quiet_train(replace(SHARED, epochs=3), through, archive, resume=True)

    run = copy_run(straight_run, tmp_path / "b")

    def fails(*args):
        raise OSError("disk gone (simulated)")

    monkeypatch.setattr(T, "_test_metrics", fails)
    with pytest.raises(OSError, match="simulated"):
        quiet_train(replace(SHARED, epochs=3), run, archive, resume=True)
    monkeypatch.undo()
    assert runs.load_checkpoint(run / "checkpoint.npz", create_model(SHARED.model)).epoch == 2
    quiet_train(replace(SHARED, epochs=3), run, archive, resume=True)
    for name in ("weights.npz", "checkpoint.npz"):
        assert_npz_identical(through / name, run / name)
    assert without_timing(read_log(run)) == without_timing(read_log(through))
    assert (run / "config.json").read_text() == (through / "config.json").read_text()


# ------------------------------------------------------------------ the run folder's rules


@pytest.mark.parametrize(
    "name", ["checkpoint.npz", "weights.npz", "log.jsonl", "config.json", ".checkpoint.npz.1a2b3c4d.tmp"]
)
@pytest.mark.parametrize("overwrite", [False, True])
def test_a_fresh_run_refuses_a_folder_holding_any_run_file(archive, tmp_path, name, overwrite):
    """A fresh run refuses a folder holding any run file, not only checkpoint.npz, so a run whose
    checkpoint was deleted keeps its weights, log and config. A file of a run's name that
    minibasis did not write is refused even with overwrite, and kept; a temp file of minibasis's
    is removed by overwrite."""
    run = tmp_path / "keep"
    run.mkdir()
    (run / name).write_bytes(b"a user's file")
    (run / "notes.txt").write_text("mine")
    if name.endswith(".tmp"):  # a temp file is known by its name: minibasis's
        if overwrite:
            quiet_train(TINY, run, archive, overwrite=True)
            assert not (run / name).exists() and (run / "notes.txt").read_text() == "mine"
            return
        expected = (
            rf"^{re.escape(str(run))}: expected a folder without a run, "
            rf"got one holding {re.escape(name)};.*resume.*overwrite"
        )
    else:
        expected = (
            rf"^{re.escape(str(run / name))}: expected a folder without a run, "
            rf"or a run's {re.escape(name)} that minibasis wrote, "
            r"got a file minibasis did not write \(or one damaged since\); "
            r"move it away or choose another folder \(--out\); nothing was changed$"
        )
    with pytest.raises(FileExistsError, match=expected):
        quiet_train(TINY, run, archive, overwrite=overwrite)
    assert (run / name).read_bytes() == b"a user's file"
    assert sorted(p.name for p in run.iterdir()) == sorted([name, "notes.txt"])


def test_a_run_whose_checkpoint_was_deleted_is_not_replaced(archive, straight, tmp_path):
    """Train into keep, delete keep/checkpoint.npz, train another model into keep: refused, naming
    the run files that remain, and no file changes."""
    run = copy_run(straight[0], tmp_path)
    (run / "checkpoint.npz").unlink()
    before = files_of(run)
    with pytest.raises(FileExistsError, match="config.json, log.jsonl, weights.npz"):
        quiet_train(TINY, run, archive)
    assert files_of(run) == before


def test_overwrite_replaces_a_run(archive, straight, tmp_path):
    run = copy_run(straight[0], tmp_path)
    (run / ".weights.npz.deadbeef.tmp").write_bytes(b"half a file")
    (run / "notes.txt").write_text("mine")
    records = quiet_train(TINY, run, archive, overwrite=True)
    fresh = tmp_path / "fresh"
    assert without_timing(records) == without_timing(quiet_train(TINY, fresh, archive))
    for name in ("weights.npz", "checkpoint.npz"):
        assert_npz_identical(run / name, fresh / name)
    assert sorted(p.name for p in run.iterdir()) == [
        "checkpoint.npz",
        "config.json",
        "log.jsonl",
        "notes.txt",
        "weights.npz",
    ]
    with pytest.raises(ValueError, match=r"^overwrite: expected False with resume=True"):
        quiet_train(TINY, run, archive, overwrite=True, resume=True)


def test_a_locked_folder_is_refused_and_untouched(archive, first_epoch, tmp_path):
    """In one process: while the folder's lock is held, both a fresh run and a resume
    fail at once, name the folder and the holder's PID, and change nothing."""
    run = copy_run(first_epoch, tmp_path)
    before = files_of(run)
    with folder_lock(run):
        for kwargs in ({"resume": True}, {}, {"overwrite": True}):
            with pytest.raises(
                FolderBusy,
                match=rf"^{re.escape(str(run))}: expected a folder no other process is using, "
                rf"got one locked by PID {os.getpid()}$",
            ):
                quiet_train(SHARED, run, archive, **kwargs)
    assert files_of(run) == before
    assert [r["epoch"] for r in quiet_train(SHARED, run, archive, resume=True)] == [1, 2]  # released


@pytest.mark.parametrize("what", DAMAGES)
def test_a_resume_that_fails_changes_no_file(archive, first_epoch, tmp_path, what):
    """Everything a resume reads is checked before any file changes (the log is not truncated
    first); the error is a one-line ValueError naming the damaged file."""
    run = copy_run(first_epoch, tmp_path)
    (run / ".checkpoint.npz.0badf00d.tmp").write_bytes(b"stale")
    name = damage(run, what)
    before = files_of(run)
    with pytest.raises(ValueError) as info:
        quiet_train(SHARED, run, archive, resume=True)
    message = str(info.value)
    assert message.startswith(str(run / name)), message
    assert "\n" not in message
    assert files_of(run) == before


def test_resume_removes_stale_temp_files(archive, straight, first_epoch, tmp_path):
    """The temp files a kill leaves mid-write are removed by the next resume."""
    run = copy_run(first_epoch, tmp_path)
    stale = [run / ".checkpoint.npz.00000001.tmp", run / ".weights.npz.00000002.tmp", run / ".log.jsonl.00000003.tmp"]
    for path in stale:
        path.write_bytes(b"PK\x03\x04 half a file")
    quiet_train(SHARED, run, archive, resume=True)
    assert not any(path.exists() for path in stale)
    assert_npz_identical(straight[0] / "checkpoint.npz", run / "checkpoint.npz")


def test_a_run_killed_before_its_first_checkpoint_resumes_from_the_start(archive, straight, tmp_path):
    """Only config.json (and an empty log) was written: a resume starts the run from epoch 1; and
    when even config.json's write was cut (only its temp file is left) the same."""
    straight_run, straight_records = straight
    for leftover in ("config.json", ".config.json.12345678.tmp"):
        run = tmp_path / leftover
        run.mkdir()
        if leftover == "config.json":
            runs.write_config(run / "config.json", SHARED)
            (run / "log.jsonl").write_text("")
        else:
            (run / leftover).write_text('{"mod')
        records = quiet_train(SHARED, run, archive, resume=True)
        assert without_timing(records) == without_timing(straight_records)
        assert_npz_identical(straight_run / "checkpoint.npz", run / "checkpoint.npz")
        assert not runs.stale_temp_files(run)


def test_sizes_larger_than_the_data_are_refused(archive, tmp_path):
    """Sizes larger than the data (or not a multiple of the classes) are refused before the folder
    is made, never silently trained on the images there are."""
    for change, message in (
        ({"train_size": 50}, "train_size: expected at most 40, the images there"),
        ({"test_size": 30}, "test_size: expected at most 20, the images there"),
        ({"train_size": 15}, "train_size: expected a multiple of the 10 classes"),
    ):
        with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
            quiet_train(replace(TINY, **change), tmp_path / "run", archive)
        assert not (tmp_path / "run").exists()  # refused before the folder is made
    assert T.evaluation_subset(T.load_run_data(archive, "cifar10"), None, seed=0)[1].shape == (20,)


def test_stop_after_must_be_positive(archive, tmp_path):
    """stop_after=0 is refused before the folder is made (it would run nothing and report files that
    were never written)."""
    with pytest.raises(ValueError, match=r"^stop_after: expected an int ≥ 1, got 0$"):
        quiet_train(TINY, tmp_path / "run", archive, stop_after=0)
    assert not (tmp_path / "run").exists()


def test_out_dir_that_is_a_file(archive, tmp_path):
    path = tmp_path / "afile"
    path.write_text("mine")
    with pytest.raises(ValueError, match=r"^out_dir: expected a folder for the run .*, got the file"):
        quiet_train(TINY, path, archive)
    assert path.read_text() == "mine"


# ----------------------------------------------------------------------- non-finite values


def inject(monkeypatch, call, where, value=np.nan):
    """From the ``call``-th training step on (1-based), make the step function's ``where`` (a
    flat name in the gradient tree with 'grads.', in the BN state with 'state.', or 'ce' / 'r')
    ``value``."""
    original, calls = T.gradient_and_aux, []

    def patched(loss_fn):
        step = original(loss_fn)

        def wrapped(*args):
            grads, (loss, ce, r, logits, state) = step(*args)
            calls.append(None)
            if len(calls) >= call:
                kind, _, name = where.partition(".")
                if kind == "grads":
                    grads = unflatten({**flatten(grads), name: flatten(grads)[name] * value})
                elif kind == "state":
                    state = unflatten({**flatten(state), name: flatten(state)[name] * value})
                elif kind == "ce":
                    ce, loss = ce * value, loss * value
                else:
                    r, loss = r * value, loss * value
            return grads, (loss, ce, r, logits, state)

        return wrapped

    monkeypatch.setattr(T, "gradient_and_aux", patched)


@pytest.mark.parametrize(
    "where, call, expected",
    [
        ("ce", 3, r"non-finite cross-entropy loss at epoch 2, step 1 \(global step 3\)"),
        ("r", 4, r"non-finite orthogonality R at epoch 2, step 2 \(global step 4\)"),
        (
            "grads.layer1.1.coeff_conv1.weight",
            3,
            r"non-finite gradient of 'layer1.1.coeff_conv1.weight' \(the loss, [\d.]+, was finite\) at epoch 2, step 1",
        ),
        (
            "state.bn1.running_var",
            4,
            r"non-finite BN statistic 'bn1.running_var' after the SGD update with lr 0.01 at epoch 2, step 2",
        ),
    ],
)
def test_non_finite_value_stops_and_keeps_the_last_checkpoint(
    archive, first_epoch, tmp_path, monkeypatch, where, call, expected
):
    """Each value is checked and named (a gradient overflow is a non-finite gradient, with the
    finite loss beside it, not a "non-finite loss"); the checkpoint of epoch 1 stays, the run resumes."""
    inject(monkeypatch, call, where)
    run = tmp_path / "run"
    with pytest.raises(T.NonFiniteValue, match=f"^{expected}") as info:
        quiet_train(SHARED, run, archive)
    assert f"The last checkpoint, {run / 'checkpoint.npz'}, holds epoch 1." in str(info.value)
    assert_npz_identical(run / "checkpoint.npz", first_epoch / "checkpoint.npz")  # epoch 1's, untouched
    assert_npz_identical(run / "weights.npz", first_epoch / "weights.npz")
    assert [r["epoch"] for r in read_log(run)] == [1]
    assert not runs.stale_temp_files(run)

    monkeypatch.undo()  # the run resumes once the values are finite again
    assert [r["epoch"] for r in quiet_train(SHARED, run, archive, resume=True)] == [1, 2]


def test_non_finite_value_in_the_first_step_writes_nothing(archive, tmp_path, monkeypatch):
    inject(monkeypatch, 1, "ce")
    run = tmp_path / "run"
    with pytest.raises(T.NonFiniteValue, match=r"^non-finite cross-entropy loss at epoch 1, step 1\b") as info:
        quiet_train(TINY, run, archive)
    assert "No checkpoint was written yet." in str(info.value)
    assert not (run / "checkpoint.npz").exists() and not (run / "weights.npz").exists()
    assert read_log(run) == []


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the overflow a huge lr is meant to cause
def test_a_huge_learning_rate_stops_at_the_first_parameter_that_overflows(archive, tmp_path):
    """--lr 1e40: the loss and gradients of step 1 are finite, the updated parameters are not; the
    run stops naming the first of them, and no checkpoint or weights holding NaN/inf is written."""
    run = tmp_path / "run"
    with pytest.raises(
        T.NonFiniteValue, match=r"^non-finite parameter '[\w.]+' after the SGD update with lr 1e\+40 at epoch 1, step 1"
    ):
        quiet_train(replace(TINY, lr=1e40, epochs=2), run, archive)
    assert not (run / "checkpoint.npz").exists() and not (run / "weights.npz").exists()


def test_a_non_finite_test_loss_stops_before_the_epoch_is_saved(archive, first_epoch, tmp_path, monkeypatch):
    """A NaN test loss (as --lr 30 gives) stops the run before its epoch is saved."""
    original = T.evaluate
    calls = []

    def evaluate(*args, **kwargs):
        calls.append(None)
        loss, acc = original(*args, **kwargs)
        return (np.nan if len(calls) == 2 else loss), acc

    monkeypatch.setattr(T, "evaluate", evaluate)
    run = tmp_path / "run"
    with pytest.raises(T.NonFiniteValue, match=r"^non-finite test loss at the end of epoch 2; stopped\."):
        quiet_train(SHARED, run, archive)
    assert_npz_identical(run / "checkpoint.npz", first_epoch / "checkpoint.npz")
    assert [r["epoch"] for r in read_log(run)] == [1]


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


def test_evaluate_uses_running_statistics():
    """Eval mode: the result does not depend on which other images share the batch."""
    model = create_model("resnet8")
    params, state = model.init(0)
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(4, 3, 32, 32), dtype=np.uint8)
    labels = np.arange(4, dtype=np.int64)
    mean, std = DATASETS["cifar10"].mean, DATASETS["cifar10"].std
    whole = T.evaluate(model, params, state, images, labels, mean=mean, std=std)
    singles = [
        T.evaluate(model, params, state, images[i : i + 1], labels[i : i + 1], mean=mean, std=std) for i in range(4)
    ]
    assert whole[0] == pytest.approx(np.mean([s[0] for s in singles]), rel=1e-5)
    assert whole[1] == np.mean([s[1] for s in singles])


# ----------------------------------------------------------------------- atomic checkpoints


def test_checkpoint_write_is_atomic(archive, first_epoch, tmp_path, monkeypatch):
    original, calls, snapshot = np.savez, [], {}
    run = tmp_path / "run"

    def failing_savez(file, *args, **kwargs):
        calls.append(None)
        if len(calls) == 3:  # per epoch: checkpoint.npz, then weights.npz; 3rd = epoch 2's checkpoint
            snapshot.update(files_of(run))
            file.write(b"PK\x03\x04 half a zip file")
            raise OSError("disk full (simulated)")
        return original(file, *args, **kwargs)

    monkeypatch.setattr(np, "savez", failing_savez)
    with pytest.raises(OSError, match="disk full"):
        quiet_train(SHARED, run, archive)
    monkeypatch.undo()
    assert len(calls) == 3

    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.npz", "config.json", "log.jsonl", "weights.npz"]
    assert (run / "checkpoint.npz").read_bytes() == snapshot["checkpoint.npz"]  # epoch 1's, unchanged
    assert runs.load_checkpoint(run / "checkpoint.npz", create_model(SHARED.model)).epoch == 1
    assert_npz_identical(run / "checkpoint.npz", first_epoch / "checkpoint.npz")
    assert [r["epoch"] for r in read_log(run)] == [1]  # the views follow the checkpoint


def test_interrupted_between_checkpoint_and_weights_then_resumed(archive, straight, tmp_path, monkeypatch):
    """An interruption while epoch 2's files are being saved (here: its weights, the 4th
    np.savez, after its checkpoint, before its log line): the resumed run must still end as the
    uninterrupted one, its log record and weights included (written from the checkpoint)."""
    straight_run, _ = straight
    original, calls = np.savez, []

    def failing_savez(file, *args, **kwargs):
        calls.append(None)
        if len(calls) == 4:
            raise OSError("disk full (simulated)")
        return original(file, *args, **kwargs)

    run = tmp_path / "run"
    monkeypatch.setattr(np, "savez", failing_savez)
    with pytest.raises(OSError, match="disk full"):
        quiet_train(SHARED, run, archive)
    monkeypatch.undo()
    assert not runs.stale_temp_files(run)

    records = quiet_train(SHARED, run, archive, resume=True)
    assert [r["epoch"] for r in records] == [1, 2]
    assert without_timing(read_log(run)) == without_timing(read_log(straight_run))
    assert_npz_identical(straight_run / "weights.npz", run / "weights.npz")
    assert_npz_identical(straight_run / "checkpoint.npz", run / "checkpoint.npz")


# ------------------------------------------------------------------------ config checks


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("resnet20-s16u1", 10.0),  # double
        ("resnet20-double-s16u1", 10.0),
        ("resnet20-single-s16u1", 10.0),  # single
        ("resnet20-s16u0", 10.0),  # shared_only
        ("resnet20", 0.0),  # original
        ("resnet20-s0u1", 0.0),  # NonShared
    ],
)
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


@pytest.mark.parametrize(
    "change, message",
    [
        ({"epochs": 0}, "epochs: expected an int ≥ 1, got 0"),
        ({"epochs": -1}, "epochs: expected an int ≥ 1, got -1"),
        ({"epochs": 2.5}, "epochs: expected an int ≥ 1, got 2.5"),
        ({"batch_size": 0}, "batch_size: expected an int ≥ 1, got 0"),
        ({"train_size": 0}, "train_size: expected an int ≥ 1, got 0"),
        ({"schedule": "linear"}, "schedule: expected one of 'step', 'cosine', 'constant', got 'linear'"),
        ({"dataset": "cifar20"}, "dataset: expected one of 'cifar10', 'cifar100', got 'cifar20'"),
        ({"lam": -1.0}, "lam: expected a finite real number ≥ 0, got -1.0"),
        ({"lam": float("nan")}, "lam: expected a finite real number ≥ 0, got nan"),
        ({"lr": float("inf")}, "lr: expected a finite real number ≥ 0, got inf"),
        ({"nesterov": 1}, "nesterov: expected True or False, got 1"),
        (
            {"nesterov": True, "momentum": 0.0},
            "nesterov: expected a momentum > 0 with Nesterov momentum, got momentum 0.0",
        ),
        ({"seed": -1}, "seed: expected an int ≥ 0, got -1"),
        ({"augment": "no"}, "augment: expected True or False, got 'no'"),
    ],
)
def test_bad_config_values(change, message, tmp_path):
    config = replace(T.TrainConfig(), **change)
    with pytest.raises(ValueError) as info:
        config.check()
    assert str(info.value) == message
    # train() checks before it touches the data or the run folder.
    with pytest.raises(ValueError) as info:
        T.train(config, tmp_path / "run", data_path=tmp_path / "no-such-archive", quiet=True)
    assert str(info.value) == message
    assert not (tmp_path / "run").exists()


def test_dataset_must_match_the_archive(archive, tmp_path, monkeypatch):
    """dataset="cifar100" given a CIFAR-10 archive: a ValueError naming the dataset, before any training."""
    run = tmp_path / "run"
    with pytest.raises(ValueError, match=r"^dataset: expected a cifar100 archive, got cifar10 data from"):
        T.train(replace(TINY, dataset="cifar100"), run, data_path=archive, quiet=True, print_fn=lambda *a: None)
    assert not run.exists()


@pytest.mark.parametrize("spec", ["resnet9", "vgg16", "resnet20-s0u0", ""])
def test_unknown_model(spec, tmp_path):
    config = T.TrainConfig(model=spec)
    with pytest.raises(ValueError, match="^model: .*valid model specs") as info:
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
        assert set(record) == LOG_KEYS
        assert record["epoch"] == epoch and record["epochs"] == 4
        assert all(isinstance(record[k], (int, float)) and math.isfinite(record[k]) for k in LOG_KEYS)
        assert 0 <= record["train_acc"] <= 1 and 0 <= record["test_acc"] <= 1
        assert record["train_loss"] > 0 and record["test_loss"] > 0 and record["seconds"] > 0
        assert record["orthogonality"] == 0.0  # resnet8: no bases
        assert record["test_acc"] * config.test_size == round(record["test_acc"] * config.test_size)
    # Step schedule: ×0.1 at epochs ⌈0.5·4⌉ = 2 and ⌈0.75·4⌉ = 3 (0-based), to the bit.
    assert [r["lr"] for r in logged] == [0.05, 0.05, 0.05 * 0.1**1, 0.05 * 0.1**2]
    assert [re.match(r"epoch +(\d+)/4 ", line).group(1) for line in printed] == ["1", "2", "3", "4"]


@pytest.mark.parametrize("epochs, lrs", [(1, [0.1]), (2, [0.1, 0.1 * 0.1**1]), (3, [0.1, 0.1, 0.1 * 0.1**1])])
def test_short_runs_train_at_the_given_lr(archive, tmp_path, epochs, lrs):
    """Short runs start at the given lr: a 1-epoch run trains at lr, a 2-epoch run's second epoch
    at lr/10 (never lr/100)."""
    records = quiet_train(replace(TINY, epochs=epochs), tmp_path / "run", archive)
    assert [r["lr"] for r in records] == lrs


def test_log_of_shared_model(straight, archive):
    run, records = straight
    logged = read_log(run)
    assert logged == records and [r["epoch"] for r in logged] == [1, 2]
    assert all(r["orthogonality"] > 0 for r in logged)  # the basis regulariser is reported
    # epochs=2: milestones ⌈1.0⌉ = 1 and ⌈1.5⌉ = 2, so the 2nd epoch runs at lr/10.
    assert [r["lr"] for r in logged] == [0.1, 0.1 * 0.1**1]
    assert json.loads((run / "config.json").read_text()) == saved_config(SHARED, archive)


# ----------------------------------------------------------------------------- what a run records


def test_a_resume_says_so_when_the_kernel_form_changes(archive, first_epoch, tmp_path):
    """A resume under MINIBASIS_REFERENCE=1 of a run written with the fast kernels says so (its
    numbers may drift from the uninterrupted run's), and its checkpoint records the kernels."""
    from minibasis.mode import reference_mode

    run = copy_run(first_epoch, tmp_path)
    said = []
    with reference_mode():
        T.train(SHARED, run, data_path=archive, resume=True, quiet=True, print_fn=said.append)
    assert any("written with the fast kernels and this run uses the reference ones" in line for line in said), said
    assert str(npz_arrays(run / "checkpoint.npz")["kernels"]) == "reference"


def test_a_first_round_run_resumes_and_equivalent_lambdas_are_equal(archive, first_epoch, straight, tmp_path):
    """A run of the older format (``"lam": null``, no format, data or log in the checkpoint, a
    lock file holding a PID alone) resumes, with --lam 0 / 10 taken as the default it stood for."""
    run = copy_run(first_epoch, tmp_path)
    arrays = npz_arrays(run / "checkpoint.npz")
    config = {**json.loads(str(arrays["config"])), "lam": None}
    np.savez(
        run / "checkpoint.npz",
        **{k: v for k, v in arrays.items() if k not in ("format", "log", "data", "kernels", "config")},
        config=np.array(json.dumps(config)),
    )
    (run / "config.json").write_text(json.dumps({**config, "extensions": []}))
    (run / ".lock").write_text("4321\n")  # the older format's lock file: a PID alone
    records = quiet_train(replace(SHARED, lam=10), run, archive, resume=True)
    assert without_timing(records) == without_timing(read_log(straight[0]))
    assert_npz_identical(straight[0] / "weights.npz", run / "weights.npz")


def test_a_fresh_run_records_lambda_and_data(archive, tmp_path):
    records = quiet_train(TINY, tmp_path / "run", archive)
    assert records[0]["lam"] == 0.0  # resnet8: no bases
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved == saved_config(TINY, archive)
