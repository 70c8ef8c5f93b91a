"""Where an item's frames come from: a photo is a one-frame source (:class:`PhotoSource`), a
video a many-frame one (:class:`VideoSource`: its frames streamed through the tracker, never
the whole video in memory). Each finds the faces of its frames (:meth:`faces`), counts them
and says what the item's result reports (size, ``n_faces``, message, a video's frame counts).

A photo's faces are found on the image as decoded (at 1/2, 1/4 or 1/8 size when over
``--max-megapixels``: :meth:`Frame.full_size` maps them to full-resolution pixels). A video's
``n_faces`` is the number of distinct face tracks; its result carries ``video`` (manifest line
and done record): ``frames`` (processed), ``frames_failed``, ``frames_decoded``,
``frames_declared``, ``frames_lost``, ``complete``, ``fps``, ``width``, ``height``.

A frame the decoder cannot decode in the middle of a video is skipped and the video goes on
(:class:`~facealign_cli.io.video.VideoReader`); such frames, and a shortfall of at most
:data:`~facealign_cli.io.video.FRAME_COUNT_SLACK` against the declared count, are the video's
``frames_lost``. The video stays ``ok`` (its outputs hold every frame that could be decoded,
as with frames whose processing failed), and its manifest message and a warning on stderr
say how many frames were lost.

A video that cannot be opened fails with ``VideoOpenError`` (0 frames), one whose frames are
larger than ``--max-megapixels`` (``opts.max_pixels``) with ``VideoTooLargeError`` (decided
from the container's declared frame size: no frame is decoded); one whose stream ends before
its declared frame count (truncated, corrupt) fails with :class:`TruncatedVideoError` and the
frame counts it reached: **its partial outputs are removed** (nothing is written for it, and a
re-run retries it, as for a failed photo). Its outputs are spooled
(:class:`~facealign_cli.batch.spools.SpoolSink`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from facealign_cli.batch.commands import Command, keep_faces
from facealign_cli.batch.options import RunOptions
from facealign_cli.batch.record_types import FrameCounts
from facealign_cli.batch.spools import MemorySink, SpoolSink
from facealign_cli.io.inputs import InputItem

#: The commands that take video files.
VIDEO_COMMANDS = ("detect", "landmarks", "pose", "mesh", "render")


class TruncatedVideoError(ValueError):
    """The stream ended before the frames its container declares (truncated or corrupt)."""


class VideoNotSupportedError(ValueError):
    """The command does not take video files."""


class NotAVideoError(ValueError):
    """A file named like a video (``.mp4`` ...) whose content is an image (a JPEG, PNG ...):
    it fails instead of being read as a one-frame video."""


@dataclass
class Frame:
    """One frame of an item.

    Attributes:
        image: (H, W, 3) uint8 BGR, as decoded (a photo over the pixel limit: reduced).
        index: 0-based index in the video's stream; None for a photo.
        time: seconds from the video's start (None for a photo).
        width, height: the full-resolution size.
        scale: the photo was decoded at 1/``scale`` size.
    """

    image: Any
    index: int | None
    time: float | None
    width: int
    height: int
    scale: int = 1
    _full: bool = False

    @property
    def seconds(self) -> float | None:
        """:attr:`time` as written to the outputs (rounded to 6 places)."""
        return None if self.time is None else round(float(self.time), 6)

    def full_size(self, faces) -> None:
        """Map ``faces`` (found on :attr:`image`) to full-resolution pixels, in place, once
        (x' = scale * x + (scale - 1) / 2, same for y; z' = scale * z)."""
        if self.scale > 1 and not self._full:
            _rescale_faces(faces, self.scale)
        self._full = True


def _rescale_faces(faces, scale: int) -> None:
    import numpy as np

    off = (scale - 1) / 2.0
    for f in faces:
        for name in ("box", "roi_box"):
            a = getattr(f, name)
            if a is not None:
                setattr(f, name, (np.asarray(a, np.float32) * scale + off).astype(np.float32))
        if f.keypoints is not None:
            f.keypoints = (np.asarray(f.keypoints, np.float32) * scale + off).astype(np.float32)
        for name in ("landmarks_3d", "vertices"):
            a = getattr(f, name)
            if a is not None:
                a = np.asarray(a, np.float32) * scale
                a[:, :2] += off
                setattr(f, name, a.astype(np.float32))


class _ScoreFiltered:
    """An aligner whose detections the run's settings do not keep are dropped
    (:meth:`~facealign_cli.core.settings.AlignerSettings.keeps`: below ``min_score``; the
    shipped aligner drops them itself, a plugged-in one may not)."""

    def __init__(self, aligner, settings):
        self._a = aligner
        self._settings = settings

    def detect(self, image):
        return [f for f in self._a.detect(image) if self._settings.keeps(f)]

    def fit(self, image, faces, *, dense: bool = False):
        return self._a.fit(image, faces, dense=dense)

    def __getattr__(self, name):
        return getattr(self._a, name)


class PhotoSource:
    """A photo: one frame (decoded by :meth:`open`, which raises what
    :func:`facealign_cli.io.images.read_image` raises)."""

    many = False

    def __init__(self, cmd: Command, opts: RunOptions, item: InputItem):
        self.cmd, self.opts, self.item = cmd, opts, item
        self.sink = MemorySink()
        self.width = self.height = None
        self.n_faces = 0
        self._dec = self._aligner = self._model = None

    def open(self) -> None:
        from facealign_cli.io.images import read_image

        self._dec = read_image(self.item.path, max_pixels=self.opts.max_pixels)
        self.width, self.height = self._dec.width, self._dec.height

    def start(self, aligner) -> None:
        """Use ``aligner`` (the process's model) for :meth:`faces`."""
        self._model = aligner
        self._aligner = _ScoreFiltered(aligner, self.opts.aligner)

    def frames(self):
        d = self._dec
        yield Frame(d.image, None, None, d.width, d.height, d.scale)

    def faces(self, frame: Frame, dense: bool) -> list:
        """The faces of ``frame`` kept by the score (and quality) limits; regressed unless
        the command is ``detect``, with vertices when ``dense``."""
        if not self.cmd.uses_regressor:
            return self._aligner.detect(frame.image)
        return keep_faces(self._model(frame.image, dense=dense), self.opts)

    def count(self, faces: list | None) -> None:
        """Count a frame's faces (None: the frame failed)."""
        self.n_faces = len(faces or ())

    @property
    def message(self) -> str | None:
        notes = list(self._dec.warnings)  # e.g. only the first frame of an animation
        if self._dec.scale > 1:
            notes.insert(0, f"decoded at 1/{self._dec.scale} size (over the pixel limit)")
        return "; ".join(notes) or None

    def fingerprint(self) -> dict[str, Any]:
        return self.cmd.fingerprint(self.opts)

    def finish(self) -> FrameCounts | None:
        """After the last frame: a video's frame counts (None for a photo)."""
        return None

    def failed_counts(self, exc: BaseException) -> FrameCounts | None:
        """The frame counts a failed item reports (None for a photo)."""
        return None

    def close(self) -> None:
        self._dec = None


def _refuse_images(path: str) -> None:
    """Raise :class:`NotAVideoError` when the file at ``path`` starts like an image
    (:func:`facealign_cli.io.image_headers.sniff_format`); a file that cannot be read is left
    to the video reader to report."""
    from facealign_cli.io.image_headers import sniff_format

    try:
        with open(path, "rb") as f:
            fmt = sniff_format(f.read(12))
    except OSError:
        return
    if fmt is not None:
        raise NotAVideoError(f"a {fmt.upper()} image named like a video "
                             f"({os.path.splitext(path)[1]}): not processed; give it an image "
                             "extension to process it as a photo")


class VideoSource(PhotoSource):
    """A video: the frames :class:`~facealign_cli.io.video.VideoReader` keeps
    (``--frame-step``, ``--max-fps``), faces tracked from frame to frame: ``detect`` by
    :class:`~facealign_cli.core.tracking.FaceTracker` on every frame's detections, the others
    by :class:`~facealign_cli.core.tracking.VideoAligner` (``--detect-every``, ``--smooth``);
    both end every track at a hard cut (:mod:`facealign_cli.core.scene_cuts`)."""

    many = True

    def __init__(self, cmd: Command, opts: RunOptions, item: InputItem):
        super().__init__(cmd, opts, item)
        self.sink = SpoolSink(opts.backend)
        self.reader = self._tracker = self._cuts = self._video_aligner = self.video = None
        self.processed = self.failed = 0
        self.tracks: set[int] = set()

    def open(self) -> None:
        from facealign_cli.io.video import VideoReader

        if self.cmd.name not in VIDEO_COMMANDS:
            raise VideoNotSupportedError(f"{self.cmd.name} does not take video files (only "
                                         f"{', '.join(VIDEO_COMMANDS)})")
        _refuse_images(self.item.path)
        v = self.opts.video
        self.reader = VideoReader(self.item.path, frame_step=v.frame_step, max_fps=v.max_fps,
                                  max_pixels=self.opts.max_pixels)
        self.width, self.height = self.reader.info.width, self.reader.info.height

    @property
    def fps(self) -> float:
        """The source's frame rate (as its container declares it)."""
        return self.reader.info.fps

    def start(self, aligner) -> None:
        from facealign_cli.core.tracking import FaceTracker, VideoAligner

        super().start(aligner)
        if not self.cmd.uses_regressor:
            from facealign_cli.core.scene_cuts import CutDetector

            self._tracker, self._cuts = FaceTracker(), CutDetector()
            return
        smoother = None
        if self.opts.video.smooth:
            from facealign_cli.core.smoothing import FaceSmoother

            smoother = FaceSmoother()
        self._video_aligner = VideoAligner(self._aligner,
                                           detect_every=self.opts.video.detect_every,
                                           smoother=smoother, dense=False)

    def frames(self):
        with self.reader:
            for fr in self.reader:
                self.height, self.width = fr.image.shape[:2]
                yield Frame(fr.image, fr.index, fr.time, self.width, self.height)
                del fr

    def faces(self, frame: Frame, dense: bool) -> list:
        if self._tracker is not None:
            if self._cuts(frame.image):  # a new shot: its faces start new tracks
                self._tracker.new_scene()
            return self._tracker.update(self._aligner.detect(frame.image))
        self._video_aligner.dense = dense
        return keep_faces(self._video_aligner.process(frame.image, frame.time), self.opts)

    def count(self, faces: list | None) -> None:
        from facealign_cli.core.tracking import track_of

        self.processed += 1
        if faces is None:
            self.failed += 1
            return
        self.tracks.update(t for t in (track_of(f) for f in faces) if t is not None)
        self.n_faces = len(self.tracks)

    @property
    def message(self) -> str | None:
        notes = [f"{self.failed} of {self.processed} frames failed"] if self.failed else []
        lost = self.video.frames_lost if self.video is not None else None
        if lost:
            notes.append(f"{lost} of {self.video.frames_declared} declared frames lost "
                         "(undecodable, or missing from the stream)")
        return "; ".join(notes) or None

    def fingerprint(self) -> dict[str, Any]:
        return self.cmd.video_fingerprint(self.opts)

    def finish(self) -> FrameCounts:
        """The video's frame counts.

        Raises:
            TruncatedVideoError: the stream ended before its declared frame count.
        """
        st = self.reader.status
        self.video = FrameCounts.of_reader(st, failed=self.failed, info=self.reader.info,
                                           width=self.width, height=self.height)
        if not st.complete:
            raise TruncatedVideoError(st.error or "the stream ended early")
        return self.video

    def failed_counts(self, exc: BaseException) -> FrameCounts | None:
        from facealign_cli.io.video import VideoError

        if self.video is None and isinstance(exc, VideoError):  # cannot open, too large
            return FrameCounts.of_reader(self.reader.status if self.reader is not None
                                         else None)
        return self.video

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()


def open_source(cmd: Command, opts: RunOptions, item: InputItem) -> PhotoSource:
    """The source of ``item`` (a video by its name, :func:`facealign_cli.io.video.
    is_video_path`); nothing is read until its ``open()``."""
    from facealign_cli.io.video import is_video_path

    cls = VideoSource if is_video_path(item.path) else PhotoSource
    return cls(cmd, opts, item)
