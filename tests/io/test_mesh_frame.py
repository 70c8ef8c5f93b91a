"""The viewer frame of mesh files (issue 13, item 2): ``(x, H - y, -z)``, y up and z towards the
viewer, normals out of the face; checked on synthetic meshes and on real faces loaded back
with trimesh."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from facealign_cli.defaults import MESH_FRAMES
from facealign_cli.io.meshes import mesh_bytes, to_viewer_frame, write_mesh


def _normals(v, t):
    v = np.asarray(v, dtype=np.float64)
    return np.cross(v[t[:, 1]] - v[t[:, 0]], v[t[:, 2]] - v[t[:, 0]])


# a small bump in the image frame: a square whose centre (the "nose") is nearer the camera
# (z < 0), wound so that right-hand normals point out of it, towards the camera (-z)
BUMP_V = np.array([[0, 0, 0], [10, 0, 0], [10, 10, 0], [0, 10, 0], [5, 5, -4]], np.float64)
BUMP_T = np.array([[0, 4, 1], [1, 4, 2], [2, 4, 3], [3, 4, 0]], np.int32)


def test_bump_is_wound_out_of_the_face_in_the_image_frame():
    assert (_normals(BUMP_V, BUMP_T)[:, 2] < 0).all()


def test_to_viewer_frame_maps_x_h_minus_y_minus_z():
    v = np.array([[1.5, 2.0, -3.0], [0.0, 100.0, 7.25]])
    out, t = to_viewer_frame(v, 100)
    np.testing.assert_array_equal(out, [[1.5, 98.0, 3.0], [0.0, 0.0, -7.25]])
    assert t is None
    assert out.dtype == np.float64


def test_to_viewer_frame_keeps_normals_out_of_the_face():
    out, t = to_viewer_frame(BUMP_V, 10, BUMP_T)
    assert t.dtype == np.int64 and t is not BUMP_T
    n = _normals(out, t)
    assert (n[:, 2] > 0).all()  # towards the viewer
    assert out[4, 2] == out[:, 2].max()  # the bump's tip is the nearest point
    # a proper rotation: winding (and so the triangle list) is unchanged
    np.testing.assert_array_equal(t, BUMP_T)


def test_to_viewer_frame_rejects_bad_input():
    with pytest.raises(ValueError):
        to_viewer_frame(np.zeros((3, 2)), 10)
    with pytest.raises(ValueError):
        to_viewer_frame(BUMP_V, float("nan"))
    with pytest.raises(ValueError):
        to_viewer_frame(BUMP_V, -1)


def test_default_frame_is_the_viewer_frame_as_for_the_cli():
    """One default for the library and ``facealign mesh``: upright, facing the viewer."""
    from facealign_cli.batch.options import RunOptions

    assert MESH_FRAMES[0] == "viewer" == RunOptions.make("mesh", "x").command_options.frame
    assert mesh_bytes(BUMP_V, BUMP_T, image_height=10) == mesh_bytes(
        BUMP_V, BUMP_T, frame="viewer", image_height=10)
    assert mesh_bytes(BUMP_V, BUMP_T, image_height=10) != mesh_bytes(
        BUMP_V, BUMP_T, frame="image")
    with pytest.raises(ValueError, match="image_height"):
        mesh_bytes(BUMP_V, BUMP_T)


@pytest.mark.parametrize("fmt", ["obj", "ply"])
def test_viewer_frame_needs_the_image_height(tmp_path, fmt):
    with pytest.raises(ValueError, match="image_height"):
        mesh_bytes(BUMP_V, BUMP_T, fmt=fmt, frame="viewer")
    with pytest.raises(ValueError, match="image_height"):
        write_mesh(tmp_path / f"m.{fmt}", BUMP_V, BUMP_T, fmt=fmt, frame="viewer")
    with pytest.raises(ValueError, match="frame"):
        mesh_bytes(BUMP_V, BUMP_T, fmt=fmt, frame="camera")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("fmt", ["obj", "ply"])
def test_written_viewer_mesh_loads_back_converted(tmp_path, fmt):
    path = write_mesh(tmp_path / f"m.{fmt}", BUMP_V, BUMP_T, fmt=fmt, frame="viewer",
                      image_height=10)
    m = trimesh.load(path, process=False, force="mesh")
    want, _ = to_viewer_frame(BUMP_V, 10)
    np.testing.assert_allclose(m.vertices, want, atol=1e-3)
    np.testing.assert_array_equal(m.faces, BUMP_T)
    assert (m.face_normals[:, 2] > 0).all()


# --- real faces -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def frontal_face(afw_photos, mesh_ready):
    """(image height, Face, triangles) of the most frontal face of the sample photos."""
    from facealign_cli.core.pipeline import FaceAligner
    from facealign_cli.io.images import load_image

    fa = FaceAligner(num_threads=1)
    best = None
    for p in afw_photos:
        img = load_image(p)
        for f in fa(img, dense=True):
            cost = abs(float(f.pose[0])) + abs(float(f.pose[2]))
            if best is None or cost < best[0]:
                best = (cost, img.shape[0], f)
    assert best is not None and best[0] < 30, "no frontal face in the sample photos"
    return best[1], best[2], fa.topology.triangles


@pytest.mark.parametrize("fmt", ["obj", "ply"])
def test_real_face_opens_upright_and_facing_the_viewer(tmp_path, frontal_face, fmt):
    h, face, tri = frontal_face
    v_img = face.vertices.astype(np.float64)
    lm = face.landmarks_3d.astype(np.float64)
    # reference points picked in the image frame: chin (landmark 8), nose tip (30), forehead
    # (the top of the face near the vertical line through the nose)
    chin = int(np.argmin(np.linalg.norm(v_img - lm[8], axis=1)))
    nose = int(np.argmin(np.linalg.norm(v_img - lm[30], axis=1)))
    width = np.ptp(lm[:, 0])
    midline = np.abs(v_img[:, 0] - lm[30, 0]) < 0.1 * width
    forehead = int(np.flatnonzero(midline)[np.argmin(v_img[midline, 1])])

    path = write_mesh(tmp_path / f"face.{fmt}", v_img, tri, fmt=fmt, frame="viewer",
                      image_height=h)
    m = trimesh.load(path, process=False, force="mesh")
    assert len(m.vertices) == len(v_img) and len(m.faces) == len(tri)
    v = m.vertices
    # upright: the forehead is above the chin (y up), by most of the face's height
    assert v[forehead, 1] - v[chin, 1] > 0.5 * np.ptp(lm[:, 1])
    # facing the viewer: the nose tip is (within 2 px of) the nearest point, z towards the viewer
    assert v[:, 2].max() - v[nose, 2] < 2.0
    nearest = int(np.argmax(v[:, 2]))
    assert np.linalg.norm(v[nearest, :2] - v[nose, :2]) < 0.1 * width
    # normals point out of the face: towards the viewer overall and at the nose tip
    area_weighted = (m.face_normals * m.area_faces[:, None]).sum(axis=0)
    assert area_weighted[2] / np.linalg.norm(area_weighted) > 0.8
    assert m.vertex_normals[nose, 2] > 0.5
    # and the frame is (x, H - y, -z) of the image frame, in photo pixels
    np.testing.assert_allclose(v[:, 0], v_img[:, 0], atol=2e-3)
    np.testing.assert_allclose(v[:, 1], h - v_img[:, 1], atol=2e-3)
    np.testing.assert_allclose(v[:, 2], -v_img[:, 2], atol=2e-3)
