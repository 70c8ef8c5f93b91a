"""Names: no input name can make an output take the run's own files (manifest, sheet, state
folder) or leave ``--out``; another run's output folder inside the input is not walked; a file
named like a video that holds an image fails clearly; odd names and folders nested deeper than
the interpreter's recursion limit survive every writer, the contact sheet included. The runs
use the fast fake model (``fake_model``) on images and clips built here."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from urllib.parse import unquote_to_bytes

import numpy as np
import pytest

from facealign_cli.batch.manifest import read_manifest

cv2 = pytest.importorskip("cv2")

from cli_helpers import invoke  # noqa: E402
from cli_helpers import write_image as _img  # noqa: E402


def _clip(path: Path, n: int = 3) -> Path:
    """A small mp4v clip of ``n`` frames the fake model finds a face in."""
    path.parent.mkdir(parents=True, exist_ok=True)
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (80, 60))
    assert vw.isOpened()
    for i in range(n):
        img = np.full((60, 80, 3), 90, np.uint8)
        img[30:, : 40 + i] = 200
        vw.write(img)
    vw.release()
    return path


def _manifest(out: Path) -> list[dict]:
    return read_manifest(out / "manifest.jsonl")  # (names' bytes kept: surrogateescape)


def _tree(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


def test_a_video_named_manifest_never_replaces_the_runs_manifest(tmp_path, fake_model):
    src, out = tmp_path / "in", tmp_path / "out"
    _clip(src / "manifest.mp4")
    _img(src / "b.jpg")
    for _ in range(2):  # the second run resumes: both items done earlier
        r = invoke(["detect", src, "--out", out])
        assert r.exit_code == 0, r.output
        lines = _manifest(out)
        assert [Path(ln["path"]).name for ln in lines] == ["b.jpg", "manifest.mp4"]
        assert lines[1]["outputs"] == ["manifest_.jsonl"]
        frames = (out / "manifest_.jsonl").read_text("utf-8").splitlines()
        assert [json.loads(f)["frame"] for f in frames] == [0, 1, 2]
    assert lines[1]["status"] == "skipped" and lines[1]["error"] is None


@pytest.mark.parametrize("command,folder,extra", [
    ("landmarks", "manifest.jsonl", []),
    ("landmarks", "Manifest.JSONL", []),  # a case-insensitive file system: the same name
    ("render", "index.html", ["--sheet"]),
    ("render", "index-2.html", ["--sheet"]),
    ("landmarks", "pose.csv", []),  # (where a pose run in the same --out puts its table)
])
def test_an_input_folder_named_like_the_runs_own_files_is_renamed(tmp_path, fake_model,
                                                                   command, folder, extra):
    src, out = tmp_path / "in", tmp_path / "out"
    _img(src / folder / "a.jpg")
    _img(src / "b.jpg")
    for _ in range(2):
        r = invoke([command, src, "--out", out, *extra])
        assert r.exit_code == 0, r.output
    assert {Path(ln["path"]).name for ln in _manifest(out)} == {"a.jpg", "b.jpg"}
    outputs = [o for ln in _manifest(out) for o in ln["outputs"]]
    top = {o.split("/")[0] for o in outputs if not o.startswith(".thumbs/")}
    assert not top & {folder, "manifest.jsonl", "index.html", ".facealign", "index-2.html"}
    if command == "render":
        assert (out / "index.html").is_file() and "a.jpg" in (out / "index.html").read_text()


def test_files_named_with_dots_stay_inside_out_and_out_of_its_state(tmp_path, fake_model):
    """``...mp4``'s stem is ``..``: its key is ``.._``, and ``mesh`` writes the frames' meshes
    under ``<out>/.._/``, never above ``--out``; ``.facealign.mp4``'s go to
    ``<out>/.facealign_/``, not into the run's state folder."""
    src, out = tmp_path / "in", tmp_path / "out"
    videos = [_clip(src / "...mp4"), _clip(src / ".facealign.mp4")]
    photo = src / "..jpg"
    _img(photo)
    for _ in range(2):
        r = invoke(["mesh", *videos, photo, "--out", out, "--mesh-every", "1"])
        assert r.exit_code == 0, r.output
    assert _tree(tmp_path) - {"in", "out"} == {f"in/{p.name}" for p in [*videos, photo]} | {
        f"out/{p}" for p in _tree(out)}
    lines = _manifest(out)
    assert [ln["status"] for ln in lines] == ["skipped"] * 3  # done by the first run
    for ln, folder in zip(lines, [".._/", ".facealign_/"]):
        assert ln["outputs"] and all(o.startswith(folder) for o in ln["outputs"])
        assert (out / folder / "frame000002_track0.obj").is_file()
    assert lines[2]["outputs"] == ["._" + "_face0.obj", "._" + "_face1.obj"]  # key "._"


