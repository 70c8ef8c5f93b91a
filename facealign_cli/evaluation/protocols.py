"""Benchmark protocols: NME on AFLW2000-3D by |yaw| bin and head-pose MAE.

Protocol (3DDFA, Zhu et al. TPAMI 2017; used by 3DDFA-V2 and SynergyNet):

* each image is cropped to its ground-truth-derived roi box (``AFLW2000-3D_crop.roi_box.npy``)
  with 3DDFA's crop rule (:func:`facealign_cli.core.geometry.crop_roi`: integer box, zero padding,
  bilinear ``cv2.resize`` to 120 x 120), the 68 predicted landmarks are mapped back to the image;
* NME of an image = mean over the 68 points of the 2D (x, y) error divided by ``sqrt(w * h)`` of
  the ground-truth 68-point 2D bounding box;
* the mean NME (%) of each |yaw| bin [0, 30], (30, 60], (60, 90] (yaw from
  ``AFLW2000-3D.pose.npy``), and the unweighted mean of the three bin means;
* head pose: MAE of yaw, pitch, roll (degrees) against ``Pose_Para`` of the ``.mat`` files, on the
  images whose three ground-truth angles all lie within +-99 degrees (1,969 images).

The second half of the module implements ``facealign evaluate`` on top of these functions:

* :func:`open_aflw2000`: AFLW2000-3D with the ``3ddfa-protocol`` arrays or the official folder
  alone (roi boxes from ``pt3d_68``, yaw bins from ``Pose_Para``), both |yaw| splits;
* :func:`run_aflw2000` / :func:`summarise_aflw2000`: ground-truth crops, detector in the loop
  (misses counted per bin, never dropped), synthetic occlusion (after DSFNet, Li et al. CVPR
  2023), 3D landmark NME and head-pose MAE, for one or two regressors on the same crops;
* :func:`open_landmarks68` / :func:`run_landmarks68`: photos with 300-W ``.pts`` files or an
  annotations JSON, NME by box size and by inter-ocular distance (300-W, Sagonas et al. 2016);
* CED arithmetic (:func:`ced_curve`, :func:`auc_at`, :func:`failure_rate`).

Nothing here reads a fixed data location: every path comes from the caller.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from facealign_cli.core import geometry as G
from facealign_cli.core.morphable_model import BasisNotFoundError, MorphableModel, load_morphable_model  # noqa: F401

YAW_BINS = ((0.0, 30.0), (30.0, 60.0), (60.0, 90.0))


def nme_box(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-image NME normalised by the ground-truth box: ``mean_i ||p_i - g_i|| / sqrt(w h)``.

    Args:
        pred: (B, 68, 2) predicted landmarks, image pixels.
        gt: (B, 68, 2) ground truth, image pixels.

    Returns:
        (B,) float64 NME as a fraction (multiply by 100 for %).
    """
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    err = np.linalg.norm(pred[..., :2] - gt[..., :2], axis=-1).mean(-1)
    wh = gt[..., :2].max(-2) - gt[..., :2].min(-2)
    return err / np.sqrt(wh[..., 0] * wh[..., 1])


def yaw_bin_means(nme: np.ndarray, yaw_deg: np.ndarray) -> tuple[list[float], float, list[int]]:
    """Mean NME per |yaw| bin [0, 30], (30, 60], (60, 90] and their unweighted mean.

    Args:
        nme: (B,) per-image NME (any unit).
        yaw_deg: (B,) yaw in degrees (sign ignored).

    Returns:
        ``(bin_means, mean_of_bins, counts)``.
    """
    a = np.abs(np.asarray(yaw_deg, dtype=np.float64))
    masks = [a <= 30, (a > 30) & (a <= 60), a > 60]
    means = [float(np.asarray(nme)[m].mean()) if m.any() else float("nan") for m in masks]
    return means, float(np.mean(means)), [int(m.sum()) for m in masks]


def pose_mae(pred: np.ndarray, gt: np.ndarray, limit: float = 99.0) -> tuple[np.ndarray, int]:
    """Mean absolute error of yaw, pitch, roll on faces whose ground truth lies within +-limit.

    Args:
        pred: (B, 3) predicted ``[yaw, pitch, roll]`` degrees.
        gt: (B, 3) ground truth ``[yaw, pitch, roll]`` degrees.

    Returns:
        ``((3,) MAE in degrees, number of faces used)``.
    """
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    ok = (np.abs(gt) <= limit).all(axis=1)
    return np.abs(pred[ok] - gt[ok]).mean(axis=0), int(ok.sum())


@dataclass
class AFLW2000:
    """The AFLW2000-3D benchmark arrays.

    Attributes:
        root: the dataset folder (``imageNNNNN.jpg`` + ``.mat``).
        names: (2000,) image file names.
        roi_boxes: (2000, 4) float ``[sx, sy, ex, ey]`` crop boxes.
        pts68: (2000, 68, 3) ground-truth landmarks (x, y image pixels; z depth).
        yaw: (2000,) signed yaw (degrees) defining the bins.
        pose: (2000, 3) ``[yaw, pitch, roll]`` degrees from ``Pose_Para``.
    """

    root: Path
    names: list[str]
    roi_boxes: np.ndarray
    pts68: np.ndarray
    yaw: np.ndarray
    pose: np.ndarray


def load_aflw2000(root: str | Path) -> AFLW2000:
    """Load AFLW2000-3D with its ``3ddfa-protocol`` arrays.

    Raises:
        FileNotFoundError: the folder or a protocol file is missing.
        ValueError: the arrays' lengths disagree.
    """
    import scipy.io as sio

    root = Path(root)
    proto = root / "3ddfa-protocol"
    names = (proto / "AFLW2000-3D_crop.list").read_text().split()
    roi = np.load(proto / "AFLW2000-3D_crop.roi_box.npy").astype(np.float64)
    pts = np.load(proto / "AFLW2000-3D.pts68.npy").transpose(0, 2, 1).astype(np.float64)
    yaw = np.load(proto / "AFLW2000-3D.pose.npy").astype(np.float64).reshape(-1)
    if not (len(names) == len(roi) == len(pts) == len(yaw)):
        raise ValueError("AFLW2000-3D protocol arrays have different lengths")
    pose = []
    for n in names:
        pp = sio.loadmat(str(root / n.replace(".jpg", ".mat")))["Pose_Para"][0, :3]
        pitch, yw, roll = np.degrees(pp)
        pose.append((yw, pitch, roll))
    return AFLW2000(root, names, roi, pts, yaw, np.array(pose))


