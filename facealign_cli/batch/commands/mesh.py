"""``mesh``: one mesh file (or OBJ + MTL + PNG) per face; the one place the mesh outputs are
named, coloured and encoded, for photos and videos.

* a photo: ``<key>_face<k>.<fmt>`` per face ``k`` (0 = highest score);
* a video: ``<key>/frame<NNNNNN>_track<k>.<fmt>`` (``NNNNNN`` = the source frame index) for
  every ``opts.mesh_every``-th processed frame (0, N, 2N, ... of the frames kept by
  ``--frame-step`` / ``--max-fps``); only those frames get the dense fit.
"""

from __future__ import annotations

from facealign_cli.batch.commands.base import Command, ItemWriter
from facealign_cli.batch.options import RunOptions


class Mesh(Command):
    """``<out>/<key>_face<k>.<obj|ply|glb>`` per face ``k`` (0 = highest score): the dense
    face-region vertices (pixels; ``opts.mesh_frame``: ``viewer`` = ``(x, H - y, -z)``, y up
    and z towards the viewer, or ``image`` = the image frame, y down, z away from the camera),
    the topology's triangles and per-vertex RGB colours sampled from the photo. With
    ``opts.texture``: a UV texture instead of vertex colours, ``<key>_face<k>.obj`` +
    ``.mtl`` + ``.png`` (:func:`facealign_cli.io.meshes.textured_mesh_files`) or one ``.glb``
    with the texture embedded."""

    name = "mesh"
    streamable = False
    dense = True

    def fingerprint(self, opts):
        fp = {**super().fingerprint(opts), "format": opts.mesh_format,
              "frame": opts.mesh_frame}
        if opts.texture:
            fp["texture"] = True
        return fp

    def needs_rasterizer(self, opts):
        return "mesh --texture" if opts.texture else None

    def open_writer(self, *, item, source, aligner, opts):
        return MeshWriter(self, item, source.sink, aligner, opts)


def face_colours(aligner, img, faces, opts: RunOptions) -> list:
    """Per face: its UV texture baked from ``img`` (``opts.texture``) or its vertex colours
    sampled from it (faces in ``img``'s pixels, vertices set)."""
    if opts.texture:
        from facealign_cli.core.morphable_model import load_face_uv
        from facealign_cli.render.texture import bake_texture, texture_size

        uv = load_face_uv()
        size = texture_size(uv.aspect)
        tris = aligner.topology.triangles
        return [bake_texture(img, f.vertices, tris, uv.uv, uv.mirror, size) for f in faces]
    from facealign_cli.render.texture import sample_vertex_colors

    return [sample_vertex_colors(img, f.vertices) for f in faces]


def mesh_files(base: str, face, colour, aligner, opts: RunOptions, height: int):
    """``[(relative path, bytes)]`` of one face's mesh named ``base`` (``/``-separated, no
    extension) in ``opts.mesh_format`` and ``opts.mesh_frame`` (``height``: the image's, full
    resolution), coloured with ``colour`` (:func:`face_colours`)."""
    from facealign_cli.io.meshes import mesh_bytes, textured_mesh_files

    tris = aligner.topology.triangles
    frame = {"frame": opts.mesh_frame, "image_height": height}
    if opts.texture:
        from facealign_cli.core.morphable_model import load_face_uv

        folder, _, name = base.rpartition("/")
        prefix = folder + "/" if folder else ""
        return [(prefix + n, data) for n, data in textured_mesh_files(
            name, face.vertices, tris, load_face_uv().uv, colour, opts.mesh_format, **frame)]
    return [(f"{base}.{opts.mesh_format}",
             mesh_bytes(face.vertices, tris, colour, opts.mesh_format, **frame))]


class MeshWriter(ItemWriter):
    """The meshes of a photo's faces, or of every ``opts.mesh_every``-th frame of a video."""

    processed = 0  # frames added so far

    def dense(self):
        return self.processed % max(1, self.opts.mesh_every) == 0

    def add(self, frame, faces):
        from facealign_cli.core.tracking import track_of

        meshed = self.dense()
        self.processed += 1
        if not meshed:
            return
        colours = face_colours(self.aligner, frame.image, faces, self.opts)
        frame.full_size(faces)
        for k, (f, col) in enumerate(zip(faces, colours)):
            base = (f"{self.item.key}_face{k}" if frame.index is None
                    else f"{self.item.key}/frame{frame.index:06d}_track{track_of(f)}")
            for rel, data in mesh_files(base, f, col, self.aligner, self.opts, frame.height):
                self.sink.add(rel, data)
