"""Measure how the default detector's roi boxes differ from the landmark roi boxes the regressor
is trained on, per |yaw|, and write the samples that ``facealign train`` draws detector-like
crops from (``box_error = "configs/box_error_blazeface.npz"``, issue 23).

Data: AFLW-train faces (``<shared>/data/aflw-train``), training data only: the faces of the AFLW
validation split (:func:`facealign_cli.training.validation.aflw_validation_split`, 1,000 faces)
are left out, and AFLW2000-3D is never read. ``--per-bin`` faces are drawn from each |yaw| bin
(the teacher label's yaw). Each 120-px crop is padded by half its side on every side (edge
pixels repeated) and upscaled 2x, so that the detector sees the face with context; the
detector's box is mapped to a roi box by the tool's rule
(:func:`facealign_cli.core.geometry.roi_box_from_detector_box`) and compared with 3DDFA's roi box
of the teacher's flip-averaged 68 landmarks
(:func:`~facealign_cli.core.geometry.roi_box_from_landmarks`, the crop the training labels
define).

Output (``--out``, an ``.npz``): ``yaw`` (N,) signed degrees; ``dx`` (N,) horizontal centre
offset in roi sides, multiplied by the sign of the yaw (so a mirrored face mirrors it); ``dy``
(N,) vertical centre offset in roi sides (down positive); ``dlog`` (N,) log of the side ratio
(detector roi / landmark roi); ``found`` (N,) bool (False: no detection; the offsets are NaN).

Usage: python scripts/measure_box_error.py --cache .cache/trainset_k1000.npz --shared ../shared
(the cache is the training set ``facealign train`` prepares).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from facealign_cli.core import geometry as G
from facealign_cli.models.detector import BlazeFaceDetector
from facealign_cli.training.data import detector_view
from facealign_cli.training.validation import aflw_validation_split, yaw_bins


def measure(crops, landmarks, det) -> np.ndarray:
    """(N, 4) float64: dx, dy (roi sides, unsigned), dlog, found, for crops (N, 120, 120, 3)
    uint8 BGR and their (N, 68, 2) landmarks in crop pixels."""
    out = np.full((len(crops), 4), np.nan)
    for i, (c, lm) in enumerate(zip(crops, landmarks)):
        view, pad = detector_view(c)
        found = det.detect(view)
        out[i, 3] = bool(found)
        if not found:
            continue
        gt = G.roi_box_from_landmarks(lm)
        cg, side = (gt[:2] + gt[2:]) / 2, float(gt[2] - gt[0])
        rois = np.stack([G.roi_box_from_detector_box(np.asarray(f.full_box, float) / 2 - pad)
                         for f in found])
        centres = (rois[:, :2] + rois[:, 2:]) / 2
        k = int(np.argmin(np.linalg.norm(centres - cg, axis=1)))  # the face, not a false one
        out[i, :2] = (centres[k] - cg) / side
        out[i, 2] = np.log((rois[k, 2] - rois[k, 0]) / side)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", default="../shared")
    ap.add_argument("--cache", default=".cache/trainset_k1000.npz")
    ap.add_argument("--per-bin", type=int, default=1500)
    ap.add_argument("--out", default="configs/box_error_blazeface.npz")
    args = ap.parse_args()
    t0 = time.time()
    data = np.load(args.cache, mmap_mode="r")
    names = data["names"].astype(str)
    with np.load(Path(args.shared) / "data" / "aflw-train" / "labels.npz") as lab:
        aflw_names, aflw_yaw = lab["names"].astype(str), lab["yaw"]
    val = {f"aflw/{aflw_names[r]}" for r in aflw_validation_split(aflw_yaw, 1000)}
    cand = np.array([i for i, n in enumerate(names) if n.startswith("aflw/") and n not in val])
    yaw = np.array([G.pose_from_camera(p)[0] for p in data["params"][cand]])
    rng = np.random.default_rng(0)
    pick = np.sort(np.concatenate([rng.choice(np.flatnonzero(yaw_bins(yaw) == b),
                                              args.per_bin, replace=False) for b in range(3)]))
    idx = cand[pick]
    lm = np.asarray(data["targets"][idx][:, :2, :68]).transpose(0, 2, 1)
    m = measure(np.asarray(data["crops"][idx]), lm, BlazeFaceDetector())
    y = yaw[pick]
    m[:, 0] *= np.sign(y)
    np.savez(args.out, yaw=y.astype(np.float32), dx=m[:, 0].astype(np.float32),
             dy=m[:, 1].astype(np.float32), dlog=m[:, 2].astype(np.float32),
             found=m[:, 3] == 1)
    rows = {}
    for b, name in enumerate(("[0,30]", "(30,60]", "(60,90]")):
        s = m[yaw_bins(y) == b]
        ok = s[:, 3] == 1
        rows[name] = {"faces": int(len(s)), "found": round(float(ok.mean()), 4),
                      "mean dx/dy/dlog": np.round(s[ok, :3].mean(0), 4).tolist(),
                      "std dx/dy/dlog": np.round(s[ok, :3].std(0), 4).tolist()}
    print(json.dumps({"out": args.out, "seconds": round(time.time() - t0), **rows}, indent=1))


if __name__ == "__main__":
    main()
