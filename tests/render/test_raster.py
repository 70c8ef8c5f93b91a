"""The z-buffered rasteriser: synthetic overlapping planes (the nearer wins whatever the order),
exact interpolation, clipping, the depth order between faces, and real meshes."""

from __future__ import annotations

import numpy as np
import pytest

from facealign_cli.render.raster import face_size, rasterize, scene_depths

SQUARE_T = np.array([[0, 1, 2], [0, 2, 3]])


def square(x0, y0, x1, y1, z):
    """A planar square at constant depth z (image frame), two triangles."""
    return np.array([[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z]], np.float64)


def test_nearer_plane_wins_in_either_order():
    far = square(2, 2, 14, 14, 5.0)
    near = square(8, 8, 20, 20, -5.0)
    for meshes, near_ix in (([far, near], 1), ([near, far], 0)):
        r = rasterize(meshes, SQUARE_T, (24, 24), [np.full((4, 1), k + 1.0)
                                                  for k in range(2)])
        face = r.full("face", -1)
        assert face[10, 10] == near_ix  # the overlap
        assert face[4, 4] == 1 - near_ix  # the far square alone
        assert face[18, 18] == near_ix
        assert face[0, 0] == -1 and face[23, 2] == -1
        vals = r.full("values")
        assert vals[10, 10, 0] == near_ix + 1
        depth = r.full("depth", np.inf)
        assert depth[10, 10] < depth[4, 4]
        assert np.isinf(depth[0, 0])


def test_folded_mesh_hides_its_own_far_part():
    # one mesh, two overlapping sheets (like a nose in front of a cheek on a profile)
    v = np.concatenate([square(0, 0, 10, 10, 3.0), square(3, 3, 7, 7, -3.0)])
    t = np.concatenate([SQUARE_T, SQUARE_T + 4])
    vals = np.array([[0.0]] * 4 + [[1.0]] * 4)
    r = rasterize([v], t, (12, 12), [vals])
    assert r.full("values")[5, 5, 0] == 1.0
    assert r.full("values")[1, 5, 0] == 0.0
    assert (r.full("face", -1)[1:9, 1:9] == 0).all()


def test_values_interpolate_linearly_and_pixel_centres_are_integers():
    v = square(-0.5, -0.5, 9.5, 7.5, 0.0)
    r = rasterize([v], SQUARE_T, (8, 10), [v[:, :2]])  # values = (x, y)
    assert r.mask.all() and r.origin == (0, 0) and r.values.shape == (8, 10, 2)
    ys, xs = np.mgrid[0:8, 0:10]
    np.testing.assert_allclose(r.values[:, :, 0], xs, atol=1e-4)
    np.testing.assert_allclose(r.values[:, :, 1], ys, atol=1e-4)


def test_clipping_and_window():
    r = rasterize([square(-30, 5, 6, 9, 0.0)], SQUARE_T, (20, 20))
    assert r.origin == (0, 5)
    assert r.full("face", -1)[7, 0] == 0 and r.full("face", -1)[7, 10] == -1
    off = rasterize([square(100, 100, 120, 120, 0.0)], SQUARE_T, (20, 20))
    assert not off.mask.any() and off.full("face", -1).shape == (20, 20)
    none = rasterize([], SQUARE_T, (20, 20))
    assert none.full("depth", np.inf).shape == (20, 20) and not none.mask.any()


def test_non_finite_vertices_drop_their_triangles():
    v = np.concatenate([square(0, 0, 10, 10, 0.0), square(0, 0, 10, 10, 0.0)])
    v[4] = np.nan
    t = np.concatenate([SQUARE_T, SQUARE_T + 4])
    r = rasterize([v], t, (12, 12))
    assert r.full("face", -1)[5, 5] == 0


def test_bad_inputs():
    with pytest.raises(ValueError):
        rasterize([np.zeros((4, 2))], SQUARE_T, (5, 5))
    with pytest.raises(ValueError):
        rasterize([square(0, 0, 1, 1, 0)], SQUARE_T + 10, (5, 5))
    with pytest.raises(ValueError):
        rasterize([square(0, 0, 1, 1, 0)], SQUARE_T, (5, 5), [np.zeros((4, 1)), None])


def test_face_size_is_rotation_invariant():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(5000, 3)) * [30, 40, 20]
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    assert face_size(v @ q.T + 100) == pytest.approx(face_size(v), rel=1e-6)


def test_bigger_face_is_in_front():
    # two bumps of the same shape: the bigger one (nearer in a perspective world) wins where
    # they overlap, even where its own relative depth is larger than the smaller one's
    small = square(0, 0, 20, 20, 0.0)
    big = square(10, 10, 40, 40, 8.0)  # its z is larger (farther) than the small one's
    big = np.concatenate([big, big.mean(axis=0, keepdims=True) + [0, 0, -30]])
    small = np.concatenate([small, small.mean(axis=0, keepdims=True) + [0, 0, -20]])
    t = np.array([[0, 4, 1], [1, 4, 2], [2, 4, 3], [3, 4, 0]])
    d_small, d_big = scene_depths([small, big], (50, 50), focal=1000)
    assert d_big.max() < d_small.min()
    r = rasterize([small, big], t, (50, 50), focal=1000)
    assert r.full("face", -1)[15, 15] == 1


