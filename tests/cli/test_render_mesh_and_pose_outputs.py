"""The outputs of render, mesh, landmarks and pose end to end: `facealign render` (+ --sheet),
meshes upright by default, --texture and GLB meshes, rotation / parameters in the landmarks
JSON, quaternions in pose.csv, --min-score.

The real-model tests run the shipped weights on sample photos (skipped without ../shared)."""

from __future__ import annotations

import csv
import inspect
import json
import math
import re

import cv2
import numpy as np
import pytest
from cli_helpers import invoke  # noqa: E402

from facealign_cli.batch import options as batch_options
from facealign_cli.batch.manifest import read_manifest


def _manifest(out):
    return read_manifest(out / "manifest.jsonl")



# ------------------------------------------------------------------ --min-score


def test_min_score_default_is_the_detectors_threshold():
    from facealign_cli.cli import main as cli_main
    from facealign_cli.defaults import DEFAULT_MIN_SCORE
    from facealign_cli.models.detector import BlazeFaceDetector

    default = inspect.signature(BlazeFaceDetector).parameters["score_threshold"].default
    assert DEFAULT_MIN_SCORE == default
    min_score = next(p for p in cli_main.landmarks.params if p.name == "min_score")
    assert min_score.default == default
    assert batch_options.RunOptions.make("detect", "x").aligner.min_score == default


def test_min_score_filters_and_is_recorded(fake_model, photos, tmp_path):
    out = tmp_path / "o"
    r = invoke(["detect", photos, "--out", out])
    assert r.exit_code == 1  # bad.jpg
    doc = json.loads((out / "a.json").read_text())
    assert [f["score"] for f in doc["faces"]] == [0.9, 0.5]
    settings = json.loads((out / ".facealign" / "settings" / "detect.json").read_text())
    assert settings["command"] == "detect" and settings["settings"]["min_score"] == 0.45
    # a stricter threshold: not skipped as done (fingerprint), the 0.5 face is dropped
    r = invoke(["detect", photos, "--out", out, "--min-score", "0.7"])
    doc = json.loads((out / "a.json").read_text())
    assert [f["score"] for f in doc["faces"]] == [0.9]
    assert [m["status"] for m in _manifest(out)][:2] == ["ok", "ok"]
    assert json.loads((out / ".facealign/settings/detect.json").read_text())["settings"][
        "min_score"] == 0.7
    r = invoke(["detect", photos, "--out", out, "--min-score", "0.7"])
    assert [m["status"] for m in _manifest(out)][:2] == ["skipped", "skipped"]
    assert invoke(["detect", photos, "--out", out, "--min-score", "1.5"]).exit_code == 2


# ------------------------------------------------------------------ pose.csv quaternion


