"""Axis-aligned boxes ``[x1, y1, x2, y2]``: area and intersection over union (pure numpy).

Boxes are continuous coordinates in any common frame (image pixels in practice), corner
``(x1, y1)`` top-left, ``(x2, y2)`` bottom-right, so a box's width is ``x2 - x1`` (no "+1"
pixel convention). A box with ``x2 <= x1`` or ``y2 <= y1`` is degenerate: its area is 0.

The one IoU of the project: the detector's non-maximum suppression
(:func:`facealign_cli.models.blazeface.weighted_nms`) and the evaluation's matching of
detections to annotated faces (:func:`facealign_cli.evaluation.metrics.match_detection`) both
call :func:`box_iou`.
"""

from __future__ import annotations

import numpy as np


def _float_dtype(*arrays: np.ndarray) -> np.dtype:
    """float32 when every input is float32 (or narrower), else float64."""
    return np.result_type(*arrays, np.float32)


def box_area(boxes: np.ndarray) -> np.ndarray:
    """Area of boxes ``[x1, y1, x2, y2]``; degenerate boxes have area 0.

    Args:
        boxes: (..., 4) any real dtype.

    Returns:
        (...) float32 for float32 input (or narrower), else float64; square units of the input.
    """
    b = np.asarray(boxes)
    b = b.astype(_float_dtype(b), copy=False)
    return np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box of ``a`` with every box of ``b``.

    ``IoU = |a ∩ b| / (|a| + |b| - |a ∩ b|)``, computed in that order of operations; a pair
    whose union is 0 (two degenerate boxes) has IoU 0.

    Args:
        a: (4,) one box or (N, 4) boxes ``[x1, y1, x2, y2]``.
        b: (M, 4) boxes (a (4,) box is read as (1, 4)); M may be 0.

    Returns:
        (M,) if ``a`` is one (4,) box, else (N, M); values in [0, 1]. The dtype is float32 when
        both inputs are float32 (the detector's NMS works in float32), else float64: the result
        is the same, bit for bit, as the formula evaluated in that dtype.
    """
    a = np.asarray(a)
    b = np.asarray(b)
    dt = _float_dtype(a, b)
    one = a.ndim == 1
    a = a.astype(dt, copy=False).reshape(-1, 4)
    b = b.astype(dt, copy=False).reshape(-1, 4)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    pos = union > 0
    iou = np.where(pos, inter / np.where(pos, union, 1), 0).astype(dt, copy=False)
    return iou[0] if one else iou
