"""Training-set preparation: roi crops of the training faces, teacher pseudo-labels
(flip-averaged) and the real landmarks, cached as one ``.npz``.

Sources (``<shared>/README.md``):

* ``data/aflw-train``: 19,080 AFLW faces already cropped to 120 x 120 (AFLW2000-3D's images
  are excluded), with the visible AFLW 21-point annotation.
* ``data/300w-train/{afw,helen}``: 1,207 faces with 68 iBUG landmarks; cropped here with 3DDFA's
  landmark roi rule (:func:`facealign_cli.core.geometry.roi_box_from_landmarks`).

Labels: the teacher (3DDFA-V2 MobileNet, user-supplied weights) regresses parameters on each crop
and on its mirror image; the vertex targets are the mean of the direct prediction and the
un-mirrored prediction of the flipped crop, for a fixed subset of vertices (the 68 landmarks
first, then a mirror-closed sample of face vertices), in the crop frame (x right, y down,
z towards the viewer, 120-px units).
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np

from facealign_cli.core import geometry as G
from facealign_cli.core.morphable_model import MorphableModel, load_morphable_model
from facealign_cli.core.regression import CropFitter, gather_vertices
from facealign_cli.core.symmetry import vertex_mirror_map
from facealign_cli.models.baseline_3ddfa import Baseline3DDFA
from facealign_cli.models.regressor import Regressor
from facealign_cli.models.weights import sha256_of

SIZE = G.CROP_SIZE
# AFLW 21-point index -> iBUG 68 index (the points with an unambiguous iBUG counterpart).
AFLW21_TO_68 = {0: 17, 1: 19, 2: 21, 3: 22, 4: 24, 5: 26, 6: 36, 8: 39, 9: 42, 11: 45,
                13: 31, 14: 30, 15: 35, 17: 48, 19: 54, 20: 8}


def choose_target_vertices(model: MorphableModel, n_dense: int = 1000, seed: int = 0) -> np.ndarray:
    """Vertex indices supervised by the vertex loss: the 68 landmark vertices, then ``n_dense``
    face vertices closed under the mirror map.

    The dense sample is drawn (fixed seed) from the vertices of the mean face above the jaw line
    (y above the chin landmark's y minus 5 % of the face height) and in front of the ears
    (z above the 25th percentile).

    Returns:
        (68 + K,) int64; K is ``n_dense`` or a little more (mirror closure).
    """
    v = model.shape(np.zeros(40), np.zeros(10)).T
    kp = model.keypoint_vertices
    h = v[kp, 1].max() - v[kp, 1].min()
    ok = (v[:, 1] > v[kp[8], 1] - 0.05 * h) & (v[:, 2] > np.percentile(v[:, 2], 25))
    cand = np.flatnonzero(ok)
    rng = np.random.default_rng(seed)
    pick = rng.choice(cand, size=n_dense // 2, replace=False)
    mirror = vertex_mirror_map(model)
    dense = np.unique(np.concatenate([pick, mirror[pick]]))
    dense = dense[~np.isin(dense, kp)]
    return np.concatenate([kp, dense]).astype(np.int64)


def _load_aflw(shared: Path):
    d = shared / "data" / "aflw-train"
    lab = np.load(d / "labels.npz")
    names = lab["names"]
    crops = np.stack([cv2.imread(str(d / "images" / n), cv2.IMREAD_COLOR) for n in names])
    return [f"aflw/{n}" for n in names], crops, aflw_points_68(lab["pts21"])


def aflw_points_68(pts21: np.ndarray) -> np.ndarray:
    """The visible AFLW 21-point annotations at their iBUG 68 indices (:data:`AFLW21_TO_68`).

    Args:
        pts21: (N, 21, 2) crop pixels, -1 where not annotated.

    Returns:
        (N, 68, 2) float32, NaN where no visible AFLW point maps.
    """
    p21 = np.asarray(pts21)
    pts = np.full((len(p21), 68, 2), np.nan, dtype=np.float32)
    for a, b in AFLW21_TO_68.items():
        vis = (p21[:, a] >= 0).all(axis=1)
        pts[vis, b] = p21[vis, a]
    return pts


def detector_view(crop: np.ndarray) -> tuple[np.ndarray, int]:
    """A tight face crop as a photo the detector can read: padded by half its side on every
    side (edge pixels repeated) and upscaled 2x. A point ``q`` of the view is the crop's
    ``q / 2 - pad``.

    Args:
        crop: (S, S, 3) uint8 BGR.

    Returns:
        ``(view, pad)``: (4 S, 4 S, 3) uint8 BGR and the padding in crop pixels.
    """
    pad = crop.shape[0] // 2
    view = cv2.resize(cv2.copyMakeBorder(crop, pad, pad, pad, pad, cv2.BORDER_REPLICATE), None,
                      fx=2, fy=2, interpolation=cv2.INTER_LINEAR)
    return view, pad


def _load_300w(shared: Path):
    names, crops, pts = [], [], []
    for sub in ("afw", "helen"):
        d = shared / "data" / "300w-train" / sub
        lab = np.load(d / "labels.npz")
        for n, p in zip(lab["names"], lab["pts68"]):
            img = cv2.imread(str(d / "images" / n), cv2.IMREAD_COLOR)
            roi = G.roi_box_from_landmarks(p)
            crops.append(G.crop_roi(img, roi, SIZE))
            sx, sy, ex, ey = (int(round(float(v))) for v in roi)
            k = np.array([SIZE / (ex - sx), SIZE / (ey - sy)], dtype=np.float32)
            pts.append((p - np.array([sx, sy], dtype=np.float32)) * k)
            names.append(f"300w/{sub}/{n}")
    return names, np.stack(crops), np.stack(pts).astype(np.float32)


def teacher_targets(teacher: Baseline3DDFA, crops: np.ndarray, model: MorphableModel,
                    target_index: np.ndarray, batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Flip-averaged teacher vertex targets for a set of crops.

    Args:
        crops: (B, 120, 120, 3) uint8 BGR crops.
        target_index: (K,) vertex indices, the 68 landmarks first.

    Returns:
        ``(params, targets)``: (B, 62) float32 teacher parameters of the unflipped crops and
        (B, 3, K) float32 flip-averaged vertices in the crop frame.
    """
    dense = np.asarray(target_index[68:])
    fitter = CropFitter(model, ("landmarks", (gather_vertices(model, dense), dense)), flip=True)
    params, targets = [], []
    for i in range(0, len(crops), batch):
        fit = fitter(teacher, crops[i:i + batch])
        params.append(fit.params)
        targets.append(np.concatenate(fit.vertices, axis=2))
    return np.concatenate(params).astype(np.float32), np.concatenate(targets).astype(np.float32)


def prepare_training_set(shared: Path, teacher_weights: Path, cache: Path,
                         n_dense: int = 1000, log=print, labeller: Path | None = None) -> Path:
    """Build (or reuse) the cached training set.

    ``labeller``: label with this facealign checkpoint (the project's own student, for a
    round of self-training) instead of the teacher; cached under the checkpoint's sha256.

    Returns:
        Path of the ``.npz`` with ``names`` (N,), ``crops`` (N, 120, 120, 3) uint8 BGR,
        ``real_pts`` (N, 68, 2) float32 crop pixels (NaN where not annotated), ``params``
        (N, 62) teacher parameters, ``targets`` (N, 3, K) float32 flip-averaged teacher vertices,
        ``target_index`` (K,) int64 vertex indices (68 landmarks first).

    Raises:
        FileNotFoundError: a data folder or the teacher weights are missing.
    """
    cache.mkdir(parents=True, exist_ok=True)
    tag = f"_self{sha256_of(labeller)[:12]}" if labeller else ""
    out = cache / f"trainset_k{n_dense}{tag}.npz"
    if out.is_file():
        log(f"using cached training set {out}")
        return out
    t0 = time.time()
    model = load_morphable_model()
    n1, c1, p1 = _load_aflw(shared)
    n2, c2, p2 = _load_300w(shared)
    names = np.array(n1 + n2)
    crops = np.concatenate([c1, c2])
    real = np.concatenate([p1, p2])
    who = f"the student {labeller}" if labeller else "the teacher"
    log(f"loaded {len(names)} crops in {time.time() - t0:.0f} s; labelling with {who}")
    teacher = Regressor(labeller) if labeller else Baseline3DDFA(teacher_weights)
    tidx = choose_target_vertices(model, n_dense)
    params, targets = teacher_targets(teacher, crops, model, tidx)
    log(f"labelled in {time.time() - t0:.0f} s")
    tmp = out.with_suffix(".tmp.npz")
    np.savez(tmp, names=names, crops=crops, real_pts=real, params=params, targets=targets,
             target_index=tidx)
    tmp.replace(out)
    return out
