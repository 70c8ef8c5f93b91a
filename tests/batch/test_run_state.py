"""The run state of an output folder (SQLite): changed inputs and weights redone, the done
records of earlier versions imported, gone inputs reported, ``facealign status``, resume in
chunks (fake model: fast, no model files)."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from fakes import fake_factory  # noqa: E402

from facealign_cli.batch import run_db  # noqa: E402
from facealign_cli.batch.manifest import read_manifest  # noqa: E402
from facealign_cli.batch.options import RunOptions  # noqa: E402
from facealign_cli.batch.record_types import DoneRecord  # noqa: E402
from facealign_cli.batch.run_db import RunDB  # noqa: E402
from facealign_cli.batch.runner import run_batch  # noqa: E402
from facealign_cli.io import records  # noqa: E402
from facealign_cli.io.inputs import collect_inputs  # noqa: E402


def _photo(path: Path, seed: int, h=60, w=80) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.random.default_rng(seed).integers(0, 200, (h, w, 3), dtype=np.uint8)
    path.write_bytes(cv2.imencode(".png", img)[1].tobytes())


def _folder(root: Path, n: int) -> Path:
    for i in range(n):
        _photo(root / ("sub" if i % 2 else "") / f"p{i}.png", seed=i)
    return root


def _run(src: Path, out: Path, command="landmarks", **kw):
    items = collect_inputs([str(src)], skip_dirs=[str(out)])
    opts = RunOptions.make(command=command, out=str(out), aligner_factory=fake_factory,
                           progress="never", **kw)
    err = io.StringIO()
    return run_batch(items, opts, stderr=err), err.getvalue()


def _statuses(out: Path) -> dict[str, str]:
    return {Path(m["path"]).name: m["status"] for m in read_manifest(out / "manifest.jsonl")}


def test_a_replaced_photo_is_redone_and_no_file_per_image_is_kept(tmp_path):
    src, out = _folder(tmp_path / "in", 4), tmp_path / "out"
    s, _ = _run(src, out)
    assert s.ok == 4
    before = (out / "p0.json").read_bytes()
    _photo(src / "p0.png", seed=99, h=70)  # another photo under the same name
    s, _ = _run(src, out)
    assert (s.ok, s.skipped) == (1, 3)
    assert _statuses(out)["p0.png"] == "ok" and (out / "p0.json").read_bytes() != before
    # the state is one database: no record per image under .facealign
    assert sorted(p.name for p in (out / ".facealign").rglob("*") if p.is_file()
                  and "sqlite3" not in p.name) == ["landmarks.json", "lock"]


def test_same_size_and_time_but_other_content_is_redone_only_when_hashing(tmp_path):
    src, out = _folder(tmp_path / "in", 2), tmp_path / "out"
    p = src / "p2.bmp"  # (a BMP of the same size always has the same length)
    bmp = [cv2.imencode(".bmp", np.full((40, 50, 3), v, np.uint8))[1].tobytes() for v in (9, 99)]
    p.write_bytes(bmp[0])
    assert _run(src, out)[0].ok == 3
    st = p.stat()
    p.write_bytes(bmp[1])
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))  # as a copy keeping times would leave it
    assert p.stat().st_size == st.st_size
    s, _ = _run(src, out)
    assert s.skipped == 3  # by size and time it is the same file
    s, _ = _run(src, out, verify_inputs="hash")
    assert (s.ok, s.skipped) == (1, 2) and _statuses(out)["p2.bmp"] == "ok"
    # a copy of the archive with new times: by content, nothing changed
    for q in src.rglob("p*.*"):
        os.utime(q, ns=(1, 10**18))
    s, _ = _run(src, out, verify_inputs="hash")
    assert s.skipped == 3
    s, _ = _run(src, out)
    assert s.ok == 3  # by time, everything changed


def test_replaced_weights_at_the_same_path_redo_every_item(tmp_path):
    src, out = _folder(tmp_path / "in", 3), tmp_path / "out"
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"weights one")
    assert _run(src, out, weights=str(weights))[0].ok == 3
    assert _run(src, out, weights=str(weights))[0].skipped == 3
    weights.write_bytes(b"weights two")  # same path, other content
    assert _run(src, out, weights=str(weights))[0].ok == 3
    db = RunDB(out, readonly=True)
    docs = [json.loads(d) for (d,) in db.con.execute("SELECT doc FROM fingerprints")]
    db.close()
    shas = {d["models"].get("checkpoint") for d in docs}
    assert len(shas) == 2 and all(s and len(s) == 64 for s in shas)
    assert all(str(weights) not in json.dumps(d) for d in docs)  # by content, not path


def test_old_style_done_records_are_imported_and_their_outputs_kept(tmp_path):
    """An --out of an earlier version: its done records (written with ``DoneRecord.to_json``,
    the code path that wrote them) are imported once; items of the same settings are kept,
    those of other settings redone; the records folder is gone afterwards."""
    src, out = _folder(tmp_path / "in", 4), tmp_path / "out"
    assert _run(src, out)[0].ok == 4
    cmd_opts = RunOptions.make(command="landmarks", out=str(out), aligner_factory=fake_factory)
    old_fp = cmd_opts.cmd.fingerprint(cmd_opts)
    db = RunDB(out, readonly=True)
    rows = list(db.iter_items("landmarks"))
    db.close()
    for path in (out / ".facealign").glob("state.sqlite3*"):
        path.unlink()
    (out / "manifest.jsonl").unlink()
    for r in rows:  # what the old runner wrote per item
        fp = old_fp if r.key != "p0" else {**old_fp, "max_faces": 7}  # p0: other settings
        rec = DoneRecord(fp, r.path, r.n_faces, r.outputs, r.width, r.height)
        records.write_json(out / ".facealign" / "done" / "landmarks" / (r.key + ".json"),
                           rec.to_json(), indent=None)
    outputs = {p: p.read_bytes() for p in out.rglob("*.json") if ".facealign" not in p.parts}
    s, _ = _run(src, out)
    assert (s.ok, s.skipped) == (1, 3)
    assert _statuses(out)["p0.png"] == "ok"
    assert not (out / ".facealign" / "done").exists()
    assert all(p.read_bytes() == b for p, b in outputs.items())
    s, _ = _run(src, out)
    assert s.skipped == 4  # the imported items now carry their input's size and time


@pytest.mark.parametrize("column,value", [
    ("rows", '[["p.png",0,"ten"]]'),       # a pose row that is no row
    ("video", '{"frames":"3"}'),            # frame counts of the wrong type
    ("outputs", '["p0.json",3]'),           # an output that is no path
    ("faces", "not json"),
])
def test_a_state_row_that_does_not_validate_is_redone(tmp_path, column, value):
    """The state's rows are read back through ``DoneRecord.from_json``: a damaged or
    hand-edited row is left out of the look-ups, so its item is redone (and its row written
    anew), never trusted and never a crash."""
    src, out = _folder(tmp_path / "in", 3), tmp_path / "out"
    assert _run(src, out, command="pose")[0].ok == 3
    db = RunDB(out)
    db.con.execute(f"UPDATE items SET {column} = ? WHERE key = ?", (value, b"p0"))
    assert "p0" not in db.lookup("pose", ["p0", "p2"])
    assert len(list(db.iter_items("pose"))) == 2
    db.close()
    s, _ = _run(src, out, command="pose")
    assert (s.exit_code, s.ok, s.skipped) == (0, 1, 2)
    assert _statuses(out)["p0.png"] == "ok"
    db = RunDB(out, readonly=True)
    row = db.lookup("pose", ["p0"])["p0"]
    db.close()
    assert row.status == "ok" and row.outputs == ("pose.csv",) and row.n_faces > 0
    assert len(row.rows) == row.n_faces and row.rows[0].path == str(src / "p0.png")
    table = list(csv.DictReader(io.StringIO((out / "pose.csv").read_text("utf-8"))))
    assert sorted({Path(r["path"]).name for r in table}) == ["p0.png", "p1.png", "p2.png"]


def test_a_gone_input_is_reported_and_its_outputs_kept(tmp_path):
    src, out = _folder(tmp_path / "in", 3), tmp_path / "out"
    assert _run(src, out)[0].ok == 3
    (src / "p2.png").unlink()
    s, err = _run(src, out)
    assert s.skipped == 2
    assert "1 item(s) recorded" in err and "p2.png" in err and "kept" in err
    assert (out / "p2.json").is_file()


def test_manifest_lines_are_appended_per_run(tmp_path):
    src, out = _folder(tmp_path / "in", 2), tmp_path / "out"
    _run(src, out)
    first = (out / "manifest.jsonl").read_bytes()
    with open(out / "manifest.jsonl", "ab") as f:
        f.write(b'{"path": "cut sho')  # a line cut short by a killed run
    _run(src, out)
    text = (out / "manifest.jsonl").read_bytes()
    assert text.startswith(first) and text.count(b"\n") == 4 and b"cut sho" not in text
    runs = [json.loads(x)["run"] for x in text.splitlines()]
    assert runs[:2] == [runs[0]] * 2 and runs[2:] == [runs[0] + 1] * 2
    assert [m["status"] for m in read_manifest(out / "manifest.jsonl")] == ["skipped"] * 2


def test_resume_looks_items_up_in_chunks(tmp_path, monkeypatch):
    src, out = _folder(tmp_path / "in", 7), tmp_path / "out"
    _run(src, out)
    monkeypatch.setattr(run_db, "LOOKUP_CHUNK", 3)
    import facealign_cli.batch.resume as resume

    monkeypatch.setattr(resume, "LOOKUP_CHUNK", 3)
    sizes = []
    real = RunDB.lookup

    def spy(self, command, keys):
        sizes.append(len(keys))
        return real(self, command, keys)

    monkeypatch.setattr(RunDB, "lookup", spy)
    s, _ = _run(src, out)
    assert s.skipped == 7 and max(sizes) <= 3 and sum(sizes) >= 14  # scan + records


def _status(out: Path, *args: str):
    from click.testing import CliRunner

    from facealign_cli.cli.main import main

    return CliRunner().invoke(main, ["status", str(out), *args])


def test_status_counts_runs_and_failures(tmp_path):
    src, out = _folder(tmp_path / "in", 3), tmp_path / "out"
    (src / "bad.png").write_bytes(b"not a picture")
    s, _ = _run(src, out)
    assert (s.ok, s.failed) == (3, 1)
    r = _status(out)
    assert r.exit_code == 1, r.output
    assert "landmarks" in r.output and "ok" in r.output and "last run: landmarks" in r.output
    assert "bad.png" not in r.output
    r = _status(out, "--failed")
    assert "failed: landmarks:" in r.output and "bad.png" in r.output
    r = _status(out, "--failed", "--format", "jsonl")
    recs = [json.loads(x) for x in r.output.splitlines()]
    counts = {(x["command"], x["status"]): x["count"] for x in recs if x["kind"] == "count"}
    assert counts == {("landmarks", "ok"): 3, ("landmarks", "failed"): 1}
    (run,) = [x for x in recs if x["kind"] == "run"]
    assert run["items"] == 4 and run["failed"] == 1 and run["rate"] > 0
    (bad,) = [x for x in recs if x["kind"] == "failed"]
    assert bad["path"].endswith("bad.png") and bad["error"] and bad["message"]
    r = _status(out, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(r.output)))
    assert {x["kind"] for x in rows} == {"count", "run"}
    # fixed: the failed item is redone and the status is clean
    _photo(src / "bad.png", seed=5)
    assert _run(src, out)[0].ok == 1
    assert _status(out).exit_code == 0
    assert _status(tmp_path / "nothing").exit_code == 2
