"""``render``: the photo (or every processed frame of a video) with the ``--draw`` layers of
its faces, and with ``--sheet`` thumbnails and a contact sheet of the run.

Its options (:class:`RenderOptions`, ``opts.command_options``): ``--draw``, ``--sheet``.

* a photo: ``<key>.jpg``; with ``sheet`` also ``.thumbs/<key>.jpg``;
* a video: ``<key>.mp4``, the annotated video (:class:`facealign_cli.render.video.
  VideoRenderer`: the ``--draw`` layers and each face's ``#<track>`` on every processed frame,
  H.264 in MP4 (MPEG-4 Part 2 where PyAV's encoder is missing, with a warning; the manifest
  line's ``video.codec`` says which) at the processed frames' rate,
  :func:`facealign_cli.io.video_writer.processed_fps`; a frame whose processing raised is
  written as it is); with ``sheet`` also
  ``.thumbs/<key>.jpg``, the thumbnail of its first annotated frame, and the done record keeps
  that frame's faces for the contact sheet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from facealign_cli.batch.commands.base import (
    Command,
    ItemWriter,
    face_summary,
    jpeg_bytes,
    require,
)
from facealign_cli.batch.layout import SHEET_STEM, THUMBS_DIR

if TYPE_CHECKING:  # the commands are below the options: a type only, never imported
    from facealign_cli.batch.options import RunOptions

#: JPEG quality of the overlays of ``render``.
OVERLAY_QUALITY = 90
#: What ``render`` can draw (:func:`facealign_cli.render.draw_faces`'s layers), and what it
#: draws by default.
DRAW_CHOICES = ("box", "landmarks", "pose", "mesh", "depth")
DEFAULT_DRAW = ("box", "landmarks", "pose")


@dataclass(frozen=True)
class RenderOptions:
    """The options of ``render``.

    Attributes:
        draw: the layers drawn, some of :data:`DRAW_CHOICES` (``--draw``; a tuple, no
            repeats).
        sheet: also write thumbnails and ``index.html``, a contact sheet (``--sheet``).

    Raises:
        OptionError: an invalid value (named by its flag).
    """

    draw: tuple[str, ...] = DEFAULT_DRAW
    sheet: bool = False

    def __post_init__(self):
        draw = (self.draw,) if isinstance(self.draw, str) else tuple(self.draw)
        bad = [d for d in draw if d not in DRAW_CHOICES]
        require(bool(draw) and not bad, "--draw",
                f"invalid choice(s) {bad or list(draw)}; expected some of {DRAW_CHOICES}")
        object.__setattr__(self, "draw", tuple(dict.fromkeys(draw)))
        require(self.sheet in (True, False), "--sheet",
                f"must be True or False, got {self.sheet!r}")

    @property
    def dense(self) -> bool:
        """Whether a layer needs the faces' vertices (``mesh``, ``depth``)."""
        return any(d in ("mesh", "depth") for d in self.draw)


def _parse_draw(ctx, param, value: str) -> tuple[str, ...]:
    """``--draw``'s click callback: a comma-separated list of :data:`DRAW_CHOICES`."""
    import click

    items = [v.strip().lower() for v in str(value).split(",") if v.strip()]
    bad = [v for v in items if v not in DRAW_CHOICES]
    if bad or not items:
        raise click.BadParameter(f"{', '.join(bad) or 'nothing'}: expected a comma-separated "
                                 f"list of {', '.join(DRAW_CHOICES)}")
    return tuple(dict.fromkeys(items))


def _thumbnail_bytes(picture) -> bytes:
    from facealign_cli.render.sheet import THUMB_QUALITY, thumbnail

    return jpeg_bytes(thumbnail(picture), THUMB_QUALITY)