def predict_on_crops(predict, images: list[np.ndarray], roi_boxes: np.ndarray,
                     model: MorphableModel, batch: int = 128, *, flip: bool = False):
    """Run a parameter regressor on 3DDFA-rule crops and map the 68 landmarks back.

    Args:
        predict: callable (B, 120, 120, 3) uint8 BGR -> (B, 62) parameters, or a regressor
            object (``predict`` and ``input_size``).
        images: list of (H, W, 3) uint8 BGR images.
        roi_boxes: (B, 4) roi boxes.
        flip: test-time flip averaging (:mod:`facealign_cli.core.regression`).

    Returns:
        ``(landmarks (B, 68, 3) image frame, pose (B, 3) degrees, params (B, 62))``; the
        parameters are those of the unflipped crops.
    """
    from facealign_cli.core.regression import CropFitter

    reg = predict if hasattr(predict, "predict") else _CallableRegressor(predict)
    fitter = CropFitter(model, ("landmarks",), flip=flip)
    params, lms, pose = [], [], []
    for i in range(0, len(images), batch):
        crops = np.stack([G.crop_roi(im, r) for im, r in zip(images[i:i + batch],
                                                              roi_boxes[i:i + batch])])
        fit = fitter(reg, crops)
        params.append(fit.params)
        lms.extend(G.crop_to_image(v, r).T for v, r in zip(fit.vertices[0],
                                                             roi_boxes[i:i + batch]))
        pose.append(fit.pose)
    return np.stack(lms), np.concatenate(pose), np.concatenate(params)


@dataclass
class _CallableRegressor:
    """A bare ``predict`` callable seen as a regressor of 120-px crops."""

    predict: object
    input_size: int = 120


def evaluate_aflw2000(predict, data: AFLW2000, images: list[np.ndarray] | None = None) -> dict:
    """The AFLW2000-3D ground-truth-crop protocol for one regressor.

    Returns:
        dict with ``nme_bins`` (3 floats, %), ``nme_mean`` (%), ``bin_counts``, ``pose_mae``
        (dict yaw/pitch/roll/mean, degrees) and ``pose_count``.
    """
    model = load_morphable_model()
    if images is None:
        images = [cv2.imread(str(data.root / n), cv2.IMREAD_COLOR) for n in data.names]
    lms, pose, _ = predict_on_crops(predict, images, data.roi_boxes, model)
    nme = nme_box(lms[..., :2], data.pts68[..., :2]) * 100
    bins, mean, counts = yaw_bin_means(nme, data.yaw)
    mae, n_pose = pose_mae(pose, data.pose)
    return {"nme_bins": [round(b, 3) for b in bins], "nme_mean": round(mean, 3),
            "bin_counts": counts,
            "pose_mae": {"yaw": round(float(mae[0]), 3), "pitch": round(float(mae[1]), 3),
                         "roll": round(float(mae[2]), 3), "mean": round(float(mae.mean()), 3)},
            "pose_count": n_pose}


# ================================================================================================
# Extended protocols for ``facealign evaluate`` (everything below is used by the command; the
# functions above keep their original behaviour for ``facealign train``).
# ================================================================================================

CROP_RULE = "3DDFA: integer roi box, zero padding, cv2.resize bilinear to 120x120"
IOU_THRESHOLD = 0.3
POSE_LIMIT_DEG = 99.0
CED_AUC_THRESHOLD = 7.0  # % NME
CED_FAILURE_THRESHOLDS = (7.0, 10.0)  # % NME
PROTOCOLS = ("gt-crops", "detector", "occlusion")
OCCLUDER_KINDS = ("square", "double-square", "column")
DEFAULT_OCCLUSION_SEED = 2023

#: The two |yaw| splits of AFLW2000-3D. ``fit``: yaw of the BFM fit (``AFLW2000-3D.pose.npy``,
#: identical to ``Pose_Para`` yaw), the split of the published 3DDFA / 3DDFA-V2 / SynergyNet
#: tables. ``aflw``: |yaw| from the original AFLW labels (``AFLW2000-3D-new.pose.npy``), only
#: available with the ``3ddfa-protocol`` folder.
YAW_SPLITS = {
    "fit": "yaw of the BFM fit (AFLW2000-3D.pose.npy / Pose_Para)",
    "aflw": "|yaw| of the AFLW labels (AFLW2000-3D-new.pose.npy)",
}
BIN_LABELS = ("[0,30]", "(30,60]", "(60,90]")


class DatasetLayoutError(ValueError):
    """A benchmark folder does not have the expected layout (missing files, wrong counts)."""


# ---------------------------------------------------------------------------------------------
# Metrics
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


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of boxes ``[x1, y1, x2, y2]`` (continuous coordinates).

    Args:
        a: (4,) or (N, 4).
        b: (M, 4).

    Returns:
        (M,) float64 if ``a`` is one box, else (N, M). Degenerate boxes give IoU 0.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    one = a.ndim == 1
    a = a.reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    def area(r):
        return np.clip(r[:, 2] - r[:, 0], 0, None) * np.clip(r[:, 3] - r[:, 1], 0, None)

    union = area(a)[:, None] + area(b)[None, :] - inter
    iou = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return iou[0] if one else iou


def match_detection(gt_box: np.ndarray, det_boxes: np.ndarray,
                    threshold: float = IOU_THRESHOLD) -> tuple[int, float]:
    """The detection that matches an annotated face: highest IoU with the ground-truth box.

    Args:
        gt_box: (4,) ground-truth box (the 68 landmarks' bounding box), image pixels.
        det_boxes: (M, 4) detector boxes, image pixels (M may be 0).
        threshold: minimum IoU of a match.

    Returns:
        ``(index, iou)``; ``index`` is -1 (a miss) when no detection reaches ``threshold``.
    """
    det_boxes = np.asarray(det_boxes, dtype=np.float64).reshape(-1, 4)
    if len(det_boxes) == 0:
        return -1, 0.0
    iou = box_iou(gt_box, det_boxes)
    j = int(np.argmax(iou))
    return (j if iou[j] >= threshold else -1), float(iou[j])


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
    wh = gt[..., :2].max(-2) - gt[..., :2].min(-2)
    return err / np.sqrt(wh[..., 0] * wh[..., 1])


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


def yaw_bin_index(yaw_deg: np.ndarray) -> np.ndarray:
    """|yaw| bin of each face: 0 for [0, 30], 1 for (30, 60], 2 above 60 degrees.

    Same edges as :func:`yaw_bin_means` (3DDFA protocol).

    Args:
        yaw_deg: (B,) yaw in degrees (sign ignored).

    Returns:
        (B,) int64.
    """
    a = np.abs(np.asarray(yaw_deg, dtype=np.float64))
    return np.where(a <= 30, 0, np.where(a <= 60, 1, 2)).astype(np.int64)


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
    e = np.asarray(errors, dtype=np.float64)
    e = np.where(np.isnan(e), np.inf, e)
    x = np.linspace(0.0, max_error, num)
    if len(e) == 0:
        return x, np.zeros_like(x)
    return x, (e[None, :] <= x[:, None]).mean(axis=1)


