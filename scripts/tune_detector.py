#!/usr/bin/env python3
"""Measure candidate detection policies (``facealign_cli.models.detector``) side by side on
training photos only, and print one table: annotated faces found, unmatched detections per
image and detector CPU time per image, for each policy and data set.

Data (from ``--shared``, default ``$FACEALIGN_SHARED`` else ``../shared`` beside the
repository; never AFLW2000-3D, the test set):

* ``afw``: the 185 AFW photos (``data/photos/afw``, the validation split; 337 annotated faces,
  68 points each; other faces in them are not annotated, so unmatched detections are not all
  false faces). The CPU column of this set is the cost model's figure: ms per 1024-px photo.
* ``helen``: the 870 300-W HELEN training crops (``data/300w-train/helen``: the face with
  context, square, twice its landmark box, <= 256 px) as they are: one large face per image.
* ``helen_1024``: the same crops enlarged to 1024 x 1024 (``cv2.INTER_LINEAR``): a portrait
  photo whose face spans half of it.
* ``aflw_profiles``: :func:`load_aflw_profiles` (AFLW *training* crops, strong profiles).
* ``helen_groups``: ``--groups`` 1024 x 768 "group photos" pasted from the HELEN crops on a
  grey canvas (``numpy.random.default_rng(0)``): each has one face size, drawn from
  :data:`GROUP_FACE_PX` (landmark-box long side, px), and as many crops as fit in a grid
  (at most 12), each at a random place of its cell.

A face counts as found when a detection box has IoU >= 0.3 with the box of its 68 landmarks
(:func:`facealign_cli.evaluation.metrics.match_detection`); a detection is unmatched when no
annotated face reaches IoU 0.3 with it. False detections (``afw`` and ``helen``): with the
labelled detection set (``--labelled``, ``scripts/build_detection_set.py``'s CSV: every
detection of the v1 and v2 policies and of their 0.4-threshold variants on those photos,
labelled face / not face by looking), a detection takes the label of a labelled one with
IoU >= 0.5; the others are counted as unlabelled (not looked at). CPU time:
``time.process_time`` around ``detect`` only (images decoded first), one thread of the
detector's runtime (LiteRT until issue 26, ONNX Runtime since) and one OpenCV thread; every
policy runs on each image in turn, so load on the machine falls on all of
them alike.

``--write-figures``: also replace the ``detector`` section of ``facealign_cli/data/figures.json``
by :func:`detector_figures` (the default policy and the previous one, ``v2`` and ``v1``: found,
CPU ms, false detections per image, per set) with this command and today's date, and rewrite
the documents that cite it (:func:`facealign_cli.figures.update_documents`).

Usage::

    PYTHONPATH=$PWD python scripts/tune_detector.py [--sets afw,helen,helen_1024,helen_groups]
        [--policies v1,v2,...] [--groups 60] [--json out.json] [--write-figures]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from facealign_cli.core.boxes import box_iou
from facealign_cli.evaluation.metrics import IOU_THRESHOLD, landmark_box, match_detection
from facealign_cli.models.detector import POLICIES, BlazeFaceDetector, DetectionPass

#: Face sizes (landmark-box long side, px) of the pasted group photos.
GROUP_FACE_PX = (28, 34, 40, 48, 56, 64, 80, 100, 130)

_BACK = DetectionPass("back/whole", "back", logit_shift=0.4)
_SHORT = DetectionPass("short_range/whole", "short_range")
_FULL = DetectionPass("full_range/whole", "full_range")

#: Candidates besides the named policies of :data:`POLICIES` (the ``back`` model's logit
#: shift 0.4 puts its raw score 0.354 at the calibrated threshold 0.45; ``back-raw0.45`` and
#: ``back-raw0.30`` try raw thresholds 0.45 and 0.30).
CANDIDATES: dict[str, tuple[DetectionPass, ...]] = {
    "short+full": (_SHORT, _FULL),
    "short+full+tiles0.4": (_SHORT, _FULL, DetectionPass(
        "short_range/tiles", "short_range", 0.65, tile_fraction=0.4, tile_overlap=0.2,
        min_long_side=640)),
    "back": (_BACK,),
    "back-raw0.45": (DetectionPass("back/whole", "back"),),
    "back-raw0.30": (DetectionPass("back/whole", "back", logit_shift=0.647),),
    "back+short": (_BACK, _SHORT),
    "back+full": (_BACK, _FULL),
    "back+tiles0.3": (_BACK, POLICIES["v1"][2]),
}


def _default_shared() -> Path:
    env = os.environ.get("FACEALIGN_SHARED")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared"


def load_afw(shared: Path) -> list[tuple[str, np.ndarray, list[np.ndarray]]]:
    """``(name, BGR image, [(68, 2) annotated faces])`` of the AFW photos."""
    root = shared / "data" / "photos" / "afw"
    ann = json.loads((root / "annotations.json").read_text())["photos"]
    return [(s, cv2.imread(str(root / f"{s}.jpg"), cv2.IMREAD_COLOR),
             [np.asarray(p, np.float64) for p in ann[s]]) for s in sorted(ann)]


def load_helen(shared: Path, size: int | None = None):
    """The HELEN training crops, enlarged to ``size`` x ``size`` when given."""
    root = shared / "data" / "300w-train" / "helen"
    lab = np.load(root / "labels.npz")
    out = []
    for name, pts in zip(lab["names"], lab["pts68"]):
        img = cv2.imread(str(root / "images" / str(name)), cv2.IMREAD_COLOR)
        pts = pts.astype(np.float64)
        if size is not None:
            s = size / max(img.shape[:2])
            img = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_LINEAR)
            pts = (pts + 0.5) * s - 0.5
        out.append((str(name), img, [pts]))
    return out


def make_groups(shared: Path, n: int, seed: int = 0, canvas=(768, 1024)):
    """``n`` pasted group photos of HELEN crops (module docstring)."""
    helen = load_helen(shared)
    rng = np.random.default_rng(seed)
    H, W = canvas
    out = []
    for g in range(n):
        face_px = GROUP_FACE_PX[g % len(GROUP_FACE_PX)]
        img = np.full((H, W, 3), 110, np.uint8)
        faces = []
        cell = int(2.3 * face_px)  # a crop is twice its landmark box: leave a margin
        cols, rows = W // cell, H // cell
        cells = rng.permutation(cols * rows)[: min(12, cols * rows)]
        for c in cells:
            _, crop, (pts,) = helen[int(rng.integers(len(helen)))]
            side = np.ptp(pts, axis=0).max()
            s = face_px / side
            small = cv2.resize(crop, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
            h, w = small.shape[:2]
            x0 = (c % cols) * cell + int(rng.integers(0, max(cell - w, 0) + 1))
            y0 = (c // cols) * cell + int(rng.integers(0, max(cell - h, 0) + 1))
            h, w = min(h, H - y0), min(w, W - x0)
            img[y0:y0 + h, x0:x0 + w] = small[:h, :w]
            faces.append((pts + 0.5) * s - 0.5 + [x0, y0])
        out.append((f"group{g:03d}_{face_px}px", img, faces))
    return out


def load_aflw_profiles(shared: Path, n: int = 400):
    """AFLW training crops (never AFLW2000-3D) of the ``n`` first faces with |yaw| > 60 deg,
    enlarged x3 (360 px) at the centre of a 640 x 480 grey canvas. Their 21-point labels miss
    the hidden points, so the "annotated face" is the square of 0.75 x the crop side at the
    crop's centre (a BlazeFace box spans about that part of these crops)."""
    root = shared / "data" / "aflw-train"
    lab = np.load(root / "labels.npz")
    idx = np.flatnonzero(np.abs(lab["yaw"]) > 60)[:n]
    out = []
    for i in idx:
        crop = cv2.imread(str(root / "images" / str(lab["names"][i])), cv2.IMREAD_COLOR)
        big = cv2.resize(crop, (360, 360), interpolation=cv2.INTER_LINEAR)
        img = np.full((480, 640, 3), 110, np.uint8)
        img[60:420, 140:500] = big
        c, h = np.array([320.0, 240.0]), 0.75 * 360 / 2
        out.append((str(lab["names"][i]), img, [np.stack([c - h, c + h])]))
    return out


