"""What a run keeps in ``<out>/.facealign/``: the lock, and the one place where a result's
files are written (:func:`commit`). Which items are done lives in the run-state database
(:mod:`facealign_cli.batch.run_db`, :mod:`facealign_cli.batch.resume`): an item's row is
recorded after its outputs are in place; when an item is redone, the outputs of its old row
that the new run does not produce are removed here.

**Locking**: ``<out>/.facealign/lock`` is held (``flock``) for the whole run; a second run on
the same ``<out>`` fails at once with :class:`OutputLockedError`. The lock dies with the
process, so a crashed run never leaves a stale lock.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence
from pathlib import Path

from facealign_cli.batch.errors import OutputLockedError
from facealign_cli.batch.layout import STATE_DIR, THUMBS_DIR, is_reserved_name
from facealign_cli.batch.result import ImageResult, SpoolFile, discard_spools
from facealign_cli.io import records
from facealign_cli.io.inputs import fold_key, is_safe_rel, iter_files


class UnsafeOutputError(ValueError):
    """An output path would leave ``--out`` or take one of the run's own names (an output
    key not made by :func:`facealign_cli.io.inputs.collect_inputs` with the batch engine's
    ``reserved`` names): the image fails, nothing is written for it."""


def out_path(out: Path, rel: str) -> Path:
    """The output file ``rel`` (``/``-separated, relative to ``out``) of an image.

    Raises:
        UnsafeOutputError: ``rel`` would leave ``out`` (an empty, ``.`` or ``..`` component),
            or its first component is one of the run's own names
            (:func:`facealign_cli.batch.layout.is_reserved_name`; ``.thumbs/`` excepted, where
            ``render --sheet`` puts each image's thumbnail).
    """
    if not is_safe_rel(rel):
        raise UnsafeOutputError(f"output {rel!r} leaves the output folder")
    top = rel.split("/", 1)[0]
    if is_reserved_name(fold_key(top)) and not (top == THUMBS_DIR and "/" in rel):
        raise UnsafeOutputError(f"output {rel!r} would take the name of the run's own {top!r}")
    return out.joinpath(*rel.split("/"))


class OutputLock:
    """Exclusive lock on ``<out>/.facealign/lock`` for the duration of a run.

    Raises:
        OutputLockedError: another process holds it.
    """

    def __init__(self, out: Path):
        self.path = Path(out) / STATE_DIR / "lock"
        self._f = None

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = open(self.path, "a+")
        try:
            _lock_file(f)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "unknown process"
            f.close()
            raise OutputLockedError(
                f"output folder {self.path.parent.parent} is in use by another facealign run "
                f"({holder}); wait for it to finish or choose another --out") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}")
        f.flush()
        self._f = f
        return self

    def __exit__(self, *exc):
        if self._f is not None:
            with contextlib.suppress(OSError):
                self._f.seek(0)
                self._f.truncate()
                _lock_file(self._f, release=True)
            self._f.close()
            self._f = None


def _lock_file(f, *, release: bool = False) -> None:
    """Take (exclusive, without waiting: ``OSError`` when another process holds it) or, with
    ``release``, give back the lock of the open file ``f``: ``fcntl.flock``, or on Windows
    ``msvcrt``'s lock of its first byte."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        import msvcrt

        f.seek(0)
        msvcrt.locking(f.fileno(), msvcrt.LK_UNLCK if release else msvcrt.LK_NBLCK, 1)
        return
    fcntl.flock(f.fileno(), fcntl.LOCK_UN if release else fcntl.LOCK_EX | fcntl.LOCK_NB)


def _remove_stale(out: Path, old_outputs: Sequence[str], keep: Sequence[str]) -> None:
    """Delete the outputs an earlier run listed for an item that this run does not produce."""
    for rel in old_outputs:
        if rel in keep:
            continue
        with contextlib.suppress(OSError, UnsafeOutputError):  # run-wide files and anything
            out_path(out, rel).unlink()                        # outside <out> are kept


def _check_free(out: Path, target: Path) -> None:
    """Raise :class:`UnsafeOutputError` when ``target`` (under ``out``) cannot be a file: it
    is a folder, or one of its folders under ``out`` is a file (another input's output, or
    anything else already there)."""
    if target.is_dir():
        raise UnsafeOutputError(f"{target.relative_to(out).as_posix()} is a folder; the file "
                                "of that name cannot be written")
    for parent in target.relative_to(out).parents:
        p = out / parent
        if parent != Path(".") and p.exists() and not p.is_dir():
            raise UnsafeOutputError(f"{parent.as_posix()} is a file; "
                                    f"{target.relative_to(out).as_posix()} cannot be written")


def commit(out: Path | None, command: str, res: ImageResult,
           old_outputs: Sequence[str] = ()) -> ImageResult:
    """Write one image's result under ``out``, for every backend: its output files (each
    atomically), then the removal of the outputs of its earlier run (``old_outputs``) that
    it does not produce again. The caller records the item in the run state afterwards
    (:meth:`facealign_cli.batch.resume.RunState.record`), so an item counts as done only once
    all its outputs are in place. A write error, or a path that a folder or a file already
    holds the other way (a file where a folder must go), turns the result into a failure,
    and the files of it already written are removed.

    Returns:
        The result as recorded (without the files' content).
    """
    if out is None or res.status == "skipped" or res.done is None:
        discard_spools(res.files)
        return res.committed()
    written: list[Path] = []
    try:
        targets = [out_path(out, rel) for rel, _ in res.files]  # all checked before any write
        for target in targets:
            _check_free(out, target)
        for target, (_rel, data) in zip(targets, res.files):
            with records.atomic_open(target, "wb") as f:
                if isinstance(data, SpoolFile):  # a video's output, streamed from disk
                    data.copy_to(f)
                else:
                    f.write(data)
            written.append(target)
        _remove_stale(out, old_outputs, res.done.outputs)
    except Exception as exc:  # a write error fails this image, not the run: nothing of it
        for target in written:  # is left (its outputs are listed nowhere)
            with contextlib.suppress(OSError):
                target.unlink()
        return res.failed_with(exc)
    discard_spools(res.files)
    return res.committed()


def clean_stale_temp_files(out: str | os.PathLike) -> int:
    """Remove the temporary files a killed run left under ``out``: only names this tool gives
    them (:func:`facealign_cli.io.records.is_temp_name`, ``.<name>.<8>.facealign-tmp``), never
    anyone else's hidden ``.tmp`` files; symbolic links to folders are not followed.

    Call it only while holding the output lock: a running writer's file would go too.

    Returns:
        The number of files removed.
    """
    n = 0
    for dirpath, name in iter_files(out):
        if records.is_temp_name(name):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(dirpath, name))
                n += 1
    return n
