"""Video files as a stream of frames: OpenCV's ``cv2.VideoCapture`` (its FFmpeg backend, shipped
in ``opencv-python-headless``), one frame in memory at a time.

Usage::

    with VideoReader("clip.mp4", frame_step=2, max_fps=10) as video:
        for frame in video:          # VideoFrame: index, time (s), image (H, W, 3) uint8 BGR
            ...
    video.status                     # VideoStatus: frames delivered, complete or why not

* **Never the whole video in memory**: :class:`VideoReader` is an iterator; each
  :class:`VideoFrame` is decoded when asked for and may be dropped by the caller at once. Frames
  that subsampling skips are only ``grab()``-ed (demuxed and decoded by FFmpeg, never converted
  to a BGR array).
* **Subsampling**: ``frame_step = N`` keeps the frames whose index is a multiple of N (0, N,
  2N, ...); ``max_fps = F`` then keeps a frame only when at least ``1 / F`` seconds (minus half a
  source frame, so that 30 fps with ``max_fps=15`` keeps every second frame) have passed since the
  last kept frame. Both may be given; the first frame is always kept.
* **Frame index and time**: ``index`` is the 0-based position of the frame in the decoded
  stream (before subsampling), ``time`` its presentation time in seconds: the container's time
  stamp (``CAP_PROP_POS_MSEC``) while it is finite and non-decreasing, else ``index / fps``
  (``index`` itself when the frame rate is unknown too).
* **Frame size limit**: a video whose frames are larger than ``max_pixels`` (width x
  height; default :data:`facealign_cli.io.images.DEFAULT_MAX_PIXELS`, the photos' limit; the
  command line passes ``--max-megapixels``) raises :class:`VideoTooLargeError`, decided from
  the container's declared size before any frame is decoded (a frame cannot be decoded at a
  reduced size, as a JPEG can; one 12000 x 12000 MJPG frame would take over 1 GiB). A frame
  larger than declared (OpenCV would decode it whole and return it squashed) raises it too:
  Motion JPEG before decoding (:mod:`facealign_cli.io.video_packets`), else when returned.
* **Corrupt or truncated video**: a file that cannot be opened raises :class:`VideoOpenError`
  (a truncated MP4 whose ``moov`` index is lost cannot be opened: 0 frames delivered). A frame
  the decoder cannot decode in the middle of the stream is skipped (its index is kept by no
  frame) and counted in :attr:`VideoStatus.frames_undecodable`; reading goes on (up to
  :data:`MAX_UNDECODABLE_RUN` failures in a row, and not once the declared frames are all
  read). A stream that stops early is not an
  exception: iteration ends, and :attr:`VideoReader.status` says how many frames were decoded
  and delivered and, when the container declared more frames than the stream held (beyond
  :data:`FRAME_COUNT_SLACK`), ``complete = False`` with the reason (a truncated AVI delivers its
  first frames and then stops). :attr:`VideoStatus.frames_lost` counts the frames of a
  complete video that were not delivered: the undecodable ones and a shortfall within the
  slack (a chunk the demuxer dropped, or a container whose count is an estimate). Callers
  record ``status.as_record()`` with the video's results.

**Writing** (``render`` on a video) is :mod:`facealign_cli.io.video_writer`; it reads its
videos back with :func:`count_frames`.

Coordinates: frames are images like any other input (x right, y down, pixels); nothing is
rotated (container rotation metadata is applied by FFmpeg where OpenCV supports it).
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

#: Extensions of the files taken as videos (compared lower-case).
VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm"})

#: A container's declared frame count may exceed the decodable frames by this many without the
#: video being called truncated (some muxers count a trailing empty or duplicate packet).
FRAME_COUNT_SLACK = 1

#: Consecutive frames the decoder may fail on before the stream is taken to have ended: a
#: corrupt frame in the middle of a video is skipped (counted in
#: :attr:`VideoStatus.frames_undecodable`) and reading goes on with the next one.
MAX_UNDECODABLE_RUN = 32


class VideoError(ValueError):
    """A video file that cannot be read."""


class VideoOpenError(VideoError):
    """The file cannot be opened as a video (missing, not a video, or its index is lost)."""


class VideoTooLargeError(VideoError):
    """The video's frames have more pixels than the limit (``max_pixels``)."""


