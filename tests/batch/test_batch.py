"""The batch engine with a fake model (fast, no model files): manifest, failures, resume,
fan-out, locking, NDJSON, interruption, atomic writers."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from facealign_cli.batch.manifest import read_manifest
from facealign_cli.batch.run_db import RunDB

cv2 = pytest.importorskip("cv2")

from fakes import FakeFactory, broken_factory, fake_factory  # noqa: E402

from facealign_cli.batch.commands import POSE_COLUMNS  # noqa: E402
from facealign_cli.batch.errors import OutputLockedError
from facealign_cli.batch.options import RunOptions  # noqa: E402
from facealign_cli.batch.runner import run_batch  # noqa: E402
from facealign_cli.batch.state import OutputLock as _OutputLock  # noqa: E402
from facealign_cli.io import records as writers  # noqa: E402
from facealign_cli.io.inputs import collect_inputs  # noqa: E402

TESTS = Path(__file__).resolve().parents[1]  # tests/: fakes.py, imgtools.py


def _write_img(path: Path, value=100, h=60, w=80, flat=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.full((h, w, 3), value, np.uint8)
    if not flat:
        img[h // 3:, : w // 2] = (value + 60) % 256
    ok, buf = cv2.imencode(path.suffix, img)
    path.write_bytes(buf.tobytes())


def _jpeg(h=60, w=80) -> bytes:
    img = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", img)[1].tobytes()


def _manifest(out: Path) -> list[dict]:
    return read_manifest(out / "manifest.jsonl")


def _run(inputs, out, command="landmarks", factory=fake_factory, **kw):
    items = collect_inputs([str(p) for p in inputs], skip_dirs=[] if out == "-" else [out])
    opts = RunOptions.make(command=command, out=str(out), aligner_factory=factory,
                      progress="never", **kw)
    err = io.StringIO()
    stdout = io.BytesIO()
    summary = run_batch(items, opts, stdout=stdout, stderr=err)
    return summary, err.getvalue(), stdout.getvalue()


@pytest.fixture()
def mixed_folder(tmp_path) -> Path:
    """Two good photos (one in a subfolder), and the usual archive debris."""
    d = tmp_path / "in"
    _write_img(d / "good1.jpg")
    _write_img(d / "sub" / "good2.png")
    j = _jpeg()
    (d / "truncated.jpg").write_bytes(j[: len(j) // 2])
    (d / "zero.jpg").write_bytes(b"")
    (d / "text.jpg").write_text("hello, not an image")
    _write_img(d / "black.png", value=0, h=40, w=40, flat=True)  # the fake model raises on it
    return d


def test_failures_are_recorded_and_the_batch_goes_on(mixed_folder, tmp_path):
    out = tmp_path / "out"
    s, err, _ = _run([mixed_folder], out)
    assert s.exit_code == 1 and (s.ok, s.failed) == (2, 4)
    man = {Path(r["path"]).name: r for r in _manifest(out)}
    assert set(man) == {"good1.jpg", "good2.png", "truncated.jpg", "zero.jpg", "text.jpg",
                        "black.png"}
    for r in man.values():
        assert set(r) == {"path", "status", "n_faces", "outputs", "error", "message", "seconds",
                          "run"}
    assert man["good1.jpg"]["status"] == "ok" and man["good1.jpg"]["outputs"] == ["good1.json"]
    assert man["good2.png"]["outputs"] == ["sub/good2.json"]
    assert (out / "good1.json").is_file() and (out / "sub" / "good2.json").is_file()
    assert man["truncated.jpg"]["error"] == "TruncatedImageError"
    assert man["zero.jpg"]["error"] == "EmptyImageError"
    assert man["text.jpg"]["error"] == "NotAnImageError"
    assert man["black.png"]["error"] == "RuntimeError"
    for name in ("truncated.jpg", "zero.jpg", "text.jpg", "black.png"):
        assert man[name]["status"] == "failed" and man[name]["outputs"] == []
        assert man[name]["message"]
        assert not (out / (Path(name).stem + ".json")).exists()
    # one line per failure on stderr, naming the file
    fail_lines = [ln for ln in err.splitlines() if ln.startswith("facealign: failed:")]
    assert len(fail_lines) == 4 and any("zero.jpg" in ln for ln in fail_lines)
    # no temporary files left behind
    assert not list(out.rglob("*.tmp"))


def test_landmarks_json_schema(tmp_path):
    _write_img(tmp_path / "in" / "a.jpg")
    out = tmp_path / "out"
    s, _, _ = _run([tmp_path / "in"], out)
    assert s.exit_code == 0
    doc = json.loads((out / "a.json").read_text())
    assert set(doc) == {"path", "width", "height", "params_info", "pose_convention", "faces"}
    assert doc["pose_convention"] == "yaw-first"  # the default (issue 24)
    assert set(doc["params_info"]) == {"basis", "layout", "frame", "crop_size"}
    assert (doc["width"], doc["height"]) == (80, 60)
    f = doc["faces"][0]
    assert {"box", "score", "keypoints", "roi_box", "landmarks_2d", "landmarks_3d",
            "pose"} <= set(f)
    assert np.array(f["landmarks_2d"]).shape == (68, 2)
    assert np.array(f["landmarks_3d"]).shape == (68, 3)
    assert set(f["pose"]) == {"yaw", "pitch", "roll"}


def test_resume_skips_done_images(tmp_path):
    src = tmp_path / "in"
    for i in range(4):
        _write_img(src / f"img{i}.jpg", value=40 + i)
    out = tmp_path / "out"
    s1, _, _ = _run([src], out)
    assert s1.ok == 4
    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("*.json")}
    time.sleep(0.01)
    s2, _, _ = _run([src], out)
    assert (s2.ok, s2.skipped, s2.exit_code) == (0, 4, 0)
    assert {p: p.stat().st_mtime_ns for p in out.glob("*.json")} == mtimes
    man = _manifest(out)
    assert [r["status"] for r in man] == ["skipped"] * 4
    assert man[0]["n_faces"] == 2 and man[0]["outputs"] == ["img0.json"]
    assert all(r["error"] is None for r in man)
    # an output that went missing is redone, the rest is still skipped
    (out / "img2.json").unlink()
    s3, _, _ = _run([src], out)
    assert (s3.ok, s3.skipped) == (1, 3)
    assert (out / "img2.json").is_file()
    # --overwrite redoes everything
    s4, _, _ = _run([src], out, overwrite=True)
    assert (s4.ok, s4.skipped) == (4, 0)
    # other settings: not the same outputs, so redone
    s5, _, _ = _run([src], out, max_faces=1)
    assert s5.ok == 4
    assert len(json.loads((out / "img0.json").read_text())["faces"]) == 1


def test_failed_images_are_retried(tmp_path):
    src = tmp_path / "in"
    (src).mkdir()
    (src / "late.jpg").write_bytes(b"")
    out = tmp_path / "out"
    s1, _, _ = _run([src], out)
    assert s1.failed == 1
    _write_img(src / "late.jpg")  # the file arrives complete later
    s2, _, _ = _run([src], out)
    assert (s2.ok, s2.failed, s2.exit_code) == (1, 0, 0)


def test_pose_csv_is_complete_after_resume(tmp_path):
    src = tmp_path / "in"
    for i in range(3):
        _write_img(src / f"p{i}.jpg")
    _write_img(src / "white.png", value=255, flat=True)  # no face -> no row
    out = tmp_path / "out"
    s1, _, _ = _run([src], out, command="pose")
    assert s1.exit_code == 0
    first = (out / "pose.csv").read_text()
    rows = list(csv.reader(io.StringIO(first)))
    assert tuple(rows[0]) == POSE_COLUMNS
    assert len(rows) == 1 + 3 * 2
    assert rows[1][0].endswith("p0.jpg") and rows[1][1] == "0" and float(rows[1][2]) == 10.0
    assert rows[2][1] == "1"
    # resume: nothing recomputed, same table
    s2, _, _ = _run([src], out, command="pose")
    assert s2.skipped == 4
    assert (out / "pose.csv").read_text() == first
    # partially done: one image redone, table still complete and in input order
    db = RunDB(out)
    assert db.forget("pose", ["p1"]) == 1
    db.close()
    s3, _, _ = _run([src], out, command="pose")
    assert (s3.ok, s3.skipped) == (1, 3)
    assert (out / "pose.csv").read_text() == first
    man = {Path(r["path"]).name: r for r in _manifest(out)}
    assert man["white.png"]["n_faces"] == 0 and man["white.png"]["outputs"] == []
    assert man["p0.jpg"]["outputs"] == ["pose.csv"]


def test_detect_schema_and_no_weights_needed(tmp_path):
    _write_img(tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    s, _, _ = _run([tmp_path / "in"], out, command="detect", weights="/does/not/matter")
    assert s.exit_code == 0
    doc = json.loads((out / "a.json").read_text())
    assert set(doc["faces"][0]) == {"box", "score", "keypoints"}


def test_jobs2_keeps_order_and_loads_model_once_per_worker(tmp_path):
    src = tmp_path / "in"
    for i in range(10):
        _write_img(src / f"f{i:02d}.jpg", value=20 + 10 * i)
    (src / "f05.jpg").write_text("broken")
    log = tmp_path / "builds.log"
    factory = FakeFactory(log=str(log))
    s1, _, _ = _run([src], tmp_path / "o1", factory=factory)
    s2, _, _ = _run([src], tmp_path / "o2", factory=factory, jobs=2, chunk_size=2)
    assert (s2.ok, s2.failed, s2.exit_code) == (9, 1, 1)
    m1, m2 = _manifest(tmp_path / "o1"), _manifest(tmp_path / "o2")
    strip = lambda m: [(r["path"], r["status"], r["n_faces"], r["outputs"], r["error"])  # noqa
                       for r in m]
    assert strip(m1) == strip(m2)
    for i in range(10):
        if i != 5:
            a = json.loads((tmp_path / "o1" / f"f{i:02d}.json").read_text())
            b = json.loads((tmp_path / "o2" / f"f{i:02d}.json").read_text())
            assert a == b
    pids = log.read_text().split()
    # one build in this process for the jobs=1 run, then at most one per worker
    assert pids[0] == str(os.getpid())
    workers = pids[1:]
    assert 1 <= len(workers) <= 2 and len(set(workers)) == len(workers)
    assert str(os.getpid()) not in workers


def test_stdout_ndjson_only(mixed_folder, tmp_path):
    s, err, out = _run([mixed_folder], "-", command="pose")
    assert s.exit_code == 1 and s.manifest is None
    lines = out.decode("utf-8").splitlines()
    recs = [json.loads(ln) for ln in lines]
    assert len(recs) == 6
    by = {Path(r["path"]).name: r for r in recs}
    assert by["good1.jpg"]["status"] == "ok"
    assert by["good1.jpg"]["faces"][0]["yaw"] == 10.0
    assert set(by["good1.jpg"]["faces"][0]) == set(POSE_COLUMNS[1:])
    assert by["zero.jpg"]["status"] == "failed" and by["zero.jpg"]["error"] == "EmptyImageError"
    assert "zero.jpg" in err  # messages go to stderr
    assert not (tmp_path / "-").exists()


def test_lock_stops_a_second_run(tmp_path):
    _write_img(tmp_path / "in" / "a.jpg")
    out = tmp_path / "out"
    out.mkdir()
    with _OutputLock(out):
        with pytest.raises(OutputLockedError, match="in use by another facealign run"):
            _run([tmp_path / "in"], out)
    s, _, _ = _run([tmp_path / "in"], out)  # released
    assert s.exit_code == 0


@pytest.mark.parametrize("jobs", [1, 2])
def test_model_load_error_stops_the_run(tmp_path, jobs):
    _write_img(tmp_path / "in" / "a.jpg")
    _write_img(tmp_path / "in" / "b.jpg")
    items = collect_inputs([str(tmp_path / "in")])
    out = tmp_path / "out"
    err = io.StringIO()
    s = run_batch(items, RunOptions.make("landmarks", str(out), aligner_factory=broken_factory,
                                    progress="never", jobs=jobs, chunk_size=1), stderr=err)
    assert s.exit_code == 2 and "weights not found" in s.fatal
    assert "cannot load the model" in err.getvalue()
    man = _manifest(out)
    assert len(man) == 2 and all(r["error"] == "Interrupted" for r in man)


def test_oversized_jpeg_coordinates_in_full_resolution(tmp_path):
    _write_img(tmp_path / "in" / "big.jpg", h=400, w=600)
    out = tmp_path / "out"
    s, _, _ = _run([tmp_path / "in"], out, command="detect", max_pixels=100_000)
    assert s.exit_code == 0
    doc = json.loads((out / "big.json").read_text())
    assert (doc["width"], doc["height"]) == (600, 400)
    # the fake puts the face box at the central half of the (decoded, 300x200) image
    assert np.allclose(doc["faces"][0]["box"], [150.5, 100.5, 450.5, 300.5], atol=1)
    assert "1/2" in _manifest(out)[0]["message"]


def test_writers_are_atomic(tmp_path):
    p = tmp_path / "x.json"
    writers.write_json(p, {"a": 1})
    with pytest.raises(TypeError):
        writers.write_json(p, {"a": object()})
    assert json.loads(p.read_text()) == {"a": 1}
    assert [q.name for q in tmp_path.iterdir()] == ["x.json"]
    writers.write_json(p, {"v": float("nan"), "s": "é"})
    assert json.loads(p.read_text("utf-8")) == {"v": None, "s": "é"}


_SIGINT_SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    from facealign_cli.batch.options import RunOptions
    from facealign_cli.batch.runner import run_batch
    from facealign_cli.io.inputs import collect_inputs
    from fakes import FakeFactory
    items = collect_inputs([{src!r}])
    s = run_batch(items, RunOptions.make("landmarks", {out!r}, jobs={jobs}, chunk_size=1,
                                    aligner_factory=FakeFactory(delay=0.4), progress="never"))
    sys.exit(s.exit_code)
""")


