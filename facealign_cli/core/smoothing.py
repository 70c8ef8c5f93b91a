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
* **One speed per face** (``speed="affine"``, the default): the speed that sets the cutoff
  is the RMS over the points of the best affine velocity field (least squares of the
  ``d_cutoff``-filtered velocities on the current positions: the face's translation, rotation,
  zoom and shear speed). Per-point noise mostly falls out of the fit, so the cutoff stays low
  on a still face; every point (and the dense vertices) then shares one smoothing factor per
  frame, which keeps the face's shape rigid under smoothing. ``speed="shared"`` (norm of the
  mean velocity plus the RMS of the rest), ``"point"`` (norm per point) and ``"element"`` (the
  paper's scalar filter on every coordinate) are available.

Defaults (:data:`LANDMARK_DEFAULTS`: min_cutoff 0.3 Hz, beta 128 per face size per second,
d_cutoff 0.25 Hz, affine speed) were chosen by a grid search on **training photos only**, the
300-W HELEN training crops (``data/300w-train/helen``; no AFLW2000-3D image or annotation was
used: that is the test set), with the two synthetic videos of ``facealign evaluate stability``
(its synthesis and metrics, 30 jitter and 45 moving frames at 30 fps, seed 0, only the
detection matched to the crop's annotated face; the annotations select faces, never compared
with). 96 of the 870 crops drawn with ``numpy.random.default_rng(0).permutation``: the first
48 as they are (faces about 120 px), the next 48 downscaled x0.5 (faces about 60 px). Grid:
min_cutoff {0.3, 0.5, 1.0} x beta {32, 64, 128, 256}. Rule: at least halve the jitter and
raise the moving-face error by at most 10 % in both conditions, then the lowest jitter. Only
beta 128 meets it (every min_cutoff); min_cutoff 0.3 gives

* large faces: jitter x0.44 (0.47 % -> 0.21 % of the face size), moving-face error +8 %
  (0.74 % -> 0.80 %);
* small faces: jitter x0.46 (0.60 % -> 0.27 %), moving-face error +3 % (0.93 % -> 0.96 %).

min_cutoff barely matters at this beta (0.5 Hz: x0.44 / +8 % and x0.47 / +3 %). A lower beta
smooths more but lags more: beta 64 gives x0.38 / +24 % and x0.40 / +12 %; beta 256 lags
little (+2 % / +0 %) but does not halve the jitter (x0.51 / x0.54). On small, noisy faces the
noise itself reads as speed and raises the cutoff: the One-Euro filter then smooths less, by
design. The figures on the AFW photos that ``facealign evaluate stability`` reports (a set not
used for tuning) are in the README.

:data:`POSE_DEFAULTS` were not tuned: chosen by analogy (a head turning 10 degrees per second
raises the cutoff to about 10 Hz).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

SPEED_MODES = ("shared", "affine", "point", "element")


@dataclass(frozen=True)
class OneEuroParams:
    """Settings of one :class:`OneEuroFilter`.

    Attributes:
        min_cutoff: cutoff frequency at rest, Hz (lower = smoother, more lag when slow).
        beta: cutoff increase per unit of speed, Hz per (scale unit / s): with the landmark
            smoother, per face size per second (higher = less lag when fast).
        d_cutoff: cutoff of the speed estimate, Hz.
        speed: how the speed is measured, one of :data:`SPEED_MODES`.
    """

    min_cutoff: float = 1.0
    beta: float = 0.0
    d_cutoff: float = 1.0
    speed: str = "affine"


#: Landmarks (and dense vertices), speed in face sizes per second.
LANDMARK_DEFAULTS = OneEuroParams(min_cutoff=0.3, beta=128.0, d_cutoff=0.25, speed="affine")
#: Head pose ``[yaw, pitch, roll]`` in degrees, speed in degrees per second.
POSE_DEFAULTS = OneEuroParams(min_cutoff=0.5, beta=1.0, d_cutoff=0.25, speed="shared")


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
        if p.min_cutoff <= 0 or p.d_cutoff <= 0 or p.beta < 0:
            raise ValueError(f"need min_cutoff > 0, d_cutoff > 0, beta >= 0: {p}")
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
            elif p.speed == "affine" and len(pts) > pts.shape[1] + 1:
                pos = self.x_hat.reshape(pts.shape)
                design = np.hstack([pos - pos.mean(axis=0), np.ones((len(pos), 1))])
                coef = np.linalg.lstsq(design, pts, rcond=None)[0]
                speed = float(np.sqrt(np.mean(np.sum((design @ coef) ** 2, axis=-1))))
            else:
                mean = pts.mean(axis=0)
                rest = np.sqrt(np.mean(np.sum((pts - mean) ** 2, axis=-1)))
                speed = float(np.linalg.norm(mean) + rest)
        alpha = smoothing_factor(p.min_cutoff + p.beta * speed, dt)
        self.x_hat = self.x_hat + alpha * (x - self.x_hat)
        self.t_prev = float(t)
        self.last_alpha = alpha
        return self.x_hat.copy()


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
        landmarks: :class:`OneEuroParams` of the landmarks (speed in face sizes per second).
        pose: :class:`OneEuroParams` of ``[yaw, pitch, roll]`` (speed in degrees per second),
            or ``None`` to leave the pose as estimated.

    :meth:`apply` smooths, in place, the faces of one frame; each face must carry its track id
    in ``face.extra["track"]`` (:class:`facealign_cli.core.tracking.FaceTracker` sets it).
    Faces without a track are left as they are. The unsmoothed values are kept in
    ``face.extra["raw_landmarks_3d"]`` and ``face.extra["raw_pose"]``.

    What is smoothed: ``landmarks_3d`` (68, 3) float32 image pixels; with
    ``speed="affine"`` or ``"shared"`` the dense ``vertices`` (N, 3) get the same smoothing factor
    as the landmarks of that frame (a vertex array whose size changes restarts its filter);
    ``pose`` (3,) degrees, unwrapped across +-180, and the (3, 3) ``rotation`` (when the face
    has one) blended with the pose's smoothing factor and projected back onto the rotations.
    ``params``, ``box`` and ``roi_box`` are left as estimated (the tracker uses the raw
    values); the raw rotation is in ``face.extra["raw_rotation"]``.
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
            track = (f.extra or {}).get("track")
            if track is None or f.landmarks_3d is None:
                continue
            st = self._state.setdefault(track, {
                "lm": OneEuroFilter(self.lm_params), "v": None,
                "pose": OneEuroFilter(self.pose_params) if self.pose_params else None})
            lm = np.asarray(f.landmarks_3d, dtype=np.float64)
            w, h = np.ptp(lm[:, 0]), np.ptp(lm[:, 1])
            scale = max(math.sqrt(max(w * h, 0.0)), 1.0)
            f.extra["raw_landmarks_3d"] = f.landmarks_3d
            new = st["lm"](lm, t, scale)
            f.landmarks_3d = new.astype(np.float32)
            if f.vertices is not None:
                v = np.asarray(f.vertices, dtype=np.float64)
                a = st["lm"].last_alpha
                if (st["v"] is None or st["v"].shape != v.shape or np.ndim(a) != 0
                        or a == 1.0):
                    st["v"] = v.copy()
                else:
                    st["v"] = st["v"] + float(a) * (v - st["v"])
                f.vertices = st["v"].astype(np.float32)
            if st["pose"] is not None and f.pose is not None:
                raw = np.asarray(f.pose, dtype=np.float64)
                f.extra["raw_pose"] = f.pose
                prev = st["pose"].x_hat
                x = raw if prev is None else _unwrap_deg(raw, prev)
                f.pose = _wrap_deg(st["pose"](x, t)).astype(np.float32)
                rot = getattr(f, "rotation", None)
                if rot is not None:
                    st["rot"] = _smooth_rotation(st.get("rot"), np.asarray(rot, np.float64),
                                                 st["pose"].last_alpha)
                    f.extra["raw_rotation"] = rot
                    f.rotation = st["rot"].copy()
        return faces