def test_real_meshes_profile_and_overlap(afw_faces):
    tri, photos = afw_faces
    path, img, faces = photos[0]
    meshes = [f.vertices for f in faces]
    r = rasterize(meshes, tri, img.shape, [f.vertices[:, 2:3] for f in faces])
    face = r.full("face", -1)
    for i, f in enumerate(faces):
        x, y = np.round(f.landmarks_3d[30, :2]).astype(int)  # nose tip
        if 2 <= x < img.shape[1] - 2 and 2 <= y < img.shape[0] - 2:
            # a profile's nose tip lies on its silhouette: the pixels around it that are
            # covered at all are this face's (no other face in front)
            near = face[y - 2:y + 3, x - 2:x + 3]
            assert (near == i).sum() >= 5 and np.isin(near, [i, -1]).all()
    # the z seen at a pixel is the smallest z of the face's triangles covering its centre:
    # brute force over all triangles at 300 random covered pixels of the frontal face
    f0 = faces[0]
    v = f0.vertices.astype(np.float64)
    a, b, c = v[tri[:, 0]], v[tri[:, 1]], v[tri[:, 2]]
    den = (b[:, 1] - c[:, 1]) * (a[:, 0] - c[:, 0]) + (c[:, 0] - b[:, 0]) * (a[:, 1] - c[:, 1])
    seen = r.full("values")[:, :, 0]
    ys, xs = np.nonzero(face == 0)
    rng = np.random.default_rng(0)
    pick = rng.choice(len(xs), size=300, replace=False)
    errs = []
    for x, y in zip(xs[pick], ys[pick]):
        with np.errstate(divide="ignore", invalid="ignore"):
            l1 = ((b[:, 1] - c[:, 1]) * (x - c[:, 0]) + (c[:, 0] - b[:, 0]) * (y - c[:, 1])) / den
            l2 = ((c[:, 1] - a[:, 1]) * (x - c[:, 0]) + (a[:, 0] - c[:, 0]) * (y - c[:, 1])) / den
        l3 = 1 - l1 - l2
        inside = (l1 >= -1e-9) & (l2 >= -1e-9) & (l3 >= -1e-9)
        if not inside.any():  # an edge case of the fill rule: nothing to compare
            continue
        z = (l1 * a[:, 2] + l2 * b[:, 2] + l3 * c[:, 2])[inside].min()
        errs.append(seen[y, x] - z)
    assert len(errs) > 250
    assert np.max(np.abs(errs)) < 0.05
    # a scaled-up copy of the frontal face put over the profile is in front of it everywhere
    big = (f0.vertices - f0.vertices.mean(0)) * 1.3 + faces[1].vertices.mean(0)
    r2 = rasterize([faces[1].vertices, big], tri, img.shape)
    face2 = r2.full("face", -1)
    r1 = rasterize([faces[1].vertices], tri, img.shape).full("face", -1)
    rb = rasterize([big], tri, img.shape).full("face", -1)
    both = (r1 == 0) & (rb == 0)
    assert both.sum() > 1000
    assert (face2[both] == 1).all()


def test_without_face_ids():
    far = square(2, 2, 14, 14, 5.0)
    near = square(8, 8, 20, 20, -5.0)
    vals = [np.full((4, 1), 1.0), np.full((4, 1), 2.0)]
    r = rasterize([far, near], SQUARE_T, (24, 24), vals, face_ids=False)
    face, v = r.full("face", -1), r.full("values")
    assert face[10, 10] == 0 and face[4, 4] == 0 and face[0, 0] == -1  # coverage only
    assert v[10, 10, 0] == 2.0 and v[4, 4, 0] == 1.0 and v[0, 0, 0] == 0.0
    r = rasterize([far, near], SQUARE_T, (24, 24), face_ids=False)  # no values either
    assert r.values.shape[2] == 0 and r.full("face", -1)[10, 10] == 0


def test_mesh_layers_tell_overlapping_faces_apart():
    from facealign_cli.render.shading import mesh_layers

    meshes = [square(2, 2, 14, 14, 5.0), square(8, 8, 20, 20, -5.0), square(0, 0, 4, 4, 9.0)]
    layers = mesh_layers((24, 24), meshes, SQUARE_T)
    face = np.full((24, 24), -1)
    face[layers.window] = layers.face
    assert face[10, 10] == 1 and face[5, 5] == 0 and face[1, 1] == 2 and face[23, 0] == -1
    shade = np.zeros((24, 24))
    shade[layers.window] = layers.shade
    assert 0 < shade[10, 10] <= 1 and 0 < shade[5, 5] <= 1


def test_without_deodr_the_rasteriser_is_one_clear_error(monkeypatch):
    """``deodr`` is optional (the ``[render]`` extra): without it, rasterising raises one
    ImportError naming what needs it and the install command."""
    import sys

    from facealign_cli.render import raster

    monkeypatch.setitem(sys.modules, "deodr", None)
    monkeypatch.setitem(sys.modules, "deodr.differentiable_renderer", None)
    with pytest.raises(raster.RasterizerMissingError,
                       match=r"render --draw mesh needs the rasteriser deodr.*"
                             r"pip install 'deodr>=0\.2\.3'"):
        raster.require_rasterizer("render --draw mesh")
    tri = np.array([[0, 1, 2]])
    mesh = np.array([[1.0, 1.0, 0.0], [8.0, 1.0, 0.0], [1.0, 8.0, 0.0]], np.float32)
    with pytest.raises(ImportError, match="deodr"):
        raster.rasterize([mesh], tri, (10, 10))
