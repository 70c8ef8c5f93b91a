"""Pictures of the results drawn over the photo: detector boxes, the 68 landmarks with the iBUG
contour lines, head-pose axes at the nose tip, and (through :mod:`.shading`) the shaded dense
mesh or a depth image of the faces.

Frames: everything in the image frame of :mod:`facealign_cli.core.face` (pixels, x right, y down,
pixel (0, 0) centred at (0, 0)). Images are OpenCV's (H, W, 3) uint8 BGR; nothing here changes its
input, every function returns a new image. Drawing is OpenCV's (anti-aliased lines, sub-pixel
positions).

The one entry point for a batch command is :func:`draw_faces`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import cv2
import numpy as np

from facealign_cli.core.face import Face, face_rotation

#: What :func:`draw_faces` can draw, and what it draws by default.
DRAW_CHOICES = ("box", "landmarks", "pose", "mesh", "depth")
DEFAULT_DRAW = ("box", "landmarks", "pose")

#: The iBUG 68-point contours: (first, last, closed). Jaw, right and left brow (the subject's),
#: nose bridge, nose base, the two eyes, the outer and inner lips.
IBUG_CONTOURS = (
    (0, 16, False), (17, 21, False), (22, 26, False), (27, 30, False), (31, 35, False),
    (36, 41, True), (42, 47, True), (48, 59, True), (60, 67, True),
)
#: iBUG index of the nose tip (where the pose axes start).
NOSE_TIP = 30

# BGR colours
BOX_COLOR = (0, 200, 0)
LANDMARK_COLOR = (255, 255, 255)
CONTOUR_COLOR = (0, 220, 255)
AXIS_COLORS = ((0, 0, 255), (0, 200, 0), (255, 80, 0))  # x red, y green, z blue

_SHIFT = 4  # OpenCV sub-pixel bits
_SCALE = 1 << _SHIFT


def _pts(p: np.ndarray) -> np.ndarray:
    """Float pixel positions to OpenCV's fixed-point int32 (``shift = _SHIFT``)."""
    return np.round(np.asarray(p, dtype=np.float64) * _SCALE).astype(np.int32)


def line_width(image_shape: tuple[int, ...]) -> int:
    """Default line thickness in pixels for an image: 1 up to 700 px long side, then about
    one more per 700 px."""
    return max(1, int(round(max(image_shape[:2]) / 700)))


def draw_box(image: np.ndarray, box: Sequence[float], *, color=BOX_COLOR,
             thickness: int | None = None, label: str | None = None) -> np.ndarray:
    """A detector box ``[x1, y1, x2, y2]`` (pixels), with an optional text label above it."""
    out = np.array(image, dtype=np.uint8, copy=True)
    t = thickness or line_width(out.shape)
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    cv2.rectangle(out, tuple(_pts((x1, y1))), tuple(_pts((x2, y2))), color, t, cv2.LINE_AA,
                  _SHIFT)
    if label:
        _label(out, (x1, y1, x2, y2), label, color, t)
    return out


def _label(out: np.ndarray, box: Sequence[float], label: str, color, t: int) -> None:
    """Write ``label`` (black on a ``color`` patch) above the box, or below it at the top
    edge of the image, in place."""
    x1, y1, _x2, y2 = (float(v) for v in box[:4])
    if not (math.isfinite(x1) and math.isfinite(y1) and math.isfinite(y2)):
        return
    scale = 0.45 * t
    (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, t)
    ty = int(y1) - 4 if y1 - th - 4 >= 0 else int(y2) + th + 4
    cv2.rectangle(out, (int(x1), ty - th - 2), (int(x1) + tw + 2, ty + base), color, -1)
    cv2.putText(out, label, (int(x1) + 1, ty), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0),
                t, cv2.LINE_AA)


