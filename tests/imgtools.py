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


def jpeg_claiming_size(width: int, height: int, stored: int = 64) -> bytes:
    """A small JPEG (``stored`` x ``stored`` noise) whose frame header claims ``width`` x
    ``height``: decoding it as announced would allocate ``3 * width * height`` bytes."""
    img = np.random.default_rng(1).integers(0, 255, (stored, stored, 3), dtype=np.uint8)
    b = bytearray(cv2.imencode(".jpg", img)[1].tobytes())
    i = b.find(b"\xff\xc0")  # SOF0: marker, length (2), precision (1), height (2), width (2)
    b[i + 5 : i + 9] = struct.pack(">HH", height, width)
    return bytes(b)


def odd_image_corpus(folder, photo_bgr: np.ndarray) -> dict[str, str | None]:
    """Write one file per odd case an image archive holds into ``folder``.

    Args:
        folder: a ``pathlib.Path`` (created).
        photo_bgr: (H, W, 3) uint8 BGR photo the readable variants are made from.

    Returns:
        file name -> expected error class name of a *failed* image, or None for an image that
        must be processed (``huge_header.jpg``: either, see below).

    Readable: plain JPEG, grayscale PNG, RGBA PNG (transparent strip), gray+alpha PNG,
    16-bit PNG, CMYK JPEG, EXIF-rotated JPEG, 1x1 PNG, a non-ASCII file name, a photo without
    a face. Unusable: truncated JPEG and PNG, corrupt JPEG (impossible Huffman table), corrupt
    PNG data, zero bytes, text named ``.jpg``, a PNG header claiming 20000 x 20000 pixels.
    ``huge_header.jpg`` claims 20000 x 20000 too: it is refused or decoded reduced (JPEG's
    1/2..1/8 scaling), never at the claimed size.
    """
    folder.mkdir(parents=True, exist_ok=True)
    h, w = photo_bgr.shape[:2]
    q = [cv2.IMWRITE_JPEG_QUALITY, 92]
    jpg = cv2.imencode(".jpg", photo_bgr, q)[1].tobytes()
    png = cv2.imencode(".png", photo_bgr)[1].tobytes()
    expected: dict[str, str | None] = {}

    def put(name: str, data: bytes, error: str | None) -> None:
        (folder / name).write_bytes(data)
        expected[name] = error

    put("good.jpg", jpg, None)
    put("gray.png", cv2.imencode(".png", cv2.cvtColor(photo_bgr, cv2.COLOR_BGR2GRAY))[1]
        .tobytes(), None)
    rgba = np.dstack([photo_bgr[:, :, ::-1], np.full((h, w), 255, np.uint8)])
    rgba[: h // 20, :, 3] = 0
    put("rgba.png", png_bytes(rgba, color_type=6), None)
    la = np.dstack([cv2.cvtColor(photo_bgr, cv2.COLOR_BGR2GRAY), np.full((h, w), 255, np.uint8)])
    put("gray_alpha.png", png_bytes(la, color_type=4), None)
    put("deep16.png", cv2.imencode(".png", photo_bgr.astype(np.uint16) * 257)[1].tobytes(), None)
    put("cmyk.jpg", cmyk_jpeg_flat((200, 150, 100, 230), size=64), None)
    stored = cv2.rotate(photo_bgr, cv2.ROTATE_90_COUNTERCLOCKWISE)
    put("exif_rotated.jpg", jpeg_with_orientation(stored, 6), None)
    put("dot.png", cv2.imencode(".png", np.full((1, 1, 3), 128, np.uint8))[1].tobytes(), None)
    put("фото лица.jpg", jpg, None)
    noise = np.random.default_rng(0).integers(100, 140, (120, 160, 3), dtype=np.uint8)
    put("no_face.png", cv2.imencode(".png", noise)[1].tobytes(), None)
    put("huge_header.jpg", jpeg_claiming_size(20000, 20000), None)

    put("truncated.jpg", jpg[: len(jpg) // 2], "TruncatedImageError")
    put("truncated.png", png[: len(png) // 2], "TruncatedImageError")
    bad = bytearray(jpg)
    i = bad.find(b"\xff\xc4")  # first DHT segment: impossible code-length counts
    bad[i + 5 : i + 21] = b"\xff" * 16
    put("corrupt.jpg", bytes(bad), "CorruptImageError")
    tiny = np.full((8, 8, 3), 90, np.uint8)
    raw = png_bytes(tiny, color_type=2)
    j = raw.find(b"IDAT") + 4
    put("corrupt.png", raw[:j] + b"\x00garbage!" + raw[j + 9 :], "CorruptImageError")
    put("zero.jpg", b"", "EmptyImageError")
    put("notes.jpg", b"shopping list: eggs, milk\n", "NotAnImageError")
    put("huge_header.png", png_bytes(np.zeros((2, 2, 3), np.uint8), 2,
                                     header_size=(20000, 20000)), "ImageTooLargeError")
    return expected


# ------------------------------------------------------------------ orientation and bombs


def orient_inverse(upright: np.ndarray, orientation: int) -> np.ndarray:
    """The array a file must store so that a viewer applying EXIF ``orientation`` shows
    ``upright`` (inverse of the TIFF/EXIF orientation transform)."""
    if orientation == 1:
        return upright.copy()
    if orientation == 2:
        return upright[:, ::-1].copy()
    if orientation == 3:
        return upright[::-1, ::-1].copy()
    if orientation == 4:
        return upright[::-1].copy()
    if orientation == 5:  # transpose (its own inverse)
        return np.ascontiguousarray(np.swapaxes(upright, 0, 1))
    if orientation == 6:  # a viewer turns it 90° clockwise: store it turned counter-clockwise
        return np.ascontiguousarray(np.rot90(upright, 1))
    if orientation == 7:  # transverse (its own inverse)
        return np.ascontiguousarray(np.swapaxes(upright, 0, 1)[::-1, ::-1])
    if orientation == 8:  # a viewer turns it 90° counter-clockwise: store it turned clockwise
        return np.ascontiguousarray(np.rot90(upright, -1))
    raise ValueError(f"orientation {orientation} not in 1..8")


def exif_tiff(orientation: int, big_endian: bool = False) -> bytes:
    """A TIFF structure (EXIF block without the ``Exif\\0\\0`` prefix) holding only the
    Orientation tag."""
    e = ">" if big_endian else "<"
    ifd = struct.pack(e + "H", 1) + struct.pack(e + "HHIHH", 0x0112, 3, 1, orientation, 0) \
        + struct.pack(e + "I", 0)
    return (b"MM\x00*" if big_endian else b"II*\x00") + struct.pack(e + "I", 8) + ifd


def png_with_orientation(img_bgr: np.ndarray, orientation: int) -> bytes:
    """PNG bytes of ``img_bgr`` (stored as is) with an ``eXIf`` chunk after IHDR."""
    b = cv2.imencode(".png", img_bgr)[1].tobytes()
    end_ihdr = 8 + 8 + 13 + 4
    return b[:end_ihdr] + _png_chunk(b"eXIf", exif_tiff(orientation, True)) + b[end_ihdr:]


def webp_with_orientation(img_bgr: np.ndarray, orientation: int, quality: int = 101) -> bytes:
    """WebP bytes of ``img_bgr`` (stored as is; lossless by default) in the extended format:
    a ``VP8X`` chunk with the EXIF flag, the image chunk, then an ``EXIF`` chunk."""
    b = cv2.imencode(".webp", img_bgr, [cv2.IMWRITE_WEBP_QUALITY, quality])[1].tobytes()
    assert b[12:16] in (b"VP8 ", b"VP8L"), "expected a simple-format WebP"
    h, w = img_bgr.shape[:2]
    vp8x = b"VP8X" + struct.pack("<I", 10) + bytes([0x08, 0, 0, 0]) \
        + (w - 1).to_bytes(3, "little") + (h - 1).to_bytes(3, "little")
    exif = exif_tiff(orientation)
    exif_chunk = b"EXIF" + struct.pack("<I", len(exif)) + exif + b"\x00" * (len(exif) & 1)
    body = b"WEBP" + vp8x + b[12:] + exif_chunk
    return b"RIFF" + struct.pack("<I", len(body)) + body


def tiff_bytes(arr: np.ndarray, *, orientation: int | None = None, big_endian: bool = False,
               pages: int = 1) -> bytes:
    """An uncompressed single-strip TIFF of ``arr`` ((H, W) gray or (H, W, 3) RGB; uint8,
    uint16 or float32 samples), optionally with an Orientation tag; ``pages`` > 1 repeats the
    image as further pages."""
    e = ">" if big_endian else "<"
    h, w = arr.shape[:2]
    spp = 1 if arr.ndim == 2 else arr.shape[2]
    dt = arr.dtype
    bits = dt.itemsize * 8
    fmt = 3 if dt.kind == "f" else 1
    data = arr.astype(dt.newbyteorder(e)).tobytes()
    out = bytearray((b"MM\x00*" if big_endian else b"II*\x00") + struct.pack(e + "I", 0))
    prev_link = 4  # where the offset of the next IFD goes
    for _ in range(pages):
        while len(out) % 2:
            out += b"\x00"
        data_off = len(out)
        out += data
        bps_off = 0
        if spp > 1:
            while len(out) % 2:
                out += b"\x00"
            bps_off = len(out)
            out += struct.pack(e + "H" * spp, *([bits] * spp))
        tags = [(256, 4, 1, w), (257, 4, 1, h),
                (258, 3, spp, bits if spp == 1 else bps_off), (259, 3, 1, 1),
                (262, 3, 1, 2 if spp >= 3 else 1), (273, 4, 1, data_off),
                (277, 3, 1, spp), (278, 4, 1, h), (279, 4, 1, len(data)), (284, 3, 1, 1),
                (339, 3, 1, fmt)]
        if orientation is not None:
            tags.append((274, 3, 1, orientation))
        tags.sort()
        while len(out) % 2:
            out += b"\x00"
        ifd_off = len(out)
        struct.pack_into(e + "I", out, prev_link, ifd_off)
        out += struct.pack(e + "H", len(tags))
        for tag, typ, count, value in tags:
            if typ == 3 and count == 1:
                out += struct.pack(e + "HHIHH", tag, typ, count, value, 0)
            else:
                out += struct.pack(e + "HHII", tag, typ, count, value)
        prev_link = len(out)
        out += struct.pack(e + "I", 0)
    return bytes(out)


def tiff_with_orientation(img_bgr: np.ndarray, orientation: int) -> bytes:
    """An 8-bit RGB TIFF of ``img_bgr`` (stored as is) with Orientation tag ``orientation``."""
    return tiff_bytes(np.ascontiguousarray(img_bgr[:, :, ::-1]), orientation=orientation)


#: Builders of a file in each orientation-carrying format: (bgr, orientation) -> bytes.
ORIENTED_WRITERS = {"jpeg": jpeg_with_orientation, "png": png_with_orientation,
                    "webp": webp_with_orientation, "tiff": tiff_with_orientation}


def progressive_jpeg_claiming_size(width: int, height: int, stored: int = 64) -> bytes:
    """A ~9 KB progressive 4:4:4 JPEG (``stored`` x ``stored`` noise) whose SOF2 header claims
    ``width`` x ``height``: libjpeg keeps a whole-image coefficient buffer for progressive
    files (6 bytes a pixel at 4:4:4), whatever the reduced size it is asked to decode at."""
    img = np.random.default_rng(1).integers(0, 255, (stored, stored, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1,
                                         cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
                                         cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444])
    assert ok
    b = bytearray(buf.tobytes())
    i = b.find(b"\xff\xc2")  # SOF2: marker, length (2), precision (1), height (2), width (2)
    assert i > 0
    b[i + 5 : i + 9] = struct.pack(">HH", height, width)
    return bytes(b)


def apng_bytes(frames_bgr: list[np.ndarray]) -> bytes:
    """An animated PNG (APNG) of equally sized 8-bit BGR frames; the first is also the default
    image (what a plain PNG decoder shows)."""
    h, w = frames_bgr[0].shape[:2]

    def idat(img):
        rgb = np.ascontiguousarray(img[:, :, ::-1])
        return zlib.compress(b"".join(b"\x00" + rgb[y].tobytes() for y in range(h)))

    def fctl(seq):
        return _png_chunk(b"fcTL", struct.pack(">IIIIIHHBB", seq, w, h, 0, 0, 1, 10, 0, 0))

    out = [b"\x89PNG\r\n\x1a\n",
           _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)),
           _png_chunk(b"acTL", struct.pack(">II", len(frames_bgr), 0)),
           fctl(0), _png_chunk(b"IDAT", idat(frames_bgr[0]))]
    seq = 1
    for img in frames_bgr[1:]:
        out.append(fctl(seq))
        out.append(_png_chunk(b"fdAT", struct.pack(">I", seq + 1) + idat(img)))
        seq += 2
    out.append(_png_chunk(b"IEND", b""))
    return b"".join(out)


def animated_webp_bytes(frames_bgr: list[np.ndarray]) -> bytes:
    """An animated WebP (VP8X + ANIM + one ANMF chunk per lossless frame)."""
    h, w = frames_bgr[0].shape[:2]
    u24 = lambda v: int(v).to_bytes(3, "little")  # noqa: E731
    chunks = [b"VP8X" + struct.pack("<I", 10) + bytes([0x02, 0, 0, 0]) + u24(w - 1)
              + u24(h - 1),
              b"ANIM" + struct.pack("<I", 6) + b"\xff\xff\xff\xff" + struct.pack("<H", 0)]
    for img in frames_bgr:
        b = cv2.imencode(".webp", img, [cv2.IMWRITE_WEBP_QUALITY, 101])[1].tobytes()
        frame = b[12:]  # the VP8L chunk (header, data, padding)
        body = u24(0) + u24(0) + u24(w - 1) + u24(h - 1) + u24(100) + b"\x00" + frame
        chunks.append(b"ANMF" + struct.pack("<I", len(body)) + body + b"\x00" * (len(body) & 1))
    riff = b"WEBP" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(riff)) + riff


def deflate_zeros(n: int) -> bytes:
    """``n`` zero bytes, zlib-compressed (a Deflate TIFF strip or tile of black pixels) without
    holding them all: a 256 MB image compresses to about 250 KB."""
    co, block = zlib.compressobj(9), bytes(min(n, 1 << 24))
    parts = [co.compress(block[:min(len(block), n - i)]) for i in range(0, n, len(block))]
    return b"".join(parts) + co.flush()


def tiff_from_entries(entries: list[tuple[int, int, int, int | str]], data: bytes) -> bytes:
    """A little-endian TIFF whose IFD0 holds ``entries`` -- ``(tag, type, count, value)`` --
    exactly in the order given (duplicates, unsorted tags, any type: a hostile writer's);
    ``value`` ``"DATA"`` is the offset of ``data``, written after the IFD. A count-1 SHORT or
    SSHORT value is packed in 2 bytes, any other value in 4."""
    data_off = 8 + 2 + 12 * len(entries) + 4
    out = bytearray(b"II*\x00" + struct.pack("<IH", 8, len(entries)))
    for tag, typ, count, value in entries:
        v = data_off if value == "DATA" else value
        if typ in (3, 8) and count == 1:
            out += struct.pack("<HHIhH" if typ == 8 else "<HHIHH", tag, typ, count, v, 0)
        else:
            out += struct.pack("<HHIi" if typ == 9 else "<HHII", tag, typ, count, v)
    return bytes(out + struct.pack("<I", 0) + data)


def gray_deflate_tiff(width: int, height: int, first: list | None = None,
                      pixels: int | None = None) -> bytes:
    """A black 8-bit gray ``width`` x ``height`` TIFF in one Deflate strip (small at any size)
    of ``pixels`` pixels (default ``width * height``); ``first`` entries go before its own
    (libtiff reads a tag's first entry: a decoy size there is what it decodes)."""
    data = deflate_zeros(pixels or width * height)
    own = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 8),
           (262, 3, 1, 1), (273, 4, 1, "DATA"), (277, 3, 1, 1), (278, 4, 1, 0xFFFFFFFF),
           (279, 4, 1, len(data))]
    entries = sorted(list(first or ()) + own, key=lambda t: t[0])  # stable: ``first`` first
    return tiff_from_entries(entries, data)
