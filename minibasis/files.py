"""File safety: a file a user made is never left half-written, overwritten by accident, or
written by two processes at once.

* :func:`atomic_write` / :func:`atomic_savez`: every write of a run file or weight file goes to
  a temp file ``.NAME.XXXXXXXX.tmp`` in the same folder, is fsync'ed, then renamed onto the final
  name in one ``os.replace``. A crash leaves the old file or the new one, never a mix; a kill
  may leave the temp file, which :func:`temp_files` finds (the run folder removes stale ones).
  Files are created with the mode the umask gives (0644 under umask 022), like any other
  program's files, so a run folder can be shared.
* :func:`folder_lock`: an exclusive lock on a folder for the life of a ``with`` block.
"""

import os
import secrets
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .checks import fail

try:
    import fcntl  # POSIX only
except ImportError:  # pragma: no cover - Windows
    fcntl = None

LOCK_NAME = ".lock"


def atomic_write(path, write):
    """Call ``write(f)`` on a temp file in ``path``'s folder, fsync, then os.replace it onto
    ``path``: a crash, or an exception from ``write``, never leaves a half-written file there."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp, fd = _create_temp(path)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if tmp.exists():
            tmp.unlink()
        raise
    return path


def _create_temp(path):
    """``(temp path, open fd)``: a new file beside ``path``, mode 0666 less the umask (as
    ``open()`` creates files; ``tempfile.mkstemp`` would make it 0600)."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        except FileExistsError:  # 1 in 4 billion: draw another name
            continue


def temp_files(path):
    """The temp files :func:`atomic_write` of ``path`` leaves when it is killed mid-write."""
    path = Path(path)
    return sorted(path.parent.glob(f".{path.name}.*.tmp"))


def atomic_savez(path, arrays):
    """np.savez through :func:`atomic_write`."""
    return atomic_write(path, lambda f: np.savez(f, **arrays))


class FolderBusy(RuntimeError):
    """Another process holds the lock of a folder (see :func:`folder_lock`)."""


@contextmanager
def folder_lock(folder):
    """Hold an exclusive lock on ``folder`` (created if missing) while the block runs.

    POSIX: ``fcntl.flock`` on ``folder/.lock``, which then holds the holder's PID. A second
    process raises :class:`FolderBusy` at once, naming the folder and that PID, having changed
    nothing (the lock file is opened without truncating it). The operating system drops the
    lock when the holder exits or is killed (kill -9 included), so a lock is never stale; the
    lock file itself stays (deleting it would let two processes lock two different files).
    Elsewhere (Windows has no ``fcntl``) no lock is taken: two processes are not kept apart
    there, but a fresh run still refuses a folder that holds another run's files.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if fcntl is None:  # pragma: no cover - Windows
        yield folder
        return
    fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown (it is starting)"
            fail(str(folder), "a folder no other process is using", f"one locked by PID {holder}", FolderBusy)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield folder
    finally:
        os.close(fd)  # releases the lock
