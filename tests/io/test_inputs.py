"""facealign_cli.io.inputs: walking folders, filters, stdin lists and collision-free output keys."""

from __future__ import annotations

import io

import pytest

from facealign_cli.io.inputs import InputError, assign_keys, collect_inputs


def _touch(root, *rels):
    for r in rels:
        p = root / r
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")


def test_walk_recursive_sorted_case_insensitive_extensions(tmp_path):
    _touch(tmp_path, "b.JPG", "a.png", "sub/c.Tiff", "sub/deeper/d.webp", "e.bmp", "f.jpeg",
           "g.tif", "notes.txt", "h.gif", ".hidden.jpg", ".cache/i.jpg", "sub/._j.jpg")
    items = collect_inputs([str(tmp_path)])
    assert [it.rel for it in items] == ["a.png", "b.JPG", "e.bmp", "f.jpeg", "g.tif",
                                        "sub/c.Tiff", "sub/deeper/d.webp"]
    assert [it.key for it in items] == ["a", "b", "e", "f", "g", "sub/c", "sub/deeper/d"]
    assert [it.index for it in items] == list(range(7))
    assert items[5].path.endswith("sub/c.Tiff") and items[5].path.startswith(str(tmp_path))


def test_explicit_file_any_extension_and_keys(tmp_path):
    _touch(tmp_path, "dir/x.jpg", "odd.data")
    items = collect_inputs([str(tmp_path / "odd.data"), str(tmp_path / "dir")])
    assert [(it.rel, it.key) for it in items] == [("odd.data", "odd"), ("x.jpg", "x")]


def test_missing_argument_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        collect_inputs([str(tmp_path / "missing")])


def test_stdin_list(tmp_path):
    _touch(tmp_path, "a.jpg", "f/b.png")
    text = f"{tmp_path / 'a.jpg'}\r\n\n{tmp_path / 'f'}\n{tmp_path / 'gone.jpg'}\n"
    items = collect_inputs(["-"], stdin=io.StringIO(text), missing_ok=True)
    assert [it.rel for it in items] == ["a.jpg", "b.png", "gone.jpg"]
    with pytest.raises(InputError):
        collect_inputs(["-"], stdin=io.StringIO(str(tmp_path / "gone.jpg")))


def test_include_exclude(tmp_path):
    _touch(tmp_path, "keep/a.jpg", "keep/b.png", "drop/c.jpg", "d.JPG")
    items = collect_inputs([str(tmp_path)], include=["*.jpg"], exclude=["drop/*"])
    assert [it.rel for it in items] == ["d.JPG", "keep/a.jpg"]
    items = collect_inputs([str(tmp_path)], include=["keep/*"])
    assert [it.rel for it in items] == ["keep/a.jpg", "keep/b.png"]


def test_duplicates_kept_once_and_out_dir_skipped(tmp_path):
    _touch(tmp_path, "a.jpg", "out/prev.jpg")
    items = collect_inputs([str(tmp_path), str(tmp_path / "a.jpg")],
                           skip_dirs=[tmp_path / "out"])
    assert [it.rel for it in items] == ["a.jpg"]


def test_same_names_in_different_roots_do_not_collide(tmp_path):
    _touch(tmp_path, "r1/x.jpg", "r2/x.jpg", "r1/y.jpg", "r1/y.png", "r1/Z.jpg", "r2/z.jpg")
    items = collect_inputs([str(tmp_path / "r1"), str(tmp_path / "r2")])
    keys = [it.key for it in items]
    assert len({k.lower() for k in keys}) == len(keys)
    assert keys == ["Z.jpg", "x.jpg", "y.jpg", "y.png", "x.jpg~2", "z.jpg~2"]


def test_assign_keys_rule():
    assert assign_keys(["a.jpg", "a.png", "b/c.jpg"]) == ["a.jpg", "a.png", "b/c"]
    assert assign_keys(["s/a.jpg", "a.jpg"]) == ["s/a", "a"]
    assert assign_keys(["a.jpg", "a.jpg", "a.jpg"]) == ["a.jpg", "a.jpg~2", "a.jpg~3"]