def score_image(faces, truth: list[np.ndarray]) -> tuple[int, int]:
    """``(annotated faces found, unmatched detections)`` of one image."""
    boxes = np.array([f.box for f in faces], np.float64).reshape(-1, 4)
    gts = np.array([landmark_box(p) for p in truth]).reshape(-1, 4)
    found = sum(match_detection(g, boxes)[0] >= 0 for g in gts)
    unmatched = sum(not len(gts) or box_iou(b, gts).max() < IOU_THRESHOLD for b in boxes)
    return int(found), int(unmatched)


def load_labelled(path: Path) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
    """The labelled detection set (``scripts/build_detection_set.py``'s CSV) as ``{(set,
    photo file): ((N, 4) boxes, (N,) bool is-a-face)}``."""
    import csv

    rows: dict[tuple[str, str], list] = {}
    with open(path, newline="") as fh:
        for r in csv.DictReader(fh):
            box = [float(r[k]) for k in ("x1", "y1", "x2", "y2")]
            rows.setdefault((r["set"], r["photo"]), []).append((box, r["label"] == "face"))
    return {k: (np.array([b for b, _ in v], np.float64), np.array([f for _, f in v]))
            for k, v in rows.items()}


def label_faces(faces, labelled) -> tuple[int, int]:
    """``(false, unlabelled)`` detections of one image: a detection takes the label of the
    labelled detection with IoU >= 0.5 (the set's rule), else it is unlabelled."""
    boxes, is_face = labelled if labelled is not None else (np.zeros((0, 4)), np.zeros(0, bool))
    false = unknown = 0
    for f in faces:
        iou = box_iou(np.asarray(f.full_box, np.float64), boxes)
        if not len(iou) or iou.max() < 0.5:
            unknown += 1
        elif not is_face[int(np.argmax(iou))]:
            false += 1
    return false, unknown