def draw_label(image: np.ndarray, box: Sequence[float], label: str, *, color=BOX_COLOR,
               thickness: int | None = None) -> np.ndarray:
    """A text label at a box ``[x1, y1, x2, y2]`` (image pixels) without the box itself:
    above its top-left corner, or below its bottom edge when there is no room above.

    Args:
        image: (H, W, 3) uint8 BGR.
        box: (4,) the box, pixels (x right, y down).
        label: the text (ASCII; OpenCV's Hershey font).

    Returns:
        A new (H, W, 3) uint8 BGR image.
    """
    out = np.array(image, dtype=np.uint8, copy=True)
    _label(out, box, label, color, thickness or line_width(out.shape))
    return out


def draw_landmarks(image: np.ndarray, landmarks: np.ndarray, *, contours: bool = True,
                   color=LANDMARK_COLOR, line_color=CONTOUR_COLOR,
                   thickness: int | None = None) -> np.ndarray:
    """The 68 iBUG landmarks as dots, joined by the contour lines of :data:`IBUG_CONTOURS`
    (jaw, brows, nose bridge and base open; eyes and lips closed).

    Args:
        image: (H, W, 3) uint8 BGR.
        landmarks: (68, 2) or (68, 3) float, image pixels (z ignored).
    """
    out = np.array(image, dtype=np.uint8, copy=True)
    p = np.asarray(landmarks, dtype=np.float64)[:, :2]
    if p.shape[0] != 68:
        raise ValueError(f"expected 68 landmarks, got {p.shape[0]}")
    if not np.isfinite(p).all():
        return out
    t = thickness or line_width(out.shape)
    if contours:
        polys = [_pts(p[a:b + 1]) for a, b, closed in IBUG_CONTOURS if not closed]
        cv2.polylines(out, polys, False, line_color, t, cv2.LINE_AA, _SHIFT)
        polys = [_pts(p[a:b + 1]) for a, b, closed in IBUG_CONTOURS if closed]
        cv2.polylines(out, polys, True, line_color, t, cv2.LINE_AA, _SHIFT)
    r = _SCALE * (t + 1)
    for q in _pts(p):
        cv2.circle(out, (int(q[0]), int(q[1])), r, color, -1, cv2.LINE_AA, _SHIFT)
    return out


def draw_pose_axes(image: np.ndarray, origin: Sequence[float], rotation: np.ndarray,
                   length: float, *, thickness: int | None = None) -> np.ndarray:
    """The head's x (red), y (green) and z (blue) axes, projected orthographically.

    The model frame's axes (x towards the image's right on a frontal face, i.e. the subject's
    left; y up; z out of the face, towards the viewer) are rotated by ``rotation`` into the
    camera frame (x right, y up, z towards the viewer) and drawn from ``origin`` as
    ``(x, -y)`` in the image (y down); the axis pointing farthest away is drawn first.

    Args:
        image: (H, W, 3) uint8 BGR.
        origin: (x, y) image pixels, e.g. the nose tip.
        rotation: (3, 3) model-to-camera rotation (``Face.rotation``, :func:`face_rotation`);
            model axis k is its column k, drawn to ``origin + length * (R[0, k], -R[1, k])``.
        length: axis length in pixels.
    """
    out = np.array(image, dtype=np.uint8, copy=True)
    R = np.asarray(rotation, dtype=np.float64)
    o = np.asarray(origin, dtype=np.float64)[:2]
    if not (np.isfinite(R).all() and np.isfinite(o).all()):
        return out
    t = thickness or line_width(out.shape)
    axes = R.T  # row k: model axis k in the camera frame
    for k in np.argsort(axes[:, 2]):  # most negative z (away from the viewer) first
        tip = o + length * np.array([axes[k, 0], -axes[k, 1]])
        cv2.arrowedLine(out, tuple(_pts(o)), tuple(_pts(tip)), AXIS_COLORS[k], t + 1,
                        cv2.LINE_AA, _SHIFT, 0.15)
    return out