def test_pose_csv_has_the_quaternion_of_the_pose(fake_model, photos, tmp_path):
    from scipy.spatial.transform import Rotation

    from facealign_cli.core.geometry import rotation_from_pose

    out = tmp_path / "p"
    invoke(["pose", photos, "--out", out])
    with open(out / "pose.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    cols = list(rows[0])
    assert cols[cols.index("score") + 1:][:4] == ["qw", "qx", "qy", "qz"]
    # the video columns, empty for photos, the face quality (issue 20), the angles'
    # convention (issue 24)
    assert cols[-5:] == ["frame", "time", "track", "quality", "pose_convention"]
    assert all(row["frame"] == row["time"] == row["track"] == "" for row in rows)
    assert {row["pose_convention"] for row in rows} == {"yaw-first"}
    for row in rows:
        q = np.array([float(row[k]) for k in ("qw", "qx", "qy", "qz")])
        assert abs(np.linalg.norm(q) - 1) < 1e-5 and q[0] >= 0
        R = Rotation.from_quat(q, scalar_first=True).as_matrix()
        want = rotation_from_pose([float(row[k]) for k in ("yaw", "pitch", "roll")])
        np.testing.assert_allclose(R, want, atol=1e-4)


# ------------------------------------------------------------------ render (fake model)


def test_render_writes_overlays_and_a_sheet(fake_model, photos, tmp_path):
    out = tmp_path / "r"
    r = invoke(["render", photos, "--out", out, "--sheet"])
    assert r.exit_code == 1, r.output  # bad.jpg failed
    man = _manifest(out)
    assert man[0]["outputs"] == ["a.jpg", ".thumbs/a.jpg"]
    img = cv2.imread(str(out / "a.jpg"))
    assert img.shape == (80, 100, 3)
    assert max(cv2.imread(str(out / ".thumbs/a.jpg")).shape[:2]) <= 320
    page = (out / "index.html").read_text()
    assert 'href="a.jpg"' in page and 'src=".thumbs/a.jpg"' in page
    assert "bad.jpg" in page and "NotAnImageError" in page
    assert "<script" not in page
    assert "10.0" in page  # the fake pose's yaw
    # each face row: index, score, quality (the fake's quality is its score; issue 24: the
    # quality column was always "–"), yaw, pitch, roll
    rows = re.findall(r"<tr><td>(\d+)</td><td>([^<]*)</td><td>([^<]*)</td>", page)
    assert rows[:2] == [("0", "0.90", "0.90"), ("1", "0.50", "0.50")], rows
    # resumed: skipped photos still on the sheet, from their done records
    r = invoke(["render", photos, "--out", out, "--sheet"])
    assert [m["status"] for m in _manifest(out)] == ["skipped", "skipped", "failed"]
    assert (out / "index.html").read_text() == page
    # other layers redo the photos (the fingerprint has --draw)
    r = invoke(["render", photos, "--out", out, "--draw", "box"])
    assert [m["status"] for m in _manifest(out)][:2] == ["ok", "ok"]
    assert _manifest(out)[0]["outputs"] == ["a.jpg"]
    assert not (out / ".thumbs" / "a.jpg").exists()  # stale output removed


def test_render_rejects_bad_draw_and_stdout(fake_model, photos, tmp_path):
    r = invoke(["render", photos, "--out", tmp_path / "x", "--draw", "box,teeth"])
    assert r.exit_code == 2 and "teeth" in r.output
    r = invoke(["render", photos, "--out", "-"])
    assert r.exit_code == 2


def test_render_is_a_lazy_command_listed_in_help():
    from facealign_cli.cli.main import LAZY_COMMANDS

    assert "render" in LAZY_COMMANDS
    r = invoke(["--help"])
    assert "render" in r.output and "Draw the results" in r.output
    r = invoke(["render", "--help"])
    for word in ("--draw", "--sheet", "--min-score", "box,landmarks,pose"):
        assert word in r.output


def test_mesh_help_documents_frame_texture_glb():
    r = invoke(["mesh", "--help"])
    for word in ("--mesh-frame", "viewer", "H - y", "--texture", "glb"):
        assert word in r.output
    r = invoke(["mesh", "x", "--out", "y", "--texture", "--format", "ply"])
    assert r.exit_code == 2


def test_mesh_frame_in_fingerprint():
    from facealign_cli.batch.commands import get_command

    cmd = get_command("mesh")
    fa = cmd.fingerprint(batch_options.RunOptions.make("mesh", "o"))
    fb = cmd.fingerprint(batch_options.RunOptions.make("mesh", "o", frame="image"))
    assert fa["frame"] == "viewer" and fb["frame"] == "image"
    ft = cmd.fingerprint(batch_options.RunOptions.make("mesh", "o", texture=True))
    assert ft != fa and ft["texture"] is True


# ------------------------------------------------------------------ real model


@pytest.fixture(scope="module")
def frontal_photo(tmp_path_factory):
    """A sample photo with a near-frontal face (the first AFW photo's highest-score face)."""
    from model_fixtures import shared_dir

    p = shared_dir() / "data" / "photos" / "afw" / "1051618982.jpg"
    if not p.is_file():
        pytest.skip(f"sample photo {p} not found")
    return p


def _landmark_positions():
    from facealign_cli.core.morphable_model import load_face_topology, load_morphable_model

    topo = load_face_topology()
    kp = load_morphable_model().keypoint_vertices
    pos = np.searchsorted(topo.vertex_index, kp)
    assert (topo.vertex_index[pos] == kp).all()
    return topo, pos


def test_default_mesh_opens_upright_facing_the_viewer(frontal_photo, mesh_ready, tmp_path):
    trimesh = pytest.importorskip("trimesh")
    from facealign_cli.core.morphable_model import load_morphable_model

    topo, pos = _landmark_positions()
    out = tmp_path / "m"
    env = {"FACEALIGN_WEIGHTS": str(mesh_ready)}
    r = invoke(["mesh", frontal_photo, "--out", out, "--max-faces", "1"], env=env)
    assert r.exit_code == 0, r.output
    m = trimesh.load(out / f"{frontal_photo.stem}_face0.obj", process=False, force="mesh")
    v = np.asarray(m.vertices)
    # the forehead: the region's topmost vertex on the mean face (model frame, y up)
    mean = load_morphable_model().mean.reshape(-1, 3)[topo.vertex_index]
    forehead = int(np.argmax(mean[:, 1]))
    chin, nose = pos[8], pos[30]
    assert v[forehead, 1] > v[pos[27], 1] > v[nose, 1] > v[chin, 1]  # upright: y up
    assert v[nose, 2] >= np.percentile(v[:, 2], 99.5)  # the nose tip nearest the viewer
    n = np.asarray(m.face_normals)[(np.asarray(m.faces) == nose).any(1)].mean(0)
    assert n[2] > 0.5  # normals out of the face, towards the viewer
    h = cv2.imread(str(frontal_photo)).shape[0]
    r = invoke(["mesh", frontal_photo, "--out", tmp_path / "img", "--max-faces", "1",
                "--mesh-frame", "image"], env=env)
    assert r.exit_code == 0
    mi = trimesh.load(tmp_path / "img" / f"{frontal_photo.stem}_face0.obj", process=False,
                      force="mesh")
    vi = np.asarray(mi.vertices)
    np.testing.assert_allclose(v, np.c_[vi[:, 0], h - vi[:, 1], -vi[:, 2]], atol=2e-3)


def test_textured_and_glb_meshes_load_in_trimesh(frontal_photo, mesh_ready, tmp_path):
    trimesh = pytest.importorskip("trimesh")
    from facealign_cli.core.morphable_model import load_face_uv

    topo, _ = _landmark_positions()
    env = {"FACEALIGN_WEIGHTS": str(mesh_ready)}
    out = tmp_path / "t"
    r = invoke(["mesh", frontal_photo, "--out", out, "--max-faces", "1", "--texture"], env=env)
    assert r.exit_code == 0, r.output
    stem = f"{frontal_photo.stem}_face0"
    assert _manifest(out)[0]["outputs"] == [f"{stem}.obj", f"{stem}.mtl", f"{stem}.png"]
    m = trimesh.load(out / f"{stem}.obj", process=False, force="mesh")
    assert m.visual.kind == "texture"
    uv = np.asarray(m.visual.uv)
    assert len(m.vertices) == len(topo.vertex_index) and len(m.faces) == len(topo.triangles)
    np.testing.assert_allclose(uv, load_face_uv().uv, atol=1e-4)
    tex = np.asarray(m.visual.material.image.convert("RGB"))
    assert tex.shape[1] == 512 and tex.std() > 10  # sampled from the photo, not flat
    # GLB: vertex colours, and with --texture the texture inside
    r = invoke(["mesh", frontal_photo, "--out", tmp_path / "g", "--max-faces", "1",
                "--format", "glb"], env=env)
    assert r.exit_code == 0, r.output
    g = trimesh.load(tmp_path / "g" / f"{stem}.glb", force="mesh", process=False)
    assert len(g.vertices) == len(topo.vertex_index)
    assert g.visual.kind == "vertex" and np.asarray(g.visual.vertex_colors)[:, :3].std() > 1
    r = invoke(["mesh", frontal_photo, "--out", tmp_path / "gt", "--max-faces", "1",
                "--format", "glb", "--texture"], env=env)
    assert r.exit_code == 0, r.output
    gt = trimesh.load(tmp_path / "gt" / f"{stem}.glb", force="mesh", process=False)
    assert gt.visual.kind == "texture"
    np.testing.assert_allclose(np.asarray(gt.visual.uv), load_face_uv().uv, atol=1e-3)


def _rebuild_landmarks(face: dict) -> np.ndarray:
    """landmarks_3d from the JSON's params, the 3DDFA basis and the roi box (no flip)."""
    from facealign_cli.core.morphable_model import load_morphable_model

    model = load_morphable_model()
    p = np.asarray(face["params"], np.float32)
    P = p[:12].reshape(3, 4)
    rows = model.keypoint_rows
    s = model.mean[rows] + model.w_shp[rows] @ p[12:52] + model.w_exp[rows] @ p[52:62]
    v = P[:, :3] @ s.reshape(-1, 3).T + P[:, 3:4]
    v[0] -= 1
    v[1] = 120 - v[1]
    assert face["params_crop"]["size"] == 120
    sx, sy, ex, ey = face["params_crop"]["roi_box"]  # (face["roi_box"] rounded to 0.01 px)
    kx, ky = (ex - sx) / 120, (ey - sy) / 120
    out = np.stack([v[0] * kx + sx, v[1] * ky + sy, -v[2] * (kx + ky) / 2], 1)
    out[:, 2] -= out[:, 2].mean()
    return out


def test_landmarks_json_rebuilds_from_params(afw_photos, real_weights, tmp_path):
    """With --no-flip the landmarks are the one pass of ``params``; rebuilt to 0.01 px."""
    env = {"FACEALIGN_WEIGHTS": str(real_weights)}
    out = tmp_path / "lm"
    r = invoke(["landmarks", *afw_photos[:2], "--out", out, "--no-flip"], env=env)
    assert r.exit_code == 0, r.output
    n = 0
    for p in afw_photos[:2]:
        text = (out / f"{p.stem}.json").read_text()
        doc = json.loads(text)
        assert "w_shp_sim" in doc["params_info"]["basis"]
        assert text.count("w_shp_sim") == 1 < len(doc["faces"])  # once per document
        assert "120" in doc["params_info"]["frame"] and doc["params_info"]["crop_size"] == 120
        for face in doc["faces"]:
            assert len(face["params"]) == 62
            assert not any(k.startswith("params_") and k != "params_crop" for k in face)
            got = _rebuild_landmarks(face)
            # landmarks_3d is rounded to 0.01 px (0.005 error), the rest is float32 arithmetic
            np.testing.assert_allclose(got, np.asarray(face["landmarks_3d"]), atol=0.01)
            R = np.asarray(face["rotation"])
            np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-5)
            assert abs(np.linalg.det(R) - 1) < 1e-5
            P = np.asarray(face["params"][:12]).reshape(3, 4)
            assert abs(face["camera"]["scale"] - np.linalg.norm(P[:2, :3], axis=1).mean()) \
                < 1e-6 * face["camera"]["scale"]
            np.testing.assert_allclose(face["camera"]["translation"], P[:, 3], rtol=1e-6)
            n += 1
    assert n >= 2


