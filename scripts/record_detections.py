#!/usr/bin/env python
"""Record the default detector's candidates on the AFW photos, the expectations of
``tests/models/test_detector_expected.py``.

For every photo of ``<shared>/data/photos/afw`` (sorted by name; decoded with
:func:`facealign_cli.io.images.read_image`), every merged candidate of
``BlazeFaceDetector.detect_candidates`` (default policy, one thread) as one CSV row: ``photo``,
``k`` (rank by score), ``score``, ``x1, y1, x2, y2`` (unclipped box) and the six keypoints
``kx0, ky0, ..., kx5, ky5``, image pixels (pixel-centre frame, as the detector returns them),
boxes and keypoints rounded to 1e-3 px and scores to 1e-6. A photo without candidates has no row.

The shipped file ``tests/models/data/blazeface_afw_v2.csv`` was recorded with the ``.tflite``
models on LiteRT (facealign at commit a699044, before issue 26 moved the detector to ONNX
Runtime)::

    git worktree add /tmp/base a699044
    PYTHONPATH=/tmp/base python scripts/record_detections.py --shared ../shared \\
        --out tests/models/data/blazeface_afw_v2.csv

so the test shows that the ONNX models give the boxes LiteRT gave, within its tolerance.

Usage: ``PYTHONPATH=$PWD python scripts/record_detections.py --out FILE [--shared DIR]``
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COLUMNS = (["photo", "k", "score", "x1", "y1", "x2", "y2"]
           + [f"k{c}{i}" for i in range(6) for c in "xy"])


def record(photos_dir: Path) -> list[dict]:
    """The rows (see the module docstring) of every photo of ``photos_dir``."""
    from facealign_cli.io.images import read_image
    from facealign_cli.models.detector import BlazeFaceDetector

    det = BlazeFaceDetector(num_threads=1)
    rows = []
    for path in sorted(photos_dir.glob("*.jpg")):
        boxes, kps, scores, _ = det.detect_candidates(read_image(path).image)
        for k, (b, kp, s) in enumerate(zip(boxes, kps, scores)):
            row = {"photo": path.name, "k": k, "score": f"{s:.6f}"}
            row.update({c: f"{v:.3f}" for c, v in zip(("x1", "y1", "x2", "y2"), b)})
            row.update({f"k{c}{i}": f"{kp[i, j]:.3f}" for i in range(6)
                        for j, c in enumerate("xy")})
            rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    args = ap.parse_args(argv)
    photos = args.shared / "data" / "photos" / "afw"
    if not photos.is_dir():
        print(f"no photos at {photos}", file=sys.stderr)
        return 2
    rows = record(photos)
    with args.out.open("w", newline="") as fh:
        w = csv.DictWriter(fh, COLUMNS, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    print(f"{len(rows)} candidates -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
