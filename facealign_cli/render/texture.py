"""Colours of a face from its photo: per-vertex colours (:func:`sample_vertex_colors`, meshes
with colours) and a UV texture (:func:`bake_texture`, ``facealign mesh --texture``).

Vertex colours are the photo bilinearly sampled at each vertex's (x, y), whether or not the
vertex is seen. The texture is the fixed unwrapping of the face region
(:func:`facealign_cli.core.morphable_model.load_face_uv`, ``scripts/build_face_uv.py``) filled
from the photo:

1. The face's triangles are rasterised in UV space (DEODR's CPU rasteriser,
   :func:`facealign_cli.render.raster.rasterize`, no OpenGL), interpolating per texel the
   photo position (x, y) of the surface point, whether it faces the camera (the vertex normal's
   component towards the camera) and its depth; the same three for the vertex's mirror partner.
2. A texel is **seen** when its surface faces the camera and is not hidden behind another part
   of the same face (its depth is within :data:`DEPTH_TOLERANCE` face sizes of the face's own
   z-buffer at that pixel, e.g. the cheek behind the nose on a profile). A seen texel takes the
   photo's colour at its position (``cv2.remap``, bilinear).
3. A texel that is not seen takes the colour of its mirror point (the other side of the face)
   when that one is seen; failing that, a texel that is not hidden behind the face and only
   grazes the view (normal at most :data:`MAX_GRAZING` away from the camera, e.g. under the
   nose) takes its own colour; the rest stays neutral grey, as do texels outside the chart and
   points off the photo.

Frames: vertices in the image frame of :mod:`facealign_cli.core.face` (pixels, x right, y down,
z away from the camera); colours and textures are uint8 **RGB**, a texture (H, W, 3) with row 0
at v = 1.
"""

from __future__ import annotations

import cv2
import numpy as np

from facealign_cli.render.raster import face_size, rasterize
from facealign_cli.render.shading import vertex_normals

#: RGB colour of what the photo does not colour (off the photo, hidden, outside the chart).
NEUTRAL_GREY = (128, 128, 128)

#: Width of a face texture in texels; its height is width / the unwrapping's aspect.
TEXTURE_WIDTH = 512
#: A texel counts as facing the camera when its interpolated normal has at least this
#: component towards the camera (grazing surfaces smear the photo).
MIN_FACING = 0.1
#: Depth slack of the visibility test, as a fraction of the face's size (the z-buffer is also
#: taken as the farthest of each 3 x 3 pixels, so steep surfaces do not alias into stripes).
DEPTH_TOLERANCE = 0.03
#: Last resort before grey: a point not hidden behind the face whose normal points at most this
#: far away from the camera (negative facing) keeps its own colour.
MAX_GRAZING = 0.3


def texture_size(aspect: float, width: int = TEXTURE_WIDTH) -> tuple[int, int]:
    """``(width, height)`` of a texture for an unwrapping of the given width / height."""
    return int(width), max(1, int(round(width / max(float(aspect), 1e-6))))


def bake_texture(image_bgr: np.ndarray, vertices: np.ndarray, triangles: np.ndarray,
                 uv: np.ndarray, mirror: np.ndarray, size: tuple[int, int],
                 neutral: tuple[int, int, int] = NEUTRAL_GREY) -> np.ndarray:
    """The face's texture from its photo (see the module docstring).

    Args:
        image_bgr: (H, W, 3) uint8 BGR photo (the faces' frame).
        vertices: (N, 3) float vertices of the face in the image frame.
        triangles: (T, 3) integer triangles, right-hand normals out of the face.
        uv: (N, 2) texture coordinates in [0, 1] (v up).
        mirror: (N,) integer mirror partner of each vertex.
        size: ``(width, height)`` of the texture in texels.
        neutral: RGB colour of texels with no colour from the photo.

    Returns:
        (height, width, 3) uint8 RGB texture.

    Raises:
        ValueError: inconsistent shapes.
    """
    img = np.asarray(image_bgr)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8 BGR, got {img.dtype} {img.shape}")
    v = np.asarray(vertices, dtype=np.float64)
    t = np.asarray(triangles)
    uv = np.asarray(uv, dtype=np.float64)
    mirror = np.asarray(mirror, dtype=np.int64)
    if v.ndim != 2 or v.shape[1] != 3 or uv.shape != (len(v), 2) or mirror.shape != (len(v),):
        raise ValueError("vertices (N, 3), uv (N, 2) and mirror (N,) must match")
    tw, th = int(size[0]), int(size[1])
    out = np.empty((th, tw, 3), np.uint8)
    out[:] = np.asarray(neutral, np.uint8)
    if not len(v) or not len(t):
        return out
    facing = -vertex_normals(v, t)[:, 2].astype(np.float64)  # towards the camera: -z
    # visibility within the face: compare each point's depth with the face's z-buffer
    zbuf = rasterize([v], t, img.shape, face_ids=False)
    z = zbuf.full("depth", np.inf)
    z = cv2.dilate(np.where(np.isfinite(z), z, 1e30).astype(np.float32), np.ones((3, 3)))
    tol = DEPTH_TOLERANCE * max(face_size(v), 1.0)
    vals = np.stack([v[:, 0], v[:, 1], facing, v[:, 2],
                     v[mirror, 0], v[mirror, 1], facing[mirror], v[mirror, 2]], 1)
    chart = np.zeros((len(v), 3))
    chart[:, 0] = uv[:, 0] * tw - 0.5
    chart[:, 1] = (1.0 - uv[:, 1]) * th - 0.5
    r = rasterize([chart], t, (th, tw), values=[vals], face_ids=False)
    if not r.mask.any():
        return out
    val = r.full("values", 0.0)
    covered = r.full("face", -1) >= 0
    focal = float(np.hypot(*img.shape[:2]))  # scene_depths' default for one face: focal + z

    def seen(x, y, f, d, min_facing=MIN_FACING):
        ix = np.clip(np.rint(x), 0, img.shape[1] - 1).astype(np.int64)
        iy = np.clip(np.rint(y), 0, img.shape[0] - 1).astype(np.int64)
        on = (x >= -0.5) & (x <= img.shape[1] - 0.5) & (y >= -0.5) & (y <= img.shape[0] - 0.5)
        return on & (f >= min_facing) & (focal + d <= z[iy, ix] + tol)

    vis = covered & seen(val[..., 0], val[..., 1], val[..., 2], val[..., 3])
    vis_m = covered & ~vis & seen(val[..., 4], val[..., 5], val[..., 6], val[..., 7])
    vis |= covered & ~vis & ~vis_m & seen(val[..., 0], val[..., 1], val[..., 2], val[..., 3],
                                          -MAX_GRAZING)
    mx = np.where(vis_m, val[..., 4], val[..., 0]).astype(np.float32)
    my = np.where(vis_m, val[..., 5], val[..., 1]).astype(np.float32)
    rgb = np.ascontiguousarray(img[:, :, ::-1])
    sampled = cv2.remap(rgb, mx, my, interpolation=cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_REPLICATE)
    use = vis | vis_m
    out[use] = sampled[use]
    return out


