"""facealign_cli.io.inputs: walking folders, filters, stdin lists and collision-free output keys."""

from __future__ import annotations

import io
import json
import os
import re

import pytest

from facealign_cli.batch.manifest import read_manifest
from facealign_cli.io.inputs import InputError, assign_keys, collect_inputs, fold_key


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


# ---------------------------------------------------------------- unique keys (issue 12.3)


def _outputs(items):
    """The landmarks output file of each processed item, folded as a case-insensitive file
    system compares names."""
    return [fold_key(it.key + ".json") for it in items if not it.skipped]


def test_suffix_never_takes_another_inputs_key(tmp_path):
    _touch(tmp_path, "d1/x.jpg", "d2/x.jpg", "d2/x.jpg~2.jpg")
    args = [str(tmp_path / "d1/x.jpg"), str(tmp_path / "d2/x.jpg"),
            str(tmp_path / "d2/x.jpg~2.jpg")]
    items = collect_inputs(args)
    assert [it.key for it in items] == ["x.jpg", "x.jpg~3", "x.jpg~2"]
    assert len(set(_outputs(items))) == 3
    assert [it.key for it in collect_inputs(args)] == [it.key for it in items]  # deterministic


def test_case_variants_in_one_folder(tmp_path):
    names = ["A.jpg", "a.jpg", "a.jpg~2.jpg"]
    _touch(tmp_path, *names)
    if len(list(tmp_path.iterdir())) < 3:
        pytest.skip("case-insensitive file system")
    items = collect_inputs([str(tmp_path)])
    assert [it.rel for it in items] == names
    assert [it.key for it in items] == ["A.jpg", "a.jpg~3", "a.jpg~2"]
    assert len(set(_outputs(items))) == 3


def test_assign_keys_unique_folded_over_random_lists():
    import random

    rng = random.Random(12)
    parts = ["x", "X", "x.jpg", "x.jpg~2", "x~2", "x.JPG~3", "é", "e\u0301", "É", "y.png~2"]
    for _ in range(2000):
        rels = []
        for _ in range(rng.randint(1, 9)):
            folder = rng.choice(["", "", "s/", "S/"])
            rels.append(folder + rng.choice(parts) + rng.choice([".jpg", ".png", ".JPG", ""]))
        keys = assign_keys(rels)
        assert len({fold_key(k) for k in keys}) == len(keys), (rels, keys)
        assert assign_keys(rels) == keys
        # the first input of each name keeps its name (with or without the extension)
        assert keys[0] in (rels[0], rels[0].rsplit(".", 1)[0])


def test_assign_keys_nfc_and_case():
    assert assign_keys(["caf\u00e9.jpg", "cafe\u0301.jpg"]) == ["caf\u00e9.jpg",
                                                                  "cafe\u0301.jpg~2"]
    assert assign_keys(["Straße.jpg", "STRASSE.png"]) == ["Straße.jpg", "STRASSE.png"]
    assert assign_keys(["Straße.jpg", "strasse.jpg"]) == ["Straße.jpg", "strasse.jpg~2"]


# ---------------------------------------------------------------- entries that cannot be taken


def test_special_entries_are_reported_in_walk_order(tmp_path):
    import socket

    _touch(tmp_path, "a.jpg", "m.jpg", "sub/z.jpg", "real/r.jpg", "notes.txt")
    os.mkfifo(tmp_path / "fifo.jpg")
    os.symlink("/dev/null", tmp_path / "dev.png")
    os.symlink(tmp_path / "nowhere.jpg", tmp_path / "gone.jpg")
    os.symlink("loop.jpg", tmp_path / "loop.jpg")
    os.symlink(tmp_path / "real", tmp_path / "linked")
    os.symlink(tmp_path / "nowhere", tmp_path / "gone_dir")
    os.symlink("/dev/null", tmp_path / "pipe.txt")  # not named like an image: ignored
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(tmp_path / "s.webp"))
        items = collect_inputs([str(tmp_path)])
    finally:
        sock.close()
    got = [(it.rel, it.skip_reason) for it in items]
    assert got == [
        ("a.jpg", None),
        ("dev.png", "a device, not a regular file"),
        ("fifo.jpg", "a FIFO (named pipe), not a regular file"),
        ("gone.jpg", "dangling symbolic link (its target does not exist)"),
        ("gone_dir", "dangling symbolic link (its target does not exist)"),
        ("loop.jpg", "symbolic link loop"),
        ("m.jpg", None),
        ("s.webp", "a socket, not a regular file"),
        ("linked", "symbolic link to a folder (not followed)"),
        ("real/r.jpg", None),
        ("sub/z.jpg", None),
    ]
    assert all(it.key == "" for it in items if it.skipped)
    assert [it.key for it in items if not it.skipped] == ["a", "m", "real/r", "sub/z"]
    assert [it.index for it in items] == list(range(len(items)))


