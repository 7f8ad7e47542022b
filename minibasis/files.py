"""File safety: a file a user made is never left half-written or overwritten by accident.

Every write of a run file or weight file goes through :func:`atomic_write`: a temp file in the
same folder, fsync, then one ``os.replace`` onto the final name.
"""

import os
import tempfile
from pathlib import Path

import numpy as np


def atomic_write(path, write):
    """Call ``write(f)`` on a temp file in ``path``'s folder, fsync, then os.replace it onto
    ``path``: a crash, or an exception from ``write``, never leaves a half-written file there."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_savez(path, arrays):
    """np.savez through :func:`atomic_write`."""
    return atomic_write(path, lambda f: np.savez(f, **arrays))
