"""Fixtures of the command-line tests."""

from __future__ import annotations

import pytest


@pytest.fixture()
def fake_model(monkeypatch):
    """Every run in this process uses the fast fake model instead of the real one."""
    from fakes import fake_factory

    import facealign_cli.batch.worker as worker

    monkeypatch.setattr(worker, "build_aligner", fake_factory)
