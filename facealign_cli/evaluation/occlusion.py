"""Synthetic occluders for the ``occlusion`` protocol of ``facealign evaluate aflw2000-3d``.

After the occlusion benchmark idea of DSFNet (Li et al., CVPR 2023): solid-colour shapes drawn
over the face; the shapes, sizes and random draws here are our own (:func:`make_occluder`).
Every occluder is deterministic given ``(seed, image key, kind)`` (:func:`occluders_for`), so
a ``--limit`` subset is occluded exactly as in the full run.

Frames: image pixels of the (H, W, 3) uint8 BGR image, x right, y down; face boxes
``[x1, y1, x2, y2]`` float; occluder rectangles integer, end-exclusive.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

OCCLUDER_KINDS = ("square", "double-square", "column")
DEFAULT_OCCLUSION_SEED = 2023


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
