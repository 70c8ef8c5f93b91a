"""Fixtures of the command-line tests."""

from __future__ import annotations

import cv2
import numpy as np
import pytest


@pytest.fixture()
def fake_model(monkeypatch):
    """Every run of the command line in this process uses the fast fake model instead of the
    real one (through ``RunOptions.aligner_factory``, the documented plug-in point)."""
    from fakes import fake_factory, fake_run_options

    import facealign_cli.batch.options as options

    monkeypatch.setattr(options, "RunOptions", fake_run_options(fake_factory))


@pytest.fixture()
def photos(tmp_path):
    """``tmp_path/in`` with two noise photos, ``a.jpg`` and ``b.jpg`` (80 x 100), and an
    unreadable ``bad.jpg``."""
    d = tmp_path / "in"
    d.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        cv2.imwrite(str(d / f"{name}.jpg"), rng.integers(0, 200, (80, 100, 3), np.uint8))
    (d / "bad.jpg").write_bytes(b"not an image")
    return d
