"""Tests of ``facealign evaluate`` (facealign_cli.evaluation.protocols, .reports, .cli_evaluate).

Formula tests use hand-computed cases; data tests read ``../shared`` (or ``$FACEALIGN_SHARED``)
and skip cleanly when it is absent. Nothing here is written outside pytest's tmp folders.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from facealign_cli.evaluation import protocols as E
from facealign_cli.evaluation import reports as R
from facealign_cli.cli.evaluate import evaluate
from facealign_cli.core.face import Face

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACEALIGN_SHARED", REPO.parent / "shared"))
AFLW = SHARED / "data" / "aflw2000-3d"
TEACHER = SHARED / "teacher" / "mb05_120x120.pth"
W300 = SHARED / "data" / "300w-train" / "afw"
AFW_PHOTOS = SHARED / "data" / "photos" / "afw"

needs_aflw = pytest.mark.skipif(not (AFLW / "3ddfa-protocol").is_dir(),
                                reason="AFLW2000-3D not found in ../shared")
needs_teacher = pytest.mark.skipif(not TEACHER.is_file(), reason="teacher weights not found")
needs_300w = pytest.mark.skipif(not (W300 / "labels.npz").is_file(), reason="300-W not found")
needs_afw = pytest.mark.skipif(not (AFW_PHOTOS / "annotations.json").is_file(),
                               reason="AFW photos not found")


def _square_face(w: float = 4.0, h: float = 9.0) -> np.ndarray:
    """(68, 3) landmarks whose 2D box is exactly w x h (corners present), z = 0."""
    rng = np.random.default_rng(0)
    p = np.zeros((68, 3))
    p[:, 0] = rng.uniform(0, w, 68)
    p[:, 1] = rng.uniform(0, h, 68)
    p[:4, :2] = [[0, 0], [w, 0], [0, h], [w, h]]
    return p


# ------------------------------------------------------------------------------------------
# Formulas
# ------------------------------------------------------------------------------------------

def test_nme_box_hand_case():
    gt = _square_face(4, 9)[None]  # sqrt(4 * 9) = 6
    pred = gt.copy()
    pred[..., 0] += 3
    pred[..., 1] += 4  # every point off by 5 px
    assert E.nme_box(pred[..., :2], gt[..., :2]) == pytest.approx([5 / 6])
    # half the points exact, half off by 5 -> 2.5 / 6
    pred2 = gt.copy()
    pred2[:, 34:, 0] += 5
    assert E.nme_box(pred2, gt) == pytest.approx([2.5 / 6])


def test_nme_3d_aligns_z_offsets():
    gt = _square_face(4, 9)[None]
    gt[..., 2] = np.linspace(-3, 3, 68)
    pred = gt.copy()
    pred[..., 2] += 100.0  # a constant depth offset is not an error
    assert E.nme_3d(pred, gt) == pytest.approx([0.0], abs=1e-12)
    pred[..., 0] += 2.0  # x off by 2, z by 2 relative to the mean: sqrt(8) per point
    pred[..., 2] += np.where(np.arange(68) < 34, 2.0, -2.0)
    assert E.nme_3d(pred, gt) == pytest.approx([math.sqrt(8) / 6])


def test_nme_interocular():
    gt = np.zeros((1, 68, 2))
    gt[0, :, 0] = np.linspace(0, 20, 68)
    gt[0, 36] = [0, 0]
    gt[0, 45] = [10, 0]
    pred = gt + [0, 2]  # 2 px error / 10 px inter-ocular
    assert E.nme_interocular(pred, gt) == pytest.approx([0.2])


def test_pose_mae_hand_case():
    gt = np.array([[10.0, 0, 0], [-20, 5, 5], [150, 0, 0]])  # third: |yaw| > 99 -> excluded
    pred = np.array([[12.0, -1, 3], [-20, 8, 5], [0, 0, 0]])
    mae, n = E.pose_mae(pred, gt)
    assert n == 2
    np.testing.assert_allclose(mae, [1.0, 2.0, 1.5])
    fig = E.pose_figures(np.vstack([pred, [np.nan] * 3]), np.vstack([gt, [1, 1, 1]]))
    assert fig["count"] == 2 and fig["mean"] == pytest.approx(1.5)


def test_yaw_bins_and_nme_figures():
    yaw = np.array([-10.0, 30.0, 30.5, -60.0, 61.0, -90.0])
    np.testing.assert_array_equal(E.yaw_bin_index(yaw), [0, 0, 1, 1, 2, 2])
    nme = np.array([1.0, 3.0, 4.0, 6.0, 8.0, np.nan])  # the last face was missed
    means, mean, counts = E.yaw_bin_means(nme[:5], yaw[:5])
    assert means == pytest.approx([2.0, 5.0, 8.0]) and mean == pytest.approx(5.0)
    assert counts == [2, 2, 1]
    fig = E.nme_figures(nme, {"fit": yaw})
    s = fig["splits"]["fit"]
    assert s["bins"] == pytest.approx([2.0, 5.0, 8.0]) and s["mean"] == pytest.approx(5.0)
    assert s["counts"] == [2, 2, 1] and s["misses"] == [0, 0, 1]
    assert fig["n"] == 5 and fig["misses"] == 1 and fig["all"] == pytest.approx(22 / 5)
    assert fig["ced"]["fr_7"] == pytest.approx(2 / 6)  # 8 % and the miss


def test_box_iou_and_matching():
    gt = np.array([0.0, 0, 10, 10])
    dets = np.array([[5.0, 0, 15, 10], [0, 0, 10, 10], [100, 100, 110, 110]])
    np.testing.assert_allclose(E.box_iou(gt, dets), [50 / 150, 1.0, 0.0])
    assert E.match_detection(gt, dets) == (1, 1.0)
    assert E.match_detection(gt, dets[[0, 2]], 0.3)[0] == 0  # 0.333 >= 0.3
    assert E.match_detection(gt, dets[[0, 2]], 0.4)[0] == -1  # a miss
    assert E.match_detection(gt, np.zeros((0, 4))) == (-1, 0.0)


def test_ced_auc_and_failure_rates():
    assert E.auc_at(np.zeros(10), 7.0) == 1.0
    assert E.auc_at([3.5], 7.0) == pytest.approx(0.5)
    assert E.auc_at([0.0, 7.0, 14.0], 7.0) == pytest.approx(1 / 3)
    assert E.auc_at([1.0, np.nan], 7.0) == pytest.approx((6 / 7) / 2)  # a miss adds 0
    e = [5.0, 8.0, 12.0, np.nan]
    assert E.failure_rate(e, 7.0) == pytest.approx(0.75)
    assert E.failure_rate(e, 10.0) == pytest.approx(0.5)
    x, y = E.ced_curve([1.0, 2.0, 3.0, 4.0], max_error=4.0, num=5)
    np.testing.assert_allclose(x, [0, 1, 2, 3, 4])
    np.testing.assert_allclose(y, [0, 0.25, 0.5, 0.75, 1.0])
    # the exact AUC equals the integral of the step CED (fine grid)
    errs = np.random.default_rng(1).gamma(3.0, 1.2, 500)
    x, y = E.ced_curve(errs, max_error=7.0, num=70001)
    assert E.auc_at(errs) == pytest.approx(np.trapezoid(y, x) / 7.0, abs=1e-4)
    assert E.ced_summary(np.zeros(3)) == {"auc_7": 1.0, "fr_7": 0.0, "fr_10": 0.0}


def test_difference_skips_counts():
    a = {"bins": [1.0, 2.0], "mean": 3.0, "counts": [4, 5], "pose": {"yaw": 2.0, "count": 9}}
    b = {"bins": [0.5, 2.5], "mean": 1.0, "counts": [4, 5], "pose": {"yaw": 1.0, "count": 9}}
    assert E.difference(a, b) == {"bins": [0.5, -0.5], "mean": 2.0, "pose": {"yaw": 1.0}}


def test_select_indices_spread():
    np.testing.assert_array_equal(E.select_indices(10, 0), np.arange(10))
    np.testing.assert_array_equal(E.select_indices(10, 3), [0, 4, 9])  # 4.5 rounds to even
    np.testing.assert_array_equal(E.select_indices(5, 50), np.arange(5))


# ------------------------------------------------------------------------------------------
# Occlusion generator
# ------------------------------------------------------------------------------------------

def test_occluders_are_deterministic_and_change_pixels():
    boxes = np.array([[100.0, 120, 300, 360], [50, 60, 200, 230], [10, 10, 90, 110]])
    shapes = [(450, 450, 3)] * 3
    keys = [0, 7, 1999]
    for kind in E.OCCLUDER_KINDS:
        a = E.occluders_for(kind, boxes, shapes, keys, seed=5)
        assert a == E.occluders_for(kind, boxes, shapes, keys, seed=5)
        assert a != E.occluders_for(kind, boxes, shapes, keys, seed=6)
        # an occluder depends on its key only, not on the other faces of the batch
        assert E.occluders_for(kind, boxes[1:2], shapes[1:2], keys[1:2], seed=5)[0] == a[1]
        img = np.full((450, 450, 3), 128, np.uint8)
        for o, b in zip(a, boxes):
            assert o.kind == kind and len(o.color) == 3
            out = E.apply_occluder(img, o)
            changed = (out != img).any(axis=2)
            assert changed.any() and img.min() == 128  # the input is untouched
            x1, y1, x2, y2 = o.rects[0]
            assert (out[y1:y2, x1:x2] == o.color).all()
            assert 0 < E.occluded_fraction(o, b) <= 1
            if kind == "double-square":
                assert len(o.rects) == 2
                (a1, b1, c1, d1), (a2, b2, c2, d2) = o.rects
                assert max(a1, a2) < min(c1, c2) and max(b1, b2) < min(d1, d2)  # intersect
            if kind == "column":
                assert (y1, y2) == (0, 450)
    with pytest.raises(ValueError):
        E.make_occluder("triangle", boxes[0], shapes[0], np.random.default_rng(0))


def test_occluded_fraction_hand_case():
    o = E.Occluder("square", ((0, 0, 5, 10),), (0, 0, 0))
    assert E.occluded_fraction(o, np.array([0, 0, 10, 10])) == pytest.approx(0.5)


# ------------------------------------------------------------------------------------------
# landmarks68 readers
# ------------------------------------------------------------------------------------------

def test_pts_round_trip_and_errors(tmp_path):
    pts = np.arange(136, dtype=np.float64).reshape(68, 2) / 3
    E.write_pts(tmp_path / "a.pts", pts)
    np.testing.assert_allclose(E.read_pts(tmp_path / "a.pts"), pts, atol=1e-3)
    (tmp_path / "b.pts").write_text("version: 1\nn_points: 68\n{\n1 2\n}\n")
    with pytest.raises(E.DatasetLayoutError, match="n_points is 68 but 1"):
        E.read_pts(tmp_path / "b.pts")
    (tmp_path / "c.pts").write_text("hello\n")
    with pytest.raises(E.DatasetLayoutError, match="not a .pts file"):
        E.read_pts(tmp_path / "c.pts")


@needs_300w
def test_landmarks68_reader_on_real_pts(tmp_path):
    z = np.load(W300 / "labels.npz")
    names, pts = list(z["names"][:3]), z["pts68"][:3].astype(np.float64)
    for n, p in zip(names, pts):
        (tmp_path / n).symlink_to(W300 / "images" / n)
        E.write_pts(tmp_path / (Path(n).stem + ".pts"), p + 1.0)  # 300-W files are 1-based
    # 300-W multi-face naming: photo_1.pts + photo_2.pts belong to photo.jpg
    (tmp_path / "photo.jpg").symlink_to(W300 / "images" / names[0])
    E.write_pts(tmp_path / "photo_1.pts", pts[0] + 1.0)
    E.write_pts(tmp_path / "photo_2.pts", pts[1] + 1.0)
    items = E.open_landmarks68(tmp_path)
    by_name = {it.path.name: it for it in items}
    assert len(items) == 4 and len(by_name["photo.jpg"].faces) == 2
    for n, p in zip(names, pts):
        np.testing.assert_allclose(by_name[n].faces[0], p, atol=2e-3)
    zero = E.open_landmarks68(tmp_path, pts_one_based=False)
    np.testing.assert_allclose(zero[0].faces[0], items[0].faces[0] + 1.0, atol=1e-9)
    (tmp_path / "orphan.pts").write_text((tmp_path / "photo_1.pts").read_text())
    with pytest.raises(E.DatasetLayoutError, match="orphan.pts"):
        E.open_landmarks68(tmp_path)


@needs_afw
def test_landmarks68_reader_on_annotations_json(tmp_path):
    items = E.open_landmarks68(AFW_PHOTOS, AFW_PHOTOS / "annotations.json")
    assert len(items) == 185 and sum(len(it.faces) for it in items) == 337
    assert all(f.shape == (68, 2) for it in items for f in it.faces)
    # the same form, written by hand, for two photos of which one is absent
    ann = json.loads((AFW_PHOTOS / "annotations.json").read_text())["photos"]
    stem = sorted(ann)[0]
    (tmp_path / f"{stem}.jpg").symlink_to(AFW_PHOTOS / f"{stem}.jpg")
    (tmp_path / "a.json").write_text(json.dumps({"photos": {stem: ann[stem]}}))
    one = E.open_landmarks68(tmp_path, tmp_path / "a.json")
    np.testing.assert_allclose(one[0].faces[0], np.asarray(ann[stem][0]))
    (tmp_path / "b.json").write_text(json.dumps({"photos": {stem: ann[stem], "nope": []}}))
    with pytest.raises(E.DatasetLayoutError, match="no image"):
        E.open_landmarks68(tmp_path, tmp_path / "b.json")


# ------------------------------------------------------------------------------------------
# Runs with real data
# ------------------------------------------------------------------------------------------

class _BoxDetector:
    """A stand-in detector: returns, for known images, a box whose roi (pipeline rule) is the
    3DDFA landmark roi box of the annotated face, plus a far-away distractor; nothing for
    images listed in ``miss``."""

    def __init__(self, faces_by_image: dict[bytes, np.ndarray], miss: set[bytes] = frozenset()):
        self.faces, self.miss = faces_by_image, miss

    @staticmethod
    def key(img: np.ndarray) -> bytes:
        return hashlib.sha1(img.tobytes()).digest()

    def detect(self, img):
        from facealign_cli.core import geometry as G

        k = self.key(img)
        if k in self.miss:
            return []
        out = [Face(box=np.array([0, 0, 8, 8], np.float32), score=0.6)]
        for pts in self.faces.get(k, []):
            sx, sy, ex, ey = G.roi_box_from_landmarks(pts)
            side = (ex - sx) / G.ROI_SCALE
            cx, cy = (sx + ex) / 2, (sy + ey) / 2 - G.ROI_SHIFT_Y * side
            out.append(Face(box=np.array([cx - side / 2, cy - side / 2, cx + side / 2,
                                          cy + side / 2], np.float32), score=0.9))
        return out

    def policy(self):
        return {"fake": True}


def _teacher_method():
    from facealign_cli.models.baseline_3ddfa import Baseline3DDFA

    return E.Method("3ddfa-v2", "3DDFA-V2", Baseline3DDFA(TEACHER, num_threads=1), {})


def _random_checkpoint(path: Path) -> Path:
    """A facealign checkpoint with random weights (exercises the two-method path)."""
    import torch

    from facealign_cli.models.regressor import FaceAlignNet

    with open(TEACHER.with_name("param_mean_std_62d_120x120.pkl"), "rb") as f:
        ms = pickle.load(f)
    torch.manual_seed(0)
    net = FaceAlignNet("fan_s")
    torch.save({"arch": "fan_s", "model": net.state_dict(), "param_mean": ms["mean"],
                "param_std": ms["std"], "input_size": 120}, path)
    return path


@needs_aflw
@needs_teacher
def test_cli_aflw2000_limit30_with_baseline(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEALIGN_WEIGHTS", str(tmp_path / "absent.pth"))
    out = tmp_path / "r.json"
    args = ["aflw2000-3d", str(AFLW), "--baseline-3ddfa", str(TEACHER), "--limit", "30",
            "--protocols", "gt-crops,occlusion", "--json", str(out),
            "--markdown", str(tmp_path / "r.md"), "--per-image", "--threads", "1"]
    try:
        import matplotlib  # noqa: F401
        args += ["--plot", str(tmp_path / "r.png")]
    except ImportError:
        pass
    res = CliRunner().invoke(evaluate, args)
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    g = doc["results"]["gt-crops"]["3ddfa-v2"]
    fit = g["nme_2d"]["splits"]["fit"]
    assert sum(fit["counts"]) == 30 and all(c > 0 for c in fit["counts"])
    assert 1.5 < fit["mean"] < 6.0
    assert 1.5 < g["nme_2d"]["splits"]["aflw"]["mean"] < 6.5
    assert g["nme_3d"]["splits"]["fit"]["mean"] > fit["mean"] - 0.5
    assert 0 < g["pose"]["mean"] < 10 and g["pose"]["count"] >= 28
    occ = doc["results"]["occlusion"]["3ddfa-v2"]
    assert occ["clean"]["mean"] == pytest.approx(fit["mean"], abs=1e-3)
    assert occ["column"]["increase"] > 0
    s = doc["settings"]
    assert s["crop_rule"] == E.CROP_RULE and s["layout"] == "3ddfa-protocol"
    assert len(doc["methods"]["3ddfa-v2"]["sha256"]) == 64
    assert len(doc["per_image"]["names"]) == 30
    assert "ground-truth crops" in res.output and "| 3DDFA-V2 |" in (tmp_path / "r.md").read_text()
    if "--plot" in args:
        assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"


@needs_aflw
@needs_teacher
def test_cli_aflw2000_two_methods_and_detector_protocol(tmp_path, monkeypatch):
    """Detector protocol with a stand-in detector (3 images missed on purpose) and a second
    (random) facealign checkpoint: misses are counted per bin, never dropped silently."""
    import facealign_cli.cli.evaluate as C

    data = E.open_aflw2000(AFLW, limit=12)
    imgs = [data.read_image(i) for i in range(len(data))]
    faces = {_BoxDetector.key(im): [p] for im, p in zip(imgs, data.pts68)}
    miss = {_BoxDetector.key(imgs[i]) for i in (0, 5, 11)}
    monkeypatch.setattr(C, "_load_detector",
                        lambda threads: (_BoxDetector(faces, miss), {"name": "stand-in"}))
    ck = _random_checkpoint(tmp_path / "rand.pth")
    out = tmp_path / "r.json"
    res = CliRunner().invoke(evaluate, [
        "aflw2000-3d", str(AFLW), "--weights", str(ck), "--baseline-3ddfa", str(TEACHER),
        "--limit", "12", "--protocols", "gt-crops,detector", "--json", str(out),
        "--iou-threshold", "0.1"])
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    det = doc["results"]["detector"]
    assert det["detection"]["detected"] == 9 and det["detection"]["misses"] == 3
    assert sum(det["detection"]["misses_by_bin"]["fit"]) == 3
    t = det["3ddfa-v2"]["nme_2d"]
    assert t["n"] == 9 and t["misses"] == 3 and sum(t["splits"]["fit"]["misses"]) == 3
    assert t["all"] < 8.0  # the detector box reproduces the landmark roi box
    assert t["ced"]["fr_10"] >= 3 / 12 - 1e-9  # misses are failures
    diff = doc["results"]["gt-crops"]["difference"]["nme_2d"]["splits"]["fit"]["mean"]
    gt = doc["results"]["gt-crops"]
    assert diff == pytest.approx(gt["facealign"]["nme_2d"]["splits"]["fit"]["mean"]
                                 - gt["3ddfa-v2"]["nme_2d"]["splits"]["fit"]["mean"], abs=2e-4)
    assert doc["methods"]["facealign"]["sha256"] == hashlib.sha256(ck.read_bytes()).hexdigest()
    assert "Δ facealign − 3DDFA-V2" in res.output


@needs_aflw
@needs_teacher
def test_official_layout_without_protocol_folder(tmp_path):
    data = E.open_aflw2000(AFLW, limit=6)
    for n in data.names:
        for suf in (".jpg", ".mat"):
            (tmp_path / (Path(n).stem + suf)).symlink_to(AFLW / (Path(n).stem + suf))
    off = E.open_aflw2000(tmp_path)
    assert off.layout == "official" and list(off.yaw_splits) == ["fit"]
    assert sorted(off.names) == sorted(data.names)
    order = [data.names.index(n) for n in off.names]
    np.testing.assert_allclose(off.roi_boxes, data.roi_boxes[order], atol=1.5)
    np.testing.assert_allclose(off.yaw_splits["fit"], data.yaw_splits["fit"][order], atol=1e-3)
    np.testing.assert_allclose(off.pts68, data.pts68[order], atol=1e-3)
    run = E.run_aflw2000(off, [_teacher_method()], ("gt-crops",))
    figs, _ = E.summarise_aflw2000(run)
    assert figs["gt-crops"]["3ddfa-v2"]["nme_2d"]["all"] < 6.0


@needs_300w
@needs_teacher
def test_landmarks68_run_counts_misses(tmp_path):
    z = np.load(W300 / "labels.npz")
    names, pts = list(z["names"][:3]), z["pts68"][:3].astype(np.float64)
    for n, p in zip(names, pts):
        (tmp_path / n).symlink_to(W300 / "images" / n)
        E.write_pts(tmp_path / (Path(n).stem + ".pts"), p + 1.0)
    items = E.open_landmarks68(tmp_path)
    import cv2

    keys = [_BoxDetector.key(cv2.imread(str(it.path))) for it in items]
    det = _BoxDetector({k: it.faces for k, it in zip(keys, items)}, miss={keys[2]})
    run = E.run_landmarks68(items, [_teacher_method()], det, iou_threshold=0.1)
    figs, per = E.summarise_landmarks68(run)
    assert figs["detection"] == {"images": 3, "faces": 3, "detected": 2, "misses": 1,
                                 "iou_threshold": 0.1}
    f = figs["3ddfa-v2"]
    assert f["nme_box"]["n"] == 2 and f["nme_box"]["misses"] == 1
    assert 0.5 < f["nme_box"]["mean"] < 8 and f["nme_io"]["mean"] > f["nme_box"]["mean"]
    assert np.isnan(per["3ddfa-v2"]["nme_box"][2])
    tables = R.landmarks68_tables({"methods": {"3ddfa-v2": {"label": "T"}}, "results": figs})
    assert tables[0].rows[0][-1] == "1"


# ------------------------------------------------------------------------------------------
# Errors and reports
# ------------------------------------------------------------------------------------------

def _invoke_error(args) -> str:
    res = CliRunner().invoke(evaluate, args)
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output and isinstance(res.exception, SystemExit)
    return res.output


def test_folder_layout_errors(tmp_path):
    d = tmp_path / "aflw"
    d.mkdir()
    assert "no AFLW2000-3D files" in _invoke_error(["aflw2000-3d", str(d)])
    (d / "image00002.jpg").write_bytes(b"x")
    (d / "image00004.jpg").write_bytes(b"x")
    (d / "image00004.mat").write_bytes(b"x")
    msg = _invoke_error(["aflw2000-3d", str(d)])
    assert "1 .jpg without .mat: image00002.jpg" in msg
    p = d / "3ddfa-protocol"
    p.mkdir()
    assert "lacks AFLW2000-3D_crop.list" in _invoke_error(["aflw2000-3d", str(d)])
    (p / "AFLW2000-3D_crop.list").write_text("image00002.jpg\nimage00004.jpg\n")
    np.save(p / "AFLW2000-3D_crop.roi_box.npy", np.zeros((3, 4)))
    np.save(p / "AFLW2000-3D.pts68.npy", np.zeros((2, 3, 68)))
    np.save(p / "AFLW2000-3D.pose.npy", np.zeros(2))
    assert "do not match AFLW2000-3D_crop.list (2 names)" in _invoke_error(
        ["aflw2000-3d", str(d)])
    np.save(p / "AFLW2000-3D_crop.roi_box.npy", np.zeros((2, 4)))
    assert "image00002.mat" in _invoke_error(["aflw2000-3d", str(d)])
    (d / "image00002.mat").write_bytes(b"not a mat file")
    assert "cannot read" in _invoke_error(["aflw2000-3d", str(d), "--limit", "1"])
    assert "no .pts files" in _invoke_error(["landmarks68", str(d)])


def test_reports_json_markdown_and_plot_error(tmp_path, monkeypatch):
    doc = {"settings": {"a": 1}, "methods": {}, "x": [np.float32(1.23456), np.nan, np.int64(3)]}
    R.write_json(tmp_path / "a.json", doc)
    assert json.loads((tmp_path / "a.json").read_text())["x"] == [1.2346, None, 3]
    t = R.Table("T", ["a", "b"], [["x", "1"]], ["note"])
    md = R.markdown(doc, [t], "Title")
    assert "| a | b |" in md and "| x | 1 |" in md and "- a: 1" in md
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails as if not installed
    with pytest.raises(R.PlotUnavailableError, match=r"facealign-cli\[plot\]"):
        R.check_plot_available()
    res = CliRunner().invoke(evaluate, ["aflw2000-3d", str(tmp_path), "--plot",
                                        str(tmp_path / "p.png")])
    assert res.exit_code == 1 and "needs matplotlib" in res.output


DEV_CHECKPOINTS = [REPO / "weights" / "facealign_v1.pth", REPO / "runs" / "smoke" / "model.pth"]


@needs_aflw
@pytest.mark.skipif(not any(p.is_file() for p in DEV_CHECKPOINTS),
                    reason="no facealign checkpoint yet")
def test_cli_runs_with_project_checkpoint(tmp_path):
    ck = next(p for p in DEV_CHECKPOINTS if p.is_file())
    res = CliRunner().invoke(evaluate, ["aflw2000-3d", str(AFLW), "--weights", str(ck),
                                        "--limit", "10", "--protocols", "gt-crops,occlusion",
                                        "--json", str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "r.json").read_text())
    assert math.isfinite(doc["results"]["gt-crops"]["facealign"]["nme_2d"]["all"])
