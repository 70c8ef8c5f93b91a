"""The stability benchmark (facealign_cli.evaluation.stability) and ``facealign evaluate
stability``: the synthetic similarities, the metrics, the plumbing with a fake pipeline whose
noise is known, and a quick real run on two AFW photos."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from facealign_cli.core.face import Face
from facealign_cli.core.smoothing import LANDMARK_DEFAULTS, FaceSmoother, OneEuroParams
from facealign_cli.core.tracking import VideoAligner
from facealign_cli.evaluation import stability as S


def test_similarity_roundtrip_and_ranges():
    rng = np.random.default_rng(0)
    ms = S.random_similarities(200, (100.0, 80.0), rng)
    assert ms.shape == (200, 2, 3)
    a = ms[:, :, :2]
    scale = np.sqrt(np.linalg.det(a))
    rot = np.degrees(np.arctan2(a[:, 1, 0], a[:, 0, 0]))
    shift = np.stack([S.apply_affine(m, np.array([100.0, 80.0])) for m in ms]) - [100, 80]
    assert S.SCALE_RANGE[0] <= scale.min() and scale.max() <= S.SCALE_RANGE[1]
    assert np.abs(rot).max() <= S.ROTATION_DEG and np.abs(rot).max() > 2.5
    assert np.abs(shift).max() <= S.SHIFT_PX  # the centre moves by the shift alone
    pts = rng.uniform(0, 200, (68, 2))
    for m in ms[:5]:
        np.testing.assert_allclose(S.apply_affine(S.invert_affine(m), S.apply_affine(m, pts)),
                                   pts, atol=1e-9)
    # fixed seed, fixed video
    np.testing.assert_array_equal(S.random_similarities(5, (0, 0), np.random.default_rng(3)),
                                  S.random_similarities(5, (0, 0), np.random.default_rng(3)))


def test_warp_matches_the_matrix():
    img = np.zeros((120, 160, 3), np.uint8)
    img[40:44, 60:64] = 255
    m = S.similarity_matrix(1.03, 2.0, (4.0, -3.0), (80, 60))
    out = S.warp(img, m)
    ys, xs = np.nonzero(out[..., 0] > 127)
    np.testing.assert_allclose([xs.mean(), ys.mean()], S.apply_affine(m, [61.5, 41.5]),
                               atol=0.6)


def test_moving_trajectory_is_smooth():
    ms = S.moving_trajectory(45, 30.0, 100.0, (200, 200))
    c = np.stack([S.apply_affine(m, [250.0, 250.0]) for m in ms])
    step = np.linalg.norm(np.diff(c, axis=0), axis=1)
    assert step.max() < 3.0 and np.ptp(c[:, 0]) > 15  # moves about 0.25 face, in small steps


def test_metrics():
    base = np.zeros((4, 68, 2))
    base[1::2, :, 0] = 2.0  # alternating 0, 2, 0, 2 px on x
    assert S.jitter(base) == pytest.approx(1.0)
    assert S.frame_motion(base) == pytest.approx(2.0)
    assert math.isnan(S.frame_motion(base[:1]))


class NoisyAligner:
    """A fake pipeline: the 'face' is the bright 120 x 80 rectangle of the synthetic photo; its
    68 landmarks are a grid on the rectangle, found from the image moments (centre, area,
    orientation), plus i.i.d. noise of ``sigma`` px."""

    def __init__(self, sigma=1.0, seed=0):
        self.sigma, self.rng = sigma, np.random.default_rng(seed)

    @staticmethod
    def _rect(img):
        m = cv2.moments((img[..., 0] > 127).astype(np.float32))
        cx, cy = m["m10"] / m["m00"], m["m01"] / m["m00"]
        th = 0.5 * math.atan2(2 * m["mu11"], m["mu20"] - m["mu02"])
        return cx, cy, math.sqrt(m["m00"] * 1.5) / 2, math.sqrt(m["m00"] / 1.5) / 2, th

    def detect(self, img):
        cx, cy, hw, hh, _ = self._rect(img)
        return [Face(box=np.array([cx - hw, cy - hh, cx + hw, cy + hh], np.float32),
                     score=0.9)]

    def fit(self, img, faces, dense=False):
        for f in faces:
            cx, cy, hw, hh, th = self._rect(img)
            gx, gy = np.meshgrid(np.linspace(-hw, hw, 17), np.linspace(-hh, hh, 4))
            c, s = math.cos(th), math.sin(th)
            lm = np.stack([c * gx.ravel() - s * gy.ravel() + cx,
                           s * gx.ravel() + c * gy.ravel() + cy], 1)
            lm += self.rng.normal(0, self.sigma, lm.shape)
            f.landmarks_3d = np.hstack([lm, np.zeros((68, 1))]).astype(np.float32)
            f.pose = np.zeros(3, np.float32)
        return faces

    def __call__(self, img, dense=False):
        return self.fit(img, self.detect(img))


def test_evaluate_photo_with_known_noise():
    photo = np.zeros((300, 300, 3), np.uint8)
    photo[110:190, 90:210] = 255
    al = NoisyAligner(sigma=1.0)
    al.sigma = 0.0
    va = VideoAligner(al, smoother=FaceSmoother(LANDMARK_DEFAULTS))
    res = S.evaluate_photo(al, va, photo, "square", frames=8, moving_frames=8, fps=30.0,
                           seed=0, smooth=LANDMARK_DEFAULTS)
    # no noise: the landmarks mapped back stay put (within the moments' sub-pixel error)
    assert res.faces == 1 and res.jitter_raw[0] < 0.5 and res.moving_error_raw[0] < 0.5
    al.sigma = 1.0  # 1 px on a 98 px face: jitter about 1.25 %
    res = S.evaluate_photo(al, va, photo, "square", frames=40, moving_frames=40, fps=30.0,
                           seed=0, smooth=LANDMARK_DEFAULTS)
    assert 0.9 < res.jitter_raw[0] < 1.6
    assert res.jitter_smoothed[0] < 0.6 * res.jitter_raw[0]
    assert res.motion_smoothed[0] < res.motion_raw[0]
    assert res.tracks_per_face_jitter == [1.0] and res.tracks_per_face_moving == [1.0]
    assert res.frames == 80 and res.detector_frames == 80
    figs, per = S.summarise_stability(S.StabilityRun([res], {}))
    assert figs["faces"] == figs["faces_tracked"] == 1
    assert figs["jitter"]["ratio"] == pytest.approx(res.jitter_smoothed[0] / res.jitter_raw[0])
    assert per["square"]["faces"] == 1


def test_annotations_select_the_faces():
    photo = np.zeros((300, 300, 3), np.uint8)
    photo[110:190, 90:210] = 255
    al = NoisyAligner(sigma=0.5)
    va = VideoAligner(al)
    kw = dict(frames=4, moving_frames=4, fps=30.0, seed=0, smooth=LANDMARK_DEFAULTS)
    on_face = np.stack(np.meshgrid(np.linspace(92, 208, 17), np.linspace(112, 188, 4)),
                       -1).reshape(68, 2)
    assert S.evaluate_photo(al, va, photo, "a", annotated=[on_face], **kw).faces == 1
    assert S.evaluate_photo(al, va, photo, "b", annotated=[on_face + 150], **kw).faces == 0
    assert S.evaluate_photo(al, va, photo, "c", annotated=[], **kw).faces == 0


def test_photo_without_faces_counts():
    class Blind(NoisyAligner):
        def __call__(self, img, dense=False):
            return []

    al = Blind()
    res = S.evaluate_photo(al, VideoAligner(al), np.zeros((50, 50, 3), np.uint8), "empty",
                           frames=3, moving_frames=3, fps=30.0, seed=0,
                           smooth=LANDMARK_DEFAULTS)
    figs, _ = S.summarise_stability(S.StabilityRun([res], {}))
    assert figs["photos_without_faces"] == 1 and figs["faces"] == 0
    assert math.isnan(figs["jitter"]["raw"])


def test_cli_stability_on_two_afw_photos(afw_annotated_dir, real_weights, tmp_path):
    from facealign_cli.cli.evaluate import evaluate

    out = tmp_path / "st.json"
    md = tmp_path / "st.md"
    r = CliRunner().invoke(evaluate, [
        "stability", str(afw_annotated_dir), "--limit", "2", "--frames", "6",
        "--moving-frames", "6", "--json", str(out), "--markdown", str(md), "--per-image",
        "--annotations", str(afw_annotated_dir / "annotations.json")])
    assert r.exit_code == 0, r.output
    assert "Jitter raw" in r.output and "smoothed" in r.output and "Frames/s" in r.output
    assert "Pose jitter raw" in r.output
    doc = json.loads(out.read_text())
    assert doc["command"] == "facealign evaluate stability"
    fig = doc["results"]["facealign"]
    assert doc["settings"]["photos"] == 2 and doc["settings"]["frames"] == 6
    assert doc["settings"]["faces"].startswith("detections matched to an annotated face")
    assert fig["faces_tracked"] >= 1
    for k in ("jitter", "motion", "moving_error", "pose_jitter", "pose_error"):
        assert fig[k]["raw"] > 0 and fig[k]["smoothed"] > 0
    assert doc["settings"]["smoothing_pose"]["speed"] == "shared"
    assert fig["speed"]["frames"] == fig["speed"]["detector_frames"] == 2 * 12
    assert len(doc["per_image"]["facealign"]) == 2
    assert "## Stability on synthetic videos" in md.read_text()


def test_cli_stability_setup_errors(tmp_path):
    from facealign_cli.cli.evaluate import evaluate

    r = CliRunner().invoke(evaluate, ["stability", str(tmp_path)])
    assert r.exit_code == 2 and "holds no photos" in r.output


def test_pose_back_undoes_the_in_plane_rotation():
    from facealign_cli.evaluation import stability_pose as SP

    m = S.similarity_matrix(1.03, 2.5, (4.0, -3.0), (80, 60))
    assert SP.rotation_deg(m) == pytest.approx(2.5)
    np.testing.assert_allclose(SP.pose_back([10.0, -5.0, 3.0], m), [10.0, -5.0, 0.5])
    np.testing.assert_allclose(SP.pose_back([0.0, 0.0, -179.0], S.similarity_matrix(
        1.0, 2.0, (0, 0), (0, 0))), [0.0, 0.0, 179.0])  # wrapped to +-180
    seq = np.array([[1.0, 2.0, 179.0], [1.0, 2.0, -179.0]])
    assert SP.pose_jitter(seq) == pytest.approx(1.0 / 3)  # across +-180: 1 deg of roll each
    assert SP.pose_error(seq, [1.0, 2.0, 180.0]) == pytest.approx(1.0 / 3)


class PosedAligner(NoisyAligner):
    """NoisyAligner whose head pose follows the rectangle: roll = ``roll0 + sign * orientation``
    (the image moments' angle, clockwise positive as seen), plus noise of ``pose_sigma``
    degrees on each angle."""

    def __init__(self, sign=1.0, pose_sigma=0.0, **kw):
        super().__init__(**kw)
        self.sign, self.pose_sigma = sign, pose_sigma

    def fit(self, img, faces, dense=False):
        faces = super().fit(img, faces)
        th = math.degrees(self._rect(img)[4])
        for f in faces:
            f.pose = (np.array([12.0, -4.0, 10.0 + self.sign * th])
                      + self.rng.normal(0, self.pose_sigma, 3)).astype(np.float32)
        return faces


def _photo():
    photo = np.zeros((300, 300, 3), np.uint8)
    photo[110:190, 90:210] = 255
    return photo


def test_pose_following_the_known_rotation_has_no_mapped_back_jitter():
    kw = dict(frames=30, moving_frames=30, fps=30.0, seed=0, smooth=LANDMARK_DEFAULTS)
    al = PosedAligner(sigma=0.0)
    res = S.evaluate_photo(al, VideoAligner(al, smoother=FaceSmoother()), _photo(), "p", **kw)
    assert res.pose_jitter_raw[0] < 0.1 and res.pose_error_raw[0] < 0.1
    # the wrong sign (roll + theta) leaves twice the rotations (+-3 deg) in the jitter
    al = PosedAligner(sign=-1.0, sigma=0.0)
    res = S.evaluate_photo(al, VideoAligner(al, smoother=FaceSmoother()), _photo(), "p", **kw)
    assert res.pose_jitter_raw[0] > 0.5 and res.pose_error_raw[0] > 0.5


def test_pose_figures_with_noise_summary_and_table():
    al = PosedAligner(sigma=0.5, pose_sigma=1.0)
    low = OneEuroParams(min_cutoff=0.3, beta=0.0, d_cutoff=1.0, speed="shared")  # 0.3 Hz
    res = S.evaluate_photo(al, VideoAligner(al, smoother=FaceSmoother(pose=low)), _photo(),
                           "p", frames=40, moving_frames=40, fps=30.0, seed=0,
                           smooth=LANDMARK_DEFAULTS, smooth_pose=low)
    # 1 deg of noise per angle: mean absolute deviation about 0.8 deg
    assert 0.6 < res.pose_jitter_raw[0] < 1.0
    assert res.pose_jitter_smoothed[0] < 0.5 * res.pose_jitter_raw[0]
    assert res.pose_error_smoothed[0] > res.pose_error_raw[0]  # 0.3 Hz lags the +-5 deg roll
    none = S.evaluate_photo(al, VideoAligner(al), _photo(), "q", frames=5, moving_frames=5,
                            fps=30.0, seed=0, smooth=LANDMARK_DEFAULTS, smooth_pose=None)
    assert math.isnan(none.pose_jitter_smoothed[0]) and math.isnan(none.pose_error_smoothed[0])
    figs, per = S.summarise_stability(S.StabilityRun([res], {}))
    for k in ("jitter", "motion", "moving_error"):  # the landmark keys are kept
        assert figs[k]["raw"] > 0
    assert figs["pose_jitter"]["raw"] == pytest.approx(res.pose_jitter_raw[0])
    assert figs["pose_jitter"]["ratio"] == pytest.approx(
        res.pose_jitter_smoothed[0] / res.pose_jitter_raw[0])
    assert figs["pose_error"]["smoothed"] == pytest.approx(res.pose_error_smoothed[0])
    assert per["p"]["pose_jitter_raw"] == res.pose_jitter_raw
    settings = {"frames": 40, "moving_frames": 40, "fps": 30.0, "seed": 0, "moving": "m",
                "detect_every": 1, "smoothing": LANDMARK_DEFAULTS.__dict__,
                "smoothing_pose": {"min_cutoff": 0.1, "beta": 0.3, "d_cutoff": 1.0,
                                   "dead_zone": 5.0}}
    doc = {"results": {"a": figs}, "methods": {"a": {"label": "A"}}, "settings": settings}
    tabs = S.stability_tables(doc)
    pose = [t for t in tabs if t.title.startswith("Head-pose")]
    assert len(tabs) == 3 and len(pose) == 1
    assert pose[0].rows[0][:3] == ["A", f"{figs['pose_jitter']['raw']:.3f}",
                                   f"{figs['pose_jitter']['smoothed']:.3f}"]
    assert "dead zone 5 deg/s" in pose[0].notes[-1]
    # an older document without pose figures still renders (no pose table)
    old = {k: v for k, v in figs.items() if not k.startswith("pose_")}
    doc = {"results": {"a": old}, "methods": {"a": {"label": "A"}},
           "settings": {k: v for k, v in settings.items() if k != "smoothing_pose"}}
    assert [t.title for t in S.stability_tables(doc)] == [tabs[0].title, tabs[2].title]
