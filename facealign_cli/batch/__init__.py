"""The batch engine behind the image commands (see ``docs/batch.md``).

Modules, one concern each: :mod:`~facealign_cli.batch.options` (a run's settings),
:mod:`~facealign_cli.batch.errors` (run-level errors, exit codes),
:mod:`~facealign_cli.batch.layout` (the names a run writes under ``--out``),
:mod:`~facealign_cli.batch.commands` (one module per command: what it runs and how its
per-item writer encodes the outputs), :mod:`~facealign_cli.batch.sources` (a photo is a
one-frame source, a video a many-frame one), :mod:`~facealign_cli.batch.items` (the one item
path, :func:`~facealign_cli.batch.items.process_item`), :mod:`~facealign_cli.batch.spools`
(a video's outputs in temporary files), :mod:`~facealign_cli.batch.result` (the frozen
per-item result, the run's summary), :mod:`~facealign_cli.batch.record_types` (the typed
records written and read back: done record, a video's frame counts, ``pose.csv`` rows),
:mod:`~facealign_cli.batch.worker` (where items run: the model cache of a run or worker
process), :mod:`~facealign_cli.batch.executors` (in-process, local worker processes, Dask),
:mod:`~facealign_cli.batch.stopping` (a run's stop flag, the stop signals),
:mod:`~facealign_cli.batch.state` (lock, resume records, the one commit path),
:mod:`~facealign_cli.batch.recorder` (manifest, ``pose.csv``, NDJSON, counts),
:mod:`~facealign_cli.batch.progress` (progress bar and messages) and
:mod:`~facealign_cli.batch.runner` (:func:`run_batch`).
"""

from __future__ import annotations

_EXPORTS = {"run_batch": "runner", "RunOptions": "options", "RunSummary": "result",
            "BatchError": "errors", "OutputLockedError": "errors",
            "ModelLoadError": "errors", "ImageResult": "result", "COMMANDS": "commands",
            "StopFlag": "stopping"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
