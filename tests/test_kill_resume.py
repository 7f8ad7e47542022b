"""The property of issue 12: kill -9 a training run at any moment, and its folder is resumable,
and the resumed run ends bit-identical to one that was never interrupted.

A child process runs ``minibasis train`` and sends itself SIGKILL from a timer thread started
after its imports, at a moment hypothesis draws over the whole run (loading the data, taking
the lock, writing the first config.json, training steps, the atomic writes of weights, log and
checkpoint, and after the end). Then, in this process: a folder that holds no run file (killed
before the run wrote anything) starts afresh, any other is resumed; either way the weights,
checkpoint, log (timings aside) and config.json must equal those of the uninterrupted run,
and no temp file may be left. ``MINIBASIS_HYPOTHESIS_PROFILE=thorough`` draws 60 kill moments
instead of 8.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minibasis.train as T
from minibasis import runs

from cifar_files import write_cifar10_archive
from run_files import assert_npz_identical, read_log, without_timing

ROOT = Path(__file__).resolve().parents[1]
KILLS = 60 if os.environ.get("MINIBASIS_HYPOTHESIS_PROFILE") == "thorough" else 8
# 3 epochs of 2 steps of a plain ResNet8 with momentum: a run of about a second.
CONFIG = T.TrainConfig(model="resnet8", train_size=20, test_size=10, epochs=3, batch_size=10)

CHILD = """
import os, signal, sys, threading, time
from minibasis import cli                      # the imports are done before the clock starts
start = time.perf_counter()
delay = float(sys.argv[1])

def kill():
    time.sleep(delay)
    os.kill(os.getpid(), signal.SIGKILL)

if delay >= 0:
    threading.Thread(target=kill, daemon=True).start()
