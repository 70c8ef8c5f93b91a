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


@pytest.fixture()
def deep_tmp(tmp_path):
    """``tmp_path``, emptied afterwards without recursion, for trees deeper than the recursion
    limit (pytest's clean-up, Python 3.11's ``shutil.rmtree``, recurses once per level)."""
    yield tmp_path
    folders, stack = [], [str(tmp_path)]
    while stack:
        d = stack.pop()
        folders.append(d)
        with os.scandir(d) as it:
            for e in it:
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
                else:
                    os.unlink(e.path)
    for d in reversed(folders[1:]):
        os.rmdir(d)


@pytest.fixture(scope="session")
def shared() -> Path:
    """The data folder ``../shared`` (or ``$FACEALIGN_SHARED``); skips the test when absent."""
    if not (SHARED / "data").is_dir():
        pytest.skip(f"data folder {SHARED} not found")
    return SHARED


def _shared_path(shared: Path, rel: str, what: str) -> Path:
    path = shared / rel
    if not path.exists():
        pytest.skip(f"{what} not found at {path}")
    return path


@pytest.fixture(scope="session")
def aflw2000_dir(shared) -> Path:
    """AFLW2000-3D with its ``3ddfa-protocol`` folder (``../shared/data/aflw2000-3d``); skips
    the test when absent."""
    return _shared_path(shared, "data/aflw2000-3d/3ddfa-protocol", "AFLW2000-3D").parent


@pytest.fixture(scope="session")
def teacher_weights(shared) -> Path:
    """The 3DDFA-V2 teacher checkpoint ``mb05_120x120.pth`` (its mean/std ``.pkl`` beside it);
    skips the test when absent."""
    return _shared_path(shared, "teacher/mb05_120x120.pth", "teacher weights")


@pytest.fixture(scope="session")
def w300_afw_dir(shared) -> Path:
    """300-W AFW training crops (``images/`` + ``labels.npz`` with ``pts68``); skips the test
    when absent."""
    return _shared_path(shared, "data/300w-train/afw/labels.npz", "300-W AFW crops").parent


@pytest.fixture(scope="session")
def afw_annotated_dir(shared) -> Path:
    """The AFW photo archive with its ``annotations.json`` (68 points per annotated face);
    skips the test when absent."""
    return _shared_path(shared, "data/photos/afw/annotations.json", "AFW annotations").parent
