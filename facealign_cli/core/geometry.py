"""Pure geometry on arrays: roi boxes, crops, 3DMM parameters to vertices, head pose.

Frames used here:

* **image frame**: pixels of the input image, x right, y down (see :mod:`facealign_cli.core.face`).
* **crop frame**: the regressor's ``size`` x ``size`` input (120 px by default). The 3DDFA camera
  matrix maps the 3DMM into this frame with y *up*: ``v = P[:, :3] @ S + P[:, 3]``, then 3DDFA's
  convention ``x -= 1``, ``y = size - y`` turns it into crop pixels (x right, y down).
* **output 3D frame**: image frame plus z in pixel units pointing away from the camera,
  z = 0 at the mean depth of the 68 landmarks.

Head pose: the model-to-camera rotation (:func:`rotation_from_camera`) and its Euler angles in
one of two conventions (:data:`POSE_CONVENTIONS`, :func:`angles_from_rotation`): yaw-first
(:func:`angles_yaw_first`, the default of every output) and AFLW2000-3D's
(:func:`angles_aflw2000`, ``facealign evaluate``).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from facealign_cli.core.morphable_model import MorphableModel
from facealign_cli.defaults import DEFAULT_POSE_CONVENTION, POSE_CONVENTIONS

CROP_SIZE = 120

# roi box from a BlazeFace detector box: the square crop is centred at the box centre shifted
# down by ROI_SHIFT_Y box heights and is ROI_SCALE times the mean box side. Fitted on the
# annotated AFW photos (validation data; `python scripts/fit_roi_rule.py`) so that detector crops
# match the landmark-derived roi boxes (3DDFA's rule) used in training. Refitted for the
# detector's v2 policy (its boxes come from the `back` model and are smaller than the
# short-range model's): medians 1.404 and 0.058 over 333 faces (IQR 1.337-1.476 and
# 0.031-0.086); the v1 policy's were 1.329 and 0.073.
ROI_SCALE = 1.404
ROI_SHIFT_Y = 0.058

#: Test-time crop: every roi box the regressor crops (detector-derived, landmark-derived in the
#: second pass and in video tracking, ground-truth-derived in ``facealign evaluate``) is scaled
#: about its centre by this factor (:func:`scale_roi_box`); 1 is 3DDFA's standard crop.
#: Chosen on validation data, never on AFLW2000-3D: the full-resolution AFW photos of
#: ``../shared/data/photos/afw`` with their ``annotations.json`` (issue 18: scales 0.92 < 0.96
#: < 1 < 1.04 < 1.08, monotonic, and 0.88 best there; the low-resolution 300-W AFW crops pick
#: 0.84, which is worse elsewhere). The v3 weights are trained on crops at this scale.
#: Re-measured with the shipped v1 (weights/facealign_v1.onnx, trained on standard crops),
#: flip averaging on, detector in the loop, 333 of 337 faces detected; mean NME (%) by the
#: ground-truth box::
#:
#:     facealign evaluate landmarks68 ../shared/data/photos/afw \
#:         --annotations ../shared/data/photos/afw/annotations.json \
#:         --roi-crop-scale S [--no-second-pass]
#:
#:     S                    0.84    0.88    0.92    1.0
#:     second pass          4.211   4.142   4.121   4.194
#:     --no-second-pass     4.348   4.352   4.355   4.455
#:
#: For v1 the tighter crop gains 0.10 in one pass (flat over 0.84-0.92) and 0.05-0.07 with the
#: second pass (0.88 and 0.92 within 0.02 of each other on 337 faces).
ROI_CROP_SCALE = 0.88


def scale_roi_box(roi_box: np.ndarray, scale: float) -> np.ndarray:
    """Scale square roi boxes about their centres (``scale`` < 1 crops tighter).

    Args:
        roi_box: (4,) or (N, 4) ``[sx, sy, ex, ey]`` in image pixels.
        scale: factor on the side (> 0), e.g. :data:`ROI_CROP_SCALE`; 1 returns the boxes
            unchanged (as float32).

    Returns:
        Same shape, float32: centre kept, width and height times ``scale``.

    Raises:
        ValueError: ``scale`` is not a finite number > 0.
    """
    scale = float(scale)
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"roi crop scale must be a finite number > 0, got {scale!r}")
    b = np.asarray(roi_box, dtype=np.float64)
    c, half = (b[..., :2] + b[..., 2:4]) / 2, (b[..., 2:4] - b[..., :2]) / 2 * scale
    return np.concatenate([c - half, c + half], axis=-1).astype(np.float32)


def roi_box_change(a: np.ndarray, b: np.ndarray) -> float:
    """How much roi box ``b`` differs from roi box ``a``: the largest of the centre's shift in x
    and in y and the change of the side, each as a fraction of ``a``'s side.

    Args:
        a, b: (4,) ``[sx, sy, ex, ey]`` square boxes in image pixels.

    Returns:
        A float >= 0 (0: the same box); ``inf`` when ``a`` has no positive side.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    side = a[2] - a[0]
    if not side > 0:
        return math.inf
    shift = np.abs((b[:2] + b[2:4]) / 2 - (a[:2] + a[2:4]) / 2)
    return float(max(shift.max(), abs((b[2] - b[0]) - side)) / side)