def test_unreadable_subfolder_is_reported(tmp_path, monkeypatch):
    _touch(tmp_path, "a.jpg", "locked/b.jpg", "open/c.jpg")
    locked = tmp_path / "locked"
    if os.geteuid() != 0:
        locked.chmod(0)
    else:  # root reads any folder: make listing it fail the way a permission error does
        real_scandir = os.scandir

        def scandir(path):
            if os.fspath(path) == str(locked):
                raise PermissionError(13, "Permission denied", str(path))
            return real_scandir(path)

        monkeypatch.setattr(os, "scandir", scandir)
    try:
        items = collect_inputs([str(tmp_path)], include=["*.jpg"])
    finally:
        locked.chmod(0o755)
    assert [(it.rel, it.skip_reason) for it in items] == [
        ("a.jpg", None), ("locked", "cannot read folder: Permission denied"),
        ("open/c.jpg", None)]
    assert items[1].path == str(locked) and items[1].skipped
    # an excluded folder is not reported
    items = collect_inputs([str(tmp_path)], exclude=["locked/*"])
    assert [it.rel for it in items] == ["a.jpg", "open/c.jpg"]


# ---------------------------------------------------------------- through the batch engine


def _run_landmarks(items, out):
    from fakes import FakeFactory

    from facealign_cli.batch.options import RunOptions
    from facealign_cli.batch.runner import run_batch

    err = io.StringIO()
    summary = run_batch(items, RunOptions.make("landmarks", str(out), jobs=1,
                                          aligner_factory=FakeFactory(), progress="never"),
                        stdout=io.BytesIO(), stderr=err)
    lines = read_manifest(out / "manifest.jsonl")
    return summary, lines, err.getvalue()


def test_batch_one_output_per_input_and_skipped_entries_recorded(tmp_path):
    cv2 = pytest.importorskip("cv2")
    import numpy as np

    src = tmp_path / "in"
    for i, rel in enumerate(["d1/x.jpg", "d2/x.jpg", "d2/x.jpg~2.jpg", "d3/A.jpg",
                             "d3/a.jpg", "d3/a.jpg~2.jpg"]):
        p = src / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        img = np.full((64, 64 + 8 * i, 3), 40 + 10 * i, np.uint8)  # each a different width
        p.write_bytes(cv2.imencode(".jpg", img)[1].tobytes())
    os.mkfifo(src / "d3" / "pipe.jpg")
    os.symlink(src / "nowhere.jpg", src / "d2" / "gone.jpg")
    args = [str(src / "d1/x.jpg"), str(src / "d2"), str(src / "d3")]
    out = tmp_path / "out"
    summary, lines, err = _run_landmarks(collect_inputs(args), out)
    assert summary.ok == 6 and summary.failed == 0 and summary.exit_code == 0
    by_path = {ln["path"]: ln for ln in lines}
    assert len(lines) == 8
    for rel, why in [("d2/gone.jpg", "dangling symbolic link"), ("d3/pipe.jpg", "FIFO")]:
        ln = by_path[str(src / rel)]
        assert ln["status"] == "skipped" and ln["error"] == "InputSkipped"
        assert why in ln["message"] and ln["outputs"] == []
        assert f"facealign: warning: skipped {src / rel}: " in err
    # every image has its own output file, holding its own size (none overwritten)
    outs = [ln["outputs"][0] for ln in lines if ln["status"] == "ok"]
    assert len({fold_key(o) for o in outs}) == 6
    for ln in lines:
        if ln["status"] == "ok":
            doc = json.loads((out / ln["outputs"][0]).read_text())
            assert doc["path"] == ln["path"]
    # a re-run finds every image done (same keys), and records the entries again
    summary, lines2, _ = _run_landmarks(collect_inputs(args), out)
    assert summary.ok == 0 and summary.skipped == 8
    assert [ln["path"] for ln in lines2] == [ln["path"] for ln in lines]


