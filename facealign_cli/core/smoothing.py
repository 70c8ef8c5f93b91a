"""Temporal smoothing of per-face outputs: the One-Euro filter (pure numpy, with time stamps).

Source: G. Casiez, N. Roussel, D. Vogel, "1€ Filter: A Simple Speed-based Low-pass Filter for
Noisy Input in Interactive Systems", CHI 2012. For a signal ``x`` sampled at times ``t``::

    dt      = t - t_prev                                  (seconds)
    a(fc)   = 1 / (1 + tau / dt),   tau = 1 / (2 pi fc)    (smoothing factor of a cutoff fc, Hz)
    dx      = (x - x_hat_prev) / dt                       (speed)
    dx_hat  = dx_hat_prev + a(d_cutoff) * (dx - dx_hat_prev)
    fc      = min_cutoff + beta * |dx_hat|
    x_hat   = x_hat_prev + a(fc) * (x - x_hat_prev)

Slow motion gets a low cutoff (little jitter), fast motion a high cutoff (little lag).

facealign's variant (documented choices, all options of :class:`OneEuroFilter`):

* **Speed in face sizes per second**: ``|dx_hat|`` is divided by a ``scale`` given with each
  sample (:class:`FaceSmoother` passes sqrt(w * h) of the face's 68-landmark box in pixels), so
  one ``beta`` suits small and large faces alike.
* **Dead zone** (``dead_zone``, face sizes per second): ``fc = min_cutoff + beta *
  max(|dx_hat| - dead_zone, 0)``. On a still face the pipeline's own noise reads as speed
  (about 0.03-0.1 face sizes per second here) and, in the paper's filter, keeps the cutoff
  well above ``min_cutoff``; below the dead zone it stays there. Because ``dx`` is measured
  against the smoothed value, the lag itself counts as speed: on a steady ramp the lag grows
  only until the speed estimate leaves the dead zone, about ``dead_zone / frame rate`` face
  sizes (measured by ``scripts/tune_smoothing.py``'s ramp check: at most 0.77 % of the face
  size at 30 fps for the defaults, 0.01 to 2 face sizes per second). At lower frame rates
  (``--frame-step``, ``--max-fps``) that bound grows in proportion.
* **Rigid motion and shape apart** (:class:`LandmarkSmoother`, used for the landmarks): the
  points are split into a 2D similarity (centroid, RMS size, in-plane angle) and a shape, each
  with its own One-Euro filter and the same settings, so that a face moving without changing
  shape raises only the rigid filter's cutoff, and an expression only the shape's. Dense
  vertices follow the landmarks' similarity and shape factor.
* **One speed per signal** (``speed="shared"``: the norm of the mean velocity plus the RMS of
  the rest), so every point of a face shares one smoothing factor per frame. ``"point"``
  (norm per point) and ``"element"`` (the paper's scalar filter on every coordinate) are
  available to :class:`OneEuroFilter`.

Defaults (:data:`LANDMARK_DEFAULTS`: min_cutoff 0.1 Hz, beta 256 per face size per second,
d_cutoff 1 Hz, dead zone 0.24 face sizes per second) were chosen by a grid search
(``scripts/tune_smoothing.py``) on **training photos only**, the 300-W HELEN training crops
(``data/300w-train/helen``; no AFLW2000-3D image or annotation was used: that is the test
set; nor the AFW photos, the reporting set), with the two synthetic videos of ``facealign
evaluate stability`` (its synthesis and metrics, 30 jitter and 45 moving frames at 30 fps,
seed 0, only the detection matched to the crop's annotated face). Three conditions of 48
crops: as they are (faces about 120 px), downscaled x0.5 (about 60 px), and the 48 most
turned faces of the rest. Grid: min_cutoff {0.1, 0.3, 0.5, 1} x beta {64, 128, 256} x
d_cutoff {0.5, 1} x dead zone {0, 0.04, 0.08, 0.12, 0.16, 0.24, 0.32}. Rule: in every
condition at least halve the jitter and raise the moving-face error by at most 10 %, a ramp
lag of at most 1 % of the face size; then the lowest mean jitter ratio (ties within 0.005:
the lowest moving-face error). The defaults give jitter x0.12 / x0.17 / x0.12 and moving-face
error +3.8 % / +2.7 % / +4.1 % (large / small / turned). Without a dead zone the best
passing setting (min_cutoff 0.1, beta 64, d_cutoff 0.5) gives x0.41 / x0.43 / x0.41 and
+8.6 % / +3.3 % / +7.7 %; the previous defaults (min_cutoff 0.3, beta 128, d_cutoff 0.25, no
dead zone, one affine speed, no rigid/shape split) gave x0.44 / +8 % and x0.46 / +3 % (large /
small). The figures on the AFW photos are in the README.

:data:`POSE_DEFAULTS` (``[yaw, pitch, roll]``, speed in degrees per second: min_cutoff 1 Hz,
beta 0.3 per degree per second, d_cutoff 1 Hz, dead zone 10 degrees per second) were chosen
on the same recordings with ``scripts/tune_smoothing.py --pose`` (the landmarks at their
defaults), by the pose figures of ``facealign evaluate stability``
(:mod:`facealign_cli.evaluation.stability_pose`: pose jitter on the jitter video, roll mapped
back as roll minus the frame's in-plane rotation; pose error on the moving video against the
pose on the still photo; degrees, mean over the three angles). Grid: min_cutoff {0.05, 0.1,
0.3, 0.5, 1, 2} x beta {0.1, 0.3, 0.5, 1} x d_cutoff {0.25, 0.5, 1} x dead zone {0, 2, 5, 10,
20}. Rule: in every condition at least halve the pose jitter and raise the pose error by at
most 10 %, a lag of at most 2 degrees on noise-free turns from rest (1 to 90 degrees per
second, 2 s); then the lowest mean jitter ratio. Raw pose jitter 0.43 / 0.41 / 0.62 degrees
(large / small / turned), smoothed x0.40 / x0.36 / x0.48; pose error 0.75 / 0.74 / 1.22
degrees, smoothed -1.6 % / -1.6 % / -0.7 % (the moving video turns the head by at most 10
degrees per second, slow enough that smoothing removes more noise than it adds lag); turn lag
at most 1.92 degrees (1.26 at 30 degrees per second). 7 of the 360 settings pass; the
lag bound is what limits: without it the rule picks min_cutoff 0.3, beta 0.3, d_cutoff 0.5,
dead zone 20 (x0.27 / x0.24 / x0.33, +9.3 % / +7.5 % / +3.4 %) which lags 4.4 degrees on a
90 degrees per second turn, and with a 1 degree bound none passes. The previous, untuned
settings (min_cutoff 0.5, beta 1, d_cutoff 0.25, no dead zone) gave x0.50 / x0.48 / x0.56 and
-3.2 % / -2.4 % / -0.6 %, lag 1.47 degrees.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

SPEED_MODES = ("shared", "point", "element")


@dataclass(frozen=True)
class OneEuroParams:
    """Settings of one :class:`OneEuroFilter`.

    Attributes:
        min_cutoff: cutoff frequency at rest, Hz (lower = smoother, more lag when slow).
        beta: cutoff increase per unit of speed, Hz per (scale unit / s): with the landmark
            smoother, per face size per second (higher = less lag when fast).
        d_cutoff: cutoff of the speed estimate, Hz.
        speed: how the speed is measured, one of :data:`SPEED_MODES`.
        dead_zone: speed (same unit as for ``beta``) below which the cutoff stays at
            ``min_cutoff``: the cutoff is ``min_cutoff + beta * max(speed - dead_zone, 0)``
            (0 = the paper's filter).
    """

    min_cutoff: float = 1.0
    beta: float = 0.0
    d_cutoff: float = 1.0
    speed: str = "shared"
    dead_zone: float = 0.0


#: Landmarks (and dense vertices), speed in face sizes per second.
LANDMARK_DEFAULTS = OneEuroParams(min_cutoff=0.1, beta=256.0, d_cutoff=1.0, speed="shared",
                                  dead_zone=0.24)
#: Head pose ``[yaw, pitch, roll]`` in degrees, speed in degrees per second.
POSE_DEFAULTS = OneEuroParams(min_cutoff=1.0, beta=0.3, d_cutoff=1.0, speed="shared",
                              dead_zone=10.0)


def smoothing_factor(cutoff, dt: float):
    """``a = 1 / (1 + tau / dt)`` with ``tau = 1 / (2 pi cutoff)``; cutoff in Hz (scalar or
    array), ``dt`` in seconds (> 0)."""
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff, dtype=np.float64))
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """A One-Euro filter over an array signal (one instance per signal, e.g. per face track).

    Args:
        params: :class:`OneEuroParams` (or give the fields as keywords).
        **kw: override fields of ``params``.

    Call it with each new sample in time order: ``x_hat = f(x, t, scale)``.
    """

    def __init__(self, params: OneEuroParams | None = None, **kw):
        p = params or OneEuroParams()
        if kw:
            p = OneEuroParams(**{**p.__dict__, **kw})
        if p.speed not in SPEED_MODES:
            raise ValueError(f"speed must be one of {SPEED_MODES}, got {p.speed!r}")
        if p.min_cutoff <= 0 or p.d_cutoff <= 0 or p.beta < 0 or p.dead_zone < 0:
            raise ValueError(f"need min_cutoff > 0, d_cutoff > 0, beta >= 0, dead_zone >= 0: {p}")
        self.params = p
        self.reset()

    def reset(self) -> None:
        """Forget the past (the next sample is passed through unchanged)."""
        self.x_hat: np.ndarray | None = None
        self.dx_hat: np.ndarray | None = None
        self.t_prev: float | None = None
        self.last_alpha: np.ndarray | float | None = None

    def __call__(self, x: np.ndarray, t: float, scale: float = 1.0) -> np.ndarray:
        """Filter one sample.

        Args:
            x: (..., D) float array, the signal (e.g. (68, 3) landmarks in pixels, (3,) pose in
                degrees); the same shape at every call. ``speed`` other than ``"element"`` reads
                the last axis as the coordinates of a point.
            t: its time stamp in seconds (strictly increasing; a sample whose ``dt <= 0`` is
                taken as a restart of the filter at ``x``).
            scale: speed unit in units of ``x`` (e.g. the face size in pixels; > 0).

        Returns:
            The filtered sample, float64, shape of ``x`` (the first sample is returned as is).
        """
        x = np.asarray(x, dtype=np.float64)
        p = self.params
        if (self.x_hat is None or self.t_prev is None or t - self.t_prev <= 0
                or self.x_hat.shape != x.shape):
            self.x_hat, self.dx_hat, self.t_prev = x.copy(), np.zeros_like(x), float(t)
            self.last_alpha = 1.0
            return x.copy()
        dt = float(t - self.t_prev)
        dx = (x - self.x_hat) / dt
        self.dx_hat = self.dx_hat + smoothing_factor(p.d_cutoff, dt) * (dx - self.dx_hat)
        v = self.dx_hat / max(float(scale), 1e-12)
        if p.speed == "element":
            speed = np.abs(v)
        else:
            pts = v.reshape(-1, v.shape[-1]) if v.ndim else v.reshape(1, 1)
            if p.speed == "point":
                speed = np.linalg.norm(pts, axis=-1).reshape(v.shape[:-1] + (1,))
            else:
                mean = pts.mean(axis=0)
                rest = np.sqrt(np.mean(np.sum((pts - mean) ** 2, axis=-1)))
                speed = float(np.linalg.norm(mean) + rest)
        alpha = smoothing_factor(
            p.min_cutoff + p.beta * np.maximum(speed - p.dead_zone, 0.0), dt)
        self.x_hat = self.x_hat + alpha * (x - self.x_hat)
        self.t_prev = float(t)
        self.last_alpha = alpha
        return self.x_hat.copy()


def _rotate_xy(points: np.ndarray, theta: float) -> np.ndarray:
    """(N, D) points with their x, y turned by ``theta`` radians (x right, y down: a positive
    angle turns clockwise on screen); other coordinates unchanged."""
    c, s = math.cos(theta), math.sin(theta)
    out = points.copy()
    out[:, 0] = c * points[:, 0] - s * points[:, 1]
    out[:, 1] = s * points[:, 0] + c * points[:, 1]
    return out


class LandmarkSmoother:
    """One-Euro smoothing of one face's points split into **rigid motion** and **shape**.

    Each sample ``x`` (N, D) (D = 2 or 3; image pixels, x right, y down) is written as a 2D
    similarity of a shape, ``x = s R(theta) shape + c``: ``c`` (D,) the centroid, ``s`` the RMS
    distance of the points to it in x, y (pixels), ``theta`` (radians) the in-plane angle that
    best aligns (least squares, Procrustes) the centred points to the previous smoothed shape
    (0 on the first sample), and ``shape`` (N, D) the centred points turned back by ``theta``
    and divided by ``s`` (z is divided by ``s`` but not turned: the rotation is about the
    image's z axis). Two :class:`OneEuroFilter` run side by side (both ``speed="shared"``, so
    each has one smoothing factor per frame, speed in units of ``scale``):

    * ``rigid`` on ``[c, r0 ln s, r0 theta]`` (D + 2 numbers, all in pixels: ``r0`` is ``s`` of
      the first sample, so a zoom or turn counts as the pixel motion of the points at the RMS
      radius);
    * ``shape`` on ``r0 * shape`` (N, D) pixels.

    A face that moves without changing shape (translation, zoom, in-plane turn) raises the
    cutoff of the rigid filter only; its shape noise stays as smoothed as on a still face. A
    change of the shape itself (an expression, a turn out of the image plane) raises the
    shape filter's cutoff. The recomposed output is ``s_hat R(theta_hat) shape_hat + c_hat``.

    Args:
        rigid: :class:`OneEuroParams` of the rigid motion (its ``speed`` is not used).
        shape: :class:`OneEuroParams` of the shape, or ``None`` for the same as ``rigid``.
    """

    def __init__(self, rigid: OneEuroParams, shape: OneEuroParams | None = None):
        self.rigid = OneEuroFilter(rigid, speed="shared")
        self.shape = OneEuroFilter(shape or rigid, speed="shared")
        self.reset()

    def reset(self) -> None:
        """Forget the past (the next sample is passed through unchanged)."""
        self.rigid.reset()
        self.shape.reset()
        self._ref: np.ndarray | None = None
        self._r0 = 1.0
        #: the last sample's raw and smoothed similarity ``(c, s, theta)`` and the shape
        #: filter's factor (used to smooth other points of the face, e.g. dense vertices).
        self.raw_similarity: tuple | None = None
        self.similarity: tuple | None = None
        self.shape_alpha: float = 1.0

    def _decompose(self, x: np.ndarray) -> tuple[np.ndarray, float, float, np.ndarray]:
        c = x.mean(axis=0)
        q = x - c
        s = max(float(np.sqrt(np.mean(np.sum(q[:, :2] ** 2, axis=-1)))), 1e-9)
        theta = 0.0
        if self._ref is not None:
            r = self._ref
            theta = math.atan2(float(np.sum(r[:, 0] * q[:, 1] - r[:, 1] * q[:, 0])),
                               float(np.sum(r[:, 0] * q[:, 0] + r[:, 1] * q[:, 1])))
        return c, s, theta, _rotate_xy(q, -theta) / s

    def __call__(self, x: np.ndarray, t: float, scale: float = 1.0) -> np.ndarray:
        """Filter one sample.

        Args:
            x: (N, D) float array of points (pixels), N >= 2 and the same N, D at every call.
            t: time stamp in seconds (a sample with ``dt <= 0``, or of another shape, restarts
                both filters at ``x``).
            scale: speed unit in pixels (e.g. the face size), > 0.

        Returns:
            (N, D) float64, the smoothed points (the first sample as is).
        """
        x = np.asarray(x, dtype=np.float64)
        prev_t = self.rigid.t_prev
        if (prev_t is None or t - prev_t <= 0 or self.shape.x_hat is None
                or self.shape.x_hat.shape != x.shape):
            self.reset()
        first = self._ref is None
        c, s, theta, shape = self._decompose(x)
        if first:
            self._r0 = s
        r0 = self._r0
        if not first:  # keep theta continuous with the smoothed angle
            prev = self.rigid.x_hat[0, -1] / r0
            theta = prev + (theta - prev + math.pi) % (2 * math.pi) - math.pi
        rig = self.rigid(np.concatenate([c, [r0 * math.log(s), r0 * theta]])[None], t, scale)[0]
        shp = self.shape(r0 * shape, t, scale) / r0
        d = x.shape[1]
        c_hat, s_hat, th_hat = rig[:d], math.exp(rig[d] / r0), rig[d + 1] / r0
        self._ref = shp[:, :2].copy()
        self.raw_similarity = (c, s, theta)
        self.similarity = (c_hat, s_hat, th_hat)
        self.shape_alpha = float(np.asarray(self.shape.last_alpha))
        return _rotate_xy(shp, th_hat) * s_hat + c_hat

    def to_shape_frame(self, points: np.ndarray) -> np.ndarray:
        """Other points of the face (e.g. (N, 3) dense vertices, pixels) in the shape frame of
        the last sample (its raw similarity undone)."""
        c, s, theta = self.raw_similarity
        return _rotate_xy(np.asarray(points, np.float64) - c, -theta) / s

    def from_shape_frame(self, points: np.ndarray) -> np.ndarray:
        """Points of the shape frame mapped to pixels with the last smoothed similarity."""
        c, s, theta = self.similarity
        return _rotate_xy(np.asarray(points, np.float64), theta) * s + c


def _unwrap_deg(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """``x`` shifted by multiples of 360 to lie within 180 degrees of ``ref``."""
    return ref + (x - ref + 180.0) % 360.0 - 180.0


def _wrap_deg(x: np.ndarray) -> np.ndarray:
    return (x + 180.0) % 360.0 - 180.0


def _smooth_rotation(prev: np.ndarray | None, rot: np.ndarray, alpha) -> np.ndarray:
    """One smoothing step of a (3, 3) rotation with the pose filter's factor: the blend
    ``prev + a (rot - prev)`` projected back onto the rotations (SVD)."""
    if prev is None or np.ndim(alpha) != 0 or prev.shape != rot.shape:
        return rot.copy()
    m = prev + float(alpha) * (rot - prev)
    u, _, vt = np.linalg.svd(m)
    if np.linalg.det(u @ vt) < 0:
        u[:, -1] = -u[:, -1]
    return u @ vt


class FaceSmoother:
    """One-Euro filters per face track: landmarks (and dense vertices) and head pose.

    Args:
        landmarks: :class:`OneEuroParams` of the landmarks' rigid motion and shape (speed in
            face sizes per second; ``speed`` is not used).
        pose: :class:`OneEuroParams` of ``[yaw, pitch, roll]`` (speed in degrees per second),
            or ``None`` to leave the pose as estimated.

    :meth:`apply` smooths, in place, the faces of one frame; each face must carry its track id
    in ``face.track`` (:class:`facealign_cli.core.tracking.FaceTracker` sets it).
    Faces without a track are left as they are. The unsmoothed values are kept in
    ``face.raw_landmarks_3d`` and ``face.raw_pose``.

    What is smoothed: ``landmarks_3d`` (68, 3) float32 image pixels, by a
    :class:`LandmarkSmoother` (rigid motion and shape) per track; the dense ``vertices`` (N, 3)
    are taken into the landmarks' shape frame, blended there with the shape filter's factor
    and mapped back with the smoothed similarity, so vertices that are landmarks come out as
    the smoothed landmarks (a vertex array whose size changes restarts its blend);
    ``pose`` (3,) degrees, unwrapped across +-180, and the (3, 3) ``rotation`` (when the face
    has one) blended with the pose's smoothing factor and projected back onto the rotations.
    ``params``, ``box`` and ``roi_box`` are left as estimated (the tracker uses the raw
    values); the raw rotation is in ``face.raw_rotation``.
    """

    def __init__(self, landmarks: OneEuroParams | None = LANDMARK_DEFAULTS,
                 pose: OneEuroParams | None = POSE_DEFAULTS):
        self.lm_params = landmarks or LANDMARK_DEFAULTS
        self.pose_params = pose
        self._state: dict[int, dict] = {}

    def reset(self, track: int | None = None) -> None:
        """Forget one track (``None``: all)."""
        if track is None:
            self._state.clear()
        else:
            self._state.pop(track, None)

    def keep_only(self, tracks) -> None:
        """Drop the filters of tracks not in ``tracks`` (ended tracks)."""
        live = set(tracks)
        for k in [k for k in self._state if k not in live]:
            del self._state[k]

    def apply(self, faces, t: float):
        """Smooth the faces of the frame at time ``t`` (seconds), in place; returns ``faces``."""
        for f in faces:
            track = f.track
            if track is None or f.landmarks_3d is None:
                continue
            st = self._state.setdefault(track, {
                "lm": LandmarkSmoother(self.lm_params), "v": None,
                "pose": OneEuroFilter(self.pose_params) if self.pose_params else None})
            lm = np.asarray(f.landmarks_3d, dtype=np.float64)
            w, h = np.ptp(lm[:, 0]), np.ptp(lm[:, 1])
            scale = max(math.sqrt(max(w * h, 0.0)), 1.0)
            f.raw_landmarks_3d = f.landmarks_3d
            sm = st["lm"]
            new = sm(lm, t, scale)
            f.landmarks_3d = new.astype(np.float32)
            if f.vertices is not None:
                # the dense vertices in the landmarks' shape frame, with the shape factor
                v = sm.to_shape_frame(f.vertices)
                if st["v"] is None or st["v"].shape != v.shape or sm.shape_alpha == 1.0:
                    st["v"] = v
                else:
                    st["v"] = st["v"] + sm.shape_alpha * (v - st["v"])
                f.vertices = sm.from_shape_frame(st["v"]).astype(np.float32)
            if st["pose"] is not None and f.pose is not None:
                raw = np.asarray(f.pose, dtype=np.float64)
                f.raw_pose = f.pose
                prev = st["pose"].x_hat
                x = raw if prev is None else _unwrap_deg(raw, prev)
                f.pose = _wrap_deg(st["pose"](x, t)).astype(np.float32)
                rot = getattr(f, "rotation", None)
                if rot is not None:
                    st["rot"] = _smooth_rotation(st.get("rot"), np.asarray(rot, np.float64),
                                                 st["pose"].last_alpha)
                    f.raw_rotation = rot
                    f.rotation = st["rot"].copy()
        return faces
