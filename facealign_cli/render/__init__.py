"""Pictures of results: overlays over the photo (boxes, 68 landmarks with contours, pose axes),
the dense meshes shaded and z-buffered over the photo, depth images, and a static HTML contact
sheet of a run. Nothing here reads or writes anything but what it is given.

Per photo (``faces`` from ``FaceAligner()(image_bgr, dense=True)``, ``triangles`` its
``FaceAligner.topology.triangles``)::

    from facealign_cli.render import draw_faces, write_thumbnail, write_sheet

    picture = draw_faces(image_bgr, faces, ["box", "landmarks", "pose", "mesh"],
                         triangles=triangles)            # new (H, W, 3) uint8 BGR image
    write_thumbnail(out / "thumbs" / f"{stem}.jpg", picture)

Per run::

    write_sheet(out, [{"path": ..., "overlay": "a.jpg", "thumbnail": "thumbs/a.jpg",
                       "faces": [f.to_dict() for f in faces]},
                      {"path": ..., "status": "failed", "error": "...", "message": "..."}])

Modules:

* :mod:`.overlay` — :func:`draw_faces` (every layer of one photo), and its parts.
* :mod:`.shading` — shaded mesh and depth layers (:func:`mesh_layers`, :func:`blend_mesh`,
  :func:`depth_image`).
* :mod:`.raster` — the z-buffered rasteriser (DEODR's CPU scan-line renderer, no OpenGL).
* :mod:`.texture` — colours of a face from its photo: per-vertex colours
  (:func:`~.texture.sample_vertex_colors`) and a UV texture (:func:`~.texture.bake_texture`).
* :mod:`.sheet` — ``index.html`` from per-photo records, thumbnails.
* :mod:`.video` — annotated videos (:class:`VideoRenderer`: the layers and each face's track
  id on every frame, encoded frame by frame).
"""

from facealign_cli.render.overlay import DEFAULT_DRAW, DRAW_CHOICES, draw_faces
from facealign_cli.render.shading import (
    blend_mesh,
    depth_image,
    mesh_layers,
    render_depth,
    render_mesh,
)
from facealign_cli.render.sheet import SheetEntry, SheetFace, write_sheet, write_thumbnail
from facealign_cli.render.video import VideoRenderer, track_labels

__all__ = [
    "DEFAULT_DRAW",
    "DRAW_CHOICES",
    "draw_faces",
    "mesh_layers",
    "blend_mesh",
    "depth_image",
    "render_mesh",
    "render_depth",
    "SheetEntry",
    "SheetFace",
    "write_sheet",
    "write_thumbnail",
    "VideoRenderer",
    "track_labels",
]
