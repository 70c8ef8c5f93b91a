"""Track ids across frames (IoU or face-size distance gate + linear_sum_assignment), track ends
after max_missed frames, the detector every k-th frame, and end-to-end runs on videos built from
real photos with several faces (a slow pan; the stability benchmark's jitter)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from facealign_cli.core.boxes import box_iou
from facealign_cli.core.face import Face
from facealign_cli.core.tracking import (
    DEFAULT_MAX_DISTANCE,
    DEFAULT_MAX_MISSED,
    DEFAULT_MAX_SIZE_RATIO,
    FaceTracker,
    VideoAligner,
    duplicate_detections,
    pair_costs,
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


def test_far_face_starts_a_new_track():
    tr = FaceTracker()
    tr.update([face([0, 0, 100, 100])])
    # IoU 0, centres 1.6 face sizes apart (> DEFAULT_MAX_DISTANCE = 1.5)
    assert ids(tr.update([face([160, 0, 260, 100])])) == [1]


def test_pair_costs_gate_in_face_sizes():
    t = np.array([[0, 0, 40, 40.0]])
    b = np.array([[30, 0, 70, 40],      # IoU 10/70, d 0.75: gated in by distance
                  [0, 0, 40, 40],       # same box: cost 0
                  [10, 10, 30, 30],     # inside, size ratio 2: IoU 0.25 < 0.3, ratio > 1.5
                  [100, 0, 140, 40.0]])  # d 2.5 > 1.5
    cost, ok = pair_costs(t, b, 0.3, DEFAULT_MAX_DISTANCE, DEFAULT_MAX_SIZE_RATIO)
    assert cost.shape == ok.shape == (1, 4)
    # gated-out pairs cost 2 + max_distance, more than any pair within the gate
    np.testing.assert_allclose(cost[0], [1 - 160 / 1120 + 0.75, 0.0, 3.5, 3.5])
    assert ok[0].tolist() == [True, True, False, False]
    # the IoU gate alone (max_distance 0): only the same box
    assert pair_costs(t, b, 0.3, 0.0, 1.5)[1][0].tolist() == [False, True, False, False]
    with pytest.raises(ValueError):
        FaceTracker(max_distance=-1)
    with pytest.raises(ValueError):
        FaceTracker(max_size_ratio=0.9)


def test_a_pair_outside_the_gate_never_takes_the_face_from_one_inside():
    """A small face (40 px) jumps 0.7 face sizes (IoU 0.14) next to a large false detection's
    track (190 px) whose plain cost 1 - IoU + d would be lower (size ratio 4.75: gated out):
    the face keeps its own track."""
    small, big = np.array([320, 160, 360, 200.0]), np.array([190, 120, 380, 310.0])
    det = np.array([300, 140, 340, 180.0])
    tr = FaceTracker(duplicate_ratio=0)   # the gate alone (the big box holds the face)
    assert ids(tr.update([face(small), face(big)])) == [0, 1]
    cost, ok = pair_costs(np.stack([small, big]), det[None], 0.3, DEFAULT_MAX_DISTANCE,
                          DEFAULT_MAX_SIZE_RATIO)
    iou = box_iou(np.stack([small, big]), det[None])[:, 0]
    assert ok[:, 0].tolist() == [True, False]
    assert 1 - iou[1] + 65.0 / 115 < cost[0, 0]   # the big track's ungated cost is lower
    assert ids(tr.update([face(det)])) == [0]


@pytest.mark.parametrize("max_distance, same", [(DEFAULT_MAX_DISTANCE, True), (0.0, False)])
def test_small_face_jumping_beyond_its_iou_keeps_its_id(max_distance, same):
    """A 30 px face moving 25 px (IoU 0.09, 0.83 face sizes) keeps its id with the distance
    gate, and gets a new one with the IoU gate alone."""
    tr = FaceTracker(max_distance=max_distance)
    tr.update([face([300, 300, 330, 330])])
    got = ids(tr.update([face([325, 300, 355, 330])]))
    assert (got == [0]) is same


def test_nearby_small_faces_never_swap_or_share():
    """Two 30 px faces 12 px apart jump together by up to 0.85 face sizes a frame (independent
    jumps, as in the jitter video, often beyond the IoU gate) in any detector order, one of
    them sometimes missed: each keeps its id, and a missed face's track is never given to the
    other face. (A jump of more than half the centres' spacing towards a missed neighbour
    cannot be told from a swap by any rule on the last boxes; the jumps stay below it.)"""
    rng = np.random.default_rng(0)
    base = {0: np.array([100, 100, 130, 130.0]), 1: np.array([142, 100, 172, 130.0])}
    tr = FaceTracker()
    assert ids(tr.update([face(base[0]), face(base[1])])) == [0, 1]
    prev, low_iou = np.zeros(4), 0
    for _ in range(300):
        shift = np.tile(rng.uniform(-9, 9, 2), 2)
        shown = [k for k in (0, 1) if rng.uniform() > 0.3] or [0]
        shown = [int(k) for k in rng.permutation(shown)]
        got = ids(tr.update([face(base[k] + shift) for k in shown]))
        assert got == shown
        low_iou += box_iou(base[0] + prev, (base[0] + shift)[None])[0] < 0.3
        prev = shift
    assert low_iou > 10   # the IoU gate alone would have split the tracks


def test_twice_larger_concentric_box_is_not_the_same_track():
    tr = FaceTracker()
    tr.update([face([100, 100, 140, 140])])
    assert ids(tr.update([face([80, 80, 160, 160])])) == [1]  # IoU 0.25, size ratio 2


def _duplicate_clip(rng):
    """12 frames of a jittering 40 px face (score 0.9) and, on every other frame, the
    detector's duplicate: a concentric box 1.7 times its size (score 0.5), shifted a little."""
    for k in range(12):
        b = np.array([100, 100, 140, 140.0]) + rng.uniform(-3, 3, 4)
        c, half = (b[:2] + b[2:]) / 2 + rng.uniform(-5, 5, 2), 1.7 * 20
        dup = face(np.concatenate([c - half, c + half]), 0.5)
        if k % 2:
            yield [face(b, 0.9), dup]
        else:   # the duplicate first on some frames: the order does not matter
            yield [dup, face(b, 0.9)] if k % 4 == 2 else [face(b, 0.9)]


