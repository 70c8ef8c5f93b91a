"""facealign_cli.io.images: every odd file an archive can hold, built by the tests themselves."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from facealign_cli.batch.manifest import read_manifest

cv2 = pytest.importorskip("cv2")

from imgtools import _png_chunk, cmyk_jpeg_flat, jpeg_with_orientation, png_bytes  # noqa: E402

from facealign_cli.io.images import (  # noqa: E402
    CorruptImageError,
    EmptyImageError,
    ImageError,
    ImageTooLargeError,
    NotAnImageError,
    TruncatedImageError,
    UnreadableImageError,
    load_image,
    read_header,
    read_image,
)


def _marker_image(h=48, w=64):
    """Black image with a white block in the top-left corner (rows 0..11, cols 0..23)."""
    img = np.zeros((h, w, 3), np.uint8)
    img[:12, :24] = 255
    return img


def _centroid(img):
    return np.argwhere(img[..., 0] > 128).mean(0)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_applied_like_cv2_imread(tmp_path, orientation):
    p = tmp_path / f"o{orientation}.jpg"
    p.write_bytes(jpeg_with_orientation(_marker_image(), orientation))
    ours = load_image(p)
    ref = cv2.imread(str(p))  # applies EXIF orientation by default
    assert ours.shape == ref.shape
    assert ours.dtype == np.uint8 and ours.flags["C_CONTIGUOUS"]
    assert np.abs(ours.astype(int) - ref).max() <= 1
    assert read_header(p).orientation == orientation


def test_exif_orientation_6_is_90_degrees_clockwise(tmp_path):
    p = tmp_path / "rot.jpg"
    p.write_bytes(jpeg_with_orientation(_marker_image(), 6))
    img = load_image(p)
    assert img.shape == (64, 48, 3)  # width and height swapped
    # The stored top-left block ends up top-right after a clockwise quarter turn.
    cy, cx = _centroid(img)
    assert cy < 16 and cx > 32
    d = read_image(p)
    assert (d.width, d.height) == (48, 64) and d.scale == 1


def test_grayscale(tmp_path):
    g = np.tile(np.arange(64, dtype=np.uint8) * 4, (32, 1))
    for ext in (".png", ".jpg", ".bmp", ".tif", ".webp"):
        p = tmp_path / f"gray{ext}"
        ok, buf = cv2.imencode(ext, g)
        assert ok
        p.write_bytes(buf.tobytes())
        img = load_image(p)
        assert img.shape == (32, 64, 3) and img.dtype == np.uint8
        assert np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 1], img[..., 2])


def test_rgba_composited_on_white(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)  # PNG channel order R, G, B, A
    rgba[:, :, 0] = 200  # red colour everywhere ...
    rgba[:4, :, 3] = 255  # ... opaque in the top half
    rgba[4:6, :, 3] = 0  # fully transparent (stored colour must not leak)
    rgba[6:, :, 3] = 128  # half transparent
    p = tmp_path / "rgba.png"
    p.write_bytes(png_bytes(rgba, color_type=6))
    img = load_image(p)
    assert img.shape == (8, 8, 3)
    assert tuple(img[0, 0]) == (0, 0, 200)  # BGR
    assert tuple(img[4, 0]) == (255, 255, 255)
    b, g, r = (int(v) for v in img[7, 0])
    assert abs(b - 127) <= 2 and abs(g - 127) <= 2 and abs(r - 228) <= 2


def test_gray_alpha_png(tmp_path):
    la = np.zeros((6, 5, 2), np.uint8)
    la[..., 0] = 50
    la[:3, :, 1] = 255
    p = tmp_path / "la.png"
    p.write_bytes(png_bytes(la, color_type=4))
    img = load_image(p)
    assert img.shape == (6, 5, 3)
    assert tuple(img[0, 0]) == (50, 50, 50)
    assert tuple(img[5, 0]) == (255, 255, 255)


def test_palette_png_with_transparency(tmp_path):
    idx = np.array([[0, 1], [1, 0]], np.uint8)
    raw = b"".join(b"\x00" + idx[y].tobytes() for y in range(2))
    png = (b"\x89PNG\r\n\x1a\n"
           + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 3, 0, 0, 0))
           + _png_chunk(b"PLTE", bytes([255, 0, 0, 0, 0, 255]))  # red, blue
           + _png_chunk(b"tRNS", bytes([0, 255]))  # red entry fully transparent
           + _png_chunk(b"IDAT", zlib.compress(raw)) + _png_chunk(b"IEND", b""))
    p = tmp_path / "pal.png"
    p.write_bytes(png)
    img = load_image(p)
    assert tuple(img[0, 0]) == (255, 255, 255) and tuple(img[0, 1]) == (255, 0, 0)


def test_jpeg_with_junk_between_segments(tmp_path):
    b = _jpeg_bytes()
    p = tmp_path / "junk.jpg"
    end_app0 = 4 + int.from_bytes(b[4:6], "big")
    p.write_bytes(b[:end_app0] + b"\x00\x00" + b[end_app0:])  # libjpeg skips stray bytes
    assert load_image(p).shape == (64, 80, 3)


def test_alpha_all_zero_is_ignored(tmp_path):
    bgra = np.zeros((10, 10, 4), np.uint8)
    bgra[..., 1] = 90  # green, alpha 0 everywhere (32-bit BMP padding)
    p = tmp_path / "pad.bmp"
    ok, buf = cv2.imencode(".bmp", bgra)
    assert ok
    p.write_bytes(buf.tobytes())
    img = load_image(p)
    assert tuple(img[3, 3]) == (0, 90, 0)


def test_16bit_png_scaled_to_8bit(tmp_path):
    a = np.zeros((4, 4, 3), np.uint16)
    a[0, 0] = (65535, 32768, 0)
    a[1, 1] = (257 * 10, 257 * 200, 257 * 255)
    p = tmp_path / "deep.png"
    ok, buf = cv2.imencode(".png", a)  # OpenCV writes BGR 16-bit PNG
    assert ok
    p.write_bytes(buf.tobytes())
    img = load_image(p)
    assert img.dtype == np.uint8 and img.shape == (4, 4, 3)
    assert tuple(img[0, 0]) == (255, 128, 0)
    assert tuple(img[1, 1]) == (10, 200, 255)


def test_16bit_gray_png(tmp_path):
    g = np.full((3, 3), 65535, np.uint16)
    g[0, 0] = 0
    p = tmp_path / "g16.png"
    p.write_bytes(png_bytes(g, color_type=0, bit_depth=16))
    img = load_image(p)
    assert img.shape == (3, 3, 3) and tuple(img[1, 1]) == (255, 255, 255) and img[0, 0].max() == 0


def test_cmyk_jpeg(tmp_path):
    p = tmp_path / "cmyk.jpg"
    p.write_bytes(cmyk_jpeg_flat((255, 0, 0, 255)))  # Adobe-inverted CMYK of pure red
    img = load_image(p)
    assert img.shape == (16, 16, 3) and img.dtype == np.uint8
    b, g, r = (int(v) for v in img[8, 8])
    assert r > 245 and g < 10 and b < 10


def test_one_pixel(tmp_path):
    p = tmp_path / "dot.png"
    ok, buf = cv2.imencode(".png", np.full((1, 1, 3), 7, np.uint8))
    p.write_bytes(buf.tobytes())
    img = load_image(p)
    assert img.shape == (1, 1, 3) and img[0, 0, 0] == 7


def test_non_ascii_file_name(tmp_path):
    p = tmp_path / "фото_ß_写真 é.jpg"
    ok, buf = cv2.imencode(".jpg", np.full((20, 30, 3), 128, np.uint8))
    p.write_bytes(buf.tobytes())
    assert load_image(p).shape == (20, 30, 3)
    assert load_image(str(p)).shape == (20, 30, 3)


@pytest.mark.parametrize("ext", [".png", ".bmp", ".webp", ".tif", ".jpg"])
def test_header_sizes(tmp_path, ext):
    img = np.random.default_rng(0).integers(0, 255, (37, 53, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(ext, img)
    p = tmp_path / f"x{ext}"
    p.write_bytes(buf.tobytes())
    h = read_header(p)
    assert (h.width, h.height) == (53, 37)
    assert load_image(p).shape == (37, 53, 3)


def test_lossless_webp_header(tmp_path):
    img = np.random.default_rng(1).integers(0, 255, (9, 11, 4), dtype=np.uint8)
    ok, buf = cv2.imencode(".webp", img, [cv2.IMWRITE_WEBP_QUALITY, 101])
    p = tmp_path / "ll.webp"
    p.write_bytes(buf.tobytes())
    h = read_header(p)
    assert (h.width, h.height) == (11, 9)
    assert load_image(p).shape == (9, 11, 3)


# ---------------------------------------------------------------------------- bad files


def _jpeg_bytes(h=64, w=80):
    img = np.random.default_rng(2).integers(0, 255, (h, w, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", img)[1].tobytes()


def test_zero_bytes(tmp_path):
    p = tmp_path / "empty.jpg"
    p.write_bytes(b"")
    with pytest.raises(EmptyImageError, match="empty"):
        load_image(p)


def test_text_named_jpg(tmp_path):
    p = tmp_path / "notes.jpg"
    p.write_text("this is not a photo\n")
    with pytest.raises(NotAnImageError) as ei:
        load_image(p)
    assert "notes.jpg" in str(ei.value) and ei.value.kind == "not_image"
    assert isinstance(ei.value, ValueError)


@pytest.mark.parametrize("cut", [0.5, 0.95])
def test_truncated_jpeg(tmp_path, cut):
    b = _jpeg_bytes()
    p = tmp_path / "cut.jpg"
    p.write_bytes(b[: int(len(b) * cut)])
    with pytest.raises(TruncatedImageError, match="end"):
        load_image(p)


def test_jpeg_cut_inside_header(tmp_path):
    p = tmp_path / "head.jpg"
    p.write_bytes(_jpeg_bytes()[:40])
    with pytest.raises(TruncatedImageError):
        load_image(p)


def test_truncated_png(tmp_path):
    b = cv2.imencode(".png", np.zeros((50, 50, 3), np.uint8) + 9)[1].tobytes()
    p = tmp_path / "cut.png"
    p.write_bytes(b[: len(b) - 20])
    with pytest.raises(TruncatedImageError):
        load_image(p)


def test_corrupt_huffman_tables(tmp_path):
    b = bytearray(_jpeg_bytes())
    i = b.find(b"\xff\xc4")  # first DHT segment: make its code-length counts impossible
    b[i + 5 : i + 21] = b"\xff" * 16
    p = tmp_path / "bad_dht.jpg"
    p.write_bytes(bytes(b))
    with pytest.raises(CorruptImageError, match="cannot be decoded"):
        load_image(p)


def test_missing_and_directory(tmp_path):
    with pytest.raises(UnreadableImageError, match="no such file"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(UnreadableImageError, match="not a regular file"):
        load_image(tmp_path)


def test_huge_png_refused_before_decoding(tmp_path):
    # A 100000 x 100000 PNG header over 4 tiny pixels: decoding it would need 30 GB.
    p = tmp_path / "bomb.png"
    p.write_bytes(png_bytes(np.zeros((2, 2, 3), np.uint8), 2, header_size=(100_000, 100_000)))
    with pytest.raises(ImageTooLargeError, match="megapixel"):
        load_image(p)


def test_large_jpeg_decoded_reduced(tmp_path):
    img = np.zeros((400, 640, 3), np.uint8)
    img[100:200, 320:480] = 255
    p = tmp_path / "big.jpg"
    p.write_bytes(cv2.imencode(".jpg", img)[1].tobytes())
    d = read_image(p, max_pixels=100_000)  # 256,000 px > limit -> 1/2 = 64,000 px
    assert d.scale == 2 and d.image.shape == (200, 320, 3)
    assert (d.width, d.height) == (640, 400)
    cy, cx = _centroid(d.image)
    assert abs(cy * 2 + 0.5 - 149.5) < 2 and abs(cx * 2 + 0.5 - 399.5) < 2
    with pytest.raises(ImageTooLargeError):
        read_image(p, max_pixels=1000)  # still too large at 1/8


def test_errors_share_one_base_class():
    for cls in (EmptyImageError, NotAnImageError, TruncatedImageError, CorruptImageError,
                UnreadableImageError, ImageTooLargeError):
        assert issubclass(cls, ImageError) and issubclass(cls, ValueError)


# ---------------------------------------------------------------- memory bound (issue 12.1)

_PEAK_RSS_CHILD = r"""
import resource, subprocess, sys
code = '''
import sys
from facealign_cli.io.images import ImageError, read_image
try:
    d = read_image(sys.argv[1], **({"max_pixels": int(sys.argv[2])} if sys.argv[2:] else {}))
    print("decoded", d.scale)
except ImageError as exc:
    print(type(exc).__name__, exc)
'''
r = subprocess.run([sys.executable, "-c", code, *sys.argv[1:]], capture_output=True, text=True)
sys.stdout.write(r.stdout)
# the grandchild's peak: this small process's own memory is all its exec could inherit
print("peak_kib", resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def peak_rss_of_reading(path, max_pixels: int | None = None) -> tuple[str, float]:
    """``read_image(path)``'s outcome line and the peak RSS (MiB) of a fresh process doing it
    (measured one process further down, so that pytest's own RSS is not inherited)."""
    import subprocess
    import sys

    extra = [] if max_pixels is None else [str(max_pixels)]
    r = subprocess.run([sys.executable, "-c", _PEAK_RSS_CHILD, str(path), *extra],
                       capture_output=True, text=True, timeout=300, check=True)
    lines = r.stdout.strip().splitlines()
    return lines[0], int(lines[-1].split()[1]) / 1024


@pytest.mark.parametrize("side", [20000, 30000, 32767])
def test_progressive_jpeg_bomb_bounded(tmp_path, side):
    from imgtools import progressive_jpeg_claiming_size

    p = tmp_path / f"bomb{side}.jpg"
    p.write_bytes(progressive_jpeg_claiming_size(side, side))
    assert p.stat().st_size < 20_000
    assert read_header(p).multi_scan
    outcome, peak_mib = peak_rss_of_reading(p)
    print(f"{side}x{side}: {outcome}; peak RSS {peak_mib:.0f} MiB")
    assert peak_mib <= 300, (outcome, peak_mib)
    assert outcome.startswith("ImageTooLargeError") and "memory limit" in outcome


def test_decodes_stay_within_their_computed_memory(tmp_path):
    """The memory limit is real: the peak RSS a decode adds (over reading a tiny image) is at
    most what decode_memory computed for it, in the decoders' big-buffer cases (progressive
    JPEG decoded reduced, 16-bit PNG, float TIFF in one strip, a rotated TIFF)."""
    from imgtools import progressive_jpeg_claiming_size, tiff_bytes

    from facealign_cli.io.images import decode_memory

    tiny = tmp_path / "tiny.png"
    tiny.write_bytes(cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    outcome, base = peak_rss_of_reading(tiny)
    assert outcome == "decoded 1"
    rng = np.random.default_rng(5)
    smooth = cv2.resize(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8), (2400, 1800))
    cases = {
        "bomb.jpg": (progressive_jpeg_claiming_size(6000, 6000), 3_000_000),
        "deep.png": (cv2.imencode(".png", smooth.astype(np.uint16) * 257)[1].tobytes(), None),
        "float.tif": (tiff_bytes(smooth.astype(np.float32)), None),
        "rot.tif": (tiff_bytes(smooth, orientation=6), None),
    }
    for name, (data, max_pixels) in cases.items():
        p = tmp_path / name
        p.write_bytes(data)
        outcome, peak = peak_rss_of_reading(p, max_pixels)
        assert outcome.startswith("decoded"), outcome
        scale = int(outcome.split()[1])
        budget = decode_memory(read_header(p), scale, len(data)) / 2**20
        print(f"{name}: +{peak - base:.0f} MiB for a computed {budget:.0f} MiB")
        assert peak - base <= budget, (name, peak - base, budget)


def test_decode_memory_counts_the_coefficient_buffer(tmp_path):
    from imgtools import progressive_jpeg_claiming_size

    from facealign_cli.io.images import decode_memory

    p = tmp_path / "bomb.jpg"
    p.write_bytes(progressive_jpeg_claiming_size(32767, 32767))
    h = read_header(p)
    assert h.sampling == ((1, 1),) * 3
    # 3 components x 4096^2 blocks x 128 bytes, at any reduction
    assert decode_memory(h, 8) >= 3 * 4096 * 4096 * 128
    baseline = tmp_path / "base.jpg"
    baseline.write_bytes(_jpeg_bytes(64, 80))
    hb = read_header(baseline)
    assert not hb.multi_scan and decode_memory(hb) == 16 * 2**20 + 64 * 80 * 3


def test_progressive_jpeg_within_the_limit_is_decoded(tmp_path):
    from imgtools import progressive_jpeg_claiming_size

    img = np.random.default_rng(3).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    p = tmp_path / "prog.jpg"
    p.write_bytes(buf.tobytes())
    d = read_image(p)
    assert d.header.multi_scan and d.image.shape == (48, 64, 3)
    # 3000 x 3000 progressive 4:4:4 needs ~100 MiB of coefficients: decoded reduced under a
    # 1 MP limit, refused under a 50 MiB memory limit
    p.write_bytes(progressive_jpeg_claiming_size(3000, 3000))
    assert read_image(p, max_pixels=1_000_000).scale == 4
    with pytest.raises(ImageTooLargeError, match="memory limit"):
        read_image(p, max_pixels=1_000_000, max_decode_bytes=50 * 2**20)


@pytest.mark.parametrize("ext", [".png", ".bmp", ".webp", ".tif"])
def test_memory_limit_for_every_format(tmp_path, ext):
    img = np.zeros((100, 100, 3), np.uint8)
    p = tmp_path / f"x{ext}"
    p.write_bytes(cv2.imencode(ext, img)[1].tobytes())
    assert read_image(p, max_decode_bytes=20 * 2**20).image.shape == (100, 100, 3)
    with pytest.raises(ImageTooLargeError, match="memory limit"):
        read_image(p, max_decode_bytes=20_000)


def test_deep_png_bomb_refused_by_memory(tmp_path):
    # 16-bit RGBA, 7000 x 7000: under the 50 MP pixel limit, but ~1 GiB to decode
    p = tmp_path / "deep.png"
    p.write_bytes(png_bytes(np.zeros((2, 2, 4), np.uint16), 6, 16, header_size=(7000, 7000)))
    with pytest.raises(ImageTooLargeError, match="memory limit"):
        read_image(p, max_decode_bytes=512 * 2**20)


# ---------------------------------------------------------------- orientation (issue 12.2)

_LOSSY = {"jpeg"}


def _oriented_file(tmp_path, fmt, upright, orientation):
    from imgtools import ORIENTED_WRITERS, orient_inverse

    p = tmp_path / f"o{orientation}.{fmt}"
    p.write_bytes(ORIENTED_WRITERS[fmt](orient_inverse(upright, orientation), orientation))
    return p


def _assert_same_picture(got, upright, fmt):
    assert got.shape == upright.shape
    diff = np.abs(got.astype(np.int16) - upright.astype(np.int16))
    if fmt in _LOSSY:
        assert diff.mean() < 3.0, diff.mean()
    else:
        assert diff.max() <= 1, diff.max()


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp", "tiff"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_format_lands_upright(tmp_path, fmt, orientation):
    # a non-square, asymmetric picture: a gradient and a bright block at the top left
    yy, xx = np.mgrid[0:48, 0:64]
    upright = np.dstack([xx * 3, yy * 4, (xx + yy) * 2]).astype(np.uint8)
    upright[4:16, 4:20] = 255
    p = _oriented_file(tmp_path, fmt, upright, orientation)
    d = read_image(p)
    assert d.header.format == fmt and d.header.orientation == orientation
    assert (d.width, d.height) == (64, 48)
    _assert_same_picture(d.image, upright, fmt)


def _face_photo(shared):
    """A real photo with exactly one annotated face, and that face's 68 points."""
    import json

    root = shared / "data" / "photos" / "afw"
    ann = json.loads((root / "annotations.json").read_text())["photos"]
    stem = next(s for s in sorted(ann) if len(ann[s]) == 1)
    img = cv2.imread(str(root / f"{stem}.jpg"), cv2.IMREAD_COLOR)
    return img, np.asarray(ann[stem][0], np.float64)


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp", "tiff"])
def test_real_photo_every_orientation(tmp_path, shared, fmt):
    photo, _ = _face_photo(shared)
    for orientation in range(1, 9):
        d = read_image(_oriented_file(tmp_path, fmt, photo, orientation))
        _assert_same_picture(d.image, photo, fmt)


def test_landmarks_land_on_the_face_in_every_orientation(tmp_path, shared, real_weights):
    """The full pipeline on the decoded image of each orientation (formats taken in turn):
    the landmarks are where the annotation of the upright photo puts them."""
    from facealign_cli.core.pipeline import FaceAligner

    photo, gt = _face_photo(shared)
    side = np.sqrt(np.prod(gt.max(0) - gt.min(0)))
    aligner = FaceAligner(num_threads=2)
    formats = ["jpeg", "png", "webp", "tiff"]
    for orientation in range(1, 9):
        fmt = formats[(orientation - 1) % 4]
        img = read_image(_oriented_file(tmp_path, fmt, photo, orientation)).image
        faces = aligner(img)
        assert faces, (fmt, orientation)
        err = min(np.linalg.norm(f.landmarks_2d - gt, axis=1).mean() for f in faces) / side
        assert err < 0.1, (fmt, orientation, err)


# ---------------------------------------------------------------- float TIFF, several frames


@pytest.mark.parametrize("top,expected", [(1.0, 1.0), (255.0, 255.0), (200.0, 255.0),
                                          (60000.0, 65535.0), (1e6, 1e6)])
def test_float_tiff_range(tmp_path, top, expected):
    from imgtools import tiff_bytes

    g = np.linspace(0.0, top, 64 * 32, dtype=np.float32).reshape(32, 64)
    rgb = np.dstack([g, g * 0.5, np.zeros_like(g)])
    p = tmp_path / "f.tif"
    p.write_bytes(tiff_bytes(rgb))
    img = read_image(p).image
    want = np.clip(rgb[:, :, ::-1] * (255.0 / expected) + 0.5, 0, 255).astype(np.uint8)
    assert np.abs(img.astype(int) - want).max() <= 1
    assert img[-1, -1, 2] == min(255, round(top * 255.0 / expected))


def test_float_tiff_holding_0_255_is_not_white(tmp_path):
    from imgtools import tiff_bytes

    g = np.full((8, 8), 100.0, np.float32)  # a mid-gray stored as float 0..255
    g[0, 0] = 255.0
    p = tmp_path / "gray.tif"
    p.write_bytes(tiff_bytes(g))
    img = read_image(p).image
    assert tuple(img[4, 4]) == (100, 100, 100)


def _frames():
    a = np.zeros((16, 24, 3), np.uint8)
    a[:, :12] = (0, 0, 255)
    b = np.full((16, 24, 3), 200, np.uint8)
    return [a, b, b]


def test_multipage_tiff_first_page_with_warning(tmp_path):
    from imgtools import tiff_bytes

    p = tmp_path / "pages.tif"
    p.write_bytes(tiff_bytes(_frames()[0][:, :, ::-1].copy(), pages=3))
    d = read_image(p)
    assert np.array_equal(d.image, _frames()[0])
    assert d.header.frames == 3
    assert d.warnings == ("the file holds 3 pages; only the first is used",)
    single = tmp_path / "one.tif"
    single.write_bytes(tiff_bytes(_frames()[0]))
    assert read_image(single).warnings == ()


@pytest.mark.parametrize("fmt", ["apng", "webp"])
def test_animation_first_frame_with_warning(tmp_path, fmt):
    from imgtools import animated_webp_bytes, apng_bytes

    p = tmp_path / f"anim.{fmt}"
    p.write_bytes((apng_bytes if fmt == "apng" else animated_webp_bytes)(_frames()))
    d = read_image(p)
    assert np.array_equal(d.image, _frames()[0])
    assert d.warnings == ("the file holds 3 frames; only the first is used",)


def test_first_frame_note_reaches_the_manifest(tmp_path):
    import io

    from fakes import FakeFactory
    from imgtools import apng_bytes

    from facealign_cli.batch.options import RunOptions
    from facealign_cli.batch.runner import run_batch
    from facealign_cli.io.inputs import collect_inputs

    frames = [np.full((64, 96, 3), v, np.uint8) for v in (90, 120)]
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "anim.png").write_bytes(apng_bytes(frames))
    out = tmp_path / "out"
    run_batch(collect_inputs([str(tmp_path / "in")]),
              RunOptions.make("landmarks", str(out), jobs=1, aligner_factory=FakeFactory(),
                         progress="never"), stdout=io.BytesIO(), stderr=io.StringIO())
    (line,) = read_manifest(out / "manifest.jsonl")
    assert line["status"] == "ok"
    assert line["message"] == "the file holds 2 frames; only the first is used"
