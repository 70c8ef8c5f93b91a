"""The shipped UV unwrapping, texture baking, GLB and textured mesh files (issue 13, item 3)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import trimesh

from facealign_cli.core.morphable_model import load_face_topology, load_face_uv
from facealign_cli.io.meshes import mesh_bytes, safe_texture_stem, textured_mesh_files
from facealign_cli.render.texture import bake_texture, texture_size


def test_shipped_uvs_fit_the_topology_and_do_not_fold():
    topo, uv = load_face_topology(), load_face_uv()
    assert uv.uv.shape == (len(topo.vertex_index), 2)
    assert uv.uv.min() >= 0 and uv.uv.max() <= 1
    a, b, c = (uv.uv[topo.triangles[:, i]].astype(np.float64) for i in range(3))
    area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    assert (area > 0).all()  # one-to-one, counter-clockwise like the triangles
    assert ((uv.mirror >= 0) & (uv.mirror < len(uv.uv))).all()
    # the chart is symmetric: a vertex and its mirror partner sit at u and about 1 - u
    assert np.median(np.abs(uv.uv[uv.mirror, 0] - (1 - uv.uv[:, 0]))) < 0.01
    w, h = texture_size(uv.aspect)
    assert w == 512 and 200 < h < 512


# a bump facing the camera (image frame: normals towards -z), its mirror map and UVs
BUMP_V = np.array([[10, 10, 0], [30, 10, 0], [30, 30, 0], [10, 30, 0], [20, 20, -5]], float)
BUMP_T = np.array([[0, 4, 1], [1, 4, 2], [2, 4, 3], [3, 4, 0]], np.int32)
BUMP_UV = np.array([[0, 1], [1, 1], [1, 0], [0, 0], [0.5, 0.5]], float)
BUMP_MIRROR = np.array([1, 0, 3, 2, 4])


def _photo():
    img = np.zeros((40, 40, 3), np.uint8)
    img[:, :20] = (255, 0, 0)  # BGR: blue on the left, red on the right
    img[:, 20:] = (0, 0, 255)
    return img


def test_bake_texture_samples_the_photo():
    tex = bake_texture(_photo(), BUMP_V, BUMP_T, BUMP_UV, BUMP_MIRROR, (32, 32))
    assert tex.shape == (32, 32, 3) and tex.dtype == np.uint8
    # RGB: u < 0.5 is the photo's left (blue), u > 0.5 its right (red)
    assert (tex[16, 4] == (0, 0, 255)).all() and (tex[16, 28] == (255, 0, 0)).all()


def test_bake_texture_fills_hidden_texels_from_the_mirror_or_grey():
    v = BUMP_V.copy()
    v[:, 0] = 40 - v[:, 0]  # mirrored in x, same triangles: every triangle faces away
    tex = bake_texture(_photo(), v, BUMP_T, BUMP_UV, BUMP_MIRROR, (32, 32))
    assert (tex == 128).all()  # nothing seen on either side: neutral grey
    # the left edge off the photo: those texels take their mirror partner's colour
    v = BUMP_V.copy()
    v[:, 0] -= 15  # x in [-5, 15]
    photo = np.zeros((40, 40, 3), np.uint8)
    photo[:, 10:] = (0, 0, 255)  # red from x = 10 on
    tex = bake_texture(photo, v, BUMP_T, BUMP_UV, BUMP_MIRROR, (32, 32))
    assert (tex[16, 1] == (255, 0, 0)).all()  # u ~ 0 (x ~ -5, off the photo) <- x ~ 15: red
    assert (tex[16, 10] == (0, 0, 0)).all()  # u ~ 0.3 (x ~ 1, seen): black


def test_glb_with_vertex_colours_round_trips():
    col = np.tile(np.array([[10, 200, 30]], np.uint8), (5, 1))
    data = mesh_bytes(BUMP_V, BUMP_T, col, "glb", frame="image")
    assert data[:4] == b"glTF"
    m = trimesh.load(io.BytesIO(data), file_type="glb", force="mesh", process=False)
    np.testing.assert_allclose(m.vertices, BUMP_V, atol=1e-5)
    assert (np.asarray(m.visual.vertex_colors)[:, :3] == col).all()


@pytest.mark.parametrize("fmt", ["obj", "glb"])
def test_textured_mesh_files_load_with_their_texture(tmp_path, fmt):
    tex = np.zeros((8, 16, 3), np.uint8)
    tex[:, 8:] = 255
    files = textured_mesh_files("a b_face0", BUMP_V, BUMP_T, BUMP_UV, tex, fmt,
                                frame="viewer", image_height=40)
    assert files[0][0] == f"a b_face0.{fmt}"
    for name, data in files:
        (tmp_path / name).write_bytes(data)
    if fmt == "obj":
        stem = safe_texture_stem("a b_face0")
        assert " " not in stem and stem.startswith("a_b_face0-")
        assert sorted(n for n, _ in files[1:]) == [f"{stem}.mtl", f"{stem}.png"]
        assert b"Kd 1.0" in dict(files)[f"{stem}.mtl"]
    m = trimesh.load(tmp_path / files[0][0], force="mesh", process=False)
    assert m.visual.kind == "texture"
    np.testing.assert_allclose(m.visual.uv, BUMP_UV, atol=1e-4)
    mat = m.visual.material  # OBJ: SimpleMaterial.image; GLB: PBRMaterial.baseColorTexture
    img = np.asarray((mat.image if fmt == "obj" else mat.baseColorTexture).convert("RGB"))
    assert img.shape == (8, 16, 3) and img[:, 12].min() == 255
    np.testing.assert_allclose(m.vertices[:, 1], 40 - BUMP_V[:, 1], atol=1e-4)  # viewer frame


def test_safe_texture_stem():
    assert safe_texture_stem("img_001_face0") == "img_001_face0"
    assert safe_texture_stem("é") != safe_texture_stem("è")
    with pytest.raises(ValueError):
        textured_mesh_files("x", BUMP_V, BUMP_T, BUMP_UV, np.zeros((4, 4, 3), np.uint8), "ply")
