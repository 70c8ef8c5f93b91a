"""Stability benchmark on synthetic videos made from still photos (``facealign evaluate
stability``).

After the short-video synthesis of 3DDFA-V2 (Guo et al., "Towards Fast, Accurate and Stable 3D
Dense Face Alignment", ECCV 2020, section 3.3), each photo becomes two synthetic videos whose
every frame is the photo warped by a **known** similarity ``x_frame = s R(theta) (x - c) + c +
(tx, ty)`` about the centre ``c`` of the faces the pipeline finds on the photo
(``cv2.warpAffine``, bilinear, black outside). The video pipeline
(:class:`facealign_cli.core.tracking.VideoAligner`: detector, tracking, fit) runs on the frames
in order, as on a video, and every face's 68 landmarks are mapped back to the photo through the
inverse of its frame's similarity. In the photo's frame a perfect method would give the same
landmarks on every frame.

1. **Jitter video** (:func:`random_similarities`): ``n`` frames, each an independent random
   similarity with the ranges of the seed paper: scale U(0.95, 1.05), rotation U(-3, 3) degrees,
   shift U(-5, 5) px on each axis (numpy ``default_rng(seed)``, the photo's position in the
   sorted list added to the seed). Per face track (matched to a face of the photo):

   * **jitter**: mean over frames and the 68 points of the distance of a point to its mean over
     the frames (the landmarks mapped back), in % of the face size (sqrt(w * h) of the face's
     68-point box on the photo);
   * **frame-to-frame motion**: mean distance of a point between consecutive frames, same unit.

   *Raw* is the pipeline's output. *Smoothed* runs the landmark smoother of ``--smooth``
   (:class:`facealign_cli.core.smoothing.LandmarkSmoother`, its settings, time stamps
   ``i / fps``) on the mapped-back sequence of each track: the independent random similarities
   are not camera motion (smoothing them in the frames would average unrelated jumps), so the
   mapped-back sequence is the honest model of a **still face seen by a jittery pipeline**, and
   the filter is applied to it as the tool applies it to a still face of a video.

2. **Moving face** (:func:`moving_trajectory`): ``m`` frames of a smooth known trajectory at
   ``fps`` frames per second: shift ``(A sin(w t), A/2 sin(2 w t))`` with ``A`` = 0.25 of the
   photo's median face size, rotation 5 sin(w t + 1) degrees, scale 1 + 0.05 sin(w t + 2),
   period 2 pi / w = 3 s (peak speed about half a face size per second, a calm head motion).
   Here the smoother runs **inside the pipeline**, on the frames (as ``--smooth`` does), and the
   raw and smoothed landmarks are both mapped back. **Moving-face error**: mean distance of the
   mapped-back landmarks to the pipeline's landmarks on the unwarped photo (its own reference,
   not an annotation: AFW's annotated faces are training faces), % of the face size; the rise of
   the smoothed error over the raw one is what smoothing costs in lag.

The photo's faces are the pipeline's detections on it, or, with annotations (``--annotations``),
only the detections matched to an annotated face (false detections excluded; the annotated
landmarks are never compared with). Tracking is checked on the way: the number of tracks per
photo face over each video (1.0 = every face kept its id).

The figures of a run come from :func:`run_stability` then :func:`summarise_stability`; the
tables from :func:`stability_tables`. All distances are in image pixels of the photo before the
division by the face size; times in seconds.
"""

from __future__ import annotations

import math
import time as _time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facealign_cli.core.boxes import box_iou
from facealign_cli.core.smoothing import (
    LANDMARK_DEFAULTS,
    POSE_DEFAULTS,
    LandmarkSmoother,
    OneEuroParams,
)
from facealign_cli.evaluation import stability_pose as P

#: Ranges of the random similarities of the jitter video (3DDFA-V2's short-video synthesis).
SCALE_RANGE = (0.95, 1.05)
ROTATION_DEG = 3.0
SHIFT_PX = 5.0
DEFAULT_FRAMES = 30
DEFAULT_MOVING_FRAMES = 45
DEFAULT_FPS = 30.0
DEFAULT_SEED = 0
#: Moving face: shift amplitude (x; y is half) in face sizes, rotation (deg), scale, period (s).
MOVING_SHIFT = 0.25
MOVING_ROTATION_DEG = 5.0
MOVING_SCALE = 0.05
MOVING_PERIOD_S = 3.0
#: A track is matched to the photo face whose 68-point box has the highest IoU (>= this) with
#: the box of the track's mean mapped-back landmarks.
MATCH_IOU = 0.5