def test_duplicate_box_of_a_face_gets_no_track():
    tr = FaceTracker()
    seen = set()
    for fs in _duplicate_clip(np.random.default_rng(0)):
        kept = tr.update(fs)
        assert [f.score for f in kept] == [0.9]   # the duplicate is dropped, not tracked
        assert all(f.track is None for f in fs if f.score == 0.5)
        seen.update(ids(kept))
    assert seen == {0}
    # without the rule the duplicate makes extra tracks (the rule is what this test checks)
    tr = FaceTracker(duplicate_ratio=0)
    seen = {t for fs in _duplicate_clip(np.random.default_rng(0)) for t in ids(tr.update(fs))}
    assert len(seen) > 1


def test_duplicate_rule_keeps_the_higher_score_whatever_the_size():
    small, big = [100, 100, 140, 140], [86, 86, 154, 154]   # concentric, size ratio 1.7
    assert duplicate_detections(np.array([small, big]), np.array([0.9, 0.5])).tolist() == [
        False, True]
    assert duplicate_detections(np.array([small, big]), np.array([0.5, 0.9])).tolist() == [
        True, False]
    # a tie: the first one stays
    assert duplicate_detections(np.array([big, small]), np.array([0.7, 0.7])).tolist() == [
        False, True]
    # ratio below 1.3 (1.2), or the smaller box's centre outside the larger: both kept
    assert not duplicate_detections(np.array([small, [96, 96, 144, 144]]),
                                    np.array([0.9, 0.5])).any()
    assert not duplicate_detections(np.array([small, [125, 100, 193, 168]]),
                                    np.array([0.9, 0.5])).any()
    assert not duplicate_detections(np.array([small, big]), np.array([0.9, 0.5]), 0).any()
    assert duplicate_detections(np.zeros((0, 4)), np.zeros(0)).shape == (0,)


def test_neighbouring_faces_are_not_duplicates():
    """Faces of different sizes side by side (gaps of 0.3 face sizes, as in the tuning set's
    packed composites and group photos), and two overlapping faces of similar size (one in
    front of the other): every face keeps its own track on every frame."""
    tr = FaceTracker()
    boxes = np.array([[100, 100, 160, 160], [178, 90, 278, 190], [60, 100, 92, 132],
                      [300, 100, 360, 160], [330, 120, 396, 186]], np.float64)
    scores = [0.9, 0.6, 0.95, 0.8, 0.5]
    rng = np.random.default_rng(1)
    for _ in range(8):
        fs = [face(b + rng.uniform(-2, 2, 4), s) for b, s in zip(boxes, scores)]
        assert ids(tr.update(fs)) == [0, 1, 2, 3, 4]


def test_video_aligner_drops_duplicates():
    fa = FakeAligner([[20, 20, 80, 80]])
    fa.detect = lambda img: [face([20, 20, 80, 80], 0.9), face([0, 0, 100, 100], 0.5)]
    va = VideoAligner(fa)
    assert va.tracker.duplicate_ratio == 1.3
    for _ in range(3):
        faces = va.process(np.zeros((120, 120, 3), np.uint8))
        assert [(track_of(f), f.score) for f in faces] == [(0, 0.9)]
    assert len(VideoAligner(fa, duplicate_ratio=0).process(np.zeros((120, 120, 3), np.uint8))) \
        == 2
    with pytest.raises(ValueError):
        FaceTracker(duplicate_ratio=0.5)


def test_face_hidden_longer_than_max_missed_gets_a_new_id_even_nearby():
    tr = FaceTracker(max_missed=3)
    tr.update([face([0, 0, 40, 40])])
    for _ in range(4):
        tr.update([])
    assert tr.ended == [0]
    assert ids(tr.update([face([10, 0, 50, 40])])) == [1]


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
        seen.append((sorted(ids(faces)), [f.carried for f in faces]))
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
    t = VideoAligner(fa, max_missed=2, max_distance=0.5, max_size_ratio=1.2).tracker
    assert (t.max_missed, t.max_distance, t.max_size_ratio) == (2, 0.5, 1.2)


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


