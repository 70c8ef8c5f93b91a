"""The dense face meshes shaded with a directional light and blended over the photo, and a depth
image of the faces; both z-buffered across all faces of the photo (:mod:`.raster`).

Frames: vertices in the image frame of :mod:`facealign_cli.core.face` (pixels, x right, y down,
z away from the camera). The face topology's triangles have right-hand normals pointing out of
the face in that frame (towards the camera, -z, on a frontal face; see
:class:`facealign_cli.core.morphable_model.FaceTopology`). Light directions are given in the same
frame, pointing *towards* the light: ``(0, 0, -1)`` is a light at the camera.

Images are OpenCV's (H, W, 3) uint8 BGR.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from facealign_cli.render.raster import ImageWindow, rasterize

#: Default light: from the camera, a little above and to the left of it (image frame, towards
#: the light).
DEFAULT_LIGHT = (-0.35, -0.5, -1.0)
#: Default mesh colour, BGR (a light neutral grey).
MESH_COLOR = (215, 210, 205)


# the vertex-triangle incidence matrices of the last few triangle arrays: [(copy, matrix)]
_INCIDENCE: list[tuple[np.ndarray, object]] = []
_INCIDENCE_LOCK = threading.Lock()


def _incidence(t: np.ndarray, n_vertices: int):
    """(N, T) sparse matrix with a 1 where vertex i is a corner of triangle j (kept for the
    last few triangle arrays, found by comparing the indices, never by object identity)."""
    from scipy import sparse

    with _INCIDENCE_LOCK:
        for i, (known, m) in enumerate(_INCIDENCE):
            if known.shape == t.shape and m.shape[0] == n_vertices and np.array_equal(known, t):
                _INCIDENCE.append(_INCIDENCE.pop(i))
                return m
    rows = t.ravel()
    cols = np.repeat(np.arange(len(t)), 3)
    m = sparse.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)),
                          shape=(n_vertices, len(t)))
    with _INCIDENCE_LOCK:
        _INCIDENCE.append((t.copy(), m))
        del _INCIDENCE[:-4]
    return m


def vertex_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Unit per-vertex normals: the area-weighted sum of the right-hand normals of the
    triangles around each vertex.

    Args:
        vertices: (N, 3) float, any right-handed frame.
        triangles: (T, 3) integer indices.

    Returns:
        (N, 3) float32 unit normals in the vertices' frame ((0, 0, 0) for a vertex in no
        triangle).
    """
    v = np.asarray(vertices, dtype=np.float32)
    t = np.asarray(triangles)
    if t.ndim != 2 or t.shape[1] != 3:
        raise ValueError(f"triangles must be (T, 3), got {t.shape}")
    if len(t) == 0:
        return np.zeros((len(v), 3), np.float32)
    a, b, c = v[t[:, 0]], v[t[:, 1]], v[t[:, 2]]
    e1, e2 = b - a, c - a
    fn = np.empty((len(t), 3), np.float32)  # cross product, |fn| = 2 * area
    fn[:, 0] = e1[:, 1] * e2[:, 2] - e1[:, 2] * e2[:, 1]
    fn[:, 1] = e1[:, 2] * e2[:, 0] - e1[:, 0] * e2[:, 2]
    fn[:, 2] = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    n = np.asarray(_incidence(t, len(v)) @ fn, dtype=np.float32)
    norm = np.sqrt((n * n).sum(axis=1, keepdims=True))
    return n / np.where(norm > 0, norm, 1.0)


