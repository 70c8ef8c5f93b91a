"""Robust image reading for batch jobs over arbitrary photo archives.

:func:`load_image` turns a file into the one array the model core expects: an ``(H, W, 3)``
``uint8`` BGR image in the orientation a viewer sees (EXIF orientation applied). It never
decodes an image whose header announces more pixels than a limit, and every way a file can be
unusable raises a subclass of :class:`ImageError` with a one-line message that names the file.

Policy (documented behaviour, relied on by the CLI):

* **Formats**: JPEG, PNG, BMP, WebP and TIFF, recognised by their leading bytes (the file name
  extension is ignored). Anything else raises :class:`NotAnImageError`.
* **Size limit**: the width and height are read from the header *before* decoding. Images of at
  most ``max_pixels`` (default :data:`DEFAULT_MAX_PIXELS` = 50 megapixels; the command line
  passes ``--max-megapixels`` / ``$FACEALIGN_MAX_PIXELS``) are decoded at full size. A larger
  JPEG is decoded at 1/2, 1/4 or 1/8 of its size (libjpeg's DCT scaling; the full-size image is
  never materialised) with the smallest factor that brings it under the limit, and
  :attr:`DecodedImage.scale` says by how much; a larger image of another format, or a JPEG still
  over the limit at 1/8, raises :class:`ImageTooLargeError`. Files over ``max_file_bytes``
  (default 512 MiB) are refused without being read.
* **Memory limit**: before decoding, the memory the decode will take is computed from the
  header (:func:`decode_memory`: the file's bytes, the decoder's output at its native sample
  type and channel count, the 8-bit BGR result, an orientation copy, and for a JPEG with more
  than one scan (progressive, or non-interleaved) libjpeg's whole-image coefficient buffer of
  128 bytes per 8x8 block and component, which reduced-size decoding does **not** shrink). A
  file whose decode would exceed ``max_decode_bytes`` (default
  ``max(DEFAULT_MAX_DECODE_BYTES, 16 * max_pixels)`` = 1 GiB at the default pixel limit) at
  every size it may be decoded at raises :class:`ImageTooLargeError` without decoding: e.g. a
  9 KB progressive JPEG whose header claims 32767 x 32767 (it would need 6 GiB) is refused
  with a peak memory of the process well under 300 MiB. Conversions after decoding work in
  bands of rows, so they add no full-size temporaries.
* **Colour**: grayscale becomes 3-channel BGR; 16-bit samples are scaled to 8 bit
  (``round(v / 257)``); float samples (float TIFF) are scaled by the range their largest finite
  value shows: at most 2 -> 0..1, at most 255.5 -> 0..255, at most 65535.5 -> 0..65535,
  otherwise 0..max (values are clipped to the range; NaN becomes 0). Images with an alpha
  channel (RGBA, gray + alpha, palette with transparency) are **composited on white** (a transparent
  background becomes white, not the undefined colour stored under it); an alpha channel that is
  zero everywhere is treated as absent (32-bit BMPs often store 0 there). CMYK JPEGs and TIFFs
  are converted by OpenCV.
* **Orientation**: the EXIF orientation tag (JPEG APP1, PNG ``eXIf``, WebP ``EXIF`` chunk, TIFF
  IFD0) is applied exactly once, so the returned image, and every coordinate computed on it, is
  upright as a viewer sees the photo. This matches ``cv2.imread``'s default for JPEG. The
  decoders are always made to return the stored orientation first (OpenCV's TIFF decoder
  orients by itself, so the tag is set to 1 in a copy of the bytes before decoding a TIFF).
* **Several frames**: a multi-page TIFF, an animated WebP or an animated PNG (APNG) is decoded
  as its first page / frame only; :attr:`DecodedImage.warnings` says so.
* **Integrity**: zero-byte files, a JPEG whose data ends before its end-of-image marker, a PNG
  without its ``IEND`` chunk, a header whose size cannot be read, and data OpenCV cannot decode
  are all refused (OpenCV's own behaviour on truncated data differs between versions, so the
  checks do not rely on it).
* **File names**: the file is read with :func:`numpy.fromfile` and decoded with
  :func:`cv2.imdecode`, so non-ASCII names work on every platform.

The header parsers (format sniffing, the JPEG, PNG, BMP, WebP and TIFF headers, EXIF
orientation, :class:`ImageHeader`) are in :mod:`facealign_cli.io.image_headers`; this module
turns their failures into :class:`ImageError` subclasses (:func:`read_header`) and re-exports
their public names.

Only ``numpy`` is imported at module level; OpenCV is imported on the first decode.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facealign_cli.io.image_headers import _PARSERS, ImageHeader, _HeaderError, sniff_format

__all__ = [
    "DEFAULT_MAX_DECODE_BYTES",
    "DEFAULT_MAX_FILE_BYTES",
    "DEFAULT_MAX_PIXELS",
    "CorruptImageError",
    "DecodedImage",
    "EmptyImageError",
    "ImageError",
    "ImageHeader",
    "ImageTooLargeError",
    "NotAnImageError",
    "TruncatedImageError",
    "UnreadableImageError",
    "UnsupportedImageError",
    "decode_memory",
    "float_range",
    "load_image",
    "read_header",
    "read_image",
    "sniff_format",
]

#: Largest number of pixels (width x height, from the header) decoded at full size.
DEFAULT_MAX_PIXELS = 50_000_000
#: Largest file, in bytes, that is read at all.
DEFAULT_MAX_FILE_BYTES = 512 * 1024 * 1024
#: Memory a single decode may take (see :func:`decode_memory`), in bytes, at the default pixel
#: limit; the default limit is ``max(DEFAULT_MAX_DECODE_BYTES, 16 * max_pixels)``.
DEFAULT_MAX_DECODE_BYTES = 1024 * 1024 * 1024
#: Memory allowed per pixel of ``max_pixels`` in the default memory limit.
_DECODE_BYTES_PER_PIXEL = 16
#: Pixels converted at a time after decoding (bounds the conversions' temporaries).
_BAND_PIXELS = 1 << 20
#: Decoders' working memory besides the image buffers (row buffers, tables, band temporaries).
_DECODER_OVERHEAD = 16 * 1024 * 1024
#: Reduction factors libjpeg can decode at directly.
_JPEG_REDUCTIONS = (2, 4, 8)


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class ImageError(ValueError):
    """A file cannot be used as an input image. ``str(err)`` is a one-line message naming the
    file; ``err.kind`` is a short machine-readable tag (also the subclass), ``err.path`` the
    path as given."""

    kind = "image_error"

    def __init__(self, path: str | os.PathLike, message: str):
        self.path = os.fspath(path)
        self.reason = message
        super().__init__(f"{self.path}: {message}")


class UnreadableImageError(ImageError):
    """The file does not exist, is not a regular file, or cannot be read (permissions, I/O)."""

    kind = "unreadable"


class EmptyImageError(ImageError):
    """The file has zero bytes."""

    kind = "empty"


class NotAnImageError(ImageError):
    """The file's leading bytes are not those of a supported image format (e.g. text named
    ``.jpg``)."""

    kind = "not_image"


class CorruptImageError(ImageError):
    """The file looks like an image but its header or data cannot be decoded."""

    kind = "corrupt"


class TruncatedImageError(CorruptImageError):
    """The file ends before the image data does (an interrupted copy or download)."""

    kind = "truncated"


class UnsupportedImageError(ImageError):
    """A valid image of a kind this tool does not handle (e.g. 32-bit integer samples)."""

    kind = "unsupported"


class ImageTooLargeError(ImageError):
    """The header announces more pixels (or the file has more bytes) than the limit."""

    kind = "too_large"


# --------------------------------------------------------------------------------------------
# Header parsing (no decoding)
# --------------------------------------------------------------------------------------------


def read_header(path: str | os.PathLike, data: bytes | None = None) -> ImageHeader:
    """Format, stored size and EXIF orientation of an image file, without decoding pixels.

    Args:
        path: the file (used for reading when ``data`` is None, and in messages).
        data: the file's bytes, if already read.

    Raises:
        UnreadableImageError, EmptyImageError, NotAnImageError, CorruptImageError,
        TruncatedImageError: see :func:`load_image`.
    """
    if data is None:
        data = _read_bytes(path, DEFAULT_MAX_FILE_BYTES)
    if len(data) == 0:
        raise EmptyImageError(path, "empty file (0 bytes)")
    fmt = sniff_format(data)
    if fmt is None:
        raise NotAnImageError(
            path,
            f"not a JPEG, PNG, BMP, WebP or TIFF image (file starts with {bytes(data[:8])!r})")
    try:
        return _PARSERS[fmt](data)
    except _HeaderError as exc:
        cls = TruncatedImageError if exc.truncated else CorruptImageError
        msg = str(exc)
        if fmt.upper() not in msg.upper():
            msg = f"{fmt.upper()} {msg}"
        raise cls(path, msg) from None


# --------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------


@dataclass
class DecodedImage:
    """A decoded input image and how it relates to the file.

    Attributes:
        image: (h, w, 3) uint8 BGR, C-contiguous, upright (EXIF orientation applied).
        width, height: size of the full-resolution upright image in pixels (what coordinates
            should be reported in); equal to ``image``'s size unless ``scale > 1``.
        scale: 1, or the JPEG reduction factor (2, 4 or 8) the image was decoded at; a point
            ``(x, y)`` of ``image`` is at ``(scale * x + (scale - 1) / 2, ...)`` in the full
            image (pixel-centre convention of :mod:`facealign_cli.core.face`).
        header: the parsed :class:`ImageHeader`.
        warnings: one-line notes on how the file was read (e.g. only the first of several
            frames), for the run's manifest.
    """

    image: np.ndarray
    width: int
    height: int
    scale: int
    header: ImageHeader
    warnings: tuple[str, ...] = ()


def decode_memory(hdr: ImageHeader, scale: int = 1, file_bytes: int = 0) -> int:
    """Bytes that decoding an image with header ``hdr`` at ``1/scale`` of its size takes at its
    peak (an upper estimate, not counting the interpreter and the libraries themselves).

    Counts a fixed 16 MiB of working memory, the file's bytes, the decoder's output (its
    native sample size and channel count; twice for deep samples and TIFF: their decoders go
    through a second buffer of that size), the 8-bit BGR result and a copy for the orientation,
    and, for a JPEG with several scans, libjpeg's whole-image coefficient buffer (2 bytes per
    coefficient, 64 per 8x8 block, every component at its sampling, in whole MCUs), which does
    not shrink with ``scale``; for a tiled TIFF, two buffers of one whole tile (OpenCV's and
    libtiff's), whatever the image's size.
    """
    w, h = hdr.width, hdr.height
    sw, sh = -(-w // scale), -(-h // scale)
    out8 = sw * sh * 3
    total = _DECODER_OVERHEAD + file_bytes + out8 * (2 if hdr.orientation != 1 else 1)
    if hdr.format == "jpeg":
        sampling = hdr.sampling or ((1, 1),) * 3
        hmax = max(a for a, _ in sampling)
        vmax = max(b for _, b in sampling)
        if len(sampling) != 3:  # gray is expanded to BGR; CMYK is decoded to 4 channels first
            total += sw * sh * len(sampling)
        if hdr.multi_scan:
            mcu_cols, mcu_rows = -(-w // (8 * hmax)), -(-h // (8 * vmax))
            total += sum(mcu_cols * a * mcu_rows * b * 128 for a, b in sampling)
    else:
        native = w * h * hdr.channels * hdr.sample_bytes
        # Deep samples are byte-swapped / converted through a second buffer, and libtiff may
        # read a whole-image strip before OpenCV copies it out.
        total += native * (2 if hdr.sample_bytes > 1 or hdr.format == "tiff" else 1)
        # a tiled TIFF: OpenCV's tile buffer and libtiff's, each a whole tile
        total += 2 * hdr.tile[0] * hdr.tile[1] * hdr.channels * hdr.sample_bytes
    return total


def _read_bytes(path: str | os.PathLike, max_file_bytes: int) -> bytes:
    """The file's bytes (one buffer; any file name), after the size check."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise UnreadableImageError(path, "no such file") from None
    except OSError as exc:
        raise UnreadableImageError(path, f"cannot access: {exc.strerror or exc}") from None
    if not p.is_file():
        raise UnreadableImageError(path, "not a regular file")
    if st.st_size > max_file_bytes:
        raise ImageTooLargeError(
            path, f"file is {st.st_size / 2**20:.0f} MiB, over the "
                  f"{max_file_bytes / 2**20:.0f} MiB limit")
    try:
        with open(p, "rb") as f:  # any path (non-ASCII included), one buffer, no copy
            return f.read()
    except OSError as exc:
        raise UnreadableImageError(path, f"cannot read: {exc.strerror or exc}") from None


def _apply_orientation(img: np.ndarray, orientation: int) -> np.ndarray:
    """Apply EXIF orientation ``orientation`` (1..8) to an (H, W[, C]) array (the same
    transforms as OpenCV's and every viewer's)."""
    import cv2

    if orientation == 2:
        img = cv2.flip(img, 1)
    elif orientation == 3:
        img = cv2.flip(img, -1)
    elif orientation == 4:
        img = cv2.flip(img, 0)
    elif orientation >= 5:
        img = cv2.transpose(img)
        if orientation == 6:
            img = cv2.flip(img, 1)
        elif orientation == 7:
            img = cv2.flip(img, -1)
        elif orientation == 8:
            img = cv2.flip(img, 0)
    return img


def _bands(img: np.ndarray):
    """Row slices of ``img`` of about :data:`_BAND_PIXELS` pixels each."""
    step = max(1, _BAND_PIXELS // max(1, img.shape[1]))
    for y in range(0, img.shape[0], step):
        yield slice(y, y + step)


def float_range(img: np.ndarray) -> float:
    """The value that float samples ``img`` map to 255 (see the module docstring): 1, 255,
    65535, or the largest finite value."""
    top = 0.0
    for band in _bands(img):
        part = img[band]
        finite = part[np.isfinite(part)]
        if finite.size:
            top = max(top, float(finite.max()))
    if top <= 2.0:
        return 1.0
    if top <= 255.5:
        return 255.0
    if top <= 65535.5:
        return 65535.0
    return top


def _to_uint8(path, img: np.ndarray) -> np.ndarray:
    """Samples of any supported type as uint8, converted band by band (no full-size float or
    32-bit temporaries)."""
    if img.dtype == np.uint8:
        return img
    out = np.empty(img.shape, np.uint8)
    if img.dtype == np.uint16:
        for band in _bands(img):
            out[band] = (img[band].astype(np.uint32) + 128) // 257
        return out
    if img.dtype in (np.float32, np.float64, np.float16):
        k = 255.0 / float_range(img)
        for band in _bands(img):
            f = np.nan_to_num(img[band].astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
            out[band] = np.clip(f * k + 0.5, 0.0, 255.0)
        return out
    raise UnsupportedImageError(path, f"unsupported sample type {img.dtype}")


def _to_bgr(path, img: np.ndarray) -> np.ndarray:
    """Any decoded layout (gray, gray+alpha, BGR, BGRA; 8/16-bit/float) to (H, W, 3) uint8."""
    import cv2

    img = _to_uint8(path, img)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    c = img.shape[2]
    if c == 1:
        return cv2.cvtColor(img[:, :, 0], cv2.COLOR_GRAY2BGR)
    if c == 3:
        return img
    if c in (2, 4):
        colour, alpha = img[:, :, :-1], img[:, :, -1]
        if c == 2:
            colour = cv2.cvtColor(colour[:, :, 0], cv2.COLOR_GRAY2BGR)
        if not alpha.any():  # all-transparent alpha is padding, not transparency
            return np.ascontiguousarray(colour)
        out = np.empty(colour.shape, np.uint8)
        for band in _bands(colour):
            a = alpha[band].astype(np.float32)[:, :, None] / 255.0
            out[band] = colour[band].astype(np.float32) * a + 255.0 * (1.0 - a) + 0.5
        return out
    raise UnsupportedImageError(path, f"unsupported channel count {c}")


def to_bgr(image) -> np.ndarray:
    """An image array in any layout :func:`read_image` decodes (grey (H, W) or (H, W, 1), grey
    + alpha, BGR, BGRA; uint8, uint16 or float samples) as (H, W, 3) uint8 BGR, converted as
    :func:`read_image` converts a file's (alpha composited on white). An (H, W, 3) uint8 array
    is returned as it is (no copy).

    Raises:
        UnsupportedImageError: not an image array (another rank, channel count or sample
            type, or empty); its ``path`` is ``"<array>"``.
    """
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] == 3 and a.dtype == np.uint8 and a.size:
        return a
    if a.ndim not in (2, 3) or a.size == 0:
        raise UnsupportedImageError("<array>", f"not an image: an array of shape {a.shape}; "
                                    "expected (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)")
    return _to_bgr("<array>", a)


def read_image(path: str | os.PathLike, *, max_pixels: int | None = None,
               max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
               max_decode_bytes: int | None = None) -> DecodedImage:
    """Read and decode one image file safely (see the module docstring for the policy).

    Args:
        path: file path (str or PathLike; any characters).
        max_pixels: full-size decode limit in pixels; default :data:`DEFAULT_MAX_PIXELS`.
        max_file_bytes: files larger than this are refused unread.
        max_decode_bytes: memory limit of the decode (:func:`decode_memory`); default
            ``max(DEFAULT_MAX_DECODE_BYTES, 16 * max_pixels)``.

    Returns:
        A :class:`DecodedImage` (image (h, w, 3) uint8 BGR, upright).

    Raises:
        UnreadableImageError: missing, not a file, or unreadable.
        EmptyImageError: zero bytes.
        NotAnImageError: not a supported image format (judged by content, not name).
        TruncatedImageError: the file is cut short.
        CorruptImageError: the header or data cannot be decoded.
        ImageTooLargeError: over the pixel limit (and not a JPEG that can be decoded reduced),
            over the file size limit, or needing more memory than ``max_decode_bytes`` at
            every size it may be decoded at.
        UnsupportedImageError: an unusual sample type or channel count.
    """
    if max_pixels is None:
        max_pixels = DEFAULT_MAX_PIXELS
    if max_decode_bytes is None:
        max_decode_bytes = max(DEFAULT_MAX_DECODE_BYTES, _DECODE_BYTES_PER_PIXEL * max_pixels)
    data = _read_bytes(path, max_file_bytes)
    hdr = read_header(path, data)
    pixels = hdr.width * hdr.height
    scales = (1,) + (_JPEG_REDUCTIONS if hdr.format == "jpeg" else ())
    fitting = [k for k in scales if -(-hdr.width // k) * -(-hdr.height // k) <= max_pixels]
    if not fitting:
        raise ImageTooLargeError(
            path, f"{hdr.width}x{hdr.height} = {pixels / 1e6:.1f} megapixels, over the "
                  f"{max_pixels / 1e6:g} megapixel limit")
    need = {k: decode_memory(hdr, k, len(data)) for k in fitting}
    within = [k for k in fitting if need[k] <= max_decode_bytes]
    if not within:
        k = fitting[-1]
        what = ("progressive " if hdr.multi_scan else "") + hdr.format.upper()
        raise ImageTooLargeError(
            path, f"{what} of {hdr.width}x{hdr.height} pixels: decoding it "
                  f"{'at 1/' + str(k) + ' size ' if k > 1 else ''}needs about "
                  f"{need[k] / 2**20:.0f} MiB, over the {max_decode_bytes / 2**20:.0f} MiB "
                  f"memory limit")
    scale = within[0]
    if hdr.format == "tiff" and hdr.orientation != 1 and hdr.orientation_offset >= 0:
        # OpenCV's TIFF decoder applies the orientation tag itself (on some of its paths):
        # make it return the stored image, which is then turned once, below.
        buf = bytearray(data)
        order = "<" if buf[:2] == b"II" else ">"
        struct.pack_into(order + "H", buf, hdr.orientation_offset, 1)
        data = buf

    import cv2

    if hdr.format == "jpeg":
        # JPEG has neither alpha nor 16-bit samples; IMREAD_COLOR also converts CMYK.
        flags = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2,
                 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}[scale]
        flags |= cv2.IMREAD_IGNORE_ORIENTATION
    elif hdr.cmyk:
        flags = cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH | cv2.IMREAD_IGNORE_ORIENTATION
    else:
        flags = cv2.IMREAD_UNCHANGED  # keeps alpha and 16 bit; ignores orientation
    try:
        img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    except cv2.error as exc:
        msg = str(exc).strip().splitlines()[-1] if str(exc).strip() else "decoder error"
        raise CorruptImageError(path, f"{hdr.format.upper()} decoder error: {msg}") from None
    del data
    if img is None or img.size == 0:
        raise CorruptImageError(path,
                                f"{hdr.format.upper()} data cannot be decoded (corrupt file?)")
    img = _to_bgr(path, img)
    img = np.ascontiguousarray(_apply_orientation(img, hdr.orientation))
    w, h = hdr.oriented_size
    if scale == 1 and (img.shape[1], img.shape[0]) != (w, h):
        # Trust the decoder's size (e.g. a multi-page file); coordinates refer to it.
        h, w = img.shape[:2]
    warnings = []
    if hdr.frames > 1:
        kind = "pages" if hdr.format == "tiff" else "frames"
        warnings.append(f"the file holds {hdr.frames} {kind}; only the first is used")
    return DecodedImage(image=img, width=int(w), height=int(h), scale=scale, header=hdr,
                        warnings=tuple(warnings))


def load_image(path: str | os.PathLike, *, max_pixels: int | None = None) -> np.ndarray:
    """Read an image file as an upright ``(H, W, 3)`` ``uint8`` BGR array.

    The shorthand of :func:`read_image` for callers that do not care about the size limit's
    reduced decoding: a JPEG over ``max_pixels`` comes back reduced (use :func:`read_image`
    to learn the factor).

    Raises:
        ImageError: (a subclass of) for every file that cannot be used; see :func:`read_image`.
    """
    return read_image(path, max_pixels=max_pixels).image
