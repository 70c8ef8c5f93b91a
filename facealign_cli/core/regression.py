"""From roi crops to fitted 3DMM geometry, with optional test-time flip averaging.

Flip averaging (test-time augmentation): the regressor also sees the mirror image of each crop;
the mirror image's vertices are mapped back (vertex ``i`` of the face is vertex ``mirror[i]`` of
its mirror image, x reflected in the crop: ``x -> (S - 1) - x``) and averaged with the direct
prediction; the rotation of the mirror image is reflected back (``M R_f M``, ``M = diag(-1, 1,
1)``) and averaged with the direct one on SO(3) (chordal mean: the nearest rotation to their
sum). This is the flip-averaging used for the teacher's training labels
(:mod:`facealign_cli.training.data`) applied at test time; it costs one more regressor pass per
face.

Frames: the crop frame of :mod:`facealign_cli.core.geometry` (S-px crop, x right, y down, z
towards the viewer).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from facealign_cli.core import geometry as G
from facealign_cli.core.morphable_model import MorphableModel
from facealign_cli.core.symmetry import ibug68_flip_permutation, vertex_mirror_map
from facealign_cli.defaults import DEFAULT_POSE_CONVENTION

_REFLECT_X = np.diag([-1.0, 1.0, 1.0])


class Regressor(Protocol):
    """Anything that regresses 3DMM parameters from roi crops.

    Attributes:
        input_size: crop side S in pixels (120).
    """

    input_size: int

    def predict(self, crops_bgr: np.ndarray) -> np.ndarray:
        """(B, S, S, 3) uint8 BGR crops to (B, 62) float32 parameters (camera in the S-px crop
        frame, 40 shape, 10 expression coefficients)."""
        ...


@dataclass(frozen=True)
class CropFit:
    """The fitted geometry of a batch of crops.

    Attributes:
        params: (B, 62) float32 parameters regressed on the crops as given (unflipped).
        vertices: tuple of (B, 3, K_j) float32 crop-frame vertices, one per requested vertex
            set (flip-averaged when flip averaging is on).
        rotation: (B, 3, 3) float64 model-to-camera rotations (flip-averaged when on).
        pose: (B, 3) float64 ``[yaw, pitch, roll]`` degrees from ``rotation`` in the fitter's
            ``pose_convention`` (:func:`facealign_cli.core.geometry.angles_from_rotation`).
        flip_disagreement: (B,) float32, with flip averaging: the mean 2D distance between
            the direct and the mirrored-back vertices of the first evaluated set, as a
            fraction of the crop side S (0 = both predictions agree); ``None`` without.
        mirror_params: (B, 62) float32 parameters regressed on the mirrored crops (in the
            mirror image's own frame), with flip averaging; ``None`` without.
    """

    params: np.ndarray
    vertices: tuple[np.ndarray, ...]
    rotation: np.ndarray
    pose: np.ndarray
    flip_disagreement: np.ndarray | None = None
    mirror_params: np.ndarray | None = None


def gather_vertices(model: MorphableModel, vertex_index: np.ndarray) -> MorphableModel:
    """The 3DMM rows of some vertices, in the given order; unlike
    :meth:`~facealign_cli.core.morphable_model.MorphableModel.subset` the landmarks need not be
    among them (the result has no ``keypoint_rows``).

    Args:
        vertex_index: (K,) int vertex indices of the full model.
    """
    vi = np.asarray(vertex_index, dtype=np.int64)
    rows = (vi[:, None] * 3 + np.arange(3)[None, :]).reshape(-1)
    return MorphableModel(mean=model.mean[rows], w_shp=np.ascontiguousarray(model.w_shp[rows]),
                          w_exp=np.ascontiguousarray(model.w_exp[rows]),
                          keypoint_rows=np.zeros(0, dtype=np.int64))


def mean_rotation(Ra: np.ndarray, Rb: np.ndarray) -> np.ndarray:
    """Chordal mean of two rotations: the rotation nearest (Frobenius) to ``Ra + Rb``.

    Args:
        Ra, Rb: (..., 3, 3) rotation matrices.

    Returns:
        (..., 3, 3) float64 rotations (SVD projection, determinant +1).
    """
    U, _, Vt = np.linalg.svd(np.asarray(Ra, np.float64) + np.asarray(Rb, np.float64))
    d = np.sign(np.linalg.det(U @ Vt))
    U = U.copy()
    U[..., :, -1] *= d[..., None]
    return U @ Vt


class CropFitter:
    """Regress crops and evaluate the 3DMM on fixed vertex sets, optionally flip-averaged.

    Args:
        model: the full 3DMM (:func:`facealign_cli.core.morphable_model.load_morphable_model`).
        vertex_sets: the vertex sets to evaluate, each either the string ``"landmarks"`` (the 68
            iBUG keypoints, mirrored with the iBUG permutation) or a
            :class:`~facealign_cli.core.morphable_model.MorphableModel` subset together with
            its (K,) vertex indices in the full model, as a tuple ``(subset, index)``.
        flip: average with the prediction of the mirrored crop.
        pose_convention: the convention of :attr:`CropFit.pose`, one of
            :data:`facealign_cli.defaults.POSE_CONVENTIONS` (default yaw-first; ``facealign
            evaluate`` uses ``"aflw2000"``, the benchmark's).

    Raises:
        ValueError: unknown ``pose_convention``.

    The mirror partners are computed once per instance (a k-d tree over the mean face).
    """

    def __init__(self, model: MorphableModel, vertex_sets=("landmarks",), *, flip: bool = True,
                 pose_convention: str = DEFAULT_POSE_CONVENTION):
        self.model = model
        self.flip = flip
        self.pose_convention = G.check_pose_convention(pose_convention)
        self._sets = []
        mirror = vertex_mirror_map(model) if flip else None
        for vs in vertex_sets:
            if isinstance(vs, str) and vs == "landmarks":
                kp = model.keypoint_vertices
                direct = gather_vertices(model, kp)
                partner = gather_vertices(model, kp[ibug68_flip_permutation()]) if flip else None
            else:
                direct, index = vs
                partner = gather_vertices(model, mirror[np.asarray(index)]) if flip else None
            self._sets.append((direct, partner))

    def __call__(self, regressor: Regressor, crops: np.ndarray, *,
                 sets: tuple[int, ...] | None = None, params: np.ndarray | None = None,
                 mirror_params: np.ndarray | None = None) -> CropFit:
        """Fit a batch of crops.

        The crops (and, with flip averaging, their mirror images) that need the network go
        through it in **one** ``regressor.predict`` call.

        Args:
            regressor: a :class:`Regressor`.
            crops: (B, S, S, 3) uint8 BGR roi crops, S = ``regressor.input_size``.
            sets: indices of the vertex sets to evaluate (default all).
            params: optional (B, 62) predictions already made on these very crops (a row of
                NaN: not known); known rows are not regressed again.
            mirror_params: the same for the mirrored crops (used with flip averaging).

        Returns:
            A :class:`CropFit`.
        """
        size = regressor.input_size
        which = range(len(self._sets)) if sets is None else sets
        params, pf = _predict_missing(regressor, crops, params,
                                      mirror_params if self.flip else None, self.flip)
        disagreement = None
        rot = np.stack([G.rotation_from_camera(p) for p in params]) if len(params) else \
            np.zeros((0, 3, 3))
        verts = [G.params_to_crop_vertices(params, self._sets[j][0], None, size) for j in which]
        if self.flip and len(params):
            rf = np.stack([_REFLECT_X @ G.rotation_from_camera(p) @ _REFLECT_X for p in pf])
            rot = mean_rotation(rot, rf)
            for k, j in enumerate(which):
                vf = G.params_to_crop_vertices(pf, self._sets[j][1], None, size)
                vf[:, 0] = (size - 1) - vf[:, 0]
                if k == 0:
                    gap = np.linalg.norm(verts[k][:, :2] - vf[:, :2], axis=1).mean(axis=1)
                    disagreement = (gap / size).astype(np.float32)
                verts[k] = 0.5 * (verts[k] + vf)
        pose = np.zeros((0, 3)) if not len(rot) else \
            np.stack([G.angles_from_rotation(r, self.pose_convention) for r in rot])
        return CropFit(params=params, vertices=tuple(v.astype(np.float32) for v in verts),
                       rotation=rot, pose=pose, flip_disagreement=disagreement,
                       mirror_params=pf if self.flip else None)


def _predict_missing(regressor: Regressor, crops: np.ndarray, params, mirror_params,
                     flip: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Direct and (with ``flip``) mirror-image parameters of ``crops``: the rows of ``params`` /
    ``mirror_params`` that are given and finite are kept, the others regressed, all of them in
    one ``predict`` call. Returns ``(params, mirror_params)``, (B, 62) float32 each (the second
    ``None`` without flip)."""
    n = len(crops)
    direct = np.full((n, 62), np.nan, np.float32) if params is None else \
        np.array(params, dtype=np.float32).reshape(n, 62)
    mirror = None
    todo_d = ~np.isfinite(direct).all(axis=1)
    todo_m = np.zeros(n, dtype=bool)
    batch = [crops[todo_d]]
    if flip:
        mirror = np.full((n, 62), np.nan, np.float32) if mirror_params is None else \
            np.array(mirror_params, dtype=np.float32).reshape(n, 62)
        todo_m = ~np.isfinite(mirror).all(axis=1)
        batch.append(crops[todo_m][:, :, ::-1])
    k = int(todo_d.sum())
    if k + int(todo_m.sum()):
        out = regressor.predict(np.ascontiguousarray(np.concatenate(batch))).astype(np.float32)
        direct[todo_d] = out[:k]
        if flip:
            mirror[todo_m] = out[k:]
    return direct, mirror

