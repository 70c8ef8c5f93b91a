"""Headers that could make the size check and the decoder disagree (a hostile archive's files,
built here): the size the limits are checked on must be the size the decoder uses, or the
file is refused before decoding."""

from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest
from imgtools import gray_deflate_tiff, tiff_from_entries

from facealign_cli.io.images import (
    CorruptImageError,
    ImageTooLargeError,
    decode_memory,
    read_header,
    read_image,
)


def _cv2_size(data: bytes):
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    return None if img is None else img.shape[:2]


@pytest.mark.parametrize("decoy_type", [4, 9, 3, 8])  # LONG, SLONG, SHORT, SSHORT
def test_tiff_size_given_twice_is_refused_before_decoding(tmp_path, decoy_type):
    # ImageWidth/ImageLength 4000 first, 100 last, the strip holding 4000 x 4000 pixels:
    # libtiff (OpenCV) reads the first entries and decodes 16 megapixels
    decoy = [(256, decoy_type, 1, 4000), (257, decoy_type, 1, 4000)]
    data = gray_deflate_tiff(100, 100, first=decoy, pixels=4000 * 4000)
    assert len(data) < 30_000
    assert _cv2_size(data) == (4000, 4000)  # what the decoder would make of it
    p = tmp_path / "twice.tif"
    p.write_bytes(data)
    with pytest.raises(CorruptImageError, match="ImageWidth twice .4000, then 100."):
        read_image(p, max_pixels=1_000_000)


def test_tiff_size_with_an_unreadable_first_entry_is_refused(tmp_path):
    # a RATIONAL ImageWidth first: libtiff fails on it whatever follows; so does the parser
    decoy = [(256, 5, 1, "DATA")]
    data = gray_deflate_tiff(100, 100, first=decoy)
    with pytest.raises(CorruptImageError, match="ImageWidth twice"):
        read_header("x.tif", data)
    entries = [(256, 5, 1, "DATA"), (257, 4, 1, 100), (258, 3, 1, 8), (262, 3, 1, 1)]
    with pytest.raises(CorruptImageError, match="no readable image width"):
        read_header("x.tif", tiff_from_entries(entries, b"\x00" * 8))


def test_tiff_negative_signed_size_is_refused():
    entries = [(256, 9, 1, -5), (257, 4, 1, 100), (258, 3, 1, 8), (262, 3, 1, 1)]
    with pytest.raises(CorruptImageError, match="-5x100"):
        read_header("x.tif", tiff_from_entries(entries, b""))


def test_tiff_tag_repeated_with_the_same_value_is_read(tmp_path):
    data = gray_deflate_tiff(100, 80, first=[(256, 4, 1, 100), (257, 3, 1, 80)])
    p = tmp_path / "same.tif"
    p.write_bytes(data)
    d = read_image(p)
    assert (d.width, d.height) == (100, 80) and d.image.shape == (80, 100, 3)


def test_tiff_signed_size_types_are_read_as_libtiff_reads_them(tmp_path):
    data = gray_deflate_tiff(1, 1, first=[(256, 9, 1, 120), (257, 8, 1, 90)], pixels=120 * 90)
    # (the builder's own LONG entries say 1 x 1: a conflict, refused)
    with pytest.raises(CorruptImageError, match="twice"):
        read_header("x.tif", data)
    own = [(256, 9, 1, 120), (257, 8, 1, 90), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
           (273, 4, 1, "DATA"), (277, 3, 1, 1), (278, 4, 1, 90), (279, 4, 1, 120 * 90)]
    p = tmp_path / "signed.tif"
    p.write_bytes(tiff_from_entries(own, bytes(120 * 90)))
    d = read_image(p)
    assert (d.width, d.height) == (120, 90) == (d.image.shape[1], d.image.shape[0])


def test_tiled_tiff_counts_its_tiles_in_the_memory_limit(tmp_path):
    # a 100 x 100 image in one 8192 x 8192 tile: OpenCV and libtiff each hold a whole tile
    from imgtools import deflate_zeros

    t = 8192
    tile = deflate_zeros(t * t)
    entries = [(256, 4, 1, 100), (257, 4, 1, 100), (258, 3, 1, 8), (259, 3, 1, 8),
               (262, 3, 1, 1), (277, 3, 1, 1), (322, 4, 1, t), (323, 4, 1, t),
               (324, 4, 1, "DATA"), (325, 4, 1, len(tile))]
    data = tiff_from_entries(entries, tile)
    assert _cv2_size(data) == (100, 100)
    hdr = read_header("tiled.tif", data)
    assert hdr.tile == (t, t)
    assert decode_memory(hdr) > 2 * t * t * 4  # 512 MiB of tiles for 10,000 pixels
    p = tmp_path / "tiled.tif"
    p.write_bytes(data)
    with pytest.raises(ImageTooLargeError, match="needs about"):
        read_image(p, max_decode_bytes=256 * 2**20)


def _seg(marker: int, body: bytes) -> bytes:
    return b"\xff" + bytes([marker]) + struct.pack(">H", len(body) + 2) + body


def test_jpeg_first_scan_of_one_component_is_multi_scan(tmp_path):
    # baseline 3-component frame whose first scan holds only Y (a non-interleaved file), and
    # an APP15 segment holding FF D9 between the scans: libjpeg buffers every coefficient
    # (1.5 GB at 16000 x 16000); the end-of-image search alone would not see the second scan
    sof = _seg(0xC0, struct.pack(">BHHB", 8, 16000, 16000, 3)
               + b"".join(bytes([i + 1, 0x11, 0]) for i in range(3)))
    dht = _seg(0xC4, b"\x00" + bytes([0, 0, 12] + [0] * 13) + bytes(range(12)))
    scan = lambda c: _seg(0xDA, bytes([1, c, 0x00]) + b"\x00\x3f\x00") + b"\x00" * 16  # noqa
    data = (b"\xff\xd8" + _seg(0xDB, b"\x00" + bytes([1] * 64)) + sof + dht + scan(1)
            + _seg(0xEF, b"\xff\xd9") + scan(2) + scan(3) + b"\xff\xd9")
    hdr = read_header("x.jpg", data)
    assert hdr.multi_scan
    assert decode_memory(hdr, 8) > 1_500_000_000
    p = tmp_path / "x.jpg"
    p.write_bytes(data)
    with pytest.raises(ImageTooLargeError, match="needs about"):
        read_image(p)