@pytest.mark.parametrize("jobs,sig,code", [(1, signal.SIGINT, 130), (2, signal.SIGINT, 130),
                                           (2, signal.SIGTERM, 143), (2, signal.SIGHUP, 143)])
def test_signal_finishes_images_in_flight_and_writes_manifest(tmp_path, jobs, sig, code):
    src = tmp_path / "in"
    n = 12
    for i in range(n):
        _write_img(src / f"s{i:02d}.jpg")
    out = tmp_path / "out"
    script = _SIGINT_SCRIPT.format(tests=str(TESTS), src=str(src), out=str(out), jobs=jobs)
    env = dict(os.environ)
    # A new session = its own process group, like a shell job: Ctrl-C reaches every process
    # of the group (parent and workers), which is what killpg reproduces.
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    partial = out / "manifest.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline:
        if partial.exists() and partial.read_text().count("\n") >= 1:
            break
        time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("the run did not start: " + proc.stderr.read().decode())
    os.killpg(proc.pid, sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err.decode()
    man = _manifest(out)
    assert len(man) == n  # every image has its line
    statuses = [r["status"] for r in man]
    n_ok = statuses.count("ok")
    assert 1 <= n_ok < n
    assert statuses == ["ok"] * n_ok + ["skipped"] * (n - n_ok)  # in flight finished, in order
    assert all(r["error"] == "Interrupted" for r in man[n_ok:])
    for r in man[:n_ok]:
        assert (out / r["outputs"][0]).is_file()
    assert "interrupted" in err.decode()
    # resuming finishes the job
    s, _, _ = _run([src], out)
    assert (s.skipped, s.ok) == (n_ok, n - n_ok)


def test_worker_crash_fails_only_the_culprit_and_the_run_goes_on(tmp_path):
    src = tmp_path / "in"
    for i in range(8):
        _write_img(src / f"c{i}.png", h=33 if i == 3 else 60, w=33 if i == 3 else 80)
    out = tmp_path / "out"
    s, err, _ = _run([src], out, factory=FakeFactory(crash=True), jobs=2, chunk_size=2)
    man = _manifest(out)
    assert [Path(r["path"]).name for r in man] == [f"c{i}.png" for i in range(8)]
    by = {Path(r["path"]).name: r for r in man}
    assert by["c3.png"]["error"] == "WorkerCrashed" and by["c3.png"]["status"] == "failed"
    assert (s.exit_code, s.failed, s.ok) == (1, 1, 7)  # only the culprit fails
    assert all(by[f"c{i}.png"]["status"] == "ok" for i in (0, 1, 2, 4, 5, 6, 7))
    assert "WorkerCrashed" in err
    assert "warning: a worker process died" in err  # the recovery is said, once per death


_NOISY_SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    import facealign_cli.batch.options as options
    from facealign_cli.cli.main import main
    from fakes import FakeFactory, fake_run_options
    options.RunOptions = fake_run_options(FakeFactory(noise=True))
    main(["landmarks", {src!r}, "--out", "-"])
""")


def test_stdout_stays_clean_when_libraries_print(tmp_path):
    src = tmp_path / "in"
    _write_img(src / "a.jpg")
    _write_img(src / "b.jpg")
    script = _NOISY_SCRIPT.format(tests=str(TESTS), src=str(src))
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode()
    lines = r.stdout.decode().splitlines()
    assert len(lines) == 2 and all(json.loads(ln)["status"] == "ok" for ln in lines)
    assert b"noise from python" in r.stderr and b"noise from a native library" in r.stderr


def test_rich_progress_bar(tmp_path):
    src = tmp_path / "in"
    _write_img(src / "a.jpg")
    (src / "b.jpg").write_bytes(b"")
    items = collect_inputs([str(src)])
    err = io.StringIO()
    s = run_batch(items, RunOptions.make("detect", str(tmp_path / "o"),
                                         aligner_factory=fake_factory, progress="always"),
                  stderr=err)
    assert s.exit_code == 1
    text = err.getvalue()
    assert "b.jpg" in text and "2/2" in text


def test_mesh_files_and_stale_faces_removed(tmp_path):
    pytest.importorskip("facealign_cli.io.meshes")
    trimesh = pytest.importorskip("trimesh")
    _write_img(tmp_path / "in" / "sub" / "m.png")
    out = tmp_path / "out"
    s, _, _ = _run([tmp_path / "in"], out, command="mesh")
    assert s.exit_code == 0
    man = _manifest(out)[0]
    assert man["outputs"] == ["sub/m_face0.obj", "sub/m_face1.obj"]
    m = trimesh.load(out / "sub" / "m_face0.obj", process=False, force="mesh")
    assert m.vertices.shape == (4, 3) and m.faces.shape == (2, 3)
    assert np.asarray(m.visual.vertex_colors).shape[0] == 4
    s, _, _ = _run([tmp_path / "in"], out, command="mesh", max_faces=1)
    assert _manifest(out)[0]["outputs"] == ["sub/m_face0.obj"]
    assert not (out / "sub" / "m_face1.obj").exists()
    s, _, _ = _run([tmp_path / "in"], out, command="mesh", max_faces=1, format="ply")
    assert sorted(p.name for p in (out / "sub").iterdir()) == ["m_face0.ply"]
    m = trimesh.load(out / "sub" / "m_face0.ply", process=False)
    assert m.vertices.shape == (4, 3)


def test_mesh_cannot_stream():
    with pytest.raises(ValueError, match="stdout"):
        run_batch([], RunOptions.make("mesh", "-"))