def test_another_runs_output_folder_inside_the_input_is_not_walked(tmp_path, fake_model):
    from facealign_cli.io.inputs import RUN_FOLDER_REASON

    src = tmp_path / "in"
    _img(src / "a.jpg")
    _img(src / "sub" / "c.jpg")
    assert invoke(["render", src, "--out", src / "look"]).exit_code == 0  # overlays in in/look
    assert (src / "look" / "a.jpg").is_file()
    out = tmp_path / "out"
    r = invoke(["landmarks", src, "--out", out])
    assert r.exit_code == 0, r.output
    lines = _manifest(out)
    assert [(ln["status"], ln["message"] if ln["status"] == "skipped" else None)
            for ln in lines] == [("ok", None), ("skipped", RUN_FOLDER_REASON), ("ok", None)]
    assert lines[1]["path"] == os.path.join(src, "look")
    assert not (out / "look").exists()
    # named on the command line, such a folder is walked (its overlays are what was asked for)
    r = invoke(["landmarks", src / "look", "--out", tmp_path / "out2"])
    assert r.exit_code == 0 and (tmp_path / "out2" / "a.json").is_file()


def test_an_image_named_like_a_video_fails_clearly(tmp_path, fake_model):
    src, out = tmp_path / "in", tmp_path / "out"
    _img(src / "photo.jpg")
    os.replace(src / "photo.jpg", src / "photo.mp4")
    r = invoke(["landmarks", src, "--out", out])
    assert r.exit_code == 1, r.output
    (line,) = _manifest(out)
    assert line["status"] == "failed" and line["error"] == "NotAVideoError"
    assert "JPEG image" in line["message"] and not (out / "photo.jsonl").exists()


def test_the_summary_counts_videos_and_images_apart(tmp_path, fake_model):
    src = tmp_path / "in"
    _clip(src / "v.mp4")
    r = invoke(["detect", src, "--out", tmp_path / "o1"])
    assert r.exit_code == 0 and "detect: 1 video(s): 1 ok" in r.stderr, r.stderr
    _img(src / "a.jpg")
    _img(src / "b.jpg")
    r = invoke(["detect", src, "--out", tmp_path / "o2"])
    assert "detect: 2 image(s) and 1 video(s): 3 ok" in r.stderr, r.stderr


ODD_NAMES = ["a b.jpg", "ünï cødé.jpg", "#hash.jpg", "100%.jpg", "what?.jpg",
             "it's \"q\".jpg", "<b>&amp;.jpg", "-dash.jpg", "semi;colon.jpg", "é.jpg",
             "e\u0301x.jpg", "tab\there.jpg"]


def _odd_tree(src: Path) -> list[Path]:
    """The odd names, a name that is not UTF-8, and a photo nested deeper than the
    interpreter's recursion limit (one-letter folders)."""
    paths = [src / n for n in ODD_NAMES]
    paths.append(Path(os.fsdecode(os.path.join(os.fsencode(src), b"latin1-\xe9t\xe9.jpg"))))
    deep = src
    for _ in range(sys.getrecursionlimit() + 20):  # (Path.mkdir(parents=True) recurses)
        deep = deep / "d"
        deep.mkdir(parents=deep.parent == src)
    paths.append(deep / "deep.jpg")
    for p in paths:
        _img(p)
    return paths


