"""Recall and speed of the face detector's policies
(``facealign_cli.models.detector.BlazeFaceDetector(policy=...)``; default: ``v1``, the policy
before issue 20, and ``v2``, today's default, one after the other on the same images).

Usage::

    python benchmarks/detector_recall.py [--shared ../shared] [--json out.json] [--num-threads 1]
        [--policies v1,v2]

AFLW2000-3D is a test set: these figures are measured, never used to choose a policy (the
policies are chosen on training photos, ``scripts/tune_detector.py``).

Data (read from ``shared/``, never shipped):

* AFLW2000-3D (``data/aflw2000-3d``): 2000 450x450 images, one annotated face each; ground truth
  = the 68 landmarks of ``3ddfa-protocol/AFLW2000-3D.pts68.npy`` (row i <-> line i of
  ``AFLW2000-3D_crop.list``), yaw from ``AFLW2000-3D.pose.npy`` (degrees).
* AFW photos (``data/photos/afw``): 185 photos (long side <= 1024 px), 337 annotated faces
  (68 points each) in ``annotations.json``; other real faces are not annotated, so detections
  per photo is only a rough false-positive indicator.

A face counts as found when some detection box has IoU >= 0.3 with the box spanning its 68
landmarks (x/y min/max). Timing: images are decoded first; the clock covers ``detect`` only
(wall time and this process's CPU time, per image; the 1-min load average is printed because
other jobs on the machine inflate wall time).
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

from facealign_cli.models.detector import DEFAULT_POLICY, POLICIES, BlazeFaceDetector

IOU_FOUND = 0.3


def _default_shared() -> Path:
    env = os.environ.get("FACEALIGN_SHARED")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1].parent / "shared"


def box_of(points: np.ndarray) -> np.ndarray:
    """(N, 2) points -> (4,) ``[x1, y1, x2, y2]`` spanning them."""
    return np.concatenate([points.min(axis=0), points.max(axis=0)])


def best_iou(gt: np.ndarray, boxes: np.ndarray) -> float:
    """Largest IoU of the (4,) box ``gt`` with any of the (M, 4) ``boxes`` (0 when M = 0)."""
    if len(boxes) == 0:
        return 0.0
    iw = np.minimum(gt[2], boxes[:, 2]) - np.maximum(gt[0], boxes[:, 0])
    ih = np.minimum(gt[3], boxes[:, 3]) - np.maximum(gt[1], boxes[:, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    a = (gt[2] - gt[0]) * (gt[3] - gt[1])
    b = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return float((inter / np.maximum(a + b - inter, 1e-9)).max())


def _timed(det: BlazeFaceDetector, img: np.ndarray):
    w0, c0 = time.perf_counter(), time.process_time()
    faces = det.detect(img)
    return faces, time.perf_counter() - w0, time.process_time() - c0


def eval_aflw(det: BlazeFaceDetector, root: Path, limit: int | None = None) -> dict:
    proto = root / "3ddfa-protocol"
    names = (proto / "AFLW2000-3D_crop.list").read_text().split()
    pts = np.load(proto / "AFLW2000-3D.pts68.npy")
    yaw = np.load(proto / "AFLW2000-3D.pose.npy")
    idx = list(range(len(names)))[: limit or None]
    images = [cv2.imread(str(root / names[i]), cv2.IMREAD_COLOR) for i in idx]
    found = np.zeros(len(idx), bool)
    n_det = 0
    wall = cpu = 0.0
    misses = []
    for j, (i, img) in enumerate(zip(idx, images)):
        faces, dw, dc = _timed(det, img)
        wall += dw
        cpu += dc
        n_det += len(faces)
        boxes = np.array([f.box for f in faces]).reshape(-1, 4)
        found[j] = best_iou(box_of(pts[i, :2].T), boxes) >= IOU_FOUND
        if not found[j]:
            misses.append(names[i])
    ay = np.abs(yaw[idx])
    bins = {"0-30": ay <= 30, "30-60": (ay > 30) & (ay <= 60), "60-90": ay > 60}
    return {
        "images": len(idx),
        "recall": float(found.mean()),
        "recall_yaw_gt60": float(found[ay > 60].mean()) if (ay > 60).any() else None,
        "recall_by_yaw_bin": {k: float(found[m].mean()) for k, m in bins.items() if m.any()},
        "n_yaw_gt60": int((ay > 60).sum()),
        "detections_per_image": n_det / len(idx),
        "ms_per_image_wall": 1000 * wall / len(idx),
        "ms_per_image_cpu": 1000 * cpu / len(idx),
        "misses": misses,
    }


def eval_afw(det: BlazeFaceDetector, root: Path, limit: int | None = None) -> dict:
    ann = json.loads((root / "annotations.json").read_text())["photos"]
    stems = sorted(ann)[: limit or None]
    images = {s: cv2.imread(str(root / f"{s}.jpg"), cv2.IMREAD_COLOR) for s in stems}
    n_faces = n_found = n_det = n_unmatched = 0
    wall = cpu = 0.0
    wall_1024, n_1024 = 0.0, 0
    misses = []
    for s in stems:
        img = images[s]
        faces, dw, dc = _timed(det, img)
        wall += dw
        cpu += dc
        if max(img.shape[:2]) == 1024:
            wall_1024 += dw
            n_1024 += 1
        boxes = np.array([f.box for f in faces]).reshape(-1, 4)
        gts = [box_of(np.asarray(p, np.float64)) for p in ann[s]]
        n_det += len(faces)
        for g in gts:
            n_faces += 1
            ok = best_iou(g, boxes) >= IOU_FOUND
            n_found += ok
            if not ok:
                misses.append({"photo": s, "box": [round(float(v), 1) for v in g]})
        gt_arr = np.array(gts).reshape(-1, 4)
        n_unmatched += sum(best_iou(b, gt_arr) < IOU_FOUND for b in boxes)
    return {
        "photos": len(stems),
        "annotated_faces": n_faces,
        "recall": n_found / max(n_faces, 1),
        "detections_per_photo": n_det / len(stems),
        "unmatched_detections_per_photo": n_unmatched / len(stems),
        "ms_per_photo_wall": 1000 * wall / len(stems),
        "ms_per_photo_cpu": 1000 * cpu / len(stems),
        "ms_per_1024px_photo_wall": 1000 * wall_1024 / n_1024 if n_1024 else None,
        "photos_1024px": n_1024,
        "misses": misses,
    }


def _aflw_line(a: dict) -> str:
    return (f"AFLW2000-3D ({a['images']} images): recall {100 * a['recall']:.2f} %, "
            f"|yaw|>60 {100 * a['recall_yaw_gt60']:.2f} % (n={a['n_yaw_gt60']}), "
            f"{a['detections_per_image']:.3f} detections/image, "
            f"{a['ms_per_image_wall']:.1f} ms/image wall ({a['ms_per_image_cpu']:.1f} ms CPU)")


def _afw_line(f: dict) -> str:
    return (f"AFW photos ({f['photos']} photos, {f['annotated_faces']} annotated faces): "
            f"recall {100 * f['recall']:.2f} %, {f['detections_per_photo']:.2f} detections/photo "
            f"({f['unmatched_detections_per_photo']:.2f} not matching an annotated face), "
            f"{f['ms_per_photo_wall']:.1f} ms/photo wall ({f['ms_per_photo_cpu']:.1f} ms CPU; "
            f"1024-px photos {f['ms_per_1024px_photo_wall']:.1f} ms wall)")


def _measure(name: str, args, aflw_root: Path, afw_root: Path) -> dict:
    """Figures of the policy ``name`` on both sets (printed, and returned for the JSON)."""
    det = BlazeFaceDetector(num_threads=args.num_threads, policy=name)
    # warm-up (first invokes allocate XNNPACK buffers)
    for side in (450, 1024):
        det.detect(np.zeros((side, side, 3), np.uint8))
    out: dict = {"policy": det.policy()}
    sets = (("aflw", "aflw2000_3d", aflw_root, eval_aflw, _aflw_line),
            ("afw", "afw_photos", afw_root, eval_afw, _afw_line))
    for short, key, root, evaluate, line in sets:
        if getattr(args, f"skip_{short}") or not root.is_dir():
            continue
        out[f"load_avg_1min_before_{short}"] = os.getloadavg()[0]
        out[key] = evaluate(det, root, args.limit)
        print(f"{name}: {line(out[key])}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shared", type=Path, default=_default_shared(), help="shared/ folder")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--num-threads", type=int, default=1, help="ONNX Runtime threads per model")
    ap.add_argument("--limit", type=int, default=None, help="first N images of each set")
    ap.add_argument("--skip-aflw", action="store_true")
    ap.add_argument("--skip-afw", action="store_true")
    ap.add_argument("--policies", default="v1,v2",
                    help=f"comma-separated detector policies of {sorted(POLICIES)} "
                         f"(the default policy: {DEFAULT_POLICY})")
    args = ap.parse_args(argv)
    policies = args.policies.split(",")
    if any(p not in POLICIES for p in policies):
        print(f"unknown policy in {args.policies!r}; known: {sorted(POLICIES)}", file=sys.stderr)
        return 2

    aflw_root = args.shared / "data" / "aflw2000-3d"
    afw_root = args.shared / "data" / "photos" / "afw"
    if not aflw_root.is_dir() and not afw_root.is_dir():
        print(f"no data under {args.shared} (use --shared)", file=sys.stderr)
        return 2
    out: dict = {
        "found_criterion": f"IoU >= {IOU_FOUND} with the box of the 68 landmarks",
        "cpu_count": os.cpu_count(),
        "num_threads": args.num_threads,
        "policies": {},
    }
    for name in policies:
        out["policies"][name] = _measure(name, args, aflw_root, afw_root)
    print(f"load average (1 min) now: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
