"""What every tutorial needs before it starts: this checkout's minibasis, the mode, the paths.

``FAST`` (``MINIBASIS_FAST=1``): tiny sizes, as the tests run the tutorials. ``FIGURES``:
``tutorials/figures`` in full mode (the README shows them), a temporary folder in fast mode (a
test run leaves the checkout untouched). ``DATA``: ``../shared/data`` beside the project root
(it may be absent: the tutorials then skip what needs it). ``plt``: matplotlib's pyplot on the
Agg backend, or None when matplotlib (an optional extra) is not installed. ``save_figure``:
how every tutorial writes a figure.
"""

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the minibasis of this checkout, installed or not

FAST = os.environ.get("MINIBASIS_FAST") == "1"
DATA = ROOT.parent / "shared" / "data"
FIGURES = Path(tempfile.gettempdir()) / "minibasis-tutorial-figures" if FAST else ROOT / "tutorials" / "figures"
FIGURES.mkdir(parents=True, exist_ok=True)

try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:  # the claims are still checked; only the pictures are skipped
    plt = None
    print("matplotlib is not installed: figures are skipped (pip install -e '.[plot]')")


def save_figure(fig, name, max_bytes=150_000):
    """Write ``fig`` to ``FIGURES / name`` at 100 dpi, close it, and check it stays small."""
    path = FIGURES / name
    fig.savefig(path, dpi=100)
    plt.close(fig)
    size = path.stat().st_size
    print(f"wrote {path} ({size // 1024} KB)")
    assert size < max_bytes, f"figures stay small: {path} has {size:,} bytes, expected < {max_bytes:,}"
    return path