HELEN_FACES = 3  # the first crops of 300-W HELEN train (sorted names), single faces


@pytest.fixture(scope="module")
def small_faces_photo():
    """1024 x 768 grey canvas with three 300-W HELEN training crops pasted far from the centre
    of the faces (faces about 50 px: left, right, bottom), and their 68-point boxes."""
    from model_fixtures import shared_dir

    src = shared_dir() / "data" / "300w-train" / "helen"
    files = sorted((src / "images").glob("*.jpg"))[:HELEN_FACES]
    if len(files) < HELEN_FACES or not (src / "labels.npz").is_file():
        pytest.skip(f"300-W HELEN crops not found in {src}")
    lab = np.load(src / "labels.npz")
    row = {Path(str(n)).stem: i for i, n in enumerate(lab["names"])}
    canvas = np.full((768, 1024, 3), 128, np.uint8)
    boxes = []
    for f, (cx, cy) in zip(files, [(150, 300), (870, 300), (510, 680)]):
        pts = lab["pts68"][row[f.stem]].astype(np.float64)
        size = np.sqrt(np.prod(pts.max(axis=0) - pts.min(axis=0)))
        s = 50.0 / size
        img = cv2.resize(cv2.imread(str(f)), None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        p = (pts + 0.5) * s - 0.5
        x0 = int(cx - (p[:, 0].min() + p[:, 0].max()) / 2)
        y0 = int(cy - (p[:, 1].min() + p[:, 1].max()) / 2)
        canvas[y0:y0 + img.shape[0], x0:x0 + img.shape[1]] = img
        p += [x0, y0]
        boxes.append(np.concatenate([p.min(axis=0), p.max(axis=0)]))
    return canvas, np.array(boxes)


def test_jitter_video_of_small_far_faces_keeps_one_id_per_face(small_faces_photo, real_weights):
    """The stability benchmark's jitter video (random similarities about the faces' centre):
    the faces jump by more than their IoU tolerance between frames; every face keeps one track
    and no track holds two faces."""
    from facealign_cli.core.pipeline import FaceAligner
    from facealign_cli.evaluation import stability as S

    photo, boxes = small_faces_photo
    centre = tuple(((boxes[:, :2] + boxes[:, 2:]) / 2).mean(axis=0))
    ms = S.random_similarities(20, centre, np.random.default_rng(0))
    # the video: the true boxes of consecutive frames overlap by less than 0.3 at times
    corners = boxes[:, [[0, 1], [2, 1], [0, 3], [2, 3]]]   # (faces, 4, 2)
    true = np.array([[S._box(S.apply_affine(m, c)) for c in corners] for m in ms])
    low = [box_iou(true[i, k], true[i + 1, k][None])[0] < 0.3
           for i in range(len(ms) - 1) for k in range(len(boxes))]
    assert sum(low) >= 5
    va = VideoAligner(FaceAligner(num_threads=1))
    owners: dict = {}
    for m in ms:
        inv = S.invert_affine(m)
        for f in va.process(S.warp(photo, m)):
            iou = box_iou(S._box(S.apply_affine(inv, f.landmarks_3d[:, :2])), boxes)
            owners.setdefault(track_of(f), []).append(int(np.argmax(iou)) if iou.max() > 0.3
                                                      else -1)
    on_faces = {t: set(o) - {-1} for t, o in owners.items()}
    assert all(len(v) <= 1 for v in on_faces.values()), owners   # never two faces
    per_face = [sum(1 for v in on_faces.values() if v == {k}) for k in range(len(boxes))]
    assert per_face == [1] * len(boxes), owners


def test_carried_faces_crop_at_the_aligners_roi_crop_scale():
    """Between detector frames a track is cropped at its previous landmarks' roi box times the
    aligner's crop scale (1 for aligners without one)."""
    from facealign_cli.core import geometry as G

    class Tight(FakeAligner):
        roi_crop_scale = 0.5

    for fa, scale in ((FakeAligner([[100, 60, 180, 140]]), 1.0),
                      (Tight([[100, 60, 180, 140]]), 0.5)):
        va = VideoAligner(fa, detect_every=2)
        img = np.zeros((240, 320, 3), np.uint8)
        first = va.process(img)[0]
        prev = first.landmarks_3d[:, :2].copy()
        carried = va.process(img)[0]
        # typed fields, not the free-form ``extra``, carry the track and the carried flag
        assert carried.carried and not first.carried
        assert first.track == carried.track == 0 and first.extra == carried.extra == {}
        np.testing.assert_allclose(carried.roi_box, G.roi_box_from_landmarks(prev, scale))
        if scale != 1:
            side = G.roi_box_from_landmarks(prev)
            assert carried.roi_box[2] - carried.roi_box[0] == pytest.approx(
                0.5 * (side[2] - side[0]), rel=1e-5)
