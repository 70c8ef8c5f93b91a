#!/usr/bin/env python3
"""Labelled detection set: every detection of the detector policies ``v1`` and ``v2`` (and of
low-threshold variants of both) on training photos, each labelled face / not face.

Photos (read from ``$FACEALIGN_SHARED``, else ``../shared`` beside the repository; never
AFLW2000-3D, the test set):

* ``data/photos/afw``: the 185 AFW photos (long side <= 1024 px) and their 337 annotated faces
  (``annotations.json``, 68 points each; other faces are not annotated);
* ``data/300w-train/helen/images``: the 870 300-W HELEN training crops (square, twice the
  landmark box, <= 256 px: one annotated face, ``labels.npz`` 68 points, with its context, in
  which other faces and non-faces appear).

Detections (``candidates``), each from a named policy of :func:`detector`
(:class:`facealign_cli.models.detector.BlazeFaceDetector`): first (``detect``) ``v1``, the
policy before issue 20 (whole-image passes >= 0.45, tiles >= 0.65), and ``v1-0.4``, the same
with every threshold lowered to ``LOW_THRESHOLD`` (0.4) so that a new policy's lower-scoring
candidates are in the set too; then (``add``) ``v2``, today's default, and ``v2-0.4``. A
detection with IoU >= ``IOU_SAME`` (0.5) with a row already in the set (same photo) is that
row's detection and adds nothing: each row is the detection of the first policy that made it
(``policy``, with its box and score). Boxes are the detector's unclipped boxes (image pixels,
pixel-centre frame, ``[x1, y1, x2, y2]``).

Labels: a detection whose box has IoU >= ``IOU_ANNOTATED`` (0.3, the criterion of
``benchmarks/detector_recall.py``) with the box of an annotated face's 68 points is a face
(``how = "annotation"``). Every other detection was looked at: ``sheets`` renders them as
contact sheets (8 x 6 crops, each the box grown 1.6x around its centre with the box drawn, and
the detection's id and score; PNG files; the image outside the photo is black), every sheet was
looked at (by the session that built each part, in an image viewer; the unclear crops again at
256 px with ``--ids``: 41 of the v1 part, 42 of the v2 part) and each id written with its label
in a labels file (lines ``id face|not_face``), and ``write`` merges them (``how = "viewed"``;
the labels file is not kept: the CSV holds every label). Rule used while looking: ``face`` when
the box frames one human face (any pose, blur, darkness, occlusion or size, cut by the photo's
border, photographs, masks and paintings of human faces included); ``not_face`` for anything
else: objects, hands, animals, toys and cartoons, the back or top of a head whose face is not
visible, a box on a part of a face (an eye, an ear, a mouth; also a box holding half a face and
half background), a box around two faces, and a loose box in which the face fills less than
about a third (head and shoulders).

Output (``benchmarks/data/detections_labelled.csv``, one row per detection): ``id``, ``set``
(``afw`` | ``helen``), ``photo`` (file name), ``x1, y1, x2, y2`` (unclipped box, 0.1 px),
``score``, ``pass`` (the detector pass), ``policy`` (``v1`` | ``v1-0.4`` | ``v2`` |
``v2-0.4``: the run that added the row), ``default`` (1 = found by ``v1``, the default policy
when the set was begun), ``label`` (``face`` | ``not_face``), ``how`` (``annotation`` |
``viewed``). Use :func:`load_set` to read it. Match a policy's detection to a labelled one by
IoU >= 0.5 (:func:`match_rows`); the annotated faces (for recall) are read from ``shared``
(``report`` does both, running each policy again).

Measured (``report --policies v1,v1-0.4,v2,v2-0.4``; 1854 rows = 1723 of v1 / v1-0.4 and 131
of v2 / v2-0.4; every detection of the four policies is in the set):

========  =====================  ======================  ======================
policy    AFW faces found / 337  false per AFW photo     false per HELEN crop
========  =====================  ======================  ======================
v1        333                    0.254 (47)              0.006 (5)
v1-0.4    336                    1.908 (353)             0.009 (8)
v2        333                    0.146 (27)              0.017 (15)
v2-0.4    334                    0.243 (45)              0.028 (24)
========  =====================  ======================  ======================

Usage::

    python scripts/build_detection_set.py detect --out /tmp/detset/candidates.json
    python scripts/build_detection_set.py sheets --candidates /tmp/detset/candidates.json \\
        --dir /tmp/detset/sheets
    # look at every sheet, write /tmp/detset/labels.txt ("afw-0007 not_face", ...)
    python scripts/build_detection_set.py write --candidates /tmp/detset/candidates.json \\
        --labels /tmp/detset/labels.txt --out benchmarks/data/detections_labelled.csv
    # a new policy's detections not in the set yet (ids continue the set's), then sheets,
    # labels and ``write --append`` as above
    python scripts/build_detection_set.py add --set benchmarks/data/detections_labelled.csv \\
        --policy v2 --policy v2-0.4 --out /tmp/detset2/candidates.json
    python scripts/build_detection_set.py write --candidates /tmp/detset2/candidates.json \\
        --labels /tmp/detset2/labels.txt --out benchmarks/data/detections_labelled.csv --append
    python scripts/build_detection_set.py report --set benchmarks/data/detections_labelled.csv \\
        --policies v1,v2
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
COLUMNS = ["id", "set", "photo", "x1", "y1", "x2", "y2", "score", "pass", "policy", "default",
           "label", "how"]
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


def detector(policy: str):
    """The :class:`~facealign_cli.models.detector.BlazeFaceDetector` of a policy name of the
    set: a key of ``POLICIES`` (``"v1"``, ``"v2"``) at its own thresholds, or that key with
    ``"-0.4"`` (``"v1-0.4"``): every threshold of it (the detector's and each pass's) lowered
    to ``LOW_THRESHOLD``."""
    from dataclasses import replace

    from facealign_cli.models.detector import POLICIES, BlazeFaceDetector

    name, _, low = policy.partition("-")
    if name not in POLICIES or low not in ("", str(LOW_THRESHOLD)):
        raise SystemExit(f"unknown policy {policy!r}: a name of {sorted(POLICIES)}, "
                         f"optionally with -{LOW_THRESHOLD}")
    if not low:
        return BlazeFaceDetector(num_threads=1, policy=name)
    passes = [replace(p, score_threshold=None) for p in POLICIES[name]]
    return BlazeFaceDetector(score_threshold=LOW_THRESHOLD, num_threads=1, policy=passes)


def _candidate(set_name: str, number: int, name: str, f, gt: np.ndarray, policy: str,
               default: bool) -> dict:
    """One detection ``f`` as a candidate row, labelled ``face`` when it matches an annotated
    face of ``gt`` (K, 4) at IoU >= ``IOU_ANNOTATED``, else unlabelled (``None``)."""
    box = np.asarray(f.box_unclipped)
    m = box_iou(box, gt).max() if len(gt) else 0.0
    return {
        "id": f"{set_name}-{number:04d}", "set": set_name, "photo": name,
        "box": _r(box), "keypoints": _r(f.keypoints), "score": round(f.score, 4),
        "pass": f.detector_pass, "policy": policy, "default": default,
        "label": "face" if m >= IOU_ANNOTATED else None,
        "how": "annotation" if m >= IOU_ANNOTATED else None,
    }


def _new(found, boxes: list) -> list:
    """The detections of ``found`` with IoU < ``IOU_SAME`` with every box of ``boxes`` (which
    grows with them)."""
    out = []
    for f in found:
        b = np.asarray(f.box_unclipped, np.float64)
        if not boxes or box_iou(b, np.array(boxes)).max() < IOU_SAME:
            out.append(f)
            boxes.append(b)
    return out


def _annotated(set_name: str, gt: np.ndarray):
    return _r(gt) if set_name == "afw" else _r(gt[0])


def detect(args) -> int:
    """Candidates of the first set: policy ``v1`` and ``v1-0.4`` (module docstring)."""
    dets = {"v1": detector("v1"), f"v1-{LOW_THRESHOLD}": detector(f"v1-{LOW_THRESHOLD}")}
    out, annotated = [], {"afw": {}, "helen": {}}
    counter = {"afw": 0, "helen": 0}
    for set_name, name, path, gt in _photos(args.shared):
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        annotated[set_name][name] = _annotated(set_name, gt)
        boxes: list = []
        for policy, det in dets.items():
            for f in _new(det.detect(img), boxes):
                counter[set_name] += 1
                out.append(_candidate(set_name, counter[set_name], name, f, gt, policy,
                                      policy == "v1"))
    return _save_candidates(args.out, out, annotated)


def add(args) -> int:
    """Candidates of the detections of ``--policy`` (one or more, in order) that match no row
    of ``--set`` (IoU >= ``IOU_SAME``, same photo); ids continue the set's."""
    rows = load_set(args.set)
    known: dict[tuple[str, str], list] = {}
    counter = {"afw": 0, "helen": 0}
    for r in rows:
        known.setdefault((r["set"], r["photo"]), []).append(np.asarray(r["box"]))
        counter[r["set"]] = max(counter[r["set"]], int(r["id"].split("-")[1]))
    dets = {p: detector(p) for p in args.policy}
    out, annotated = [], {"afw": {}, "helen": {}}
    for set_name, name, path, gt in _photos(args.shared):
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        annotated[set_name][name] = _annotated(set_name, gt)
        boxes = known.get((set_name, name), [])
        for policy, det in dets.items():
            for f in _new(det.detect(img), boxes):
                counter[set_name] += 1
                out.append(_candidate(set_name, counter[set_name], name, f, gt, policy, False))
    return _save_candidates(args.out, out, annotated)


