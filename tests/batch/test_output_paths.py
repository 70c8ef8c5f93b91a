"""Where a result's files are written (``facealign_cli.batch.state.commit``, the one write path
of every backend): a path that would leave ``--out`` or take the run's own files fails the
image, and nothing of it is written."""

from __future__ import annotations

import pytest

from facealign_cli.batch.record_types import DoneRecord
from facealign_cli.batch.result import ImageResult
from facealign_cli.batch.state import commit


def _result(key: str, *rels: str) -> ImageResult:
    files = tuple((rel, b"mesh") for rel in rels)
    return ImageResult("in/x.mp4", key, "ok", n_faces=1, outputs=rels, files=files,
                       done=DoneRecord({}, "in/x.mp4", 1, rels, 64, 48))


@pytest.mark.parametrize("key,rels", [
    ("..", ("../frame000000_track0.obj",)),          # a key that leaves --out
    ("x", ("x/../../frame000000_track0.obj",)),
    ("x", ("/frame000000_track0.obj",)),             # absolute
    ("x", ("x//frame.obj",)),                        # empty component
    ("manifest", ("manifest.jsonl",)),               # the run's own names
    ("x", ("Manifest.JSONL",)),                      # (as a case-insensitive system sees it)
    ("index", ("index.html",)),
    ("pose", ("pose.csv",)),
    (".facealign", (".facealign/state.sqlite3",)),
    ("index", ("index/frame000000_track0.obj",)),     # a key used as a folder
    ("x", ("x.obj", "../y.obj")),                    # one bad file: none is written
])
def test_an_unsafe_output_path_fails_the_image_and_writes_nothing(tmp_path, key, rels):
    out = tmp_path / "run" / "out"
    out.mkdir(parents=True)
    res = commit(out, "mesh", _result(key, *rels))
    assert res.status == "failed" and res.error == "UnsafeOutputError", res
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_thumbnails_and_ordinary_outputs_are_written(tmp_path):
    res = commit(tmp_path, "render", _result("sub/a", "sub/a.jpg", ".thumbs/sub/a.jpg"))
    assert res.status == "ok", res
    assert (tmp_path / "sub" / "a.jpg").read_bytes() == b"mesh"
    assert (tmp_path / ".thumbs" / "sub" / "a.jpg").is_file()


def test_a_file_where_a_folder_goes_fails_the_image_before_any_write(tmp_path):
    (tmp_path / "a.json").write_bytes(b"another input's output")
    res = commit(tmp_path, "mesh", _result("a.json/b", "a.json/b_face0.obj", "c_face0.obj"))
    assert res.status == "failed" and res.error == "UnsafeOutputError", res
    assert "a.json is a file" in res.message
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")
                  if p.is_file()) == ["a.json"]


def test_a_write_error_removes_the_files_of_the_image_already_written(tmp_path, monkeypatch):
    from facealign_cli.io import records

    real = records.atomic_open
    calls = []

    def failing(path, *a, **kw):  # the second file of the image hits a full disk
        calls.append(path)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(path, *a, **kw)

    monkeypatch.setattr(records, "atomic_open", failing)
    res = commit(tmp_path, "mesh", _result("x", "x_face0.obj", "x_face1.obj"))
    monkeypatch.setattr(records, "atomic_open", real)
    assert len(calls) == 2 and res.status == "failed" and res.error == "OSError", res
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