def run(policies: dict[str, BlazeFaceDetector], images, repeats: int = 1,
        labelled: dict | None = None) -> dict:
    """Figures of every policy on one data set (each image through every policy in turn);
    with ``labelled`` (``{photo file: labels}`` of this set), false and unlabelled detections."""
    res = {k: {"found": 0, "unmatched": 0, "false": 0, "unlabelled": 0, "cpu_s": 0.0,
               "cpu_s_1024": 0.0, "n_1024": 0, "missed": []} for k in policies}
    n_faces = 0
    for name, img, truth in images:
        n_faces += len(truth)
        for key, det in policies.items():
            c0 = time.process_time()
            for _ in range(repeats):
                faces = det.detect(img)
            dt = (time.process_time() - c0) / repeats
            found, unmatched = score_image(faces, truth)
            r = res[key]
            if labelled is not None:
                false, unknown = label_faces(faces, labelled.get(name))
                r["false"] += false
                r["unlabelled"] += unknown
            r["found"] += found
            r["unmatched"] += unmatched
            r["cpu_s"] += dt
            if max(img.shape[:2]) == 1024:
                r["cpu_s_1024"] += dt
                r["n_1024"] += 1
            if found < len(truth):
                r["missed"].append([name, len(truth) - found])
    for r in res.values():
        r["images"] = len(images)
        r["faces"] = n_faces
        r["unmatched_per_image"] = r["unmatched"] / max(len(images), 1)
        if labelled is None:
            r["false"] = r["unlabelled"] = None
        r["cpu_ms_per_image"] = 1000 * r.pop("cpu_s") / max(len(images), 1)
        n = r["n_1024"]
        r["cpu_ms_per_1024px_image"] = 1000 * r.pop("cpu_s_1024") / n if n else None
    return res