def sample_vertex_colors(image_bgr: np.ndarray, vertices: np.ndarray,
                         outside: tuple[int, int, int] = NEUTRAL_GREY) -> np.ndarray:
    """Per-vertex colours by bilinear sampling of an image at the vertices' (x, y).

    Pixel (0, 0) has its centre at (0, 0) (the frame of :mod:`facealign_cli.core.face`). A vertex
    whose (x, y) lies on the image (``-0.5 <= x <= W - 0.5`` and ``-0.5 <= y <= H - 0.5``) gets
    the bilinear interpolation of the four nearest pixel centres (edge pixels repeated past the
    outermost centres); any other vertex, or one with a non-finite coordinate, gets ``outside``.

    Args:
        image_bgr: (H, W, 3) uint8 BGR image (as OpenCV loads it); (H, W) grey or (H, W, 4)
            BGRA are accepted too (alpha ignored).
        vertices: (N, 2) or (N, 3) float positions in image pixels, x right, y down (z, if
            present, is ignored).
        outside: RGB colour for vertices off the image (default neutral grey 128).

    Returns:
        (N, 3) uint8 RGB colours (OpenCV fixed-point bilinear interpolation, within 1 of exact).

    Raises:
        ValueError: image or vertices of the wrong shape or dtype.
    """
    img = np.asarray(image_bgr)
    if img.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {img.dtype}")
    if (img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (1, 3, 4))
            or img.shape[0] == 0 or img.shape[1] == 0):
        raise ValueError(f"image must be (H, W, 3) BGR, got shape {img.shape}")
    h, w = img.shape[:2]
    v = np.asarray(vertices, dtype=np.float64)
    if v.ndim != 2 or v.shape[1] not in (2, 3):
        raise ValueError(f"vertices must be (N, 2) or (N, 3), got shape {v.shape}")
    out = np.empty((len(v), 3), np.uint8)
    out[:] = np.asarray(outside, dtype=np.uint8)
    x, y = v[:, 0], v[:, 1]
    with np.errstate(invalid="ignore"):
        inside = (np.isfinite(x) & np.isfinite(y) & (x >= -0.5) & (x <= w - 0.5)
                  & (y >= -0.5) & (y <= h - 0.5))
    if not inside.any():
        return out
    # OpenCV's bilinear remap (pixel centres at integer coordinates, edges replicated) of the
    # photo as it is (no copy of it: channels are interpolated independently, so they are put
    # in RGB order after sampling). remap wants maps under 32767 rows/columns: the points are
    # laid out as a 256-wide grid.
    k = int(inside.sum())
    cols = 256
    rows = -(-k // cols)
    mx = np.zeros(rows * cols, np.float32)
    my = np.zeros(rows * cols, np.float32)
    mx[:k] = x[inside]
    my[:k] = y[inside]
    sampled = cv2.remap(np.ascontiguousarray(img), mx.reshape(rows, cols),
                        my.reshape(rows, cols), interpolation=cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_REPLICATE)
    sampled = sampled.reshape(rows * cols, -1)[:k]
    if sampled.shape[1] == 1:  # grey
        out[inside] = sampled
    else:  # BGR(A) -> RGB
        out[inside] = sampled[:, 2::-1]
    return out
