"""Test seams around OpenCV's video classes (``cv2.VideoWriter``, ``cv2.VideoCapture``) and
PyAV's ``av.open`` (the H.264 writer), probes of written videos, and a builder of synthetic
clips. The facealign code under test is always the real one: these only stand in for OpenCV
and PyAV, which the code imports at call time, so patching the modules' attributes (or hiding
PyAV from ``import``) reaches it (in this process only)."""

from __future__ import annotations

import functools
import struct
import sys
from pathlib import Path

import cv2
import numpy as np


def write_bar_clip(path: Path, n: int, width: int = 64, height: int = 48,
                   fourcc: str = "MJPG", fps: float = 25.0) -> Path:
    """A clip of ``n`` gray frames with a white bar that moves 2 px a frame."""
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
    assert vw.isOpened(), f"no {fourcc} encoder"
    for i in range(n):
        img = np.full((height, width, 3), 70, np.uint8)
        x = (2 * i) % max(1, width - 3)
        img[:, x:x + 3] = 250
        vw.write(img)
    vw.release()
    return path


class ShortWritingVideoWriter:
    """``cv2.VideoWriter`` on a disk that fills up: it encodes with the real writer and, when
    released, leaves only the first ``keep`` fraction of the file's bytes, reporting nothing
    (OpenCV's writer reports no short write). An MP4 cut so loses its ``moov`` index (no frame
    can be read back); an AVI its last frames."""

    def __init__(self, real_cls, keep: float, filename, *args):
        self._vw = real_cls(filename, *args)
        self._path = Path(filename)
        self._keep = keep

    def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
        return self._vw.isOpened()

    def write(self, image) -> None:
        self._vw.write(image)

    def release(self) -> None:
        self._vw.release()
        data = self._path.read_bytes()
        self._path.write_bytes(data[:int(len(data) * self._keep)])


class ShortWritingContainer:
    """A PyAV output container on a disk that fills up: it muxes with the real container and,
    when closed, leaves only the first ``keep`` fraction of the file's bytes, reporting
    nothing (as an encoder that misses a short write would)."""

    def __init__(self, real, keep: float, path):
        self._c, self._path, self._keep = real, Path(path), keep

    def close(self) -> None:
        self._c.close()
        data = self._path.read_bytes()
        self._path.write_bytes(data[:int(len(data) * self._keep)])

    def __getattr__(self, name):
        return getattr(self._c, name)


def cut_written_videos_short(monkeypatch, keep: float = 0.6) -> None:
    """From now on (until ``monkeypatch`` undoes it), every video written in this process
    through ``cv2.VideoWriter`` or PyAV's ``av.open(..., mode="w")`` is cut to ``keep`` of its
    bytes when released / closed."""
    real = cv2.VideoWriter
    monkeypatch.setattr(cv2, "VideoWriter",
                        lambda *a: ShortWritingVideoWriter(real, keep, *a))
    try:
        import av
    except ImportError:
        return
    real_open = av.open

    def open_(file, mode="r", *a, **kw):
        c = real_open(file, mode, *a, **kw)
        return ShortWritingContainer(c, keep, file) if mode == "w" else c

    monkeypatch.setattr(av, "open", open_)


def hide_pyav(monkeypatch) -> None:
    """Make ``import av`` fail (as where PyAV is not installed) and give
    :func:`facealign_cli.io.video_writer.h264_unavailable` a fresh cache, until
    ``monkeypatch`` undoes it: the writer's own detection then finds no H.264 encoder."""
    from facealign_cli.io import video_writer

    monkeypatch.setitem(sys.modules, "av", None)
    monkeypatch.setattr(video_writer, "h264_unavailable",
                        functools.cache(video_writer.h264_unavailable.__wrapped__))


def video_codec(path: Path) -> tuple[str, str]:
    """``(codec name, pixel format)`` of a video file's first video stream, as PyAV (FFmpeg's
    demuxer and decoder) reads it: ``("h264", "yuv420p")``, ``("mpeg4", "yuv420p")``, ..."""
    import av

    with av.open(str(path)) as c:
        cc = c.streams.video[0].codec_context
        return cc.name, cc.pix_fmt


def mp4_boxes(path: Path) -> list[str]:
    """The types of an MP4 file's top-level boxes in file order (``ftyp``, ``moov``, ``mdat``,
    ...), from their 8-byte headers (ISO/IEC 14496-12, 4.2: 32-bit size, type; size 1: a
    64-bit size follows; size 0: to the end of the file)."""
    names, data, i = [], Path(path).read_bytes(), 0
    while i + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[i:i + 8])
        if size == 1:
            size = struct.unpack(">Q", data[i + 8:i + 16])[0]
        elif size == 0:
            size = len(data) - i
        names.append(kind.decode("latin-1"))
        if size < 8:
            break
        i += size
    return names


class CountingCapture:
    """``cv2.VideoCapture`` that counts the frames decoded (``grab`` calls; not those of a
    demuxer-only capture, ``[CAP_PROP_FORMAT, -1]``, which decodes nothing) and may declare a
    frame size of its own (``declared``: ``(width, height)``, a lying container)."""

    grabs = 0

    def __init__(self, real_cls, declared, *args):
        self._cap = real_cls(*args)
        self._declared = declared
        self._raw = len(args) > 2 and list(args[2])[:2] == [cv2.CAP_PROP_FORMAT, -1]

    def get(self, prop):
        if self._declared is not None and prop == cv2.CAP_PROP_FRAME_WIDTH:
            return float(self._declared[0])
        if self._declared is not None and prop == cv2.CAP_PROP_FRAME_HEIGHT:
            return float(self._declared[1])
        return self._cap.get(prop)

    def grab(self) -> bool:
        CountingCapture.grabs += not self._raw
        return self._cap.grab()

    def __getattr__(self, name):
        return getattr(self._cap, name)


