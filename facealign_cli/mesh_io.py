"""Mesh files (OBJ with per-vertex colours, binary PLY) and per-vertex colours from a photo.

Nothing here knows about the 3DMM: callers pass plain arrays. In this project the vertices are in
the image pixel frame of :mod:`facealign_cli.face` (x right, y down, z away from the camera, a
180-degree rotation about x of the model frame), so triangles wound counter-clockwise seen from
outside in the model frame still have right-hand normals pointing out of the face (towards the
camera, -z, on a frontal face). The writers keep vertex and triangle order and winding as given.

Files are written atomically: to a temporary file in the destination folder, then
``os.replace``-d onto the final name, so a reader never sees a half-written mesh and an
interrupted run leaves no partial file under the final name.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np

from .writers import atomic_open

MESH_FORMATS = ("obj", "ply")
NEUTRAL_GREY = (128, 128, 128)


def _check_mesh(vertices, triangles, colors) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    v = np.asarray(vertices, dtype=np.float64)
    if v.ndim != 2 or v.shape[1] != 3 or len(v) == 0:
        raise ValueError(f"vertices must be a non-empty (N, 3) array, got shape {v.shape}")
    if not np.isfinite(v).all():
        raise ValueError("vertices contain NaN or infinite coordinates")
    t = np.asarray(triangles)
    if t.ndim != 2 or t.shape[1] != 3 or (t.size and not np.issubdtype(t.dtype, np.integer)):
        raise ValueError(f"triangles must be an integer (T, 3) array, got {t.dtype} {t.shape}")
    t = t.astype(np.int64)
    if t.size and (t.min() < 0 or t.max() >= len(v)):
        raise ValueError(f"triangle indices must lie in [0, {len(v) - 1}]")
    c = None
    if colors is not None:
        c = np.asarray(colors)
        if c.shape != (len(v), 3) or c.dtype != np.uint8:
            raise ValueError(f"colors must be a ({len(v)}, 3) uint8 RGB array, "
                             f"got {c.dtype} {c.shape}")
    return v, t, c


#: Decimals written for OBJ vertex coordinates and colours (``"%.6f"``).
OBJ_DECIMALS = 6
OBJ_HEADER = "# facealign mesh: v x y z [r g b], colours in [0, 1]\n"
# Fixed-point fast path is exact while |value| * 10**decimals stays below 2**53.
_FAST_LIMIT = 2.0 ** 53


def _digits_ascii(a: np.ndarray, n: int, pad: bool) -> np.ndarray:
    """ASCII digits of (N,) non-negative integers < 10**n as an (n, N) uint8 array (one row per
    digit position, most significant first); with ``pad`` leading zeros (never the ones digit)
    become NUL bytes."""
    out = np.empty((n, len(a)), np.uint8)
    r = a.astype(np.int32 if n <= 9 else np.int64)
    for k in range(n):
        r, d = np.divmod(r, 10)
        d += 48
        if pad and k:
            d *= (r > 0) | (d > 48)  # NUL where this digit and all higher ones are zero
        out[n - 1 - k] = d
    return out


def _fixed_point_ascii(a: np.ndarray, decimals: int) -> np.ndarray | None:
    """Format (N,) finite floats as ``"%.{decimals}f"`` text, vectorised.

    Returns a (W, N) uint8 array of ASCII codes, column ``i`` being the ``i``-th number,
    right-aligned and padded on the left with NUL bytes (removed by the caller), or None when a
    value is too large for the exact integer path (the caller then formats with Python).
    Values that round to zero are written without a minus sign.
    """
    scale = 10 ** decimals
    q = np.rint(np.abs(a) * scale)
    if q.size and q.max() >= _FAST_LIMIT:
        return None
    q = q.astype(np.int64)
    ip, fp = np.divmod(q, scale)
    n_int = len(str(int(ip.max()))) if q.size else 1
    width = 1 + n_int + (1 + decimals if decimals else 0)
    out = np.empty((width, len(a)), np.uint8)
    out[1:1 + n_int] = _digits_ascii(ip, n_int, pad=True)
    # the sign goes in row 0, before the first digit; the NULs between are dropped later
    out[0] = ((a < 0) & (q > 0)) * np.uint8(ord("-"))
    if decimals:
        out[n_int + 1] = ord(".")
        out[n_int + 2:] = _digits_ascii(fp, decimals, pad=False)
    return out


def _uint_ascii(a: np.ndarray) -> np.ndarray:
    """Format (N,) non-negative integers as decimal text: (W, N) uint8, NUL-padded on top."""
    a = np.asarray(a, np.int64)
    n = len(str(int(a.max()))) if a.size else 1
    return _digits_ascii(a, n, pad=True)


def _join_rows(prefix: bytes, fields: list[np.ndarray], n: int) -> bytes:
    """Lines ``prefix f0 f1 ...\n`` from NUL-padded (W_i, N) ASCII fields, as bytes."""
    if n == 0:
        return b""
    pre = np.frombuffer(prefix, np.uint8)
    total = len(pre) + sum(f.shape[0] + 1 for f in fields) + 1
    buf = np.empty((total, n), np.uint8)
    buf[:len(pre)] = pre[:, None]
    pos = len(pre)
    for f in fields:
        buf[pos] = ord(" ")
        buf[pos + 1:pos + 1 + f.shape[0]] = f
        pos += 1 + f.shape[0]
    buf[pos] = ord("\n")
    rows = np.ascontiguousarray(buf.T)  # one line per row, in order
    return rows[rows != 0].tobytes()


@functools.lru_cache(maxsize=4)
def _colour_lut(decimals: int) -> np.ndarray:
    """(W, 256) uint8: column ``i`` is the text of ``i / 255`` with ``decimals`` decimals."""
    return np.ascontiguousarray(np.frombuffer(
        b"".join(f"{i / 255:.{decimals}f}".encode() for i in range(256)),
        np.uint8).reshape(256, -1).T)


def _obj_bytes(v: np.ndarray, t: np.ndarray, c: np.ndarray | None,
               decimals: int = OBJ_DECIMALS) -> bytes:
    """OBJ text (see :func:`mesh_bytes`), vectorised with numpy."""
    cols = [_fixed_point_ascii(v[:, k], decimals) for k in range(3)]
    if any(x is None for x in cols):  # huge coordinates: plain Python formatting
        fmt = " ".join([f"%.{decimals}f"] * (6 if c is not None else 3))
        vals = v if c is None else np.column_stack([v, c / 255.0])
        vtext = "".join("v " + fmt % tuple(row) + "\n" for row in vals.tolist()).encode()
    else:
        if c is not None:
            lut = _colour_lut(decimals)
            cols += [lut[:, c[:, k]] for k in range(3)]
        vtext = _join_rows(b"v", cols, len(v))
    ftext = _join_rows(b"f", [_uint_ascii(t[:, k] + 1) for k in range(3)], len(t))
    return OBJ_HEADER.encode() + vtext + ftext


def _ply_bytes(v: np.ndarray, t: np.ndarray, c: np.ndarray | None) -> bytes:
    """Binary little-endian PLY (see :func:`mesh_bytes`)."""
    header = ["ply", "format binary_little_endian 1.0", "comment facealign mesh",
              f"element vertex {len(v)}", "property float x", "property float y",
              "property float z"]
    vfields = [("xyz", "<f4", (3,))]
    if c is not None:
        header += [f"property uchar {ch}" for ch in ("red", "green", "blue", "alpha")]
        vfields.append(("rgba", "u1", (4,)))
    header += [f"element face {len(t)}", "property list uchar int vertex_indices", "end_header"]
    vert = np.empty(len(v), np.dtype(vfields))
    vert["xyz"] = v
    if c is not None:
        vert["rgba"][:, :3] = c
        vert["rgba"][:, 3] = 255
    face = np.empty(len(t), np.dtype([("n", "u1"), ("idx", "<i4", (3,))]))
    face["n"] = 3
    face["idx"] = t
    return ("\n".join(header) + "\n").encode("ascii") + vert.tobytes() + face.tobytes()


def mesh_bytes(vertices: np.ndarray, triangles: np.ndarray, colors: np.ndarray | None = None,
               fmt: str = "obj") -> bytes:
    """Encode a triangle mesh as an OBJ or binary PLY file (in memory).

    The encoders are vectorised numpy (about 100 times faster than a generic mesh library's
    exporters on a 38k-vertex face); the files load in trimesh, MeshLab and Blender.

    Args:
        vertices: (N, 3) float vertex positions (any units and frame; written as given).
        triangles: (T, 3) integer vertex indices (0..N-1), written in the given order/winding.
        colors: (N, 3) uint8 RGB per-vertex colours, or None for none.
        fmt: ``"obj"``: text, one comment line, then one ``v x y z [r g b]`` line per vertex
            (coordinates with :data:`OBJ_DECIMALS` decimals; colours as floats in [0, 1], the
            per-vertex colour extension MeshLab and Blender read) and ``f a b c`` lines
            (1-based), no normals, no material. ``"ply"``: binary little-endian PLY with
            float32 vertices, uchar RGBA colours (alpha 255) and int triangle lists.

    Returns:
        The file content.

    Raises:
        ValueError: bad shapes/dtypes, indices out of range, non-finite vertices, unknown fmt.
    """
    fmt = fmt.lower()
    if fmt not in MESH_FORMATS:
        raise ValueError(f"unknown mesh format {fmt!r}; expected one of {MESH_FORMATS}")
    v, t, c = _check_mesh(vertices, triangles, colors)
    if fmt == "obj":
        return _obj_bytes(v, t, c)
    return _ply_bytes(v, t, c)


def write_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write bytes to ``path`` atomically (temporary file in the same folder + ``os.replace``).

    The folder is created if missing; the file gets the usual permissions (0666 minus umask).

    Returns:
        The destination path.

    Raises:
        OSError: the folder cannot be created or written; the temporary file is removed.
    """
    path = Path(path)
    with atomic_open(path, "wb") as fh:
        fh.write(data)
    return path


