"""The batch engine behind the image commands (see ``docs/batch.md``).

Modules, one concern each: :mod:`~facealign_cli.batch.options` (settings, errors, exit
codes), :mod:`~facealign_cli.batch.commands` (one object per command: what it runs and how it
encodes its outputs), :mod:`~facealign_cli.batch.result` (the frozen per-image result),
:mod:`~facealign_cli.batch.worker` (one image in, a result out; the model cache of a process),
:mod:`~facealign_cli.batch.executors` (in-process, local worker processes, Dask),
:mod:`~facealign_cli.batch.state` (lock, resume records, the one commit path),
:mod:`~facealign_cli.batch.progress` (progress bar and messages) and
:mod:`~facealign_cli.batch.runner` (:func:`run_batch`).
"""

from __future__ import annotations

_EXPORTS = {"run_batch": "runner", "RunOptions": "options", "RunSummary": "options",
            "BatchError": "options", "OutputLockedError": "options",
            "ModelLoadError": "options", "ImageResult": "result", "COMMANDS": "commands"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