def face_length(face: Face) -> float:
    """A face size in pixels for axis lengths: half the diagonal of the 68 landmarks' box (or
    of the detector box)."""
    pts = face.landmarks_2d if face.landmarks_3d is not None else np.reshape(face.box, (2, 2))
    span = np.ptp(np.asarray(pts, dtype=np.float64), axis=0)
    return float(np.hypot(*span)) / 2


def draw_faces(image_bgr: np.ndarray, faces: Sequence[Face],
               draw: Iterable[str] = DEFAULT_DRAW, *, triangles: np.ndarray | None = None,
               mesh_alpha: float = 0.75, scores: bool = True,
               labels: Sequence[str | None] | None = None) -> np.ndarray:
    """Draw the chosen layers of every face of one photo.

    Layers, bottom to top: the photo, or with ``depth`` the depth image of the faces
    (:func:`facealign_cli.render.shading.depth_image`) in its place; ``mesh`` (the shaded dense
    meshes, z-buffered together, blended over the photo); ``box`` (with the score when
    ``scores``); ``landmarks``; ``pose``. ``mesh`` and ``depth`` use the faces that have
    ``vertices`` (``FaceAligner(...)(image, dense=True)``); ``landmarks`` and ``pose`` those
    that were regressed (``pose``: the axes of ``Face.rotation``, see :func:`face_rotation`).

    Args:
        image_bgr: (H, W, 3) uint8 BGR photo (EXIF orientation applied: the faces' frame).
        faces: the photo's faces (:class:`facealign_cli.core.face.Face`).
        draw: names from :data:`DRAW_CHOICES`.
        triangles: (T, 3) triangles of the dense meshes (``FaceTopology.triangles``), needed
            for ``mesh`` and ``depth``.
        mesh_alpha: opacity of the mesh.
        scores: label each box with its detector score.
        labels: one text per face (``None`` = none), written at its box before the score
            (e.g. a video's track id, ``"#3"``); drawn also when ``box`` is not a layer.

    Returns:
        A new (H, W, 3) uint8 BGR image.

    Raises:
        ValueError: an unknown layer name, ``mesh``/``depth`` without ``triangles``, or
            ``labels`` not one per face.
    """
    layers = [d.strip().lower() for d in draw if d.strip()]
    bad = [d for d in layers if d not in DRAW_CHOICES]
    if bad:
        raise ValueError(f"unknown --draw choice(s) {bad}; expected some of {DRAW_CHOICES}")
    img = np.asarray(image_bgr)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8 BGR, got {img.dtype} {img.shape}")
    out = img.copy()
    dense = [f.vertices for f in faces if f.vertices is not None]
    if ("mesh" in layers or "depth" in layers) and dense:
        if triangles is None:
            raise ValueError("drawing 'mesh' or 'depth' needs the mesh triangles")
        from facealign_cli.render.shading import blend_mesh, depth_image, mesh_layers

        ml = mesh_layers(out.shape, dense, triangles)
        if "depth" in layers:
            out = depth_image(ml)
        if "mesh" in layers:
            out = blend_mesh(out, ml, alpha=mesh_alpha)
    elif "depth" in layers:
        out = np.zeros_like(out)
    t = line_width(out.shape)
    if labels is not None and len(labels) != len(faces):
        raise ValueError(f"{len(labels)} labels for {len(faces)} faces")
    for k, f in enumerate(faces):
        text = " ".join(s for s in ((labels[k] if labels is not None else None),
                                    f"{float(f.score):.2f}" if scores else None) if s)
        if "box" in layers:
            out = draw_box(out, f.box, thickness=t, label=text or None)
        elif labels is not None and labels[k]:
            out = draw_label(out, f.box, labels[k], thickness=t)
        if "landmarks" in layers and f.landmarks_3d is not None:
            out = draw_landmarks(out, f.landmarks_3d, thickness=t)
        R = face_rotation(f) if "pose" in layers and f.landmarks_3d is not None else None
        if R is not None:
            out = draw_pose_axes(out, f.landmarks_3d[NOSE_TIP, :2], R, face_length(f),
                                 thickness=t)
    return out
