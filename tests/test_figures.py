"""The committed figures are what the tutorials' code draws at full size.

When a tutorial draws a figure (``tutorials/tutorial_setup.save_figure``) it writes, beside the
PNG, a ``.json`` record: the plotted data, the PNG's SHA-256, the mode and a fingerprint of the
tutorial's code (its tokens without comments, so prose edits do not count). Three checks, none
of which runs an expensive tutorial:

1. every committed figure has its record, drawn in full mode, and the PNG is the one drawn with
   that data (same hash);
2. the tutorial's code is still the code that drew it (same fingerprint): change the code and
   this fails until the figure is redrawn;
3. the library underneath cannot change the picture unnoticed either, where that is cheap: the
   tutorials whose full run took at most ``CHEAP_S`` seconds are run again in full mode into a
   temporary folder, and their plotted data must match the record (5 % on every value, as the
   figures are read by eye; values below 1e-12 of a curve's largest are rounding noise). The
   slow tutorials (03: the trained network on 1,000 images; 06: training) are held by 1 and 2,
   and so is every figure where ``../shared/data`` is absent (the committed ones use it).

Redraw with ``MINIBASIS_FIGURES=tutorials/figures python tutorials/NN_….py`` (full mode).
"""

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "tutorials" / "figures"
DATA = ROOT.parent / "shared" / "data"
PNGS = sorted(FIGURES.glob("*.png"))
CHEAP_S = 20
sys.path.insert(0, str(ROOT / "tutorials"))
from tutorial_setup import code_fingerprint  # noqa: E402  (tutorials/ is not a package)


def record_of(png):
    path = png.with_suffix(".json")
    assert path.is_file(), f"{png.name}: no record {path.name} beside it; redraw it: {redraw(png.name[:2])}"
    return json.loads(path.read_text(encoding="utf-8"))


def tutorial(number):
    return next((ROOT / "tutorials").glob(f"{number}_*.py"))


def redraw(number):
    return f"MINIBASIS_FIGURES=tutorials/figures python tutorials/{tutorial(number).name}"


def test_there_are_committed_figures():
    assert PNGS, f"no figures in {FIGURES}"


@pytest.mark.parametrize("png", PNGS, ids=[p.name for p in PNGS])
def test_a_committed_figure_is_its_record_drawn_by_the_current_code(png):
    record = record_of(png)
    assert record["figure"] == png.name
    assert record["tutorial"] == tutorial(png.name[:2]).name
    assert record["mode"] == "full", f"{png.name} was drawn in {record['mode']} mode; redraw it: {redraw(png.name[:2])}"
    assert record["png_sha256"] == hashlib.sha256(png.read_bytes()).hexdigest(), (
        f"{png.name} is not the picture its record's data was drawn into; redraw it: {redraw(png.name[:2])}"
    )
    assert record["code_sha256"] == code_fingerprint(tutorial(png.name[:2])), (
        f"{record['tutorial']}'s code changed since {png.name} was drawn; redraw it "
        f"(~{record['seconds']:.0f} s): {redraw(png.name[:2])}"
    )


def test_the_code_fingerprint_ignores_comments_and_sees_code(tmp_path):
    script = tmp_path / "script.py"
    script.write_text("# %% [markdown]\n# prose\nx = 1  # why\n\ny = x + 1\n")
    original = code_fingerprint(script)
    script.write_text("# %% [markdown]\n# other prose\n\n\nx = 1  # because\ny = x + 1\n")
    assert code_fingerprint(script) == original
    script.write_text("# %% [markdown]\n# prose\nx = 1  # why\n\ny = x + 2\n")
    assert code_fingerprint(script) != original


def cheap_tutorials():
    """Numbers of the tutorials whose committed figures took at most CHEAP_S seconds to draw."""
    seconds = {}
    for png in PNGS:
        if png.with_suffix(".json").is_file():
            number = png.name[:2]
            seconds[number] = max(seconds.get(number, 0), record_of(png)["seconds"])
    return sorted(number for number, s in seconds.items() if s <= CHEAP_S)


def assert_same_curves(got, recorded, where):
    """Nested dicts of lists of numbers, equal in structure and close in value."""
    if isinstance(recorded, dict):
        assert isinstance(got, dict) and sorted(got) == sorted(recorded), (
            f"{where}: keys {sorted(got) if isinstance(got, dict) else got}, recorded {sorted(recorded)}"
        )
        for key in recorded:
            assert_same_curves(got[key], recorded[key], f"{where}.{key}")
        return
    got, recorded = np.asarray(got, dtype=float), np.asarray(recorded, dtype=float)
    assert got.shape == recorded.shape, f"{where}: shape {got.shape}, recorded {recorded.shape}"
    floor = 1e-12 * np.max(np.abs(recorded), initial=0.0)
    assert np.allclose(got, recorded, rtol=0.05, atol=floor), f"{where}: drawn {got}, recorded {recorded}"


@pytest.mark.slow
@pytest.mark.skipif(not DATA.is_dir(), reason="the committed figures are drawn with ../shared/data")
@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="needs matplotlib to draw")
@pytest.mark.parametrize("number", cheap_tutorials())
def test_a_cheap_tutorial_draws_its_committed_data_again(number, tmp_path):
    env = dict(os.environ, MINIBASIS_FIGURES=str(tmp_path), MPLBACKEND="Agg")
    env.pop("MINIBASIS_FAST", None)
    done = subprocess.run(
        [sys.executable, str(tutorial(number))], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for png in FIGURES.glob(f"{number}_*.png"):
        drawn = json.loads((tmp_path / png.name).with_suffix(".json").read_text(encoding="utf-8"))
        assert_same_curves(drawn["data"], record_of(png)["data"], png.name)