def similarity_matrix(scale: float, rotation_deg: float, shift: tuple[float, float],
                      centre: tuple[float, float]) -> np.ndarray:
    """(2, 3) float64 affine matrix of ``x -> s R (x - c) + c + shift`` (image pixels, y down,
    a positive angle turns the content clockwise on screen, as ``cv2.getRotationMatrix2D`` with
    a negative angle)."""
    th = math.radians(rotation_deg)
    r = scale * np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
    c = np.asarray(centre, dtype=np.float64)
    return np.hstack([r, (c - r @ c + np.asarray(shift, dtype=np.float64))[:, None]])


def apply_affine(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Points (..., 2) mapped by a (2, 3) affine matrix."""
    p = np.asarray(points, dtype=np.float64)
    return p @ m[:, :2].T + m[:, 2]


def invert_affine(m: np.ndarray) -> np.ndarray:
    """Inverse of a (2, 3) affine matrix."""
    a = np.linalg.inv(m[:, :2])
    return np.hstack([a, (-a @ m[:, 2])[:, None]])


def random_similarities(n: int, centre, rng: np.random.Generator) -> np.ndarray:
    """(n, 2, 3) independent random similarities with :data:`SCALE_RANGE`,
    +-:data:`ROTATION_DEG` and +-:data:`SHIFT_PX` (uniform)."""
    s = rng.uniform(*SCALE_RANGE, n)
    r = rng.uniform(-ROTATION_DEG, ROTATION_DEG, n)
    t = rng.uniform(-SHIFT_PX, SHIFT_PX, (n, 2))
    return np.stack([similarity_matrix(s[i], r[i], t[i], centre) for i in range(n)])


def moving_trajectory(n: int, fps: float, face_size: float, centre) -> np.ndarray:
    """(n, 2, 3) similarities of the moving face at times ``i / fps`` (module docstring)."""
    w = 2 * math.pi / MOVING_PERIOD_S
    out = []
    for i in range(n):
        t = i / fps
        a = MOVING_SHIFT * face_size
        out.append(similarity_matrix(1 + MOVING_SCALE * math.sin(w * t + 2),
                                     MOVING_ROTATION_DEG * math.sin(w * t + 1),
                                     (a * math.sin(w * t), a / 2 * math.sin(2 * w * t)), centre))
    return np.stack(out)


def warp(photo: np.ndarray, m: np.ndarray) -> np.ndarray:
    """The frame: ``photo`` warped by ``m`` (same size, bilinear, black outside)."""
    import cv2

    h, w = photo.shape[:2]
    return cv2.warpAffine(photo, m, (w, h), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))


def _box(pts: np.ndarray) -> np.ndarray:
    return np.array([pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()])


def _size(pts: np.ndarray) -> float:
    b = _box(pts)
    return math.sqrt(max((b[2] - b[0]) * (b[3] - b[1]), 1e-12))


def jitter(seq: np.ndarray) -> float:
    """Mean distance of each point to its mean over the frames; ``seq`` (T, 68, 2)."""
    return float(np.linalg.norm(seq - seq.mean(axis=0), axis=-1).mean())


def frame_motion(seq: np.ndarray) -> float:
    """Mean distance of each point between consecutive frames; ``seq`` (T, 68, 2), T >= 2."""
    return float(np.linalg.norm(np.diff(seq, axis=0), axis=-1).mean()) if len(seq) > 1 else \
        float("nan")


def _error(seq: np.ndarray, ref: np.ndarray) -> float:
    """Mean distance of a (T, 68, 2) sequence to (68, 2) reference points."""
    return float(np.linalg.norm(seq - ref, axis=-1).mean())


def smooth_sequence(seq: np.ndarray, times: np.ndarray, scale: float,
                    params: OneEuroParams) -> np.ndarray:
    """The landmark smoother of ``--smooth`` (:class:`~facealign_cli.core.smoothing.
    LandmarkSmoother`: One-Euro filters on the rigid motion and the shape) run over a (T, 68, 2)
    sequence at ``times`` (s), speed in units of ``scale`` px."""
    f = LandmarkSmoother(params)
    return np.stack([f(x, t, scale) for x, t in zip(seq, times)])


@dataclass
class VideoRun:
    """Raw outputs of one synthetic video of one photo.

    Attributes:
        tracks: track id -> ``{"frames": (T,) int, "raw": (T, 68, 2), "smoothed": (T, 68, 2)
            or None, "pose_raw", "pose_smoothed": (T, 3) or None}``, landmarks mapped back to
            the photo (pixels), poses too (degrees, :func:`.stability_pose.pose_back`).
        seconds: time spent in the pipeline (detect, track, fit, smooth), excluding warping.
        frames: frames processed.
        detector_frames: frames on which the detector ran.
    """

    tracks: dict
    seconds: float
    frames: int
    detector_frames: int


def run_video(video_aligner, photo: np.ndarray, transforms: np.ndarray, fps: float
              ) -> VideoRun:
    """Run a :class:`~facealign_cli.core.tracking.VideoAligner` over the frames
    ``warp(photo, transforms[i])`` at times ``i / fps`` and map its landmarks back."""
    from facealign_cli.core.tracking import track_of

    video_aligner.reset()
    tracks: dict = {}
    spent = 0.0
    for i, m in enumerate(transforms):
        frame = warp(photo, m)
        t0 = _time.perf_counter()
        faces = video_aligner.process(frame, i / fps)
        spent += _time.perf_counter() - t0
        inv = invert_affine(m)
        for f in faces:
            k = track_of(f)
            if k is None or f.landmarks_3d is None:
                continue
            raw = f.landmarks_3d if f.raw_landmarks_3d is None else f.raw_landmarks_3d
            d = tracks.setdefault(k, {"frames": [], "raw": [], "smoothed": [], "pose_raw": [],
                                      "pose_smoothed": []})
            d["frames"].append(i)
            d["raw"].append(apply_affine(inv, np.asarray(raw)[:, :2]))
            pose = f.pose if f.raw_pose is None else f.raw_pose
            d["pose_raw"].append(None if pose is None else P.pose_back(pose, m))
            if video_aligner.smoother is not None:
                d["smoothed"].append(apply_affine(inv, np.asarray(f.landmarks_3d)[:, :2]))
                d["pose_smoothed"].append(None if f.pose is None else P.pose_back(f.pose, m))
    for d in tracks.values():
        d["frames"] = np.asarray(d["frames"], dtype=np.int64)
        for key in ("raw", "smoothed", "pose_raw", "pose_smoothed"):  # None: some frame lacks it
            d[key] = np.stack(d[key]) if d[key] and all(x is not None for x in d[key]) else None
    return VideoRun(tracks, spent, len(transforms), video_aligner.detector_frames)


def _match_tracks(tracks: dict, ref_boxes: np.ndarray) -> dict[int, int]:
    """track id -> index of the photo face (IoU of mean-landmark box >= :data:`MATCH_IOU`)."""
    out = {}
    for k, d in tracks.items():
        if not len(ref_boxes):
            break
        iou = box_iou(_box(d["raw"].mean(axis=0)), ref_boxes)
        j = int(np.argmax(iou))
        if iou[j] >= MATCH_IOU:
            out[k] = j
    return out


@dataclass
class PhotoResult:
    """Per-photo figures (lists over the photo's faces; NaN where a face was not tracked).

    Distances in % of the face size (sqrt(w * h) of its 68-point box on the photo).
    """

    name: str
    faces: int
    face_size: list[float] = field(default_factory=list)
    jitter_raw: list[float] = field(default_factory=list)
    jitter_smoothed: list[float] = field(default_factory=list)
    motion_raw: list[float] = field(default_factory=list)
    motion_smoothed: list[float] = field(default_factory=list)
    moving_error_raw: list[float] = field(default_factory=list)
    moving_error_smoothed: list[float] = field(default_factory=list)
    pose_jitter_raw: list[float] = field(default_factory=list)  # degrees (stability_pose)
    pose_jitter_smoothed: list[float] = field(default_factory=list)
    pose_error_raw: list[float] = field(default_factory=list)
    pose_error_smoothed: list[float] = field(default_factory=list)
    tracks_per_face_jitter: list[float] = field(default_factory=list)
    tracks_per_face_moving: list[float] = field(default_factory=list)
    unmatched_tracks: int = 0
    seconds: float = 0.0
    frames: int = 0
    detector_frames: int = 0


def evaluate_photo(aligner, video_aligner, photo: np.ndarray, name: str, *, frames: int,
                   moving_frames: int, fps: float, seed: int,
                   smooth: OneEuroParams, annotated: list[np.ndarray] | None = None,
                   iou_threshold: float = 0.3,
                   smooth_pose: OneEuroParams | None = POSE_DEFAULTS) -> PhotoResult:
    """Both synthetic videos of one photo (module docstring).

    Args:
        aligner: the :class:`~facealign_cli.core.pipeline.FaceAligner` of the reference (the
            photo itself).
        video_aligner: a :class:`~facealign_cli.core.tracking.VideoAligner` over the same
            aligner with a :class:`~facealign_cli.core.smoothing.FaceSmoother` (the moving
            video uses it; the jitter video reads its raw output).
        photo: (H, W, 3) uint8 BGR.
        name: for the report.
        frames, moving_frames: frames of the jitter and the moving video.
        fps: frame rate of both (time stamps ``i / fps``).
        seed: seed of this photo's random similarities.
        smooth: One-Euro settings applied to the jitter video's mapped-back tracks.
        annotated: optional (68, 2) annotated landmarks of the photo's faces (pixels): only
            the detections matched to one of them (highest IoU with its 68-point box, >=
            ``iou_threshold``, :func:`facealign_cli.evaluation.metrics.match_detection`) are
            the photo's faces; the annotations select faces, they are never compared with.
        iou_threshold: of that match.
        smooth_pose: settings of the pose filter applied to the jitter video's mapped-back
            poses (:mod:`.stability_pose`), ``None`` for none.
    """
    ref = aligner(photo)
    if annotated is not None:
        from facealign_cli.evaluation.metrics import landmark_box, match_detection

        boxes = np.array([f.box[:4] for f in ref], dtype=np.float64).reshape(-1, 4)
        keep = sorted({k for a in annotated
                       for k in [match_detection(landmark_box(np.asarray(a)), boxes,
                                                 iou_threshold)[0]] if k >= 0})
        ref = [ref[k] for k in keep]
    ref_lm = [np.asarray(f.landmarks_3d[:, :2], np.float64) for f in ref]
    res = PhotoResult(name, len(ref))
    if not ref:
        return res
    ref_boxes = np.stack([_box(p) for p in ref_lm])
    sizes = np.array([_size(p) for p in ref_lm])
    res.face_size = sizes.tolist()
    centre = tuple(((ref_boxes[:, :2] + ref_boxes[:, 2:]) / 2).mean(axis=0))
    rng = np.random.default_rng(seed)
    runs = {"jitter": run_video(video_aligner, photo,
                                random_similarities(frames, centre, rng), fps),
            "moving": run_video(video_aligner, photo,
                                moving_trajectory(moving_frames, fps, float(np.median(sizes)),
                                                  centre), fps)}
    for r in runs.values():
        res.seconds += r.seconds
        res.frames += r.frames
        res.detector_frames += r.detector_frames
    nan = float("nan")
    for kind, r in runs.items():
        match = _match_tracks(r.tracks, ref_boxes)
        res.unmatched_tracks += len(r.tracks) - len(match)
        per_face = [[k for k, j in match.items() if j == i] for i in range(len(ref))]
        tpf = res.tracks_per_face_jitter if kind == "jitter" else res.tracks_per_face_moving
        tpf.extend(float(len(ks)) for ks in per_face)
        n = r.frames
        for i, ks in enumerate(per_face):
            # the face's longest track (by frames) is its sequence
            ks = sorted(ks, key=lambda k: -len(r.tracks[k]["frames"]))
            d = r.tracks[ks[0]] if ks else None
            ok = d is not None and len(d["frames"]) >= max(2, n // 2)
            s = sizes[i] / 100.0  # to % of the face size
            for key, v in P.pose_figures(kind, d if ok else None, ref[i].pose, fps,
                                         smooth_pose).items():
                getattr(res, key).append(v)
            if kind == "jitter":
                if not ok:
                    for lst in (res.jitter_raw, res.jitter_smoothed, res.motion_raw,
                                res.motion_smoothed):
                        lst.append(nan)
                    continue
                sm = smooth_sequence(d["raw"], d["frames"] / fps, sizes[i], smooth)
                res.jitter_raw.append(jitter(d["raw"]) / s)
                res.jitter_smoothed.append(jitter(sm) / s)
                res.motion_raw.append(frame_motion(d["raw"]) / s)
                res.motion_smoothed.append(frame_motion(sm) / s)
            else:
                if not ok:
                    res.moving_error_raw.append(nan)
                    res.moving_error_smoothed.append(nan)
                    continue
                res.moving_error_raw.append(_error(d["raw"], ref_lm[i]) / s)
                res.moving_error_smoothed.append(
                    nan if d["smoothed"] is None else _error(d["smoothed"], ref_lm[i]) / s)
    return res


@dataclass
class StabilityRun:
    """Per-photo results of :func:`run_stability` and the settings used."""

    photos: list[PhotoResult]
    settings: dict


def run_stability(photos: list[Path], aligner, video_aligner, *, frames: int = DEFAULT_FRAMES,
                  moving_frames: int = DEFAULT_MOVING_FRAMES, fps: float = DEFAULT_FPS,
                  seed: int = DEFAULT_SEED, smooth: OneEuroParams = LANDMARK_DEFAULTS,
                  read_image=None, progress=None, annotations: dict | None = None,
                  iou_threshold: float = 0.3,
                  smooth_pose: OneEuroParams | None = POSE_DEFAULTS) -> StabilityRun:
    """Run :func:`evaluate_photo` on every photo (the k-th photo of the list uses seed
    ``seed + k``).

    Args:
        photos: image files.
        aligner, video_aligner: see :func:`evaluate_photo`.
        read_image: path -> (H, W, 3) uint8 BGR (default
            :func:`facealign_cli.evaluation.datasets.read_dataset_image`).
        progress: called with 1 after each photo, or ``None``.
        annotations: photo stem -> list of (68, 2) annotated faces (see
            :func:`evaluate_photo`); ``None``: every detection on a photo is a face.
        iou_threshold: of the detection-to-annotation match.
        smooth_pose: pose filter of the jitter video (see :func:`evaluate_photo`).
    """
    if read_image is None:
        from facealign_cli.evaluation.datasets import read_dataset_image as read_image
    out = []
    for k, p in enumerate(photos):
        out.append(evaluate_photo(aligner, video_aligner, read_image(p), Path(p).stem,
                                  frames=frames, moving_frames=moving_frames, fps=fps,
                                  seed=seed + k, smooth=smooth,
                                  annotated=None if annotations is None
                                  else annotations.get(Path(p).stem, []),
                                  iou_threshold=iou_threshold, smooth_pose=smooth_pose))
        if progress is not None:
            progress(1)
    return StabilityRun(out, {"frames": frames, "moving_frames": moving_frames, "fps": fps,
                              "seed": seed})


def _mean(xs) -> float:
    a = np.asarray(xs, dtype=np.float64)
    a = a[np.isfinite(a)]
    return float(a.mean()) if a.size else float("nan")


def _median(xs) -> float:
    a = np.asarray(xs, dtype=np.float64)
    a = a[np.isfinite(a)]
    return float(np.median(a)) if a.size else float("nan")


def summarise_stability(run: StabilityRun) -> tuple[dict, dict]:
    """Figures of a :class:`StabilityRun` (every face weighs the same).

    Returns:
        ``(figures, per_image)``. ``figures`` holds ``faces`` (photo faces), ``faces_tracked``
        (faces with a jitter sequence), ``jitter`` / ``motion`` / ``moving_error`` each as
        ``{"raw": mean %, "smoothed": mean %, "raw_median", "smoothed_median", "ratio":
        smoothed / raw of the means}``, ``pose_jitter`` / ``pose_error`` the same in degrees
        (:mod:`.stability_pose`), ``tracking`` (mean tracks per face in each video,
        unmatched tracks), ``speed`` (frames, detector frames, seconds, frames per second of the
        pipeline). ``per_image`` maps photo name to its :class:`PhotoResult` fields.
    """
    ph = run.photos
    cat = lambda attr: [v for p in ph for v in getattr(p, attr)]

    def pair(a: str, b: str) -> dict:
        ra, rb = _mean(cat(a)), _mean(cat(b))
        return {"raw": ra, "smoothed": rb, "raw_median": _median(cat(a)),
                "smoothed_median": _median(cat(b)),
                "ratio": rb / ra if ra and math.isfinite(ra) else float("nan")}

    seconds = sum(p.seconds for p in ph)
    frames = sum(p.frames for p in ph)
    figs = {
        "photos": len(ph), "photos_without_faces": sum(1 for p in ph if not p.faces),
        "faces": sum(p.faces for p in ph),
        "faces_tracked": int(np.isfinite(np.asarray(cat("jitter_raw"), float)).sum()),
        "faces_tracked_moving": int(np.isfinite(np.asarray(cat("moving_error_raw"),
                                                           float)).sum()),
        "jitter": pair("jitter_raw", "jitter_smoothed"),
        "motion": pair("motion_raw", "motion_smoothed"),
        "moving_error": pair("moving_error_raw", "moving_error_smoothed"),
        "pose_jitter": pair("pose_jitter_raw", "pose_jitter_smoothed"),  # degrees
        "pose_error": pair("pose_error_raw", "pose_error_smoothed"),
        "tracking": {"tracks_per_face_jitter": _mean(cat("tracks_per_face_jitter")),
                     "tracks_per_face_moving": _mean(cat("tracks_per_face_moving")),
                     "faces_with_one_track": int(sum(
                         1 for a, b in zip(cat("tracks_per_face_jitter"),
                                           cat("tracks_per_face_moving")) if a == b == 1)),
                     "unmatched_tracks": sum(p.unmatched_tracks for p in ph)},
        "speed": {"frames": frames, "detector_frames": sum(p.detector_frames for p in ph),
                  "seconds": seconds, "fps": frames / seconds if seconds else float("nan")},
    }
    per = {p.name: {k: v for k, v in p.__dict__.items() if k != "name"} for p in ph}
    return figs, per


def stability_tables(doc: dict) -> list:
    """Tables (:class:`facealign_cli.evaluation.reports.Table`) of the document written by
    ``facealign evaluate stability`` (one block of figures per method)."""
    from facealign_cli.evaluation.reports import Table

    res, methods = doc["results"], doc["methods"]
    s = doc["settings"]

    def f(x, nd=3):
        return "-" if x is None or not math.isfinite(x) else f"{x:.{nd}f}"

    def pct(x):
        return "-" if x is None or not math.isfinite(x) else f"{100 * (x - 1):+.0f}%"

    rows, trows = [], []
    for k, m in methods.items():
        r = res[k]
        lab = m.get("label", k)
        rows.append([lab, f(r["jitter"]["raw"]), f(r["jitter"]["smoothed"]),
                     pct(r["jitter"]["ratio"]), f(r["motion"]["raw"]),
                     f(r["motion"]["smoothed"]), f(r["moving_error"]["raw"]),
                     f(r["moving_error"]["smoothed"]), pct(r["moving_error"]["ratio"]),
                     f"{r['faces_tracked']}/{r['faces']}"])
        t, sp = r["tracking"], r["speed"]
        trows.append([lab, f(t["tracks_per_face_jitter"], 2), f(t["tracks_per_face_moving"], 2),
                      str(t["unmatched_tracks"]), str(sp["frames"]), str(sp["detector_frames"]),
                      f(sp["seconds"], 1), f(sp["fps"], 1)])
    sm = s["smoothing"]
    pose = P.pose_table(doc)
    return [
        Table("Stability on synthetic videos (% of the face size; lower is better)",
              ["Method", "Jitter raw", "smoothed", "Δ", "Frame-to-frame raw", "smoothed",
               "Moving-face error raw", "smoothed", "Δ (lag cost)", "Faces"], rows,
              [f"jitter video: {s['frames']} frames of random similarities (scale "
               f"{SCALE_RANGE[0]}-{SCALE_RANGE[1]}, rotation ±{ROTATION_DEG:g}°, shift "
               f"±{SHIFT_PX:g} px, seed {s['seed']}); moving face: {s['moving_frames']} frames "
               f"at {s['fps']:g} fps ({s['moving']}).",
               "jitter = mean distance to the per-point mean of the landmarks mapped back to "
               "the photo; moving-face error = mean distance to the pipeline's landmarks on "
               "the still photo; face size = sqrt(w·h) of its 68-point box.",
               f"smoothing: One-Euro (Casiez et al. CHI 2012) on the rigid motion and the "
               f"shape, min_cutoff {sm['min_cutoff']:g} Hz, beta {sm['beta']:g}, d_cutoff "
               f"{sm['d_cutoff']:g} Hz, dead zone {sm.get('dead_zone', 0.0):g} face sizes/s; "
               f"detector every {s['detect_every']} frame(s)."]),
        *([] if pose is None else [pose]),
        Table("Tracking and speed",
              ["Method", "Tracks/face (jitter)", "Tracks/face (moving)", "Unmatched tracks",
               "Frames", "Detector frames", "Seconds", "Frames/s"], trows,
              ["tracks/face = 1.00 when every photo face kept one track id over each video; "
               "unmatched tracks: detections on no face of the photo; frames/s: the video "
               f"pipeline alone (detect, track, fit, smooth; warping excluded), "
               f"{s.get('threads', 1)} thread(s)."]),
    ]
