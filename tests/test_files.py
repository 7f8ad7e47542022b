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
    """Files and the lock get the mode the umask gives, as open() would, not tempfile.mkstemp's
    0600 whatever the umask."""
    umask(mask)
    atomic_write(tmp_path / "a.txt", lambda f: f.write(b"x"))
    atomic_savez(tmp_path / "b.npz", {"a": np.zeros(2)})
    with folder_lock(tmp_path / "run"):
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
        assert (folder / ".lock").read_text() == f"minibasis lock, PID {os.getpid()}\n"
        with pytest.raises(FolderBusy) as info:  # another open file: flock refuses it even in this process
            with folder_lock(folder):
                pass
        assert (
            str(info.value)
            == f"{folder}: expected a folder no other process is using, got one locked by PID {os.getpid()}"
        )
        assert (
            folder / ".lock"
        ).read_text() == f"minibasis lock, PID {os.getpid()}\n"  # the failed attempt changed nothing
    assert not (folder / ".lock").exists()  # the holder removes it
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
    assert (folder / ".lock").read_text() == f"minibasis lock, PID {holder.pid}\n"  # a kill -9 leaves the file ...
    with folder_lock(folder):  # ... but no stale lock
        assert (folder / ".lock").read_text() == f"minibasis lock, PID {os.getpid()}\n"


# ------------------------------------------------------------------------------ foreign lock files


def _refused(folder):
    with pytest.raises(FileExistsError) as info:
        with folder_lock(folder):
            raise AssertionError("locked a folder whose .lock minibasis did not make")
    return str(info.value)


def test_a_symlinked_lock_is_refused_and_its_target_untouched(tmp_path):
    precious = tmp_path / "precious.txt"
    precious.write_text("my notes\n")
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / ".lock").symlink_to(precious)
    assert (
        _refused(folder) == f"{folder / '.lock'}: expected a lock file minibasis made, "
        "got a symbolic link (never followed); move it away"
    )
    assert precious.read_text() == "my notes\n" and (folder / ".lock").is_symlink()


def test_a_dangling_symlinked_lock_creates_nothing(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / ".lock").symlink_to(tmp_path / "made-by-the-lock")
    _refused(folder)
    assert not (tmp_path / "made-by-the-lock").exists() and sorted(p.name for p in folder.iterdir()) == [".lock"]


@pytest.mark.parametrize("content", [b"", b"1234\n", b"my own lock file\n"])
def test_a_users_lock_file_is_refused_and_kept(tmp_path, content):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / ".lock").write_bytes(content)
    assert "expected a lock file minibasis made (starting 'minibasis lock'), got a file it did not make" in _refused(
        folder
    )
    assert (folder / ".lock").read_bytes() == content


def test_a_hard_linked_lock_is_refused(tmp_path):
    other = tmp_path / "other"
    other.write_bytes(b"minibasis lock, PID 1\n")  # even one that looks like ours
    folder = tmp_path / "run"
    folder.mkdir()
    os.link(other, folder / ".lock")
    assert _refused(folder).endswith("got a file with 2 hard links; move it away")
    assert other.read_bytes() == b"minibasis lock, PID 1\n"


def test_a_lock_leaves_nothing_behind_and_removes_the_folder_it_made(tmp_path):
    with pytest.raises(KeyError):
        with folder_lock(tmp_path / "new"):
            raise KeyError("refused")
    assert not (tmp_path / "new").exists()
    (tmp_path / "old").mkdir()
    with folder_lock(tmp_path / "old"):
        pass
    assert list((tmp_path / "old").iterdir()) == []


def test_a_failed_write_names_the_file(tmp_path):
    def full(f):
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError) as info:
        atomic_write(tmp_path / "w.npz", full)
    assert info.value.filename == str(tmp_path / "w.npz") and "nothing was written there" in info.value.strerror
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("content", [b"12809\n", b""])
def test_a_first_round_lock_is_adopted_only_when_asked(tmp_path, content):
    """The older format's lock file holds a PID alone: a run folder of ours keeps working
    (``adopt=True``, what train passes for a folder holding a minibasis run); elsewhere it is a
    user's file, refused and kept."""
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / ".lock").write_bytes(content)
    _refused(folder)
    assert (folder / ".lock").read_bytes() == content
    with folder_lock(folder, adopt=True):
        assert (folder / ".lock").read_text() == f"minibasis lock, PID {os.getpid()}\n"
    assert not (folder / ".lock").exists()