def auc_at(errors: np.ndarray, threshold: float = CED_AUC_THRESHOLD) -> float:
    """Area under the CED curve up to ``threshold``, divided by ``threshold`` (in [0, 1]).

    Computed exactly: the CED is a step function, so its integral over ``[0, T]`` is
    ``mean_i max(0, T - e_i)``; AUC = that / T. All-zero errors give 1; errors >= T give 0.
    NaN / inf (misses) contribute 0.

    Args:
        errors: (B,) errors in the unit of ``threshold``.
    """
    e = np.asarray(errors, dtype=np.float64)
    if len(e) == 0:
        return float("nan")
    e = np.where(np.isnan(e), np.inf, e)
    return float(np.clip(threshold - e, 0.0, threshold).mean() / threshold)


def failure_rate(errors: np.ndarray, threshold: float) -> float:
    """Fraction of faces with error > ``threshold``; NaN / inf (misses) are failures."""
    e = np.asarray(errors, dtype=np.float64)
    if len(e) == 0:
        return float("nan")
    return float((np.where(np.isnan(e), np.inf, e) > threshold).mean())


def ced_summary(errors: np.ndarray) -> dict:
    """AUC at 7 % and failure rates above 7 % and 10 % of per-face NME values in %.

    Returns:
        ``{"auc_7": float, "fr_7": float, "fr_10": float}`` (fractions in [0, 1]).
    """
    return {"auc_7": auc_at(errors, CED_AUC_THRESHOLD),
            "fr_7": failure_rate(errors, CED_FAILURE_THRESHOLDS[0]),
            "fr_10": failure_rate(errors, CED_FAILURE_THRESHOLDS[1])}


def _stat(x: np.ndarray, fn) -> float:
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
        misses = [int(((b == k) & ~ok).sum()) for k in range(3)]
        splits[name] = {"bins": bins, "mean": mean, "counts": counts, "misses": misses}
    return {"splits": splits, "all": _stat(nme_pct, np.mean), "median": _stat(nme_pct, np.median),
            "n": int(ok.sum()), "misses": int((~ok).sum()), "ced": ced_summary(nme_pct)}


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


# ---------------------------------------------------------------------------------------------
# Synthetic occlusion (after the occlusion benchmark idea of DSFNet, Li et al., CVPR 2023)
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Occluder:
    """A synthetic occluder drawn onto an image.

    Attributes:
        kind: one of :data:`OCCLUDER_KINDS`.
        rects: filled rectangles ``(x1, y1, x2, y2)``, integer image pixels, end-exclusive,
            clipped to the image.
        color: (B, G, R) uint8 colour of every rectangle.
    """

    kind: str
    rects: tuple[tuple[int, int, int, int], ...]
    color: tuple[int, int, int]


def _rect(cx: float, cy: float, w: float, h: float, shape) -> tuple[int, int, int, int]:
    H, W = shape[:2]
    x1 = int(np.clip(round(cx - w / 2), 0, W))
    y1 = int(np.clip(round(cy - h / 2), 0, H))
    x2 = int(np.clip(round(cx + w / 2), 0, W))
    y2 = int(np.clip(round(cy + h / 2), 0, H))
    return x1, y1, x2, y2


def make_occluder(kind: str, face_box: np.ndarray, image_shape: tuple[int, ...],
                  rng: np.random.Generator) -> Occluder:
    """Draw one random occluder for a face (our implementation of the idea of DSFNet's
    synthetic occlusion benchmark: solid-colour shapes over the face; sizes here are ours).

    With ``s = sqrt(w h)`` of the face box ``[x1, y1, x2, y2]``:

    * ``square``: one square of side U(0.3, 0.5) s, centre uniform in the face box;
    * ``double-square``: two intersecting squares of sides U(0.25, 0.4) s; the first centred
      uniformly in the face box, the second offset by U(0.25, 0.75) of the mean half-side sum on
      each axis with random signs (so the two always overlap and rarely nest);
    * ``column``: a full-image-height bar of width U(0.15, 0.3) w, centre x uniform in the box.

    The colour is uniform in {0..255}^3.

    Args:
        kind: one of :data:`OCCLUDER_KINDS`.
        face_box: (4,) face box in image pixels (the 68 landmarks' box for AFLW2000-3D).
        image_shape: ``(H, W, ...)`` of the image.
        rng: the random generator (its state advances).

    Raises:
        ValueError: unknown ``kind``.
    """
    x1, y1, x2, y2 = (float(v) for v in face_box[:4])
    w, h = max(x2 - x1, 1.0), max(y2 - y1, 1.0)
    s = math.sqrt(w * h)
    color = tuple(int(c) for c in rng.integers(0, 256, size=3))
    if kind == "square":
        a = rng.uniform(0.3, 0.5) * s
        cx, cy = rng.uniform(x1, x2), rng.uniform(y1, y2)
        rects = (_rect(cx, cy, a, a, image_shape),)
    elif kind == "double-square":
        a, b = rng.uniform(0.25, 0.4, size=2) * s
        cx, cy = rng.uniform(x1, x2), rng.uniform(y1, y2)
        off = rng.uniform(0.25, 0.75, size=2) * (a + b) / 2 * rng.choice([-1.0, 1.0], size=2)
        rects = (_rect(cx, cy, a, a, image_shape),
                 _rect(cx + off[0], cy + off[1], b, b, image_shape))
    elif kind == "column":
        bw = rng.uniform(0.15, 0.3) * w
        cx = rng.uniform(x1, x2)
        H = image_shape[0]
        rects = (_rect(cx, H / 2, bw, H + 2, image_shape),)
    else:
        raise ValueError(f"unknown occluder kind {kind!r}; expected one of {OCCLUDER_KINDS}")
    return Occluder(kind, rects, color)  # type: ignore[arg-type]


def occluders_for(kind: str, face_boxes: np.ndarray, image_shapes, keys, seed: int
                  ) -> list[Occluder]:
    """Deterministic occluders for a list of faces.

    Each face gets its own generator ``numpy.random.default_rng([seed, key, kind_id])``, so an
    occluder depends only on ``(seed, key, kind)`` -- the same image is occluded the same way
    whatever ``--limit`` selects.

    Args:
        kind: one of :data:`OCCLUDER_KINDS`.
        face_boxes: (B, 4) face boxes (image pixels).
        image_shapes: B shapes ``(H, W, ...)``.
        keys: B non-negative ints identifying the images (e.g. the dataset index).
        seed: non-negative int.

    Returns:
        B :class:`Occluder`.
    """
    kid = OCCLUDER_KINDS.index(kind)
    return [make_occluder(kind, b, sh, np.random.default_rng([int(seed), int(k), kid]))
            for b, sh, k in zip(face_boxes, image_shapes, keys)]


