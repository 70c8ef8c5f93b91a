"""Head-pose figures of the stability benchmark (:mod:`facealign_cli.evaluation.stability`).

Each frame of a synthetic video is the photo warped by a known similarity whose in-plane angle
``theta`` (degrees; :func:`~facealign_cli.evaluation.stability.similarity_matrix`: positive
turns the content clockwise on screen) tilts every head of the photo by ``theta`` clockwise.
A positive roll is a clockwise tilt (:func:`facealign_cli.core.geometry.angles_from_rotation`),
so the pose of a frame is mapped back to the photo by ``roll - theta``; yaw and pitch are
unchanged by an in-plane rotation (to first order). Scale and shift leave the angles as they
are.

* **Pose jitter** (jitter video): mean over the frames and the three angles of the absolute
  deviation of the mapped-back ``[yaw, pitch, roll]`` from their per-track mean, degrees. *Raw*
  is the pipeline's pose; *smoothed* runs the pose filter of ``--smooth`` (a
  :class:`~facealign_cli.core.smoothing.OneEuroFilter` with its settings, angles unwrapped as
  :class:`~facealign_cli.core.smoothing.FaceSmoother` does, time stamps ``i / fps``) on the
  mapped-back sequence, as the landmark jitter does with the landmark smoother.
* **Pose error** (moving video): mean over the frames and the three angles of the absolute
  difference (wrapped to +-180) of the mapped-back pose to the pipeline's pose of the face on
  the still photo, degrees; raw and smoothed (the smoother inside the pipeline, as for the
  landmarks). Its rise is what the pose smoothing costs in lag.
"""

from __future__ import annotations

import math

import numpy as np

from facealign_cli.core.smoothing import OneEuroFilter, OneEuroParams

#: Keys of the pose figures in :class:`~facealign_cli.evaluation.stability.PhotoResult`.
POSE_FIELDS = ("pose_jitter_raw", "pose_jitter_smoothed", "pose_error_raw",
               "pose_error_smoothed")


def _wrap(x):
    return (np.asarray(x, dtype=np.float64) + 180.0) % 360.0 - 180.0


def rotation_deg(m: np.ndarray) -> float:
    """In-plane angle (degrees) of a (2, 3) similarity of
    :func:`~facealign_cli.evaluation.stability.similarity_matrix`."""
    return math.degrees(math.atan2(float(m[1, 0]), float(m[0, 0])))


def pose_back(pose, m: np.ndarray) -> np.ndarray:
    """A frame's ``[yaw, pitch, roll]`` (degrees) mapped back to the photo through the frame's
    similarity ``m``: ``roll - theta`` (wrapped to +-180), yaw and pitch as they are."""
    p = np.asarray(pose, dtype=np.float64)[:3].copy()
    p[2] = float(_wrap(p[2] - rotation_deg(m)))
    return p


def _unwrapped(seq: np.ndarray) -> np.ndarray:
    """(T, 3) angles, each row shifted by multiples of 360 to lie within 180 of the first."""
    seq = np.asarray(seq, dtype=np.float64)
    return seq[0] + _wrap(seq - seq[0])


def pose_jitter(seq: np.ndarray) -> float:
    """Mean absolute deviation (degrees) of (T, 3) angles from their mean over the frames."""
    s = _unwrapped(seq)
    return float(np.abs(s - s.mean(axis=0)).mean())


def pose_error(seq: np.ndarray, ref) -> float:
    """Mean absolute difference (degrees, wrapped) of (T, 3) angles to (3,) reference angles."""
    return float(np.abs(_wrap(np.asarray(seq, np.float64) - np.asarray(ref, np.float64))).mean())


