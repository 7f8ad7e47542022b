"""The README's debugger recipe, run word for word through pdb; the number of `step`s it states;
``debug.break_in`` and ``debug.show``."""

import dis
import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import minibasis
from minibasis import conv_reference, debug

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
CODE = conv_reference.conv2d.__code__
FIRST_LINE = min(line for _, line in dis.findlinestarts(CODE) if line > CODE.co_firstlineno)  # the body's first line


def run_pdb(argv, commands, env_extra=None, timeout=300):
    """Run ``argv`` (a python command line) with ``commands`` on stdin; -> its stdout and stderr."""
    env = {key: value for key, value in os.environ.items() if key != "MINIBASIS_REFERENCE"}
    env.update({"PYTHONPATH": str(ROOT), **(env_extra or {})})
    stdin = "".join(f"{command}\n" for command in commands)
    run = subprocess.run(
        [sys.executable, *argv], input=stdin, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    return run.stdout + run.stderr


def readme_console_block():
    """The README's pdb session: (environment, argv, commands, expected output lines)."""
    block = re.search(r"```console\n(\$ MINIBASIS_REFERENCE=1 python -m pdb .*?)```", README, re.S).group(1)
    lines = block.splitlines()
    assignment, python, *argv = lines[0][2:].split()
    name, value = assignment.split("=")
    assert python == "python"
    commands = [line[len("(Pdb) ") :] for line in lines[1:] if line.startswith("(Pdb) ")]
    expected = [line for line in lines[1:] if not line.startswith("(Pdb) ")]
    return {name: value}, argv, commands, expected


def test_the_readme_recipe_stops_in_the_textbook_convolution_as_it_shows():
    env, argv, commands, expected = readme_console_block()
    assert commands[:3] == ["!import minibasis.debug", '!minibasis.debug.break_in("conv2d")', "continue"]
    output = run_pdb(argv, commands, env)
    position = 0
    for line in expected:  # in order; "…" stands for the checkout's path
        pattern = re.escape(line).replace("…", ".*")
        found = re.compile(pattern).search(output, position)
        assert found, f"the README shows {line!r}, pdb printed:\n{output[position:][:3000]}"
        position = found.end()
    assert f"conv_reference.py({FIRST_LINE})conv2d()" in output
    assert "the scripted session is skipped" in output, "tutorial 09 leaves your debugger alone"


def test_pdb_break_on_the_textbook_function_by_name_once_minibasis_is_imported():
    commands = [
        "!import minibasis.conv_reference",
        "break minibasis.conv_reference.conv2d",
        "continue",
        "p x.shape",
        "q",
    ]
    tutorial = "tutorials/09_stepping_through_in_a_debugger.py"
    output = run_pdb(["-m", "pdb", tutorial], commands, {"MINIBASIS_REFERENCE": "1"})
    assert f"conv_reference.py({FIRST_LINE})conv2d()" in output and "(2, 3, 8, 8)" in output, output[-3000:]


STEPPING = """\
import autograd
import autograd.numpy as anp
import numpy as np
import minibasis

x, w = np.ones((1, 2, 4, 4)), np.ones((3, 2, 3, 3))


def loss(w):
    y = minibasis.conv2d(x, w, padding=1)
    return anp.sum(y)


if {traced}:
    autograd.grad(loss)(w)
else:
    y = minibasis.conv2d(x, w, padding=1)
"""


def steps_to_the_textbook(tmp_path, traced):
    """(steps from a line calling conv2d to conv_reference.conv2d's first line, those in autograd)."""
    script = tmp_path / f"stepping_{traced}.py"
    script.write_text(STEPPING.format(traced=traced))
    line = 10 if traced else 17
    commands = [f"break {script}:{line}", "continue", *["step"] * 300, "quit"]
    output = run_pdb(["-m", "pdb", str(script)], commands, {"MINIBASIS_REFERENCE": "1"})
    stops = re.findall(r"^(?:\(Pdb\) )*> (\S+?)\((\d+)\)([\w<>]+)\(\)", output, re.M)  # one per stop, --Return-- too
    start = next(i for i, (path, number, _) in enumerate(stops) if path == str(script) and int(number) == line)
    after = stops[start + 1 :]
    textbook = [p.endswith("conv_reference.py") and name == "conv2d" and int(n) == FIRST_LINE for p, n, name in after]
    landed = textbook.index(True)
    in_autograd = sum(f"{os.sep}autograd{os.sep}" in path for path, _, _ in after[: landed + 1])
    return landed + 1, in_autograd


def test_the_readme_states_the_number_of_steps_from_a_conv2d_call_to_the_textbook(tmp_path):
    stated = re.search(
        r"reaches the same line in (\d+) steps, or (\d+)\s+under `autograd.grad` with the weight traced"
        r" \(Python (\S+), autograd (\S+)\)\.\s+Autograd's wrapper\s+\(`f_wrapped`, autograd/tracer.py\) takes (\d+) of"
        r" them, or (\d+) when",
        README,
    )
    assert stated, "the README's sentence that counts the steps"
    plain, traced, python, autograd_version, wrapper_plain, wrapper_traced = stated.groups()
    installed = importlib.metadata.version("autograd")
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    if here != python or not installed.startswith(f"{autograd_version}."):
        pytest.skip(f"the README counts for Python {python}, autograd {autograd_version}")
    assert steps_to_the_textbook(tmp_path, traced=False) == (int(plain), int(wrapper_plain))
    assert steps_to_the_textbook(tmp_path, traced=True) == (int(traced), int(wrapper_traced))


def test_break_in_starts_pdb_in_a_program_without_one(tmp_path):
    script = tmp_path / "program.py"
    script.write_text(
        "import numpy as np\nimport minibasis.debug\nminibasis.debug.break_in('conv2d')\n"
        "y = minibasis.conv2d(np.ones((1, 2, 4, 4)), np.ones((3, 2, 3, 3)), padding=1)\nprint('finished', y.shape)\n"
    )
    output = run_pdb([str(script)], ["p w.shape", "continue"], {"MINIBASIS_REFERENCE": "1"})
    assert f"conv_reference.py({FIRST_LINE})conv2d()" in output and "(3, 2, 3, 3)" in output, output
    assert "finished (1, 3, 4, 4)" in output


def test_show_prints_zero_without_a_sign(capsys):
    debug.show(np.array([-0.0, 0.0]))
    assert capsys.readouterr().out.strip() == "ndarray float64 (2,), min 0, max 0, mean 0"
    debug.show(minibasis.conv2d(np.ones((1, 1, 2, 2)), -np.ones((1, 1, 1, 1))))
    assert "min -1, max -1, mean -1" in capsys.readouterr().out
