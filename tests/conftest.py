"""Shared test fixtures: where the data folder is, and thread settings for a small CI box."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# OpenMP threads that spin while waiting slow everything down on a 2-core machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# end-to-end fixtures of the real model, for every test module (sample photos, shipped weights)
from model_fixtures import afw_photos, mesh_ready, real_weights  # noqa: E402,F401

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACEALIGN_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared() -> Path:
    """The data folder ``../shared`` (or ``$FACEALIGN_SHARED``); skips the test when absent."""
    if not (SHARED / "data").is_dir():
        pytest.skip(f"data folder {SHARED} not found")
    return SHARED
