"""Mesh files (OBJ with per-vertex colours, binary PLY, binary glTF), UV-textured meshes (OBJ +
MTL + PNG, or GLB with the texture embedded, through trimesh's exporters). The colours and
textures themselves come from :mod:`facealign_cli.render.texture`.

Nothing here knows about the 3DMM: callers pass plain arrays. In this project the vertices are in
the image pixel frame of :mod:`facealign_cli.core.face` (x right, y down, z away from the camera, a
180-degree rotation about x of the model frame), so triangles wound counter-clockwise seen from
outside in the model frame still have right-hand normals pointing out of the face (towards the
camera, -z, on a frontal face). The writers keep vertex and triangle order and winding as given.

Two frames can be written (``frame=``, see :func:`to_viewer_frame`;
:data:`facealign_cli.defaults.MESH_FRAMES`):

* ``"viewer"`` (the default, as for ``facealign mesh``): ``(x, H - y, -z)`` with ``H`` the photo's
  height (``image_height=``, required): y up, z towards the viewer, units still pixels of the
  photo, so the face opens upright and facing the viewer in Blender, MeshLab, Open3D and trimesh.
  This is a rotation by 180 degrees about x (plus a shift), not a mirror, so the triangles keep
  their winding and their right-hand normals still point out of the face (3DDFA-V2 reverses its
  triangles because its own conversion, ``(x, H - y, z)`` from a y-down, z-towards-the-viewer
  frame, is a mirror).
* ``"image"``: the vertices as given, the image frame above (y down, z away from the camera).
  Mesh viewers, which take y up and look down -z, show such a mesh upside down and from behind.

Files are written atomically: to a temporary file in the destination folder, then
``os.replace``-d onto the final name, so a reader never sees a half-written mesh and an
interrupted run leaves no partial file under the final name.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from facealign_cli.defaults import DEFAULT_MESH_FRAME, MESH_FORMATS, MESH_FRAMES
from facealign_cli.io.obj_text import face_lines, vertex_lines
from facealign_cli.io.records import atomic_open


def _check_mesh(vertices, triangles, colors) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    v = np.asarray(vertices, dtype=np.float64)
    if v.ndim != 2 or v.shape[1] != 3 or len(v) == 0:
        raise ValueError(f"vertices must be a non-empty (N, 3) array, got shape {v.shape}")
    if not np.isfinite(v).all():
        raise ValueError("vertices contain NaN or infinite coordinates")
    t = np.asarray(triangles)
    if t.ndim != 2 or t.shape[1] != 3 or (t.size and not np.issubdtype(t.dtype, np.integer)):
        raise ValueError(f"triangles must be an integer (T, 3) array, got {t.dtype} {t.shape}")
    t = t.astype(np.int64, copy=False)
    if t.size and (t.min() < 0 or t.max() >= len(v)):
        raise ValueError(f"triangle indices must lie in [0, {len(v) - 1}]")
    c = None
    if colors is not None:
        c = np.asarray(colors)
        if c.shape != (len(v), 3) or c.dtype != np.uint8:
            raise ValueError(f"colors must be a ({len(v)}, 3) uint8 RGB array, "
                             f"got {c.dtype} {c.shape}")
    return v, t, c


def to_viewer_frame(vertices: np.ndarray, image_height: float,
                    triangles: np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray | None]:
    """Image-frame vertices to the viewer frame: ``(x, y, z) -> (x, H - y, -z)``.

    The image frame (:mod:`facealign_cli.core.face`) has x right, y down, z away from the camera;
    the viewer frame has x right, y up, z towards the viewer, in the same pixel units, with
    ``y = 0`` at the photo's bottom edge (``H - y``, as 3DDFA-V2 writes its meshes). The map is a
    proper rotation (180 degrees about x) plus a shift, so it keeps the handedness of every
    triangle: triangles whose right-hand normals point out of the face in the image frame
    (the face topology's) still do in the viewer frame, now towards +z on a frontal face. The
    triangles are therefore returned in the same order and winding (a copy); were the map a
    mirror, they would have to be reversed.

    Args:
        vertices: (N, 3) float vertices in the image frame (pixels).
        image_height: H, the photo's height in pixels (of the EXIF-corrected image).
        triangles: optional (T, 3) integer triangles.

    Returns:
        ``(vertices, triangles)``: (N, 3) float64 viewer-frame vertices and a (T, 3) int64 copy
        of the triangles with the winding that keeps normals out of the face (None if none were
        given).

    Raises:
        ValueError: vertices not (N, 3), or a non-finite or negative image height.
    """
    v = np.asarray(vertices, dtype=np.float64)
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"vertices must be an (N, 3) array, got shape {v.shape}")
    h = float(image_height)
    if not np.isfinite(h) or h < 0:
        raise ValueError(f"image_height must be a finite number >= 0, got {image_height!r}")
    linear = np.array([1.0, -1.0, -1.0])
    out = v * linear
    out[:, 1] += h
    t = None
    if triangles is not None:
        t = np.array(triangles, dtype=np.int64, copy=True)
        if np.prod(linear) < 0:  # a mirror would flip the normals: reverse the winding
            t = t[:, ::-1].copy()
    return out, t


def _in_frame(vertices, triangles, frame: str, image_height: float | None):
    """Vertices and triangles converted to ``frame`` (``"image"``: unchanged)."""
    frame = str(frame).lower()
    if frame not in MESH_FRAMES:
        raise ValueError(f"unknown mesh frame {frame!r}; expected one of {MESH_FRAMES}")
    if frame == "image":
        return vertices, triangles
    if image_height is None:
        raise ValueError("frame='viewer' (the default) needs image_height (the photo's height "
                         "in pixels); frame='image' writes the vertices as given")
    t = np.asarray(triangles)
    if t.ndim != 2 or t.shape[1] != 3 or (t.size and not np.issubdtype(t.dtype, np.integer)):
        raise ValueError(f"triangles must be an integer (T, 3) array, got {t.dtype} {t.shape}")
    return to_viewer_frame(vertices, image_height)[0], t  # (a rotation: the winding stays)


#: First line of every OBJ file facealign writes.
OBJ_HEADER = b"# facealign mesh: v x y z [r g b], colours in [0, 1]\n"

#: Decimals kept in OBJ vertex coordinates (0.001 px), and in OBJ colours (``i / 255``).
OBJ_COORD_DECIMALS = 3
OBJ_COLOUR_DECIMALS = 4

# the f-lines of the last few triangle arrays: [(copy of the array, text)], newest last
_FACES_CACHE: list[tuple[np.ndarray, bytes]] = []
_FACES_CACHE_LOCK = threading.Lock()


def _obj_face_lines(t: np.ndarray) -> bytes:
    """``f a b c`` lines (1-based) of a (T, 3) int64 triangle array. Every face of a run shares
    one topology, so the text of the last few triangle arrays is kept, found by comparing the
    indices themselves (never by object identity)."""
    with _FACES_CACHE_LOCK:
        for i, (known, text) in enumerate(_FACES_CACHE):
            if known.shape == t.shape and np.array_equal(known, t):
                _FACES_CACHE.append(_FACES_CACHE.pop(i))
                return text
    text = face_lines(t + 1)
    with _FACES_CACHE_LOCK:
        _FACES_CACHE.append((t.copy(), text))
        del _FACES_CACHE[:-4]
    return text


def _obj_parts(v: np.ndarray, t: np.ndarray, c: np.ndarray | None) -> list[bytes]:
    """The OBJ text (see :func:`mesh_bytes`) in three parts: header, v lines, f lines."""
    return [OBJ_HEADER, vertex_lines(v, c), _obj_face_lines(t)]


def mesh_bytes(vertices: np.ndarray, triangles: np.ndarray, colors: np.ndarray | None = None,
               fmt: str = MESH_FORMATS[0], *, frame: str = DEFAULT_MESH_FRAME,
               image_height: float | None = None) -> bytes:
    """Encode a triangle mesh as an OBJ, binary PLY or GLB file (in memory).

    Args:
        vertices: (N, 3) float vertex positions (any units and frame; written as given).
        triangles: (T, 3) integer vertex indices (0..N-1), written in the given order/winding.
        colors: (N, 3) uint8 RGB per-vertex colours, or None for none.
        fmt: ``"obj"``: text (Wavefront OBJ), a ``#`` comment line, one ``v x y z [r g b]`` line
            per vertex (coordinates rounded to 0.001 and written with up to 3 decimals,
            trailing zeros dropped; colours as ``i / 255`` with 4 decimals: the per-vertex
            colour extension MeshLab, Blender and trimesh read) and one ``f a b c`` line per
            triangle (1-based); no normals, no material. The text is formatted by numpy in one
            vectorised pass (:mod:`facealign_cli.io.obj_text`: ~3.5 CPU ms for a 38,731-vertex
            face; PLY takes ~2 ms and half the bytes, GLB ~6 ms). Coordinates beyond
            :data:`facealign_cli.io.obj_text.MAX_COORDINATE` are refused.
            ``"ply"``: binary little-endian PLY (trimesh's exporter) with float vertices,
            uchar RGBA colours (alpha 255) and int triangle lists.
            ``"glb"``: binary glTF 2.0 (trimesh's exporter), float32 positions, RGBA
            ``COLOR_0`` vertex colours, uint32 indices; no normals.
        frame: ``"viewer"`` (default): converted with :func:`to_viewer_frame` (y up, z towards
            the viewer; needs ``image_height``); ``"image"``: the vertices as given.
        image_height: the photo's height in pixels (needed by ``frame="viewer"``).

    Returns:
        The file content.

    Raises:
        ValueError: bad shapes/dtypes, indices out of range, non-finite vertices, unknown fmt
            or frame, ``frame="viewer"`` without ``image_height``, OBJ coordinates beyond
            :data:`facealign_cli.io.obj_text.MAX_COORDINATE`.
    """
    fmt = fmt.lower()
    if fmt not in MESH_FORMATS:
        raise ValueError(f"unknown mesh format {fmt!r}; expected one of {MESH_FORMATS}")
    v, t, c = _check_mesh(vertices, triangles, colors)
    v, t = _in_frame(v, t, frame, image_height)
    if fmt == "obj":
        return b"".join(_obj_parts(v, t, c))
    import trimesh

    mesh = trimesh.Trimesh(vertices=v, faces=t, vertex_colors=c, process=False, validate=False)
    if fmt == "glb":
        return trimesh.exchange.gltf.export_glb(mesh, include_normals=False)
    return trimesh.exchange.ply.export_ply(mesh, encoding="binary", vertex_normal=False,
                                           include_attributes=False)


#: Formats of a UV-textured mesh (:func:`textured_mesh_files`).
TEXTURED_FORMATS = ("obj", "glb")
#: Decimals of the coordinates in a textured OBJ (vertices and UVs: trimesh's ``digits``).
TEXTURED_OBJ_DIGITS = 4


def safe_texture_stem(name: str) -> str:
    """A file stem usable in OBJ's ``mtllib`` / ``map_Kd`` lines and as an MTL material name
    (which end at white space): ``name`` itself when it is made of ASCII letters, digits and
    ``_ . - + ~``, else those characters kept, the others replaced by ``_``, and 8 hex digits
    of the name's SHA-1 appended (so two names never share a stem)."""
    import hashlib
    import re

    safe = re.sub(r"[^A-Za-z0-9_.+~-]", "_", name)
    if safe == name and name:
        return name
    digest = hashlib.sha1(name.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return f"{safe}-{digest}"


def textured_mesh_files(stem: str, vertices: np.ndarray, triangles: np.ndarray,
                        uv: np.ndarray, texture_rgb: np.ndarray, fmt: str = MESH_FORMATS[0], *,
                        frame: str = DEFAULT_MESH_FRAME, image_height: float | None = None
                        ) -> list[tuple[str, bytes]]:
    """Encode a UV-textured triangle mesh with trimesh's exporters (in memory).

    Args:
        stem: the file name stem (no folder): ``obj`` gives ``<stem>.obj`` (``mtllib`` and
            ``usemtl`` lines, ``v``, ``vt`` and ``f a/a b/b c/c`` lines, coordinates with
            :data:`TEXTURED_OBJ_DIGITS` decimals), ``<t>.mtl`` and ``<t>.png`` with ``t =``
            :func:`safe_texture_stem` of ``stem`` (the material is named ``t`` too); ``glb``
            gives ``<stem>.glb`` with the PNG texture embedded (baseColorTexture).
        vertices, triangles: as for :func:`mesh_bytes`.
        uv: (N, 2) float texture coordinates in [0, 1] per vertex (v up: 0 = the texture's
            bottom row).
        texture_rgb: (H, W, 3) uint8 RGB texture image.
        fmt: ``"obj"`` or ``"glb"``.
        frame, image_height: as for :func:`mesh_bytes`.

    Returns:
        ``[(file name, content), ...]``, the mesh file first.

    Raises:
        ValueError: bad shapes, format or frame.
    """
    import trimesh
    from PIL import Image

    fmt = fmt.lower()
    if fmt not in TEXTURED_FORMATS:
        raise ValueError(f"unknown textured mesh format {fmt!r}; expected one of "
                         f"{TEXTURED_FORMATS}")
    v, t, _ = _check_mesh(vertices, triangles, None)
    v, t = _in_frame(v, t, frame, image_height)
    uv = np.asarray(uv, dtype=np.float64)
    if uv.shape != (len(v), 2):
        raise ValueError(f"uv must be ({len(v)}, 2), got {uv.shape}")
    tex = np.asarray(texture_rgb)
    if tex.ndim != 3 or tex.shape[2] != 3 or tex.dtype != np.uint8 or not tex.size:
        raise ValueError(f"texture must be (H, W, 3) uint8 RGB, got {tex.dtype} {tex.shape}")
    name = safe_texture_stem(stem)
    # white diffuse / ambient, no specular: viewers multiply the texture by the diffuse colour
    # (trimesh's default grey 0.4 would darken it; in GLB it becomes baseColorFactor)
    material = trimesh.visual.material.SimpleMaterial(
        image=Image.fromarray(tex), name=name, diffuse=(255, 255, 255, 255),
        ambient=(255, 255, 255, 255), specular=(0, 0, 0, 255), glossiness=1.0)
    mesh = trimesh.Trimesh(vertices=v, faces=t, process=False, validate=False,
                           visual=trimesh.visual.TextureVisuals(uv=uv, material=material))
    if fmt == "glb":
        return [(f"{stem}.glb", trimesh.exchange.gltf.export_glb(mesh, include_normals=False))]
    text, extra = trimesh.exchange.obj.export_obj(
        mesh, include_normals=False, include_color=False, include_texture=True,
        return_texture=True, mtl_name=f"{name}.mtl", digits=TEXTURED_OBJ_DIGITS,
        header="facealign textured mesh")
    files = [(f"{stem}.obj", text.encode("utf-8"))]
    for fname in sorted(extra):  # the .mtl and the .png
        files.append((fname, bytes(extra[fname])))
    return files


def write_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write bytes to ``path`` atomically (temporary file in the same folder + ``os.replace``,
    see :func:`facealign_cli.io.records.atomic_open`).

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
               colors: np.ndarray | None = None, fmt: str = MESH_FORMATS[0], *,
               frame: str = DEFAULT_MESH_FRAME, image_height: float | None = None) -> Path:
    """Write a triangle mesh to an OBJ or binary PLY file, atomically.

    Args:
        path: destination file (its folder is created if missing; an existing file is
            replaced).
        vertices: (N, 3) float vertex positions in the image frame (pixels, x right, y down, z
            away from the camera: ``Face.vertices``), written as given with ``frame="image"``.
        triangles: (T, 3) integer indices into ``vertices``; order is kept, and so is winding
            (in both frames, see :func:`to_viewer_frame`).
        colors: (N, 3) uint8 RGB per-vertex colours, or None.
        fmt: ``"obj"`` or ``"ply"`` (see :func:`mesh_bytes`).
        frame: ``"viewer"`` (default: :func:`to_viewer_frame`, opens upright, facing the
            viewer, in Blender, MeshLab, Open3D and trimesh) or ``"image"`` (as given).
        image_height: the photo's height in pixels, needed for ``frame="viewer"``
            (``read_image(...).height``).

    Returns:
        The destination path.

    Raises:
        ValueError: invalid arrays, format or frame, or ``frame="viewer"`` without
            ``image_height`` (nothing is written).
        OSError: the file cannot be written (no temporary file is left behind).
    """
    fmt = fmt.lower()
    if fmt != "obj":
        return write_atomic(path, mesh_bytes(vertices, triangles, colors, fmt, frame=frame,
                                             image_height=image_height))
    v, t, c = _check_mesh(vertices, triangles, colors)
    v, t = _in_frame(v, t, frame, image_height)
    path = Path(path)
    with atomic_open(path, "wb") as fh:  # written part by part: no joined copy of the text
        for part in _obj_parts(v, t, c):
            fh.write(part)
    return path