def write_mesh(path: str | os.PathLike, vertices: np.ndarray, triangles: np.ndarray,
               colors: np.ndarray | None = None, fmt: str = "obj") -> Path:
    """Write a triangle mesh to an OBJ or binary PLY file, atomically.

    Args:
        path: destination file (its folder is created if missing; an existing file is
            replaced).
        vertices: (N, 3) float vertex positions, written as given (this project: image pixels,
            x right, y down, z away from the camera).
        triangles: (T, 3) integer indices into ``vertices``; order and winding are kept.
        colors: (N, 3) uint8 RGB per-vertex colours, or None.
        fmt: ``"obj"`` or ``"ply"`` (see :func:`mesh_bytes`).

    Returns:
        The destination path.

    Raises:
        ValueError: invalid arrays or format (nothing is written).
        OSError: the file cannot be written (no temporary file is left behind).
    """
    return write_atomic(path, mesh_bytes(vertices, triangles, colors, fmt))


def sample_vertex_colors(image_bgr: np.ndarray, vertices: np.ndarray,
                         outside: tuple[int, int, int] = NEUTRAL_GREY) -> np.ndarray:
    """Per-vertex colours by bilinear sampling of an image at the vertices' (x, y).

    Pixel (0, 0) has its centre at (0, 0) (the frame of :mod:`facealign_cli.face`). A vertex
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
        (N, 3) uint8 RGB colours (rounded to nearest).

    Raises:
        ValueError: image or vertices of the wrong shape or dtype.
    """
    img = np.asarray(image_bgr)
    if img.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {img.dtype}")
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3 or img.shape[2] not in (1, 3, 4) or img.shape[0] == 0 or img.shape[1] == 0:
        raise ValueError(f"image must be (H, W, 3) BGR, got shape {img.shape}")
    h, w, ch = img.shape
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
    if not inside.all():
        x, y = x[inside], y[inside]
    xs = np.clip(x, 0.0, w - 1.0)
    ys = np.clip(y, 0.0, h - 1.0)
    x0 = xs.astype(np.intp)  # xs >= 0, so truncation is floor
    y0 = ys.astype(np.intp)
    fx = (xs - x0)[:, None]
    fy = (ys - y0)[:, None]
    # the four neighbours as rows of the flattened image (edge pixels repeated)
    flat = np.ascontiguousarray(img).reshape(h * w, ch)
    i00 = y0 * w + x0
    dx = (x0 < w - 1).astype(np.intp)
    dy = (y0 < h - 1) * w
    p00 = np.take(flat, i00, axis=0)[:, :3]
    p01 = np.take(flat, i00 + dx, axis=0)[:, :3]
    p10 = np.take(flat, i00 + dy, axis=0)[:, :3]
    p11 = np.take(flat, i00 + dy + dx, axis=0)[:, :3]
    top = p00 * (1.0 - fx) + p01 * fx
    bottom = p10 * (1.0 - fx) + p11 * fx
    res = np.clip(np.rint(top * (1.0 - fy) + bottom * fy), 0, 255).astype(np.uint8)
    out[inside] = np.repeat(res, 3, axis=1) if ch == 1 else res[:, ::-1]  # BGR -> RGB
    return out
