"""Helpers of the command-line tests: run the CLI in this process, write small test images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from click.testing import CliRunner

from facealign_cli.cli.main import main


def invoke(args, **kw):
    """``facealign ARGS`` in this process (click's runner; exceptions propagate)."""
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False, **kw)


def write_image(path: Path, value=90, h=60, w=80) -> None:
    """A small two-tone (h, w) image encoded by the file's extension."""
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.full((h, w, 3), value, np.uint8)
    img[h // 2:, : w // 2] = 200
    path.write_bytes(cv2.imencode(path.suffix, img)[1].tobytes())
