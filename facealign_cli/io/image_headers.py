"""Image file headers, read without decoding pixels: format sniffing and one parser per format.

:func:`sniff_format` names the format from a file's leading bytes; the parsers (one per format,
in ``_PARSERS``) read an :class:`ImageHeader` from a file's bytes: the stored size, the EXIF
orientation, what the decoder will return (channels, sample size) and what decoding will cost
(a JPEG's scans and sampling factors, the number of frames or pages). They raise only
``_HeaderError`` (``truncated=True`` when the data ends early);
:func:`facealign_cli.io.images.read_header` turns that into the public
:class:`facealign_cli.io.images.ImageError` subclasses. The policy these headers serve (size
and memory limits, orientation, first frame only) is described in :mod:`facealign_cli.io.images`,
which re-exports the public names of this module.

Formats, and the parts of their specifications read here:

* **JPEG** (ITU-T T.81 / ISO/IEC 10918-1): marker segments up to the first start of scan
  (SOS); the size, component count and sampling factors from the first start-of-frame (SOF)
  segment; a progressive frame (SOF2/6/10/14), or a second SOS before the end-of-image marker
  (EOI), or a first scan of fewer components than the frame, makes a multi-scan file; the
  data must reach its EOI (0xFF is byte-stuffed in
  entropy-coded data, so the first FF D9 after the scan is the EOI).
* **EXIF** (CIPA DC-008, Exif 2.x): a TIFF structure (``Exif\\0\\0``-prefixed in a JPEG APP1
  segment) whose IFD0 tag 0x0112 is the orientation, 1..8.
* **PNG** (W3C PNG specification; ``eXIf`` from the PNG extensions, ``acTL`` from APNG):
  the ``IHDR`` size, bit depth and colour type, ``tRNS`` transparency, the frame count, and
  the ``IEND`` chunk that ends a complete file.
* **BMP** (Microsoft ``BITMAPCOREHEADER`` / ``BITMAPINFOHEADER`` and later): the file size
  the header announces, the size and the bits per pixel.
* **WebP** (Google's RIFF container specification): ``VP8X``, ``VP8 `` (key frame header) or
  ``VP8L`` (signature 0x2F) for the size, ``ANMF`` frames, the ``EXIF`` chunk.
* **TIFF** (TIFF 6.0, and BigTIFF): integer tags of IFD0 (size, bits and samples per pixel,
  photometric interpretation for CMYK, orientation and the byte offset of its value, tile
  size) and the chain of IFDs (pages), in either byte order. As in libtiff (OpenCV's TIFF
  decoder), the first entry of a tag counts; a tag given twice with different values is
  refused (which one a decoder reads is not specified); SubIFDs and later pages are not
  decoded (OpenCV reads IFD0 only), so only IFD0 is read.

Only the standard library is imported.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass


@dataclass(frozen=True)
class ImageHeader:
    """What the leading bytes of an image file say, read without decoding pixels.

    Attributes:
        format: ``"jpeg"``, ``"png"``, ``"bmp"``, ``"webp"`` or ``"tiff"``.
        width, height: stored size in pixels, *before* EXIF orientation.
        orientation: EXIF orientation 1..8 (1 = as stored; 5..8 swap width and height).
        cmyk: the stored colour model is CMYK (TIFF only; JPEG CMYK is handled by OpenCV).
        channels: samples per pixel the decoder returns (alpha and palette expansion counted).
        sample_bytes: bytes per sample the decoder returns (2 for 16 bit, 4 or 8 for float).
        multi_scan: a JPEG with more than one scan (progressive or non-interleaved): libjpeg
            keeps all its DCT coefficients in memory, whatever the output size.
        sampling: a JPEG's per-component ``(h, v)`` sampling factors.
        frames: number of pages (TIFF) or frames (animated WebP / PNG); only the first one is
            decoded.
        orientation_offset: TIFF only: byte offset of the orientation tag's value (a SHORT),
            or -1.
        tile: TIFF only: ``(TileWidth, TileLength)`` of a tiled file, else ``(0, 0)``; the
            decoders hold whole tiles, however small the image (a 100 x 100 image may
            declare 16000 x 16000 tiles).
    """

    format: str
    width: int
    height: int
    orientation: int = 1
    cmyk: bool = False
    channels: int = 3
    sample_bytes: int = 1
    multi_scan: bool = False
    sampling: tuple[tuple[int, int], ...] = ()
    frames: int = 1
    orientation_offset: int = -1
    tile: tuple[int, int] = (0, 0)

    @property
    def oriented_size(self) -> tuple[int, int]:
        """``(width, height)`` as a viewer sees the image (after EXIF orientation)."""
        if self.orientation >= 5:
            return self.height, self.width
        return self.width, self.height


def sniff_format(data: bytes | memoryview) -> str | None:
    """The format named by a file's first bytes, or ``None`` if not a supported image."""
    head = bytes(data[:12])
    if head[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if head[:2] == b"BM":
        return "bmp"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    return None


class _HeaderError(Exception):
    """Internal: the header is malformed (becomes CorruptImageError/TruncatedImageError)."""

    def __init__(self, message: str, truncated: bool = False):
        super().__init__(message)
        self.truncated = truncated


def _u(fmt: str, data: bytes, off: int):
    """struct.unpack_from that reports running off the end as a truncated header."""
    try:
        return struct.unpack_from(fmt, data, off)
    except struct.error:
        raise _HeaderError("header ends early", truncated=True) from None


#: TIFF field types read as integers, as libtiff reads them (``TIFFReadDirEntryLong``):
#: BYTE, SBYTE, SHORT, SSHORT, LONG, SLONG, IFD, LONG8, SLONG8, IFD8 -> struct code.
_TIFF_INTEGER_TYPES = {1: "B", 6: "b", 3: "H", 8: "h", 4: "I", 9: "i", 13: "I", 16: "Q",
                       17: "q", 18: "Q"}
#: Names of the tags read here, for messages.
_TIFF_TAG_NAMES = {256: "ImageWidth", 257: "ImageLength", 258: "BitsPerSample",
                   262: "PhotometricInterpretation", 274: "Orientation",
                   277: "SamplesPerPixel", 322: "TileWidth", 323: "TileLength"}


def _tiff_first_value(tiff: bytes, e: str, base: int, typ: int, count_fmt: str,
                      value_size: int) -> tuple[int | None, int]:
    """``(first value, its byte offset)`` of the IFD entry at ``base``; ``(None, -1)`` when
    its type is not an integer type or its count is 0 (libtiff cannot read it either)."""
    code = _TIFF_INTEGER_TYPES.get(typ)
    (count,) = _u(e + count_fmt, tiff, base + 4)
    if code is None or count < 1:
        return None, -1
    voff = base + 4 + value_size
    if struct.calcsize(code) * count > value_size:  # stored elsewhere; the first value
        (voff,) = _u(e + count_fmt, tiff, voff)
    return _u(e + code, tiff, voff)[0], voff


def _tiff_tags(tiff: bytes, wanted: set[int], offsets: dict[int, int] | None = None,
               chain: list[int] | None = None) -> dict[int, int]:
    """First values of integer tags of IFD0 of a TIFF structure (a TIFF file or an EXIF blob).

    Supports classic TIFF and BigTIFF, both byte orders; returns only tags in ``wanted`` whose
    first entry has an integer type (:data:`_TIFF_INTEGER_TYPES`; signed values may be
    negative). As libtiff does, the *first* entry of a tag counts (libtiff ignores later
    duplicates), and an entry of another type makes the tag unreadable (absent here), even
    if a later entry would be readable. A tag given twice with different values raises
    ``_HeaderError`` (a file whose size depends on which entry a decoder reads is refused).
    ``offsets`` (if given) receives the byte offset of each returned tag's first value (-1
    unless a SHORT); ``chain`` (if given) receives the offsets of IFD0 and of the IFDs chained
    after it (pages), at most 1024.
    """
    if tiff[:2] == b"II":
        e = "<"
    elif tiff[:2] == b"MM":
        e = ">"
    else:
        raise _HeaderError("bad TIFF byte-order mark")
    (magic,) = _u(e + "H", tiff, 2)
    if magic == 42:
        (ifd,) = _u(e + "I", tiff, 4)
        (n,) = _u(e + "H", tiff, ifd)
        entry, first, count_fmt, value_size = 12, ifd + 2, "I", 4
    elif magic == 43:
        (ifd,) = _u(e + "Q", tiff, 8)
        (n,) = _u(e + "Q", tiff, ifd)
        entry, first, count_fmt, value_size = 20, ifd + 8, "Q", 8
    else:
        raise _HeaderError("bad TIFF magic number")
    if n > 4096:
        raise _HeaderError("implausible TIFF directory")
    seen: dict[int, tuple[int | None, int]] = {}  # tag -> (first value or None, its offset)
    for i in range(n):
        base = first + i * entry
        tag, typ = _u(e + "HH", tiff, base)
        if tag not in wanted:
            continue
        value, voff = _tiff_first_value(tiff, e, base, typ, count_fmt, value_size)
        if tag in seen:
            if seen[tag][0] != value:
                name = _TIFF_TAG_NAMES.get(tag, str(tag))
                raise _HeaderError(f"TIFF gives {name} twice ({seen[tag][0]}, then {value}): "
                                   "decoders disagree on which one counts")
            continue
        seen[tag] = (value, voff if typ == 3 else -1)  # only SHORT values are patched
    out = {tag: v for tag, (v, _) in seen.items() if v is not None}
    if offsets is not None:
        offsets.update({tag: off for tag, (v, off) in seen.items() if v is not None})
    if chain is not None:
        chain.append(ifd)
        link_fmt = e + ("I" if magic == 42 else "Q")
        nxt = first + n * entry
        while len(chain) < 1024:
            try:
                (ifd,) = struct.unpack_from(link_fmt, tiff, nxt)
                (n,) = struct.unpack_from(e + ("H" if magic == 42 else "Q"), tiff, ifd)
            except struct.error:
                break  # a broken link: only the pages before it count
            if ifd == 0 or ifd in chain or n > 4096:
                break
            chain.append(ifd)
            nxt = ifd + (2 if magic == 42 else 8) + n * entry
    return out


def _exif_orientation(blob: bytes) -> int:
    """EXIF orientation (1..8) from an EXIF blob (TIFF structure, optionally prefixed by
    ``Exif\\0\\0``); 1 when absent or unreadable (a broken EXIF block never fails a photo)."""
    if blob[:6] == b"Exif\x00\x00":
        blob = blob[6:]
    try:
        o = _tiff_tags(blob, {0x0112}).get(0x0112, 1)
    except _HeaderError:
        return 1
    return o if 1 <= o <= 8 else 1


_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_header(d: bytes) -> ImageHeader:
    pos, size, orientation, sof, sampling = 2, None, 1, None, ()
    while True:
        marker, pos = _next_jpeg_marker(d, pos)
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # standalone markers
            continue
        if marker == 0xD9:
            raise _HeaderError("JPEG ends before any image data")
        (length,) = _u(">H", d, pos)
        if length < 2:
            raise _HeaderError("bad JPEG segment length")
        seg = d[pos + 2 : pos + length]
        if len(seg) < length - 2:
            raise _HeaderError("file ends inside a JPEG header segment", truncated=True)
        if marker == 0xE1 and seg[:6] == b"Exif\x00\x00" and orientation == 1:
            orientation = _exif_orientation(seg)
        elif marker in _JPEG_SOF and size is None:
            size, sampling = _jpeg_frame(seg)
            sof = marker
        elif marker == 0xDA:  # start of scan: entropy-coded data follows
            if size is None:
                raise _HeaderError("JPEG has no frame header before its image data")
            partial = len(seg) >= 1 and seg[0] < len(sampling)  # a scan of some components
            multi_scan = _jpeg_multi_scan(d, pos, pos + length, sof) or partial
            break
        pos += length
    w, h = size
    if w == 0 or h == 0:
        raise _HeaderError(f"JPEG header gives a {w}x{h} size")
    return ImageHeader("jpeg", w, h, orientation, channels=3, multi_scan=multi_scan,
                       sampling=sampling)


def _next_jpeg_marker(d: bytes, pos: int) -> tuple[int, int]:
    """``(marker, position after it)`` of the next marker at or after ``pos`` (fill bytes
    0xFF and extraneous bytes between segments skipped, as libjpeg does)."""
    n = len(d)
    if pos >= n:
        raise _HeaderError("file ends inside the JPEG header", truncated=True)
    if d[pos] != 0xFF:  # extraneous bytes between segments: skip them, as libjpeg does
        pos = d.find(b"\xff", pos)
        if pos < 0:
            raise _HeaderError("file ends inside the JPEG header", truncated=True)
    while pos < n and d[pos] == 0xFF:
        pos += 1
    if pos >= n:
        raise _HeaderError("file ends inside the JPEG header", truncated=True)
    return d[pos], pos + 1


def _jpeg_frame(seg: bytes) -> tuple[tuple[int, int], tuple]:
    """``((width, height), per-component (h, v) sampling factors)`` of a SOF segment."""
    h, w, nc = _u(">HHB", seg, 1)
    sampling = tuple((hv >> 4, hv & 15)
                     for (hv,) in (_u(">B", seg, 7 + 3 * i) for i in range(nc)))
    if any(not (1 <= a <= 4 and 1 <= b <= 4) for a, b in sampling):
        raise _HeaderError("bad JPEG sampling factors")
    return (w, h), sampling


def _jpeg_multi_scan(d: bytes, pos: int, data_start: int, sof: int | None) -> bool:
    """Whether libjpeg buffers every coefficient of the image: a progressive frame, or a
    second scan before the end of the image (a non-interleaved file; the caller also counts
    a first scan of fewer components than the frame, libjpeg's own test, which a segment
    holding FF D9 between two scans cannot hide). ``pos``: the first scan's header,
    ``data_start``: its entropy-coded data."""
    # Entropy-coded data never contains FF D9 (0xFF is stuffed as FF 00), so the first FF D9
    # after the first scan is the end-of-image marker of this image.
    eoi = d.find(b"\xff\xd9", data_start)
    if eoi < 0:
        raise _HeaderError("JPEG data ends before its end-of-image marker", truncated=True)
    return sof in (0xC2, 0xC6, 0xCA, 0xCE) or d.find(b"\xff\xda", pos, eoi) >= 0


def _png_header(d: bytes) -> ImageHeader:
    length, typ = _u(">I4s", d, 8)
    if typ != b"IHDR" or length != 13:
        raise _HeaderError("PNG does not start with an IHDR chunk")
    w, h, depth, colour = _u(">IIBB", d, 16)
    pos, orientation, ended, frames, trns = 8, 1, False, 1, False
    n = len(d)
    while pos + 8 <= n:
        length, typ = struct.unpack_from(">I4s", d, pos)
        if typ == b"eXIf":
            orientation = _exif_orientation(d[pos + 8 : pos + 8 + length])
        elif typ == b"acTL" and length >= 8:  # APNG: number of frames
            (frames,) = struct.unpack_from(">I", d, pos + 8)
        elif typ == b"tRNS":
            trns = True
        if typ == b"IEND":
            ended = True
            break
        pos += 12 + length
    if not ended:
        raise _HeaderError("PNG has no IEND chunk (file cut short)", truncated=True)
    if w == 0 or h == 0:
        raise _HeaderError(f"PNG header gives a {w}x{h} size")
    channels = {0: 1, 2: 3, 3: 3, 4: 4, 6: 4}.get(colour, 4)  # OpenCV: gray+alpha -> BGRA
    if trns:
        channels = 4
    return ImageHeader("png", w, h, orientation, channels=channels,
                       sample_bytes=2 if depth == 16 else 1, frames=max(1, frames))


def _bmp_header(d: bytes) -> ImageHeader:
    (file_size,) = _u("<I", d, 2)
    (dib,) = _u("<I", d, 14)
    if dib == 12:
        w, h = _u("<HH", d, 18)
        bpp = 24
    elif dib >= 40:
        w, h = _u("<ii", d, 18)
        (bpp,) = _u("<H", d, 28)
    else:
        raise _HeaderError("unknown BMP header")
    if file_size > len(d) and file_size - len(d) > 2:  # some writers are off by 2
        raise _HeaderError(f"BMP announces {file_size} bytes, the file has {len(d)}",
                           truncated=True)
    w, h = abs(w), abs(h)
    if w == 0 or h == 0:
        raise _HeaderError(f"BMP header gives a {w}x{h} size")
    return ImageHeader("bmp", w, h, channels=4 if bpp == 32 else 3)


def _webp_header(d: bytes) -> ImageHeader:
    (riff_size,) = _u("<I", d, 4)
    if riff_size + 8 > len(d):
        raise _HeaderError(f"WebP announces {riff_size + 8} bytes, the file has {len(d)}",
                           truncated=True)
    pos, size, orientation, frames = 12, None, 1, 0
    end = min(len(d), riff_size + 8)
    while pos + 8 <= end:
        tag, length = struct.unpack_from("<4sI", d, pos)
        body = d[pos + 8 : pos + 8 + length]
        if tag == b"ANMF":
            frames += 1
        if tag == b"VP8X" and size is None:
            w = int.from_bytes(body[4:7], "little") + 1
            h = int.from_bytes(body[7:10], "little") + 1
            size = (w, h)
        elif tag == b"VP8 " and size is None:
            if body[3:6] != b"\x9d\x01\x2a":
                raise _HeaderError("bad VP8 frame header")
            w, h = _u("<HH", body, 6)
            size = (w & 0x3FFF, h & 0x3FFF)
        elif tag == b"VP8L" and size is None:
            if body[:1] != b"\x2f":
                raise _HeaderError("bad VP8L signature")
            (bits,) = _u("<I", body, 1)
            size = ((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
        elif tag == b"EXIF":
            orientation = _exif_orientation(body)
        pos += 8 + length + (length & 1)
    if size is None:
        raise _HeaderError("WebP has no image chunk")
    w, h = size
    if w == 0 or h == 0:
        raise _HeaderError(f"WebP header gives a {w}x{h} size")
    return ImageHeader("webp", w, h, orientation, channels=4, frames=max(1, frames))


def _tiff_header(d: bytes) -> ImageHeader:
    offsets: dict[int, int] = {}
    chain: list[int] = []
    tags = _tiff_tags(d, {256, 257, 258, 262, 274, 277, 322, 323}, offsets, chain)
    if 256 not in tags or 257 not in tags:
        raise _HeaderError("TIFF has no readable image width/height tags")
    if tags[256] <= 0 or tags[257] <= 0:
        raise _HeaderError(f"TIFF header gives a {tags[256]}x{tags[257]} size")
    tile = (max(0, tags.get(322, 0)), max(0, tags.get(323, 0)))
    o = tags.get(274, 1)
    spp = max(1, min(tags.get(277, 1), 16))
    bits = max(1, min(tags.get(258, 8), 64))
    # OpenCV returns 8-bit data through libtiff's RGBA reader (4 channels)
    channels = max(spp, 4) if bits <= 8 else max(spp, 3)
    return ImageHeader("tiff", tags[256], tags[257], o if 1 <= o <= 8 else 1,
                       cmyk=tags.get(262) == 5, channels=channels,
                       sample_bytes=max(1, -(-bits // 8)), frames=max(1, len(chain)),
                       orientation_offset=offsets.get(274, -1) if 274 in tags else -1,
                       tile=tile if all(tile) else (0, 0))


_PARSERS = {"jpeg": _jpeg_header, "png": _png_header, "bmp": _bmp_header,
            "webp": _webp_header, "tiff": _tiff_header}