def test_rotation_matches_the_pose_angles_with_flip(afw_photos, real_weights, tmp_path):
    """With flip averaging (the default) the rotation is the flip-averaged one the pose angles
    come from."""
    from facealign_cli.core.geometry import rotation_from_pose

    env = {"FACEALIGN_WEIGHTS": str(real_weights)}
    out = tmp_path / "lm"
    r = invoke(["landmarks", afw_photos[0], "--out", out], env=env)
    assert r.exit_code == 0, r.output
    for face in json.loads((out / f"{afw_photos[0].stem}.json").read_text())["faces"]:
        pose = face["pose"]
        want = rotation_from_pose([pose["yaw"], pose["pitch"], pose["roll"]])
        # yaw-first (the default): the angles fix the rotation at every face pose
        np.testing.assert_allclose(face["rotation"], want, atol=1e-3)
        assert math.isfinite(face["camera"]["scale"])


def test_real_render_mesh_sheet(afw_photos, mesh_ready, tmp_path):
    env = {"FACEALIGN_WEIGHTS": str(mesh_ready)}
    out = tmp_path / "r"
    r = invoke(["render", afw_photos[0], "--out", out, "--draw", "box,landmarks,pose,mesh",
                "--sheet"], env=env)
    assert r.exit_code == 0, r.output
    pic = cv2.imread(str(out / f"{afw_photos[0].stem}.jpg"))
    photo = cv2.imread(str(afw_photos[0]))
    assert pic.shape == photo.shape
    assert np.abs(pic.astype(int) - photo).mean() > 1  # something was drawn
    page = (out / "index.html").read_text()
    assert f'href="{afw_photos[0].stem}.jpg"' in page
    quality = [q for _, _, q in re.findall(r"<tr><td>(\d+)</td><td>([^<]*)</td><td>([^<]*)</td>",
                                           page)]
    assert quality and all(0 <= float(q) <= 1 for q in quality), quality  # not "–"
