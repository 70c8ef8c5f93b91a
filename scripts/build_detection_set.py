#!/usr/bin/env python3
"""Labelled detection set: every detection of the default detector policy (and of a low-threshold
variant) on training photos, each labelled face / not face.

Photos (read from ``$FACEALIGN_SHARED``, else ``../shared`` beside the repository; never
AFLW2000-3D, the test set):

* ``data/photos/afw``: the 185 AFW photos (long side <= 1024 px) and their 337 annotated faces
  (``annotations.json``, 68 points each; other faces are not annotated);
* ``data/300w-train/helen/images``: the 870 300-W HELEN training crops (square, twice the
  landmark box, <= 256 px: one annotated face, ``labels.npz`` 68 points, with its context, in
  which other faces and non-faces appear).

Detections (``candidates``): :class:`facealign_cli.models.detector.BlazeFaceDetector` run twice
per photo, with today's defaults (``default`` = True; whole-image passes >= 0.45, tiles >= 0.65)
and with every threshold lowered to ``LOW_THRESHOLD`` (0.4, whole image and tiles) so that a new
policy's lower-scoring candidates are in the set too. The union is kept: a low-threshold box with
IoU >= 0.5 with a default box is the same detection (the default box is kept). Boxes are the
detector's unclipped boxes (image pixels, pixel-centre frame, ``[x1, y1, x2, y2]``) and scores.

Labels: a detection whose box has IoU >= ``IOU_ANNOTATED`` (0.3, the criterion of
``benchmarks/detector_recall.py``) with the box of an annotated face's 68 points is a face
(``how = "annotation"``). Every other detection was looked at: ``sheets`` renders them as
contact sheets (8 x 6 crops, each the box grown 1.6x around its centre with the box drawn, and
the detection's id and score; PNG files), every sheet was looked at (by the session that built
the set, in an image viewer; 41 unclear crops again at 256 px with ``--ids``) and each id written
with its label in a labels file (lines ``id face|not_face``), and ``write`` merges them (``how =
"viewed"``; the labels file is not kept: the CSV holds every label). Rule used while looking:
``face`` when the box frames one human face (any pose, blur, darkness, occlusion or size, cut
by the photo's border, photographs, masks and paintings of human faces included); ``not_face``
for anything else: objects, hands, animals, toys and cartoons, the back or top of a head whose
face is not visible, a box on a part of a face (an eye, an ear, a mouth), a box around two faces,
and a loose box in which the face fills less than about a third (head and shoulders).

Output (``benchmarks/data/detections_labelled.csv``, one row per detection): ``id``, ``set``
(``afw`` | ``helen``), ``photo`` (file name), ``x1, y1, x2, y2`` (unclipped box, 0.1 px),
``score``, ``pass``, ``default`` (1 = found by today's default policy), ``label`` (``face`` |
``not_face``), ``how`` (``annotation`` | ``viewed``). Use :func:`load_set` to read it. Match a
new policy's detection to a labelled one by IoU >= 0.5; the annotated faces (for recall) are
read from ``shared`` (``report`` does both).

Measured (``report``; today's default policy / the 0.4 variant): AFW photos,
annotated faces found 333 / 336 of 337; detections 478 = 431 faces + 47 false (0.254 false per
photo) / 822 = 468 + 354 (1.914 per photo). HELEN crops (870): 870 / 870 found; 895 = 890 + 5
false (0.006 per crop) / 901 = 893 + 8.

Usage::

    python scripts/build_detection_set.py detect --out /tmp/detset/candidates.json
    python scripts/build_detection_set.py sheets --candidates /tmp/detset/candidates.json \\
        --dir /tmp/detset/sheets
    # look at every sheet, write /tmp/detset/labels.txt ("afw-0007 not_face", ...)
    python scripts/build_detection_set.py write --candidates /tmp/detset/candidates.json \\
        --labels /tmp/detset/labels.txt --out benchmarks/data/detections_labelled.csv
    python scripts/build_detection_set.py report --set benchmarks/data/detections_labelled.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np

from facealign_cli.core.boxes import box_iou

LOW_THRESHOLD = 0.4
IOU_ANNOTATED = 0.3
IOU_SAME = 0.5
COLUMNS = ["id", "set", "photo", "x1", "y1", "x2", "y2", "score", "pass", "default", "label",
           "how"]
GRID = (8, 6)  # columns, rows
CELL = 128


def shared_root() -> Path:
    """``$FACEALIGN_SHARED``, else ``shared/`` beside the repository."""
    env = os.environ.get("FACEALIGN_SHARED")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared"


def _photos(root: Path):
    """(set, file name, path, annotated boxes (K, 4)) of every photo of the set."""
    afw = root / "data" / "photos" / "afw"
    ann = json.loads((afw / "annotations.json").read_text())["photos"]
    for stem in sorted(ann):
        pts = [np.asarray(p, np.float64) for p in ann[stem]]
        boxes = np.array([np.r_[p.min(0), p.max(0)] for p in pts]).reshape(-1, 4)
        yield "afw", f"{stem}.jpg", afw / f"{stem}.jpg", boxes
    helen = root / "data" / "300w-train" / "helen"
    lab = np.load(helen / "labels.npz")
    for name, p in zip(lab["names"], lab["pts68"]):
        p = np.asarray(p, np.float64)
        yield "helen", str(name), helen / "images" / str(name), np.r_[p.min(0), p.max(0)][None]


def _r(a, nd=1):
    return np.round(np.asarray(a, np.float64), nd).tolist()


def detect(args) -> int:
    from facealign_cli.models.detector import BlazeFaceDetector

    default = BlazeFaceDetector(num_threads=1)
    low = BlazeFaceDetector(score_threshold=LOW_THRESHOLD, tile_score_threshold=LOW_THRESHOLD,
                            num_threads=1)
    out, annotated = [], {"afw": {}, "helen": {}}
    counter = {"afw": 0, "helen": 0}
    for set_name, name, path, gt in _photos(args.shared):
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if set_name == "afw":
            annotated["afw"][name] = _r(gt)
        else:
            annotated["helen"][name] = _r(gt[0])
        fd, fl = default.detect(img), low.detect(img)
        keep = list(fd)
        flags = [True] * len(fd)
        db = np.array([f.extra["box_unclipped"] for f in fd]).reshape(-1, 4)
        for f in fl:
            if not len(db) or box_iou(np.asarray(f.extra["box_unclipped"]), db).max() < IOU_SAME:
                keep.append(f)
                flags.append(False)
        for f, flag in zip(keep, flags):
            counter[set_name] += 1
            box = np.asarray(f.extra["box_unclipped"])
            m = box_iou(box, gt).max() if len(gt) else 0.0
            out.append({
                "id": f"{set_name}-{counter[set_name]:04d}", "set": set_name, "photo": name,
                "box": _r(box), "keypoints": _r(f.keypoints), "score": round(f.score, 4),
                "pass": f.extra["pass"], "default": flag,
                "label": "face" if m >= IOU_ANNOTATED else None,
                "how": "annotation" if m >= IOU_ANNOTATED else None,
            })
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"detections": out, "annotated": annotated}))
    n_un = sum(d["label"] is None for d in out)
    print(f"{len(out)} detections ({sum(d['default'] for d in out)} default), {n_un} to look at")
    return 0


def sheets(args) -> int:
    data = json.loads(args.candidates.read_text())
    todo = [d for d in data["detections"] if d["label"] is None or args.all]
    if args.ids:  # a closer look at some detections
        want = set(args.ids.split(","))
        todo = [d for d in data["detections"] if d["id"] in want]
    root = args.shared
    args.dir.mkdir(parents=True, exist_ok=True)
    cols, rows = GRID if not args.ids else (4, 3)
    per, cell = cols * rows, args.cell
    cache: dict[str, np.ndarray] = {}
    for s in range(0, len(todo), per):
        sheet = np.full((rows * (cell + 16), cols * cell, 3), 255, np.uint8)
        for j, d in enumerate(todo[s:s + per]):
            key = f"{d['set']}/{d['photo']}"
            if key not in cache:
                sub = ("data/photos/afw" if d["set"] == "afw"
                       else "data/300w-train/helen/images")
                cache = {key: cv2.imread(str(root / sub / d["photo"]), cv2.IMREAD_COLOR)}
            img = cache[key]
            x1, y1, x2, y2 = d["box"]
            cx, cy, side = (x1 + x2) / 2, (y1 + y2) / 2, 1.6 * max(x2 - x1, y2 - y1)
            # the context crop (zero-padded) and the box in it
            M = np.array([[cell / side, 0, cell / 2 - cx * cell / side],
                          [0, cell / side, cell / 2 - cy * cell / side]])
            crop = cv2.warpAffine(img, M, (cell, cell), flags=cv2.INTER_AREA
                                  if side > cell else cv2.INTER_LINEAR)
            bx = [int(round(v * cell / side + cell / 2 - c * cell / side))
                  for v, c in ((x1, cx), (y1, cy), (x2, cx), (y2, cy))]
            cv2.rectangle(crop, (bx[0], bx[1]), (bx[2], bx[3]), (0, 255, 0), 1)
            r, c = divmod(j, cols)
            y0, x0 = r * (cell + 16), c * cell
            sheet[y0:y0 + cell, x0:x0 + cell] = crop
            cv2.putText(sheet, f"{d['id']} {d['score']:.2f}", (x0 + 2, y0 + cell + 12),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.imwrite(str(args.dir / f"sheet_{s // per:03d}.png"), sheet)
    print(f"{len(todo)} crops on {(len(todo) + per - 1) // per} sheets in {args.dir}")
    return 0


def write(args) -> int:
    data = json.loads(args.candidates.read_text())
    labels = {}
    for line in args.labels.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            i, lab = line.split()
            if lab not in ("face", "not_face"):
                raise SystemExit(f"bad label {lab!r} for {i}")
            labels[i] = lab
    missing = []
    for d in data["detections"]:
        if d["label"] is None:
            if d["id"] not in labels:
                missing.append(d["id"])
                continue
            d["label"], d["how"] = labels[d["id"]], "viewed"
    if missing:
        print(f"{len(missing)} detections have no label, e.g. {missing[:5]}", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    with tmp.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        for d in data["detections"]:
            w.writerow([d["id"], d["set"], d["photo"], *d["box"], d["score"], d["pass"],
                        int(d["default"]), d["label"], d["how"]])
    tmp.replace(args.out)
    print(f"wrote {args.out}")
    return 0


def load_set(path: Path) -> list[dict]:
    """The rows of a labelled set CSV as dicts (``box`` (4,) float, ``score`` float,
    ``default`` bool, the rest str)."""
    rows = []
    with Path(path).open(newline="") as fh:
        for r in csv.DictReader(fh):
            rows.append({"id": r["id"], "set": r["set"], "photo": r["photo"],
                         "box": [float(r[k]) for k in ("x1", "y1", "x2", "y2")],
                         "score": float(r["score"]), "pass": r["pass"],
                         "default": r["default"] == "1", "label": r["label"], "how": r["how"]})
    return rows


def report(args) -> int:
    dets = load_set(args.set)
    gts = {(s, name): g for s, name, _, g in _photos(args.shared)}
    for set_name in ("afw", "helen"):
        photos = [k for k in gts if k[0] == set_name]
        n_gt = sum(len(gts[k]) for k in photos)
        for policy in ("default", "low"):
            use = [d for d in dets if d["set"] == set_name and (d["default"] or policy == "low")]
            found = 0
            for k in photos:
                b = np.array([d["box"] for d in use if d["photo"] == k[1]]).reshape(-1, 4)
                if len(b):
                    found += int((box_iou(gts[k], b).max(axis=1) >= IOU_ANNOTATED).sum())
            false = sum(d["label"] == "not_face" for d in use)
            faces = len(use) - false
            print(f"{set_name} {policy}: {len(photos)} photos, annotated faces found "
                  f"{found}/{n_gt}, detections {len(use)} = {faces} faces + {false} false "
                  f"({false / len(photos):.3f} false per photo)")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shared", type=Path, default=shared_root())
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("detect")
    p.add_argument("--out", type=Path, required=True)
    p = sub.add_parser("sheets")
    p.add_argument("--candidates", type=Path, required=True)
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--all", action="store_true", help="also the annotated faces")
    p.add_argument("--ids", help="comma-separated ids only (4 x 3 grid)")
    p.add_argument("--cell", type=int, default=CELL, help="crop side (px)")
    p = sub.add_parser("write")
    p.add_argument("--candidates", type=Path, required=True)
    p.add_argument("--labels", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p = sub.add_parser("report")
    p.add_argument("--set", type=Path, required=True)
    args = ap.parse_args(argv)
    return {"detect": detect, "sheets": sheets, "write": write, "report": report}[args.cmd](args)


if __name__ == "__main__":
    raise SystemExit(main())
