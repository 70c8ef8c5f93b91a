"""The README's set-up commands and CI stay the same thing."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _command_lines(text: str) -> list[str]:
    return [ln.strip() for ln in text.splitlines() if ln.strip().startswith("python3 -m pip")]


def test_ci_runs_the_readmes_test_command():
    readme = _command_lines((REPO / "README.md").read_text())
    ci = _command_lines((REPO / ".ci" / "run").read_text())
    assert len(readme) == 2, "the README opens with exactly two set-up commands"
    assert readme[1].endswith("python3 -m pytest -q")
    assert ci == [readme[1]]
    # both install the same way
    install = readme[0].split("&& facealign")[0]
    assert readme[1].startswith(install.replace("-e .", "-e '.[test]'").strip())