def smooth_pose_sequence(seq: np.ndarray, times: np.ndarray, params: OneEuroParams
                         ) -> np.ndarray:
    """The pose filter of ``--smooth`` run over (T, 3) angles (degrees) at ``times`` (s): each
    sample unwrapped to the last smoothed value, as
    :class:`~facealign_cli.core.smoothing.FaceSmoother` does; the output is wrapped."""
    f = OneEuroFilter(params)
    out = []
    for x, t in zip(np.asarray(seq, np.float64), times):
        if f.x_hat is not None:
            x = f.x_hat + _wrap(x - f.x_hat)
        out.append(_wrap(f(x, float(t))))
    return np.stack(out)


def pose_figures(kind: str, d: dict | None, ref_pose, fps: float,
                 params: OneEuroParams | None) -> dict:
    """The pose figures of one photo face in one video (NaN where missing).

    Args:
        kind: ``"jitter"`` or ``"moving"``.
        d: the face's track of :func:`~facealign_cli.evaluation.stability.run_video` (with
            ``"pose_raw"``, ``"pose_smoothed"``: (T, 3) mapped-back angles or ``None``), or
            ``None`` when the face was not tracked.
        ref_pose: the face's pose on the still photo, or ``None``.
        fps: frame rate (time stamps ``frames / fps``).
        params: settings of the pose filter (jitter video), ``None`` for no smoothing.
    """
    nan = float("nan")
    raw = None if d is None else d.get("pose_raw")
    if kind == "jitter":
        if raw is None:
            return {"pose_jitter_raw": nan, "pose_jitter_smoothed": nan}
        sm = None if params is None else smooth_pose_sequence(raw, d["frames"] / fps, params)
        return {"pose_jitter_raw": pose_jitter(raw),
                "pose_jitter_smoothed": nan if sm is None else pose_jitter(sm)}
    if raw is None or ref_pose is None:
        return {"pose_error_raw": nan, "pose_error_smoothed": nan}
    sm = d.get("pose_smoothed")
    return {"pose_error_raw": pose_error(raw, ref_pose),
            "pose_error_smoothed": nan if sm is None else pose_error(sm, ref_pose)}


def pose_table(doc: dict):
    """The pose table (:class:`facealign_cli.evaluation.reports.Table`) of a ``facealign
    evaluate stability`` document, or ``None`` when it holds no pose figures (older runs)."""
    from facealign_cli.evaluation.reports import Table

    res, methods = doc["results"], doc["methods"]
    if not any("pose_jitter" in res[k] for k in methods):
        return None

    def f(x, nd=3):
        return "-" if x is None or not math.isfinite(x) else f"{x:.{nd}f}"

    def pct(x):
        return "-" if x is None or not math.isfinite(x) else f"{100 * (x - 1):+.0f}%"

    rows = []
    for k, m in methods.items():
        r = res[k]
        j, e = r.get("pose_jitter", {}), r.get("pose_error", {})
        rows.append([m.get("label", k), f(j.get("raw")), f(j.get("smoothed")),
                     pct(j.get("ratio")), f(e.get("raw")), f(e.get("smoothed")),
                     pct(e.get("ratio"))])
    sp = doc["settings"].get("smoothing_pose") or {}
    note = ("pose smoothing: One-Euro on [yaw, pitch, roll], min_cutoff "
            f"{sp.get('min_cutoff', float('nan')):g} Hz, beta {sp.get('beta', float('nan')):g} "
            f"per deg/s, d_cutoff {sp.get('d_cutoff', float('nan')):g} Hz, dead zone "
            f"{sp.get('dead_zone', 0.0):g} deg/s." if sp else "pose smoothing: none.")
    return Table("Head-pose stability (degrees; lower is better)",
                 ["Method", "Pose jitter raw", "smoothed", "Δ", "Moving-face pose error raw",
                  "smoothed", "Δ (lag cost)"], rows,
                 ["pose mapped back to the photo: roll - θ (θ the frame's in-plane rotation, "
                  "clockwise positive), yaw and pitch unchanged; jitter = mean absolute "
                  "deviation from the per-track mean; error = mean absolute difference to the "
                  "pose on the still photo; both averaged over yaw, pitch and roll.", note])
