"""facealign_cli.io.meshes: OBJ / PLY writers (atomic, with colours) and colour sampling."""

from __future__ import annotations

import os

import numpy as np
import pytest

trimesh = pytest.importorskip("trimesh")

from facealign_cli.core.morphable_model import (  # noqa: E402
    BasisNotFoundError,
    load_face_topology,
    load_morphable_model,
)
from facealign_cli.io import meshes as mesh_io  # noqa: E402
from facealign_cli.io.meshes import write_mesh  # noqa: E402
from facealign_cli.render.texture import sample_vertex_colors  # noqa: E402


@pytest.fixture(scope="module")
def face():
    """The mean face in the image frame (x right, y down, z away from the camera, pixels),
    its triangles, colours and the local index of the nose-tip landmark."""
    try:
        model = load_morphable_model()
    except BasisNotFoundError as exc:
        pytest.skip(str(exc))
    topo = load_face_topology()
    v = model.shape(np.zeros(40), np.zeros(10), topo.vertex_index).T.astype(np.float64)
    s = 200.0 / 1e5  # ~ 360 px face
    img = np.stack([320.0 + s * v[:, 0], 240.0 - s * v[:, 1], -s * v[:, 2]], axis=1)  # 180° about x
    n = len(img)
    colours = np.stack([np.arange(n) % 256, (np.arange(n) // 256) % 256,
                        (7 * np.arange(n)) % 256], axis=1).astype(np.uint8)
    nose = int(np.flatnonzero(topo.vertex_index == model.keypoint_vertices[30])[0])
    return img, topo.triangles, colours, nose


@pytest.mark.parametrize("fmt", ["obj", "ply"])
def test_roundtrip_with_colours(tmp_path, face, fmt):
    v, t, c, nose = face
    path = tmp_path / f"face.{fmt}"
    assert write_mesh(path, v, t, c, fmt, frame="image") == path
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temp file left
    m = trimesh.load(path, process=False, force="mesh")
    assert len(m.vertices) == len(v) and len(m.faces) == len(t)
    assert np.array_equal(m.faces, t)
    assert np.abs(m.vertices - v).max() < 1e-3
    assert m.visual.kind == "vertex"
    assert np.array_equal(np.asarray(m.visual.vertex_colors)[:, :3], c)
    # the rotation about x keeps the winding outward: at the nose tip normals face the camera
    assert m.vertex_normals[nose][2] < -0.5


def test_obj_text_layout(tmp_path, face):
    v, t, c, _ = face
    path = tmp_path / "face.obj"
    write_mesh(path, v, t, c, "obj", frame="image")
    lines = path.read_text().splitlines()
    vlines = [ln for ln in lines if ln.startswith("v ")]
    flines = [ln for ln in lines if ln.startswith("f ")]
    assert len(vlines) == len(v) and len(flines) == len(t)
    first = [float(x) for x in vlines[0].split()[1:]]
    assert len(first) == 6  # v x y z r g b
    assert np.allclose(first[3:], c[0] / 255.0, atol=1e-6)
    assert [int(x) for x in flines[0].split()[1:]] == (t[0] + 1).tolist()  # 1-based


def test_obj_faces_text_is_cached_by_content_not_identity(tmp_path, face):
    """The f-lines of a topology are reused between faces; a different triangle array of the
    same shape (or the same array changed in place) must still be written as given."""
    v, t, c, _ = face
    t2 = t.copy()
    write_mesh(tmp_path / "a.obj", v, t2, c, "obj", frame="image")
    t2[:, [1, 2]] = t2[:, [2, 1]]  # flip the winding in place
    write_mesh(tmp_path / "b.obj", v, t2, c, "obj", frame="image")
    write_mesh(tmp_path / "c.obj", v, t, c, "obj", frame="image")
    fa, fb, fc = (trimesh.load(tmp_path / f"{k}.obj", process=False, force="mesh").faces
                  for k in "abc")
    assert np.array_equal(fa, t) and np.array_equal(fb, t2) and np.array_equal(fc, t)


def test_obj_numbers_of_any_sign_and_size(tmp_path):
    v = np.array([[-1e-7, 0.0, -0.0], [12345.678, -98765.4321, 3.0e-3], [1.5, -2.25, 1e6]])
    c = np.array([[0, 128, 255], [1, 2, 3], [254, 253, 252]], np.uint8)
    write_mesh(tmp_path / "n.obj", v, np.array([[0, 1, 2]]), c, "obj", frame="image")
    rows = [ln.split() for ln in (tmp_path / "n.obj").read_text().splitlines()
            if ln.startswith("v ")]
    got = np.array([[float(x) for x in r[1:]] for r in rows])
    # rounded to 0.001, then float32 (spacing 2**-7 at 1e5, 2**-6 at 1e6)
    assert np.all(np.abs(got[:, :3] - v) <= 0.0005 + np.abs(v) * 2.0 ** -24 * 1.01)
    assert np.array_equal(np.rint(got[:, 3:] * 255), c)  # colours recover exactly


def test_ply_is_binary_little_endian_with_colours(tmp_path, face):
    v, t, c, _ = face
    path = tmp_path / "face.ply"
    write_mesh(path, v, t, c, "ply", frame="image")
    header = path.read_bytes().split(b"end_header", 1)[0].decode("ascii")
    assert "format binary_little_endian 1.0" in header
    assert f"element vertex {len(v)}" in header and f"element face {len(t)}" in header
    assert "property uchar red" in header and "property uchar blue" in header


@pytest.mark.parametrize("fmt", ["obj", "ply"])
def test_without_colours(tmp_path, face, fmt):
    v, t, _, _ = face
    path = tmp_path / f"plain.{fmt}"
    write_mesh(path, v, t, None, fmt, frame="image")
    m = trimesh.load(path, process=False, force="mesh")
    assert len(m.vertices) == len(v) and len(m.faces) == len(t)
    if fmt == "obj":
        assert len(path.read_text().splitlines()[1].split()) == 4  # v x y z


def test_replaces_existing_file_and_creates_folder(tmp_path, face):
    v, t, c, _ = face
    path = tmp_path / "sub" / "face.obj"
    write_mesh(path, v, t, c, "obj", frame="image")
    write_mesh(path, v[:3], np.array([[0, 1, 2]]), None, "obj", frame="image")
    m = trimesh.load(path, process=False, force="mesh")
    assert len(m.vertices) == 3 and len(m.faces) == 1
    assert os.listdir(path.parent) == ["face.obj"]


def test_failed_write_leaves_old_file_and_no_temp(tmp_path, face, monkeypatch):
    v, t, c, _ = face
    path = tmp_path / "face.ply"
    path.write_bytes(b"old")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(mesh_io.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_mesh(path, v, t, c, "ply", frame="image")
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["face.ply"]


@pytest.mark.parametrize("kwargs, match", [
    (dict(fmt="stl"), "format"),
    (dict(colors=np.zeros((4, 3), np.float32)), "colors"),
    (dict(colors=np.zeros((3, 3), np.uint8)), "colors"),
    (dict(triangles=np.array([[0, 1, 4]])), "indices"),
    (dict(triangles=np.array([[0.0, 1.0, 2.0]])), "integer"),
    (dict(vertices=np.array([[0, 0, 0], [1, 0, 0], [0, np.nan, 0], [0, 0, 1.0]])), "NaN"),
    (dict(vertices=np.zeros((4, 2))), "vertices"),
    (dict(vertices=np.eye(4, 3) * 1e12), "within"),  # OBJ: beyond obj_text.MAX_COORDINATE
])
def test_invalid_input_writes_nothing(tmp_path, kwargs, match):
    args = dict(vertices=np.eye(4, 3), triangles=np.array([[0, 1, 2], [0, 2, 3]]),
                colors=None, fmt="obj", frame="image")
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        write_mesh(tmp_path / "x.obj", **args)
    assert os.listdir(tmp_path) == []


# -- colour sampling ------------------------------------------------------------------------

H, W = 80, 100


def _gradient():
    """BGR image with B = 2x, G = 3y, R = 77 (linear, so bilinear sampling is exact)."""
    y, x = np.mgrid[0:H, 0:W]
    return np.stack([2 * x, 3 * y, np.full_like(x, 77)], axis=2).astype(np.uint8)


def test_sampling_a_gradient_is_exact_and_rgb():
    pts = np.array([[0.0, 0.0, 5.0], [10.25, 20.5, -3.0], [98.9, 78.6, 0.0], [50.5, 40.0, 1.0],
                    [33.0, 7.75, 0.0]])
    got = sample_vertex_colors(_gradient(), pts)
    assert got.dtype == np.uint8 and got.shape == (5, 3)
    expected = np.stack([np.full(5, 77.0), 3 * pts[:, 1], 2 * pts[:, 0]], axis=1)
    assert np.array_equal(got, np.rint(expected).astype(np.uint8))


def test_sampling_edges_and_outside():
    pts = np.array([[-0.4, 10.0], [W - 0.5, 10.0], [10.0, H - 0.5],     # on the image (edges)
                    [-0.6, 10.0], [W - 0.4, 10.0], [10.0, -1.0], [10.0, H + 3.0],  # off it
                    [np.nan, 5.0], [1e9, -1e9]])
    got = sample_vertex_colors(_gradient(), pts)
    assert got[0].tolist() == [77, 30, 0]           # clamped to column 0
    assert got[1].tolist() == [77, 30, 2 * (W - 1)]  # clamped to the last column
    assert got[2].tolist() == [77, 3 * (H - 1), 20]
    assert (got[3:] == 128).all()


def test_sampling_other_channel_layouts_and_custom_outside():
    grey = np.full((4, 5), 200, np.uint8)
    assert sample_vertex_colors(grey, np.array([[1.0, 1.0]])).tolist() == [[200, 200, 200]]
    bgra = np.zeros((4, 5, 4), np.uint8)
    bgra[..., 0], bgra[..., 3] = 255, 9
    assert sample_vertex_colors(bgra, np.array([[1.0, 1.0]])).tolist() == [[0, 0, 255]]
    assert sample_vertex_colors(grey, np.array([[9.0, 1.0]]), outside=(1, 2, 3)).tolist() == \
        [[1, 2, 3]]
    assert sample_vertex_colors(grey, np.zeros((0, 3))).shape == (0, 3)


def test_sampling_rejects_bad_input():
    with pytest.raises(ValueError):
        sample_vertex_colors(np.zeros((4, 5, 3), np.float32), np.zeros((1, 2)))
    with pytest.raises(ValueError):
        sample_vertex_colors(np.zeros((4, 5, 3), np.uint8), np.zeros((3,)))


def test_sampling_matches_cv2_remap():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    pts = np.stack([rng.uniform(0, W - 1, 500), rng.uniform(0, H - 1, 500)], axis=1)
    ours = sample_vertex_colors(img, pts).astype(int)
    ref = cv2.remap(img.astype(np.float32), pts[:, 0].astype(np.float32)[None],
                    pts[:, 1].astype(np.float32)[None], cv2.INTER_LINEAR)[0][:, ::-1]
    assert np.abs(ours - np.rint(ref)).max() <= 1


def test_sampling_many_vertices():
    """More points than OpenCV's remap takes in one row or column (a whole face mesh)."""
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    pts = np.stack([rng.integers(0, 80, 40000), rng.integers(0, 60, 40000)], 1).astype(float)
    got = sample_vertex_colors(img, pts)
    np.testing.assert_array_equal(got, img[pts[:, 1].astype(int), pts[:, 0].astype(int), ::-1])


def _colours_from_an_rgb_copy(image_bgr, vertices):
    """The colours as they were sampled before they were sampled in place: a contiguous RGB
    copy of the whole photo, remapped (the reference for the test below)."""
    cv2 = pytest.importorskip("cv2")
    rgb = np.ascontiguousarray(image_bgr[:, :, 2::-1])
    h, w = rgb.shape[:2]
    x, y = vertices[:, 0], vertices[:, 1]
    inside = (x >= -0.5) & (x <= w - 0.5) & (y >= -0.5) & (y <= h - 0.5)
    out = np.full((len(vertices), 3), 128, np.uint8)
    mx = x[inside].astype(np.float32)[None]
    my = y[inside].astype(np.float32)[None]
    chunks = [cv2.remap(rgb, mx[:, i:i + 4096], my[:, i:i + 4096], cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_REPLICATE)[0] for i in range(0, mx.shape[1], 4096)]
    out[inside] = np.concatenate(chunks)
    return out


def test_sampling_a_real_face_in_place_gives_the_colours_of_an_rgb_copy(afw_photos, mesh_ready):
    """Real AFW faces (every face of the sample photos, one moved half off the photo): the
    colours sampled from the photo in place equal those sampled from an RGB copy of it, bit for
    bit, for BGR, BGRA and grey photos."""
    cv2 = pytest.importorskip("cv2")
    from facealign_cli.core.pipeline import FaceAligner
    from facealign_cli.io.images import load_image

    aligner = FaceAligner(num_threads=1)
    checked = 0
    for p in afw_photos:
        img = load_image(p)
        for f in aligner(img, dense=True):
            shifted = f.vertices - [f.vertices[:, 0].mean(), 0.0, 0.0]  # half off the left
            for v in (f.vertices, shifted):
                got = sample_vertex_colors(img, v)
                np.testing.assert_array_equal(got, _colours_from_an_rgb_copy(img, v))
                bgra = cv2.cvtColor(img, cv2.COLOR_BGR2BGRA)
                np.testing.assert_array_equal(sample_vertex_colors(bgra, v), got)
                grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
                np.testing.assert_array_equal(sample_vertex_colors(grey, v),
                                              _colours_from_an_rgb_copy(grey[:, :, None]
                                                                        .repeat(3, 2), v))
            assert (sample_vertex_colors(img, shifted) == 128).all(axis=1).mean() > 0.3
            checked += 1
    assert checked >= 3