def test_odd_names_and_deep_folders_survive_landmarks_and_the_sheet(deep_tmp, fake_model):
    tmp_path = deep_tmp
    src = tmp_path / "in"
    paths = _odd_tree(src)
    out = tmp_path / "lm"
    for _ in range(2):  # the second run resumes (done records, stale-temp sweep: any depth)
        r = invoke(["landmarks", src, "--out", out])
        assert r.exit_code == 0, r.output
    lines = _manifest(out)
    assert {ln["path"] for ln in lines} == {str(p) for p in paths}
    for ln in lines:
        (rel,) = ln["outputs"]
        doc = json.loads(out.joinpath(*rel.split("/")).read_text("utf-8", "surrogateescape"))
        assert doc["path"] == ln["path"] and len(doc["faces"]) == 2

    look = tmp_path / "look"
    for _ in range(2):
        r = invoke(["render", src, "--out", look, "--sheet"])
        assert r.exit_code == 0, r.output
    page = (look / "index.html").read_text("utf-8")
    links = re.findall(r'(?:href|src)="([^"#]+)"', page)
    targets = {unquote_to_bytes(u.replace("&amp;", "&").replace("&#x27;", "'")
                                .replace("&quot;", '"').replace("&lt;", "<")
                                .replace("&gt;", ">")) for u in links}
    assert len(targets) == 2 * len(paths)  # an overlay and a thumbnail each
    for t in targets:
        assert os.path.isfile(os.path.join(os.fsencode(look), t)), t
    assert "&lt;b&gt;&amp;amp;.jpg" in page and "<b>" not in page


@pytest.mark.parametrize("command,files,folder", [
    ("landmarks", ["a.jpg", "a.json/b.jpg"], "a.json"),     # a.json (file) / a.json/ (folder)
    ("mesh", ["a.jpg", "a.json/b.jpg"], "a.json"),          # the done records clash
    ("render", ["a.png", "a.jpg/b.jpg"], "a.jpg"),          # the overlay a.jpg / a.jpg/
    ("mesh", ["a.jpg", "a_face0.obj/b.jpg"], "a_face0.obj"),
    ("mesh", ["x.jpg", "x_face0.obj.mp4"], "x_face0.obj"),  # a video's mesh folder
])
def test_a_folder_named_like_another_inputs_output_file_is_renamed(tmp_path, fake_model,
                                                                    command, files, folder):
    src, out = tmp_path / "in", tmp_path / "out"
    for f in files:
        (_clip if f.endswith(".mp4") else _img)(src / f)
    for run in range(2):  # every run: both ok (the second resumes both)
        r = invoke([command, src, "--out", out])
        assert r.exit_code == 0, r.output
        lines = _manifest(out)
        assert [ln["status"] for ln in lines] == ["ok" if run == 0 else "skipped"] * 2, lines
    moved = [ln for ln in lines if ln["outputs"][0].startswith(folder + "_")]
    assert len(moved) == 1 and not (out / folder).is_dir()
    assert "renamed" in _manifest_first_run(tmp_path, command, src)[files.index(
        next(f for f in files if f.startswith(folder)))]["message"]
    listed = {o for ln in lines for o in ln["outputs"]}
    written = {p for p in _tree(out) if (out / p).is_file()
               and not p.startswith((".facealign", ".thumbs")) and p != "manifest.jsonl"
               and p != "index.html"}
    assert written == listed  # nothing left on disk that no line lists


def _manifest_first_run(tmp_path: Path, command: str, src: Path) -> list[dict]:
    out = tmp_path / "fresh"
    assert invoke([command, src, "--out", out]).exit_code == 0
    return _manifest(out)


def test_names_over_255_bytes_are_shortened_with_a_hash(tmp_path, fake_model):
    src, out = tmp_path / "in", tmp_path / "out"
    # 250 bytes each (the files' names 254), the same 240-byte prefix: "<stem>_face0.obj" would
    # be 260 bytes, over the 255 of every common file system
    long_a, long_b = "é" * 124 + "-a", "é" * 124 + "-b"
    _img(src / f"{long_a}.jpg")
    _img(src / f"{long_b}.jpg")
    _img(src / "short.jpg")
    for run in range(2):
        r = invoke(["mesh", src, "--out", out])
        assert r.exit_code == 0, r.output
        lines = _manifest(out)
        assert [ln["status"] for ln in lines] == ["ok" if run == 0 else "skipped"] * 3, lines
        if run == 0:
            first = lines
    names = [p.name for p in out.rglob("*")]
    assert max(len(os.fsencode(n)) for n in names) <= 255
    shortened = [ln for ln in first if ln["message"] and "shortened" in ln["message"]]
    assert len(shortened) == 2 and all(ln["outputs"] for ln in shortened)
    a, b = (ln["outputs"][0] for ln in shortened)
    assert a != b and a.startswith("é" * 90) and re.search(r"~[0-9a-f]{12}_face0\.obj$", a)
    assert [ln["message"] for ln in first if "short" in ln["path"]] == [None]
    assert [ln["outputs"] for ln in lines] == [ln["outputs"] for ln in first]  # deterministic