class Render(Command):
    """``<out>/<key>.jpg`` per photo: the photo with the :attr:`RenderOptions.draw` layers of
    its faces (:func:`facealign_cli.render.draw_faces`). With :attr:`RenderOptions.sheet` also
    ``<out>/.thumbs/<key>.jpg`` (a thumbnail) and, after the run, ``<out>/index.html`` (a
    contact sheet of the run's photos, :func:`facealign_cli.render.write_sheet`, built from the
    manifest and the run state: :meth:`finish`). A video gets ``<out>/<key>.mp4`` instead,
    its thumbnail from its first frame."""

    name = "render"
    streamable = False
    dense = True  # the topology is loaded; vertices are computed only for mesh / depth
    Options = RenderOptions

    @classmethod
    def cli_options(cls):
        import click

        return [
            click.option("--draw", default=",".join(DEFAULT_DRAW), show_default=True,
                         callback=_parse_draw, metavar="LAYERS",
                         help="Comma-separated layers: box (detector box and score), "
                              "landmarks (68, with the iBUG contour lines), pose (3D axes at "
                              "the nose tip: x red, y green, z blue), mesh (the dense face "
                              "shaded, z-buffered, blended over the photo), depth (a depth "
                              "image of the faces in place of the photo)."),
            click.option("--sheet", is_flag=True,
                         help="Also write <out>/.thumbs/<stem>.jpg per photo and, after the "
                              "run, <out>/index.html: a static contact sheet (a thumbnail per "
                              "photo linking to its overlay, each face's score and pose, the "
                              "failed images from the manifest with their reason); no server "
                              "or JavaScript needed. A video's thumbnail is its first "
                              "annotated frame, linking to the video."),
        ]

    def pose_convention(self, opts):
        """The contact sheet shows pose angles (the overlays draw the rotation's axes, the
        same in every convention)."""
        return opts.aligner.pose_convention if opts.command_options.sheet else None

    def fingerprint(self, opts):
        o = opts.command_options
        return {**super().fingerprint(opts), "draw": list(o.draw), "sheet": o.sheet}

    def video_fingerprint(self, opts):
        fp = super().video_fingerprint(opts)
        from facealign_cli.io.video_writer import default_codec

        fp["video"].pop("mesh_every", None)  # (render has no --mesh-every)
        # the codec the videos get here: installing PyAV re-renders the mp4v ones
        fp["video"]["codec"] = default_codec()
        return fp

    @staticmethod
    def needs_dense(opts: RunOptions) -> bool:
        return any(d in ("mesh", "depth") for d in opts.command_options.draw)

    def needs_rasterizer(self, opts):
        layers = [d for d in opts.command_options.draw if d in ("mesh", "depth")]
        return f"render --draw {','.join(layers)}" if layers else None

    def open_writer(self, *, item, source, aligner, opts):
        if source.many:
            return RenderVideoWriter(self, item, source.sink, aligner, opts, source.fps)
        return RenderPhotoWriter(self, item, source.sink, aligner, opts)

    def finish(self, out, opts: RunOptions, lines) -> list:
        """After a run with :attr:`RenderOptions.sheet`: write ``<out>/index.html`` (and
        further pages) from the run's manifest lines, ``[(key, manifest line)]`` in input
        order, and the run state's rows of the photos rendered (this run's or an earlier one's).

        Returns:
            The pages written (none without the sheet).

        Raises:
            OSError: a page cannot be written.
        """
        if not opts.command_options.sheet:
            return []
        from facealign_cli.batch.result import printable
        from facealign_cli.batch.run_db import LOOKUP_CHUNK, RunDB
        from facealign_cli.render import write_sheet
        from facealign_cli.render.sheet import codec_note

        entries = []
        db = RunDB(out, readonly=True)
        try:
            for i in range(0, len(lines), LOOKUP_CHUNK):
                part = lines[i:i + LOOKUP_CHUNK]
                rows = db.lookup(self.name, [key for key, _ in part])
                entries.extend(_sheet_entry(key, line, rows.get(key), printable, codec_note)
                               for key, line in part)
        finally:
            db.close()
        return write_sheet(out, entries, stem=SHEET_STEM,
                           pose_convention=opts.aligner.pose_convention)

    def wants_lines(self, opts):
        return opts.command_options.sheet


