"""Validation splits and scores that choose a training run's checkpoint.

Two splits, both held out of training (``TrainConfig.hold_out_val`` / ``val_aflw``):

* **AFW** (``hold_out_val``): the 337 300-W AFW faces with their 68 manual landmarks, scored by
  the AFLW2000-3D protocol's NME (ground-truth box normaliser). 3DDFA-V2 was trained on 300W-LP,
  which contains these photos, so the split flatters a model initialised from the teacher.
* **AFLW** (``val_aflw = N``): N AFLW-train faces (a fixed split, the same for every recipe and
  seed: ``N // 3`` from each |yaw| bin [0, 30], (30, 60], (60, 90], the rest from the first),
  never seen by the teacher. Scored on their visible manual AFLW points mapped to iBUG indices
  (:data:`facealign_cli.training.data.AFLW21_TO_68`): the mean 2D error over the visible points,
  divided by the side of the face's full 120-px roi crop, in %, averaged per |yaw| bin and
  reported as the unweighted mean of the three bin means (the benchmark's weighting). The AFLW and
  iBUG definitions of some points differ by a few pixels; that offset is the same for every
  checkpoint, so the score ranks checkpoints but is not comparable with published NMEs.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from facealign_cli.evaluation.metrics import nme_box
from facealign_cli.models.regressor import normalise_crops
from facealign_cli.training.data import SIZE

#: Seed of the AFLW validation split (independent of the recipe's seed: all runs share it).
AFLW_SPLIT_SEED = 20261206
#: |yaw| bin edges in degrees (upper edges of [0, 30] and (30, 60]).
YAW_EDGES = (30.0, 60.0)


class NetRegressor:
    """A network being trained seen as a :class:`~facealign_cli.core.regression.Regressor`.

    Args:
        net: module mapping (B, 3, 120, 120) float32 to (B, 62) normalised parameters.
        t_mean, t_std: (62,) float32 tensors; parameters = output * std + mean.
    """

    input_size = SIZE

    def __init__(self, net, t_mean, t_std):
        self.net, self.t_mean, self.t_std = net, t_mean, t_std

    @torch.inference_mode()
    def predict(self, crops: np.ndarray) -> np.ndarray:
        """(B, 120, 120, 3) uint8 BGR crops -> (B, 62) float32 parameters (crop frame)."""
        x = normalise_crops(crops).contiguous(memory_format=torch.channels_last)
        return (self.net(x) * self.t_std + self.t_mean).numpy()


def zoom_crops(crops: np.ndarray, pts: np.ndarray, zoom: float) -> tuple[np.ndarray, np.ndarray]:
    """Crops magnified by ``zoom`` about their centre (the crop of a roi box ``1 / zoom`` times
    the side, same centre) and their points moved alike.

    Args:
        crops: (N, 120, 120, 3) uint8 BGR.
        pts: (N, P, 2) float32 crop pixels (x right, y down; NaN kept).

    Returns:
        ``(crops, pts)`` of the same shapes and dtypes.
    """
    if zoom == 1.0:
        return crops, pts
    c = (SIZE - 1) / 2
    M = np.array([[zoom, 0, c - zoom * c], [0, zoom, c - zoom * c]], np.float32)
    out = np.stack([cv2.warpAffine(np.ascontiguousarray(x), M, (SIZE, SIZE),
                                   flags=cv2.INTER_LINEAR) for x in crops])
    return out, ((pts - c) * zoom + c).astype(np.float32)


def yaw_bins(yaw: np.ndarray) -> np.ndarray:
    """(N,) degrees -> (N,) int64 bin index 0 / 1 / 2 of |yaw| in [0, 30], (30, 60], (60, ...)."""
    return np.digitize(np.abs(np.asarray(yaw, dtype=np.float64)), YAW_EDGES, right=True)


def aflw_validation_split(yaw: np.ndarray, n: int, seed: int = AFLW_SPLIT_SEED) -> np.ndarray:
    """Indices of the AFLW faces held out for validation.

    Args:
        yaw: (N,) degrees, the AFLW label of each face (``labels.npz``'s ``yaw``).
        n: faces to hold out (0: none); ``n // 3`` per |yaw| bin, the remainder from [0, 30].

    Returns:
        (n,) int64 sorted indices into ``yaw``.

    Raises:
        ValueError: a bin has fewer faces than asked.
    """
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng(seed)
    bins = yaw_bins(yaw)
    want = [n - 2 * (n // 3), n // 3, n // 3]
    pick = []
    for b, k in enumerate(want):
        cand = np.flatnonzero(bins == b)
        if len(cand) < k:
            raise ValueError(f"only {len(cand)} AFLW faces in |yaw| bin {b}, {k} asked")
        pick.append(rng.choice(cand, size=k, replace=False))
    return np.sort(np.concatenate(pick)).astype(np.int64)


def predict_landmarks(net, crops: np.ndarray, t_mean, t_std, fitter) -> np.ndarray:
    """The 68 landmarks the image commands would predict on each crop (``fitter``: a
    :class:`~facealign_cli.core.regression.CropFitter` of the landmarks, flip-averaged).

    Returns:
        (N, 68, 2) float64 crop pixels (x right, y down).
    """
    net.eval()
    reg = NetRegressor(net, t_mean, t_std)
    lm = [fitter(reg, crops[i:i + 256]).vertices[0][:, :2].transpose(0, 2, 1)
          for i in range(0, len(crops), 256)]
    return np.concatenate(lm).astype(np.float64)


def validate(net, crops: np.ndarray, real: np.ndarray, t_mean, t_std, fitter) -> float:
    """Mean NME (%) of the 68 landmarks on validation crops (ground-truth-box normaliser).

    Args:
        crops: (N, 120, 120, 3) uint8 BGR validation crops.
        real: (N, 68, 2) float32 manual landmarks, crop pixels.
    """
    lm = predict_landmarks(net, crops, t_mean, t_std, fitter)
    return float(100 * nme_box(lm, real).mean())


def visible_point_nme(pred: np.ndarray, real: np.ndarray, side: float) -> np.ndarray:
    """Per-face error over the visible annotated points, as % of the roi crop's side.

    Args:
        pred: (N, 68, 2) predicted landmarks, crop pixels.
        real: (N, 68, 2) manual landmarks, NaN where not annotated.
        side: the side of the face's full roi crop in the same pixels.

    Returns:
        (N,) float64; NaN for a face with no visible point.
    """
    d = np.linalg.norm(np.asarray(pred, np.float64) - np.asarray(real, np.float64), axis=-1)
    have = ~np.isnan(d)
    n = have.sum(axis=1)
    tot = np.where(have, d, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, 100.0 * tot / np.maximum(n, 1) / side, np.nan)


def validate_aflw(net, crops: np.ndarray, real: np.ndarray, bins: np.ndarray, t_mean, t_std,
                  fitter, zoom: float) -> dict:
    """Score the AFLW validation split (see the module docstring).

    Args:
        crops: (N, 120, 120, 3) uint8 BGR crops already zoomed by ``zoom``.
        real: (N, 68, 2) float32 visible manual points mapped to iBUG indices (NaN elsewhere),
            in the zoomed crops' pixels.
        bins: (N,) int64 |yaw| bin of each face.
        zoom: the magnification applied (the full roi side is ``120 * zoom`` pixels).

    Returns:
        ``{"bins": [3 floats], "mean": float}``, % of the roi crop side.
    """
    lm = predict_landmarks(net, crops, t_mean, t_std, fitter)
    per = visible_point_nme(lm, real, SIZE * zoom)
    means = [float(np.nanmean(per[bins == b])) for b in range(3)]
    return {"bins": [round(m, 4) for m in means], "mean": round(float(np.mean(means)), 4)}
