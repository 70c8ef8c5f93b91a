"""Overlays: the iBUG contours, pose axes (the README's rotation convention, checked against the
landmarks of real faces), and draw_faces' layers and errors."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from facealign_cli.core import geometry as G
from facealign_cli.core.face import Face, face_rotation
from facealign_cli.core.geometry import rotation_from_pose
from facealign_cli.render.overlay import (
    AXIS_COLORS,
    DEFAULT_DRAW,
    DRAW_CHOICES,
    IBUG_CONTOURS,
    NOSE_TIP,
    draw_box,
    draw_faces,
    draw_landmarks,
    draw_pose_axes,
    face_length,
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


def _axis_tip(img, k, origin):
    """(x, y) of the pixel of axis k's colour farthest from ``origin``: the arrow's tip."""
    ys, xs = np.nonzero(_colour_mask(img, AXIS_COLORS[k]))
    assert xs.size, f"axis {k} not drawn"
    i = np.argmax(np.hypot(xs - origin[0], ys - origin[1]))
    return np.array([xs[i], ys[i]], np.float64)


def _check_axes_follow_rotation(face, R, min_len=15.0, tol=3.0):
    """Draw only the pose layer of ``face`` on black and check that every axis long enough on
    screen ends where ``R``'s column projects: ``nose + length * (R[0, k], -R[1, k])``.
    Returns how many axes were checked."""
    h = int(np.ceil(face.landmarks_3d[:, 1].max())) + 200
    w = int(np.ceil(face.landmarks_3d[:, 0].max())) + 200
    out = draw_faces(np.zeros((h, w, 3), np.uint8), [face], ["pose"], scores=False)
    o = face.landmarks_3d[NOSE_TIP, :2].astype(np.float64)
    L = face_length(face)
    n = 0
    for k in range(3):
        want = o + L * np.array([R[0, k], -R[1, k]])
        if np.hypot(*(want - o)) < min_len:
            continue  # (nearly) along the line of sight: a dot, no direction to check
        assert np.hypot(*(_axis_tip(out, k, o) - want)) <= tol, (k, want, _axis_tip(out, k, o))
        n += 1
    return n


def _tip_distance(R1, R2, k=2):
    """How far apart (in units of the axis length) axis k of two rotations is drawn."""
    return float(np.hypot(R1[0, k] - R2[0, k], R1[1, k] - R2[1, k]))


def test_real_face_axes_are_the_rotation_columns(afw_faces):
    """A fitted AFW face: the axes drawn are the columns of ``Face.rotation``, also when its
    Euler angles disagree (as angle-space smoothing can leave them near gimbal lock)."""
    _tri, photos = afw_faces
    faces = [f for _p, _img, fs in photos for f in fs if f.rotation is not None]
    assert faces
    # the most turned face: its nose (z) axis is long on screen
    f = max(faces, key=lambda f: np.hypot(f.rotation[0, 2], f.rotation[1, 2]))
    R = np.asarray(f.rotation, np.float64)
    assert np.hypot(R[0, 2], R[1, 2]) * face_length(f) > 30
    assert _check_axes_follow_rotation(f, R) >= 2
    stale = replace(f, pose=np.asarray(f.pose, np.float32) + np.float32([0, 35, 20]))
    # the Euler path would draw at least one axis elsewhere
    assert max(_tip_distance(rotation_from_pose(stale.pose), R, k) for k in range(3)) > 0.3
    assert _check_axes_follow_rotation(stale, R) >= 2


def _synthetic_face(R, pose):
    """A face with nose tip (100, 100), axis length 50 * sqrt(2) px, rotation R, ``pose``."""
    rng = np.random.default_rng(0)
    lm = np.zeros((68, 3), np.float32)
    lm[:, :2] = rng.uniform(50, 150, (68, 2))
    lm[0, :2], lm[1, :2], lm[NOSE_TIP, :2] = (50, 50), (150, 150), (100, 100)
    return Face(box=np.float32([50, 50, 150, 150]), score=0.9, landmarks_3d=lm,
                pose=np.float32(pose), rotation=R)


@pytest.mark.parametrize("rx, ry, rz", [(-89.5, -25, 12), (-90, 20, -30), (90, 0, 40),
                                        (5, -89.9, 12), (5, 90, -30)])
def test_synthetic_rotation_near_90_axes_are_its_columns(rx, ry, rz):
    """Rotations ``Rx(rx) @ Ry(ry) @ Rz(rz)`` (degrees, built with Rodrigues, not from Euler
    angles) near pitch +-90 (``rx``) and at or near yaw +-90 (``ry``, this convention's gimbal
    lock). The face's angles are those of a rotation about 10 degrees away, as angle-space
    processing can leave them; the axes drawn are the matrix's columns all the same."""
    import cv2

    def rod(axis, deg):
        return cv2.Rodrigues(np.deg2rad(deg) * np.asarray(axis, np.float64))[0]

    R = rod((1, 0, 0), rx) @ rod((0, 1, 0), ry) @ rod((0, 0, 1), rz)
    other = R @ cv2.Rodrigues(np.deg2rad([6.0, 6.0, 6.0]))[0]
    face = _synthetic_face(R, G.angles_from_rotation(other))
    # the Euler path would put at least one axis tip > 9 px away (3 x the tolerance)
    euler = rotation_from_pose(face.pose)
    assert max(_tip_distance(euler, R, k) for k in range(3)) * face_length(face) > 9
    assert _check_axes_follow_rotation(face, R) >= 2


def test_pose_axes_fall_back_to_the_angles():
    pose = (30.0, -10.0, 5.0)
    face = _synthetic_face(None, pose)
    assert face_rotation(face) is not None
    np.testing.assert_allclose(face_rotation(face), rotation_from_pose(pose), atol=1e-6)
    assert _check_axes_follow_rotation(face, rotation_from_pose(pose)) >= 2
    face.pose = None  # neither: no axes
    img = np.zeros((240, 240, 3), np.uint8)
    assert face_rotation(face) is None and not draw_faces(img, [face], ["pose"]).any()
