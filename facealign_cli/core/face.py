"""The one result type that flows from the model core to every writer.

Coordinate frame of every array here: **image pixels** of the (EXIF-corrected) input image,
x to the right, y down, origin at the top-left corner of the top-left pixel's centre (pixel
(0, 0) has its centre at (0, 0)). 3D points add z, in the same pixel units, pointing *away
from the camera* (into the scene), so (x, y, z) is a right-handed frame like OpenCV's camera
frame; z = 0 is the mean depth of the 68 landmarks of that face (smaller z = nearer the viewer,
e.g. the nose tip has negative z on a frontal face).

Pose angles are in degrees; see :func:`facealign_cli.core.geometry.pose_from_camera` for the
convention (yaw positive when the face turns towards the image's left, i.e. the subject turns
to their right; pitch positive when the face looks up; roll positive when the face tilts
clockwise as seen in the image).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


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
        pose: (3,) float32 ``[yaw, pitch, roll]`` in degrees.
        vertices: (N, 3) float32 dense vertices of the face region in the same frame as
            ``landmarks_3d`` (N = the face model's vertex count), or ``None`` if not requested.
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

    @property
    def landmarks_2d(self) -> np.ndarray | None:
        """(68, 2) float32 landmark positions (x, y) in image pixels, or ``None``."""
        if self.landmarks_3d is None:
            return None
        return self.landmarks_3d[:, :2]

    def to_dict(self, *, with_landmarks: bool = True) -> dict[str, Any]:
        """Plain-JSON view (lists of floats rounded to 0.01 px / 0.01 degree).

        The keys are ``box``, ``score``, ``keypoints``, ``roi_box`` and, when the face was
        regressed and ``with_landmarks`` is true, ``landmarks_2d``, ``landmarks_3d`` and
        ``pose`` (a dict with ``yaw``, ``pitch``, ``roll``). Dense vertices are never included.
        """

        def r(a: np.ndarray | None, nd: int = 2):
            return None if a is None else np.round(np.asarray(a, dtype=np.float64), nd).tolist()

        out: dict[str, Any] = {
            "box": r(self.box),
            "score": round(float(self.score), 4),
            "keypoints": r(self.keypoints),
            "roi_box": r(self.roi_box),
        }
        if with_landmarks and self.landmarks_3d is not None:
            out["landmarks_2d"] = r(self.landmarks_2d)
            out["landmarks_3d"] = r(self.landmarks_3d)
        if with_landmarks and self.pose is not None:
            yaw, pitch, roll = (round(float(v), 2) for v in self.pose)
            out["pose"] = {"yaw": yaw, "pitch": pitch, "roll": roll}
        return out
