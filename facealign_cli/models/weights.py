"""Where the regressor's files are, and their checksums (no torch import: the ONNX Runtime path
and ``facealign --help`` use this without loading torch)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

DEFAULT_WEIGHTS_NAME = "facealign_v1.pth"

#: Values of ``--runtime`` / ``$FACEALIGN_RUNTIME`` (see
#: :func:`facealign_cli.models.regressor_onnx.make_regressor`).
RUNTIMES = ("auto", "onnxruntime", "torch")


def default_weights_path() -> Path:
    """Where the shipped weights are looked up: ``$FACEALIGN_WEIGHTS`` if set, else
    ``weights/facealign_v1.pth`` at the root of the source tree (editable install)."""
    env = os.environ.get("FACEALIGN_WEIGHTS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "weights" / DEFAULT_WEIGHTS_NAME


def sha256_of(path: str | Path) -> str:
    """Hex sha256 of a file (read in 1 MiB chunks).

    Raises:
        OSError: the file cannot be read.
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
