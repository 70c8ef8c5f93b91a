"""Fixtures for end-to-end runs of the real model (imported by test modules that need them):
where the sample photos are, and which regressor checkpoint to use. Each skips cleanly while a
piece is missing (data folder, default detector, 3DMM basis, mesh support)."""

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


def _find_weights(tmp_factory) -> Path:
    for cand in (os.environ.get("FACEALIGN_WEIGHTS"), REPO / "weights" / "facealign_v1.pth",
                 REPO / "runs" / "smoke" / "model.pth"):
        if cand and Path(cand).is_file():
            return Path(cand)
    # No trained weights yet: a throwaway, randomly initialised checkpoint is enough to check
    # output schemas (not accuracy).
    import numpy as np
    import torch

    from facealign_cli.regressor import FaceAlignNet

    mean = np.zeros(62, np.float32)
    mean[[0, 5, 10]] = 1.2e-3  # scaled-orthographic camera: ~120 px face in the crop
    mean[[3, 7]] = 60.0
    std = np.full(62, 1e-3, np.float32)
    path = tmp_factory.mktemp("weights") / "throwaway.pth"
    torch.manual_seed(0)
    torch.save({"model": FaceAlignNet("fan_s").state_dict(), "arch": "fan_s", "stem": 16,
                "input_size": 120, "param_mean": mean, "param_std": std}, path)
    return path


@pytest.fixture(scope="session")
def real_weights(tmp_path_factory) -> Path:
    """A regressor checkpoint for end-to-end runs; skips when the model core is incomplete
    (default detector, 3DMM basis)."""
    try:
        from facealign_cli.detector import BlazeFaceDetector  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"default detector not available yet: {exc}")
    try:
        from facealign_cli.morphable_model import basis_dir

        basis_dir()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"3DMM basis not available: {exc}")
    return _find_weights(tmp_path_factory)


@pytest.fixture(scope="session")
def mesh_ready(real_weights):
    """Skips unless mesh writing and the face topology exist; returns the checkpoint."""
    try:
        from facealign_cli import mesh_io  # noqa: F401
        from facealign_cli.morphable_model import load_face_topology

        load_face_topology()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"mesh support not available yet: {exc}")
    return real_weights
