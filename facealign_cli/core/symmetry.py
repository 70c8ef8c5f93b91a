"""Left-right symmetry of the 68 iBUG landmarks and of the 3DMM vertices (for flip
augmentation and flip-averaged labels)."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from facealign_cli.core.morphable_model import MorphableModel


def ibug68_flip_permutation() -> np.ndarray:
    """(68,) int64 ``perm`` such that landmark ``i`` of a face is landmark ``perm[i]`` of its
    mirror image (iBUG 68-point scheme: jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, mouth
    48-67)."""
    perm = np.arange(68)
    pairs = [(i, 16 - i) for i in range(8)] + [(17 + i, 26 - i) for i in range(5)]
    pairs += [(31, 35), (32, 34), (36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]
    pairs += [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58), (60, 64), (61, 63), (65, 67)]
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return perm


def vertex_mirror_map(model: MorphableModel) -> np.ndarray:
    """(N,) int64 index of each vertex's mirror partner on the mean face.

    The mean face is mirrored about the plane x = mean(x) (model frame) and each mirrored vertex
    is matched to its nearest vertex (k-d tree). The match is approximate (about half a vertex
    spacing on the BFM mean face).
    """
    v = model.shape(np.zeros(40), np.zeros(10)).T.astype(np.float64)
    x0 = v[:, 0].mean()
    mirrored = v.copy()
    mirrored[:, 0] = 2 * x0 - v[:, 0]
    _, idx = cKDTree(v).query(mirrored)
    return idx.astype(np.int64)