def _save_candidates(path: Path, out: list, annotated: dict) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"detections": out, "annotated": annotated}))
    n_un = sum(d["label"] is None for d in out)
    by = {}
    for d in out:
        by[d["policy"], d["set"]] = by.get((d["policy"], d["set"]), 0) + 1
    print(f"{len(out)} detections ({', '.join(f'{p} {s} {n}' for (p, s), n in by.items())}), "
          f"{n_un} to look at")
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
    new = data["detections"]
    old = load_set(args.out) if args.append else []
    clash = {d["id"] for d in old} & {d["id"] for d in new}
    if clash:
        print(f"ids already in {args.out}: {sorted(clash)[:5]}", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    with tmp.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        for d in old + new:
            w.writerow([d["id"], d["set"], d["photo"], *d["box"], d["score"], d["pass"],
                        d["policy"], int(d["default"]), d["label"], d["how"]])
    tmp.replace(args.out)
    print(f"wrote {args.out} ({len(old)} + {len(new)} rows)")
    return 0


def load_set(path: Path) -> list[dict]:
    """The rows of a labelled set CSV as dicts (``box`` (4,) float, ``score`` float,
    ``default`` bool, the rest str; ``policy`` of a CSV written before that column existed:
    ``v1`` or ``v1-0.4`` from ``default``)."""
    rows = []
    with Path(path).open(newline="") as fh:
        for r in csv.DictReader(fh):
            default = r["default"] == "1"
            policy = r.get("policy") or ("v1" if default else f"v1-{LOW_THRESHOLD}")
            rows.append({"id": r["id"], "set": r["set"], "photo": r["photo"],
                         "box": [float(r[k]) for k in ("x1", "y1", "x2", "y2")],
                         "score": float(r["score"]), "pass": r["pass"], "policy": policy,
                         "default": default, "label": r["label"], "how": r["how"]})
    return rows


def match_rows(boxes: np.ndarray, rows: list[dict]) -> list[dict | None]:
    """The labelled row of each of ``boxes`` (N, 4) (unclipped detector boxes of one photo):
    the row of ``rows`` (that photo's) with the highest IoU if it is >= ``IOU_SAME``, else
    ``None`` (a detection not in the set)."""
    if not rows:
        return [None] * len(boxes)
    iou = box_iou(np.asarray(boxes, np.float64).reshape(-1, 4),
                  np.array([r["box"] for r in rows]))
    return [rows[int(k.argmax())] if k.max() >= IOU_SAME else None
            for k in iou.reshape(len(boxes), len(rows))]


def report(args) -> int:
    """Annotated faces found and false / unlabelled detections per photo of each policy, run
    again on every photo and matched to the set."""
    rows: dict[tuple[str, str], list[dict]] = {}
    for r in load_set(args.set):
        rows.setdefault((r["set"], r["photo"]), []).append(r)
    dets = {p: detector(p) for p in args.policies.split(",")}
    tally: dict = {}
    for set_name, name, path, gt in _photos(args.shared):
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        for policy, det in dets.items():
            t = tally.setdefault((set_name, policy), np.zeros(5, int))
            boxes = np.array([f.box_unclipped for f in det.detect(img)]).reshape(-1, 4)
            labels = [r and r["label"] for r in match_rows(boxes, rows.get((set_name, name), []))]
            found = (box_iou(gt, boxes).max(axis=1) >= IOU_ANNOTATED).sum() if len(boxes) else 0
            t += [1, len(gt), found, labels.count("not_face"), labels.count(None)]
    for (set_name, policy), (n, n_gt, found, false, unknown) in tally.items():
        print(f"{set_name} {policy}: {n} photos, annotated faces found {found}/{n_gt}, "
              f"false detections {false} ({false / n:.3f} per photo), not in the set "
              f"{unknown} ({unknown / n:.3f} per photo)")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shared", type=Path, default=shared_root())
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("detect")
    p.add_argument("--out", type=Path, required=True)
    p = sub.add_parser("add")
    p.add_argument("--set", type=Path, required=True)
    p.add_argument("--policy", action="append", required=True,
                   help="policy name (v2, v2-0.4, ...); repeat for several, in order")
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
    p.add_argument("--append", action="store_true",
                   help="keep the rows of --out and add the candidates' after them")
    p = sub.add_parser("report")
    p.add_argument("--set", type=Path, required=True)
    p.add_argument("--policies", default="v1,v2", help="comma-separated policy names")
    args = ap.parse_args(argv)
    cmds = {"detect": detect, "add": add, "sheets": sheets, "write": write, "report": report}
    return cmds[args.cmd](args)


if __name__ == "__main__":
    raise SystemExit(main())