def apply_occluder(image: np.ndarray, occ: Occluder) -> np.ndarray:
    """A copy of ``image`` (H, W, 3) uint8 BGR with the occluder's rectangles filled."""
    out = image.copy()
    for x1, y1, x2, y2 in occ.rects:
        out[y1:y2, x1:x2] = occ.color
    return out


def occluded_fraction(occ: Occluder, face_box: np.ndarray) -> float:
    """Fraction of the (integer-rounded) face box covered by the occluder, in [0, 1]."""
    bx1, by1, bx2, by2 = (int(round(float(v))) for v in face_box[:4])
    if bx2 <= bx1 or by2 <= by1:
        return 0.0
    mask = np.zeros((by2 - by1, bx2 - bx1), dtype=bool)
    for x1, y1, x2, y2 in occ.rects:
        mask[max(y1 - by1, 0):max(y2 - by1, 0), max(x1 - bx1, 0):max(x2 - bx1, 0)] = True
    return float(mask.mean())


# ---------------------------------------------------------------------------------------------
# Data sets
# ---------------------------------------------------------------------------------------------

def select_indices(n: int, limit: int = 0) -> np.ndarray:
    """Indices evaluated under ``--limit``: ``limit`` indices spread evenly over ``range(n)``
    (so that a quick run still covers every yaw bin), or all when ``limit`` is 0 or >= n.

    Returns:
        (k,) int64 sorted unique indices.
    """
    if limit <= 0 or limit >= n:
        return np.arange(n, dtype=np.int64)
    return np.unique(np.linspace(0, n - 1, limit).round().astype(np.int64))


