"""Writing videos (``render`` on a video): frames encoded one at a time into an MP4 that web
browsers play, never the whole video in memory.

Usage::

    with VideoWriter("annotated.mp4", processed_fps(info.fps, 2, None)) as out:
        out.write(picture)           # (H, W, 3) uint8 BGR, one frame
    out.codec                        # "h264", or "mp4v" where no H.264 encoder is installed

* **H.264** (:data:`H264`): libx264 through PyAV (the ``av`` package, whose wheels bundle
  FFmpeg with libx264; ``pip install av`` or the ``[video]`` extra), ``yuv420p`` (4:2:0, BT.601
  matrix, limited range, tagged so), High profile, ``crf`` :data:`H264_CRF`, preset
  :data:`H264_PRESET`, the ``moov`` index at the front of the file (``faststart``: a browser
  starts playing before the whole file is loaded): the MP4 web browsers play (checked in
  headless Chromium by ``scripts/check_sheet_browser.py``).
* **Fallback** (:data:`FALLBACK_FOURCC`): MPEG-4 Part 2 through OpenCV's ``cv2.VideoWriter``
  (the encoder the ``opencv-python-headless`` wheels carry; they have no H.264 encoder), used
  only where PyAV or its libx264 is missing (:func:`h264_unavailable` says why), with a
  ``RuntimeWarning`` that says so and what to install. OpenCV and FFmpeg read it; web
  browsers do not play it.
* **Read back before it counts**: :meth:`VideoWriter.close` decodes the finished file
  (:func:`facealign_cli.io.video.count_frames`) and raises :class:`VideoWriteError` unless it
  holds every frame written (a full disk that an encoder did not report). Writing under a
  temporary name and renaming is the caller's (the batch runner's spool files).
* **Memory**: one frame in the caller's hands; libx264 holds at most its look-ahead
  (``rc-lookahead`` 10 frames at the ``veryfast`` preset) and one frame per encoder thread
  (the process's OpenCV thread cap, ``cv2.getNumThreads()``), whatever the video's length.

Frames: image pixels, x right, y down (as read); nothing is rotated.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np

#: The codec of the videos written where the encoder is installed: H.264 (libx264) in MP4.
H264 = "h264"
#: The OpenCV four-character code written where it is not: MPEG-4 Part 2 in MP4.
FALLBACK_FOURCC = "mp4v"
#: The container of the videos ``render`` writes.
WRITE_SUFFIX = ".mp4"
#: Frame rate written when the source's is unknown (frames per second).
DEFAULT_WRITE_FPS = 25.0
#: libx264's constant rate factor (0-51, lower = better; 23 is libx264's default): thin
#: coloured overlay lines stay sharp.
H264_CRF = 20
#: libx264's speed preset: fast, with a 10-frame look-ahead (bounded memory).
H264_PRESET = "veryfast"
#: What to install for H.264 (said by the fallback's warning and :func:`h264_unavailable`).
H264_INSTALL = "pip install av (or the [video] extra: pip install 'facealign-cli[video]')"


class VideoWriteError(OSError):
    """A video cannot be encoded (no encoder, an unusable size, or nothing was written)."""


@functools.cache
def h264_unavailable() -> str | None:
    """Why H.264 cannot be written in this process, or ``None`` when it can (PyAV imports and
    its FFmpeg has the ``libx264`` encoder). Cached: decided once per process."""
    try:
        import av
    except ImportError:
        return "PyAV (the av package) is not installed"
    try:
        av.codec.Codec("libx264", "w")
    except Exception:  # av.codec.codec.UnknownCodecError and friends
        return f"the FFmpeg of PyAV {getattr(av, '__version__', '?')} has no libx264 encoder"
    return None


def default_codec() -> str:
    """The codec :class:`VideoWriter` picks by default: :data:`H264` where
    :func:`h264_unavailable` is ``None``, else :data:`FALLBACK_FOURCC`."""
    return FALLBACK_FOURCC if h264_unavailable() else H264


def processed_fps(fps: float, frame_step: int = 1, max_fps: float | None = None) -> float:
    """The frame rate of the frames :class:`~facealign_cli.io.video.VideoReader` delivers
    from a constant-rate source, with its subsampling rule: every ``frame_step``-th frame, then
    a frame only when at least ``1 / max_fps`` seconds minus half a source frame have passed
    since the last kept one.

    Args:
        fps: the source's frame rate (frames per second; 0 or less = unknown).
        frame_step: ``--frame-step`` (>= 1).
        max_fps: ``--max-fps`` (> 0), or ``None``.

    Returns:
        Frames per second of the delivered frames: ``fps / g``, ``g`` the gap in source frames
        between two kept frames (a multiple of ``frame_step``); for an unknown source rate,
        :data:`DEFAULT_WRITE_FPS` divided by ``frame_step`` (at most ``max_fps``).
    """
    step = max(1, int(frame_step))
    if not (math.isfinite(fps) and fps > 0):
        rate = DEFAULT_WRITE_FPS / step
        return min(rate, float(max_fps)) if max_fps else rate
    gap = step
    if max_fps:
        need = fps / float(max_fps) - 0.5 - 1e-9 * fps  # VideoReader._keep in source frames
        gap = step * max(1, math.ceil(need / step))
    return fps / gap


@contextlib.contextmanager
def _encoder_errors(writer: VideoWriter, what: str):
    """Turn an encoder's errors (PyAV's ``av.FFmpegError``: a full disk, a size libx264
    refuses) into :class:`VideoWriteError` naming the file and the step."""
    try:
        yield
    except VideoWriteError:
        raise
    except Exception as exc:
        raise VideoWriteError(f"{writer.path}: the {writer.codec} encoder failed to {what}: "
                              f"{type(exc).__name__}: {exc}") from exc


class _H264Encoder:
    """libx264 through PyAV into an MP4 (see the module docstring for the settings)."""

    def __init__(self, path: Path, fps: float, width: int, height: int):
        import av
        import cv2

        rate = Fraction(fps).limit_denominator(1001)
        self._av = av
        self._container = av.open(str(path), mode="w", format="mp4",
                                  container_options={"movflags": "+faststart"})
        try:
            s = self._container.add_stream("libx264", rate=rate)
            s.width, s.height, s.pix_fmt = width, height, "yuv420p"
            cc = s.codec_context
            cc.thread_count = max(1, cv2.getNumThreads())
            # what the BGR -> yuv420p conversion below does: BT.601 matrix, limited range
            # (AVColorSpace 6 = SMPTE 170M, AVColorRange 1 = MPEG); sRGB-like primaries and
            # transfer (1 = BT.709)
            cc.colorspace, cc.color_range, cc.color_primaries, cc.color_trc = 6, 1, 1, 1
            s.options = {"crf": str(H264_CRF), "preset": H264_PRESET}
            self._stream, self._tb, self._n = s, 1 / rate, 0
            # open the encoder and the file now (else at the first packet): errors here
            self._container.start_encoding()
        except Exception:
            self._container.close()
            raise

    def write(self, img: np.ndarray) -> None:
        frame = self._av.VideoFrame.from_ndarray(img, format="bgr24").reformat(
            format="yuv420p", dst_colorspace="ITU601")
        frame.pts, frame.time_base = self._n, self._tb
        self._n += 1
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def close(self) -> None:
        try:
            for packet in self._stream.encode():  # flush the look-ahead
                self._container.mux(packet)
        finally:
            self._container.close()


class _OpenCVEncoder:
    """``cv2.VideoWriter`` (FFmpeg backend) with a four-character code (the fallback)."""

    def __init__(self, path: Path, fps: float, width: int, height: int, fourcc: str):
        import cv2

        self._vw = cv2.VideoWriter(str(path), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*fourcc),
                                   fps, (width, height))
        if not self._vw.isOpened():
            self._vw.release()
            raise VideoWriteError(f"{path}: cannot open a {fourcc!r} video encoder for "
                                  f"{width} x {height} at {fps:g} fps")

    def write(self, img: np.ndarray) -> None:
        self._vw.write(img)

    def close(self) -> None:
        self._vw.release()


class VideoWriter:
    """Encode frames one at a time into a video file; nothing but the current frame (and the
    encoder's bounded look-ahead) is held in memory.

    Args:
        path: the file to write (``.mp4``). Write it under a temporary name and rename it when
            done if readers must never see a partial file (the batch runner does).
        fps: frames per second written into the container (> 0).
        codec: :data:`H264` (PyAV's libx264; :class:`VideoWriteError` where
            :func:`h264_unavailable`), an OpenCV four-character code (``"mp4v"``, ``"MJPG"``
            for an ``.avi``; the container follows the extension), or ``None``:
            :func:`default_codec`, with a ``RuntimeWarning`` when that is the fallback.

    Attributes:
        codec: the codec written (:data:`H264` or the four-character code).
        fallback: why H.264 was not written when ``codec`` was ``None`` and it could not be
            (:func:`h264_unavailable`), else ``None``.

    The encoder opens on the first frame, whose size fixes the video's: width and height
    rounded down to even numbers (4:2:0 needs even sizes; the last column / row of an odd
    size is dropped). A later frame of another size is resized to it.

    Raises:
        ValueError: ``fps <= 0`` (constructor).
        VideoWriteError: (constructor) ``codec="h264"`` where it cannot be written; (:meth:`write`)
            the encoder cannot be opened, fails, or the frame is smaller than 2 x 2 pixels;
            (:meth:`close`) the encoder fails, or frames were written but the file is empty,
            missing, or holds fewer (or more) decodable frames than were written.
    """

    def __init__(self, path: str | os.PathLike, fps: float, *, codec: str | None = None):
        if not (math.isfinite(fps) and fps > 0):
            raise ValueError(f"fps must be > 0, got {fps}")
        self.path = Path(path)
        self.fps = float(fps)
        self.fallback: str | None = None
        if codec is None:
            codec = default_codec()
            self.fallback = h264_unavailable()
            if self.fallback:
                warnings.warn(f"{self.fallback}: videos are written as MPEG-4 Part 2 "
                              f"({FALLBACK_FOURCC!r}), which web browsers do not play; for "
                              f"H.264: {H264_INSTALL}", RuntimeWarning, stacklevel=2)
        elif codec == H264 and h264_unavailable():
            raise VideoWriteError(f"{self.path}: cannot write H.264: {h264_unavailable()} "
                                  f"({H264_INSTALL})")
        self.codec = codec
        self.frames = 0
        #: ``(width, height)`` of the written frames, once the first frame is in.
        self.size: tuple[int, int] | None = None
        self._enc: _H264Encoder | _OpenCVEncoder | None = None

    def _open(self, width: int, height: int) -> None:
        w, h = width // 2 * 2, height // 2 * 2
        if w < 2 or h < 2:
            raise VideoWriteError(f"{self.path}: a {width} x {height} frame is too small to "
                                  "encode (at least 2 x 2 pixels)")
        if self.codec != H264:
            self._enc = _OpenCVEncoder(self.path, self.fps, w, h, self.codec)
        else:
            with _encoder_errors(self, "open"):
                self._enc = _H264Encoder(self.path, self.fps, w, h)
        self.size = (w, h)

    def write(self, image_bgr: np.ndarray) -> None:
        """Append one frame: (H, W, 3) uint8 BGR."""
        img = np.asarray(image_bgr)
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ValueError(f"frame must be (H, W, 3) uint8 BGR, got {img.dtype} {img.shape}")
        if self._enc is None:
            if self.size is not None:
                raise VideoWriteError(f"{self.path}: the writer is closed")
            self._open(img.shape[1], img.shape[0])
        w, h = self.size
        if img.shape[1] // 2 * 2 == w and img.shape[0] // 2 * 2 == h:
            img = img[:h, :w]
        else:
            import cv2

            img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
        with _encoder_errors(self, "encode a frame"):
            self._enc.write(np.ascontiguousarray(img))
        self.frames += 1

    def close(self) -> None:
        """Finish the file (flush the encoder, write the container's index), then read it back
        (:func:`facealign_cli.io.video.count_frames`): an encoder may report no short write (a
        full disk; OpenCV's never does), so a file that does not hold every frame written
        raises :class:`VideoWriteError`."""
        from facealign_cli.io.video import count_frames

        if self._enc is None:
            return
        enc, self._enc = self._enc, None
        with _encoder_errors(self, "finish the file"):
            enc.close()
        if self.frames and not (self.path.is_file() and self.path.stat().st_size > 0):
            raise VideoWriteError(f"{self.path}: the encoder wrote nothing")
        found = count_frames(self.path) if self.frames else 0
        if found != self.frames:
            raise VideoWriteError(
                f"{self.path}: {self.frames} frames were written but {found} can be read back "
                "(a short write: is the disk, or the temporary folder $TMPDIR, full?)")

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
