"""The settings file of a run: ``<out>/.facealign/settings/<command>.json`` records the command
and every setting that changes its outputs (see ``docs/batch.md``).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from facealign_cli.batch.commands.base import quality_filter_on
from facealign_cli.batch.layout import STATE_DIR
from facealign_cli.batch.options import RunOptions
from facealign_cli.io import records


def settings_path(out: Path, command: str) -> Path:
    """``<out>/.facealign/settings/<command>.json``: the settings of the command's last run
    in ``out``, beside its manifest (written when the manifest is opened)."""
    return out / STATE_DIR / "settings" / f"{command}.json"


def run_settings(cmd, opts: RunOptions) -> dict[str, Any]:
    """What :func:`settings_path` records: the command and every setting that
    changes its outputs (a video's resume fingerprint: a photo's, and under ``video`` the
    settings of videos, ``render``'s ``codec`` among them; with the settings it leaves out at
    their defaults spelled out: :meth:`AlignerSettings.spelled_out
    <facealign_cli.core.settings.AlignerSettings.spelled_out>`, ``pose_convention`` for the
    commands whose outputs hold pose angles), and for the regressing commands
    ``quality_filter``: whether ``--min-quality`` dropped faces (false with ``--no-flip`` or
    ``--min-quality 0``; :func:`~facealign_cli.batch.commands.base.quality_filter_on`); then
    ``device`` (``--device``, as asked) and ``execution_provider``, the ONNX Runtime provider
    the models ran on (:func:`~facealign_cli.batch.worker.run_provider`; null on Dask, where
    each worker chooses): neither is in the resume fingerprint (outputs equal within float
    rounding).

    Raises:
        ModelLoadError: the device is not available.
    """
    from facealign_cli.batch.worker import run_provider

    settings = {**cmd.video_fingerprint(opts), **opts.aligner.spelled_out(
        cmd.uses_regressor, pose=cmd.pose_convention(opts) is not None)}
    if cmd.uses_regressor:
        settings["quality_filter"] = quality_filter_on(opts)
    settings.update(device=opts.aligner.device, execution_provider=run_provider(opts))
    return {"command": cmd.name, "settings": settings}


def write_settings(path: Path, settings: dict[str, Any]) -> None:
    """Write the run's settings, unless the file already says the same (a re-run with the same
    settings touches nothing but the manifest)."""
    with contextlib.suppress(OSError, ValueError):
        if records.read_json(path) == settings:
            return
    records.write_json(path, settings, indent=None)