def _sheet_entry(key: str, line: dict, row, printable, codec_note) -> dict:
    """The contact sheet's entry of one item: its manifest ``line`` and, when it is done (this
    run or an earlier one), its state ``row``
    (:class:`~facealign_cli.batch.run_db.ItemRow`)."""
    e = {"name": printable(str(line.get("path", ""))), "status": line.get("status"),
         "error": line.get("error"), "message": line.get("message")}
    done = line.get("status") == "ok" or (line.get("status") == "skipped"
                                           and line.get("error") is None)
    if done and row is not None and row.status == "ok":
        thumb = f"{THUMBS_DIR}/{key}.jpg"
        # a photo's overlay <key>.jpg, a video's <key>.mp4 (none: no frame)
        e["overlay"] = next((o for o in row.outputs if o != thumb), None)
        e["thumbnail"] = thumb if thumb in row.outputs else None
        if row.video is not None:
            e["video"] = True
            e["note"] = (f"video: {row.video.frames} frames, {row.n_faces} face track(s)"
                         f"{codec_note(row.video.codec)}; the first frame's faces")
        e["faces"] = [{k: f.get(k) for k in ("score", "quality", "pose")}
                      for f in row.faces or ()]
    return e


class RenderPhotoWriter(ItemWriter):
    """A photo's overlay (and thumbnail)."""

    faces: list = []

    def dense(self):
        return self.opts.command_options.dense

    def add(self, frame, faces):
        from facealign_cli.render import draw_faces

        o = self.opts.command_options
        tris = self.aligner.topology.triangles if o.dense else None
        pic = draw_faces(frame.image, faces, o.draw, triangles=tris)
        self.sink.add(self.item.key + ".jpg", jpeg_bytes(pic, OVERLAY_QUALITY))
        if o.sheet:
            self.sink.add(f"{THUMBS_DIR}/{self.item.key}.jpg", _thumbnail_bytes(pic))
        self.faces = face_summary(faces)

    def close(self):
        return self.encoded(faces=self.faces)


class RenderVideoWriter(ItemWriter):
    """A video's annotated video, encoded frame by frame into a spool (the container follows
    the spool's suffix), and the thumbnail of its first frame."""

    def __init__(self, cmd, item, sink, aligner, opts, fps: float):
        from facealign_cli.io.video_writer import WRITE_SUFFIX, processed_fps
        from facealign_cli.render.video import VideoRenderer

        super().__init__(cmd, item, sink, aligner, opts)
        sp, f = sink.open(item.key + WRITE_SUFFIX, WRITE_SUFFIX)
        f.close()
        o, v = opts.command_options, opts.video
        tris = aligner.topology.triangles if o.dense else None
        self.renderer = VideoRenderer(sp.path, processed_fps(fps, v.frame_step, v.max_fps),
                                      o.draw, triangles=tris, keep_first=o.sheet)
        self.first_faces: list | None = None
        self.processed = 0

    def dense(self):
        return self.renderer.triangles is not None

    def add(self, frame, faces):
        self._write(self.renderer.draw(frame.image, faces), faces)

    def add_failed(self, frame, error):
        self._write(frame.image, [])

    def _write(self, picture, faces) -> None:
        self.renderer.write(picture)
        if self.first_faces is None:
            self.first_faces = face_summary(faces)
        self.processed += 1

    def close(self):
        """Finish the video (dropped when no frame was written) and add the sheet's
        thumbnail of its first frame."""
        r = self.renderer
        r.close()
        message = None if self.processed else "no frame in the video: nothing rendered"
        if not r.frames:
            self.sink.discard()
        elif self.opts.command_options.sheet and r.first is not None:
            self.sink.add(f"{THUMBS_DIR}/{self.item.key}.jpg", _thumbnail_bytes(r.first))
            r.first = None
        return self.encoded(faces=self.first_faces or [], message=message,
                            codec=r.codec)

    def release(self):
        self.renderer.close()