def roi_box_from_landmarks(points: np.ndarray, crop_scale: float = 1.0) -> np.ndarray:
    """3DDFA's roi box from landmarks: the square whose side is the diagonal of the landmarks'
    squared bounding box, centred on the bounding box centre.

    Source: 3DDFA (Zhu et al., TPAMI 2017) and 3DDFA-V2 (Guo et al., ECCV 2020) crop rule for
    landmark-derived boxes (side = sqrt(2) * max(w, h)).

    Args:
        points: (K, 2) or (K, 3) landmark coordinates in image pixels (x right, y down); only x
            and y are used.
        crop_scale: then scaled about its centre by this factor (:func:`scale_roi_box`; the
            pipeline passes :data:`ROI_CROP_SCALE`); 1 = 3DDFA's box.

    Returns:
        (4,) float32 ``[sx, sy, ex, ey]`` in image pixels.
    """
    p = np.asarray(points, dtype=np.float64)[:, :2]
    x1, y1 = p.min(axis=0)
    x2, y2 = p.max(axis=0)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    half = max(x2 - x1, y2 - y1) / 2 * math.sqrt(2.0)
    box = np.array([cx - half, cy - half, cx + half, cy + half], dtype=np.float32)
    return box if crop_scale == 1 else scale_roi_box(box, crop_scale)


def roi_box_from_detector_box(box: np.ndarray, scale: float = ROI_SCALE,
                              shift_y: float = ROI_SHIFT_Y) -> np.ndarray:
    """Square roi box from a detector box ``[x1, y1, x2, y2]`` (image pixels).

    The crop is centred at ``(cx, cy + shift_y * h)`` of the box and its side is
    ``scale * (w + h) / 2``. The defaults are fitted for the BlazeFace detector so that the crop
    matches :func:`roi_box_from_landmarks` on annotated faces (``scripts/fit_roi_rule.py``).

    Returns:
        (4,) float32 ``[sx, sy, ex, ey]``.
    """
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    w, h = x2 - x1, y2 - y1
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2 + shift_y * h
    half = scale * (w + h) / 4
    return np.array([cx - half, cy - half, cx + half, cy + half], dtype=np.float32)


