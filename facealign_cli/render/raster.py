"""Z-buffered rasterisation of the dense face meshes of one photo (CPU, no OpenGL).

The triangles of every face of a photo are rasterised together into one z-buffer, so where
faces overlap the nearer one wins pixel by pixel, and on a profile the far cheek is hidden by
the nose. The rasteriser is DEODR's 2.5D scene renderer (``deodr.differentiable_renderer.Scene2D``,
a C++ scan-line rasteriser with a z-buffer and Gouraud interpolation of per-vertex values, PyPI
package ``deodr``; it needs no OpenGL, no display and no GPU). It is used here with
anti-aliasing off (``sigma = 0``, no edge flags) and without back-face culling: what it gives
back per pixel is the value of the nearest triangle covering the pixel centre, interpolated
linearly from its three vertices.

Frames: the vertices are in the image frame of :mod:`facealign_cli.core.face` (pixels, x right,
y down, pixel (0, 0) centred at (0, 0); z in pixels pointing away from the camera). A pixel is
covered by a triangle when its centre lies inside the triangle's (x, y) projection.

**Depth between faces.** Each face's z is relative to its own landmarks (z = 0 at their mean
depth) under its own scaled orthographic camera, so the z of two faces cannot be compared as
they are. :func:`scene_depths` places the faces in one depth order with the weak-perspective
rule: a face of pixel size ``s`` (a rotation-invariant size, the RMS distance of its vertices
from their centroid) stands at a distance proportional to ``focal / s``, and its own depths
``z`` (pixels at its scale) are ``z / s`` in the same units; so a vertex's scene depth is
``(focal + z) / s`` (times a constant). The bigger face is in front of a smaller one unless
they are close in size, and within one face the order is its own z.

``deodr`` is an optional dependency (the ``[render]`` extra: it has no wheel for every platform):
without it :func:`rasterize` raises :class:`RasterizerMissingError`, and the batch commands that
need it (``render --draw mesh|depth``, ``mesh --texture``) stop with that one line before any
image (:func:`require_rasterizer`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: What to run where ``deodr`` is missing.
RASTERIZER_INSTALL = "python3 -m pip install 'deodr>=0.2.3'"


class RasterizerMissingError(ImportError):
    """``deodr``, the rasteriser of the mesh and depth layers and of UV textures, is not
    installed. ``str(err)`` is one line ending with the command that installs it."""


def require_rasterizer(feature: str) -> None:
    """Check that the rasteriser imports.

    Args:
        feature: what needs it, for the message (e.g. ``"render --draw mesh"``).

    Raises:
        RasterizerMissingError: ``deodr`` does not import (the message names ``feature``, the
            install command and, for a wheel-less platform, building it from source).
    """
    try:
        import deodr.differentiable_renderer  # noqa: F401
    except ImportError as exc:
        raise RasterizerMissingError(
            f"{feature} needs the rasteriser deodr, which is not installed (it has no wheel "
            f"for some platforms, e.g. Linux aarch64 and Intel macOS, where pip builds it "
            f"from source with a C++ compiler); install it with: {RASTERIZER_INSTALL}"
        ) from exc


class ImageWindow:
    """Mixin of the per-pixel results over a window of an image: needs ``shape`` (H, W),
    ``origin`` (x0, y0) and a (h, w) ``face`` array (-1 where no mesh covers the pixel)."""

    @property
    def window(self) -> tuple[slice, slice]:
        """``(rows, cols)`` slices of the window in the whole image."""
        x0, y0 = self.origin
        return slice(y0, y0 + self.face.shape[0]), slice(x0, x0 + self.face.shape[1])

    @property
    def mask(self) -> np.ndarray:
        """(h, w) bool: the window's pixels covered by some mesh."""
        return self.face >= 0


@dataclass
class Raster(ImageWindow):
    """What :func:`rasterize` gives back: per pixel of a window ``[y0:y0+h, x0:x0+w]`` of the
    (H, W) image (the bounding box of the meshes, clipped to the image; nothing is covered
    outside it).

    Attributes:
        shape: (H, W) of the whole image.
        origin: (x0, y0) of the window's top-left pixel in the image.
        values: (h, w, C) float32, the interpolated per-vertex values of the nearest triangle
            covering the pixel centre (0 where nothing is covered).
        depth: (h, w) float32 scene depth (:func:`scene_depths` units, smaller = nearer),
            ``inf`` where no triangle covers the pixel.
        face: (h, w) int16 index of the mesh (face) seen at the pixel, -1 where none.
    """

    shape: tuple[int, int]
    origin: tuple[int, int]
    values: np.ndarray
    depth: np.ndarray
    face: np.ndarray

    def full(self, name: str, fill=0) -> np.ndarray:
        """One of ``values``, ``depth``, ``face`` as a whole-image (H, W[, C]) array, ``fill``
        outside the window."""
        a = getattr(self, name)
        out = np.full(tuple(self.shape) + a.shape[2:], fill, a.dtype)
        out[self.window] = a
        return out