def is_video_path(path: str | os.PathLike) -> bool:
    """Whether ``path`` has one of :data:`VIDEO_EXTENSIONS` (case-insensitive); the content is
    not looked at. The suffix of :attr:`pathlib.PurePath.suffix` (from the name's last dot,
    when that dot is neither its first nor its last character: ``...mp4`` is a video), taken
    with string operations, without path parsing: it runs for every item of a run."""
    name = os.path.basename(os.fspath(path))
    i = name.rfind(".")
    return 0 < i < len(name) - 1 and name[i:].lower() in VIDEO_EXTENSIONS


@dataclass(frozen=True)
class VideoInfo:
    """What the container declares (may be wrong for damaged files).

    Attributes:
        path: the file.
        width, height: frame size in pixels.
        fps: frames per second (0.0 when unknown).
        frame_count: declared number of frames (0 when unknown; for a truncated file it may be
            larger than what can be decoded).
        duration: ``frame_count / fps`` in seconds (0.0 when either is unknown).
        fourcc: the codec's four-character code (``"MJPG"``, ``"mp4v"``, ``"h264"``, ...), or
            ``""``.
        backend: the OpenCV backend that opened it (``"FFMPEG"``).
    """

    path: str
    width: int
    height: int
    fps: float
    frame_count: int
    duration: float
    fourcc: str
    backend: str


@dataclass
class VideoFrame:
    """One decoded frame.

    Attributes:
        index: 0-based frame number in the source stream (before subsampling).
        time: presentation time in seconds from the start of the stream.
        image: (H, W, 3) uint8 BGR pixels (a fresh array owned by the caller).
    """

    index: int
    time: float
    image: np.ndarray


@dataclass
class VideoStatus:
    """How the reading of one video went (final once iteration has ended).

    Attributes:
        frames_decoded: frames read from the stream (delivered or skipped by subsampling).
        frames_delivered: frames yielded to the caller.
        frames_declared: the container's frame count (0 = unknown).
        last_index: index of the last decoded frame (-1 when none).
        frames_undecodable: frames in the middle of the stream the decoder failed on (skipped;
            each still takes an index).
        frames_lost: frames of the container's count never delivered by a complete stream:
            ``frames_undecodable`` plus a shortfall within :data:`FRAME_COUNT_SLACK` (set when
            iteration ends).
        complete: the stream ended where the container said it would (or, with an unknown
            count, it ended without an error); ``False`` for a truncated or corrupt video.
        error: why it is incomplete, else ``None``.
        finished: iteration reached the end of the stream (``False`` if the caller stopped
            early, e.g. with ``break``; ``complete`` is then ``True`` until proven otherwise).
    """

    frames_decoded: int = 0
    frames_delivered: int = 0
    frames_declared: int = 0
    last_index: int = -1
    frames_undecodable: int = 0
    frames_lost: int = 0
    complete: bool = True
    error: str | None = None
    finished: bool = False

    def as_record(self) -> dict:
        """Plain-JSON view for a manifest or a run record."""
        return asdict(self)


def _fourcc(value: float) -> str:
    try:
        code = int(value)
    except (TypeError, ValueError, OverflowError):
        return ""
    if code <= 0:
        return ""
    s = "".join(chr((code >> (8 * i)) & 0xFF) for i in range(4))
    return s if s.isprintable() else ""


