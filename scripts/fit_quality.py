#!/usr/bin/env python3
"""Features, ROC AUC and the fit of the face quality score on the labelled detection set.

Reads ``benchmarks/data/detections_labelled.csv`` (``scripts/build_detection_set.py``), runs the
two detector policies of that script again on each photo (for the 6 keypoints of every labelled
box: the same detections, matched by IoU), fits every labelled detection with the default
:class:`facealign_cli.core.pipeline.FaceAligner` (flip averaging on) and computes, per detection:

* ``score``: the detector score;
* ``flip``: the flip disagreement (:attr:`facealign_cli.core.regression.CropFit.flip_disagreement`);
* ``kp4`` / ``kp6``: the agreement of the detector keypoints with the fitted landmarks
  (:func:`keypoint_disagreement`: eyes, nose and mouth / plus the ears).

It prints the ROC AUC of each (face = positive; AUC of the negated value for the disagreements)
and fits a logistic regression of the label on a few of them (plain Newton iterations with a
small ridge), with 5-fold cross-validation grouped by photo: the AUC of the held-out
predictions, and the rates of faces and of false detections kept at thresholds.

Usage::

    PYTHONPATH=$PWD python scripts/fit_quality.py [--features /tmp/quality_features.npz]
"""

from __future__ import annotations

import argparse
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
from scipy.stats import rankdata

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build_detection_set as bds  # noqa: E402

SET = Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "detections_labelled.csv"


#: BlazeFace keypoint -> the iBUG 68 landmarks whose mean corresponds to it: right eye (the
#: subject's; image left on a frontal face), left eye, nose tip, mouth centre, right / left ear
#: tragion (roughly the top of the jaw contour).
KEYPOINT_LANDMARKS = (tuple(range(36, 42)), tuple(range(42, 48)), (30,), (51, 57, 62, 66), (0,),
                      (16,))


def keypoint_disagreement(keypoints: np.ndarray, landmarks_2d: np.ndarray, size: float,
                          *, ears: bool = False) -> float:
    """Mean distance between the (6, 2) detector keypoints and the matching fitted (68, 2)
    landmarks (image pixels), divided by ``size`` (the roi side); the first 4 keypoints, or all
    6 with ``ears``."""
    n = 6 if ears else 4
    lm = np.asarray(landmarks_2d, np.float64)
    ref = np.stack([lm[list(KEYPOINT_LANDMARKS[i])].mean(axis=0) for i in range(n)])
    return float(np.linalg.norm(np.asarray(keypoints)[:n] - ref, axis=1).mean() / size)


