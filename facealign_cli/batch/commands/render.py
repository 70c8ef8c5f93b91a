"""``render``: the photo (or every processed frame of a video) with the ``--draw`` layers of
its faces, and with ``--sheet`` thumbnails and a contact sheet of the run.

* a photo: ``<key>.jpg``; with ``opts.sheet`` also ``.thumbs/<key>.jpg``;
* a video: ``<key>.mp4``, the annotated video (:class:`facealign_cli.render.video.
  VideoRenderer`: the ``--draw`` layers and each face's ``#<track>`` on every processed frame,
  H.264 in MP4 (MPEG-4 Part 2 where PyAV's encoder is missing, with a warning; the manifest
  line's ``video.codec`` says which) at the processed frames' rate,
  :func:`facealign_cli.io.video_writer.processed_fps`; a frame whose processing raised is
  written as it is); with ``opts.sheet`` also
  ``.thumbs/<key>.jpg``, the thumbnail of its first annotated frame, and the done record keeps
  that frame's faces for the contact sheet.
"""

from __future__ import annotations

from facealign_cli.batch.commands.base import Command, ItemWriter, face_summary, jpeg_bytes
from facealign_cli.batch.options import SHEET_STEM, THUMBS_DIR, RunOptions
from facealign_cli.io import records

#: JPEG quality of the overlays of ``render``.
OVERLAY_QUALITY = 90


def _thumbnail_bytes(picture) -> bytes:
    from facealign_cli.render.sheet import THUMB_QUALITY, thumbnail

    return jpeg_bytes(thumbnail(picture), THUMB_QUALITY)


class Render(Command):
    """``<out>/<key>.jpg`` per photo: the photo with the ``opts.draw`` layers of its faces
    (:func:`facealign_cli.render.draw_faces`). With ``opts.sheet`` also
    ``<out>/.thumbs/<key>.jpg`` (a thumbnail) and, after the run, ``<out>/index.html`` (a
    contact sheet of the run's photos, :func:`facealign_cli.render.write_sheet`, built from the
    manifest and the done records: :meth:`finish`). A video gets ``<out>/<key>.mp4`` instead,
    its thumbnail from its first frame."""

    name = "render"
    streamable = False
    dense = True  # the topology is loaded; vertices are computed only for mesh / depth

    def pose_convention(self, opts):
        """The contact sheet shows pose angles (the overlays draw the rotation's axes, the
        same in every convention)."""
        return opts.pose_convention if opts.sheet else None

    def fingerprint(self, opts):
        return {**super().fingerprint(opts), "draw": list(opts.draw), "sheet": opts.sheet}

    def video_fingerprint(self, opts):
        fp = super().video_fingerprint(opts)
        from facealign_cli.io.video_writer import default_codec

        fp["video"].pop("mesh_every", None)  # (render has no --mesh-every)
        # the codec the videos get here: installing PyAV re-renders the mp4v ones
        fp["video"]["codec"] = default_codec()
        return fp

    @staticmethod
    def needs_dense(opts: RunOptions) -> bool:
        return any(d in ("mesh", "depth") for d in opts.draw)

    def open_writer(self, *, item, source, aligner, opts):
        if source.many:
            return RenderVideoWriter(self, item, source.sink, aligner, opts, source.fps)
        return RenderPhotoWriter(self, item, source.sink, aligner, opts)

    def finish(self, out, opts: RunOptions, lines) -> list:
        """After a run with ``opts.sheet``: write ``<out>/index.html`` (and further pages) from
        the run's manifest lines, ``[(key, manifest line)]`` in input order, and the done
        records of the photos rendered (this run's or an earlier one's).

        Returns:
            The pages written (none without ``opts.sheet``).

        Raises:
            OSError: a page cannot be written.
        """
        if not opts.sheet:
            return []
        from facealign_cli.batch.result import printable
        from facealign_cli.batch.state import done_path
        from facealign_cli.render import write_sheet
        from facealign_cli.render.sheet import codec_note

        entries = []
        for key, line in lines:
            e = {"name": printable(str(line.get("path", ""))), "status": line.get("status"),
                 "error": line.get("error"), "message": line.get("message")}
            if line.get("status") == "ok" or (line.get("status") == "skipped"
                                               and line.get("error") is None):
                try:
                    rec = records.read_json(done_path(out, self.name, key))
                except (OSError, ValueError):
                    rec = None
                if isinstance(rec, dict):
                    outs = [o for o in rec.get("outputs") or [] if isinstance(o, str)]
                    thumb = f"{THUMBS_DIR}/{key}.jpg"
                    # a photo's overlay <key>.jpg, a video's <key>.mp4 (none: no frame)
                    e["overlay"] = next((o for o in outs if o != thumb), None)
                    e["thumbnail"] = thumb if thumb in outs else None
                    video = rec.get("video")
                    if isinstance(video, dict):
                        e["video"] = True
                        e["note"] = (f"video: {video.get('frames')} frames, "
                                     f"{rec.get('n_faces')} face track(s)"
                                     f"{codec_note(video.get('codec'))}; the first frame's "
                                     "faces")
                    e["faces"] = [{"score": f.get("score"), "pose": f.get("pose")}
                                  for f in rec.get("faces") or [] if isinstance(f, dict)]
            entries.append(e)
        return write_sheet(out, entries, stem=SHEET_STEM, pose_convention=opts.pose_convention)

    def wants_lines(self, opts):
        return opts.sheet




class RenderPhotoWriter(ItemWriter):
    """A photo's overlay (and thumbnail)."""

    faces: list = []

    def dense(self):
        return Render.needs_dense(self.opts)

    def add(self, frame, faces):
        from facealign_cli.render import draw_faces

        tris = self.aligner.topology.triangles if self.dense() else None
        pic = draw_faces(frame.image, faces, self.opts.draw, triangles=tris)
        self.sink.add(self.item.key + ".jpg", jpeg_bytes(pic, OVERLAY_QUALITY))
        if self.opts.sheet:
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
        tris = aligner.topology.triangles if Render.needs_dense(opts) else None
        self.renderer = VideoRenderer(sp.path, processed_fps(fps, opts.frame_step,
                                                             opts.max_fps),
                                      opts.draw, triangles=tris, keep_first=opts.sheet)
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
        elif self.opts.sheet and r.first is not None:
            self.sink.add(f"{THUMBS_DIR}/{self.item.key}.jpg", _thumbnail_bytes(r.first))
            r.first = None
        return self.encoded(faces=self.first_faces or [], message=message,
                            video={"codec": r.codec})

    def release(self):
        self.renderer.close()
