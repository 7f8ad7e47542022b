"""The README's two commands are the ones CI and a new user run."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def bash_blocks(text):
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    test_command = next(block.strip() for block in bash_blocks(readme) if "pytest" in block)
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()
    assert ci[-1] == test_command


def test_the_readme_starts_with_install_and_the_main_job():
    first = bash_blocks((ROOT / "README.md").read_text(encoding="utf-8"))[0].strip()
    assert first.startswith("pip install -e . && minibasis train")


def test_the_readme_python_snippets_run_in_order(tmp_path, monkeypatch):
    """The Library snippet, then the reference-mode one, as a reader pastes them into one session
    (the oracle's snippets stand for the reader's own implementation: they need a `net`)."""
    sections = re.split(r"^## ", (ROOT / "README.md").read_text(encoding="utf-8"), flags=re.M)
    runnable = [s for s in sections if s.startswith(("Library\n", "Two forms of every kernel\n"))]
    blocks = [block for section in runnable for block in re.findall(r"```python\n(.*?)```", section, flags=re.S)]
    assert len(blocks) >= 2, "README.md: expected the Library and the reference-mode snippets"
    monkeypatch.chdir(tmp_path)  # the snippet saves w.npz into the current folder
    session = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), session)
    assert (tmp_path / "w.npz").is_file()
    assert session["logits"].shape == (2, 1000), "the last snippet applies the ImageNet MobileNetV2 to 2 images"
