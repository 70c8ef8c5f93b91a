"""Geometry and 3DMM: parameters -> vertices against an independent computation, the crop rule,
roi boxes, and the pose convention."""

from __future__ import annotations

import math

import numpy as np
import pytest

from facealign_cli.core import geometry as G
from facealign_cli.core.morphable_model import basis_dir, load_morphable_model


def _rot(axis: str, deg: float) -> np.ndarray:
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    if axis == "y":
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _params(yaw, pitch, roll, scale=1e-3, t=(60.0, 60.0, 0.0), seed=0):
    """62 parameters with the documented pose convention: R = Rx(-pitch) Ry(-yaw) Rz(-roll)."""
    R = _rot("x", -pitch) @ _rot("y", -yaw) @ _rot("z", -roll)
    P = np.hstack([scale * R, np.asarray(t)[:, None]])
    rng = np.random.default_rng(seed)
    return np.concatenate([P.reshape(-1), rng.normal(0, 2e5, 40) * 0 + rng.normal(0, 1, 40) * 1e4,
                           rng.normal(0, 1, 10) * 0.1]).astype(np.float32)


def test_basis_layout():
    m = load_morphable_model()
    assert m.n_vertices == 53215
    assert m.w_shp.shape == (159645, 40) and m.w_exp.shape == (159645, 10)
    assert m.keypoint_rows.shape == (204,)
    # the landmark rows come in (x, y, z) triples of one vertex
    kr = m.keypoint_rows.reshape(68, 3)
    assert np.all(kr[:, 1] == kr[:, 0] + 1) and np.all(kr[:, 2] == kr[:, 0] + 2)