def face_size(vertices: np.ndarray) -> float:
    """Rotation-invariant size of a face mesh in pixels: the RMS distance of its vertices from
    their centroid (estimated from 4096 to 8192 evenly spread vertices, the finite ones).
    ``vertices``: (N, 3) float, image frame."""
    v = np.asarray(vertices, dtype=np.float64)[::max(len(vertices) // 4096, 1)]  # a sample
    v = v[np.isfinite(v).all(axis=1)]
    return float(np.sqrt(v.var(axis=0).sum())) if len(v) else 0.0


def scene_depths(meshes: Sequence[np.ndarray], image_shape: tuple[int, ...],
                 focal: float | None = None) -> list[np.ndarray]:
    """Per-vertex depths of several faces of one photo in one common order (see the module
    docstring): ``d = (focal + z) * s_max / s``, with ``s`` the face's :func:`face_size` and
    ``s_max`` the largest of them (so the largest face keeps ``focal + z``).

    Args:
        meshes: per face, (N_i, 3) float vertices in the image frame.
        image_shape: (H, W[, C]) of the photo.
        focal: the camera's focal length in pixels (default the image diagonal, a 35 mm
            equivalent focal length of about 43 mm).

    Returns:
        Per face, (N_i,) float64 depths, smaller = nearer the camera.
    """
    h, w = int(image_shape[0]), int(image_shape[1])
    f = float(np.hypot(h, w)) if focal is None else float(focal)
    sizes = [max(face_size(v), 1e-6) for v in meshes]
    s_max = max(sizes, default=1.0)
    return [(f + np.asarray(v, dtype=np.float64)[:, 2]) * (s_max / s)
            for v, s in zip(meshes, sizes)]


def rasterize(meshes: Sequence[np.ndarray], triangles: np.ndarray,
              image_shape: tuple[int, ...], values: Sequence[np.ndarray] | None = None,
              *, focal: float | None = None, face_ids: bool = True) -> Raster:
    """Rasterise the faces of one photo into one z-buffer.

    Args:
        meshes: per face, (N_i, 3) float vertices in the image frame (x right, y down, z away
            from the camera, pixels). Faces partly or wholly off the image are clipped.
        triangles: (T, 3) integer indices shared by every face (e.g.
            ``FaceTopology.triangles``), or a sequence of per-face (T_i, 3) arrays. Winding
            does not matter (no back-face culling: the z-buffer alone decides).
        image_shape: (H, W[, C]) of the output.
        values: per face, (N_i, C) float per-vertex values to interpolate (e.g. shaded
            colours); None: C = 0.
        focal: see :func:`scene_depths`.
        face_ids: find which mesh is seen at each pixel (one more interpolated channel).
            False: :attr:`Raster.face` is only 0 where some mesh is seen, -1 elsewhere (faster
            when the values already tell the meshes apart).

    Returns:
        A :class:`Raster`.

    Raises:
        ValueError: inconsistent shapes.
        RasterizerMissingError: ``deodr`` is not installed.
    """
    require_rasterizer("rasterising the face meshes (the mesh and depth layers, UV textures)")
    from deodr.differentiable_renderer import Scene2D

    h, w = int(image_shape[0]), int(image_shape[1])
    n_faces = len(meshes)
    tris = [triangles] * n_faces if isinstance(triangles, np.ndarray) else list(triangles)
    if len(tris) != n_faces:
        raise ValueError("need one triangle array per mesh")
    vals = [None] * n_faces if values is None else list(values)
    if len(vals) != n_faces:
        raise ValueError("need one value array per mesh")
    n_ch = 0 if values is None or n_faces == 0 else int(np.asarray(vals[0]).reshape(
        len(meshes[0]), -1).shape[1])
    if n_faces == 0 or h == 0 or w == 0:
        return _empty((h, w), n_ch)
    _check_triangles(meshes, tris)
    depths = scene_depths(meshes, image_shape, focal)
    # channels rendered: the face index (or, without face_ids and values, a dummy one: the
    # renderer needs one), then the values
    k0 = 1 if face_ids or not n_ch else 0
    ij, dep, cols, face_ix = _joined_scene(meshes, tris, depths, vals, n_ch, k0)
    finite = np.isfinite(ij).all(axis=1) & np.isfinite(dep)
    if not finite.all():  # drop the triangles that touch a non-finite vertex
        face_ix = face_ix[finite[face_ix].all(axis=1)]
        ij[~finite] = 0.0
        dep[~finite] = 0.0
    if not len(face_ix):
        return _empty((h, w), n_ch)
    # rasterise only the window (clipped to the image) that holds the vertices
    used = ij[finite]
    x0, y0 = np.maximum(np.floor(used.min(axis=0)), 0).astype(int)
    x1, y1 = np.minimum(np.ceil(used.max(axis=0)), [w - 1, h - 1]).astype(int)
    if x1 < x0 or y1 < y0:
        return _empty((h, w), n_ch)
    ww, wh = int(x1 - x0 + 1), int(y1 - y0 + 1)
    ij -= (x0, y0)
    nv, nt, nc = len(ij), len(face_ix), n_ch + k0
    scene = Scene2D(
        faces=face_ix, faces_uv=face_ix, ij=ij, depths=dep,
        textured=np.zeros(nt, bool), uv=np.zeros((nv, 2)), shade=np.zeros(nv), colors=cols,
        shaded=np.zeros(nt, bool), edgeflags=np.zeros((nt, 3), bool), height=wh, width=ww,
        nb_colors=nc, texture=np.zeros((0, 0, nc)), background_color=np.full(nc, -1.0),
        backface_culling=False, integer_pixel_centers=True)
    image, zbuf = scene.render(sigma=0.0)
    covered = np.isfinite(zbuf)
    if face_ids:
        face = np.rint(image[:, :, 0]).astype(np.int16)
        covered &= face >= 0
        face[~covered] = -1
    else:
        face = np.where(covered, 0, -1).astype(np.int16)
    vals_out = image[:, :, k0:]
    vals_out[~covered] = 0.0
    return Raster(shape=(h, w), origin=(int(x0), int(y0)), values=vals_out.astype(np.float32),
                  depth=np.where(covered, zbuf, np.inf).astype(np.float32), face=face)


def _check_triangles(meshes: Sequence[np.ndarray], tris: list) -> None:
    """Raises ValueError unless each mesh is (N_i, 3) and its triangles an integer (T, 3)
    array of indices into it (each distinct triangle array scanned once)."""
    ranges: dict[int, tuple[int, int]] = {}  # per triangle array (shared by the faces): min, max
    for i, (v, t) in enumerate(zip(meshes, tris)):
        if np.ndim(v) != 2 or np.shape(v)[1] != 3:
            raise ValueError(f"mesh {i}: vertices must be (N, 3), got {np.shape(v)}")
        if id(t) not in ranges:
            ta = np.asarray(t)
            if ta.ndim != 2 or ta.shape[1] != 3 or not np.issubdtype(ta.dtype, np.integer):
                raise ValueError(f"mesh {i}: triangles must be an integer (T, 3) array")
            ranges[id(t)] = (int(ta.min()), int(ta.max())) if ta.size else (0, -1)
        lo, hi = ranges[id(t)]
        if lo < 0 or hi >= len(v):
            raise ValueError(f"mesh {i}: triangles must be (T, 3) indices into its vertices")


def _joined_scene(meshes, tris, depths, vals, n_ch: int, k0: int):
    """The meshes as one scene: ``(ij (V, 2) float64, depths (V,), colours (V, k0 + n_ch)
    float64, triangles (T, 3) uint32)``; colour channel 0 is the mesh index when ``k0``.
    Raises ValueError for values that are not (N_i, n_ch)."""
    ij, dep, cols, faces = [], [], [], []
    offset = 0
    for i, (v, t, d, c) in enumerate(zip(meshes, tris, depths, vals)):
        v = np.asarray(v)
        t = np.asarray(t)
        col = np.empty((len(v), n_ch + k0), np.float64)
        if k0:
            col[:, 0] = i  # constant over each face: interpolates exactly
        if n_ch:
            cv = np.asarray(c).reshape(len(v), -1)
            if cv.shape[1] != n_ch:
                raise ValueError(f"mesh {i}: values must be ({len(v)}, {n_ch})")
            col[:, k0:] = cv
        ij.append(v[:, :2])
        dep.append(d)
        cols.append(col)
        faces.append(t + offset if offset else t)
        offset += len(v)
    return (np.concatenate(ij).astype(np.float64), np.concatenate(dep), np.concatenate(cols),
            np.concatenate(faces).astype(np.uint32))


def _empty(shape: tuple[int, int], n_ch: int) -> Raster:
    return Raster(shape=shape, origin=(0, 0), values=np.zeros((0, 0, n_ch), np.float32),
                  depth=np.zeros((0, 0), np.float32), face=np.zeros((0, 0), np.int16))
