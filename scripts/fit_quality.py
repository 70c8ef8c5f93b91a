#!/usr/bin/env python3
"""Features, ROC AUC and the fit of the face quality score on the labelled detection set.

Runs a detector policy (``--policy``, default the default policy) and its 0.4-threshold variant
(``scripts/build_detection_set.py``'s ``detector``) on every photo of the labelled detection set
(``benchmarks/data/detections_labelled.csv``: the 185 AFW photos and the 870 300-W HELEN
training crops), fits every detection with the default
:class:`facealign_cli.core.pipeline.FaceAligner` (flip averaging, roi crop scale, second pass;
the regressor of ``--weights``, default the shipped weights) as ``facealign`` does, labels each
detection from the set (IoU >= 0.5 with a row of that photo; a detection not in the set stops
the script: label it first with ``build_detection_set.py add``) and computes, per detection:

* ``score``: the detector score;
* ``flip``: the flip disagreement of the last pass
  (:attr:`facealign_cli.core.regression.CropFit.flip_disagreement`);
* ``kp4`` / ``kp6``: the agreement of the detector keypoints with the fitted landmarks
  (:func:`keypoint_disagreement`: eyes, nose and mouth / plus the ears).

It prints the ROC AUC of each (face = positive; AUC of the negated value for the disagreements),
fits a logistic regression of the label on a few of them (plain Newton iterations with a small
ridge) with 5-fold cross-validation grouped by photo (the AUC of the held-out predictions), and,
for the quality model of :mod:`facealign_cli.core.quality` (score + log flip) fitted on all
detections, the lines to paste there (``WEIGHTS``, ``FLIP_MEDIAN_FACE``) and, at thresholds,
the policy's own detections at ``--min-score`` kept (held-out and full fit): faces and false
ones kept, annotated AFW faces found (of 337) and false detections per photo.

``--write-figures``: also replace the ``quality`` section of ``facealign_cli/data/figures.json``
by :func:`quality_figures` (the rates at the default ``--min-quality``, the AUCs, the weights),
with this command and today's date, and rewrite the documents that cite it
(:func:`facealign_cli.figures.update_documents`).

Usage::

    PYTHONPATH=$PWD python scripts/fit_quality.py [--policy v2] [--weights W.pth]
        [--features /tmp/quality_features.npz] [--write-figures]
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


def features(shared: Path, rows: list[dict], policy: str,
             weights: Path | None) -> dict[str, np.ndarray]:
    """Per detection of ``policy`` and of its low-threshold variant on every photo: the
    features (module docstring), ``label`` (1 face, 0 not), ``default`` (1 = a detection of
    ``policy`` itself), ``afw``, ``group`` (cross-validation fold of its photo) and ``gt``
    (global index of the annotated face it matches at IoU >= 0.3, else -1); ``n_afw``: the
    number of AFW photos; ``n_gt_afw``: their annotated faces."""
    from facealign_cli.core.boxes import box_iou
    from facealign_cli.core.pipeline import FaceAligner
    from facealign_cli.models.regressor_onnx import make_regressor

    regressor = make_regressor(weights, num_threads=1)
    # every detection of the policies' detectors (their own thresholds), no quality filter
    aligners = [FaceAligner(bds.detector(p), regressor, num_threads=1, min_score=0.0,
                            min_quality=0.0)
                for p in (policy, f"{policy}-{bds.LOW_THRESHOLD}")]
    by_photo: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        by_photo.setdefault((r["set"], r["photo"]), []).append(r)
    out: dict[str, list] = {k: [] for k in ("score", "flip", "kp4", "kp6", "label", "default",
                                            "afw", "group", "gt")}
    n_gt, n_afw, n_gt_afw, missing = 0, 0, 0, []
    for set_name, name, path, gt in bds._photos(shared):
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        faces, flags, boxes = [], [], []
        for k, aligner in enumerate(aligners):
            for f in bds._new(aligner.detect(img), boxes):
                faces.append(f)
                flags.append(k == 0)
        aligners[0].fit(img, faces)
        found = bds.match_rows(np.array(boxes).reshape(-1, 4), by_photo.get((set_name, name), []))
        group = zlib.crc32(f"{set_name}/{name}".encode()) % 5
        for f, flag, b, r in zip(faces, flags, boxes, found):
            if r is None:
                missing.append((set_name, name, round(f.score, 3)))
                continue
            size = float(f.roi_box[2] - f.roi_box[0])
            m = box_iou(b, gt) if len(gt) else np.zeros(1)
            for k, v in (("score", f.score), ("flip", f.flip_disagreement),
                         ("kp4", keypoint_disagreement(f.keypoints, f.landmarks_2d, size)),
                         ("kp6", keypoint_disagreement(f.keypoints, f.landmarks_2d, size,
                                                       ears=True)),
                         ("label", r["label"] == "face"), ("default", flag),
                         ("afw", set_name == "afw"), ("group", group),
                         ("gt", n_gt + int(m.argmax()) if m.max() >= bds.IOU_ANNOTATED else -1)):
                out[k].append(v)
        n_gt += len(gt)
        n_afw += set_name == "afw"
        n_gt_afw += len(gt) if set_name == "afw" else 0
    if missing:
        raise SystemExit(f"{len(missing)} detections are not in the labelled set, e.g. "
                         f"{missing[:3]}: add them (build_detection_set.py add) first")
    return {**{k: np.asarray(v) for k, v in out.items()}, "n_afw": np.asarray(n_afw),
            "n_gt_afw": np.asarray(n_gt_afw)}


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


def at_threshold(q: np.ndarray, t: float, feat: dict[str, np.ndarray], m: np.ndarray,
                 n_photos: int) -> str:
    """``"found F/337, false per photo X"``: annotated faces matched by a kept detection and
    false detections kept per photo, among the detections of mask ``m`` with ``q >= t``."""
    keep = m & (q >= t)
    found = len(np.unique(feat["gt"][keep & (feat["gt"] >= 0)]))
    false = int((keep & ~feat["label"].astype(bool)).sum())
    return f"annotated found {found}, false {false} ({false / n_photos:.3f} per photo)"


def _found(keep: np.ndarray, feat: dict[str, np.ndarray]) -> int:
    """Annotated faces matched by a detection of mask ``keep``."""
    return len(np.unique(feat["gt"][keep & (feat["gt"] >= 0)]))


def quality_figures(feat: dict[str, np.ndarray], full: np.ndarray, held: np.ndarray,
                    weights: tuple, *, policy: str, weights_name: str, min_score: float,
                    min_quality: float) -> dict:
    """The ``quality`` section of the figures file (:mod:`facealign_cli.figures`) from the
    features (:func:`features`), the qualities of the full fit and of the held-out predictions
    ((N,) in [0, 1]) and the fitted ``weights`` (score, log flip, intercept): the rates at
    ``min_quality`` among ``policy``'s detections at ``min_score``, on the AFW photos and the
    HELEN crops; the AUCs; what ``--min-score 0.7`` keeps instead."""
    y = feat["label"].astype(bool)
    afw = feat["afw"].astype(bool)
    default = feat["default"].astype(bool) & (feat["score"] >= min_score)
    n_photos = int(feat["n_afw"])

    def dropped(mask: np.ndarray, q: np.ndarray) -> int:
        return int((mask & (q < min_quality)).sum())

    def held_pct(mask: np.ndarray) -> float:
        return round(100 * dropped(mask, held) / max(int(mask.sum()), 1), 1)

    def pct_int(mask: np.ndarray) -> float:
        v = 100 * dropped(mask, held) / max(int(mask.sum()), 1)
        return round(v) if v >= 10 else round(v, 1)

    kept = full >= min_quality
    fa, xa = default & afw & y, default & afw & ~y
    fh, xh = default & ~afw & y, default & ~afw & ~y
    false_scores = feat["score"][xa]
    strong = feat["score"] >= 0.7
    sub = {"all": np.ones(len(y), bool), "afw_default": afw & default}
    return {
        "weights": weights_name, "policy": policy, "min_score": min_score,
        "min_quality": min_quality,
        "model": {"weights": [round(float(w), 3) for w in weights],
                  "flip_median_face": round(float(np.median(feat["flip"][default & y])), 4)},
        "labelled": {"detections": len(y), "faces": int(y.sum()), "false": int((~y).sum())},
        "auc": {k: {"quality": round(auc(held[m], y[m]), 3),
                    "score": round(auc(feat["score"][m], y[m]), 3)} for k, m in sub.items()},
        "afw": {"photos": n_photos, "annotated": int(feat["n_gt_afw"]),
                "annotated_found": _found(default & afw, feat),
                "faces": int(fa.sum()), "faces_dropped": dropped(fa, full),
                "faces_dropped_held_out_pct": held_pct(fa),
                "false": int(xa.sum()), "false_dropped": dropped(xa, full),
                "false_dropped_held_out_pct": pct_int(xa),
                "annotated_found_kept": _found(default & afw & kept, feat),
                "false_per_photo": round(int(xa.sum()) / n_photos, 3),
                "false_per_photo_kept": round(int((xa & kept).sum()) / n_photos, 3),
                "false_score_min": round(float(false_scores.min()), 2),
                "false_score_max": round(float(false_scores.max()), 2),
                "false_score_median": round(float(np.median(false_scores)), 2)},
        "helen": {"faces": int(fh.sum()), "faces_dropped": dropped(fh, full),
                  "faces_dropped_held_out_pct": held_pct(fh),
                  "false": int(xh.sum()), "false_dropped": dropped(xh, full),
                  "false_dropped_held_out_pct": pct_int(xh)},
        "min_score_0.7": {"afw_faces_kept_pct": round(100 * int((fa & strong).sum())
                                                      / max(int(fa.sum()), 1), 1),
                          "annotated_found_kept": _found(default & afw & strong, feat),
                          "false_kept": int((xa & strong).sum())},
    }


def main(argv=None) -> int:
    from facealign_cli.defaults import DEFAULT_MIN_QUALITY, DEFAULT_MIN_SCORE
    from facealign_cli.models.detector import DEFAULT_POLICY

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shared", type=Path, default=bds.shared_root())
    ap.add_argument("--set", type=Path, default=SET)
    ap.add_argument("--policy", default=DEFAULT_POLICY, help="detector policy (v1, v2)")
    ap.add_argument("--weights", type=Path, default=None,
                    help="regressor checkpoint (default: the shipped weights)")
    ap.add_argument("--features", type=Path, help="cache of the features (npz)")
    ap.add_argument("--write-figures", action="store_true",
                    help="write the quality section of facealign_cli/data/figures.json and "
                         "rewrite the documents that cite it")
    args = ap.parse_args(argv)
    if args.features and args.features.exists():
        feat = dict(np.load(args.features))
    else:
        feat = features(args.shared, bds.load_set(args.set), args.policy, args.weights)
        if args.features:
            np.savez(args.features, **feat)
    y = feat["label"].astype(bool)
    afw = feat["afw"].astype(bool)
    default = feat["default"].astype(bool) & (feat["score"] >= DEFAULT_MIN_SCORE)
    n_afw = int(feat["n_afw"])
    print(f"{len(y)} detections of {args.policy} and {args.policy}-{bds.LOW_THRESHOLD}: "
          f"{y.sum()} faces, {(~y).sum()} false; {args.policy} at --min-score "
          f"{DEFAULT_MIN_SCORE}: AFW {(default & afw & y).sum()} faces + "
          f"{(default & afw & ~y).sum()} false, HELEN {(default & ~afw & y).sum()} + "
          f"{(default & ~afw & ~y).sum()}")
    subsets = {"all": np.ones(len(y), bool), "default": default, "afw": afw,
               "afw default": afw & default}
    for name in ("score", "flip", "kp4", "kp6"):
        sign = 1 if name == "score" else -1
        print(f"AUC {name:6s} " + "  ".join(
            f"{k} {auc(sign * feat[name][m], y[m]):.4f}" for k, m in subsets.items()))
    groups = feat["group"]
    cv = {}
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
    # the shipped model: score + log flip, fitted on every detection
    X = transform(feat, ["score", "flip"])
    w = fit_logistic(X, y.astype(float))
    full = 1 / (1 + np.exp(-(np.c_[X, np.ones(len(X))] @ w)))
    held = cv[("score", "flip")]
    print(f"\ncore/quality.py: WEIGHTS = {tuple(np.round(w, 3).tolist())}; FLIP_MEDIAN_FACE = "
          f"{np.median(feat['flip'][default & y]):.4f} (median of the faces at --min-score)")
    print(f"{args.policy} at --min-score {DEFAULT_MIN_SCORE}, no quality filter: AFW "
          f"{at_threshold(full, 0.0, feat, default & afw, n_afw)}")
    print("kept at a threshold (detections at --min-score): faces kept / false kept; then AFW "
          "annotated faces found (of 337) and false per photo")
    for t in sorted({0.2, 0.3, 0.4, 0.5, 0.6, 0.7, DEFAULT_MIN_QUALITY}):
        for what, q in (("held-out", held), ("full fit", full)):
            print(f"  quality >= {t} ({what}): AFW {rates(q, y, default & afw, t)}, HELEN "
                  f"{rates(q, y, default & ~afw, t)}; AFW "
                  f"{at_threshold(q, t, feat, default & afw, n_afw)}")
    for t in (0.6, 0.7, 0.8):
        print(f"  score >= {t}: AFW {rates(feat['score'], y, default & afw, t)}, HELEN "
              f"{rates(feat['score'], y, default & ~afw, t)}; AFW "
              f"{at_threshold(feat['score'], t, feat, default & afw, n_afw)}")
    if args.write_figures:
        from facealign_cli import figures
        from facealign_cli.models.weights import DEFAULT_WEIGHTS

        name = args.weights.stem.removeprefix("facealign_") if args.weights else DEFAULT_WEIGHTS
        values = quality_figures(feat, full, held, tuple(w), policy=args.policy,
                                 weights_name=name, min_score=DEFAULT_MIN_SCORE,
                                 min_quality=DEFAULT_MIN_QUALITY)
        given = [a for a in (sys.argv[1:] if argv is None else argv) if a != "--write-figures"]
        figures.write_section("quality", values, " ".join(
            ["PYTHONPATH=$PWD python scripts/fit_quality.py", *given]))
        for rel in figures.update_documents(Path(__file__).resolve().parents[1]):
            print(f"{rel}: figures rewritten")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
