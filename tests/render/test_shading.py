"""Shading and depth layers: normals and light on synthetic shapes, blending, the depth image,
and real faces (covered where the face is, the nose nearest)."""

from __future__ import annotations

import numpy as np
import pytest

from facealign_cli.render.shading import (
    blend_mesh,
    depth_image,
    mesh_layers,
    relative_depth,
    render_depth,
    render_mesh,
    shade_vertices,
    vertex_normals,
)

# a pyramid in the image frame: a 40 x 40 square base at z = 0 with its apex nearer the camera
# (z = -15), wound with right-hand normals out of it (towards the camera, -z)
PYR_V = np.array([[5, 5, 0], [45, 5, 0], [45, 45, 0], [5, 45, 0], [25, 25, -15]], np.float64)
PYR_T = np.array([[0, 4, 1], [1, 4, 2], [2, 4, 3], [3, 4, 0]])


def test_vertex_normals_point_out_of_the_surface():
    n = vertex_normals(PYR_V, PYR_T)
    assert n.dtype == np.float32 and n.shape == (5, 3)
    np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1, atol=1e-6)
    np.testing.assert_allclose(n[4], [0, 0, -1], atol=1e-6)  # the apex faces the camera
    assert (n[:, 2] < 0).all()


def test_light_from_the_camera_lights_what_faces_it():
    flat = np.array([[0, 0, 0], [0, 1, 0], [1, 0, 0]], np.float64)  # normal -z (y down)
    towards = shade_vertices(flat, [[0, 1, 2]], light=(0, 0, -1), specular=0)
    away = shade_vertices(flat, [[0, 2, 1]], light=(0, 0, -1), specular=0)
    np.testing.assert_allclose(towards, 0.3 + 0.65, atol=1e-6)
    np.testing.assert_allclose(away, 0.3, atol=1e-6)  # ambient only
    # a light from the image's left lights the left slope of the pyramid more
    s = shade_vertices(PYR_V, PYR_T, light=(-1, 0, -1), specular=0)
    assert s[0] > s[1]


def test_relative_depth():
    np.testing.assert_allclose(relative_depth(PYR_V), [0, 0, 0, 0, 1])


def test_blend_and_depth_images():
    img = np.full((50, 60, 3), 40, np.uint8)
    before = img.copy()
    layers = mesh_layers(img.shape, [PYR_V], PYR_T)
    out = blend_mesh(img, layers, alpha=1.0)
    np.testing.assert_array_equal(img, before)  # input untouched
    assert out.shape == img.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[:, 50:], img[:, 50:])  # off the mesh: the photo
    np.testing.assert_array_equal(out[:3], img[:3])
    assert (out[25, 25] > 150).all()  # the lit apex
    half = blend_mesh(img, layers, alpha=0.5)
    assert (half[25, 25] < out[25, 25]).all() and (half[25, 25] > 40).all()
    d = depth_image(layers)
    assert d.shape == img.shape and (d[:3] == 0).all() and (d[:, 50:] == 0).all()
    assert d[25, 25, 0] > d[10, 25, 0] > d[6, 25, 0] > 0  # nearer is brighter
    np.testing.assert_array_equal(render_depth(img.shape, [PYR_V], PYR_T), d)
    np.testing.assert_array_equal(render_mesh(img, [PYR_V], PYR_T, alpha=1.0), out)
    with pytest.raises(ValueError):
        blend_mesh(img[:10], layers)


def test_nothing_to_draw():
    img = np.zeros((20, 30, 3), np.uint8)
    layers = mesh_layers(img.shape, [], PYR_T)
    np.testing.assert_array_equal(blend_mesh(img, layers), img)
    assert (depth_image(layers) == 0).all()


def test_real_faces(afw_faces, tmp_path):
    import cv2

    tri, photos = afw_faces
    for path, img, faces in photos:
        dense = [f for f in faces if f.vertices is not None]
        layers = mesh_layers(img.shape, [f.vertices for f in dense], tri)
        face = np.full(img.shape[:2], -1, np.int16)
        face[layers.window] = layers.face
        d = depth_image(layers)
        out = blend_mesh(img, layers)
        cv2.imwrite(str(tmp_path / f"{path.stem}.png"), np.concatenate([out, d], axis=1))
        for i, f in enumerate(dense):
            lm = f.landmarks_3d
            x, y = np.round(lm[30, :2]).astype(int)
            if not (2 <= x < img.shape[1] - 2 and 2 <= y < img.shape[0] - 2):
                continue
            # the nose tip shows this face (a profile's lies on its silhouette: the covered
            # pixels around it)
            near = face[y - 2:y + 3, x - 2:x + 3]
            assert (near == i).sum() >= 5 and np.isin(near, [i, -1]).all()
            if abs(float(f.pose[0])) < 30:
                # frontal: the nose tip is among the nearest points of the face
                mine = d[:, :, 0][face == i]
                assert d[y, x, 0] >= np.percentile(mine, 95)
            # the mesh covers most of the landmarks' convex hull
            hull = np.zeros(img.shape[:2], np.uint8)
            cv2.fillConvexPoly(hull, np.round(lm[:27, :2]).astype(np.int32)[
                cv2.convexHull(lm[:27, :2].astype(np.float32), returnPoints=False)[:, 0]], 1)
            inside = hull.astype(bool)
            assert (face[inside] >= 0).mean() > 0.9
            # and changes the photo there
            assert (out[inside] != img[inside]).any(axis=1).mean() > 0.9
