#!/usr/bin/env python
"""Build the project's face region of the 3DDFA 3DMM and its triangulation.

The 3DDFA basis ships 53,215 vertices (face, ears, neck) and no triangles. This script picks the
FACE REGION (forehead to chin, ear to ear, no neck), triangulates it, and writes
``facealign_cli/data/face_topology.npz`` with

* ``vertex_index``: (M,) int64 indices into the full basis (sorted ascending),
* ``triangles``: (T, 3) int32 indices into ``vertex_index`` (0..M-1), counter-clockwise seen
  from outside in the model frame, so right-hand normals point out of the face,
* metadata scalars / strings (prefix ``meta_``) describing the rule and its parameters.

Everything is computed from the mean face (zero shape and expression coefficients) in the model
frame: x right (subject's left), y up, z towards the viewer, model units (about +-1e5).

REGION RULE (every threshold is relative to the mean face's own landmarks; "face height" H =
mean brow y - chin y, landmark 8):

1. No neck. The jaw contour landmarks are mirrored (landmark i averaged with 16 - i) to give a
   symmetric polyline of (z, y) side-view points from landmark 3 (below the ear lobe) down to
   landmark 8 (chin); ``y_jaw(z)`` interpolates it linearly in z and stays flat beyond its ends.
   A vertex is dropped when ``y < y_jaw(z) - JAW_MARGIN * H``: the throat, the neck and the
   underside of the jaw go; a thin band under the chin stays so that the chin is closed when
   the head tilts up.
2. Ear to ear, ears themselves excluded. A straight side-view line ``z = a * y + b`` is fitted
   through the mirrored landmarks 0..3 (the front edge of the ear / the jaw's ramus). A vertex
   more than ``BACK_MARGIN * H`` behind it (smaller z) is dropped: the ear flaps, the skin
   under the ear lobes and the hair-covered side of the head above the ears go, the cheeks run
   out to the roots of the ears. (The ear flaps curl over themselves and over the skin below
   them, which one spherical chart cannot triangulate without holes and slivers.)
3. Hairline. A vertex above ``mean brow y + HAIRLINE_FACTOR * (mean brow y - subnasale y)``
   (rule of facial thirds: the forehead is about as tall as brow to nose base) is dropped. On
   the 3DDFA mean face the basis' own top edge lies below this estimate, so the whole forehead
   the basis has is kept (the printed count is 0).
4. Single layer. Seen from the projection centre C (below), a vertex that lies under another
   layer of the surface (the nostril interiors, the bottom of the alar creases) is dropped; see
   :func:`self_occluded`.

TRIANGULATION: every region vertex is seen from C, a point behind the face on the mid-sagittal
plane at the height of landmarks 0 / 16 and ``CENTRE_BEHIND * H`` behind them, and mapped to
longitude / latitude; scipy's Delaunay triangulates those 2-D points (counter-clockwise in
(lon, lat) is counter-clockwise seen from outside). Triangles are then filtered, in order:
an edge longer in 3-D than ``LONG_EDGE_FACTOR`` times the local vertex spacing of its end points
(distance to the ``SPACING_K``-th nearest neighbour); degenerate (repeated index or ~zero
area); folded or grazing (right-hand normal at more than acos(FOLD_EPS) from the direction
away from C); duplicates; slivers (aspect ratio > ``PEEL_ASPECT``) peeled off the boundary
repeatedly; "bow-tie" fans meeting at a single vertex (the smaller fans go); all but the
largest edge-connected component. Holes of at most ``MAX_HOLE_EDGES`` edges are closed by a
fan when that adds no folded triangle. Only vertices referenced by the triangles are kept
(re-indexed) and all 68 landmarks must survive.

Deterministic: no randomness is used; Qhull is run with fixed options on fixed input.

Usage::

    python scripts/build_face_topology.py [--out PATH]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import Delaunay, cKDTree

from facealign_cli.core.morphable_model import TOPOLOGY_FILE, load_morphable_model

JAW_MARGIN = 0.05        # band kept below the jaw curve, in face heights (brow to chin)
JAW_FIRST_LANDMARK = 3   # jaw curve starts at landmark 3 / 13 (below the ear lobe)
RAMUS_LAST_LANDMARK = 3  # ear-root line fitted through landmarks 0..3 (and 16..13)
BACK_MARGIN = 0.05       # vertices this far (face heights) behind that line are dropped
HAIRLINE_FACTOR = 1.0    # forehead height as a multiple of the brow-to-subnasale height
CENTRE_BEHIND = 0.5      # projection centre behind the ear landmarks, in face heights
SPACING_K = 10           # local spacing = distance to the k-th nearest neighbour
LONG_EDGE_FACTOR = 3.0   # max edge length / max(local spacing of its two end points)
PEEL_ASPECT = 12.0       # boundary triangles with a worse aspect ratio are peeled off
OCCLUSION_RADIUS = 3.0   # self-occlusion test: angular search radius, in median spacings
OCCLUSION_DEPTH = 4.0    # ... minimum radial gap to the outer layer, in median spacings
OCCLUSION_STEEPNESS = 5.0  # ... minimum radial gap / lateral separation of the two
MAX_HOLE_EDGES = 8       # holes with at most this many boundary edges are closed
AREA_EPS_REL = 1e-6      # degenerate when area < AREA_EPS_REL * median area
FOLD_EPS = 0.05          # folded when cos(normal, direction from C) < FOLD_EPS
MIN_VERTICES = 30_000


def mean_face() -> tuple[np.ndarray, np.ndarray]:
    """Mean face of the installed 3DMM basis.

    Returns:
        (vertices, keypoints): (N, 3) float64 model-frame vertices (x right, y up, z towards the
        viewer; model units) and (68,) int64 landmark vertex indices (iBUG order).

    Raises:
        facealign_cli.core.morphable_model.BasisNotFoundError: the basis is not installed.
    """
    m = load_morphable_model()
    v = m.shape(np.zeros(40, np.float32), np.zeros(10, np.float32)).T.astype(np.float64)
    return np.ascontiguousarray(v), m.keypoint_vertices.astype(np.int64)


def face_region_mask(v: np.ndarray, kp: np.ndarray) -> tuple[np.ndarray, dict]:
    """Vertices of the face region (rule in the module docstring).

    Args:
        v: (N, 3) float model-frame mean-face vertices.
        kp: (68,) int landmark vertex indices (iBUG order).

    Returns:
        (mask, info): (N,) bool, True for face-region vertices, and a dict of the rule's derived
        values (model units) and drop counts.

    Raises:
        RuntimeError: the mirrored jaw landmarks 3..8 are not strictly increasing in z.
    """
    lm = v[kp]
    jaw = 0.5 * (lm[0:9] + lm[16:7:-1])  # landmarks 0..8 averaged with their mirrors 16..8
    jaw = jaw[JAW_FIRST_LANDMARK:]
    zs, ys = jaw[:, 2], jaw[:, 1]
    if not np.all(np.diff(zs) > 0):
        raise RuntimeError("jaw landmarks are not monotonic in z; the region rule needs it")
    y_brow = float(lm[17:27, 1].mean())
    y_chin = float(lm[8, 1])
    y_subnasale = float(lm[33, 1])
    face_height = y_brow - y_chin
    margin = JAW_MARGIN * face_height
    y_jaw = np.interp(v[:, 2], zs, ys) - margin
    below_jaw = v[:, 1] < y_jaw
    y_hair = y_brow + HAIRLINE_FACTOR * (y_brow - y_subnasale)
    above_hair = v[:, 1] > y_hair
    ramus = 0.5 * (lm[0:RAMUS_LAST_LANDMARK + 1] + lm[16:15 - RAMUS_LAST_LANDMARK:-1])
    slope, icpt = np.polyfit(ramus[:, 1], ramus[:, 2], 1)  # z = slope * y + icpt
    back_margin = BACK_MARGIN * face_height
    behind = v[:, 2] < slope * v[:, 1] + icpt - back_margin
    mask = ~below_jaw & ~above_hair & ~behind
    info = dict(face_height=face_height, jaw_margin=margin, hairline_y=y_hair,
                back_margin=back_margin, ramus_line=(float(slope), float(icpt)),
                dropped_neck=int(below_jaw.sum()), dropped_top=int(above_hair.sum()),
                dropped_behind=int((behind & ~below_jaw & ~above_hair).sum()),
                jaw_curve_zy=np.stack([zs, ys], 1))
    return mask, info


def self_occluded(v: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Vertices hidden under another layer of the surface as seen from the centre c.

    A vertex i is self-occluded when some vertex j lies in nearly the same direction from c
    (within ``OCCLUSION_RADIUS`` median vertex spacings, as an angle at i's distance) but
    farther out, by more than ``OCCLUSION_DEPTH`` median spacings and more than
    ``OCCLUSION_STEEPNESS`` times their lateral separation: j belongs to an outer layer (e.g.
    the nose skin over the nostril interior), not to a steep slope of i's own layer. A single
    spherical chart cannot hold both layers, so the inner one is dropped.

    Args:
        v: (M, 3) float64 model-frame vertices. c: (3,) projection centre.

    Returns:
        (M,) bool, True for self-occluded vertices.
    """
    d = v - c
    r = np.linalg.norm(d, axis=1)
    u = d / r[:, None]
    spacing = float(np.median(cKDTree(v).query(v, k=SPACING_K + 1)[0][:, -1]))
    radius = OCCLUSION_RADIUS * spacing / r  # per-vertex angular search radius (chord ~ angle)
    pairs = cKDTree(u).query_pairs(float(radius.max()), output_type="ndarray")
    i = np.concatenate([pairs[:, 0], pairs[:, 1]])
    j = np.concatenate([pairs[:, 1], pairs[:, 0]])
    chord = np.linalg.norm(u[i] - u[j], axis=1)
    near = chord <= radius[i]
    i, j, chord = i[near], j[near], chord[near]
    dr = r[j] - r[i]
    lateral = r[i] * 2.0 * np.arcsin(np.clip(0.5 * chord, 0.0, 1.0))
    hit = (dr > OCCLUSION_DEPTH * spacing) & (dr > OCCLUSION_STEEPNESS * lateral)
    return np.bincount(i[hit], minlength=len(v)) > 0