def auc(pos_score: np.ndarray, label: np.ndarray) -> float:
    """ROC AUC (Mann-Whitney, ties count half) of ``pos_score`` for boolean ``label``."""
    r = rankdata(pos_score)
    n1 = int(label.sum())
    n0 = len(label) - n1
    return float((r[label].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def features(shared: Path, rows: list[dict]) -> dict[str, np.ndarray]:
    from facealign_cli.core.boxes import box_iou
    from facealign_cli.core.face import Face
    from facealign_cli.core.pipeline import FaceAligner
    from facealign_cli.models.detector import BlazeFaceDetector

    dets = [BlazeFaceDetector(num_threads=1),
            BlazeFaceDetector(score_threshold=bds.LOW_THRESHOLD,
                              tile_score_threshold=bds.LOW_THRESHOLD, num_threads=1)]
    aligner = FaceAligner(num_threads=1)
    by_photo: dict[tuple[str, str], list[int]] = {}
    for i, r in enumerate(rows):
        by_photo.setdefault((r["set"], r["photo"]), []).append(i)
    paths = {(s, n): p for s, n, p, _ in bds._photos(shared)}
    n = len(rows)
    out = {k: np.full(n, np.nan) for k in ("score", "flip", "kp4", "kp6", "match_iou")}
    for key, idx in by_photo.items():
        img = cv2.imread(str(paths[key]), cv2.IMREAD_COLOR)
        found = [f for d in dets for f in d.detect(img)]
        fb = np.array([f.extra["box_unclipped"] for f in found]).reshape(-1, 4)
        faces = []
        for i in idx:
            m = box_iou(np.asarray(rows[i]["box"]), fb)
            j = int(m.argmax())
            out["match_iou"][i] = m[j]
            f0 = found[j]
            faces.append(Face(box=f0.box.copy(), score=f0.score, keypoints=f0.keypoints.copy(),
                              extra=dict(f0.extra)))
        aligner.fit(img, faces)
        for i, f in zip(idx, faces):
            out["score"][i] = f.score
            out["flip"][i] = f.extra["flip_disagreement"]
            size = float(f.roi_box[2] - f.roi_box[0])
            out["kp4"][i] = keypoint_disagreement(f.keypoints, f.landmarks_2d, size, ears=False)
            out["kp6"][i] = keypoint_disagreement(f.keypoints, f.landmarks_2d, size, ears=True)
    return out


def rates(q: np.ndarray, y: np.ndarray, m: np.ndarray, t: float) -> str:
    """``"faces kept k/n (p %), false kept k/n (p %)"`` for ``q >= t`` within mask ``m``."""
    keep = q >= t
    f, nf = (keep & m & y).sum(), (m & y).sum()
    x, nx = (keep & m & ~y).sum(), (m & ~y).sum()
    return f"faces {f}/{nf} ({100 * f / max(nf, 1):.1f} %), false {x}/{nx} " \
           f"({100 * x / max(nx, 1):.1f} %)"


def fit_logistic(X: np.ndarray, y: np.ndarray, ridge: float = 1e-3) -> np.ndarray:
    """Weights (with the intercept last) of a logistic regression, by Newton's method."""
    A = np.c_[X, np.ones(len(X))]
    w = np.zeros(A.shape[1])
    for _ in range(50):
        p = 1 / (1 + np.exp(-A @ w))
        g = A.T @ (p - y) + ridge * np.r_[w[:-1], 0]
        H = (A * (p * (1 - p))[:, None]).T @ A + ridge * np.eye(len(w))
        step = np.linalg.solve(H, g)
        w -= step
        if np.abs(step).max() < 1e-9:
            break
    return w


def transform(feat: dict[str, np.ndarray], names: list[str]) -> np.ndarray:
    """Design matrix: the detector score as is, disagreements as log (they span decades)."""
    cols = [feat[k] if k == "score" else np.log(np.maximum(feat[k], 1e-4)) for k in names]
    return np.stack(cols, axis=1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shared", type=Path, default=bds.shared_root())
    ap.add_argument("--set", type=Path, default=SET)
    ap.add_argument("--features", type=Path, help="cache of the features (npz)")
    args = ap.parse_args(argv)
    rows = bds.load_set(args.set)
    if args.features and args.features.exists():
        feat = dict(np.load(args.features))
    else:
        feat = features(args.shared, rows)
        if args.features:
            np.savez(args.features, **feat)
    y = np.array([r["label"] == "face" for r in rows])
    default = np.array([r["default"] for r in rows])
    print(f"{len(rows)} detections, {y.sum()} faces, {(~y).sum()} false; min match IoU "
          f"{feat['match_iou'].min():.3f}")
    afw = np.array([r["set"] == "afw" for r in rows])
    subsets = {"all": np.ones(len(y), bool), "default": default, "afw": afw,
               "afw default": afw & default}
    for name in ("score", "flip", "kp4", "kp6"):
        sign = 1 if name == "score" else -1
        print(f"AUC {name:6s} " + "  ".join(
            f"{k} {auc(sign * feat[name][m], y[m]):.4f}" for k, m in subsets.items()))
    cv = {}
    groups = np.array([zlib.crc32(f"{r['set']}/{r['photo']}".encode()) % 5 for r in rows])
    for names in (["score", "flip"], ["score", "kp4"], ["score", "kp6"], ["flip", "kp4"],
                  ["score", "flip", "kp4"], ["score", "flip", "kp6"]):
        X = transform(feat, names)
        pred = np.zeros(len(y))
        for g in range(5):
            w = fit_logistic(X[groups != g], y[groups != g].astype(float))
            pred[groups == g] = np.c_[X[groups == g], np.ones((groups == g).sum())] @ w
        w = fit_logistic(X, y.astype(float))
        print(f"logistic {'+'.join(names):16s} CV AUC " + "  ".join(
            f"{k} {auc(pred[m], y[m]):.4f}" for k, m in subsets.items())
            + f"; weights (full fit) {np.round(w, 3).tolist()}")
        cv[tuple(names)] = 1 / (1 + np.exp(-pred))
    print("kept at a threshold (default policy, held-out predictions): faces kept / false kept")
    m = default
    for t in (0.5, 0.6, 0.7, 0.8):
        print(f"  score >= {t}: AFW {rates(feat['score'], y, m & afw, t)}, HELEN "
              f"{rates(feat['score'], y, m & ~afw, t)}")
    for names, q in cv.items():
        for t in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7):
            print(f"  {'+'.join(names)} >= {t}: AFW {rates(q, y, m & afw, t)}, HELEN "
                  f"{rates(q, y, m & ~afw, t)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
