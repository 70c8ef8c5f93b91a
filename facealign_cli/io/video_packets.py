"""The size of a video's frames before they are decoded, read from the compressed packets.

OpenCV's FFmpeg backend decodes a frame at the size its packet says (a 16000 x 16000 frame
in a video that declares 480 x 360 takes 256 MB or more inside FFmpeg) and then returns it at
the declared size, squashed: neither the memory nor the distortion can be seen from the
returned frames, and OpenCV passes no option (``max_pixels``) to FFmpeg's decoder.
:class:`PacketSizeGuard` reads the packets themselves (a second ``cv2.VideoCapture`` in
OpenCV's demuxer-only mode, ``CAP_PROP_FORMAT = -1``: nothing decoded) ahead of the decoder
and raises before a frame larger than declared, or over the pixel limit, is decoded.

Codecs covered: those whose every packet is a JPEG image (:data:`JPEG_PACKET_FOURCCS`:
Motion JPEG in AVI, MOV or MKV), whose frame size is in each packet's start-of-frame header
(:func:`facealign_cli.io.images.read_header`). Other codecs carry their size in sequence
headers that are not parsed here; for them only the declared size is checked.
"""

from __future__ import annotations

import os

#: Four-character codes (upper-cased) of the codecs whose packets are JPEG images.
JPEG_PACKET_FOURCCS = frozenset({"MJPG", "MJPA", "AVRN", "JPEG", "DMB1"})
#: How many packets the guard reads ahead of the frame about to be decoded (more than the
#: frames a decoder holds back, threads included).
LOOKAHEAD = 64


class PacketSizeGuard:
    """Check the frame size of each packet of a JPEG-packet video before it is decoded.

    Args:
        path: the video file.
        fourcc: its codec's four-character code (:attr:`facealign_cli.io.video.VideoInfo.
            fourcc`); for another codec the guard does nothing.
        declared: ``(width, height)`` the container declares.
        check: ``(width, height, what) -> None``, raising for a frame over the limit
            (:class:`facealign_cli.io.video.VideoReader`'s own pixel check).
        too_large: the exception class raised for a frame larger than declared.

    Raises:
        ``too_large`` (from :meth:`ensure`): a packet's frame is wider or taller than
            declared, or over the limit (``check``).
    """

    def __init__(self, path: str | os.PathLike, fourcc: str, declared: tuple[int, int],
                 check, too_large: type[Exception]):
        self.path = os.fspath(path)
        self.declared = declared
        self._check = check
        self._too_large = too_large
        self._read = 0  # packets checked
        self._cap = None
        if fourcc.upper() in JPEG_PACKET_FOURCCS:
            import cv2

            cap = cv2.VideoCapture(self.path, cv2.CAP_FFMPEG, [cv2.CAP_PROP_FORMAT, -1])
            if cap.isOpened():
                self._cap = cap
            else:  # pragma: no cover - the decoding capture opened the same file
                cap.release()

    def ensure(self, index: int) -> None:
        """Check the packets up to frame ``index + LOOKAHEAD`` (0-based; end of stream: stop)."""
        from facealign_cli.io.images import ImageError, read_header

        while self._cap is not None and self._read <= index + LOOKAHEAD:
            if not self._cap.grab():
                self.close()
                return
            ok, packet = self._cap.retrieve()
            n = self._read
            self._read += 1
            if not ok or packet is None:
                continue
            try:
                hdr = read_header(self.path, packet.tobytes())
            except ImageError:
                continue  # not a JPEG after all: the decoder reports a broken packet
            w, h = hdr.width, hdr.height
            dw, dh = self.declared
            if w > dw or h > dh:
                self.close()
                raise self._too_large(
                    f"{self.path}: frame {n} is {w} x {h}, larger than the {dw} x {dh} its "
                    "container declares; not decoded (the video's frames must all have the "
                    "declared size)")
            self._check(w, h, f"frame {n} is")

    def close(self) -> None:
        """Release the demuxer."""
        if self._cap is not None:
            self._cap.release()
            self._cap = None