code = cli.main(sys.argv[2:])
print(f"seconds {time.perf_counter() - start}", flush=True)
sys.exit(code)
"""


def run_child(archive, out, delay):
    """``minibasis train`` of CONFIG into ``out`` in a child killed after ``delay`` s (< 0: never)."""
    argv = ["train", "--data", str(archive), "--out", str(out), "--quiet", "--model", CONFIG.model,
            "--train-size", str(CONFIG.train_size), "--test-size", str(CONFIG.test_size),
            "--epochs", str(CONFIG.epochs), "--batch-size", str(CONFIG.batch_size)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    return subprocess.run([sys.executable, "-c", CHILD, str(delay), *argv], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """(archive, the folder of an uninterrupted child run, its duration after the imports)."""
    root = tmp_path_factory.mktemp("kill")
    archive = write_cifar10_archive(root, train_per_class=4, test_per_class=2, seed=0)
    proc = run_child(archive, root / "reference", -1)
    assert proc.returncode == 0, proc.stderr
    seconds = float(proc.stdout.split("seconds ")[-1])
    return archive, root / "reference", seconds


@pytest.fixture(scope="module")
def kills(tmp_path_factory):
    """A fresh folder per kill moment."""
    root, count = tmp_path_factory.mktemp("killed"), []

    def fresh():
        count.append(None)
        return root / f"run{len(count)}"

    return fresh


@settings(max_examples=KILLS)
@given(fraction=st.floats(0.0, 1.1))
def test_a_run_killed_at_any_moment_resumes_bit_identically(reference, kills, fraction):
    archive, reference_run, seconds = reference
    out = kills()
    proc = run_child(archive, out, fraction * seconds)
    assert proc.returncode in (0, -9), proc.stderr  # finished, or killed by SIGKILL
    assert "Traceback" not in proc.stderr

    started = out.is_dir() and runs.run_files(out)
    T.train(CONFIG, out, data_path=archive, resume=bool(started), quiet=True, print_fn=lambda *a: None)

    for name in ("weights.npz", "checkpoint.npz"):
        assert_npz_identical(reference_run / name, out / name)
    assert without_timing(read_log(out)) == without_timing(read_log(reference_run))
    assert json.loads((out / "config.json").read_text()) == json.loads((reference_run / "config.json").read_text())
    assert not runs.stale_temp_files(out)


# ------------------------------------------------------------ issue 21: the five ways to lose a file
#
# Each in a real process, on real files, with a real signal where the issue had one. F is a
# finished 2-epoch run; every refusal must be one line naming the file, rc 1, and leave every file
# of the folder (and the file a link points at) byte-identical.

TINY = ["--model", "resnet8", "--train-size", "20", "--test-size", "10", "--batch-size", "10", "--quiet"]


def minibasis(*argv, **kwargs):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    return subprocess.Popen([sys.executable, "-m", "minibasis.cli", *map(str, argv)], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def finished(proc, timeout=300):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def snapshot(folder):
    """{name: bytes, or the target of a link} of everything in ``folder``, .lock included."""
    return {p.name: (os.readlink(p) if p.is_symlink() else p.read_bytes()) for p in sorted(Path(folder).iterdir())}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """(archive, F): a finished 2-epoch run, to copy."""
    root = tmp_path_factory.mktemp("loss")
    archive = write_cifar10_archive(root, train_per_class=4, test_per_class=2, seed=0)
    code, _, err = finished(minibasis("train", "--data", archive, *TINY, "--epochs", 2, "--out", root / "F"))
    assert code == 0, err
    return archive, root / "F"


def copy_of(run, tmp_path):
    return Path(shutil.copytree(run, tmp_path / "F"))


def assert_refused(code, out, err, names):
    assert code == 1 and out == "", (code, out, err)
    assert err.count("\n") == 1 and err.startswith(f"minibasis train: error: {names}: expected"), err


def test_loss_1_the_lock_never_follows_a_link(finished_run, tmp_path):
    archive, run = finished_run
    folder = copy_of(run, tmp_path)
    precious = tmp_path / "precious.txt"
    precious.write_text("years of notes\n")
    (folder / ".lock").symlink_to(precious)
    before = snapshot(folder)
    for argv in (["--epochs", 2, "--overwrite"], ["--resume"], ["--epochs", 2]):
        code, out, err = finished(minibasis("train", "--data", archive, *TINY, *argv, "--out", folder))
        assert_refused(code, out, err, folder / ".lock")
        assert precious.read_text() == "years of notes\n" and snapshot(folder) == before


def test_loss_2_a_users_lock_file_is_never_overwritten(finished_run, tmp_path):
    archive, _ = finished_run
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / ".lock").write_text("do not touch\n")
    code, out, err = finished(minibasis("train", "--data", archive, *TINY, "--epochs", 1, "--out", folder))
    assert_refused(code, out, err, folder / ".lock")
    assert "a file it did not make" in err and snapshot(folder) == {".lock": b"do not touch\n"}


def test_refused_runs_leave_no_lock_or_folder(finished_run, tmp_path):
    archive, run = finished_run
    folder = copy_of(run, tmp_path)
    before = snapshot(folder)
    code, out, err = finished(minibasis("train", "--data", archive, "--resume", "--lr", 0.5, "--out", folder))
    assert code == 1 and snapshot(folder) == before, err  # no .lock left behind
    code, out, err = finished(minibasis("train", "--data", tmp_path / "none.tar.gz", *TINY, "--out", tmp_path / "new"))
    assert code == 1 and not (tmp_path / "new").exists(), err


@pytest.mark.parametrize("argv", [["--resume", "--epochs", 4, "--stop-after", 1], ["--resume"]])
def test_loss_3_and_4_a_run_without_its_checkpoint_is_refused_not_restarted(finished_run, tmp_path, argv):
    """Issue 21.3 (extending) and 21.4 (plain resume, which emptied the log at its start)."""
    archive, run = finished_run
    folder = copy_of(run, tmp_path)
    (folder / "checkpoint.npz").unlink()
    before = snapshot(folder)
    code, out, err = finished(minibasis("train", "--data", archive, *argv, "--out", folder))
    assert_refused(code, out, err, folder / "checkpoint.npz")
    assert "log.jsonl records 2 epochs" in err and "--overwrite" in err
    assert snapshot(folder) == before


def test_loss_4_ctrl_c_in_a_resumed_epoch_keeps_the_log_and_the_command_it_gives_works(finished_run, tmp_path):
    """A real SIGINT in the first epoch of a resume: the log keeps its records, the weights stay
    the last checkpoint's, and the command the message gives continues the run (data remembered)."""
    archive, run = finished_run
    folder = copy_of(run, tmp_path)
    before = snapshot(folder)
    proc = minibasis("train", "--resume", "--epochs", 400, "--progress-every", 0, "--out", folder)
    line = proc.stderr.readline()  # "resuming" goes to stdout; the first progress line means epoch 3 runs
    assert line.startswith("epoch 3/400"), (line, proc.stderr.read())
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)  # a second Ctrl-C at once: still one line
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("minibasis train: interrupted.") and "Traceback" not in err, err
    command = last.split("Continue with: ")[1]
    assert command == f"minibasis train --resume --out {folder}"
    assert f"{folder}: resuming at epoch 3 of 400" in out or "extending the run from 2 to 400 epochs" in out, out
    records = read_log(folder)
    assert [r["epoch"] for r in records[:2]] == [1, 2] and records[:2] == [json.loads(l) for l in before["log.jsonl"].splitlines()]
    code, out, err = finished(minibasis(*command.split()[1:], "--stop-after", 1, "--quiet"))
    assert code == 0 and "resuming at epoch" in out, (out, err)


@pytest.mark.parametrize("content", ['{"name": "my-app"}\n', '{"model": "resnet8"}\n'])
def test_loss_5_a_users_config_json_is_not_a_run_and_overwrite_keeps_it(finished_run, tmp_path, content):
    archive, _ = finished_run
    folder = tmp_path / "app"
    folder.mkdir()
    (folder / "config.json").write_text(content)
    for extra in ([], ["--overwrite"]):
        code, out, err = finished(minibasis("train", "--data", archive, *TINY, "--epochs", 1, *extra, "--out", folder))
        assert_refused(code, out, err, folder / "config.json")
        assert "a file minibasis did not write" in err and "--overwrite" not in err
        assert snapshot(folder) == {"config.json": content.encode()}


def test_overwrite_removes_only_what_minibasis_wrote(finished_run, tmp_path):
    archive, run = finished_run
    folder = copy_of(run, tmp_path)
    (folder / "notes.txt").write_text("mine")
    (folder / "weights.npz").write_bytes(b"my own weights, not an npz")
    before = snapshot(folder)
    code, out, err = finished(minibasis("train", "--data", archive, *TINY, "--epochs", 1, "--overwrite", "--out", folder))
    assert_refused(code, out, err, folder / "weights.npz")
    assert snapshot(folder) == before
