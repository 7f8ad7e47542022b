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
