"""Kill -9 a training run at any moment, and its folder is resumable,
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

import contextlib
import io
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
from minibasis import cli, runs
from support.cifar_files import write_cifar10_archive
from support.run_files import assert_npz_identical, cli_args, read_log, subprocess_env, without_timing

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
    argv, env = cli_args(CONFIG, out, archive), subprocess_env()
    return subprocess.run(
        [sys.executable, "-c", CHILD, str(delay), *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


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


# ---------------------------------------------------------------------- the five ways to lose a file
#
# Each in a real process, on real files, with a real signal where the loss needs one. F is a
# finished 2-epoch run; every refusal must be one line naming the file, rc 1, and leave every file
# of the folder (and the file a link points at) byte-identical.

TINY = ["--model", "resnet8", "--train-size", "20", "--test-size", "10", "--batch-size", "10", "--quiet"]


def minibasis(*argv, **kwargs):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    return subprocess.Popen(
        [sys.executable, "-m", "minibasis.cli", *map(str, argv)],
        cwd=ROOT,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kwargs,
    )


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
    """Extending (--epochs 4) or plainly resuming a run whose checkpoint is gone is refused in one
    line naming the checkpoint and the epochs the log records, and no file changes (the log is
    never emptied, the run never restarted over its files)."""
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
    assert [r["epoch"] for r in records[:2]] == [1, 2] and records[:2] == [
        json.loads(l) for l in before["log.jsonl"].splitlines()
    ]
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
    code, out, err = finished(
        minibasis("train", "--data", archive, *TINY, "--epochs", 1, "--overwrite", "--out", folder)
    )
    assert_refused(code, out, err, folder / "weights.npz")
    assert snapshot(folder) == before


# ---------------------------------------------------------------- any hand edit, then train --resume
#
# A run folder stopped after 1 of 3 epochs is edited by hand, one to three times: a file
# deleted, truncated, two files swapped, a byte flipped or a JSON field changed, a file replaced
# by a symbolic link to a file outside, a symbolic .lock planted. Then ``minibasis train --resume
# --out F``. Either the run continues and ends bit-identical to the uninterrupted run, or it is
# refused in one line naming a file of F, with every file there (and outside) byte-identical.

EDITS = 30 if os.environ.get("MINIBASIS_HYPOTHESIS_PROFILE") == "thorough" else 6
NAMES = ["config.json", "log.jsonl", "weights.npz", "checkpoint.npz"]
FIELDS = ["epochs", "lr", "model", "seed", "lam", "data", "extensions", "format", "mine"]
VALUES = [5, "2", None, 0.5, 10.0, "resnet14-s2u1", {}, [], "minibasis run 1"]

edit = st.one_of(
    st.tuples(st.just("delete"), st.sampled_from(NAMES)),
    st.tuples(st.just("truncate"), st.sampled_from(NAMES), st.floats(0, 1, exclude_max=True)),
    st.tuples(st.just("swap"), st.sampled_from(NAMES), st.sampled_from(NAMES)),
    st.tuples(st.just("flip"), st.sampled_from(NAMES), st.floats(0, 1, exclude_max=True)),
    st.tuples(
        st.just("field"),
        st.sampled_from(["config.json", "log.jsonl"]),
        st.sampled_from(FIELDS),
        st.sampled_from(VALUES),
    ),
    st.tuples(st.just("link"), st.sampled_from(NAMES + [".lock"])),
)


def apply_edit(folder, outside, change):
    kind, name, *rest = change
    path = folder / name
    if kind == "link":
        path.unlink(missing_ok=True)
        path.symlink_to(outside)
        return
    if not path.is_file() or path.is_symlink():
        return  # deleted or linked by an earlier edit
    data = path.read_bytes()
    if kind == "delete":
        path.unlink()
    elif kind == "truncate":
        path.write_bytes(data[: int(rest[0] * len(data))])
    elif kind == "swap" and (folder / rest[0]).is_file() and not (folder / rest[0]).is_symlink():
        path.write_bytes((folder / rest[0]).read_bytes())
        (folder / rest[0]).write_bytes(data)
    elif kind == "flip" and data:
        flipped = bytearray(data)
        flipped[int(rest[0] * len(data))] ^= 0x20
        path.write_bytes(bytes(flipped))
    elif kind == "field":
        lines = data.decode(errors="replace").splitlines() or ["{}"]
        try:
            record = json.loads(lines[0])
        except ValueError:
            return
        if isinstance(record, dict):
            lines[0] = json.dumps({**record, rest[0]: rest[1]})
            path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def stopped_and_straight(tmp_path_factory):
    """(a run stopped after 1 of 3 epochs, the uninterrupted 3-epoch run)."""
    root = tmp_path_factory.mktemp("edits")
    archive = write_cifar10_archive(root, train_per_class=4, test_per_class=2, seed=0)
    for name, extra in (("stopped", ["--stop-after", 1]), ("straight", [])):
        code, _, err = finished(
            minibasis("train", "--data", archive, *TINY, "--epochs", 3, *extra, "--out", root / name)
        )
        assert code == 0, err
    return root / "stopped", root / "straight"


@settings(max_examples=EDITS)
@given(changes=st.lists(edit, min_size=1, max_size=3))
def test_any_hand_edit_then_resume_continues_bit_identically_or_is_refused_naming_a_file(
    stopped_and_straight, kills, changes
):
    stopped, straight = stopped_and_straight
    folder = kills()
    shutil.copytree(stopped, folder)
    outside = folder.parent / f"{folder.name}-outside.txt"
    outside.write_text("a user's file\n")
    for change in changes:
        apply_edit(folder, outside, change)
    before = snapshot(folder)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = cli.main(["train", "--resume", "--quiet", "--out", str(folder)])
    err = err.getvalue()
    assert outside.read_text() == "a user's file\n"
    if code == 0:
        for name in ("weights.npz", "checkpoint.npz"):
            assert_npz_identical(straight / name, folder / name)
        assert without_timing(read_log(folder)) == without_timing(read_log(straight))
        assert (folder / "config.json").read_text() == (straight / "config.json").read_text()
        assert sorted(p.name for p in folder.iterdir()) == sorted(NAMES) and not any(
            p.is_symlink() for p in folder.iterdir()
        )
    else:
        assert code == 1 and err.count("\n") == 1 and "Traceback" not in err, (changes, err)
        assert err.startswith("minibasis train: error: ") and str(folder) in err, (changes, err)
        assert snapshot(folder) == before, changes
