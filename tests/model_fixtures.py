"""Fixtures for end-to-end runs of the real model (imported by test modules that need them):
where the sample photos are (skipped cleanly when the data folder is absent), and the shipped
regressor checkpoint (required)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """``$FACEALIGN_SHARED`` or ``../shared`` beside the repository."""
    env = os.environ.get("FACEALIGN_SHARED")
    return Path(env) if env else REPO.parent / "shared"


@pytest.fixture(scope="session")
def afw_photos() -> list[Path]:
    """Three real photos from the sample archive (skips when the data is absent)."""
    folder = shared_dir() / "data" / "photos" / "afw"
    photos = sorted(folder.glob("*.jpg"))[:3] if folder.is_dir() else []
    if len(photos) < 3:
        pytest.skip(f"sample photos not found in {folder}")
    return photos


def _find_weights() -> Path:
    """The shipped regressor weights (or ``$FACEALIGN_WEIGHTS``); they are part of the
    repository, so a missing file is a failure, not a skip."""
    from facealign_cli.models.weights import default_weights_path

    # the library reads no environment variable: the variable is honoured here, as the CLI does
    env = os.environ.get("FACEALIGN_WEIGHTS")
    path = Path(env) if env else default_weights_path()
    assert path.is_file(), f"regressor weights missing: {path}"
    return path


@pytest.fixture(scope="session")
def real_weights() -> Path:
    """The regressor checkpoint for end-to-end runs (the shipped weights)."""
    return _find_weights()


@pytest.fixture(scope="session")
def mesh_ready(real_weights):
    """The checkpoint, once the face topology has loaded (a missing topology fails)."""
    from facealign_cli.core.morphable_model import load_face_topology

    load_face_topology()
    return real_weights