def _read_image(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise DatasetLayoutError(f"cannot read image {path}")
    return img


def _listing(paths, n: int = 5) -> str:
    paths = [str(p) for p in paths]
    more = f" (and {len(paths) - n} more)" if len(paths) > n else ""
    return ", ".join(paths[:n]) + more


@dataclass
class AFLW2000Set:
    """AFLW2000-3D (or a ``--limit`` subset of it) ready for :func:`run_aflw2000`.

    Attributes:
        root: the folder with ``imageNNNNN.jpg`` + ``imageNNNNN.mat``.
        layout: ``"3ddfa-protocol"`` (the benchmark arrays were found in
            ``root/3ddfa-protocol``) or ``"official"`` (only the ``.jpg`` / ``.mat`` pairs).
        names: B image file names.
        indices: (B,) int64 positions in the full list (keys of the occluders).
        n_total: size of the full list (2000).
        roi_boxes: (B, 4) float64 ``[sx, sy, ex, ey]`` crop boxes, image pixels: the protocol's
            ``AFLW2000-3D_crop.roi_box.npy``, or, in the official layout,
            :func:`facealign_cli.core.geometry.roi_box_from_landmarks` of ``pt3d_68`` (3DDFA's rule;
            within 1 px of the protocol boxes).
        pts68: (B, 68, 3) float64 ground truth as stored: x, y image pixels, z depth in pixel
            units pointing *towards* the viewer (the nose tip has the largest z).
        yaw_splits: split name (:data:`YAW_SPLITS`) -> (B,) yaw in degrees. ``fit`` always;
            ``aflw`` only with the protocol folder.
        pose: (B, 3) float64 ``[yaw, pitch, roll]`` degrees from ``Pose_Para``.
    """

    root: Path
    layout: str
    names: list[str]
    indices: np.ndarray
    n_total: int
    roi_boxes: np.ndarray
    pts68: np.ndarray
    yaw_splits: dict[str, np.ndarray]
    pose: np.ndarray

    def __len__(self) -> int:
        return len(self.names)

    @property
    def roi_source(self) -> str:
        """Where the roi boxes come from, in words."""
        if self.layout == "3ddfa-protocol":
            return "3ddfa-protocol/AFLW2000-3D_crop.roi_box.npy"
        return "roi_box_from_landmarks(pt3d_68) (3DDFA rule: square of side sqrt(2)*max(w,h))"

    def read_image(self, i: int) -> np.ndarray:
        """(450, 450, 3) uint8 BGR image ``i`` of the subset.

        Raises:
            DatasetLayoutError: the file cannot be decoded.
        """
        return _read_image(self.root / self.names[i])

    def pts68_output_frame(self) -> np.ndarray:
        """(B, 68, 3) ground truth in facealign's output frame (z away from the camera)."""
        p = self.pts68.copy()
        p[..., 2] *= -1
        return p


def _load_mat(path: Path, keys: tuple[str, ...]) -> dict:
    import scipy.io as sio

    try:
        m = sio.loadmat(str(path), variable_names=list(keys))
    except Exception as exc:  # scipy raises several types for corrupt files
        raise DatasetLayoutError(f"cannot read {path}: {exc}") from exc
    missing = [k for k in keys if k not in m]
    if missing:
        raise DatasetLayoutError(f"{path} lacks {', '.join(missing)} (not an AFLW2000-3D .mat)")
    return m


def open_aflw2000(root: str | Path, limit: int = 0) -> AFLW2000Set:
    """Open AFLW2000-3D in either layout and check it.

    * With ``root/3ddfa-protocol`` (3DDFA, Zhu et al. TPAMI 2017; file names as in
      cleardusk/3DDFA): the image list, roi boxes, ground truth and both yaw splits come from its
      arrays; every listed image must have its ``.jpg`` and ``.mat``.
    * Without it (the official folder of ``.jpg`` + ``.mat`` pairs): all pairs, sorted by name;
      roi boxes from ``pt3d_68`` with 3DDFA's landmark rule, the ``fit`` yaw split from
      ``Pose_Para`` yaw (the same values as ``AFLW2000-3D.pose.npy``); the ``aflw`` split is
      unavailable.

    Head pose always comes from ``Pose_Para`` (pitch, yaw, roll in radians -> degrees).

    Args:
        root: the AFLW2000-3D folder.
        limit: evaluate only this many images, spread evenly (:func:`select_indices`); 0 = all.

    Raises:
        DatasetLayoutError: not a folder, missing files, arrays of different lengths or shapes,
            unpaired ``.jpg`` / ``.mat``, unreadable ``.mat``.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetLayoutError(f"{root} is not a folder")
    proto = root / "3ddfa-protocol"
    if proto.is_dir():
        layout = "3ddfa-protocol"
        need = ["AFLW2000-3D_crop.list", "AFLW2000-3D_crop.roi_box.npy", "AFLW2000-3D.pts68.npy",
                "AFLW2000-3D.pose.npy"]
        missing = [n for n in need if not (proto / n).is_file()]
        if missing:
            raise DatasetLayoutError(f"{proto} lacks {', '.join(missing)}")
        try:
            all_names = (proto / "AFLW2000-3D_crop.list").read_text().split()
            roi = np.load(proto / "AFLW2000-3D_crop.roi_box.npy").astype(np.float64)
            pts = np.load(proto / "AFLW2000-3D.pts68.npy").astype(np.float64)
            yaw_fit = np.load(proto / "AFLW2000-3D.pose.npy").astype(np.float64).reshape(-1)
            new = proto / "AFLW2000-3D-new.pose.npy"
            yaw_aflw = (np.load(new).astype(np.float64).reshape(-1) if new.is_file() else None)
        except (OSError, ValueError) as exc:
            raise DatasetLayoutError(f"cannot read the arrays of {proto}: {exc}") from exc
        n = len(all_names)
        if roi.shape != (n, 4) or pts.shape != (n, 3, 68) or yaw_fit.shape != (n,) or (
                yaw_aflw is not None and yaw_aflw.shape != (n,)):
            raise DatasetLayoutError(
                f"the arrays of {proto} do not match AFLW2000-3D_crop.list ({n} names): roi_box "
                f"{roi.shape} (want ({n}, 4)), pts68 {pts.shape} (want ({n}, 3, 68)), pose "
                f"{yaw_fit.shape}" + ("" if yaw_aflw is None else f", new pose {yaw_aflw.shape}"))
        if n == 0:
            raise DatasetLayoutError(f"{proto / 'AFLW2000-3D_crop.list'} is empty")
        lacking = [f for nm in all_names for f in (nm, Path(nm).with_suffix(".mat").name)
                   if not (root / f).is_file()]
        if lacking:
            raise DatasetLayoutError(
                f"{len(lacking)} file(s) listed by the 3ddfa protocol are missing from {root} "
                f"(each image needs its .jpg and .mat): {_listing(lacking)}")
        idx = select_indices(n, limit)
        names = [all_names[i] for i in idx]
        roi, pts = roi[idx], pts[idx].transpose(0, 2, 1)
        splits = {"fit": yaw_fit[idx]}
        if yaw_aflw is not None:
            splits["aflw"] = yaw_aflw[idx]
        mats = [_load_mat(root / Path(nm).with_suffix(".mat").name, ("Pose_Para",))
                for nm in names]
    else:
        layout = "official"
        jpgs = {p.stem for p in root.glob("*.jpg")}
        matf = {p.stem for p in root.glob("*.mat")}
        if not jpgs and not matf:
            raise DatasetLayoutError(
                f"{root} holds no AFLW2000-3D files: expected imageNNNNN.jpg + imageNNNNN.mat "
                "pairs (official layout), optionally with a 3ddfa-protocol/ folder")
        no_mat, no_jpg = sorted(jpgs - matf), sorted(matf - jpgs)
        if no_mat or no_jpg:
            parts = []
            if no_mat:
                parts.append(f"{len(no_mat)} .jpg without .mat: "
                             f"{_listing([s + '.jpg' for s in no_mat])}")
            if no_jpg:
                parts.append(f"{len(no_jpg)} .mat without .jpg: "
                             f"{_listing([s + '.mat' for s in no_jpg])}")
            raise DatasetLayoutError(f"unpaired files in {root}: " + "; ".join(parts))
        stems = sorted(jpgs)
        n = len(stems)
        idx = select_indices(n, limit)
        names = [stems[i] + ".jpg" for i in idx]
        mats = [_load_mat(root / (stems[i] + ".mat"), ("Pose_Para", "pt3d_68")) for i in idx]
        pts = []
        for nm, m in zip(names, mats):
            p = np.asarray(m["pt3d_68"], dtype=np.float64)
            if p.shape != (3, 68):
                raise DatasetLayoutError(f"{nm}: pt3d_68 has shape {p.shape}, want (3, 68)")
            pts.append(p.T)
        pts = np.stack(pts)
        roi = np.stack([G.roi_box_from_landmarks(p) for p in pts]).astype(np.float64)
        splits = {"fit": np.array([math.degrees(float(m["Pose_Para"].reshape(-1)[1]))
                                   for m in mats])}
    pose = []
    for nm, m in zip(names, mats):
        pp = np.asarray(m["Pose_Para"], dtype=np.float64).reshape(-1)
        if pp.size < 3:
            raise DatasetLayoutError(f"{nm}: Pose_Para has {pp.size} values, want 7")
        pitch, yw, roll = np.degrees(pp[:3])
        pose.append((yw, pitch, roll))
    return AFLW2000Set(root=root, layout=layout, names=names, indices=idx, n_total=n,
                       roi_boxes=roi, pts68=pts, yaw_splits=splits,
                       pose=np.array(pose, dtype=np.float64).reshape(-1, 3))


@dataclass
class AnnotatedImage:
    """One image with its annotated faces (``landmarks68`` protocol).

    Attributes:
        path: the image file.
        faces: list of (68, 2) float64 landmarks, 0-based image pixels (pixel (0, 0) has its
            centre at (0, 0)), iBUG 68-point order.
        sources: one label per face (the ``.pts`` file or ``annotations.json:stem#k``).
    """

    path: Path
    faces: list[np.ndarray]
    sources: list[str]


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".JPG", ".JPEG", ".PNG")


def read_pts(path: str | Path) -> np.ndarray:
    """Read a 300-W / iBUG ``.pts`` file (``version: 1``, ``n_points: K``, ``{``, K lines
    ``x y``, ``}``).

    Coordinates are returned as written (300-W files are 1-based; see
    :func:`open_landmarks68`).

    Returns:
        (K, 2) float64.

    Raises:
        DatasetLayoutError: malformed file.
    """
    path = Path(path)
    try:
        lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetLayoutError(f"cannot read {path}: {exc}") from exc
    try:
        n = next(int(ln.split(":", 1)[1]) for ln in lines if ln.lower().startswith("n_points"))
        i0, i1 = lines.index("{"), lines.index("}")
        pts = np.array([[float(v) for v in ln.split()[:2]] for ln in lines[i0 + 1:i1]])
    except (StopIteration, ValueError, IndexError) as exc:
        raise DatasetLayoutError(f"{path} is not a .pts file (version / n_points / {{ x y }})"
                                 ) from exc
    if pts.shape != (n, 2):
        raise DatasetLayoutError(f"{path}: n_points is {n} but {len(pts)} points are listed")
    return pts


def write_pts(path: str | Path, points: np.ndarray) -> None:
    """Write (K, 2) points as a 300-W ``.pts`` file (coordinates written as given)."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    body = "\n".join(f"{x:.3f} {y:.3f}" for x, y in p)
    Path(path).write_text(f"version: 1\nn_points: {len(p)}\n{{\n{body}\n}}\n")


def _find_image(folder: Path, stem: str) -> Path | None:
    for suf in IMAGE_SUFFIXES:
        p = folder / (stem + suf)
        if p.is_file():
            return p
    return None


def open_landmarks68(root: str | Path, annotations: str | Path | None = None,
                     pts_one_based: bool = True, limit: int = 0) -> list[AnnotatedImage]:
    """Collect images with 68-point annotations.

    * ``.pts`` mode (no ``annotations``): every ``*.pts`` in ``root`` (not recursive) with an
      image of the same stem beside it; 300-W's multi-face naming ``photo_1.pts``,
      ``photo_2.pts`` -> ``photo.jpg`` is understood. 300-W ``.pts`` coordinates are 1-based
      (Matlab), so 1 is subtracted unless ``pts_one_based`` is false.
    * JSON mode: ``{"photos": {stem: [[[x, y] * 68], ...]}}`` with 0-based pixel coordinates;
      the images ``stem.<ext>`` are looked up in ``root``.

    Args:
        root: the image folder.
        annotations: optional JSON file.
        pts_one_based: subtract 1 from ``.pts`` coordinates.
        limit: keep this many images, spread evenly over the sorted list (0 = all).

    Returns:
        Images sorted by path, each with >= 1 face.

    Raises:
        DatasetLayoutError: no annotations, a face without 68 points, an annotation without
            its image.
    """
    import json

    root = Path(root)
    if not root.is_dir():
        raise DatasetLayoutError(f"{root} is not a folder")
    items: dict[Path, AnnotatedImage] = {}
    lacking: list[str] = []
    if annotations is not None:
        try:
            photos = json.loads(Path(annotations).read_text())["photos"]
            if not isinstance(photos, dict):
                raise TypeError
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DatasetLayoutError(
                f"{annotations} is not an annotations file of the form "
                '{"photos": {stem: [[[x, y] * 68], ...]}}') from exc
        for stem in sorted(photos):
            img = _find_image(root, stem)
            if img is None:
                lacking.append(stem)
                continue
            faces = []
            for k, f in enumerate(photos[stem]):
                a = np.asarray(f, dtype=np.float64)
                if a.shape != (68, 2):
                    raise DatasetLayoutError(
                        f"{annotations}: face {k} of {stem!r} has shape {a.shape}, want (68, 2)")
                faces.append(a)
            if faces:
                items[img] = AnnotatedImage(img, faces, [f"{Path(annotations).name}:{stem}#{k}"
                                                         for k in range(len(faces))])
        if lacking:
            raise DatasetLayoutError(f"{len(lacking)} annotated photo(s) have no image in {root}: "
                                     f"{_listing(lacking)}")
        if not items:
            raise DatasetLayoutError(f"{annotations} annotates no face")
    else:
        pts_files = sorted(root.glob("*.pts"))
        if not pts_files:
            raise DatasetLayoutError(
                f"{root} holds no .pts files: put 300-W .pts files beside the images or pass "
                "--annotations FILE.json")
        for pf in pts_files:
            img = _find_image(root, pf.stem)
            if img is None and "_" in pf.stem and pf.stem.rsplit("_", 1)[1].isdigit():
                img = _find_image(root, pf.stem.rsplit("_", 1)[0])
            if img is None:
                lacking.append(pf.name)
                continue
            a = read_pts(pf)
            if a.shape != (68, 2):
                raise DatasetLayoutError(f"{pf} has {len(a)} points, want 68")
            if pts_one_based:
                a = a - 1.0
            items.setdefault(img, AnnotatedImage(img, [], [])).faces.append(a)
            items[img].sources.append(pf.name)
        if lacking:
            raise DatasetLayoutError(f"{len(lacking)} .pts file(s) have no image beside them in "
                                     f"{root}: {_listing(lacking)}")
    out = [items[k] for k in sorted(items)]
    return [out[i] for i in select_indices(len(out), limit)]


# ---------------------------------------------------------------------------------------------
# Runners
# ---------------------------------------------------------------------------------------------

@dataclass
class Method:
    """A regressor under evaluation.

    Attributes:
        key: short id used in the JSON (``facealign``, ``3ddfa-v2``).
        label: human-readable name for tables and plots.
        regressor: an object with ``predict((B, 120, 120, 3) uint8 BGR) -> (B, 62)`` and
            ``input_size`` (120), e.g. :class:`facealign_cli.models.regressor.Regressor` or
            :class:`facealign_cli.models.baseline_3ddfa.Baseline3DDFA`.
        info: what the report records about it (weights path, sha256, ...).
        flip: test-time flip averaging (:mod:`facealign_cli.core.regression`).
    """

    key: str
    label: str
    regressor: object
    info: dict
    flip: bool = False


def _fit_detected(aligner, image: np.ndarray, face) -> tuple[np.ndarray, np.ndarray]:
    """Run the pipeline's fit on a fresh copy of a detected face; (68, 3) landmarks, (3,) pose."""
    from facealign_cli.core.face import Face

    f = Face(box=np.asarray(face.box, dtype=np.float32).copy(), score=float(face.score),
             keypoints=None if face.keypoints is None else np.asarray(face.keypoints).copy())
    aligner.fit(image, [f])
    return np.asarray(f.landmarks_3d, dtype=np.float64), np.asarray(f.pose, dtype=np.float64)


@dataclass
class AFLW2000Run:
    """Raw per-image outputs of :func:`run_aflw2000` (B = images of the subset).

    Attributes:
        data: the data set.
        methods: the methods, in order.
        protocols: the protocols run (``occlusion`` implies ``gt-crops``, its clean reference).
        gt_crops: method key -> ``{"lms": (B, 68, 3), "pose": (B, 3)}`` (image frame, z away
            from the camera, degrees).
        detector: ``{"matched": (B,) bool, "iou": (B,), "box": (B, 4) NaN for misses,
            "n_detections": (B,) int, method key -> {"lms", "pose"} NaN for misses}``.
        occlusion: ``{"seed": int, "coverage": {kind: (B,)}, kind -> {method key -> {"lms",
            "pose"}}}``.
        settings: detector description, thresholds, seed.
    """

    data: AFLW2000Set
    methods: list[Method]
    protocols: tuple[str, ...]
    gt_crops: dict
    detector: dict
    occlusion: dict
    settings: dict


def run_aflw2000(data: AFLW2000Set, methods: list[Method], protocols=("gt-crops",),
                 detector=None, occlusion_seed: int = DEFAULT_OCCLUSION_SEED,
                 iou_threshold: float = IOU_THRESHOLD, batch: int = 32,
                 progress=None) -> AFLW2000Run:
    """Run every method through the requested AFLW2000-3D protocols.

    * ``gt-crops``: the 3DDFA protocol (Zhu et al., TPAMI 2017): crop each image to its roi box
      with :data:`CROP_RULE`, regress, map the 68 landmarks back (:func:`predict_on_crops`).
    * ``detector``: the full pipeline (:class:`facealign_cli.core.pipeline.FaceAligner`: detector,
      roi rule from the detector box, crop, regressor) on the whole 450 x 450 image; the
      annotated face is the detection with the highest IoU with the 68-landmark box if that IoU
      is >= ``iou_threshold``, else a miss (kept, as NaN). All methods share the detections.
    * ``occlusion``: the ``gt-crops`` protocol on images occluded by each of
      :data:`OCCLUDER_KINDS` (:func:`occluders_for`, keyed by the full-list index), after
      DSFNet (Li et al., CVPR 2023).

    Images are streamed in batches of ``batch`` (memory stays small).

    Args:
        data: from :func:`open_aflw2000`.
        methods: regressors to compare (same crops for all).
        protocols: subset of :data:`PROTOCOLS`.
        detector: required for ``detector``: anything with ``detect(image_bgr) -> list[Face]``.
        occlusion_seed: seed of the occluders.
        iou_threshold: minimum IoU of a detection matched to the annotated face.
        progress: optional callable ``progress(n_images_done_in_this_step)``.

    Raises:
        ValueError: unknown protocol, ``detector`` protocol without a detector, no methods.
        DatasetLayoutError: an unreadable image.
    """
    from facealign_cli.core.pipeline import FaceAligner

    protocols = tuple(protocols)
    bad = [p for p in protocols if p not in PROTOCOLS]
    if bad:
        raise ValueError(f"unknown protocol(s) {bad}; choose from {PROTOCOLS}")
    if not methods:
        raise ValueError("no method to evaluate")
    if "detector" in protocols and detector is None:
        raise ValueError("the detector protocol needs a detector")
    do_gt = "gt-crops" in protocols or "occlusion" in protocols
    if "occlusion" in protocols and "gt-crops" not in protocols:
        protocols = ("gt-crops",) + protocols
    model = load_morphable_model()
    B = len(data)
    nan3 = lambda *s: np.full(s, np.nan)  # noqa: E731
    gt = {m.key: {"lms": nan3(B, 68, 3), "pose": nan3(B, 3)} for m in methods}
    det: dict = {}
    occ: dict = {}
    if "detector" in protocols:
        aligners = [FaceAligner(detector=detector, regressor=m.regressor, flip=m.flip)
                    for m in methods]
        det = {"matched": np.zeros(B, bool), "iou": np.zeros(B), "box": nan3(B, 4),
               "n_detections": np.zeros(B, np.int64)}
        det.update({m.key: {"lms": nan3(B, 68, 3), "pose": nan3(B, 3)} for m in methods})
    if "occlusion" in protocols:
        occ = {"seed": int(occlusion_seed), "coverage": {k: np.zeros(B) for k in OCCLUDER_KINDS}}
        occ.update({k: {m.key: {"lms": nan3(B, 68, 3), "pose": nan3(B, 3)} for m in methods}
                    for k in OCCLUDER_KINDS})
    face_boxes = landmark_box(data.pts68)
    for s in range(0, B, batch):
        sl = slice(s, min(s + batch, B))
        images = [data.read_image(i) for i in range(sl.start, sl.stop)]
        roi = data.roi_boxes[sl]
        if do_gt:
            for m in methods:
                lms, pose, _ = predict_on_crops(m.regressor, images, roi, model, flip=m.flip)
                gt[m.key]["lms"][sl], gt[m.key]["pose"][sl] = lms, pose
        if occ:
            for kind in OCCLUDER_KINDS:
                occs = occluders_for(kind, face_boxes[sl], [im.shape for im in images],
                                     data.indices[sl], occlusion_seed)
                occ["coverage"][kind][sl] = [occluded_fraction(o, b)
                                             for o, b in zip(occs, face_boxes[sl])]
                occluded = [apply_occluder(im, o) for im, o in zip(images, occs)]
                for m in methods:
                    lms, pose, _ = predict_on_crops(m.regressor, occluded, roi, model,
                                                    flip=m.flip)
                    occ[kind][m.key]["lms"][sl], occ[kind][m.key]["pose"][sl] = lms, pose
        if det:
            for j, im in enumerate(images):
                i = sl.start + j
                faces = aligners[0].detect(im)
                det["n_detections"][i] = len(faces)
                k, iou = match_detection(face_boxes[i], np.array([f.box[:4] for f in faces]),
                                         iou_threshold)
                det["iou"][i] = iou
                if k < 0:
                    continue
                det["matched"][i] = True
                det["box"][i] = faces[k].box[:4]
                for m, al in zip(methods, aligners):
                    det[m.key]["lms"][i], det[m.key]["pose"][i] = _fit_detected(al, im, faces[k])
        if progress is not None:
            progress(sl.stop - sl.start)
    settings = {"iou_threshold": iou_threshold, "occlusion_seed": int(occlusion_seed)}
    return AFLW2000Run(data, methods, protocols, gt if do_gt else {}, det, occ, settings)


def _lm_figures(lms: np.ndarray, pose: np.ndarray, data: AFLW2000Set, gt3: np.ndarray) -> tuple:
    """(figures, per-image 2D NME %) for one method and protocol."""
    nme2 = nme_box(lms[..., :2], data.pts68[..., :2]) * 100
    nme3 = nme_3d(lms, gt3) * 100
    fig = {"nme_2d": nme_figures(nme2, data.yaw_splits),
           "nme_3d": nme_figures(nme3, data.yaw_splits),
           "pose": pose_figures(pose, data.pose)}
    return fig, nme2


def summarise_aflw2000(run: AFLW2000Run) -> tuple[dict, dict]:
    """Figures of an :class:`AFLW2000Run`.

    Returns:
        ``(figures, per_image)``. ``figures[protocol][method_key]`` holds ``nme_2d`` and
        ``nme_3d`` (:func:`nme_figures`, %), ``pose`` (:func:`pose_figures`, degrees);
        ``figures[protocol]["difference"]`` is first method minus second (when two);
        ``figures["detector"]["detection"]`` the detection counts;
        ``figures["occlusion"][method_key][kind]`` adds ``increase`` (mean of bins minus clean,
        percentage points) and ``increase_bins``. ``per_image[protocol][method_key]`` is the
        (B,) 2D NME in % (NaN = miss); for occlusion ``per_image["occlusion"][kind][key]``.
    """
    data = run.data
    gt3 = data.pts68_output_frame()
    keys = [m.key for m in run.methods]
    figs: dict = {}
    per: dict = {}

    def with_diff(block: dict) -> dict:
        if len(keys) >= 2:
            block["difference"] = difference(block[keys[0]], block[keys[1]])
        return block

    if run.gt_crops:
        figs["gt-crops"], per["gt-crops"] = {}, {}
        for k in keys:
            figs["gt-crops"][k], per["gt-crops"][k] = _lm_figures(
                run.gt_crops[k]["lms"], run.gt_crops[k]["pose"], data, gt3)
        with_diff(figs["gt-crops"])
    if run.detector:
        d = run.detector
        matched = d["matched"]
        block: dict = {"detection": {
            "faces": len(data), "detected": int(matched.sum()), "misses": int((~matched).sum()),
            "misses_by_bin": {s: [int(((yaw_bin_index(y) == b) & ~matched).sum())
                                  for b in range(3)] for s, y in data.yaw_splits.items()},
            "mean_iou_matched": _stat(d["iou"][matched], np.mean),
            "iou_threshold": run.settings["iou_threshold"],
            "images_with_extra_detections": int((d["n_detections"] > 1).sum())}}
        per["detector"] = {}
        for k in keys:
            block[k], per["detector"][k] = _lm_figures(d[k]["lms"], d[k]["pose"], data, gt3)
        figs["detector"] = with_diff(block)
    if run.occlusion:
        o = run.occlusion
        block = {"seed": o["seed"], "kinds": list(OCCLUDER_KINDS),
                 "coverage": {kind: _stat(o["coverage"][kind], np.mean)
                              for kind in OCCLUDER_KINDS}}
        per["occlusion"] = {kind: {} for kind in OCCLUDER_KINDS}
        for k in keys:
            clean = figs["gt-crops"][k]["nme_2d"]
            mb: dict = {"clean": {"bins": clean["splits"]["fit"]["bins"],
                                  "mean": clean["splits"]["fit"]["mean"]}}
            for kind in OCCLUDER_KINDS:
                f, per["occlusion"][kind][k] = _lm_figures(o[kind][k]["lms"], o[kind][k]["pose"],
                                                           data, gt3)
                fs = f["nme_2d"]["splits"]["fit"]
                f["increase"] = fs["mean"] - mb["clean"]["mean"]
                f["increase_bins"] = [a - b for a, b in zip(fs["bins"], mb["clean"]["bins"])]
                mb[kind] = f
            block[k] = mb
        figs["occlusion"] = with_diff(block)
    return figs, per


@dataclass
class Landmarks68Run:
    """Raw per-face outputs of :func:`run_landmarks68` (F = annotated faces).

    Attributes:
        items: the images.
        methods: the methods.
        sources: F face labels.
        matched: (F,) bool; iou: (F,) best IoU; gt: (F, 68, 2) ground truth.
        pred: method key -> (F, 68, 3) landmarks (NaN for misses).
    """

    items: list[AnnotatedImage]
    methods: list[Method]
    sources: list[str]
    matched: np.ndarray
    iou: np.ndarray
    gt: np.ndarray
    pred: dict
    settings: dict


def run_landmarks68(items: list[AnnotatedImage], methods: list[Method], detector,
                    iou_threshold: float = IOU_THRESHOLD, progress=None) -> Landmarks68Run:
    """Detector-in-the-loop 68-landmark evaluation on annotated photos.

    Each image is passed once through the detector (:meth:`FaceAligner.detect`); each annotated
    face is matched to the detection with the highest IoU with its 68-landmark box (a miss below
    ``iou_threshold``); each method fits the matched detections with the pipeline's roi rule.

    Args:
        items: from :func:`open_landmarks68`.
        methods: regressors to compare.
        detector: anything with ``detect(image_bgr) -> list[Face]``.
        progress: optional callable ``progress(1)`` after each image.

    Raises:
        DatasetLayoutError: an unreadable image.
    """
    from facealign_cli.core.pipeline import FaceAligner

    aligners = [FaceAligner(detector=detector, regressor=m.regressor, flip=m.flip)
                for m in methods]
    gts = [f for it in items for f in it.faces]
    F = len(gts)
    pred = {m.key: np.full((F, 68, 3), np.nan) for m in methods}
    matched, ious = np.zeros(F, bool), np.zeros(F)
    i = 0
    for it in items:
        im = _read_image(it.path)
        faces = aligners[0].detect(im)
        boxes = np.array([f.box[:4] for f in faces]).reshape(-1, 4)
        for g in it.faces:
            k, ious[i] = match_detection(landmark_box(g), boxes, iou_threshold)
            if k >= 0:
                matched[i] = True
                for m, al in zip(methods, aligners):
                    pred[m.key][i] = _fit_detected(al, im, faces[k])[0]
            i += 1
        if progress is not None:
            progress(1)
    return Landmarks68Run(items, methods, [s for it in items for s in it.sources], matched,
                          ious, np.stack(gts) if gts else np.zeros((0, 68, 2)), pred,
                          {"iou_threshold": iou_threshold})


def summarise_landmarks68(run: Landmarks68Run) -> tuple[dict, dict]:
    """Figures of a :class:`Landmarks68Run`.

    Returns:
        ``(figures, per_image)``: ``figures["detection"]`` (faces, images, detected, misses),
        ``figures[key]["nme_box"]`` and ``["nme_io"]``: ``mean``, ``median`` (% over detected
        faces), ``n``, ``misses`` and ``ced`` (misses as failures); ``figures["difference"]``
        when two methods. ``per_image[key] = {"nme_box": (F,), "nme_io": (F,)}`` in % (NaN =
        miss).
    """
    figs: dict = {"detection": {"images": len(run.items), "faces": len(run.gt),
                                "detected": int(run.matched.sum()),
                                "misses": int((~run.matched).sum()),
                                "iou_threshold": run.settings["iou_threshold"]}}
    per: dict = {}
    keys = [m.key for m in run.methods]
    for k in keys:
        p = run.pred[k]
        e_box = nme_box(p[..., :2], run.gt) * 100 if len(p) else np.zeros(0)
        e_io = nme_interocular(p[..., :2], run.gt) * 100 if len(p) else np.zeros(0)
        per[k] = {"nme_box": e_box, "nme_io": e_io}
        figs[k] = {name: {"mean": _stat(e, np.mean), "median": _stat(e, np.median),
                          "n": int(np.isfinite(e).sum()), "misses": int((~np.isfinite(e)).sum()),
                          "ced": ced_summary(e)}
                   for name, e in (("nme_box", e_box), ("nme_io", e_io))}
    if len(keys) >= 2:
        figs["difference"] = difference(figs[keys[0]], figs[keys[1]])
    return figs, per
