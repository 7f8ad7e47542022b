"""The code's style holds in CI: ruff's formatter and linter, with pyproject.toml's settings
(line length 120), over the package, the tests, the benches, the experiments and the tutorials."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECKED = ["minibasis", "tests", "bench", "experiments", "tutorials"]


def ruff(*args):
    return subprocess.run([sys.executable, "-m", "ruff", *args, *CHECKED], cwd=ROOT, capture_output=True, text=True)


@pytest.mark.parametrize("command", [("format", "--check"), ("check",)], ids=["format", "lint"])
def test_ruff_passes(command):
    result = ruff(*command)
    assert result.returncode == 0, (
        f"ruff {' '.join(command)} (pip install -e '.[test]' brings ruff):\n{result.stdout}{result.stderr}"
    )
