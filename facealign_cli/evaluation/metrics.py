"""Evaluation metrics: landmark NME (box, 3D, inter-ocular), |yaw| bins, head-pose MAE, CED.

Pure numpy on arrays; no file is read. Conventions:

* landmarks are (B, 68, 2) or (B, 68, 3) float arrays in image pixels (x right, y down; z in
  pixel units, the frame is stated per function), iBUG 68-point order;
* an NME is returned as a fraction (multiply by 100 for %); the figures dicts hold % values;
* head pose is ``[yaw, pitch, roll]`` in degrees;
* NaN marks a face without a prediction (a detector miss): it is left out of means and counts
  as a failure in the CED figures.

Sources: the AFLW2000-3D protocol (NME over ``sqrt(w h)`` of the ground-truth 68-point box, mean
per |yaw| bin [0, 30], (30, 60], (60, 90] and the unweighted mean of the three bins; pose MAE on
the faces whose three angles lie within +-99 degrees) is 3DDFA's (Zhu et al., TPAMI 2017), as
used by 3DDFA-V2 and SynergyNet; the inter-ocular NME is 300-W's (Sagonas et al., IVC 2016).
"""

from __future__ import annotations

import numpy as np

from facealign_cli.core.boxes import box_iou

#: The |yaw| bins of the 3DDFA protocol, degrees: [0, 30], (30, 60], (60, 90] (upper edges
#: inclusive; faces above 90 degrees fall in the last bin).
YAW_BINS = ((0, 30), (30, 60), (60, 90))
BIN_LABELS = ("[0,30]", "(30,60]", "(60,90]")
POSE_LIMIT_DEG = 99.0
IOU_THRESHOLD = 0.3
CED_AUC_THRESHOLD = 7.0  # % NME
CED_FAILURE_THRESHOLDS = (7.0, 10.0)  # % NME


# ---------------------------------------------------------------------------------------------
# Landmark errors
# ---------------------------------------------------------------------------------------------

def landmark_box(points: np.ndarray) -> np.ndarray:
    """Bounding box ``[x1, y1, x2, y2]`` of landmarks.

    Args:
        points: (K, 2+) or (B, K, 2+) image pixels; only x, y are used.

    Returns:
        (4,) or (B, 4) float64.
    """
    p = np.asarray(points, dtype=np.float64)[..., :2]
    return np.concatenate([p.min(axis=-2), p.max(axis=-2)], axis=-1)


def _box_norm(gt: np.ndarray) -> np.ndarray:
    """``sqrt(w h)`` of the 2D bounding box of each (..., K, 2+) ground-truth set."""
    wh = gt[..., :2].max(-2) - gt[..., :2].min(-2)
    return np.sqrt(wh[..., 0] * wh[..., 1])


def nme_box(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-image 2D NME normalised by the ground-truth box: ``mean_i ||p_i - g_i|| / sqrt(w h)``.

    Only x, y are used; ``w``, ``h`` are the sides of the ground truth's 2D bounding box (the
    AFLW2000-3D protocol of 3DDFA).

    Args:
        pred: (B, 68, 2+) predicted landmarks, image pixels.
        gt: (B, 68, 2+) ground truth, image pixels.

    Returns:
        (B,) float64 NME as a fraction (multiply by 100 for %); NaN where ``pred`` is NaN.
    """
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    err = np.linalg.norm(pred[..., :2] - gt[..., :2], axis=-1).mean(-1)
    return err / _box_norm(gt)


def nme_3d(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-image 3D NME: mean 3D point error after removing each set's mean z, over sqrt(w h)
    of the ground truth's 2D box.

    Both sets must be in the same frame (image pixels, z in pixel units with the same sign);
    depth has no absolute origin under the scaled-orthographic camera, hence the z alignment
    (subtract the mean z of the 68 points of each set). This is a simple, documented variant of
    the 3D landmark NME of 3DDFA (Zhu et al., TPAMI 2017), normalised like the 2D NME.

    Args:
        pred: (B, 68, 3) predicted landmarks.
        gt: (B, 68, 3) ground truth.

    Returns:
        (B,) float64 NME as a fraction.
    """
    pred = np.asarray(pred, dtype=np.float64).copy()
    gt = np.asarray(gt, dtype=np.float64).copy()
    pred[..., 2] -= pred[..., 2].mean(axis=-1, keepdims=True)
    gt[..., 2] -= gt[..., 2].mean(axis=-1, keepdims=True)
    err = np.linalg.norm(pred - gt, axis=-1).mean(-1)
    return err / _box_norm(gt)