def projection_centre(v: np.ndarray, kp: np.ndarray, face_height: float) -> np.ndarray:
    """Centre C of the spherical projection: behind the face on the mid-sagittal plane.

    Returns:
        (3,) float64 model-frame point: x = midpoint of landmarks 0 and 16, y = their mean
        height, z = their mean depth minus ``CENTRE_BEHIND * face_height``.
    """
    ear = 0.5 * (v[kp[0]] + v[kp[16]])
    return np.array([ear[0], ear[1], ear[2] - CENTRE_BEHIND * face_height])


def lonlat(v: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Longitude / latitude (radians) of points seen from c.

    Args:
        v: (N, 3) model-frame points. c: (3,) centre.

    Returns:
        (N, 2) float64 [lon, lat]; lon grows with x (to the subject's left), lat with y (up),
        so counter-clockwise in (lon, lat) is counter-clockwise seen from outside.
    """
    d = v - c
    lon = np.arctan2(d[:, 0], d[:, 2])
    lat = np.arctan2(d[:, 1], np.hypot(d[:, 0], d[:, 2]))
    return np.stack([lon, lat], 1)


def triangle_normals(v: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(T, 3) right-hand (unnormalised) normals of triangles t over vertices v; |n| = 2 area."""
    a, b, c = v[t[:, 0]], v[t[:, 1]], v[t[:, 2]]
    return np.cross(b - a, c - a)


def edge_components(t: np.ndarray, n_vertices: int) -> tuple[int, np.ndarray]:
    """Edge-connected components of triangles (two triangles touch when they share an edge).

    Returns:
        (count, labels): number of components and (T,) int labels.
    """
    e = np.sort(np.concatenate([t[:, [0, 1]], t[:, [1, 2]], t[:, [2, 0]]]), axis=1)
    key = e[:, 0].astype(np.int64) * n_vertices + e[:, 1]
    tri_of = np.tile(np.arange(len(t)), 3)
    order = np.argsort(key, kind="stable")
    ks, ts = key[order], tri_of[order]
    same = ks[1:] == ks[:-1]
    a, b = ts[:-1][same], ts[1:][same]
    g = coo_matrix((np.ones(len(a)), (a, b)), shape=(len(t), len(t)))
    return connected_components(g, directed=False)


def mesh_stats(v: np.ndarray, t: np.ndarray) -> dict:
    """Topology statistics of a triangle mesh.

    Returns:
        dict with vertices, triangles, edges, euler (V - E + F), components (edge-connected),
        boundary_edges, boundary_loops (connected components of the boundary-edge graph),
        nonmanifold_edges (used by more than two triangles) and nonmanifold_vertices (on more
        than two boundary edges: two fans touching at one vertex).
    """
    n = len(v)
    ukey, cnt = np.unique(edge_keys(t, n).reshape(-1), return_counts=True)
    ue = np.stack([ukey // n, ukey % n], axis=1)
    bnd = ue[cnt == 1]
    if len(bnd):
        used = np.unique(bnd)
        remap = np.full(len(v), -1)
        remap[used] = np.arange(len(used))
        g = coo_matrix((np.ones(len(bnd)), (remap[bnd[:, 0]], remap[bnd[:, 1]])),
                       shape=(len(used), len(used)))
        loops = connected_components(g, directed=False)[0]
    else:
        loops = 0
    bdeg = np.bincount(bnd.reshape(-1), minlength=len(v))
    return dict(vertices=len(v), triangles=len(t), edges=len(ue),
                nonmanifold_vertices=int((bdeg > 2).sum()),
                euler=len(v) - len(ue) + len(t), components=edge_components(t, len(v))[0],
                boundary_edges=len(bnd), boundary_loops=int(loops),
                nonmanifold_edges=int((cnt > 2).sum()))


def edge_keys(t: np.ndarray, n: int | None = None) -> np.ndarray:
    """(T, 3) int64 undirected key ``min * n + max`` of edge k of each triangle (corner k to
    corner k + 1); n defaults to 1 + the largest index."""
    a = t.astype(np.int64)
    b = np.roll(a, -1, axis=1)
    if n is None:
        n = int(a.max()) + 1 if a.size else 1
    return np.minimum(a, b) * n + np.maximum(a, b)


def triangle_keys(t: np.ndarray) -> np.ndarray:
    """(T,) int64 key of each triangle's vertex set (equal for duplicates in any order)."""
    s = np.sort(t.astype(np.int64), axis=1)
    n = int(s.max()) + 1 if s.size else 1
    return (s[:, 0] * n + s[:, 1]) * n + s[:, 2]


def boundary_edge_mask(t: np.ndarray) -> np.ndarray:
    """(T, 3) bool: True where edge k of triangle i (from corner k to k+1) is on the boundary."""
    _, inv, cnt = np.unique(edge_keys(t).reshape(-1), return_inverse=True, return_counts=True)
    return (cnt[inv.reshape(-1)] == 1).reshape(-1, 3)


def aspect_ratio(v: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(T,) longest edge / its altitude (1.155 for an equilateral triangle, inf if flat)."""
    e = np.stack([np.linalg.norm(v[t[:, k]] - v[t[:, (k + 1) % 3]], axis=1) for k in range(3)])
    emax = e.max(axis=0)
    area2 = np.linalg.norm(triangle_normals(v, t), axis=1)
    with np.errstate(divide="ignore"):
        return emax * emax / area2


def peel_boundary_slivers(v: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, int]:
    """Repeatedly remove triangles that touch the boundary and have aspect > PEEL_ASPECT.

    Returns:
        (triangles, removed): the kept (T', 3) triangles and how many were removed.
    """
    n0 = len(t)
    while True:
        on_bnd = boundary_edge_mask(t).any(axis=1)
        bad = on_bnd & (aspect_ratio(v, t) > PEEL_ASPECT)
        if not bad.any():
            return t, n0 - len(t)
        t = t[~bad]


def remove_bowties(t: np.ndarray) -> tuple[np.ndarray, int]:
    """Make every vertex manifold: where several triangle fans meet at one vertex only, keep
    the largest fan (ties: the one with the lowest triangle index).

    Returns:
        (triangles, removed): the kept (T', 3) triangles and how many were removed.
    """
    n0 = len(t)
    while True:
        bnd = boundary_edge_mask(t)
        corners = np.stack([t, np.roll(t, -1, axis=1)], axis=2)[bnd]
        deg = np.bincount(corners.reshape(-1), minlength=int(t.max()) + 1)
        bad_vertices = np.flatnonzero(deg > 2)
        if bad_vertices.size == 0:
            return t, n0 - len(t)
        drop = np.zeros(len(t), bool)
        for vid in bad_vertices:
            fan = np.flatnonzero((t == vid).any(axis=1))
            # the other two corners of each triangle; triangles sharing one are connected
            others = [set(t[f][t[f] != vid].tolist()) for f in fan]
            pairs = [(a, b) for a in range(len(fan)) for b in range(a + 1, len(fan))
                     if others[a] & others[b]]
            ia, ib = (np.array(x, dtype=np.int64) for x in zip(*pairs)) if pairs else \
                (np.zeros(0, np.int64), np.zeros(0, np.int64))
            adj = coo_matrix((np.ones(len(ia)), (ia, ib)), shape=(len(fan), len(fan)))
            _, roots = connected_components(adj, directed=False)
            sizes = np.bincount(roots, minlength=len(fan))
            drop[fan[roots != np.argmax(sizes)]] = True
        t = t[~drop]


def boundary_loops(t: np.ndarray) -> list[np.ndarray]:
    """Boundary loops of a mesh whose vertices are all manifold.

    Returns:
        list of (L,) int64 vertex sequences p0, p1, ... where p[k+1] -> p[k] is a boundary edge
        as wound in its triangle (so a fan (p0, p[k], p[k+1]) has the same winding as its
        neighbours); ordered by the loops' smallest vertex index, each starting at it.
    """
    bnd = boundary_edge_mask(t)
    src = t[bnd]
    dst = np.roll(t, -1, axis=1)[bnd]
    src_of = dict(zip(dst.tolist(), src.tolist()))
    seen: set[int] = set()
    loops = []
    for start in sorted(src_of):
        if start in seen:
            continue
        loop = [start]
        seen.add(start)
        nxt = src_of[start]
        while nxt != start:
            loop.append(nxt)
            seen.add(nxt)
            nxt = src_of[nxt]
        loops.append(np.array(loop, dtype=np.int64))
    return loops


def fill_small_holes(v: np.ndarray, t: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, int]:
    """Close holes of at most ``MAX_HOLE_EDGES`` boundary edges with a triangle fan.

    The longest boundary loop (the outline) is never touched. A hole is left open when its fan
    would add a folded, grazing or degenerate triangle or an edge that already exists.

    Returns:
        (triangles, added): (T', 3) triangles and the number of triangles added.
    """
    loops = boundary_loops(t)
    if len(loops) < 2:
        return t, 0
    outline = int(np.argmax([len(lp) for lp in loops]))
    e = np.sort(np.concatenate([t[:, [0, 1]], t[:, [1, 2]], t[:, [2, 0]]]), axis=1)
    existing = set(map(tuple, e.tolist()))
    new = []
    for k, lp in enumerate(loops):
        if k == outline or len(lp) > MAX_HOLE_EDGES:
            continue
        fan = np.stack([np.full(len(lp) - 2, lp[0]), lp[1:-1], lp[2:]], axis=1)
        n = triangle_normals(v, fan)
        ray = v[fan].mean(axis=1) - c
        norm = np.linalg.norm(n, axis=1) * np.linalg.norm(ray, axis=1)
        if np.any(norm == 0) or np.any(np.einsum("ij,ij->i", n, ray) < FOLD_EPS * norm):
            continue
        diagonals = {tuple(sorted((int(lp[0]), int(q)))) for q in lp[2:-1]}
        if diagonals & existing:
            continue
        existing |= diagonals
        new.append(fan)
    if not new:
        return t, 0
    added = np.concatenate(new)
    return np.concatenate([t, added]), len(added)


def triangulate(v: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, dict]:
    """Triangulate region vertices by Delaunay over their longitude / latitude seen from c.

    Args:
        v: (M, 3) float64 model-frame region vertices. c: (3,) projection centre (behind).

    Returns:
        (triangles, counts): (T, 3) int64 indices into v, counter-clockwise seen from outside
        (normals point away from c), and a dict of how many triangles each filter removed.
    """
    ll = lonlat(v, c)
    dl = Delaunay(ll, qhull_options="Qbb Qc Qz Q12")
    t = dl.simplices.astype(np.int64)
    counts = dict(delaunay=len(t), coplanar_points=int(len(dl.coplanar)))

    # counter-clockwise in (lon, lat) == counter-clockwise seen from outside
    p = ll[t]
    area2d = ((p[:, 1, 0] - p[:, 0, 0]) * (p[:, 2, 1] - p[:, 0, 1])
              - (p[:, 1, 1] - p[:, 0, 1]) * (p[:, 2, 0] - p[:, 0, 0]))
    t[area2d < 0] = t[area2d < 0][:, [0, 2, 1]]

    # over-long edges relative to local spacing
    spacing = cKDTree(v).query(v, k=SPACING_K + 1)[0][:, -1]
    keep = np.ones(len(t), bool)
    for i, j in ((0, 1), (1, 2), (2, 0)):
        length = np.linalg.norm(v[t[:, i]] - v[t[:, j]], axis=1)
        keep &= length <= LONG_EDGE_FACTOR * np.maximum(spacing[t[:, i]], spacing[t[:, j]])
    counts["long_edge"] = int((~keep).sum())
    t = t[keep]

    # degenerate: repeated index or (near) zero 3-D area
    n = triangle_normals(v, t)
    area = 0.5 * np.linalg.norm(n, axis=1)
    rep = (t[:, 0] == t[:, 1]) | (t[:, 1] == t[:, 2]) | (t[:, 0] == t[:, 2])
    degen = rep | (area <= AREA_EPS_REL * np.median(area))
    counts["degenerate"] = int(degen.sum())
    t, n, area = t[~degen], n[~degen], area[~degen]

    # folded or grazing: the outward normal must face away from the projection centre
    cen = v[t].mean(axis=1)
    ray = cen - c
    cosang = np.einsum("ij,ij->i", n, ray) / (2 * area * np.linalg.norm(ray, axis=1))
    folded = cosang < FOLD_EPS
    counts["folded_or_grazing"] = int(folded.sum())
    t = t[~folded]

    # duplicates (same vertex set, any order)
    _, first = np.unique(triangle_keys(t), return_index=True)
    counts["duplicate"] = int(len(t) - len(first))
    t = t[np.sort(first)]

    # peel slivers off the boundary (the local spacing of boundary vertices is inflated, so
    # the long-edge test lets thin triangles bridging concavities of the outline through)
    t, counts["boundary_slivers"] = peel_boundary_slivers(v, t)
    t, counts["bowtie"] = remove_bowties(t)

    # keep the largest edge-connected component
    ncomp, lab = edge_components(t, len(v))
    sizes = np.bincount(lab)
    counts["components_before"] = int(ncomp)
    counts["specks"] = int(len(t) - sizes.max())
    t = t[lab == np.argmax(sizes)]
    counts["kept"] = int(len(t))

    # close tiny holes (a few missing triangles, e.g. at the mouth corners)
    t, counts["hole_fill"] = fill_small_holes(v, t, c)
    return t, counts


def _check(ok: bool, message: str) -> None:
    """Raise RuntimeError(message) unless ok (kept active under ``python -O``)."""
    if not ok:
        raise RuntimeError(message)


def build(out: str | os.PathLike | None = None, verbose: bool = True) -> dict:
    """Compute the face region and triangles and write them to ``out`` (atomically).

    Args:
        out: destination ``.npz`` (default: ``facealign_cli/data/face_topology.npz``).
        verbose: print statistics.

    Returns:
        dict with ``vertex_index`` (M,) int64, ``triangles`` (T, 3) int32 and the statistics.

    Raises:
        RuntimeError: a landmark is lost, fewer than 30,000 vertices remain, or a check on the
            result (folds, degenerate / duplicate triangles, components, manifoldness, outward
            normals at the nose tip) fails.
        facealign_cli.core.morphable_model.BasisNotFoundError: the 3DMM basis is not installed.
    """
    out = Path(out) if out is not None else TOPOLOGY_FILE
    v, kp = mean_face()
    mask, info = face_region_mask(v, kp)
    region = np.flatnonzero(mask)
    _check(np.isin(kp, region).all(), "a landmark fell outside the region rule")
    c = projection_centre(v, kp, info["face_height"])
    occluded = self_occluded(v[region], c)
    info["dropped_occluded"] = int(occluded.sum())
    region = region[~occluded]
    _check(np.isin(kp, region).all(), "a landmark is self-occluded")
    t, counts = triangulate(v[region], c)

    # keep only referenced vertices, re-index (vertex_index stays sorted)
    used = np.unique(t)
    remap = np.full(len(region), -1, np.int64)
    remap[used] = np.arange(len(used))
    vertex_index = region[used].astype(np.int64)
    tris = remap[t].astype(np.int32)
    missing = np.setdiff1d(kp, vertex_index)
    _check(missing.size == 0, f"landmark vertices lost by the triangulation: {missing.tolist()}")
    _check(len(vertex_index) >= MIN_VERTICES, f"only {len(vertex_index)} vertices")

    # final checks on the result
    fv = v[vertex_index]
    n = triangle_normals(fv, tris)
    _check((np.linalg.norm(n, axis=1) > 0).all(), "degenerate triangle")
    _check((np.einsum("ij,ij->i", n, fv[tris].mean(1) - c) > 0).all(), "folded triangle")
    _check(len(np.unique(triangle_keys(tris))) == len(tris), "duplicate triangle")
    nose = int(np.flatnonzero(vertex_index == kp[30])[0])
    vn = n[(tris == nose).any(1)].sum(0)
    _check(vn[2] > 0, "normals do not point out of the face at the nose tip")
    stats = mesh_stats(fv, tris)
    _check(stats["components"] == 1, "more than one connected component")
    _check(stats["nonmanifold_edges"] == 0, "non-manifold edge")
    _check(stats["nonmanifold_vertices"] == 0, "non-manifold (bow-tie) vertex")

    meta = {
        "meta_rule": np.array(
            "3DDFA 3DMM mean face; drop the neck: y < y_jaw(z) - jaw_margin (y_jaw: mirrored "
            "jaw landmarks 3..8 in the (z, y) side view, flat beyond its ends); drop the ears "
            "and everything behind their roots: z < line through mirrored landmarks 0..3 in "
            "(y, z) - back_margin; drop y > hairline (brow + 1.0 x brow-to-subnasale); drop "
            "vertices under another layer seen from the projection centre (nostril interiors); "
            "Delaunay over lon/lat seen from the centre; long-edge, degenerate, folded/grazing, "
            "duplicate, boundary-sliver and bow-tie triangles removed; largest component kept; "
            "holes of <= 8 edges closed"),
        "meta_frame": np.array("model frame: x right (subject's left), y up, z towards the "
                               "viewer; triangles CCW seen from outside"),
        "meta_jaw_margin_face_heights": np.float64(JAW_MARGIN),
        "meta_jaw_first_landmark": np.int64(JAW_FIRST_LANDMARK),
        "meta_back_margin_face_heights": np.float64(BACK_MARGIN),
        "meta_ramus_last_landmark": np.int64(RAMUS_LAST_LANDMARK),
        "meta_face_height": np.float64(info["face_height"]),
        "meta_hairline_factor": np.float64(HAIRLINE_FACTOR),
        "meta_centre": c.astype(np.float64),
        "meta_centre_behind_face_heights": np.float64(CENTRE_BEHIND),
        "meta_long_edge_factor": np.float64(LONG_EDGE_FACTOR),
        "meta_spacing_k": np.int64(SPACING_K),
        "meta_fold_eps": np.float64(FOLD_EPS),
        "meta_peel_aspect": np.float64(PEEL_ASPECT),
        "meta_n_basis_vertices": np.int64(len(v)),
        "meta_fraction_triangles_kept": np.float64(counts["kept"] / counts["delaunay"]),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=out.name + ".", suffix=".tmp.npz", dir=out.parent)
    os.close(fd)
    try:
        np.savez_compressed(tmp, vertex_index=vertex_index, triangles=tris, **meta)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give it ordinary permissions
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)

    if verbose:
        print(f"basis vertices          {len(v)}")
        print(f"region rule keeps       {len(region)}  (neck dropped {info['dropped_neck']}, "
              f"behind the ear root dropped {info['dropped_behind']}, "
              f"above hairline dropped {info['dropped_top']}, "
              f"self-occluded dropped {info['dropped_occluded']})")
        print(f"face height {info['face_height']:.0f}, jaw margin {info['jaw_margin']:.0f}, "
              f"hairline y {info['hairline_y']:.0f} (model top y {v[:, 1].max():.0f})")
        print(f"projection centre       {np.round(c).tolist()}")
        print(f"extent x {fv[:, 0].min():.0f}..{fv[:, 0].max():.0f}, "
              f"y {fv[:, 1].min():.0f}..{fv[:, 1].max():.0f} "
              f"(chin landmark y {v[kp[8], 1]:.0f}), all 68 landmarks inside")
        print("triangles: " + ", ".join(f"{k} {val}" for k, val in counts.items()))
        print(f"fraction of Delaunay triangles kept {counts['kept'] / counts['delaunay']:.4f}")
        print(f"final: vertices {stats['vertices']} "
              f"({stats['vertices'] / len(region):.4f} of the region), "
              f"triangles {stats['triangles']}, edges {stats['edges']}, "
              f"components {stats['components']}, euler {stats['euler']}, "
              f"boundary edges {stats['boundary_edges']}, "
              f"boundary loops {stats['boundary_loops']}, "
              f"non-manifold edges {stats['nonmanifold_edges']}")
        print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB)")
    return dict(vertex_index=vertex_index, triangles=tris, stats=stats, counts=counts,
                info=info)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(TOPOLOGY_FILE), help="output .npz path")
    args = ap.parse_args(argv)
    build(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