def count_decoded_frames(monkeypatch, declared: tuple[int, int] | None = None
                         ) -> type[CountingCapture]:
    """Route ``cv2.VideoCapture`` through :class:`CountingCapture` (its ``grabs`` reset to 0);
    returns the class, whose ``grabs`` counts the frames decoded from then on."""
    real = cv2.VideoCapture
    CountingCapture.grabs = 0
    monkeypatch.setattr(cv2, "VideoCapture", lambda *a: CountingCapture(real, declared, *a))
    return CountingCapture


def _riff_chunk(tag: bytes, data: bytes) -> bytes:
    return tag + struct.pack("<I", len(data)) + data + (b"\0" if len(data) & 1 else b"")


def mjpg_avi_bytes(frames: list[bytes], width: int, height: int, fps: int = 25) -> bytes:
    """An AVI (RIFF, one Motion JPEG stream with an ``idx1`` index) of the JPEG images
    ``frames`` as they are, declaring ``width`` x ``height`` in its headers whatever the
    frames' own size (a hostile muxer's)."""
    n = len(frames)
    avih = struct.pack("<14I", 1_000_000 // fps, 0, 0, 0x10, n, 0, 1, 0, width, height,
                       0, 0, 0, 0)
    strh = struct.pack("<4s4sIHHIIIIIIII4H", b"vids", b"MJPG", 0, 0, 0, 0, 1, fps, 0, n, 0,
                       0xFFFFFFFF, 0, 0, 0, width, height)
    strf = struct.pack("<IiiHH4sIiiII", 40, width, height, 1, 24, b"MJPG",
                       width * height * 3, 0, 0, 0, 0)
    strl = _riff_chunk(b"LIST", b"strl" + _riff_chunk(b"strh", strh)
                       + _riff_chunk(b"strf", strf))
    hdrl = _riff_chunk(b"LIST", b"hdrl" + _riff_chunk(b"avih", avih) + strl)
    movi, idx, off = b"", b"", 4
    for f in frames:
        c = _riff_chunk(b"00dc", f)
        idx += struct.pack("<4sIII", b"00dc", 0x10, off, len(f))
        off += len(c)
        movi += c
    body = b"AVI " + hdrl + _riff_chunk(b"LIST", b"movi" + movi) + _riff_chunk(b"idx1", idx)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def flat_gray_jpeg(width: int, height: int) -> bytes:
    """A valid baseline gray JPEG of ``width`` x ``height`` mid-gray pixels, about 5 bits per
    8 x 8 block (16000 x 16000 in 2.5 MB), written without holding the image."""
    seg = lambda m, d: b"\xff" + bytes([m]) + struct.pack(">H", len(d) + 2) + d  # noqa: E731
    dc_counts = [0] * 16
    dc_counts[3] = 12  # twelve 4-bit codes: symbol s <-> code s
    ac_counts = [0] * 16
    ac_counts[0] = 1  # EOB <-> "0"
    blocks = -(-width // 8) * -(-height // 8)
    return (b"\xff\xd8" + seg(0xDB, b"\x00" + bytes([1] * 64))
            + seg(0xC0, struct.pack(">BHHB", 8, height, width, 1) + bytes([1, 0x11, 0]))
            + seg(0xC4, b"\x00" + bytes(dc_counts) + bytes(range(12)))
            + seg(0xC4, b"\x10" + bytes(ac_counts) + b"\x00")
            + seg(0xDA, bytes([1, 1, 0x00]) + b"\x00\x3f\x00")
            + bytes(-(-blocks * 5 // 8)) + b"\xff\xd9")  # every block: DC diff 0, EOB


def _frame_starts(data: bytes) -> list[int]:
    """Offsets of the JPEG start-of-image markers of an MJPG AVI's frames, in stream order."""
    starts, i = [], data.find(b"\xff\xd8\xff")
    while i >= 0:
        starts.append(i)
        i = data.find(b"\xff\xd8\xff", i + 3)
    return starts


def corrupt_mjpg_frame(path: Path, k: int) -> Path:
    """Overwrite the first 200 bytes of frame ``k`` of an MJPG AVI (its JPEG header) with
    zeros, in place: FFmpeg cannot decode that frame and decodes the others."""
    data = bytearray(path.read_bytes())
    start = _frame_starts(bytes(data))[k]
    data[start:start + 200] = bytes(200)
    path.write_bytes(bytes(data))
    return path


def drop_mjpg_chunk(path: Path, k: int) -> Path:
    """Rename the chunk of frame ``k`` of an MJPG AVI (``00dc`` -> ``JUNK``), in place: the
    demuxer skips it, so the stream holds one frame fewer than the container declares."""
    data = bytearray(path.read_bytes())
    start = _frame_starts(bytes(data))[k]
    assert data[start - 8:start - 4] == b"00dc", bytes(data[start - 8:start])
    data[start - 8:start - 4] = b"JUNK"
    path.write_bytes(bytes(data))
    return path


def shot_frames(colour, n: int, seed: int, size=(240, 320)) -> list[np.ndarray]:
    """``n`` frames of one shot: textured noise around one BGR colour, a little different in
    every frame (sensor noise)."""
    rng = np.random.default_rng(seed)
    base = np.clip(rng.normal(colour, 25, (*size, 3)), 0, 255)
    return [np.clip(base + rng.normal(0, 4, base.shape), 0, 250).astype(np.uint8)
            for _ in range(n)]