def crop_roi(image: np.ndarray, roi_box: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """Crop ``roi_box`` from ``image`` and resize it to ``size`` x ``size``.

    This is 3DDFA's crop rule: the roi box is rounded to integers, the part outside the image
    is zero-padded, and the crop is resized with ``cv2.resize`` (bilinear).

    Args:
        image: (H, W, 3) uint8 image (any channel order; it is kept).
        roi_box: (4,) ``[sx, sy, ex, ey]`` in image pixels.
        size: output side in pixels.

    Returns:
        (size, size, 3) uint8 crop.

    Raises:
        ValueError: the rounded roi box is empty.
    """
    h, w = image.shape[:2]
    sx, sy, ex, ey = (int(round(float(v))) for v in roi_box[:4])
    dh, dw = ey - sy, ex - sx
    if dh <= 0 or dw <= 0:
        raise ValueError(f"empty roi box {roi_box!r}")
    out = np.zeros((dh, dw) + image.shape[2:], dtype=image.dtype)
    ix1, iy1, ix2, iy2 = max(sx, 0), max(sy, 0), min(ex, w), min(ey, h)
    if ix2 > ix1 and iy2 > iy1:
        out[iy1 - sy:iy2 - sy, ix1 - sx:ix2 - sx] = image[iy1:iy2, ix1:ix2]
    return cv2.resize(out, (size, size), interpolation=cv2.INTER_LINEAR)


def split_params(params: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split (…, 62) parameters into ``R`` (…, 3, 3), ``t`` (…, 3), shape (…, 40), exp (…, 10).

    ``R`` is the scaled (not orthonormal) left 3x3 block of the 3x4 camera matrix.
    """
    p = np.asarray(params, dtype=np.float32)
    cam = p[..., :12].reshape(p.shape[:-1] + (3, 4))
    return cam[..., :3], cam[..., 3], p[..., 12:52], p[..., 52:62]


def params_to_crop_vertices(params: np.ndarray, model: MorphableModel,
                            vertex_index: np.ndarray | None = None,
                            size: int = CROP_SIZE) -> np.ndarray:
    """3DMM parameters to vertices in the crop frame (pixels of the ``size`` crop, y down).

    ``v = R @ (mean + W_shp a_shp + W_exp a_exp) + t``; then ``x -= 1``, ``y = size - y``
    (3DDFA-V2's convention, Guo et al. 2020); z is left as the camera gives it (towards the
    viewer, crop pixel units, arbitrary origin).

    Args:
        params: (62,) or (B, 62) float parameters.
        model: the 3DMM.
        vertex_index: optional (K,) vertex indices (default all).
        size: crop side in pixels.

    Returns:
        (3, K) or (B, 3, K) float32.
    """
    R, t, a_s, a_e = split_params(params)
    s = model.shape(a_s, a_e, vertex_index)
    v = R @ s + t[..., None]
    v[..., 0, :] -= 1
    v[..., 1, :] = size - v[..., 1, :]
    return v.astype(np.float32)


def crop_to_image(v_crop: np.ndarray, roi_box: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """Map crop-frame vertices (3, K) into the image frame given the roi box.

    x, y are scaled by the roi side over ``size`` and shifted by the roi origin; z is scaled by
    the mean of the x and y scales (3DDFA-V2) and negated so that z points away from the camera
    (right-handed with x right, y down). No z offset is applied here.

    Returns:
        (3, K) float32 in the image frame.
    """
    sx, sy, ex, ey = (float(v) for v in roi_box[:4])
    kx, ky = (ex - sx) / size, (ey - sy) / size
    out = np.empty_like(v_crop, dtype=np.float32)
    out[0] = v_crop[0] * kx + sx
    out[1] = v_crop[1] * ky + sy
    out[2] = -v_crop[2] * (kx + ky) / 2
    return out


def rotation_from_camera(params: np.ndarray) -> np.ndarray:
    """Nearest rotation matrix to the camera's scaled 3x3 block (re-orthonormalised with SVD).

    The first two rows of ``P[:, :3]`` are a scaled orthographic projection; the third row of a
    3DDFA camera is filled by the regression too. We take the two first rows, normalise them,
    complete with their cross product and project the result onto SO(3) by SVD
    (``U @ V^T`` with the determinant fixed to +1).

    Args:
        params: (62,) or (12,) float.

    Returns:
        (3, 3) float64 rotation from the 3DMM model frame (x right, y up, z to viewer) to the
        camera frame (same axes).
    """
    P = np.asarray(params, dtype=np.float64)[:12].reshape(3, 4)
    r1, r2 = P[0, :3], P[1, :3]
    r1 = r1 / (np.linalg.norm(r1) + 1e-12)
    r2 = r2 / (np.linalg.norm(r2) + 1e-12)
    r3 = np.cross(r1, r2)
    M = np.stack([r1, r2, r3])
    U, _, Vt = np.linalg.svd(M)
    R = U @ Vt
    if np.linalg.det(R) < 0:
        U[:, -1] *= -1
        R = U @ Vt
    return R


def _rx(deg: float) -> np.ndarray:
    """Right-handed rotation by ``deg`` degrees about x (y towards z)."""
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _ry(deg: float) -> np.ndarray:
    """Right-handed rotation by ``deg`` degrees about y (z towards x)."""
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _rz(deg: float) -> np.ndarray:
    """Right-handed rotation by ``deg`` degrees about z (x towards y)."""
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


#: Below this, the cosine of the middle angle of a decomposition is taken as 0 (gimbal lock).
_GIMBAL_EPS = 1e-6

def angles_yaw_first(R: np.ndarray) -> np.ndarray:
    """``[yaw, pitch, roll]`` in degrees from the model-to-camera rotation ``R`` in the
    **yaw-first** convention (``"yaw-first"``, facealign's default).

    ``R = Ry(-yaw) @ Rx(-pitch) @ Rz(-roll)``: the head turns (yaw) about the camera's vertical
    axis, then nods (pitch) about its own, turned, left-right axis, then tilts (roll) about its
    own, turned, front axis (intrinsic y-x'-z'', the order of aircraft and head-pose angles).
    ``R`` maps the 3DMM's frame to the camera's, both x right, y up, z towards the viewer;
    ``Rx``, ``Ry``, ``Rz`` are the right-handed elementary rotations. Signs (the same as
    AFLW2000-3D's, :func:`angles_aflw2000`; both agree to first order near the frontal pose):
    **yaw** > 0 when the face turns towards the image's left (the subject turns to their
    right), **pitch** > 0 when the face looks up, **roll** > 0 when the head tilts clockwise
    as seen in the image (its top moves towards the image's right). Solved from the entries
    of ``R``::

        pitch = asin(R[1, 2])
        yaw   = -atan2(R[0, 2], R[2, 2])
        roll  = -atan2(R[1, 0], R[1, 1])

    Ranges: yaw (-180, 180], pitch [-90, 90], roll (-180, 180]. Singular only at
    |pitch| = 90 (looking straight up or down, where no face is seen): there yaw and roll
    turn about the same axis, roll is reported 0 and yaw carries the turn
    (``yaw = -atan2(-R[2, 0], R[0, 0])``). A profile (|yaw| near 90) reads as a yaw with
    its own small pitch and roll.

    Args:
        R: (3, 3) rotation matrix.

    Returns:
        (3,) float64 ``[yaw, pitch, roll]`` degrees; :func:`rotation_yaw_first` composes them
        back into ``R``.
    """
    R = np.asarray(R, dtype=np.float64)
    pitch = math.asin(float(np.clip(R[1, 2], -1.0, 1.0)))
    if math.hypot(R[0, 2], R[2, 2]) > _GIMBAL_EPS:
        yaw = -math.atan2(R[0, 2], R[2, 2])
        roll = -math.atan2(R[1, 0], R[1, 1])
    else:  # |pitch| = 90: R = Ry(-yaw) Rx(-pitch); report roll = 0
        yaw = -math.atan2(-R[2, 0], R[0, 0])
        roll = 0.0
    return np.degrees(np.array([yaw, pitch, roll])) + 0.0  # (+ 0.0: no -0.0)


def rotation_yaw_first(pose) -> np.ndarray:
    """Model-to-camera rotation from ``[yaw, pitch, roll]`` degrees in the yaw-first
    convention: ``R = Ry(-yaw) @ Rx(-pitch) @ Rz(-roll)`` (the inverse of
    :func:`angles_yaw_first`).

    Args:
        pose: ``[yaw, pitch, roll]`` degrees (a sequence of 3 floats).

    Returns:
        (3, 3) float64 rotation matrix.
    """
    yaw, pitch, roll = (float(a) for a in pose[:3])
    return _ry(-yaw) @ _rx(-pitch) @ _rz(-roll)


def angles_aflw2000(R: np.ndarray) -> np.ndarray:
    """``[yaw, pitch, roll]`` in degrees from the model-to-camera rotation ``R`` in
    **AFLW2000-3D's** convention (``"aflw2000"``): the signs and order of the benchmark's
    ``Pose_Para``, which ``facealign evaluate`` compares with (checked on the benchmark).
    Frames and signs as in :func:`angles_yaw_first`.

    ``R = Rx(-pitch) @ Ry(-yaw) @ Rz(-roll)`` (equivalently ``R.T = Rz(roll) @ Ry(yaw) @
    Rx(pitch)``): pitch about the camera's left-right axis comes last, so it is the middle
    angle, yaw, whose ±90 is singular. Solved from the entries of ``R``::

        yaw   = -asin(R[0, 2])
        pitch = atan2(R[1, 2], R[2, 2])
        roll  = atan2(R[0, 1], R[0, 0])

    Ranges: yaw [-90, 90], pitch and roll (-180, 180]. Singular at |yaw| = 90, i.e. on
    profile faces: there pitch and roll turn about the same axis (roll is reported 0); near
    it a plain profile can read e.g. ``(86, 85, 85)``, large pitch and roll that describe
    the same rotation as ``(90, 4, 0)`` yaw-first. Use it to compare with AFLW2000-3D
    (``facealign evaluate``), not to read head angles.

    Args:
        R: (3, 3) rotation matrix.

    Returns:
        (3,) float64 ``[yaw, pitch, roll]`` degrees; :func:`rotation_aflw2000` composes them
        back into ``R``.
    """
    R = np.asarray(R, dtype=np.float64)
    yaw = -math.asin(float(np.clip(R[0, 2], -1.0, 1.0)))
    if math.hypot(R[1, 2], R[2, 2]) > _GIMBAL_EPS:
        pitch = math.atan2(R[1, 2], R[2, 2])
        roll = math.atan2(R[0, 1], R[0, 0])
    else:  # |yaw| = 90: roll and pitch are not separable; report roll = 0
        pitch = math.atan2(-R[2, 1], R[1, 1])
        roll = 0.0
    return np.degrees(np.array([yaw, pitch, roll])) + 0.0


def rotation_aflw2000(pose) -> np.ndarray:
    """Model-to-camera rotation from ``[yaw, pitch, roll]`` degrees in AFLW2000-3D's
    convention: ``R = Rx(-pitch) @ Ry(-yaw) @ Rz(-roll)`` (the inverse of
    :func:`angles_aflw2000`).

    Args:
        pose: ``[yaw, pitch, roll]`` degrees (a sequence of 3 floats).

    Returns:
        (3, 3) float64 rotation matrix.
    """
    yaw, pitch, roll = (float(a) for a in pose[:3])
    return _rx(-pitch) @ _ry(-yaw) @ _rz(-roll)


#: The decomposition and the composition of each of :data:`POSE_CONVENTIONS`, in its order.
_DECOMPOSE = dict(zip(POSE_CONVENTIONS, (angles_yaw_first, angles_aflw2000)))
_COMPOSE = dict(zip(POSE_CONVENTIONS, (rotation_yaw_first, rotation_aflw2000)))


def check_pose_convention(convention: str) -> str:
    """``convention`` if it names a pose convention (:data:`POSE_CONVENTIONS`).

    Raises:
        ValueError: it does not.
    """
    if convention not in _DECOMPOSE:
        raise ValueError(f"unknown pose convention {convention!r}; expected one of "
                         f"{POSE_CONVENTIONS}")
    return convention


def angles_from_rotation(R: np.ndarray,
                         convention: str = DEFAULT_POSE_CONVENTION) -> np.ndarray:
    """Yaw, pitch, roll in degrees from the model-to-camera rotation ``R`` (both frames x
    right, y up, z towards the viewer) in one of :data:`POSE_CONVENTIONS`.

    * ``"yaw-first"`` (default): ``R = Ry(-yaw) @ Rx(-pitch) @ Rz(-roll)``, singular only at
      |pitch| = 90 (:func:`angles_yaw_first`);
    * ``"aflw2000"``: ``R = Rx(-pitch) @ Ry(-yaw) @ Rz(-roll)``, AFLW2000-3D's ``Pose_Para``,
      singular at |yaw| = 90 (:func:`angles_aflw2000`).

    Signs, the same in both: **yaw** positive when the face turns towards the image's left
    (the subject turns to their right); **pitch** positive when the face looks up; **roll**
    positive when the head tilts clockwise as seen in the image (its top moves towards the
    image's right).

    Returns:
        (3,) float64 ``[yaw, pitch, roll]`` degrees.

    Raises:
        ValueError: unknown convention.
    """
    return _DECOMPOSE[check_pose_convention(convention)](R)


def rotation_from_pose(pose, convention: str = DEFAULT_POSE_CONVENTION) -> np.ndarray:
    """Model-to-camera rotation from ``[yaw, pitch, roll]`` degrees (``Face.pose``) in
    ``convention`` (:func:`rotation_yaw_first` or :func:`rotation_aflw2000`), the inverse of
    :func:`angles_from_rotation`; both frames x right, y up, z towards the viewer. The
    composition is exact even where the angles themselves are degenerate. Only for faces
    without a ``rotation`` (:func:`facealign_cli.core.face.face_rotation`): angles processed
    as angles (smoothed, averaged) near a convention's singular pose no longer describe the
    face's rotation.

    Args:
        pose: ``[yaw, pitch, roll]`` in degrees (a sequence of 3 floats).
        convention: one of :data:`POSE_CONVENTIONS`.

    Returns:
        (3, 3) float64 rotation matrix.

    Raises:
        ValueError: unknown convention.
    """
    return _COMPOSE[check_pose_convention(convention)](pose)


def pose_from_camera(params: np.ndarray, convention: str = "aflw2000") -> np.ndarray:
    """Head pose ``[yaw, pitch, roll]`` in degrees from 62 (or 12) 3DMM parameters.

    See :func:`rotation_from_camera` and :func:`angles_from_rotation`. The default convention
    is AFLW2000-3D's: this gives the benchmark's yaw (its |yaw| bins, e.g. the training's
    per-bin weights); pass ``convention="yaw-first"`` for head angles as the outputs give them.
    """
    return angles_from_rotation(rotation_from_camera(params), convention)
