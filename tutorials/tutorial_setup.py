"""What every tutorial needs before it starts: this checkout's minibasis, BLAS on one thread, the
mode, the paths.

Importing this module first (every tutorial does) puts this checkout's minibasis on the path and
pins NumPy's BLAS to one thread before any linear algebra runs: OpenBLAS' own threads spin between
calls, so beside another busy process an SVD ran ~40× slower (tutorial 04: 76 s instead of 2 s).

``FAST`` (``MINIBASIS_FAST=1``): tiny sizes, as the tests run the tutorials. ``FIGURES``: where the
figures go, ``MINIBASIS_FIGURES=DIR`` if given (the committed ones are drawn with
``MINIBASIS_FIGURES=tutorials/figures`` in full mode), otherwise a folder in the system's temporary
directory: a tutorial never writes into the checkout unless asked. ``DATA``: ``../shared/data``
beside the project root (it may be absent: the tutorials then skip what needs it). ``plt``:
matplotlib's pyplot on the Agg backend, or None when matplotlib (an optional extra) is not
installed. ``save_figure``: how every tutorial writes a figure, with the data it plots.
"""

import getpass
import hashlib
import io
import json
import os
import sys
import tempfile
import time
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the minibasis of this checkout, installed or not

import minibasis  # noqa: E402, F401  (after the path: this checkout's; importing it pins NumPy's BLAS to one thread,

#                   before the tutorial's first SVD)

FAST = os.environ.get("MINIBASIS_FAST") == "1"
DATA = ROOT.parent / "shared" / "data"
SCRATCH_FIGURES = Path(tempfile.gettempdir()) / f"minibasis-figures-{getpass.getuser()}"  # one per user: no clash
FIGURES = Path(os.environ.get("MINIBASIS_FIGURES") or SCRATCH_FIGURES).resolve()
STARTED = time.perf_counter()

try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:  # the claims are still checked; only the pictures are skipped
    plt = None
    print("matplotlib is not installed: figures are skipped (pip install -e '.[plot]')")


def code_fingerprint(path):
    """SHA-256 of a script's code tokens: comments, blank lines and markdown cells do not count,
    so a figure stays current when only the prose around its code changes."""
    with open(path, "rb") as source:
        tokens = tokenize.tokenize(source.readline)
        kept = [t.string for t in tokens if t.type not in (tokenize.COMMENT, tokenize.NL, tokenize.ENCODING)]
    return hashlib.sha256("\x00".join(kept).encode()).hexdigest()


def _plain(value):
    """The plotted data as JSON: arrays become lists of floats rounded to 6 significant digits."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    value = value.tolist() if hasattr(value, "tolist") else value  # NumPy arrays and scalars
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return float(f"{float(value):.6g}")


def _write_atomically(path, data):
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def save_figure(fig, name, data, max_bytes=150_000):
    """Write ``fig`` to ``FIGURES / name`` (100 dpi) and, beside it, ``name`` with ``.json``: the
    ``data`` it plots (a dict of arrays or numbers), the PNG's SHA-256, the tutorial's code
    fingerprint and the mode. tests/test_figures.py holds a committed figure to that record."""
    FIGURES.mkdir(parents=True, exist_ok=True)
    path = FIGURES / name
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100, metadata={"Software": None})  # no version stamp: same code, same bytes
    plt.close(fig)
    png = png.getvalue()
    assert len(png) < max_bytes, f"figures stay small: {name} has {len(png):,} bytes, expected < {max_bytes:,}"
    script = getattr(sys.modules["__main__"], "__file__", None)  # None in a notebook: no fingerprint
    record = {
        "figure": name,
        "tutorial": script and Path(script).name,
        "code_sha256": script and code_fingerprint(script),
        "png_sha256": hashlib.sha256(png).hexdigest(),
        "mode": "fast" if FAST else "full",
        "seconds": round(time.perf_counter() - STARTED, 1),
        "data": _plain(data),
    }
    _write_atomically(path, png)
    _write_atomically(path.with_suffix(".json"), (json.dumps(record, indent=1) + "\n").encode())
    print(f"wrote {path} ({len(png) // 1024} KB) and its data {path.with_suffix('.json').name}")
    return path