def shade_vertices(vertices: np.ndarray, triangles: np.ndarray,
                   light: Sequence[float] = DEFAULT_LIGHT, *, ambient: float = 0.3,
                   diffuse: float = 0.65, specular: float = 0.15,
                   shininess: float = 20.0) -> np.ndarray:
    """Blinn-Phong intensity of each vertex under one directional light, seen by an
    orthographic camera looking along +z (image frame).

    ``I = ambient + diffuse * max(n.l, 0) + specular * max(n.h, 0) ** shininess`` with ``n`` the
    vertex normal (:func:`vertex_normals`), ``l`` the unit direction towards the light and
    ``h`` the half vector between ``l`` and the direction to the camera ``(0, 0, -1)``.

    Returns:
        (N,) float32 intensities, clipped to [0, 1].
    """
    n = vertex_normals(vertices, triangles)
    ld = np.asarray(light, dtype=np.float64)
    ld = ld / np.linalg.norm(ld)
    hv = ld + np.array([0.0, 0.0, -1.0])
    hv = (hv / (np.linalg.norm(hv) or 1.0)).astype(np.float32)
    ld = ld.astype(np.float32)
    i = ambient + diffuse * np.clip(n @ ld, 0, None)
    if specular:
        i = i + specular * np.clip(n @ hv, 0, None) ** shininess
    return np.clip(i, 0, 1).astype(np.float32)


def relative_depth(vertices: np.ndarray) -> np.ndarray:
    """Per-vertex nearness within one face, for a depth picture: 1 at the nearest vertex (the
    smallest z), 0 at the farthest. (N, 3) float vertices -> (N,) float32."""
    z = np.asarray(vertices, dtype=np.float64)[:, 2]
    lo, hi = float(z.min()), float(z.max())
    return ((hi - z) / (hi - lo if hi > lo else 1.0)).astype(np.float32)


@dataclass
class MeshLayers(ImageWindow):
    """Per-pixel pictures of the faces of one photo (one z-buffer for all of them), over the
    window of the image that the faces cover (see :class:`facealign_cli.render.raster.Raster`).

    Attributes:
        shape: (H, W) of the whole image.
        origin: (x0, y0), the window's top-left pixel.
        shade: (h, w) float32 light intensity in [0, 1] (:func:`shade_vertices`), 0 off the
            faces.
        nearness: (h, w) float32 in [0, 1] (:func:`relative_depth` of the face seen at each
            pixel), 0 off the faces.
        face: (h, w) int16 index of the face seen at each pixel, -1 off the faces.
        depth: (h, w) float32 scene depth (:func:`facealign_cli.render.raster.scene_depths`,
            smaller = nearer), ``inf`` off the faces.
    """

    shape: tuple[int, int]
    origin: tuple[int, int]
    shade: np.ndarray
    nearness: np.ndarray
    face: np.ndarray
    depth: np.ndarray


def mesh_layers(image_shape: tuple[int, ...], meshes: Sequence[np.ndarray],
                triangles: np.ndarray, *, light: Sequence[float] = DEFAULT_LIGHT,
                focal: float | None = None) -> MeshLayers:
    """Shade and rasterise the dense meshes of one photo (one call to the rasteriser).

    Args:
        image_shape: (H, W[, C]) of the photo.
        meshes: per face, (N_i, 3) float vertices in the image frame (``Face.vertices``).
        triangles: (T, 3) integer triangles shared by the meshes (``FaceTopology.triangles``),
            wound with right-hand normals out of the face in the image frame.
        light: direction towards the light, image frame.
        focal: focal length in pixels for the depth order between faces
            (:func:`facealign_cli.render.raster.scene_depths`).
    """
    from facealign_cli.render.raster import face_size

    # one interpolated channel: 2 * face index + shade (shade in [0, 1] and the index constant
    # over each face, so both come back exactly); nearness from the z-buffer
    vals = [2.0 * i + shade_vertices(v, triangles, light) for i, v in enumerate(meshes)]
    r = rasterize(meshes, triangles, image_shape, vals, focal=focal, face_ids=False)
    if r.values.shape[2] == 0:  # no mesh
        empty = np.zeros(r.face.shape, np.float32)
        return MeshLayers(shape=r.shape, origin=r.origin, shade=empty, nearness=empty,
                          face=r.face, depth=r.depth)
    m = r.face >= 0
    packed = r.values[:, :, 0]
    face = np.where(m, np.clip(np.floor(packed / 2 + 1e-4), 0, len(meshes) - 1),
                    -1).astype(np.int16)
    shade = np.where(m, np.clip(packed - 2.0 * face, 0, 1), 0).astype(np.float32)
    # nearness: back from scene depth d = (focal + z) * s_max / s to the face's own z
    h, w = int(image_shape[0]), int(image_shape[1])
    f = float(np.hypot(h, w)) if focal is None else float(focal)
    sizes = np.array([max(face_size(v), 1e-6) for v in meshes])
    z_lo = np.array([np.nanmin(np.asarray(v)[:, 2]) for v in meshes], np.float64)
    z_hi = np.array([np.nanmax(np.asarray(v)[:, 2]) for v in meshes], np.float64)
    fi = np.maximum(face, 0)
    z = r.depth.astype(np.float64) * (sizes / sizes.max())[fi] - f
    span = np.where(z_hi > z_lo, z_hi - z_lo, 1.0)[fi]
    near = np.where(m, np.clip((z_hi[fi] - z) / span, 0, 1), 0).astype(np.float32)
    return MeshLayers(shape=r.shape, origin=r.origin, shade=shade, nearness=near, face=face,
                      depth=r.depth)


