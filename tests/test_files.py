"""Tests of minibasis.files: atomic writes with the umask's mode, and the folder lock (also
across real processes, and after a kill -9)."""

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minibasis.files import FolderBusy, atomic_savez, atomic_write, folder_lock, temp_files

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def umask():
    """Set the process umask for one test (restored after it)."""
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_get_the_mode_the_umask_gives(tmp_path, umask, mask, mode):
    """Issue 12.13: files were created 0600 (tempfile.mkstemp) whatever the umask."""
    umask(mask)
    atomic_write(tmp_path / "a.txt", lambda f: f.write(b"x"))
    atomic_savez(tmp_path / "b.npz", {"a": np.zeros(2)})
    with folder_lock(tmp_path / "run"):
        pass
    for path in (tmp_path / "a.txt", tmp_path / "b.npz", tmp_path / "run" / ".lock"):
        assert stat.S_IMODE(path.stat().st_mode) == mode, path


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "w.npz"
    atomic_savez(path, {"a": np.arange(3)})
    before = path.read_bytes()

    def half(f):
        f.write(b"PK\x03\x04 half")
        raise OSError("disk full (simulated)")

    with pytest.raises(OSError, match="simulated"):
        atomic_write(path, half)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.npz"]


def test_temp_files_are_those_of_one_name(tmp_path):
    names = [".w.npz.0a1b2c3d.tmp", ".w.npz.ffffffff.tmp", ".w.npzx.00000000.tmp", ".log.jsonl.00000000.tmp", "w.npz"]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in temp_files(tmp_path / "w.npz")] == [".w.npz.0a1b2c3d.tmp", ".w.npz.ffffffff.tmp"]


# ---------------------------------------------------------------------------- folder_lock


def test_folder_lock_is_exclusive_and_names_the_holder(tmp_path):
    folder = tmp_path / "run"
    with folder_lock(folder) as locked:
        assert locked == folder and folder.is_dir()
        assert (folder / ".lock").read_text() == f"{os.getpid()}\n"
        with pytest.raises(FolderBusy) as info:  # another open file: flock refuses it even in this process
            with folder_lock(folder):
                pass
        assert str(info.value) == f"{folder}: expected a folder no other process is using, got one locked by PID {os.getpid()}"
        assert (folder / ".lock").read_text() == f"{os.getpid()}\n"  # the failed attempt changed nothing
    with folder_lock(folder):  # released
        pass


HOLD = """
import sys, time
from minibasis.files import folder_lock
with folder_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(120)
"""


def test_a_lock_held_by_another_process_is_dropped_when_it_is_killed(tmp_path):
    folder = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(FolderBusy, match=rf"locked by PID {holder.pid}$"):
            with folder_lock(folder):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=60)
    with folder_lock(folder):  # kill -9 leaves no stale lock
        assert (folder / ".lock").read_text() == f"{os.getpid()}\n"