def test_keys_never_leave_out_nor_take_reserved_names():
    reserved = {"manifest.jsonl", "manifest", "index.html"}.__contains__
    keys = assign_keys(["...mp4", "..jpg", "manifest.mp4", "manifest_.jpg", "MANIFEST.avi",
                        "index.html/a.jpg", "sub/..x.jpg", ".."], reserved)
    # (manifest_ is claimed three times, .._ twice: those keep their extensions)
    assert keys == ["...mp4", "._", "manifest.mp4", "manifest_.jpg", "MANIFEST.avi",
                    "index.html_/a", "sub/..x", ".._"]
    for k in keys:
        assert all(c not in ("", ".", "..") for c in k.split("/")), k
        assert not reserved(fold_key(k.split("/")[0])), k
    assert len({fold_key(k) for k in keys}) == len(keys)
    assert assign_keys(["...mp4", "manifest.mp4", "a/b.jpg"], reserved) == [
        ".._", "manifest_", "a/b"]


def test_walking_is_not_bounded_by_the_recursion_limit(deep_tmp):
    import sys

    tmp_path = deep_tmp
    d = tmp_path / "in"
    d.mkdir()
    depth = sys.getrecursionlimit() + 20
    for _ in range(depth):
        d = d / "d"
        d.mkdir()
    (d / "deep.jpg").write_bytes(b"x")
    (tmp_path / "in" / "top.jpg").write_bytes(b"x")
    items = collect_inputs([str(tmp_path / "in")])
    assert [os.path.basename(it.path) for it in items] == ["top.jpg", "deep.jpg"]
    assert items[1].key == "d/" * depth + "deep"


def test_assign_keys_renames_folders_that_another_keys_files_would_take():
    assert assign_keys(["a.jpg", "a.json/b.jpg"]) == ["a", "a.json_/b"]
    assert assign_keys(["a.png", "A.JPG/x.jpg"]) == ["a", "A.JPG_/x"]  # folded
    assert assign_keys(["a.jpg", "a.json/b.json/c.jpg", "a.json/b.jpg"]) == [
        "a", "a.json_/b.json_/c", "a.json_/b"]
    assert assign_keys(["x.jpg", "x_face3.glb/y.jpg", "x_face3.txt/y.jpg"]) == [
        "x", "x_face3.glb_/y", "x_face3.txt/y"]
    assert assign_keys(["x.jpg", "x.mp4/y.jpg"]) == ["x", "x.mp4_/y"]
    # a video's key is a folder too (mesh writes its frames there); an image's is not
    assert assign_keys(["x.jpg", "x.jsonl.mp4"]) == ["x", "x.jsonl_"]
    assert assign_keys(["x.jpg", "x.jsonl.png"]) == ["x", "x.jsonl"]
    # a folder renamed into an existing one: keys stay unique
    keys = assign_keys(["a.png", "a.jpg/x.jpg", "a.jpg_/x.jpg"])
    assert len({fold_key(k) for k in keys}) == 3 and keys[0] == "a"
    # a benign neighbour is left alone
    assert assign_keys(["2020.jpg", "2020_trip/a.jpg"]) == ["2020", "2020_trip/a"]


def test_assign_keys_shortens_long_components_deterministically():
    from facealign_cli.io.key_names import MAX_COMPONENT_BYTES

    long = "ü" * 140  # 280 bytes
    rels = [f"{long}/{long}a.jpg", f"{long}/{long}b.jpg", f"{long}a.jpg", f"{long}a.png"]
    keys = assign_keys(rels)
    assert keys == assign_keys(rels)
    assert len({fold_key(k) for k in keys}) == 4
    for k in keys:
        for c in k.split("/"):
            assert len(c.encode()) <= MAX_COMPONENT_BYTES + 3  # (+ "~N" when needed)
            assert c.startswith("ü" * 90) and re.search(r"~[0-9a-f]{12}", c)
    assert keys[0].split("/")[0] == keys[1].split("/")[0]  # one folder, one name
    assert assign_keys(["ü" * 100 + ".jpg"]) == ["ü" * 100]  # 200 bytes: kept
