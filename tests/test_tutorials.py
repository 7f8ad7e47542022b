"""Every tutorial runs to the end in fast mode and draws its figures where it is told, and the
README lists every tutorial.

Each ``tutorials/NN_name.py`` is run as a script in a subprocess with ``MINIBASIS_FAST=1``
(tiny sizes; its own assertions hold), from the project root, exactly as a reader would run
it, with ``MINIBASIS_FIGURES`` pointing at a temporary folder: its figure code runs at the small
size, and the checkout is left untouched. A tutorial that needs the shared data or PyTorch skips
those parts itself and still exits 0. tests/test_figures.py holds the committed figures to
their code at full size.
"""

import getpass
import hashlib
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = sorted((ROOT / "tutorials").glob("[0-9][0-9]_*.py"))
FIGURES = ROOT / "tutorials" / "figures"
DATA = ROOT.parent / "shared" / "data"
TIMEOUT_S = 300
HAVE_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


def run_fast(path, **env):
    """Run one tutorial in fast mode; fail with its output if it does not exit 0."""
    env = dict(os.environ, MINIBASIS_FAST="1", MPLBACKEND="Agg", **env)
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
    return done


def checkout_figures():
    """What tutorials/figures holds: name → content hash."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(FIGURES.iterdir())}


@pytest.mark.slow
@pytest.mark.parametrize("path", TUTORIALS, ids=[p.name for p in TUTORIALS])
def test_tutorial_runs_in_fast_mode_and_draws_its_figures(path, tmp_path):
    before = checkout_figures()
    run_fast(path, MINIBASIS_FIGURES=str(tmp_path))
    assert checkout_figures() == before, f"{path.name} changed tutorials/figures without being asked"
    committed = sorted(p.name for p in FIGURES.glob(f"{path.name[:2]}_*.png"))
    drawn = sorted(p.name for p in tmp_path.glob("*.png"))
    assert set(drawn) <= set(committed), f"{path.name} drew {drawn}, but the checkout has only {committed}"
    if HAVE_MATPLOTLIB and DATA.is_dir():  # without them a tutorial skips a figure on purpose
        assert drawn == committed, f"{path.name} drew {drawn} in fast mode, expected the committed {committed}"
    for name in drawn:
        record = json.loads((tmp_path / name).with_suffix(".json").read_text(encoding="utf-8"))
        assert record["mode"] == "fast" and record["tutorial"] == path.name, f"{name}.json: {record}"
        assert record["png_sha256"] == hashlib.sha256((tmp_path / name).read_bytes()).hexdigest()
        assert record["data"], f"{name}.json records no plotted data"


@pytest.mark.skipif(not HAVE_MATPLOTLIB, reason="needs matplotlib to draw")
def test_without_minibasis_figures_a_tutorial_draws_into_the_temporary_folder(tmp_path):
    before = checkout_figures()
    env = {key: value for key, value in os.environ.items() if key != "MINIBASIS_FIGURES"}
    tutorial = ROOT / "tutorials" / "04_sharing_a_basis.py"
    done = subprocess.run(
        [sys.executable, str(tutorial)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        env=dict(env, MINIBASIS_FAST="1", MPLBACKEND="Agg", TMPDIR=str(tmp_path)),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    scratch = tmp_path / f"minibasis-figures-{getpass.getuser()}"
    assert (scratch / "04_shared_decomposition.png").is_file(), f"no figure in {scratch}: {done.stdout}"
    assert checkout_figures() == before, "a tutorial wrote into tutorials/figures without MINIBASIS_FIGURES"


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
