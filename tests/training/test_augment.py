"""The training augmentation's detector-like roi boxes (``box_error``): a crop drawn from a
measured error lands where that error says, relative to the landmark roi box."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from facealign_cli.core import geometry as G  # noqa: E402
from facealign_cli.core.morphable_model import load_morphable_model  # noqa: E402
from facealign_cli.training.config import TrainConfig  # noqa: E402
from facealign_cli.training.data import choose_target_vertices  # noqa: E402
from facealign_cli.training.train import Augmenter, load_box_error  # noqa: E402


def _error_file(path, dx, dy, dlog):
    yaw = np.array([10.0, 45.0, -75.0, 80.0], np.float32)
    np.savez(path, yaw=yaw, dx=np.full(4, dx, np.float32), dy=np.full(4, dy, np.float32),
             dlog=np.full(4, dlog, np.float32), found=np.array([True, True, True, False]))
    return path


def _face(model, tidx, yaw_deg):
    """A face with the mean shape seen at ``yaw_deg``, filling a 120-px crop like the training
    crops (its landmark roi box about the crop)."""
    R = G.rotation_from_pose([yaw_deg, 0.0, 0.0])
    p = np.zeros(62, np.float32)
    v = model.shape(np.zeros(40), np.zeros(10))
    scale = 0.9 * 120 / np.ptp(v[:2], axis=1).max() / np.sqrt(2)
    P = np.hstack([scale * R, np.zeros((3, 1))])
    p[:12] = P.reshape(-1)
    tgt = G.params_to_crop_vertices(p[None], model, tidx)[0]
    roi = G.roi_box_from_landmarks(tgt[:2, :68].T)
    shift = 59.5 - (roi[:2] + roi[2:]) / 2
    tgt[:2] += shift[:, None]
    p[3], p[7] = p[3] + shift[0], p[7] - shift[1]
    return p, tgt.astype(np.float32)


def test_load_box_error_keeps_found_faces_by_yaw_bin(tmp_path):
    bins = load_box_error(_error_file(tmp_path / "e.npz", 0.1, 0.0, 0.0))
    assert [len(b) for b in bins] == [1, 1, 1]
    np.savez(tmp_path / "bad.npz", yaw=np.array([5.0]), dx=np.zeros(1), dy=np.zeros(1),
             dlog=np.zeros(1), found=np.array([True]))
    with pytest.raises(ValueError, match="bin"):
        load_box_error(tmp_path / "bad.npz")


@pytest.mark.parametrize("yaw", [-70.0, 70.0])
def test_a_detector_like_crop_follows_the_measured_error(tmp_path, yaw):
    model = load_morphable_model()
    tidx = choose_target_vertices(model, 40)
    dx, dy, dlog = 0.05, -0.03, np.log(1.2)
    cfg = TrainConfig(box_error=str(_error_file(tmp_path / "e.npz", dx, dy, dlog)),
                      box_error_p=1.0, flip=False, rot_deg=0.0, roi_scale=0.88, photo_p=0.0,
                      occlusion_p=0.0)
    aug = Augmenter(cfg, tidx, model, np.random.default_rng(0))
    params, tgt = _face(model, tidx, yaw)
    assert np.sign(G.pose_from_camera(params)[0]) == np.sign(yaw)
    crop = np.full((120, 120, 3), 128, np.uint8)
    _, out, _, p_out = aug(crop, tgt, np.full((68, 2), np.nan, np.float32), params)
    before = G.roi_box_from_landmarks(tgt[:2, :68].T)
    after = G.roi_box_from_landmarks(out[:2, :68].T)
    side_b, side_a = before[2] - before[0], after[2] - after[0]
    # the crop is 1.2 x 0.88 of the landmark roi: the face's roi spans 120 / (1.2 * 0.88) px
    assert side_a == pytest.approx(120 * side_b / (side_b * 1.2 * 0.88), rel=1e-3)
    # the crop's centre sits (dx * sign(yaw), dy) roi sides from the landmark roi's centre, so
    # the face's centre sits the opposite way from the crop's centre
    centre = (after[:2] + after[2:]) / 2
    want = 59.5 - np.array([dx * np.sign(yaw), dy]) * side_a
    assert centre == pytest.approx(want, abs=0.05)
    assert p_out is not None  # no mirror: the parameters follow the same similarity
