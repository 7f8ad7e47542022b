"""Every tutorial runs to the end in fast mode, and the README lists every tutorial.

Each ``tutorials/NN_name.py`` is run as a script in a subprocess with ``MINIBASIS_FAST=1``
(tiny sizes; its own assertions hold), from the project root, exactly as a reader would run
it. A tutorial that needs the shared data or PyTorch skips those parts itself and still exits 0.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = sorted((ROOT / "tutorials").glob("[0-9][0-9]_*.py"))
TIMEOUT_S = 300


@pytest.mark.slow
@pytest.mark.parametrize("path", TUTORIALS, ids=[p.name for p in TUTORIALS])
def test_tutorial_runs_in_fast_mode(path):
    env = dict(os.environ, MINIBASIS_FAST="1", MPLBACKEND="Agg")
    try:
        done = subprocess.run(
            [sys.executable, str(path)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT_S
        )
    except subprocess.TimeoutExpired as error:
        pytest.fail(
            f"{path.name}: still running after {TIMEOUT_S} s in fast mode\n"
            f"--- stdout ---\n{error.stdout or ''}\n--- stderr ---\n{error.stderr or ''}"
        )
    assert done.returncode == 0, (
        f"{path.name}: exit code {done.returncode} in fast mode\n"
        f"--- stdout ---\n{done.stdout}\n--- stderr ---\n{done.stderr}"
    )


def test_there_are_tutorials():
    assert TUTORIALS, f"no tutorials/NN_*.py found under {ROOT / 'tutorials'}"


def test_readme_lists_every_tutorial():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [p.name for p in TUTORIALS if p.name not in readme]
    assert not missing, f"README.md does not mention these tutorials: {', '.join(missing)}"


def test_readme_figures_exist():
    """Every figure the README shows is in the repository (full mode redraws them)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    shown = re.findall(r"\]\((tutorials/figures/[^)]+\.png)\)", readme)
    assert shown, "README.md shows no tutorial figure"
    missing = [path for path in shown if not (ROOT / path).is_file()]
    assert not missing, f"README.md shows figures that do not exist: {', '.join(missing)}"