def test_params_to_vertices_matches_independent_computation():
    m = load_morphable_model()
    d = basis_dir()
    u = np.load(d / "u_shp.npy").astype(np.float64).ravel() + np.load(d / "u_exp.npy").ravel()
    ws = np.load(d / "w_shp_sim.npy").astype(np.float64)
    we = np.load(d / "w_exp_sim.npy").astype(np.float64)
    p = _params(20, -10, 5).astype(np.float64)
    P = p[:12].reshape(3, 4)
    idx = np.array([0, 17, 21873, 40000, 53214])
    got = G.params_to_crop_vertices(p, m, idx)
    for j, k in enumerate(idx):
        rows = slice(3 * k, 3 * k + 3)
        s = u[rows] + ws[rows] @ p[12:52] + we[rows] @ p[52:62]
        v = P[:, :3] @ s + P[:, 3]
        expect = np.array([v[0] - 1, 120 - v[1], v[2]])
        np.testing.assert_allclose(got[:, j], expect, rtol=1e-4, atol=1e-2)
    # batched call equals single calls
    pb = np.stack([p, _params(-40, 5, 0, seed=1)])
    vb = G.params_to_crop_vertices(pb, m, idx)
    np.testing.assert_allclose(vb[0], got, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("yaw,pitch,roll", [(0, 0, 0), (30, 0, 0), (-60, 10, 5), (15, -20, 25),
                                            (75, 5, -10)])
def test_pose_roundtrip(yaw, pitch, roll):
    got = G.pose_from_camera(_params(yaw, pitch, roll))
    np.testing.assert_allclose(got, [yaw, pitch, roll], atol=1e-3)


def test_pose_signs_mean_what_the_docs_say():
    """Positive yaw: the nose moves towards the image's left; positive pitch: the nose moves up
    in the image; positive roll: the top of the head moves towards the image's right."""
    m = load_morphable_model()
    nose, forehead = m.keypoint_vertices[30], m.keypoint_vertices[27]

    def img_xy(p, vi):
        return G.params_to_crop_vertices(p, m, np.array([vi]))[:2, 0]

    x0, y0 = img_xy(_params(0, 0, 0), nose)
    assert img_xy(_params(30, 0, 0), nose)[0] < x0 - 5
    assert img_xy(_params(0, 25, 0), nose)[1] < y0 - 3
    # roll: the forehead (above the nose) moves to the right in the image
    fx = img_xy(_params(0, 0, 0), forehead)[0]
    assert img_xy(_params(0, 0, 20), forehead)[0] > fx + 1


def test_roi_box_from_landmarks_rule():
    pts = np.array([[10, 20], [50, 20], [10, 100], [50, 100]], dtype=np.float32)
    roi = G.roi_box_from_landmarks(pts)
    side = 80 * math.sqrt(2)
    np.testing.assert_allclose(roi, [30 - side / 2, 60 - side / 2, 30 + side / 2, 60 + side / 2],
                               rtol=1e-6)


def test_crop_roi_zero_pads_and_places_pixels():
    img = np.zeros((50, 60, 3), np.uint8)
    img[10:20, 30:40] = 200
    crop = G.crop_roi(img, np.array([-20, -10, 40, 50]), size=60)  # 60 x 60, 1:1 scale
    assert crop.shape == (60, 60, 3)
    assert crop[0:10].max() == 0 and crop[:, 0:20].max() == 0  # outside the image
    assert crop[25, 55].tolist() == [200, 200, 200]  # image pixel (50-20=30.., 10+10=20..)
    assert crop[20:30, 50:60].min() == 200
    with pytest.raises(ValueError):
        G.crop_roi(img, np.array([5, 5, 5, 9]))


def test_crop_to_image_inverts_the_crop_mapping():
    roi = np.array([100.0, 50.0, 340.0, 290.0])  # 240 px -> scale 2
    v = np.array([[0.0, 60.0, 119.0], [0.0, 30.0, 119.0], [10.0, -4.0, 0.0]])
    out = G.crop_to_image(v, roi)
    np.testing.assert_allclose(out[0], [100, 220, 338])
    np.testing.assert_allclose(out[1], [50, 110, 288])
    np.testing.assert_allclose(out[2], [-20, 8, 0])  # z scaled by 2 and flipped


def test_subset_model_gives_the_same_vertices():
    m = load_morphable_model()
    idx = np.array([5, 21873, 100, 40000] + list(m.keypoint_vertices))
    sub = m.subset(idx)
    p = _params(25, 5, -3)
    np.testing.assert_allclose(G.params_to_crop_vertices(p, sub),
                               G.params_to_crop_vertices(p, m, idx), rtol=1e-5, atol=1e-3)
    np.testing.assert_array_equal(idx[sub.keypoint_vertices], m.keypoint_vertices)
    with pytest.raises(ValueError):
        m.subset(np.array([0, 1, 2]))


def test_scale_roi_box_about_its_centre():
    got = G.scale_roi_box(np.array([10.0, 20.0, 110.0, 120.0]), 0.88)  # centre (60, 70), side 100
    np.testing.assert_allclose(got, [16.0, 26.0, 104.0, 114.0], atol=1e-5)
    assert got.dtype == np.float32
    boxes = np.array([[0.0, 0.0, 10.0, 10.0], [-4.0, 2.0, 4.0, 10.0]])
    np.testing.assert_allclose(G.scale_roi_box(boxes, 1.5),
                               [[-2.5, -2.5, 12.5, 12.5], [-6.0, 0.0, 6.0, 12.0]])
    np.testing.assert_array_equal(G.scale_roi_box(boxes, 1.0), boxes)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="roi crop scale"):
            G.scale_roi_box(boxes, bad)


def test_roi_box_from_landmarks_crop_scale():
    pts = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 20.0], [10.0, 20.0]])  # centre (5, 10)
    half = 10 * math.sqrt(2.0)  # max(w, h) / 2 * sqrt(2)
    np.testing.assert_allclose(G.roi_box_from_landmarks(pts),
                               [5 - half, 10 - half, 5 + half, 10 + half], rtol=1e-6)
    h = 0.88 * half
    np.testing.assert_allclose(G.roi_box_from_landmarks(pts, 0.88),
                               [5 - h, 10 - h, 5 + h, 10 + h], rtol=1e-6)
    assert G.ROI_CROP_SCALE == 0.88  # the documented measurement (geometry.py) is for 0.88
