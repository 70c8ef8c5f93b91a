"""Track ids across frames (IoU + linear_sum_assignment), track ends after max_missed frames,
the detector every k-th frame, and an end-to-end run on a video built from a photo with
several faces."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from facealign_cli.core.face import Face
from facealign_cli.core.tracking import (
    DEFAULT_MAX_MISSED,
    FaceTracker,
    VideoAligner,
    track_of,
)


def face(box, score=0.9):
    return Face(box=np.asarray(box, np.float32), score=score)


def ids(faces):
    return [track_of(f) for f in faces]


def test_ids_follow_boxes_whatever_the_order():
    tr = FaceTracker()
    a, b = np.array([0, 0, 50, 50.0]), np.array([200, 0, 260, 60.0])
    assert ids(tr.update([face(a), face(b)])) == [0, 1]
    for k in range(1, 6):
        d = np.array([3.0 * k, 1.0 * k] * 2)
        # detector order swapped on odd frames
        fs = [face(b + d), face(a + d)] if k % 2 else [face(a + d), face(b + d)]
        got = tr.update(fs)
        assert ids(got) == ([1, 0] if k % 2 else [0, 1])
    # a new face gets the next id
    assert ids(tr.update([face(a + 15), face(b + 15), face([400, 400, 450, 450])])) == [0, 1, 2]


def test_assignment_is_global_not_greedy():
    """Track 0's box overlaps both detections most with the first one, but giving that one to
    track 1 (its only overlap) maximises the total IoU."""
    tr = FaceTracker(iou_threshold=0.1)
    tr.update([face([0, 0, 100, 100]), face([60, 0, 160, 100])])
    got = tr.update([face([50, 0, 150, 100]), face([10, 0, 110, 100])])
    assert ids(got) == [1, 0]


def test_track_ends_after_max_missed_frames():
    tr = FaceTracker(max_missed=DEFAULT_MAX_MISSED)
    a = [10, 10, 60, 60]
    tr.update([face(a)])
    for _ in range(DEFAULT_MAX_MISSED):   # hidden for max_missed frames: the id survives
        tr.update([])
        assert tr.ended == [] and 0 in tr.tracks
    assert ids(tr.update([face(a)])) == [0]
    for _ in range(DEFAULT_MAX_MISSED):
        tr.update([])
    tr.update([])                         # the (max_missed + 1)-th missed frame ends it
    assert tr.ended == [0] and 0 not in tr.tracks
    assert ids(tr.update([face(a)])) == [1]
    with pytest.raises(ValueError):
        FaceTracker(max_missed=-1)


def test_low_overlap_starts_a_new_track():
    tr = FaceTracker(iou_threshold=0.3)
    tr.update([face([0, 0, 100, 100])])
    assert ids(tr.update([face([80, 0, 180, 100])])) == [1]  # IoU 0.11


class FakeAligner:
    """Detects a fixed list of boxes (moved by a per-frame offset read from the image) and
    'fits' 68 landmarks on a grid inside the crop."""

    def __init__(self, boxes):
        self.boxes = [np.asarray(b, np.float64) for b in boxes]
        self.detect_calls = 0

    @staticmethod
    def offset(img):
        return float(img[0, 0, 0])

    def detect(self, img):
        self.detect_calls += 1
        o = self.offset(img)
        return [face(b + o) for b in self.boxes]

    def fit(self, img, faces, dense=False):
        from facealign_cli.core import geometry as G

        o = self.offset(img)
        for f in faces:
            if f.roi_box is None:
                f.roi_box = G.roi_box_from_detector_box(f.box)
            # the landmarks of the face nearest to the crop, on its true (moved) box
            c = (f.roi_box[:2] + f.roi_box[2:]) / 2
            b = min(self.boxes, key=lambda q: np.abs((q[:2] + q[2:]) / 2 + o - c).sum()) + o
            gx, gy = np.meshgrid(np.linspace(b[0], b[2], 17), np.linspace(b[1], b[3], 4))
            lm = np.stack([gx.ravel(), gy.ravel(), np.zeros(68)], axis=1)
            f.landmarks_3d = lm.astype(np.float32)
            f.pose = np.zeros(3, np.float32)
        return faces


def test_detector_every_k_frames_carries_tracks():
    boxes = [[20, 20, 80, 80], [150, 30, 200, 80]]
    fa = FakeAligner(boxes)
    va = VideoAligner(fa, detect_every=3)
    seen = []
    for i in range(9):
        img = np.zeros((240, 320, 3), np.uint8)
        img[0, 0, 0] = 2 * i  # the faces move 2 px per frame
        faces = va.process(img, i / 30)
        seen.append((sorted(ids(faces)), [bool(f.extra.get("carried")) for f in faces]))
        for f in faces:
            b = np.asarray(boxes[track_of(f)], np.float64) + 2 * i
            # landmarks on the moved face; carried boxes follow the landmarks
            assert np.abs(f.landmarks_3d[:, 0].min() - b[0]) < 1e-3
            assert np.abs(f.box - b).max() < 1e-3
    assert fa.detect_calls == 3 and va.detector_frames == 3
    assert all(s[0] == [0, 1] for s in seen)
    assert [any(s[1]) for s in seen] == [False, True, True] * 3


def test_carried_face_leaving_the_image_is_dropped():
    # landmarks on [-40, -40, 20, 20]: their roi box lies mostly outside the 100 x 100 image
    fa = FakeAligner([[-40, -40, 20, 20]])
    va = VideoAligner(fa, detect_every=10)
    img = np.zeros((100, 100, 3), np.uint8)
    assert ids(va.process(img)) == [0]
    assert va.process(img) == []
    assert va.tracker.tracks[0].missed == 1
    with pytest.raises(ValueError):
        VideoAligner(fa, detect_every=0)


PHOTO = "1130084326.jpg"  # three faces


@pytest.fixture(scope="module")
def three_face_video(tmp_path_factory, real_weights) -> Path:
    from model_fixtures import shared_dir

    src = shared_dir() / "data" / "photos" / "afw" / PHOTO
    if not src.is_file():
        pytest.skip(f"sample photo not found: {src}")
    img = cv2.imread(str(src))
    img = cv2.resize(img, (img.shape[1] // 2, img.shape[0] // 2))  # 512 px: quicker
    h, w = img.shape[:2]
    path = tmp_path_factory.mktemp("vid") / "three.avi"
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (w, h))
    for i in range(12):  # a slow pan, 2 px per frame
        m = np.float32([[1, 0, 2 * i - 12], [0, 1, i - 6]])
        vw.write(cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REPLICATE))
    vw.release()
    return path


def test_real_video_keeps_three_track_ids(three_face_video):
    from facealign_cli.core.pipeline import FaceAligner
    from facealign_cli.core.smoothing import FaceSmoother
    from facealign_cli.io.video import VideoReader

    va = VideoAligner(FaceAligner(num_threads=1), smoother=FaceSmoother())
    per_frame = []
    centres = {}
    for fr in VideoReader(three_face_video):
        faces = va.process(fr.image, fr.time)
        per_frame.append(sorted(ids(faces)))
        for f in faces:
            centres.setdefault(track_of(f), []).append(f.landmarks_3d[:, :2].mean(axis=0))
    assert len(per_frame) == 12
    assert all(p == [0, 1, 2] for p in per_frame), per_frame
    for k, c in centres.items():
        c = np.asarray(c)
        # each track follows one face: steps of about (2, 1) px, never a jump to another face
        assert np.abs(np.diff(c, axis=0)).max() < 8, k
