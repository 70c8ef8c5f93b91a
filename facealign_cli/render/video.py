"""Annotated videos: the layers of :func:`facealign_cli.render.overlay.draw_faces` drawn on
every processed frame of a video, each face labelled with its track id (``#<track>``, then its
detector score) at its box, and the frames encoded one at a time
(:class:`facealign_cli.io.video_writer.VideoWriter`: H.264 in MP4 where PyAV's encoder is
installed, else MPEG-4 Part 2; never the whole video in memory).

Usage (``faces`` of each frame from :class:`facealign_cli.core.tracking.VideoAligner`, so that
``face.track`` is set)::

    with VideoRenderer("clip.mp4", fps, ["box", "landmarks"], keep_first=True) as vr:
        for frame in reader:
            vr.write(vr.draw(frame.image, faces_of(frame)))
    vr.first                          # the first picture written, (h, w, 3) uint8 BGR
    vr.codec                          # "h264" (or "mp4v", the fallback)

Frames: image pixels of the video frame, x right, y down (the faces' frame). Nothing here reads
anything; only the given path is written.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

import numpy as np

from facealign_cli.io.video_writer import VideoWriter
from facealign_cli.render.overlay import draw_faces


def track_labels(faces: Sequence) -> list[str | None]:
    """``"#<track>"`` for each face with a track id (``face.track``), else ``None``."""
    out: list[str | None] = []
    for f in faces:
        t = getattr(f, "track", None)
        out.append(None if t is None else f"#{int(t)}")
    return out


class VideoRenderer:
    """Draw and encode the frames of one annotated video.

    Args:
        path: the video file to write (``.mp4``; write it under a temporary name and rename
            it when done if readers must never see a partial file).
        fps: frames per second of the written video (the processed frames' rate,
            :func:`facealign_cli.io.video_writer.processed_fps`).
        draw: layer names of :data:`facealign_cli.render.overlay.DRAW_CHOICES`.
        triangles: (T, 3) int triangles of the dense meshes, for ``mesh`` / ``depth``.
        keep_first: keep the first picture written in :attr:`first` (for a thumbnail).
        codec: the writer's codec (:class:`~facealign_cli.io.video_writer.VideoWriter`;
            ``None``: H.264 where it can be written, else the ``mp4v`` fallback with a
            warning).

    Raises:
        ValueError: ``fps <= 0``.
        facealign_cli.io.video_writer.VideoWriteError: ``codec="h264"`` where it cannot be
            written (constructor); the encoder cannot be opened, fails or wrote short
            (:meth:`write`, :meth:`close`).
    """

    def __init__(self, path: str | os.PathLike, fps: float, draw: Iterable[str], *,
                 triangles: np.ndarray | None = None, keep_first: bool = False,
                 codec: str | None = None):
        self.draw_layers = tuple(draw)
        self.triangles = triangles
        self.keep_first = keep_first
        #: The first picture written ((H, W, 3) uint8 BGR) when ``keep_first``, else None.
        self.first: np.ndarray | None = None
        self._writer = VideoWriter(path, fps, codec=codec)

    @property
    def codec(self) -> str:
        """The codec written: ``"h264"``, or the OpenCV four-character code of the fallback
        (``"mp4v"``)."""
        return self._writer.codec

    @property
    def frames(self) -> int:
        """Frames written so far."""
        return self._writer.frames

    @property
    def size(self) -> tuple[int, int] | None:
        """``(width, height)`` of the video once a frame is written (even numbers)."""
        return self._writer.size

    def draw(self, image_bgr: np.ndarray, faces: Sequence) -> np.ndarray:
        """The frame with the layers of its faces and their track ids: a new (H, W, 3) uint8
        BGR image (``image_bgr`` is not changed).

        Raises:
            ValueError: as :func:`~facealign_cli.render.overlay.draw_faces`.
        """
        return draw_faces(image_bgr, faces, self.draw_layers, triangles=self.triangles,
                          labels=track_labels(faces))

    def write(self, picture_bgr: np.ndarray) -> None:
        """Append one (H, W, 3) uint8 BGR picture to the video (a frame whose faces could not
        be found is written as it is, so the video keeps every processed frame)."""
        self._writer.write(picture_bgr)
        if self.keep_first and self.first is None:
            self.first = np.array(picture_bgr, dtype=np.uint8, copy=True)

    def close(self) -> None:
        """Finish the file."""
        self._writer.close()

    def __enter__(self) -> VideoRenderer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