def blend_mesh(image_bgr: np.ndarray, layers: MeshLayers, *, color: Sequence[int] = MESH_COLOR,
               alpha: float = 0.75) -> np.ndarray:
    """The shaded faces blended over the photo.

    Args:
        image_bgr: (H, W, 3) uint8 BGR photo (of ``layers.shape``).
        layers: from :func:`mesh_layers`.
        color: BGR mesh colour at full light.
        alpha: opacity of the mesh (0 = photo only, 1 = mesh only).

    Returns:
        A new (H, W, 3) uint8 BGR image.
    """
    out = np.array(image_bgr, dtype=np.uint8, copy=True)
    if out.shape[:2] != tuple(layers.shape):
        raise ValueError(f"image is {out.shape[:2]}, layers are {tuple(layers.shape)}")
    m = layers.mask
    if not m.any():
        return out
    win = out[layers.window]
    lit = layers.shade[m][:, None] * np.asarray(color, dtype=np.float32)[None, :]
    win[m] = np.clip(win[m].astype(np.float32) * (1 - alpha) + lit * alpha + 0.5, 0,
                     255).astype(np.uint8)
    return out


def depth_image(layers: MeshLayers, *, low: float = 0.25) -> np.ndarray:
    """A grey depth picture of the faces: black background, each face from ``low`` (its
    farthest point) to white (its nearest), per face; the z-buffer decides which face is seen.

    Returns:
        (H, W, 3) uint8 BGR (grey) image of ``layers.shape``.
    """
    out = np.zeros(tuple(layers.shape) + (3,), np.uint8)
    g = np.where(layers.mask, low + (1 - low) * layers.nearness, 0.0)
    out[layers.window] = np.clip(g * 255 + 0.5, 0, 255).astype(np.uint8)[:, :, None]
    return out


def render_mesh(image_bgr: np.ndarray, meshes: Sequence[np.ndarray], triangles: np.ndarray,
                **kw) -> np.ndarray:
    """Shortcut: :func:`mesh_layers` then :func:`blend_mesh` (keywords ``light``, ``focal``
    go to the first, ``color``, ``alpha`` to the second). Returns a new uint8 BGR image."""
    lk = {k: kw.pop(k) for k in ("light", "focal") if k in kw}
    return blend_mesh(image_bgr, mesh_layers(np.shape(image_bgr), meshes, triangles, **lk), **kw)


def render_depth(image_shape: tuple[int, ...], meshes: Sequence[np.ndarray],
                 triangles: np.ndarray, *, focal: float | None = None) -> np.ndarray:
    """Shortcut: the :func:`depth_image` of :func:`mesh_layers`. Returns (H, W, 3) uint8."""
    return depth_image(mesh_layers(image_shape, meshes, triangles, focal=focal))
