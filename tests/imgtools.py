"""Builders of test image files with features OpenCV cannot write (EXIF, gray+alpha PNG, CMYK
JPEG, lying headers). Everything is written from scratch here; no external files."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np


def exif_app1(orientation: int) -> bytes:
    """A JPEG APP1 segment holding a little-endian EXIF block with only the Orientation tag."""
    ifd = struct.pack("<H", 1) + struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0) \
        + struct.pack("<I", 0)
    data = b"Exif\x00\x00" + b"II*\x00" + struct.pack("<I", 8) + ifd
    return b"\xff\xe1" + struct.pack(">H", len(data) + 2) + data


def jpeg_with_orientation(img_bgr: np.ndarray, orientation: int, quality: int = 95) -> bytes:
    """JPEG bytes of ``img_bgr`` (stored as is) with an EXIF orientation tag inserted."""
    ok, buf = cv2.imencode(".jpg", img_bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    b = buf.tobytes()
    return b[:2] + exif_app1(orientation) + b[2:]


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def png_bytes(arr: np.ndarray, color_type: int, bit_depth: int = 8, *,
              header_size: tuple[int, int] | None = None) -> bytes:
    """A PNG of ``arr`` (rows of samples in PNG channel order, big-endian for 16 bit).

    color_type: 0 gray, 2 RGB, 4 gray+alpha, 6 RGBA. ``header_size`` (w, h) makes the IHDR lie.
    """
    h, w = arr.shape[:2]
    a = arr.astype(">u2") if bit_depth == 16 else arr.astype(np.uint8)
    raw = b"".join(b"\x00" + a[y].tobytes() for y in range(h))
    hw = header_size or (w, h)
    ihdr = struct.pack(">IIBBBBB", hw[0], hw[1], bit_depth, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
            + _png_chunk(b"IDAT", zlib.compress(raw)) + _png_chunk(b"IEND", b""))


class _Bits:
    def __init__(self):
        self.out = bytearray()
        self.acc = 0
        self.n = 0

    def put(self, value: int, nbits: int):
        for i in range(nbits - 1, -1, -1):
            self.acc = (self.acc << 1) | ((value >> i) & 1)
            self.n += 1
            if self.n == 8:
                self.out.append(self.acc)
                if self.acc == 0xFF:
                    self.out.append(0)
                self.acc = self.n = 0

    def flush(self) -> bytes:
        if self.n:
            self.put((1 << (8 - self.n)) - 1, 8 - self.n)
        return bytes(self.out)


def cmyk_jpeg_flat(stored_cmyk: tuple[int, int, int, int], size: int = 16) -> bytes:
    """A baseline 4-component (Adobe CMYK, transform 0) JPEG of one flat colour.

    ``stored_cmyk`` are the stored sample values (Adobe convention: 255 - ink). Minimal
    encoder: unit quantisation, DC-only blocks, tiny Huffman tables.
    """
    assert size % 8 == 0
    seg = lambda m, d: b"\xff" + bytes([m]) + struct.pack(">H", len(d) + 2) + d  # noqa: E731
    adobe = seg(0xEE, b"Adobe" + struct.pack(">HHHB", 100, 0, 0, 0))
    dqt = seg(0xDB, b"\x00" + bytes([1] * 64))
    sof = seg(0xC0, struct.pack(">BHHB", 8, size, size, 4)
              + b"".join(bytes([i + 1, 0x11, 0]) for i in range(4)))
    dc_counts = [0] * 16
    dc_counts[3] = 12  # twelve 4-bit codes: symbol s <-> code s
    dht_dc = seg(0xC4, b"\x00" + bytes(dc_counts) + bytes(range(12)))
    ac_counts = [0] * 16
    ac_counts[0] = 1  # EOB <-> "0"
    dht_ac = seg(0xC4, b"\x10" + bytes(ac_counts) + b"\x00")
    sos = seg(0xDA, bytes([4]) + b"".join(bytes([i + 1, 0x00]) for i in range(4)) + b"\x00\x3f\x00")
    bits = _Bits()
    pred = [0, 0, 0, 0]
    for _ in range((size // 8) ** 2):
        for c in range(4):
            dc = 8 * (stored_cmyk[c] - 128)
            d = dc - pred[c]
            pred[c] = dc
            s = abs(d).bit_length()
            bits.put(s, 4)
            if s:
                bits.put(d if d > 0 else d + (1 << s) - 1, s)
            bits.put(0, 1)  # EOB
    return b"\xff\xd8" + adobe + dqt + sof + dht_dc + dht_ac + sos + bits.flush() + b"\xff\xd9"
