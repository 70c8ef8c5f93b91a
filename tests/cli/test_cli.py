"""The ``facealign`` command line: help, usage errors, exit codes, stdin/stdout, and end-to-end
runs of every image command on real photos (skipped while the model core is incomplete)."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from facealign_cli.batch.manifest import read_manifest

cv2 = pytest.importorskip("cv2")

from cli_helpers import invoke  # noqa: E402
from cli_helpers import write_image as _img  # noqa: E402
from imgtools import jpeg_with_orientation, png_bytes  # noqa: E402

from facealign_cli.batch.commands import POSE_COLUMNS  # noqa: E402
from facealign_cli.batch.state import OutputLock  # noqa: E402

HEAVY = ("torch", "cv2", "numpy", "rich", "joblib", "trimesh", "scipy", "onnxruntime", "pyarrow")





def _manifest(out: Path) -> list[dict]:
    return read_manifest(out / "manifest.jsonl")


# ------------------------------------------------------------------------------ help, usage


def test_help_documents_commands_and_exit_codes():
    r = invoke(["--help"])
    assert r.exit_code == 0
    for word in ("detect", "landmarks", "pose", "mesh", "Exit codes", "130", "manifest.jsonl"):
        assert word in r.stdout
    r = invoke(["mesh", "--help"])
    assert r.exit_code == 0 and "--format" in r.stdout and "--jobs" in r.stdout


def test_help_imports_nothing_heavy():
    code = ("import sys\nfrom facealign_cli.cli.main import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
            f"bad = [m for m in {HEAVY!r} if m in sys.modules]\n"
            "assert not bad, bad\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "Exit codes" in r.stdout


def test_console_script_help():
    exe = shutil.which("facealign")
    if exe is None:
        pytest.skip("console script not installed")
    r = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "Usage: facealign" in r.stdout


@pytest.mark.parametrize("args", [
    ["landmarks", "--out", "o"],  # no input
    ["landmarks", "does/not/exist.jpg", "--out", "o"],
    ["landmarks", "."],  # no --out
    ["mesh", ".", "--out", "-"],
    ["mesh", ".", "--out", "o", "--format", "stl"],
    ["pose", ".", "--out", "o", "--jobs", "-1"],
    ["pose", ".", "--out", "o", "-q", "-v"],
    ["nosuchcommand"],
])
def test_usage_errors_exit_2(tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    assert invoke(args).exit_code == 2


# ------------------------------------------------------------------ engine via the CLI (fake)


def test_corrupt_folder_exit_1_with_manifest(tmp_path, fake_model):
    src = tmp_path / "photos"
    _img(src / "ok1.jpg")
    _img(src / "nested" / "ok2.png")
    jpg = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 255, (50, 50, 3),
                                                                 dtype=np.uint8))[1].tobytes()
    (src / "cut.jpg").write_bytes(jpg[:300])
    (src / "zero.jpg").write_bytes(b"")
    (src / "readme.jpg").write_text("not an image")
    out = tmp_path / "out"
    r = invoke(["landmarks", src, "--out", out])
    assert r.exit_code == 1
    assert r.stdout == ""  # nothing on stdout unless --out -
    man = {Path(m["path"]).name: m for m in _manifest(out)}
    assert {k: v["status"] for k, v in man.items()} == {
        "cut.jpg": "failed", "ok1.jpg": "ok", "readme.jpg": "failed", "zero.jpg": "failed",
        "ok2.png": "ok"}
    assert (out / "ok1.json").is_file() and (out / "nested" / "ok2.json").is_file()
    assert "cut.jpg" in r.stderr and "zero.jpg" in r.stderr and "readme.jpg" in r.stderr
    assert "3 failed" in r.stderr  # summary line


def test_stdout_ndjson_and_stdin_list(tmp_path, fake_model):
    a, b = tmp_path / "ä photo.jpg", tmp_path / "dir" / "b.png"
    _img(a)
    _img(b)
    (tmp_path / "bad.jpg").write_bytes(b"")
    stdin = f"{a}\n{tmp_path / 'dir'}\n{tmp_path / 'bad.jpg'}\n{tmp_path / 'gone.jpg'}\n"
    r = invoke(["landmarks", "-", "--out", "-"], input=stdin)
    assert r.exit_code == 1
    recs = [json.loads(line) for line in r.stdout.splitlines()]
    assert [Path(x["path"]).name for x in recs] == ["ä photo.jpg", "b.png", "bad.jpg",
                                                    "gone.jpg"]
    assert [x["status"] for x in recs] == ["ok", "ok", "failed", "failed"]
    assert np.array(recs[0]["faces"][0]["landmarks_2d"]).shape == (68, 2)
    assert recs[3]["error"] == "UnreadableImageError"
    assert not (tmp_path / "-").exists() and not (Path.cwd() / "-").exists()


def test_resume_and_overwrite_via_cli(tmp_path, fake_model):
    src = tmp_path / "in"
    for i in range(3):
        _img(src / f"x{i}.jpg")
    out = tmp_path / "out"
    assert invoke(["pose", src, "--out", out, "-q"]).exit_code == 0
    r = invoke(["pose", src, "--out", out, "-v"])
    assert r.exit_code == 0
    assert sum(ln.startswith("skipped ") for ln in r.stderr.splitlines()) == 3
    assert [m["status"] for m in _manifest(out)] == ["skipped"] * 3
    rows = list(csv.reader(io.StringIO((out / "pose.csv").read_text())))
    assert len(rows) == 1 + 3 * 2
    r = invoke(["pose", src, "--out", out, "--overwrite", "--max-faces", "1"])
    assert [m["status"] for m in _manifest(out)] == ["ok"] * 3
    assert len(list(csv.reader(io.StringIO((out / "pose.csv").read_text())))) == 1 + 3


def test_quiet_prints_only_errors(tmp_path, fake_model):
    _img(tmp_path / "in" / "a.jpg")
    (tmp_path / "in" / "b.jpg").write_bytes(b"")
    r = invoke(["detect", tmp_path / "in", "--out", tmp_path / "o", "--quiet"])
    assert r.exit_code == 1
    assert r.stderr.strip().splitlines() == [
        f"facealign: failed: {tmp_path / 'in' / 'b.jpg'}: EmptyImageError: empty file (0 bytes)"]


def test_include_exclude_via_cli(tmp_path, fake_model):
    _img(tmp_path / "in" / "keep.jpg")
    _img(tmp_path / "in" / "skip.jpg")
    _img(tmp_path / "in" / "other.png")
    out = tmp_path / "o"
    r = invoke(["detect", tmp_path / "in", "--out", out, "--include", "*.JPG",
                "--exclude", "skip*"])
    assert r.exit_code == 0
    assert [Path(m["path"]).name for m in _manifest(out)] == ["keep.jpg"]


def test_out_is_a_file_exit_2(tmp_path, fake_model):
    _img(tmp_path / "in" / "a.jpg")
    (tmp_path / "file").write_text("x")
    r = invoke(["detect", tmp_path / "in", "--out", tmp_path / "file"])
    assert r.exit_code == 2 and "cannot use output folder" in r.stderr


def test_locked_output_exit_2(tmp_path, fake_model):
    _img(tmp_path / "in" / "a.jpg")
    out = tmp_path / "o"
    out.mkdir()
    with OutputLock(out):
        r = invoke(["detect", tmp_path / "in", "--out", out])
    assert r.exit_code == 2 and "in use by another facealign run" in r.stderr


# ------------------------------------------------------------------ end to end, real model


@pytest.fixture(scope="module")
def real_env(real_weights):
    return {"FACEALIGN_WEIGHTS": str(real_weights)}


def _check_face_common(f, w, h):
    box = np.array(f["box"])
    assert box.shape == (4,) and np.isfinite(box).all()
    assert box[0] < box[2] and box[1] < box[3]
    assert -0.5 * w < box[0] < 1.5 * w and -0.5 * h < box[1] < 1.5 * h
    assert 0.0 <= f["score"] <= 1.0
    assert np.array(f["keypoints"]).shape == (6, 2)


def test_real_detect(afw_photos, real_env, tmp_path):
    out = tmp_path / "det"
    r = invoke(["detect", *afw_photos, "--out", out], env=real_env)
    assert r.exit_code == 0, r.stderr
    for p in afw_photos:
        doc = json.loads((out / f"{p.stem}.json").read_text())
        assert set(doc) == {"path", "width", "height", "faces"}
        h, w = cv2.imread(str(p)).shape[:2]
        assert (doc["width"], doc["height"]) == (w, h) and doc["path"] == str(p)
        assert len(doc["faces"]) >= 1
        for f in doc["faces"]:
            assert set(f) == {"box", "score", "keypoints"}
            _check_face_common(f, w, h)
        scores = [f["score"] for f in doc["faces"]]
        assert scores == sorted(scores, reverse=True)


def test_real_landmarks_and_resume(afw_photos, real_env, tmp_path):
    out = tmp_path / "lm"
    r = invoke(["landmarks", *afw_photos, "--out", out], env=real_env)
    assert r.exit_code == 0, r.stderr
    for p in afw_photos:
        doc = json.loads((out / f"{p.stem}.json").read_text())
        h, w = cv2.imread(str(p)).shape[:2]
        assert len(doc["faces"]) >= 1
        for f in doc["faces"]:
            assert {"box", "score", "keypoints", "roi_box", "landmarks_2d", "landmarks_3d",
                    "pose"} <= set(f)
            _check_face_common(f, w, h)
            l2, l3 = np.array(f["landmarks_2d"]), np.array(f["landmarks_3d"])
            assert l2.shape == (68, 2) and l3.shape == (68, 3) and np.isfinite(l3).all()
            assert np.allclose(l3[:, :2], l2)
            assert abs(l3[:, 2].mean()) < 0.05  # z = 0 at the landmarks' mean depth
            assert set(f["pose"]) == {"yaw", "pitch", "roll"}
            assert all(-180 <= v <= 180 for v in f["pose"].values())
    man = _manifest(out)
    assert [m["status"] for m in man] == ["ok"] * 3
    assert all(m["n_faces"] >= 1 for m in man)
    r = invoke(["landmarks", *afw_photos, "--out", out], env=real_env)
    assert r.exit_code == 0 and [m["status"] for m in _manifest(out)] == ["skipped"] * 3


def test_real_pose_csv(afw_photos, real_env, tmp_path):
    out = tmp_path / "pose"
    r = invoke(["pose", *afw_photos, "--out", out], env=real_env)
    assert r.exit_code == 0, r.stderr
    rows = list(csv.DictReader(io.StringIO((out / "pose.csv").read_text("utf-8"))))
    assert list(rows[0]) == list(POSE_COLUMNS)
    n_faces = sum(m["n_faces"] for m in _manifest(out))
    assert len(rows) == n_faces >= 3
    order = [str(p) for p in afw_photos]
    assert [r_["path"] for r_ in rows] == sorted((r_["path"] for r_ in rows), key=order.index)
    for row in rows:
        vals = [float(row[k]) for k in ("yaw", "pitch", "roll", "x1", "y1", "x2", "y2", "score")]
        assert np.isfinite(vals).all() and float(row["x1"]) < float(row["x2"])


def test_real_ndjson_stdout(afw_photos, real_env):
    r = invoke(["detect", "-", "--out", "-", "-q"], env=real_env,
               input="\n".join(str(p) for p in afw_photos[:2]) + "\n")
    assert r.exit_code == 0, r.stderr
    recs = [json.loads(line) for line in r.stdout.splitlines()]
    assert [x["path"] for x in recs] == [str(p) for p in afw_photos[:2]]
    assert all(x["status"] == "ok" and x["faces"] for x in recs)


def test_real_mesh_loads_in_trimesh(afw_photos, mesh_ready, tmp_path):
    trimesh = pytest.importorskip("trimesh")
    from facealign_cli.core.morphable_model import load_face_topology

    topo = load_face_topology()
    out = tmp_path / "mesh"
    env = {"FACEALIGN_WEIGHTS": str(mesh_ready)}
    r = invoke(["mesh", afw_photos[0], "--out", out, "--max-faces", "2"], env=env)
    assert r.exit_code == 0, r.stderr
    man = _manifest(out)[0]
    assert man["n_faces"] >= 1 and len(man["outputs"]) == man["n_faces"]
    assert man["outputs"][0] == f"{afw_photos[0].stem}_face0.obj"
    h, w = cv2.imread(str(afw_photos[0])).shape[:2]
    for rel in man["outputs"]:
        m = trimesh.load(out / rel, process=False, force="mesh")
        assert len(m.vertices) == len(topo.vertex_index)
        assert len(m.faces) == len(topo.triangles)
        col = np.asarray(m.visual.vertex_colors)
        assert col.shape[0] == len(m.vertices) and col[:, :3].std() > 1  # sampled, not flat
        c = m.vertices.mean(0)
        assert -0.5 * w < c[0] < 1.5 * w and -0.5 * h < c[1] < 1.5 * h
    r = invoke(["mesh", afw_photos[0], "--out", tmp_path / "ply", "--format", "ply",
                "--max-faces", "1"], env=env)
    assert r.exit_code == 0, r.stderr
    m = trimesh.load(tmp_path / "ply" / f"{afw_photos[0].stem}_face0.ply", process=False)
    assert len(m.vertices) == len(topo.vertex_index) and len(m.faces) == len(topo.triangles)


def test_real_odd_images(afw_photos, real_env, tmp_path):
    """Odd files built from a real photo: every one is processed and the face is found where a
    viewer sees it."""
    photo = cv2.imread(str(afw_photos[0]))
    h, w = photo.shape[:2]
    src = tmp_path / "odd"
    src.mkdir()
    q = [cv2.IMWRITE_JPEG_QUALITY, 95]
    (src / "upright.jpg").write_bytes(cv2.imencode(".jpg", photo, q)[1].tobytes())
    # stored a quarter turn counter-clockwise, EXIF orientation 6 turns it back upright
    stored = cv2.rotate(photo, cv2.ROTATE_90_COUNTERCLOCKWISE)
    (src / "exif_rotated.jpg").write_bytes(jpeg_with_orientation(stored, 6))
    gray = cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY)
    (src / "gray.png").write_bytes(cv2.imencode(".png", gray)[1].tobytes())
    rgba = np.dstack([photo[:, :, ::-1], np.full((h, w), 255, np.uint8)])
    rgba[: h // 20, :, 3] = 0  # a transparent strip at the top
    (src / "rgba.png").write_bytes(png_bytes(rgba, color_type=6))
    (src / "deep16.png").write_bytes(
        cv2.imencode(".png", photo.astype(np.uint16) * 257)[1].tobytes())
    (src / "фото_лица.jpg").write_bytes(cv2.imencode(".jpg", photo, q)[1].tobytes())
    (src / "dot.png").write_bytes(cv2.imencode(".png", np.zeros((1, 1, 3), np.uint8))[1].tobytes())
    noise = np.random.default_rng(0).integers(100, 140, (240, 320, 3), dtype=np.uint8)
    (src / "no_face.png").write_bytes(cv2.imencode(".png", noise)[1].tobytes())

    out = tmp_path / "out"
    r = invoke(["landmarks", src, "--out", out], env=real_env)
    assert r.exit_code == 0, r.stderr
    man = {Path(m["path"]).name: m for m in _manifest(out)}
    assert all(m["status"] == "ok" for m in man.values()), man
    assert man["dot.png"]["n_faces"] == 0 and man["no_face.png"]["n_faces"] == 0
    docs = {n: json.loads((out / (Path(n).stem + ".json")).read_text("utf-8"))
            for n in man}
    ref = docs["upright.jpg"]
    assert ref["faces"]
    for name in ("exif_rotated.jpg", "gray.png", "rgba.png", "deep16.png", "фото_лица.jpg"):
        d = docs[name]
        assert (d["width"], d["height"]) == (w, h), name
        assert d["faces"], name
    # The EXIF-rotated file gives the upright photo's result (same pixels up to JPEG noise).
    a = np.array(ref["faces"][0]["box"])
    b = np.array(docs["exif_rotated.jpg"]["faces"][0]["box"])
    side = (a[2] - a[0] + a[3] - a[1]) / 2
    assert np.abs(a - b).max() < 0.05 * side
    la = np.array(ref["faces"][0]["landmarks_2d"])
    lb = np.array(docs["exif_rotated.jpg"]["faces"][0]["landmarks_2d"])
    assert np.abs(la - lb).mean() < 0.05 * side
    dot = docs["dot.png"]
    assert dot["faces"] == [] and (dot["width"], dot["height"]) == (1, 1)


def test_real_jobs2_matches_jobs1(afw_photos, real_env, tmp_path):
    o1, o2 = tmp_path / "j1", tmp_path / "j2"
    assert invoke(["landmarks", *afw_photos, "--out", o1, "-q"], env=real_env).exit_code == 0
    r = invoke(["landmarks", *afw_photos, "--out", o2, "-q", "--jobs", "2", "--threads", "1"],
               env=real_env)
    assert r.exit_code == 0, r.stderr
    for p in afw_photos:
        a = json.loads((o1 / f"{p.stem}.json").read_text())
        b = json.loads((o2 / f"{p.stem}.json").read_text())
        assert len(a["faces"]) == len(b["faces"])
        for fa, fb in zip(a["faces"], b["faces"]):
            assert np.allclose(fa["landmarks_3d"], fb["landmarks_3d"], atol=0.1)


def test_real_detect_needs_neither_weights_nor_torch(afw_photos, real_weights, tmp_path):
    code = ("import sys\nfrom facealign_cli.cli.main import main\n"
            "try:\n"
            f"    main(['detect', {str(afw_photos[0])!r}, '--out', {str(tmp_path / 'd')!r},"
            " '-q'])\n"
            "except SystemExit as e:\n    assert e.code == 0, e.code\n"
            "assert 'torch' not in sys.modules\n")
    env = {**os.environ, "FACEALIGN_WEIGHTS": str(tmp_path / "no_such_weights.pth")}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "d" / f"{afw_photos[0].stem}.json").read_text())["faces"]
