"""The shipped face region and triangulation (facealign_cli/data/face_topology.npz), checked on
the 3DMM mean face in the model frame (x right, y up, z towards the viewer)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

trimesh = pytest.importorskip("trimesh")

from facealign_cli.core.morphable_model import (  # noqa: E402
    TOPOLOGY_FILE,
    BasisNotFoundError,
    load_face_topology,
    load_morphable_model,
)

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "build_face_topology.py"


@pytest.fixture(scope="module")
def model():
    try:
        return load_morphable_model()
    except BasisNotFoundError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def topo():
    return load_face_topology()


@pytest.fixture(scope="module")
def mesh(model, topo):
    v = model.shape(np.zeros(40), np.zeros(10), topo.vertex_index).T.astype(np.float64)
    return trimesh.Trimesh(v, topo.triangles, process=False, validate=False)


@pytest.fixture(scope="module")
def landmarks(model):
    """(68, 3) model-frame mean-face landmarks."""
    return model.shape(np.zeros(40), np.zeros(10), model.keypoint_vertices).T.astype(np.float64)


def _local(topo, vertex):
    return int(np.flatnonzero(topo.vertex_index == vertex)[0])


def test_file_is_small_and_typed(topo):
    assert TOPOLOGY_FILE.stat().st_size < 1_000_000
    assert topo.vertex_index.dtype == np.int64 and topo.vertex_index.ndim == 1
    assert topo.triangles.dtype == np.int32 and topo.triangles.shape[1] == 3


def test_indices_in_range(model, topo):
    vi, t = topo.vertex_index, topo.triangles
    assert len(vi) >= 30_000
    assert vi.min() >= 0 and vi.max() < model.n_vertices
    assert len(np.unique(vi)) == len(vi)
    assert t.min() >= 0 and t.max() < len(vi)
    assert len(np.unique(t)) == len(vi)  # every vertex is used by a triangle


def test_all_landmarks_inside(model, topo):
    assert np.isin(model.keypoint_vertices, topo.vertex_index).all()


def test_one_connected_component(mesh):
    labels = trimesh.graph.connected_component_labels(mesh.face_adjacency, len(mesh.faces))
    assert len(np.unique(labels)) == 1


def test_manifold_and_consistent_winding(mesh):
    assert mesh.is_winding_consistent
    _, counts = np.unique(mesh.edges_sorted, axis=0, return_counts=True)
    assert counts.max() <= 2


def test_no_degenerate_or_duplicate_triangles(mesh, topo):
    t = topo.triangles
    assert ((t[:, 0] != t[:, 1]) & (t[:, 1] != t[:, 2]) & (t[:, 0] != t[:, 2])).all()
    scale = np.median(mesh.area_faces)
    assert mesh.area_faces.min() > 1e-6 * scale
    assert len(np.unique(np.sort(t, axis=1), axis=0)) == len(t)


def test_normals_point_out_of_the_face(mesh, topo, model, landmarks):
    # a rough head centre: between the ear-side jaw landmarks, half a face width behind them
    ear_mid = 0.5 * (landmarks[0] + landmarks[16])
    width = np.linalg.norm(landmarks[16] - landmarks[0])
    centre = ear_mid - np.array([0.0, 0.0, 0.5 * width])
    out = mesh.triangles_center - centre
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    dots = np.einsum("ij,ij->i", mesh.face_normals, out)
    assert np.average(dots, weights=mesh.area_faces) > 0.5
    assert (dots > 0).mean() > 0.98
    assert float(mesh.face_normals.T @ mesh.area_faces @ (mesh.centroid - centre)) > 0
    nose = _local(topo, model.keypoint_vertices[30])
    assert mesh.vertex_normals[nose][2] > 0.5


def test_no_neck(mesh, landmarks):
    chin_y = landmarks[8, 1]
    face_height = landmarks[17:27, 1].mean() - chin_y
    assert mesh.vertices[:, 1].min() > chin_y - 0.1 * face_height
    # nothing under the jaw line far behind the chin either (throat / neck sides)
    behind_chin = mesh.vertices[:, 2] < landmarks[8, 2] - 0.3 * face_height
    assert (mesh.vertices[behind_chin, 1] > landmarks[5, 1] - 0.1 * face_height).all()


def test_spans_the_face(mesh, landmarks):
    """Forehead to chin and out to the ear roots."""
    v = mesh.vertices
    assert v[:, 1].max() > landmarks[17:27, 1].max() + 0.25 * (landmarks[27, 1] - landmarks[8, 1])
    assert v[:, 0].min() < landmarks[0, 0] and v[:, 0].max() > landmarks[16, 0]


def test_build_is_deterministic(tmp_path, model, topo):
    spec = importlib.util.spec_from_file_location("build_face_topology", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "topo.npz"
    mod.build(out, verbose=False)
    assert [p.name for p in tmp_path.iterdir()] == ["topo.npz"]  # no temporary file left
    with np.load(out) as z:
        assert np.array_equal(z["vertex_index"], topo.vertex_index)
        assert np.array_equal(z["triangles"], topo.triangles)
        assert z["triangles"].dtype == np.int32