def detector_figures(sets: dict, default: str = "v2", previous: str = "v1") -> dict:
    """The ``detector`` section of the figures file (:mod:`facealign_cli.figures`) from
    :func:`run`'s results per set (``{set: {policy: figures}}``): per set the images and, for
    ``previous`` and ``default``, annotated faces found, of how many, CPU ms (per 1024-px photo
    on ``afw``, per image elsewhere) and false detections per image (where labelled)."""
    out: dict = {"default": default, "previous": previous,
                 "runtime": "ONNX Runtime, 1 detector and 1 OpenCV thread, CPU time of detect",
                 "sets": {}}
    for s, res in sets.items():
        row: dict = {"photos": res[default]["images"],
                     "cpu_ms_per": "1024-px photo" if s == "afw" else "image"}
        for k in (previous, default):
            r = res[k]
            ms = r["cpu_ms_per_1024px_image"] if s == "afw" else r["cpu_ms_per_image"]
            row[k] = {"found": r["found"], "faces": r["faces"], "cpu_ms": round(ms, 1)}
            if r["false"] is not None:
                row[k]["false_per_image"] = round(r["false"] / max(r["images"], 1), 3)
        out["sets"][s] = row
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shared", type=Path, default=_default_shared())
    ap.add_argument("--sets", default="afw,helen,helen_1024,helen_groups")
    ap.add_argument("--policies", default=",".join([*POLICIES, *CANDIDATES]))
    ap.add_argument("--groups", type=int, default=54, help="pasted group photos")
    ap.add_argument("--limit", type=int, default=None, help="first N images of each set")
    ap.add_argument("--repeats", type=int, default=1, help="detect calls per image (timing)")
    ap.add_argument("--labelled", type=Path,
                    default=Path("benchmarks/data/detections_labelled.csv"),
                    help="labelled detection set (false detections of afw / helen)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--write-figures", action="store_true",
                    help="write the detector section of facealign_cli/data/figures.json (needs "
                         "v1 and v2 among --policies) and rewrite the documents that cite it")
    args = ap.parse_args(argv)

    if not (args.shared / "data" / "photos" / "afw").is_dir():
        print(f"no data under {args.shared} (use --shared)", file=sys.stderr)
        return 2
    cv2.setNumThreads(1)
    table = {**POLICIES, **CANDIDATES}
    keys = args.policies.split(",")
    unknown = [k for k in keys if k not in table]
    if unknown:
        print(f"unknown policies {unknown}; known: {sorted(table)}", file=sys.stderr)
        return 2
    if args.write_figures and not {"v1", "v2"} <= set(keys):
        print("--write-figures needs v1 and v2 among --policies", file=sys.stderr)
        return 2
    dets = {k: BlazeFaceDetector(num_threads=1, policy=table[k]) for k in keys}
    for d in dets.values():  # warm-up: the first invokes allocate buffers
        d.detect(np.zeros((768, 1024, 3), np.uint8))
    loaders = {
        "afw": lambda: load_afw(args.shared),
        "helen": lambda: load_helen(args.shared),
        "helen_1024": lambda: load_helen(args.shared, 1024),
        "helen_groups": lambda: make_groups(args.shared, args.groups),
        "aflw_profiles": lambda: load_aflw_profiles(args.shared),
    }
    out: dict = {"policies": {k: d.policy()["passes"] for k, d in dets.items()}, "sets": {}}
    labels = load_labelled(args.labelled) if args.labelled.is_file() else {}
    for s in args.sets.split(","):
        images = loaders[s]()[: args.limit or None]
        lab = None
        if s in ("afw", "helen") and labels:
            lab = {name: labels.get((s, name if s == "helen" else f"{name}.jpg"))
                   for name, _, _ in images}
        res = out["sets"][s] = run(dets, images, args.repeats, lab)
        ref = res[keys[0]]
        print(f"\n{s}: {ref['images']} images, {ref['faces']} annotated faces")
        print(f"{'policy':22s} {'found':>9s} {'unmatched/img':>14s} {'false/img':>10s} "
              f"{'unlabelled/img':>15s} {'CPU ms/img':>11s} {'ms/1024px':>10s} "
              f"{'x ' + keys[0]:>9s}")
        for k in keys:
            r = res[k]
            ms = r["cpu_ms_per_1024px_image"] or r["cpu_ms_per_image"]
            ref_ms = ref["cpu_ms_per_1024px_image"] or ref["cpu_ms_per_image"]
            ms1024 = r["cpu_ms_per_1024px_image"]
            lab_cols = ("-", "-") if r["false"] is None else (
                f"{r['false'] / r['images']:.3f}", f"{r['unlabelled'] / r['images']:.3f}")
            print(f"{k:22s} {r['found']:4d}/{r['faces']:<4d} {r['unmatched_per_image']:14.2f} "
                  f"{lab_cols[0]:>10s} {lab_cols[1]:>15s} {r['cpu_ms_per_image']:11.1f} "
                  f"{'-' if ms1024 is None else f'{ms1024:.1f}':>10s} {ms / ref_ms:9.2f}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    if args.write_figures:
        from facealign_cli import figures

        given = [a for a in (sys.argv[1:] if argv is None else argv) if a != "--write-figures"]
        figures.write_section("detector", detector_figures(out["sets"]), " ".join(
            ["PYTHONPATH=$PWD python scripts/tune_detector.py", *given]))
        for rel in figures.update_documents(Path(__file__).resolve().parents[1]):
            print(f"{rel}: figures rewritten")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