def nme_interocular(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-face NME normalised by the inter-ocular distance (outer eye corners, iBUG points 36
    and 45, 0-based): the 300-W normalisation (Sagonas et al., IVC 2016).

    Args:
        pred: (B, 68, 2+) predicted landmarks (image pixels).
        gt: (B, 68, 2+) ground truth (image pixels).

    Returns:
        (B,) float64 NME as a fraction.
    """
    pred = np.asarray(pred, dtype=np.float64)[..., :2]
    gt = np.asarray(gt, dtype=np.float64)[..., :2]
    err = np.linalg.norm(pred - gt, axis=-1).mean(-1)
    return err / np.linalg.norm(gt[..., 36, :] - gt[..., 45, :], axis=-1)


#: An annotated face whose 68-point box has a side shorter than this many pixels, or whose
#: outer eye corners (points 36, 45) lie closer than this, cannot be scored.
MIN_ANNOTATION_PX = 1.0


def degenerate_annotation(points: np.ndarray) -> str | None:
    """Why a 68-point annotation cannot be scored, or None when it can.

    Degenerate: the points' bounding box has a side under :data:`MIN_ANNOTATION_PX` (the
    points collapsed onto one point or one line: no detection can overlap the box, and the box
    NME divides by ``sqrt(w h)`` = 0), or the outer eye corners, iBUG points 36 and 45, lie
    closer than that (the inter-ocular NME divides by their distance). Such a face is neither
    a detector miss nor an error of the model: evaluations count it apart.

    Args:
        points: (68, 2+) ground-truth landmarks, image pixels.

    Returns:
        A short reason, e.g. ``"68-point box 0.0 x 12.0 px"``, or None.
    """
    p = np.asarray(points, dtype=np.float64)[:, :2]
    w, h = p.max(axis=0) - p.min(axis=0)
    if min(w, h) < MIN_ANNOTATION_PX:
        return f"68-point box {w:.1f} x {h:.1f} px"
    eyes = float(np.linalg.norm(p[36] - p[45]))
    if eyes < MIN_ANNOTATION_PX:
        return f"outer eye corners (points 36, 45) {eyes:.1f} px apart"
    return None


# ---------------------------------------------------------------------------------------------
# Detection matching
# ---------------------------------------------------------------------------------------------

def match_detection(gt_box: np.ndarray, det_boxes: np.ndarray,
                    threshold: float = IOU_THRESHOLD) -> tuple[int, float]:
    """The detection that matches an annotated face: highest IoU with the ground-truth box.

    Args:
        gt_box: (4,) ground-truth box ``[x1, y1, x2, y2]`` (the 68 landmarks' bounding box),
            image pixels.
        det_boxes: (M, 4) detector boxes, image pixels (M may be 0).
        threshold: minimum IoU of a match.

    Returns:
        ``(index, iou)``; ``index`` is -1 (a miss) when no detection reaches ``threshold``;
        ties go to the first detection. IoU by :func:`facealign_cli.core.boxes.box_iou` in
        float64.
    """
    det_boxes = np.asarray(det_boxes, dtype=np.float64).reshape(-1, 4)
    if len(det_boxes) == 0:
        return -1, 0.0
    iou = box_iou(np.asarray(gt_box, dtype=np.float64), det_boxes)
    j = int(np.argmax(iou))
    return (j if iou[j] >= threshold else -1), float(iou[j])


# ---------------------------------------------------------------------------------------------
# |yaw| bins and head pose
# ---------------------------------------------------------------------------------------------

def yaw_bin_index(yaw_deg: np.ndarray) -> np.ndarray:
    """|yaw| bin of each face (:data:`YAW_BINS`): 0 for [0, 30], 1 for (30, 60], 2 above 60.

    Args:
        yaw_deg: (B,) yaw in degrees (sign ignored).

    Returns:
        (B,) int64; -1 for a NaN yaw (in no bin).
    """
    a = np.abs(np.asarray(yaw_deg, dtype=np.float64))
    idx = np.full(a.shape, -1, dtype=np.int64)
    lower = -np.inf
    for k, (_, hi) in enumerate(YAW_BINS):
        upper = np.inf if k == len(YAW_BINS) - 1 else hi
        idx[(a > lower) & (a <= upper)] = k
        lower = hi
    return idx


def yaw_bin_means(nme: np.ndarray, yaw_deg: np.ndarray) -> tuple[list[float], float, list[int]]:
    """Mean NME per |yaw| bin (:func:`yaw_bin_index`) and their unweighted mean.

    Args:
        nme: (B,) per-image NME (any unit).
        yaw_deg: (B,) yaw in degrees (sign ignored).

    Returns:
        ``(bin_means, mean_of_bins, counts)``: 3 floats (NaN for an empty bin), a float (NaN
        if a bin is empty), 3 ints.
    """
    nme = np.asarray(nme)
    b = yaw_bin_index(yaw_deg)
    masks = [b == k for k in range(len(YAW_BINS))]
    means = [float(nme[m].mean()) if m.any() else float("nan") for m in masks]
    return means, float(np.mean(means)), [int(m.sum()) for m in masks]


def pose_mae(pred: np.ndarray, gt: np.ndarray, limit: float = POSE_LIMIT_DEG
             ) -> tuple[np.ndarray, int]:
    """Mean absolute error of yaw, pitch, roll on faces whose ground truth lies within +-limit.

    Args:
        pred: (B, 3) predicted ``[yaw, pitch, roll]`` degrees.
        gt: (B, 3) ground truth ``[yaw, pitch, roll]`` degrees.
        limit: faces with any ground-truth |angle| above it are left out (3DDFA protocol: 99).

    Returns:
        ``((3,) float64 MAE in degrees, number of faces used)``.
    """
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    ok = (np.abs(gt) <= limit).all(axis=1)
    return np.abs(pred[ok] - gt[ok]).mean(axis=0), int(ok.sum())


# ---------------------------------------------------------------------------------------------
# Cumulative error distribution
# ---------------------------------------------------------------------------------------------

def _misses_as_inf(errors) -> np.ndarray:
    e = np.asarray(errors, dtype=np.float64)
    return np.where(np.isnan(e), np.inf, e)


def ced_curve(errors: np.ndarray, max_error: float = 10.0,
              num: int = 201) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative error distribution: the fraction of faces with error <= x.

    Args:
        errors: (B,) errors (e.g. NME in %); NaN or inf (a missed face) count as failures.
        max_error: the last abscissa.
        num: number of abscissae in ``[0, max_error]``.

    Returns:
        ``(x (num,), fraction (num,))`` float64.
    """
    e = _misses_as_inf(errors)
    x = np.linspace(0.0, max_error, num)
    if len(e) == 0:
        return x, np.zeros_like(x)
    return x, (e[None, :] <= x[:, None]).mean(axis=1)


def auc_at(errors: np.ndarray, threshold: float = CED_AUC_THRESHOLD) -> float:
    """Area under the CED curve up to ``threshold``, divided by ``threshold`` (in [0, 1]).

    Computed exactly: the CED is a step function, so its integral over ``[0, T]`` is
    ``mean_i max(0, T - e_i)``; AUC = that / T. All-zero errors give 1; errors >= T give 0.
    NaN / inf (misses) contribute 0; no face gives NaN.

    Args:
        errors: (B,) errors in the unit of ``threshold``.
    """
    e = _misses_as_inf(errors)
    if len(e) == 0:
        return float("nan")
    return float(np.clip(threshold - e, 0.0, threshold).mean() / threshold)


def failure_rate(errors: np.ndarray, threshold: float) -> float:
    """Fraction of faces with error > ``threshold``; NaN / inf (misses) are failures; no face
    gives NaN."""
    e = _misses_as_inf(errors)
    if len(e) == 0:
        return float("nan")
    return float((e > threshold).mean())


def ced_summary(errors: np.ndarray) -> dict:
    """AUC at 7 % and failure rates above 7 % and 10 % of per-face NME values in %.

    Returns:
        ``{"auc_7": float, "fr_7": float, "fr_10": float}`` (fractions in [0, 1]).
    """
    return {"auc_7": auc_at(errors, CED_AUC_THRESHOLD),
            "fr_7": failure_rate(errors, CED_FAILURE_THRESHOLDS[0]),
            "fr_10": failure_rate(errors, CED_FAILURE_THRESHOLDS[1])}


# ---------------------------------------------------------------------------------------------
# Figures (the dicts of the JSON report)
# ---------------------------------------------------------------------------------------------

def finite_stat(x: np.ndarray, fn) -> float:
    """``fn`` (e.g. ``np.mean``) over the finite values of ``x``; NaN when there are none."""
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    return float(fn(x)) if len(x) else float("nan")


def nme_figures(nme_pct: np.ndarray, yaw_splits: dict[str, np.ndarray]) -> dict:
    """Summary of per-image NME (%) by |yaw| bin for each yaw split.

    Args:
        nme_pct: (B,) NME in %, NaN for faces without a prediction (detector misses).
        yaw_splits: split name -> (B,) yaw in degrees.

    Returns:
        ``{"splits": {name: {"bins": [3 means], "mean": mean of bins, "counts": [3 evaluated],
        "misses": [3 missed]}}, "all": mean over evaluated faces, "median": ..., "n": evaluated,
        "misses": total, "ced": ced_summary (misses as failures)}``.
    """
    nme_pct = np.asarray(nme_pct, dtype=np.float64)
    ok = np.isfinite(nme_pct)
    splits = {}
    for name, yaw in yaw_splits.items():
        yaw = np.asarray(yaw, dtype=np.float64)
        bins, mean, counts = yaw_bin_means(nme_pct[ok], yaw[ok])
        b = yaw_bin_index(yaw)
        misses = [int(((b == k) & ~ok).sum()) for k in range(len(YAW_BINS))]
        splits[name] = {"bins": bins, "mean": mean, "counts": counts, "misses": misses}
    return {"splits": splits, "all": finite_stat(nme_pct, np.mean),
            "median": finite_stat(nme_pct, np.median), "n": int(ok.sum()),
            "misses": int((~ok).sum()), "ced": ced_summary(nme_pct)}


def pose_figures(pred: np.ndarray, gt: np.ndarray, limit: float = POSE_LIMIT_DEG) -> dict:
    """Head-pose MAE (degrees) on faces with a prediction and ground truth within +-limit.

    Args:
        pred: (B, 3) ``[yaw, pitch, roll]`` degrees, NaN rows for faces without prediction.
        gt: (B, 3) ground truth degrees.

    Returns:
        ``{"yaw", "pitch", "roll", "mean"}`` MAE in degrees and ``count`` (faces used).
    """
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    ok = np.isfinite(pred).all(axis=1)
    if not ok.any() or not (np.abs(gt[ok]) <= limit).all(axis=1).any():
        nan = float("nan")
        return {"yaw": nan, "pitch": nan, "roll": nan, "mean": nan, "count": 0}
    mae, n = pose_mae(pred[ok], gt[ok], limit)
    return {"yaw": float(mae[0]), "pitch": float(mae[1]), "roll": float(mae[2]),
            "mean": float(mae.mean()), "count": n}


def difference(a, b):
    """``a - b`` for every float figure of two result dicts of the same structure (counts,
    ``n`` and ``misses`` are left out). Used for the "ours minus baseline" rows."""
    skip = {"counts", "misses", "n", "count"}
    if isinstance(a, dict) and isinstance(b, dict):
        return {k: difference(a[k], b[k]) for k in a if k in b and k not in skip}
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [difference(x, y) for x, y in zip(a, b)]
    if isinstance(a, float) and isinstance(b, float):
        return a - b
    return None
