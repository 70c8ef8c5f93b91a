"""Fit the roi-box rule from BlazeFace boxes (geometry.ROI_SCALE, geometry.ROI_SHIFT_Y).

The regressor is trained on crops made with 3DDFA's landmark rule
(:func:`facealign_cli.core.geometry.roi_box_from_landmarks`). At run time only the detector box is
known, so we fit the two numbers that map a detector box onto that crop: the crop side as a
multiple of the box's mean side, and the vertical offset of the crop centre in box heights
(medians over faces, robust to a few odd matches). The horizontal offset is ~0 by symmetry.

Data: the annotated faces of the AFW photos (``<shared>/data/photos/afw``; 68 points each),
which are training-side data — the benchmark set AFLW2000-3D is never used to fit anything.

Usage: python scripts/fit_roi_rule.py --shared ../shared
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from facealign_cli.core import geometry as G
from facealign_cli.core.boxes import box_iou as iou
from facealign_cli.models.detector import BlazeFaceDetector


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", default="../shared")
    args = ap.parse_args()
    root = Path(args.shared) / "data" / "photos" / "afw"
    ann = json.loads((root / "annotations.json").read_text())["photos"]
    det = BlazeFaceDetector()
    scale, shift, shift_x = [], [], []
    for stem, faces in sorted(ann.items()):
        img = cv2.imread(str(root / f"{stem}.jpg"), cv2.IMREAD_COLOR)
        found = det.detect(img)
        if not found:
            continue
        boxes = np.stack([f.full_box for f in found])
        for pts in faces:
            pts = np.asarray(pts, dtype=np.float64)
            lm_box = np.r_[pts.min(0), pts.max(0)]
            ious = iou(lm_box, boxes)
            k = int(np.argmax(ious))
            if ious[k] < 0.3:
                continue
            x1, y1, x2, y2 = boxes[k]
            w, h = x2 - x1, y2 - y1
            roi = G.roi_box_from_landmarks(pts)
            side = roi[2] - roi[0]
            scale.append(side / ((w + h) / 2))
            shift.append(((roi[1] + roi[3]) / 2 - (y1 + y2) / 2) / h)
            shift_x.append(((roi[0] + roi[2]) / 2 - (x1 + x2) / 2) / w)
    s, dy, dx = (float(np.median(v)) for v in (scale, shift, shift_x))
    print(json.dumps({"faces": len(scale), "ROI_SCALE": round(s, 3), "ROI_SHIFT_Y": round(dy, 3),
                      "median_shift_x": round(dx, 3),
                      "scale_iqr": [round(float(q), 3) for q in np.percentile(scale, [25, 75])],
                      "shift_y_iqr": [round(float(q), 3) for q in np.percentile(shift, [25, 75])]},
                     indent=2))


if __name__ == "__main__":
    main()
