"""The default detector (BlazeFace on ONNX Runtime) on the 185 AFW photos: the recorded
candidates, and the annotated faces found.

``data/blazeface_afw_v2.csv`` holds every merged candidate of the default policy on every AFW
photo as the ``.tflite`` models on LiteRT gave them before issue 26 (recorded by
``scripts/record_detections.py``, whose docstring says how). The ONNX models must give the same
candidates: the same number per photo, boxes and keypoints within :data:`PIXEL_TOL` pixels,
scores within :data:`SCORE_TOL` (measured at the switch: 1.3e-4 px and 1.7e-6; the file's
rounding adds 5e-4 px and 5e-7). And the annotated faces found (IoU >= 0.3 with the box of the
68 landmarks) stay 333 of 337, the figure of ``benchmarks/detector_recall.py``.
Skips without ``../shared``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from facealign_cli.core.boxes import box_iou

EXPECTED = Path(__file__).resolve().parent / "data" / "blazeface_afw_v2.csv"
PIXEL_TOL = 0.01
SCORE_TOL = 1e-5

pytestmark = pytest.mark.slow


def _expected() -> dict[str, np.ndarray]:
    """photo name -> (n, 17) float64 rows: score, box (4), keypoints (12)."""
    out: dict[str, list] = {}
    with EXPECTED.open(newline="") as fh:
        for r in csv.DictReader(fh):
            vals = [float(v) for k, v in r.items() if k not in ("photo", "k")]
            out.setdefault(r["photo"], []).append(vals)
    return {k: np.asarray(v, np.float64) for k, v in out.items()}


@pytest.fixture(scope="module")
def afw_run(shared):
    """For every AFW photo: its candidates (n, 17) as in the file, and ``detect``'s boxes."""
    from facealign_cli.io.images import read_image
    from facealign_cli.models.detector import BlazeFaceDetector

    folder = shared / "data" / "photos" / "afw"
    if not (folder / "annotations.json").is_file():
        pytest.skip(f"no AFW photos at {folder}")
    det = BlazeFaceDetector(num_threads=1)
    cands, boxes = {}, {}
    for path in sorted(folder.glob("*.jpg")):
        image = read_image(path).image
        b, k, s, _ = det.detect_candidates(image)
        cands[path.name] = np.concatenate([s[:, None], b, k.reshape(-1, 12)], axis=1)
        boxes[path.name] = np.array([f.box for f in det.detect(image)], np.float64)
    ann = json.loads((folder / "annotations.json").read_text())["photos"]
    return cands, boxes, ann


def test_onnx_detector_gives_the_recorded_candidates(afw_run):
    cands, _, _ = afw_run
    expected = _expected()
    assert len(cands) == 185 and sum(map(len, expected.values())) == 466
    for photo, got in cands.items():
        want = expected.get(photo, np.zeros((0, 17)))
        assert got.shape == want.shape, (photo, len(got), len(want))
        if not len(want):
            continue
        np.testing.assert_allclose(got[:, 0], want[:, 0], atol=SCORE_TOL, rtol=0, err_msg=photo)
        np.testing.assert_allclose(got[:, 1:], want[:, 1:], atol=PIXEL_TOL, rtol=0,
                                   err_msg=photo)


def test_onnx_detector_finds_333_of_the_337_annotated_afw_faces(afw_run):
    _, boxes, ann = afw_run
    n = found = 0
    for stem, faces in ann.items():
        mine = boxes[f"{stem}.jpg"].reshape(-1, 4)
        for pts in faces:
            p = np.asarray(pts, np.float64)
            gt = np.concatenate([p.min(axis=0), p.max(axis=0)])
            n += 1
            found += bool(len(mine)) and box_iou(gt, mine).max() >= 0.3
    assert n == 337
    assert found >= 333