class VideoReader:
    """Stream the frames of one video file (see the module docstring for the rules).

    Args:
        path: the video file.
        frame_step: keep every N-th frame (N >= 1).
        max_fps: keep at most this many frames per second of video time (``None`` = all).
        start: skip the frames before this index (they are grabbed, not converted).
        max_frames: stop after delivering this many frames (``None`` = all).
        max_pixels: largest frame (width x height pixels) decoded; ``None`` =
            :data:`facealign_cli.io.images.DEFAULT_MAX_PIXELS`.

    Raises:
        VideoOpenError: the file cannot be opened (raised by the constructor).
        VideoTooLargeError: the declared frame size is over ``max_pixels`` (constructor, no
            frame decoded), or a decoded frame is (iteration).
        ValueError: ``frame_step < 1``, ``max_fps <= 0`` or ``max_pixels < 1``.

    Iterating twice restarts from the beginning (the file is reopened). Use as a context
    manager, or call :meth:`close`, to release the decoder early.
    """

    def __init__(self, path: str | os.PathLike, *, frame_step: int = 1,
                 max_fps: float | None = None, start: int = 0, max_frames: int | None = None,
                 max_pixels: int | None = None):
        from facealign_cli.io.images import DEFAULT_MAX_PIXELS

        if int(frame_step) < 1:
            raise ValueError(f"frame_step must be >= 1, got {frame_step}")
        if max_fps is not None and not max_fps > 0:
            raise ValueError(f"max_fps must be > 0, got {max_fps}")
        self.path = Path(path)
        self.frame_step = int(frame_step)
        self.max_fps = None if max_fps is None else float(max_fps)
        self.start = max(0, int(start))
        self.max_frames = max_frames
        self.max_pixels = DEFAULT_MAX_PIXELS if max_pixels is None else int(max_pixels)
        if self.max_pixels < 1:
            raise ValueError(f"max_pixels must be >= 1, got {max_pixels}")
        self._cap = self._open()
        self.info = self._read_info(self._cap)
        self.status = VideoStatus(frames_declared=self.info.frame_count)
        try:
            self._check_size(self.info.width, self.info.height, "its frames are")
        except VideoTooLargeError:
            self.close()
            raise

    def _check_size(self, width: int, height: int, what: str) -> None:
        if width * height > self.max_pixels:
            raise VideoTooLargeError(
                f"{self.path}: {what} {width} x {height} = {width * height / 1e6:.3g} "
                f"megapixels, over the {self.max_pixels / 1e6:g} megapixel limit "
                "(--max-megapixels); not decoded")

    def _open(self):
        import cv2

        if not self.path.is_file():
            raise VideoOpenError(f"{self.path}: no such file")
        cap = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
        if not cap.isOpened():
            cap.release()
            raise VideoOpenError(f"{self.path}: cannot open as a video (not a video, an "
                                 "unsupported codec, or a truncated/corrupt file whose index is "
                                 "lost); 0 frames delivered")
        return cap

    def _read_info(self, cap) -> VideoInfo:
        import cv2

        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        fps = fps if math.isfinite(fps) and 0 < fps < 10_000 else 0.0
        n = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        n = int(n) if math.isfinite(n) and n > 0 else 0
        try:
            backend = cap.getBackendName()
        except cv2.error:  # pragma: no cover - every opened capture has one
            backend = ""
        return VideoInfo(path=str(self.path), width=int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
                         height=int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), fps=fps,
                         frame_count=n, duration=n / fps if n and fps else 0.0,
                         fourcc=_fourcc(cap.get(cv2.CAP_PROP_FOURCC)), backend=backend)

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Release the decoder (iteration afterwards reopens the file)."""
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def __del__(self):  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass

    def _keep(self, index: int, time: float, last_kept: float | None) -> bool:
        if index < self.start or (index - self.start) % self.frame_step:
            return False
        if self.max_fps is None or last_kept is None:
            return True
        half = 0.5 / self.info.fps if self.info.fps else 0.0
        return time - last_kept >= 1.0 / self.max_fps - half - 1e-9

    def __iter__(self) -> Iterator[VideoFrame]:
        import cv2

        if self._cap is None:
            self._cap = self._open()
        cap = self._cap
        st = self.status = VideoStatus(frames_declared=self.info.frame_count)
        fps = self.info.fps
        last_kept: float | None = None
        last_time = -math.inf
        index = -1
        error = None
        from facealign_cli.io.video_packets import PacketSizeGuard

        guard = PacketSizeGuard(self.path, self.info.fourcc, (self.info.width,
                                self.info.height), self._check_size, VideoTooLargeError)
        failing = 0  # grab() failures in a row: undecodable frames, or the end of the stream
        try:
            while True:
                if self.max_frames is not None and st.frames_delivered >= self.max_frames:
                    return
                guard.ensure(index + failing + 1)  # before the next frame is decoded
                try:
                    ok = cap.grab()
                except cv2.error as exc:  # pragma: no cover - FFmpeg reports by return value
                    ok, error = False, f"decoder error: {exc}"
                if not ok:
                    failing += 1
                    at_end = 0 < self.info.frame_count <= index + failing  # all declared read
                    if error is not None or at_end or failing > MAX_UNDECODABLE_RUN:
                        break
                    continue
                if failing:  # frames the decoder failed on, with a good frame after them
                    st.frames_undecodable += failing
                    index += failing
                    failing = 0
                index += 1
                st.frames_decoded += 1
                st.last_index = index
                t = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
                if not (math.isfinite(t) and t >= last_time and (index == 0 or t > 0)):
                    t = index / fps if fps else float(index)  # no usable stamp
                last_time = t
                if not self._keep(index, t, last_kept):
                    continue
                ok, image = cap.retrieve()
                if not ok or image is None or image.ndim != 3 or image.shape[2] != 3:
                    error = f"frame {index} could not be decoded"
                    break
                self._check_size(image.shape[1], image.shape[0], f"frame {index} is")
                last_kept = t
                st.frames_delivered += 1
                yield VideoFrame(index=index, time=float(t),
                                 image=np.ascontiguousarray(image, dtype=np.uint8))
            st.finished = True
            declared = self.info.frame_count
            reached = st.frames_decoded + st.frames_undecodable
            if error is None and declared and reached + FRAME_COUNT_SLACK < declared:
                error = (f"truncated or corrupt: the stream ended after {reached} of "
                         f"{declared} declared frames")
            if error is not None:
                st.complete = False
                st.error = f"{error}; {st.frames_delivered} frames delivered"
            else:
                st.frames_lost = st.frames_undecodable + max(0, declared - reached)
        finally:
            # the next iteration starts from the beginning again
            guard.close()
            self.close()


def read_video_info(path: str | os.PathLike) -> VideoInfo:
    """The container's :class:`VideoInfo` without decoding any frame.

    Raises:
        VideoOpenError: the file cannot be opened.
    """
    r = VideoReader(path, max_pixels=sys.maxsize)  # nothing is decoded: no size limit
    r.close()
    return r.info


def iter_frames(path: str | os.PathLike, *, frame_step: int = 1, max_fps: float | None = None
                ) -> Iterator[VideoFrame]:
    """Shorthand for ``iter(VideoReader(path, frame_step=..., max_fps=...))`` when the status is
    not needed."""
    yield from VideoReader(path, frame_step=frame_step, max_fps=max_fps)


def count_frames(path: str | os.PathLike) -> int:
    """The number of frames that can be decoded from a video file (each frame is demuxed and
    decoded by FFmpeg, never converted to BGR; one frame in memory at a time).

    Returns:
        The frame count; 0 when the file cannot be opened as a video (e.g. an MP4 cut short
        before its ``moov`` index).
    """
    import cv2

    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    try:
        n = 0
        if cap.isOpened():
            while cap.grab():
                n += 1
        return n
    finally:
        cap.release()
