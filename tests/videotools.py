"""Test seams around OpenCV's video classes (``cv2.VideoWriter``, ``cv2.VideoCapture``) and a
builder of synthetic clips. The facealign code under test is always the real one: these only
stand in for OpenCV, which the code imports as ``cv2`` at call time, so patching the ``cv2``
module's attribute reaches it (in this process only)."""

from __future__ import annotations

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


def cut_written_videos_short(monkeypatch, keep: float = 0.6) -> None:
    """From now on (until ``monkeypatch`` undoes it), every video written in this process
    through ``cv2.VideoWriter`` is cut to ``keep`` of its bytes when released."""
    real = cv2.VideoWriter
    monkeypatch.setattr(cv2, "VideoWriter",
                        lambda *a: ShortWritingVideoWriter(real, keep, *a))


class CountingCapture:
    """``cv2.VideoCapture`` that counts the frames decoded (``grab`` calls) and may declare a
    frame size of its own (``declared``: ``(width, height)``, a lying container)."""

    grabs = 0

    def __init__(self, real_cls, declared, *args):
        self._cap = real_cls(*args)
        self._declared = declared

    def get(self, prop):
        if self._declared is not None and prop == cv2.CAP_PROP_FRAME_WIDTH:
            return float(self._declared[0])
        if self._declared is not None and prop == cv2.CAP_PROP_FRAME_HEIGHT:
            return float(self._declared[1])
        return self._cap.get(prop)

    def grab(self) -> bool:
        CountingCapture.grabs += 1
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
