#!/usr/bin/env python3
"""Tracking tuning set (training photos only) and a split-cause diagnosis of the track ids of
``facealign evaluate stability``.

**Set** (``build``): ``--count`` composite photos (default 36), each a ``CANVAS`` (1024 x 768,
the AFW photos' long side) mid-grey canvas with smooth noise on which 2-4 of the 870 300-W
HELEN training crops (``$FACEALIGN_SHARED/data/300w-train/helen``, else ``../shared/...``
beside the repository; single faces) are pasted, each resized (``cv2.INTER_AREA``) so that its
face (sqrt(w * h) of its 68-point box) is ``FACE_SIZES`` = 30-150 px (log-uniform), at random
positions over the whole canvas: rotating a frame about the centre of the faces then moves the
faces far from the centre by more than a small face's size, as in group photos. A crop is
pasted only where it covers no earlier face (its box grown by 10 %); every other composite
("near") packs its faces within a 0.3-1.5-face-size gap of an earlier face, to check that two
faces never share or swap a track. ``numpy.random.default_rng(SEED)`` draws everything. Never
AFLW2000-3D (the test set), never the AFW photos (the reporting set). The annotations file
(format of ``data/photos/afw/annotations.json``) holds the pasted faces' landmarks, so that::

    facealign evaluate stability WORK/tracking --annotations WORK/tracking.json --json out.json

runs on it (the annotations only select faces).

**Diagnosis** (``diagnose``): the stability benchmark's two videos of each photo
(:func:`facealign_cli.evaluation.stability.random_similarities` /
:func:`~facealign_cli.evaluation.stability.moving_trajectory`, the same seeds and centres as
:func:`~facealign_cli.evaluation.stability.evaluate_photo`), detector and fit run once per
frame (one thread) and recorded; then each tracker setting (``duplicate_ratio`` over
``DUPLICATE_RATIOS`` at the default gate, then the gate's grid) is replayed on the recorded boxes
(the tracker never feeds back into detection with ``--detect-every 1``; the faces it keeps, less
the duplicates it drops, make the tracks), tracks are matched to
photo faces as the benchmark does, and every extra track of a face is given a cause: ``gap``
(the face was not detected for more than ``max_missed`` frames), ``duplicate`` (two detections
of the face in one frame), ``low_iou`` (its live track was left unmatched and the new
detection's IoU with the track's last box was below the threshold), ``taken`` (the live track
went to another detection); and ``mixed`` tracks (detections of two photo faces) are counted.
Usage::

    python scripts/build_tracking_set.py build --work /tmp/trackset
    nice -n 10 python scripts/build_tracking_set.py diagnose --work /tmp/trackset \\
        --record /tmp/trackset/record.pkl --json /tmp/trackset/grid.json
    # report only (no choice made on it): the AFW photos
    nice -n 10 python scripts/build_tracking_set.py diagnose --work /tmp/afwdiag \\
        --photos ../shared/data/photos/afw \\
        --annotations ../shared/data/photos/afw/annotations.json --defaults-only
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
CANVAS = (1024, 768)  # width, height (px)
FACE_SIZES = (30.0, 150.0)
FACES_PER_PHOTO = (2, 4)
SEED = 0
#: Grid of the diagnosis (``FaceTracker`` settings replayed on the recorded detections).
MAX_MISSED = (5, 10, 15)
MAX_DISTANCES = (0.75, 1.0, 1.5, 2.0, 3.0)
SIZE_RATIOS = (1.3, 1.5, 2.0)
#: ... and of ``duplicate_ratio`` (the defaults' gate; 0 = no duplicate is dropped).
DUPLICATE_RATIOS = (0.0, 1.0, 1.2, 1.3, 1.5, 2.0)


def _shared() -> Path:
    env = os.environ.get("FACEALIGN_SHARED")
    return Path(env) if env else REPO.parent / "shared"


def _pts_box(p: np.ndarray) -> np.ndarray:
    return np.array([p[:, 0].min(), p[:, 1].min(), p[:, 0].max(), p[:, 1].max()])


def _overlaps(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3])


def build(work: Path, count: int) -> tuple[Path, Path]:
    """Write ``work/tracking/*.jpg`` and ``work/tracking.json``; returns both paths."""
    import cv2

    src = _shared() / "data" / "300w-train" / "helen"
    lab = np.load(src / "labels.npz")
    row = {Path(str(n)).stem: i for i, n in enumerate(lab["names"])}
    files = sorted((src / "images").glob("*.jpg"))
    rng = np.random.default_rng(SEED)
    order = iter(rng.permutation(len(files)))
    w, h = CANVAS
    out = work / "tracking"
    out.mkdir(parents=True, exist_ok=True)
    photos = {}
    for k in range(count):
        near = k % 2 == 1
        noise = cv2.resize(rng.uniform(60, 200, (6, 8, 3)).astype(np.float32), (w, h),
                           interpolation=cv2.INTER_CUBIC)
        canvas = np.clip(noise, 0, 255).astype(np.uint8)
        faces: list[np.ndarray] = []   # face boxes grown by 10 %
        ann = []
        n = int(rng.integers(FACES_PER_PHOTO[0], FACES_PER_PHOTO[1] + 1))
        tries = 0
        while len(ann) < n and tries < 500:
            tries += 1
            f = files[int(next(order))]
            img = cv2.imread(str(f), cv2.IMREAD_COLOR)
            pts = lab["pts68"][row[f.stem]].astype(np.float64)
            b = _pts_box(pts)
            size = float(np.sqrt((b[2] - b[0]) * (b[3] - b[1])))
            target = float(np.exp(rng.uniform(*np.log(FACE_SIZES))))
            s = target / size
            img = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA
                             if s < 1 else cv2.INTER_LINEAR)
            ch, cw = img.shape[:2]
            if cw >= w or ch >= h:
                continue
            p = (pts + 0.5) * s - 0.5
            fb = _pts_box(p)
            for _ in range(200):
                if near and faces:
                    ref = faces[int(rng.integers(len(faces)))]
                    gap = rng.uniform(0.3, 1.5) * target
                    ang = rng.uniform(0, 2 * np.pi)
                    rc = (ref[:2] + ref[2:]) / 2
                    rs = ref[2] - ref[0]
                    c = rc + (rs / 2 + gap + target / 2) * np.array([np.cos(ang), np.sin(ang)])
                    x0 = int(round(c[0] - (fb[0] + fb[2]) / 2))
                    y0 = int(round(c[1] - (fb[1] + fb[3]) / 2))
                else:
                    x0, y0 = int(rng.integers(0, w - cw)), int(rng.integers(0, h - ch))
                if not (0 <= x0 <= w - cw and 0 <= y0 <= h - ch):
                    continue
                crop = np.array([x0, y0, x0 + cw, y0 + ch], np.float64)
                if any(_overlaps(crop, q) for q in faces):
                    continue
                q = fb + [x0, y0, x0, y0]
                pad = 0.1 * (q[2:] - q[:2])
                canvas[y0:y0 + ch, x0:x0 + cw] = img
                faces.append(np.concatenate([q[:2] - pad, q[2:] + pad]))
                ann.append((p + [x0, y0]).round(2).tolist())
                break
        name = f"track_{k:03d}" + ("_near" if near else "")
        cv2.imwrite(str(out / f"{name}.jpg"), canvas, [cv2.IMWRITE_JPEG_QUALITY, 95])
        photos[name] = ann
    js = work / "tracking.json"
    js.write_text(json.dumps({"format": "68-point iBUG landmarks (x, y) in pixels of "
                              "<photo>.jpg (pasted 300-W HELEN training crops)",
                              "photos": photos}))
    return out, js


def record(folder: Path, annotations: Path) -> list[dict]:
    """Detector + fit on every frame of both videos of every photo of ``folder`` (one
    thread); the faces are the detections matched to ``annotations``."""
    import cv2

    from facealign_cli.cli.evaluate import _load_detector, _load_methods
    from facealign_cli.core.pipeline import FaceAligner
    from facealign_cli.core.settings import AlignerSettings
    from facealign_cli.evaluation import stability as S
    from facealign_cli.evaluation.metrics import landmark_box, match_detection

    method = _load_methods(AlignerSettings(min_quality=0.0), None, None, 1)[0]
    detector, _ = _load_detector(1)
    aligner = FaceAligner(detector=detector, regressor=method.regressor,
                          settings=method.settings)
    ann = json.loads(annotations.read_text())["photos"]
    photos = sorted(folder.glob("*.jpg"))
    out = []
    for k, p in enumerate(photos):
        photo = cv2.imread(str(p), cv2.IMREAD_COLOR)
        ref = aligner(photo)
        boxes = np.array([f.box[:4] for f in ref], np.float64).reshape(-1, 4)
        keep = sorted({j for a in ann.get(p.stem, []) for j in
                       [match_detection(landmark_box(np.asarray(a)), boxes, 0.3)[0]] if j >= 0})
        ref_lm = [np.asarray(ref[j].landmarks_3d[:, :2], np.float64) for j in keep]
        rec = {"name": p.stem, "annotated": len(ann.get(p.stem, [])), "faces": len(ref_lm)}
        if ref_lm:
            rb = np.stack([S._box(q) for q in ref_lm])
            sizes = np.array([S._size(q) for q in ref_lm])
            centre = tuple(((rb[:, :2] + rb[:, 2:]) / 2).mean(axis=0))
            rng = np.random.default_rng(S.DEFAULT_SEED + k)
            videos = {"jitter": S.random_similarities(S.DEFAULT_FRAMES, centre, rng),
                      "moving": S.moving_trajectory(S.DEFAULT_MOVING_FRAMES, S.DEFAULT_FPS,
                                                    float(np.median(sizes)), centre)}
            rec.update(ref_boxes=rb, sizes=sizes)
            for kind, ms in videos.items():
                frames = []
                for m in ms:
                    fs = aligner(S.warp(photo, m))
                    inv = S.invert_affine(m)
                    frames.append({
                        "boxes": np.array([f.box[:4] for f in fs], np.float64).reshape(-1, 4),
                        "scores": np.array([f.score for f in fs], np.float64),
                        "back": np.array([S.apply_affine(inv, f.landmarks_3d[:, :2])
                                          for f in fs]).reshape(-1, 68, 2)})
                rec[kind] = frames
        out.append(rec)
        print(f"{k + 1}/{len(photos)} {p.stem}: {rec['faces']}/{rec['annotated']} faces",
              file=sys.stderr, flush=True)
    return out


def replay(rec: dict, kind: str, make_tracker) -> dict:
    """Tracks of one recorded video under a tracker and the causes of its extra tracks."""
    from facealign_cli.core.boxes import box_iou
    from facealign_cli.core.face import Face
    from facealign_cli.core.tracking import track_of
    from facealign_cli.evaluation import stability as S

    tr = make_tracker()
    frames = rec[kind]
    rb = rec["ref_boxes"]
    tracks: dict = {}
    owner = []   # per frame: track id -> photo face of the detection (-1: none)
    for fr in frames:
        faces = [Face(box=b.astype(np.float32), score=float(s))
                 for b, s in zip(fr["boxes"], fr["scores"])]
        index = {id(f): k for k, f in enumerate(faces)}
        own = {}
        for f in tr.update(faces):   # the kept faces (duplicates dropped)
            back = fr["back"][index[id(f)]]
            t = track_of(f)
            d = tracks.setdefault(t, {"frames": [], "raw": []})
            d["frames"].append(len(owner))
            d["raw"].append(back)
            iou = box_iou(S._box(back), rb)
            own[t] = int(np.argmax(iou)) if iou.max() >= S.MATCH_IOU else -1
        owner.append(own)
    for d in tracks.values():
        d["frames"] = np.asarray(d["frames"])
        d["raw"] = np.stack(d["raw"])
    match = S._match_tracks(tracks, rb)
    causes = {"gap": 0, "duplicate": 0, "low_iou": 0, "taken": 0, "mixed": 0}
    mixed = {t for t in tracks if len({o[t] for o in owner if t in o} - {-1}) > 1}
    causes["mixed"] = len(mixed)
    for i in range(len(rb)):
        ks = sorted((t for t, j in match.items() if j == i), key=lambda t: tracks[t]["frames"][0])
        for prev, new in zip(ks, ks[1:]):
            f0 = int(tracks[new]["frames"][0])
            seen_prev = [f for f in tracks[prev]["frames"] if f < f0]
            if f0 in set(tracks[prev]["frames"].tolist()):
                causes["duplicate"] += 1
            elif not seen_prev or f0 - max(seen_prev) > tr.max_missed + 1:
                causes["gap"] += 1
            else:
                last = tracks[prev]["frames"][tracks[prev]["frames"] < f0].max()
                b_prev = frames[last]["boxes"][[t for t in owner[last]].index(prev)]
                j_new = list(owner[f0]).index(new)
                iou = float(box_iou(b_prev, frames[f0]["boxes"][j_new][None])[0])
                taken = any(prev in o for o in owner[f0:f0 + 1])
                causes["taken" if taken or iou >= tr.iou_threshold else "low_iou"] += 1
    return {"faces": len(rb), "tracks": [sum(1 for j in match.values() if j == i)
                                         for i in range(len(rb))],
            "unmatched": len(tracks) - len(match), "causes": causes}


def diagnose(records: list[dict], make_tracker, label: str) -> dict:
    tot = {"jitter": [], "moving": []}
    causes = {k: {"gap": 0, "duplicate": 0, "low_iou": 0, "taken": 0, "mixed": 0}
              for k in tot}
    unmatched = {k: 0 for k in tot}
    for rec in records:
        if not rec["faces"]:
            continue
        for kind in tot:
            r = replay(rec, kind, make_tracker)
            tot[kind] += r["tracks"]
            unmatched[kind] += r["unmatched"]
            for c, v in r["causes"].items():
                causes[kind][c] += v
    res = {"label": label, **{f"tracks_per_face_{k}": float(np.mean(v)) for k, v in tot.items()},
           "faces": len(tot["jitter"]), "causes": causes, "unmatched": unmatched}
    print(json.dumps(res))
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mode", choices=("build", "diagnose"))
    ap.add_argument("--work", type=Path, required=True, help="output folder (outside the repo)")
    ap.add_argument("--count", type=int, default=36)
    ap.add_argument("--photos", type=Path, help="diagnose: photo folder (default WORK/tracking)")
    ap.add_argument("--annotations", type=Path, help="its annotations (WORK/tracking.json)")
    ap.add_argument("--defaults-only", action="store_true",
                    help="diagnose the IoU-only tracker and the defaults, not the grid (to "
                         "report on photos that must not be tuned on)")
    ap.add_argument("--json", type=Path, help="write the grid's figures here")
    ap.add_argument("--record", type=Path, help="pickle of the recorded detections (reused)")
    a = ap.parse_args(argv)
    if REPO in a.work.resolve().parents or a.work.resolve() == REPO:
        ap.error("--work must lie outside the repository")
    if a.mode == "build":
        d, js = build(a.work, a.count)
        print(f"{d}\n{js}")
        return 0
    if a.record is not None and a.record.is_file():
        records = pickle.loads(a.record.read_bytes())
    else:
        records = record(a.photos or a.work / "tracking",
                         a.annotations or a.work / "tracking.json")
        if a.record is not None:
            a.record.write_bytes(pickle.dumps(records))
    from functools import partial

    from facealign_cli.core.tracking import FaceTracker

    results = [diagnose(records, partial(FaceTracker, max_missed=5, max_distance=0.0,
                                         duplicate_ratio=0.0),
                        "IoU only, max_missed 5, no duplicate rule (before)"),
               diagnose(records, partial(FaceTracker, duplicate_ratio=0.0),
                        "FaceTracker(duplicate_ratio=0): no duplicate rule"),
               diagnose(records, FaceTracker, "FaceTracker() defaults")]
    for q in () if a.defaults_only else DUPLICATE_RATIOS:
        results.append(diagnose(records, partial(FaceTracker, duplicate_ratio=q),
                                f"duplicate_ratio {q:g}"))
    for m in () if a.defaults_only else MAX_MISSED:
        for d in MAX_DISTANCES:
            for r in SIZE_RATIOS:
                results.append(diagnose(
                    records, partial(FaceTracker, max_missed=m, max_distance=d,
                                     max_size_ratio=r),
                    f"max_missed {m}, max_distance {d:g}, max_size_ratio {r:g}"))
    if a.json is not None:
        a.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
