"""Overlays: the iBUG contours, pose axes (the README's rotation convention, checked against the
landmarks of real faces), and draw_faces' layers and errors."""

from __future__ import annotations

import numpy as np
import pytest

from facealign_cli.core import geometry as G
from facealign_cli.core.face import Face
from facealign_cli.render.overlay import (
    AXIS_COLORS,
    DEFAULT_DRAW,
    DRAW_CHOICES,
    IBUG_CONTOURS,
    draw_box,
    draw_faces,
    draw_landmarks,
    draw_pose_axes,
    rotation_from_pose,
)


def test_contours_cover_the_68_points_once():
    pts = [i for a, b, _ in IBUG_CONTOURS for i in range(a, b + 1)]
    assert sorted(pts) == list(range(68))
    closed = {(a, b) for a, b, c in IBUG_CONTOURS if c}
    assert closed == {(36, 41), (42, 47), (48, 59), (60, 67)}  # eyes and lips


@pytest.mark.parametrize("pose", [(0, 0, 0), (30, -10, 5), (-75, 20, -40), (10, 80, 170),
                                  (89, 0, 0)])
def test_rotation_from_pose_inverts_angles_from_rotation(pose):
    R = rotation_from_pose(pose)
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(R) == pytest.approx(1)
    back = G.angles_from_rotation(R)
    np.testing.assert_allclose(rotation_from_pose(back), R, atol=1e-9)
    if abs(pose[0]) < 89:
        np.testing.assert_allclose(back, pose, atol=1e-9)


def _colour_mask(img, bgr, tol=60):
    return (np.abs(img.astype(int) - np.array(bgr)).sum(axis=2) < tol)


def test_pose_axes_identity_and_yaw():
    img = np.zeros((200, 200, 3), np.uint8)
    out = draw_pose_axes(img, (100, 100), np.eye(3), 60, thickness=2)
    red, green = _colour_mask(out, AXIS_COLORS[0]), _colour_mask(out, AXIS_COLORS[1])
    ry, rx = np.nonzero(red)
    gy, gx = np.nonzero(green)
    assert rx.min() >= 95 and rx.max() > 150 and abs(ry.mean() - 100) < 3  # x: to the right
    assert gy.max() <= 105 and gy.min() < 50 and abs(gx.mean() - 100) < 3  # y: up
    assert not img.any()  # input untouched
    # yaw 90 (the face turns towards the image's left): its z axis points to the image's left
    out = draw_pose_axes(img, (100, 100), rotation_from_pose((90, 0, 0)), 60, thickness=2)
    by, bx = np.nonzero(_colour_mask(out, AXIS_COLORS[2]))
    assert bx.min() < 50 and bx.max() <= 105


def test_draw_box_and_landmarks():
    img = np.zeros((100, 100, 3), np.uint8)
    out = draw_box(img, [10, 20, 60, 80], label="0.93")
    assert out[50, 10].any() and out[20, 35].any() and not out[50, 35].any()
    lm = np.stack([np.linspace(20, 80, 68), np.full(68, 50.0)], axis=1)
    out = draw_landmarks(img, lm)
    assert out[50, 50].any() and not out[10, 10].any()
    with pytest.raises(ValueError):
        draw_landmarks(img, lm[:5])


def test_draw_faces_choices_and_errors():
    img = np.full((120, 160, 3), 90, np.uint8)
    f = Face(box=np.array([40, 30, 100, 100], np.float32), score=0.9)
    assert DEFAULT_DRAW == ("box", "landmarks", "pose") and set(DEFAULT_DRAW) <= set(DRAW_CHOICES)
    out = draw_faces(img, [f])
    assert (out != img).any() and (out[5, 5] == img[5, 5]).all()
    assert (draw_faces(img, [f], []) == img).all()
    with pytest.raises(ValueError, match="unknown"):
        draw_faces(img, [f], ["box", "wireframe"])
    f.vertices = np.array([[50, 40, 0], [90, 40, 0], [70, 90, -5]], np.float32)
    with pytest.raises(ValueError, match="triangles"):
        draw_faces(img, [f], ["mesh"])
    out = draw_faces(img, [f], ["depth"], triangles=np.array([[0, 1, 2]]))
    assert out[5, 5].sum() == 0 and out[60, 70].sum() > 0  # the depth image replaces the photo
    with pytest.raises(ValueError):
        draw_faces(img[:, :, 0], [f])


def test_real_faces_axes_follow_the_landmarks(afw_faces, tmp_path):
    import cv2

    tri, photos = afw_faces
    n = 0
    for path, img, faces in photos:
        out = draw_faces(img, faces, DRAW_CHOICES[:4], triangles=tri)
        assert out.shape == img.shape
        cv2.imwrite(str(tmp_path / f"{path.stem}.png"), out)
        for f in faces:
            if abs(float(f.pose[0])) > 45:
                continue
            R = rotation_from_pose(f.pose)
            lm = f.landmarks_3d[:, :2].astype(np.float64)
            eyes = lm[45] - lm[36]  # image-left eye corner to image-right one
            up = lm[27] - lm[8]  # chin to the top of the nose
            x2 = np.array([R[0, 0], -R[1, 0]])
            y2 = np.array([R[0, 1], -R[1, 1]])
            assert eyes @ x2 / np.linalg.norm(eyes) / np.linalg.norm(x2) > 0.95
            assert up @ y2 / np.linalg.norm(up) / np.linalg.norm(y2) > 0.95
            n += 1
    assert n >= 3
