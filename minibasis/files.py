"""File safety: a file a user made is never left half-written, overwritten by accident, or
written by two processes at once.

* :func:`atomic_write` / :func:`atomic_savez`: every write of a run file or weight file goes to
  a temp file ``.NAME.XXXXXXXX.tmp`` in the same folder, is fsync'ed, then renamed onto the final
  name in one ``os.replace``. A crash leaves the old file or the new one, never a mix; a kill
  may leave the temp file, which :func:`temp_files` finds (the run folder removes stale ones).
  Files are created with the mode the umask gives (0644 under umask 022), like any other
  program's files, so a run folder can be shared.
* :func:`folder_lock`: an exclusive lock on a folder for the life of a ``with`` block; the lock
  file never follows a link and is never written into unless minibasis made it.
"""

import os
import re
import secrets
import stat
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
    except BaseException as error:
        tmp.unlink(missing_ok=True)
        if isinstance(error, OSError) and error.errno and error.filename is None:  # ENOSPC, EFBIG: say which file
            why = f"{error.strerror}; nothing was written there (a previous file is intact)"
            raise OSError(error.errno, why, str(path)) from None
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


LOCK_HEADER = b"minibasis lock"  # the first words of every lock file minibasis makes


@contextmanager
def folder_lock(folder, *, adopt=False):
    """Hold an exclusive lock on ``folder`` (created if missing) while the block runs.

    POSIX: ``fcntl.flock`` on ``folder/.lock``, a file that reads ``minibasis lock, PID <pid>``.
    A second process raises :class:`FolderBusy` at once, naming the folder and that PID, having
    changed nothing. The operating system drops the lock when the holder exits or is killed
    (kill -9 included), so a lock is never stale. The lock file never follows a link and is
    never written into unless minibasis made it: a ``.lock`` that is a symbolic link, has other
    hard links, or does not start with ``minibasis lock`` is refused, named, untouched. The
    holder removes the lock file when the block ends (while still holding the lock; a process
    that then finds its open file gone from the folder tries again), and removes the folder too
    if it made it and the block left it empty: a refused run leaves nothing behind.
    ``adopt=True``: also take a lock file the first round of minibasis made (a PID alone, or
    nothing), for a folder the caller knows holds a minibasis run.
    Elsewhere (Windows has no ``fcntl``) no lock is taken: two processes are not kept apart
    there, but a fresh run still refuses a folder that holds another run's files.
    """
    folder = Path(folder)
    made = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        if fcntl is None:  # pragma: no cover - Windows
            yield folder
            return
        fd = _acquire(folder / LOCK_NAME, adopt)
        try:
            yield folder
        finally:
            _release(folder / LOCK_NAME, fd)
    finally:
        if made and not any(folder.iterdir()):
            folder.rmdir()


def _acquire(path, adopt):
    """The open, flock'ed descriptor of the lock file at ``path`` (made if missing)."""
    while True:  # again only when the holder removed the file between our open and our flock
        _make_lock_file(path)
        try:
            fd = os.open(path, os.O_RDWR | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            continue
        except OSError:  # ELOOP: a symbolic link
            fail(
                str(path),
                "a lock file minibasis made",
                "a symbolic link (never followed); move it away",
                FileExistsError,
            )
        try:
            if _lock(fd, path, adopt):
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


def _make_lock_file(path):
    """Create ``path`` holding the header and this PID in one step (a hard link of a complete
    temp file: the lock file never exists half-written); nothing if ``path`` exists."""
    if os.path.lexists(path):
        return
    tmp, fd = _create_temp(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(_lock_text())
        os.link(tmp, path)  # fails if anything (a link included) is there
    except FileExistsError:
        pass
    finally:
        tmp.unlink()


def _lock_text():
    return LOCK_HEADER + f", PID {os.getpid()}\n".encode()


def _lock(fd, path, adopt):
    """flock ``fd``; False if it is no longer the file at ``path`` (removed by its holder)."""
    mine = os.fstat(fd)
    if not stat.S_ISREG(mine.st_mode) or mine.st_nlink != 1:
        what = "not a regular file" if not stat.S_ISREG(mine.st_mode) else f"a file with {mine.st_nlink} hard links"
        fail(str(path), "a lock file minibasis made", f"{what}; move it away", FileExistsError)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        text = os.pread(fd, 64, 0).decode(errors="replace")
        holder = text.rpartition("PID ")[2].strip() if text.startswith(LOCK_HEADER.decode()) else ""
        fail(
            str(path.parent),
            "a folder no other process is using",
            f"one locked by PID {holder or 'unknown (it is starting)'}",
            FolderBusy,
        )
    try:
        now = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    if (now.st_dev, now.st_ino) != (mine.st_dev, mine.st_ino):
        return False
    content = os.pread(fd, 64, 0)
    if not (content.startswith(LOCK_HEADER) or (adopt and re.fullmatch(rb"\d*\n?", content))):
        fail(
            str(path),
            f"a lock file minibasis made (starting {LOCK_HEADER.decode()!r})",
            f"a file it did not make ({content[:24]!r}); move it away or choose another folder",
            FileExistsError,
        )
    if content != _lock_text():  # ours, left by a killed holder: now held by this process
        os.ftruncate(fd, 0)
        os.pwrite(fd, _lock_text(), 0)
    return True


def _release(path, fd):
    """Remove the lock file if it is still ours, then drop the lock (by closing)."""
    try:
        mine, now = os.fstat(fd), os.stat(path, follow_symlinks=False)
        if (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino):
            path.unlink()
    except FileNotFoundError:
        pass
    finally:
        os.close(fd)
