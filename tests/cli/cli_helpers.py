"""Helpers of the command-line tests: run the CLI in this process, write small test images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from click.testing import CliRunner

from facealign_cli.batch.manifest import read_manifest as _read_manifest
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


def image_folder(root: Path, n: int) -> Path:
    """``root`` with ``n`` small JPEGs ``p000.jpg`` ... of different brightness."""
    for i in range(n):
        write_image(root / f"p{i:03d}.jpg", value=40 + (5 * i) % 150)
    return root


def read_manifest(out: Path) -> list[dict]:
    """The lines of ``out/manifest.jsonl`` of its last run, parsed."""

    return _read_manifest(out / "manifest.jsonl")
