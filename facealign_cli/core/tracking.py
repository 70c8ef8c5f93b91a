"""Faces across the frames of a video: track ids (:class:`FaceTracker`) and the per-frame
pipeline of a video (:class:`VideoAligner`: detector every k-th frame, landmarks carried in
between, optional One-Euro smoothing).

**Duplicates** (:func:`duplicate_detections`, :data:`DEFAULT_DUPLICATE_RATIO` = 1.3): on every
frame where the detector ran, before matching, a detection is dropped when a higher-scoring
one (on a tie, the earlier) and it are one face: one of the two boxes has at least 1.3 times
the face size of the other and holds the other's centre. One face, one detection per frame;
photos keep every detection (the rule is the tracker's, not the detector's). Why
(``scripts/build_tracking_set.py``, set below): the detector's weighted NMS lets through a
second, larger box on the same face (146 pairs on the composites' frames, size ratio 1.37-1.88
for 90 % of them, IoU 0.23-0.58, centre distance at most 0.55 of the smaller box's size), and
each gave the face a second track. The higher score picks the box that fits the annotated
face (the larger IoU with its 68-point box) in 141 of the 142 pairs of ratio >= 1.3, the
smaller box in 139; so the score decides, not the size. 1.3 is below the duplicates' 5th
percentile (1.37) and above a jitter scale step and box noise (1.1), so that two overlapping
faces of similar size are never merged; 1.5 leaves 4 / 5 duplicate tracks (jitter / moving),
1.0-1.3 none or one. Tracks per face went from 1.07 / 1.16 to 1.00 / 1.04 (6 / 9 duplicate
tracks -> 0 / 1), no track holding two faces before or after; the boxes dropped besides are
large false detections that hold a face (unmatched tracks 37 / 32 -> 25 / 19). A score gate
(the distance gate only for scores >= 0.5-0.6) changed nothing there and cost 4 + 1 extra
tracks at 0.7, so the score enters only here. Seen on the AFW photos (reported, not tuned
on): 1.11 / 1.12 -> 1.03 / 1.03 tracks per face (duplicate tracks 31 / 32 -> 10 / 6; tracks
holding two faces 2 / 3 -> 1 / 0; ``facealign evaluate stability`` on them: 1.03 / 1.03,
unmatched tracks 818 -> 697).

**Track ids** (:class:`FaceTracker`): on every frame where the detector ran, the faces are
matched to the live tracks by :func:`pair_costs` of each face's box with the track's last box
(no motion model). With ``d`` the distance of the two box centres in face sizes (a box's face
size is ``sqrt(w * h)``; ``d`` divides by the mean of the two) and ``IoU`` the boxes' overlap
(:func:`facealign_cli.core.boxes.box_iou`, the project's one IoU), the cost of a pair is
``1 - IoU + d`` for a pair within the gate below and ``2 + max(max_distance, 1)`` (more than
any pair within it) for one outside, so that a pair outside the gate never wins the
assignment over one inside; the assignment minimising the total cost is solved with
:func:`scipy.optimize.linear_sum_assignment` (global, so one face gets at most one track and a
track at most one face), and an assigned pair is kept when it is within the gate: ``IoU >=
iou_threshold`` (:data:`DEFAULT_IOU_THRESHOLD` = 0.3), **or** ``d <= max_distance``
(:data:`DEFAULT_MAX_DISTANCE` = 1.5 face sizes) with the larger face size at most
``max_size_ratio`` (:data:`DEFAULT_MAX_SIZE_RATIO` = 1.5) times the smaller. A face left
unmatched starts a new track (ids 0, 1, 2, ... in order of appearance, never reused within a
video). A track left unmatched counts one *missed* frame; it ends when it has missed more than
``max_missed`` consecutive processed frames (:data:`DEFAULT_MAX_MISSED` = 10, a third of a
second at 30 fps: a face hidden for up to 10 frames keeps its id; from the 11th it is ended
and a face reappearing there gets a new id). "Frames" are the frames given to the tracker,
i.e. after ``--frame-step`` / ``--max-fps`` subsampling.

Why (``scripts/build_tracking_set.py``: 36 composites of 2-4 pasted 300-W HELEN training
crops, faces 30-150 px, 90 faces found; never AFLW2000-3D or AFW): with the IoU gate alone
(0.3, 5 missed frames) the stability benchmark's videos gave 1.62 (jitter) / 1.26 (moving)
tracks per face. Of the 56 extra tracks of the jitter video, 44 came from an IoU below 0.3: a
rotation of +-3 degrees and a scale of 0.95-1.05 about the centre of the faces move a small
face far from that centre by more than its size between two frames, which no overlap gate
follows; a gate in face sizes does (a face 30 px wide and 300 px from the centre moves about
1 face size). Of the 23 extra tracks of the moving video, 12 were faces the detector lost for
more than 5 frames (small faces found on 49-67 % of the frames). The rest are the detector's
duplicates (a second, about 1.7 times larger box on the same face, IoU 0.3-0.46 with the
first), which no matching rule can merge (6 and 9 extra tracks remain; the duplicate rule
above drops them). A pair outside the gate
used to keep its plain cost and could win the assignment, then be dropped: a small face's
detection went to a large false detection's track and started a new one. The grid over
max_distance 0.75-3, max_size_ratio 1.3-2 and max_missed 5/10/15 gave 1.07 / 1.16 at the
chosen values (1.10 / 1.23 with 5 missed frames, 1.07 / 1.12 with 15), with no track ever
holding two faces (in half the composites faces are packed 0.3-1.5 face sizes apart). 1.5 face
sizes is the smallest distance gate with the plateau's jitter figure (1.0: 1.09, one extra
track from a low overlap; 0.75: 1.18, nine); the size ratio lets a jitter scale step (up to
1.1) and box noise through but not the detector's duplicates; 10 missed frames, not 15, so
that a stale track holds its place for a third of a second only. No constant-velocity
prediction: the jitter video's frames jump independently (a velocity would double the error)
and no split of the smooth moving video came from a low overlap. A jump of more than half the
spacing of two faces towards a missed neighbour cannot be told from a swap by any rule on the
last boxes. Seen on the AFW photos (reported, not tuned on): 2 (jitter) and 3 (moving) tracks
held detections of two faces, all of them low-score boxes (0.45-0.56) about twice a face's
size between the faces of group photos, whose gate (1.5 of their own size) spans a neighbour;
no face's own track was taken (with the IoU gate alone: 1 and 1, one a face's track taken by
its neighbour).

**Detector every k-th frame** (:class:`VideoAligner`, ``detect_every = k``): the detector runs
on frames 0, k, 2k, ... of the processed frames; in between, each track matched on the previous
frame is regressed again from the crop of its previous landmarks (3DDFA's landmark roi rule,
:func:`facealign_cli.core.geometry.roi_box_from_landmarks`, as in 3DDFA-V2's video demo), and
its box is the previous detector box moved and scaled with the landmarks. A carried face whose
crop leaves the image by more than half is dropped (a missed frame for its track). No new face
is found between detector frames. What this costs and gains is measured by ``facealign
evaluate stability --detect-every k``. The detector is about 85 % of the time of a frame on
1024-px photos on one CPU thread; on the 185 AFW photos (333 annotated faces, ``--annotations``)
``--detect-every 5`` ran the video pipeline at 113 instead of 37 frames per second (3.1x) and
raised the raw moving-face error from 1.26 % to 1.40 % of the face size (+11 %; median 0.94 %
-> 1.06 %), with this module's tracker and the default smoothing (``facealign evaluate
stability ../shared/data/photos/afw --annotations .../annotations.json --detect-every 5``,
one thread; the earlier tracker gave 107 / 34 frames per second and +15 %). On the jitter
video, whose frames jump independently, carried crops trail the jumps (raw jitter 0.73 % ->
2.09 %): carrying assumes small motion between frames, as in real video.

**Hard cuts** (:mod:`facealign_cli.core.scene_cuts`): a processed frame whose colours differ
from the previous one's as at a cut between two shots (:class:`~facealign_cli.core.scene_cuts.
CutDetector`) ends every live track (:meth:`FaceTracker.new_scene`): the faces of the new shot
start new tracks, even where they stand where a face of the last shot stood, and the smoother
forgets every track. :class:`VideoAligner` runs the detector on such a frame even between its
detector frames (nothing can be carried across a cut).

All boxes and landmarks are in image pixels (x right, y down), as in
:class:`~facealign_cli.core.face.Face`; the track id is ``face.track`` (an ``int``),
and a carried face has ``face.carried = True``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from facealign_cli.core.boxes import box_area, box_iou
from facealign_cli.core.face import Face
from facealign_cli.core.scene_cuts import CUT_THRESHOLD, CutDetector

#: A face whose box has at least this IoU with a track's last box may continue that track.
DEFAULT_IOU_THRESHOLD = 0.3
#: A track survives this many consecutive processed frames without a match, and ends after.
DEFAULT_MAX_MISSED = 10
#: Below the IoU threshold, the most centre distance (in face sizes) of a matched pair ...
DEFAULT_MAX_DISTANCE = 1.5
#: ... and the most ratio of the larger to the smaller face size (both: module docstring).
DEFAULT_MAX_SIZE_RATIO = 1.5
#: A detection at least this many times the face size of a higher-scoring one whose centre
#: lies in the larger box is dropped as a duplicate (module docstring; 0 = never).
DEFAULT_DUPLICATE_RATIO = 1.3


def _centres_sizes(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 2) centres and (N,) face sizes ``sqrt(w * h)`` of (N, 4) float64 boxes."""
    return (boxes[:, :2] + boxes[:, 2:]) / 2, np.sqrt(box_area(boxes))


