"""``mesh``: one mesh file (or OBJ + MTL + PNG) per face; the one place the mesh outputs are
named, coloured and encoded, for photos and videos.

* a photo: ``<key>_face<k>.<fmt>`` per face ``k`` (0 = highest score);
* a video: ``<key>/frame<NNNNNN>_track<k>.<fmt>`` (``NNNNNN`` = the source frame index) for
  every ``every``-th processed frame (0, N, 2N, ... of the frames kept by ``--frame-step`` /
  ``--max-fps``); only those frames get the dense fit.

Its options (:class:`MeshOptions`, ``opts.command_options``): ``--format``, ``--mesh-frame``,
``--texture``, ``--mesh-every``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from facealign_cli.batch.commands.base import Command, ItemWriter, require
from facealign_cli.defaults import DEFAULT_MESH_FRAME, MESH_FORMATS, MESH_FRAMES

if TYPE_CHECKING:  # the commands are below the options: a type only, never imported
    from facealign_cli.batch.options import RunOptions

#: ``mesh`` on a video writes the meshes of every N-th processed frame (``--mesh-every``).
DEFAULT_MESH_EVERY = 30


@dataclass(frozen=True)
class MeshOptions:
    """The options of ``mesh``.

    Attributes:
        format: ``"obj"``, ``"ply"`` or ``"glb"`` (:data:`facealign_cli.defaults.MESH_FORMATS`;
            ``--format``).
        frame: ``"viewer"`` (x, H - y, -z: y up, z towards the viewer) or ``"image"`` (the
            pixel frame of :mod:`facealign_cli.core.face`) (``--mesh-frame``).
        texture: a UV texture (PNG) per face instead of vertex colours (OBJ: OBJ + MTL + PNG;
            GLB: embedded; not PLY) (``--texture``).
        every: videos: write the meshes of every N-th processed frame, N >= 1
            (``--mesh-every``).

    Raises:
        OptionError: an invalid value (named by its flag).
    """

    format: str = MESH_FORMATS[0]
    frame: str = DEFAULT_MESH_FRAME
    texture: bool = False
    every: int = DEFAULT_MESH_EVERY

    def __post_init__(self):
        require(self.format in MESH_FORMATS, "--format",
                f"unknown mesh format {self.format!r}; expected one of {MESH_FORMATS}")
        require(self.frame in MESH_FRAMES, "--mesh-frame",
                f"unknown mesh frame {self.frame!r}; expected one of {MESH_FRAMES}")
        require(self.texture in (True, False), "--texture",
                f"must be True or False, got {self.texture!r}")
        require(not self.texture or self.format in ("obj", "glb"), "--texture",
                f"a textured mesh is written as OBJ + MTL + PNG or GLB: use --format obj or "
                f"glb, not {self.format!r}")
        require(isinstance(self.every, int) and not isinstance(self.every, bool)
                and self.every >= 1, "--mesh-every",
                f"must be a whole number >= 1, got {self.every!r}")


class Mesh(Command):
    """``<out>/<key>_face<k>.<obj|ply|glb>`` per face ``k`` (0 = highest score): the dense
    face-region vertices (pixels; :attr:`MeshOptions.frame`: ``viewer`` = ``(x, H - y, -z)``,
    y up and z towards the viewer, or ``image`` = the image frame, y down, z away from the
    camera), the topology's triangles and per-vertex RGB colours sampled from the photo. With
    :attr:`MeshOptions.texture`: a UV texture instead of vertex colours, ``<key>_face<k>.obj``
    + ``.mtl`` + ``.png`` (:func:`facealign_cli.io.meshes.textured_mesh_files`) or one
    ``.glb`` with the texture embedded."""

    name = "mesh"
    streamable = False
    dense = True
    Options = MeshOptions

    @classmethod
    def cli_options(cls):
        import click

        return [
            click.option("--format", "format", type=click.Choice(MESH_FORMATS,
                                                                 case_sensitive=False),
                         default=MESH_FORMATS[0], show_default=True,
                         help="Mesh file format: OBJ text (~3.2 MB and ~3.5 CPU ms a face), "
                              "binary PLY (the fast choice: half the size, ~2 ms) or binary "
                              "glTF (GLB, half the size, ~6 ms)."),
            click.option("--mesh-frame", "frame",
                         type=click.Choice(MESH_FRAMES, case_sensitive=False),
                         default=DEFAULT_MESH_FRAME, show_default=True,
                         help="viewer: (x, H - y, -z), y up and z towards the viewer, pixels "
                              "of the photo (opens upright, facing you, in Blender, MeshLab, "
                              "Open3D, trimesh); image: the photo's pixel frame (y down, z "
                              "away from the camera)."),
            click.option("--texture", is_flag=True,
                         help="A UV texture sampled from the photo instead of vertex colours: "
                              "<stem>_face<k>.obj + .mtl + .png (with --format glb: the "
                              "texture inside the .glb). Not with --format ply."),
            click.option("--mesh-every", "every", type=click.IntRange(min=1),
                         default=DEFAULT_MESH_EVERY, show_default=True, metavar="N",
                         help="Videos: write the meshes of every N-th processed frame, "
                              "<key>/frame<NNNNNN>_track<k>.<format>."),
        ]

    def fingerprint(self, opts):
        o = opts.command_options
        fp = {**super().fingerprint(opts), "format": o.format, "frame": o.frame}
        if o.texture:
            fp["texture"] = True
        return fp

    def video_fingerprint(self, opts):
        fp = super().video_fingerprint(opts)
        fp["video"]["mesh_every"] = opts.command_options.every
        return fp

    def needs_rasterizer(self, opts):
        return "mesh --texture" if opts.command_options.texture else None

    def open_writer(self, *, item, source, aligner, opts):
        return MeshWriter(self, item, source.sink, aligner, opts)


def face_colours(aligner, img, faces, opts: RunOptions) -> list:
    """Per face: its UV texture baked from ``img`` (:attr:`MeshOptions.texture`) or its vertex
    colours sampled from it (faces in ``img``'s pixels, vertices set)."""
    if opts.command_options.texture:
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
    extension) in the run's :class:`MeshOptions` format and frame (``height``: the image's,
    full resolution), coloured with ``colour`` (:func:`face_colours`)."""
    from facealign_cli.io.meshes import mesh_bytes, textured_mesh_files

    o = opts.command_options
    tris = aligner.topology.triangles
    frame = {"frame": o.frame, "image_height": height}
    if o.texture:
        from facealign_cli.core.morphable_model import load_face_uv

        folder, _, name = base.rpartition("/")
        prefix = folder + "/" if folder else ""
        return [(prefix + n, data) for n, data in textured_mesh_files(
            name, face.vertices, tris, load_face_uv().uv, colour, o.format, **frame)]
    return [(f"{base}.{o.format}", mesh_bytes(face.vertices, tris, colour, o.format, **frame))]


class MeshWriter(ItemWriter):
    """The meshes of a photo's faces, or of every :attr:`MeshOptions.every`-th frame of a
    video."""

    processed = 0  # frames added so far

    def dense(self):
        return self.processed % self.opts.command_options.every == 0

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