def duplicate_detections(boxes: np.ndarray, scores: np.ndarray,
                         min_ratio: float = DEFAULT_DUPLICATE_RATIO) -> np.ndarray:
    """Which detections of one frame are duplicates of a better one (module docstring).

    Detection ``j`` is a duplicate when some detection ``i`` scores higher (on a tie: comes
    first) and one of the two boxes has at least ``min_ratio`` times the face size
    (``sqrt(w * h)``) of the other and holds the other's centre (border included).

    Args:
        boxes: (M, 4) boxes ``[x1, y1, x2, y2]``, image pixels.
        scores: (M,) detector scores.
        min_ratio: the size ratio (>= 1); 0 = no detection is a duplicate.

    Returns:
        (M,) bool, ``True`` for the detections to drop.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    sc = np.asarray(scores, dtype=np.float64).reshape(-1)
    if not min_ratio or len(b) < 2:
        return np.zeros(len(b), bool)
    c, size = _centres_sizes(b)
    # holds[j, i]: box j is min_ratio times box i's size and holds its centre
    holds = (size[:, None] >= min_ratio * size[None, :]) & np.all(
        (c[None, :] >= b[:, None, :2]) & (c[None, :] <= b[:, None, 2:]), axis=-1)
    k = np.arange(len(b))
    # better[j, i]: detection i beats detection j
    better = (sc[None, :] > sc[:, None]) | ((sc[None, :] == sc[:, None]) & (k < k[:, None]))
    return np.any((holds | holds.T) & better, axis=1)


def pair_costs(tracks: np.ndarray, boxes: np.ndarray, iou_threshold: float,
               max_distance: float, max_size_ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """Matching cost and gate of every track box with every detection box (module docstring).

    Args:
        tracks: (N, 4) boxes ``[x1, y1, x2, y2]``, image pixels.
        boxes: (M, 4) boxes, same frame.
        iou_threshold, max_distance, max_size_ratio: the gate (:class:`FaceTracker`).

    Returns:
        ``(cost, ok)``: (N, M) bool ``ok``, ``True`` where the pair may be matched: ``IoU >=
        iou_threshold`` (and > 0), or ``d <= max_distance`` and the larger face size at most
        ``max_size_ratio`` times the smaller, with ``d`` the distance of the box centres in
        face sizes (a face size is ``sqrt(w * h)`` of a box; ``d`` divides by the mean of the
        two); (N, M) float64 ``cost``: ``1 - IoU + d`` where ``ok``, else ``2 +
        max(max_distance, 1)`` (above every allowed cost, which is at most ``1 +
        max_distance`` or, for an IoU-gated pair of near-square face boxes, below 2).
    """
    a = np.asarray(tracks, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    iou = box_iou(a, b)
    (ca, sa), (cb, sb) = _centres_sizes(a), _centres_sizes(b)
    mean = np.maximum((sa[:, None] + sb[None, :]) / 2, 1e-6)
    d = np.linalg.norm(ca[:, None] - cb[None, :], axis=-1) / mean
    ratio = np.maximum(sa[:, None], sb[None, :]) / np.maximum(
        np.minimum(sa[:, None], sb[None, :]), 1e-6)
    ok = ((iou >= iou_threshold) & (iou > 0)) | (
        (d <= max_distance) & (ratio <= max_size_ratio))
    return np.where(ok, 1.0 - iou + d, 2.0 + max(max_distance, 1.0)), ok


def track_of(face: Face) -> int | None:
    """The track id of a face (``None`` when it was not tracked)."""
    return face.track


@dataclass
class Track:
    """One face followed over frames.

    Attributes:
        id: the track id (>= 0).
        box: (4,) float64 last box ``[x1, y1, x2, y2]``, image pixels.
        score: last detector score.
        first_frame, last_frame: processed-frame numbers of the first and last match.
        missed: consecutive processed frames without a match.
        hits: frames matched so far.
        landmarks: (68, 2) float64 last raw (unsmoothed) landmarks, image pixels, or ``None``.
    """

    id: int
    box: np.ndarray
    score: float
    first_frame: int
    last_frame: int
    missed: int = 0
    hits: int = 1
    landmarks: np.ndarray | None = None
    extra: dict = field(default_factory=dict)


class FaceTracker:
    """Give faces a track id that persists across frames (rules in the module docstring).

    Args:
        iou_threshold: a pair with at least this IoU is accepted, in [0, 1].
        max_missed: consecutive missed frames a track survives (>= 0).
        max_distance: a pair with a lower IoU is accepted when its centre distance is at
            most this many face sizes (>= 0; 0 = the IoU gate only) ...
        max_size_ratio: ... and its larger face size is at most this times the smaller (>= 1).
        duplicate_ratio: the size ratio of :func:`duplicate_detections` (>= 1; 0 = keep
            every detection).
    """

    def __init__(self, iou_threshold: float = DEFAULT_IOU_THRESHOLD,
                 max_missed: int = DEFAULT_MAX_MISSED,
                 max_distance: float = DEFAULT_MAX_DISTANCE,
                 max_size_ratio: float = DEFAULT_MAX_SIZE_RATIO,
                 duplicate_ratio: float = DEFAULT_DUPLICATE_RATIO):
        if not 0 <= iou_threshold <= 1 or max_missed < 0 or max_distance < 0 \
                or max_size_ratio < 1 or not (duplicate_ratio == 0 or duplicate_ratio >= 1):
            raise ValueError("need 0 <= iou_threshold <= 1, max_missed >= 0, "
                             "max_distance >= 0, max_size_ratio >= 1 and duplicate_ratio "
                             "0 or >= 1")
        self.iou_threshold = float(iou_threshold)
        self.max_missed = int(max_missed)
        self.max_distance = float(max_distance)
        self.max_size_ratio = float(max_size_ratio)
        self.duplicate_ratio = float(duplicate_ratio)
        self.reset()

    def reset(self) -> None:
        """Forget every track (a new video)."""
        self.tracks: dict[int, Track] = {}
        self.ended: list[int] = []
        self._cut_ended: list[int] = []
        self.frame = -1
        self._next_id = 0

    def new_scene(self) -> None:
        """A hard cut before the next frame: end every live track (after the next
        :meth:`update` or :meth:`carry` their ids are in :attr:`ended`; ids are never reused,
        so that frame's faces start new tracks)."""
        self._cut_ended = list(self.tracks)
        self.tracks = {}

    def match(self, boxes: np.ndarray) -> list[tuple[int, int]]:
        """Assignment of boxes to live tracks: ``[(track id, box index)]``, each pair within
        the gate (module docstring; nothing is changed)."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        ids = list(self.tracks)
        if not ids or not len(boxes):
            return []
        from scipy.optimize import linear_sum_assignment

        cost, ok = pair_costs(np.stack([self.tracks[i].box for i in ids]), boxes,
                              self.iou_threshold, self.max_distance, self.max_size_ratio)
        rows, cols = linear_sum_assignment(cost)
        return [(ids[r], int(c)) for r, c in zip(rows, cols) if ok[r, c]]

    def update(self, faces: list[Face]) -> list[Face]:
        """Drop the frame's duplicate detections (:func:`duplicate_detections`) and assign
        track ids to the others (``face.track``, set in place).

        Args:
            faces: the faces of the frame (their ``box`` and ``score`` are used), possibly
                empty.

        Returns:
            The kept faces, in their order (a new list; a dropped face gets no track).
            :attr:`ended` then lists the ids ended at this frame.
        """
        self.frame += 1
        drop = duplicate_detections(np.array([f.box[:4] for f in faces], dtype=np.float64),
                                    np.array([f.score for f in faces], dtype=np.float64),
                                    self.duplicate_ratio)
        faces = [f for f, d in zip(faces, drop) if not d]
        pairs = self.match(np.array([f.box[:4] for f in faces], dtype=np.float64))
        matched_tracks = {t for t, _ in pairs}
        matched_faces = {j: t for t, j in pairs}
        for j, f in enumerate(faces):
            t = matched_faces.get(j)
            if t is None:
                t = self._next_id
                self._next_id += 1
                self.tracks[t] = Track(t, np.asarray(f.box[:4], np.float64).copy(),
                                       float(f.score), self.frame, self.frame)
            else:
                tr = self.tracks[t]
                tr.box = np.asarray(f.box[:4], np.float64).copy()
                tr.score = float(f.score)
                tr.last_frame, tr.missed = self.frame, 0
                tr.hits += 1
            f.track = t
        self.ended, self._cut_ended = self._cut_ended, []
        for t in list(self.tracks):
            if t in matched_tracks or self.tracks[t].first_frame == self.frame:
                continue
            self.tracks[t].missed += 1
            if self.tracks[t].missed > self.max_missed:
                self.ended.append(t)
                del self.tracks[t]
        return faces

    def carry(self, faces: list[Face]) -> list[Face]:
        """Advance one frame without detection: the faces (each already with its
        ``track``) continue their tracks; live tracks without a face count a missed
        frame. Returns the same list."""
        self.frame += 1
        seen = set()
        for f in faces:
            t = track_of(f)
            tr = self.tracks.get(t)
            if tr is None:
                continue
            tr.box = np.asarray(f.box[:4], np.float64).copy()
            tr.last_frame, tr.missed = self.frame, 0
            tr.hits += 1
            seen.add(t)
        self.ended, self._cut_ended = self._cut_ended, []
        for t in list(self.tracks):
            if t not in seen:
                self.tracks[t].missed += 1
                if self.tracks[t].missed > self.max_missed:
                    self.ended.append(t)
                    del self.tracks[t]
        return faces


def _landmark_box(lm2d: np.ndarray) -> np.ndarray:
    return np.array([lm2d[:, 0].min(), lm2d[:, 1].min(), lm2d[:, 0].max(), lm2d[:, 1].max()])


def _moved_box(box: np.ndarray, lm_from: np.ndarray, lm_to: np.ndarray) -> np.ndarray:
    """``box`` moved and scaled as the landmark box moved from ``lm_from`` to ``lm_to``."""
    a, b = _landmark_box(lm_from), _landmark_box(lm_to)
    ca, cb = (a[:2] + a[2:]) / 2, (b[:2] + b[2:]) / 2
    sa = np.sqrt(max(np.prod(a[2:] - a[:2]), 1e-6))
    sb = np.sqrt(max(np.prod(b[2:] - b[:2]), 1e-6))
    k = sb / sa
    c = (box[:2] + box[2:]) / 2
    half = (box[2:] - box[:2]) / 2 * k
    nc = cb + (c - ca) * k
    return np.concatenate([nc - half, nc + half])


class VideoAligner:
    """The per-frame pipeline of one video: detect (every k-th frame), track, fit, smooth.

    Args:
        aligner: a :class:`facealign_cli.core.pipeline.FaceAligner` (its ``detect`` and
            ``fit``; its ``max_faces`` and ``min_face`` apply on detector frames).
        detect_every: run the detector on every k-th processed frame (1 = every frame); in
            between, tracks are carried by their landmarks (module docstring).
        iou_threshold, max_missed, max_distance, max_size_ratio, duplicate_ratio: of the
            :class:`FaceTracker` (duplicates are dropped from the detector frames' faces).
        smoother: a :class:`facealign_cli.core.smoothing.FaceSmoother`, or ``None`` (no
            smoothing, the default for photos and videos alike).
        dense: also fit the dense vertices (``Face.vertices``).
        cut_threshold: of the :class:`~facealign_cli.core.scene_cuts.CutDetector` that ends
            every track at a hard cut (module docstring); ``None``: no cut detection.

    One instance per video (or call :meth:`reset` between videos). Usage::

        va = VideoAligner(FaceAligner(), detect_every=1, smoother=FaceSmoother())
        for frame in VideoReader(path):
            faces = va.process(frame.image, frame.time)   # Face list, track set
    """

    def __init__(self, aligner, *, detect_every: int = 1,
                 iou_threshold: float = DEFAULT_IOU_THRESHOLD,
                 max_missed: int = DEFAULT_MAX_MISSED,
                 max_distance: float = DEFAULT_MAX_DISTANCE,
                 max_size_ratio: float = DEFAULT_MAX_SIZE_RATIO,
                 duplicate_ratio: float = DEFAULT_DUPLICATE_RATIO, smoother=None,
                 dense: bool = False, cut_threshold: float | None = CUT_THRESHOLD):
        if int(detect_every) < 1:
            raise ValueError(f"detect_every must be >= 1, got {detect_every}")
        self.cuts = CutDetector(cut_threshold)
        self.aligner = aligner
        self.detect_every = int(detect_every)
        self.tracker = FaceTracker(iou_threshold, max_missed, max_distance, max_size_ratio,
                                   duplicate_ratio)
        self.smoother = smoother
        self.dense = dense
        self.reset()

    def reset(self) -> None:
        """Start a new video: no tracks, smoothing state forgotten."""
        self.tracker.reset()
        self.cuts.reset()
        if self.smoother is not None:
            self.smoother.reset()
        self.frames = 0
        self.detector_frames = 0
        self.scene_cuts = 0

    def _carried_faces(self, image: np.ndarray) -> list[Face]:
        from facealign_cli.core import geometry as G

        h, w = image.shape[:2]
        faces = []
        for tr in self.tracker.tracks.values():
            if tr.missed or tr.landmarks is None:
                continue
            # the pipeline's crop (its roi crop scale; 1 for aligners without one)
            roi = G.roi_box_from_landmarks(tr.landmarks,
                                           getattr(self.aligner, "roi_crop_scale", 1.0))
            inside = box_area(np.array([max(roi[0], 0), max(roi[1], 0), min(roi[2], w),
                                        min(roi[3], h)]))
            if inside < 0.5 * box_area(np.asarray(roi, dtype=np.float64)):
                continue
            faces.append(Face(box=tr.box.astype(np.float32), score=tr.score,
                              roi_box=np.asarray(roi, np.float32),
                              track=tr.id, carried=True))
        return faces

    def process(self, image_bgr: np.ndarray, time: float | None = None) -> list[Face]:
        """Faces of the next frame.

        Args:
            image_bgr: (H, W, 3) uint8 BGR frame.
            time: its time stamp in seconds (needed with a smoother; default: frame number /
                30).

        Returns:
            The faces, detector frames in score order less the duplicates
            (:func:`duplicate_detections`), each with its ``track``;
            ``landmarks_3d`` / ``pose`` (and ``vertices``) smoothed when a smoother is set, the
            raw values in ``raw_landmarks_3d`` / ``raw_pose``.
        """
        t = self.frames / 30.0 if time is None else float(time)
        detect = self.frames % self.detect_every == 0
        self.frames += 1
        if self.cuts(image_bgr):  # a new shot: new tracks, smoothing from scratch
            self.scene_cuts += 1
            self.tracker.new_scene()
            if self.smoother is not None:
                self.smoother.reset()
            detect = True
        if detect:
            self.detector_frames += 1
            faces = self.tracker.update(self.aligner.detect(image_bgr))
        else:
            faces = self._carried_faces(image_bgr)
        self.aligner.fit(image_bgr, faces, dense=self.dense)
        for f in faces:
            tr = self.tracker.tracks.get(track_of(f))
            if tr is None or f.landmarks_3d is None:
                continue
            lm = np.asarray(f.landmarks_3d[:, :2], dtype=np.float64)
            if not detect and tr.landmarks is not None:
                f.box = _moved_box(tr.box, tr.landmarks, lm).astype(np.float32)
            tr.landmarks = lm.copy()
        if not detect:
            self.tracker.carry(faces)
        if self.smoother is not None:
            self.smoother.keep_only(self.tracker.tracks)
            self.smoother.apply(faces, t)
        return faces
