"""What a run keeps in ``<out>/.facealign/``: the lock, the per-image done records (resume),
and the one place where a result's files are written (:func:`commit`).

**Resume**: after an image's outputs are written, a small record is written to
``<out>/.facealign/done/<command>/<key>.json`` (atomically, last). A later run skips an image
whose record exists, whose listed outputs all exist and whose settings (command, mesh format,
``max_faces``, weights) match. When an image is redone, the outputs of its old record that the
new run does not produce are removed.

**Locking**: ``<out>/.facealign/lock`` is held (``flock``) for the whole run; a second run on
the same ``<out>`` fails at once with :class:`OutputLockedError`. The lock dies with the
process, so a crashed run never leaves a stale lock.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from facealign_cli.batch.commands import Command
from facealign_cli.batch.options import (
    STATE_DIR,
    THUMBS_DIR,
    OutputLockedError,
    RunOptions,
    is_reserved_name,
)
from facealign_cli.batch.record_types import DoneRecord
from facealign_cli.batch.result import ImageResult, SpoolFile, discard_spools
from facealign_cli.io import records
from facealign_cli.io.inputs import InputItem, fold_key, is_safe_rel, iter_files


class UnsafeOutputError(ValueError):
    """An output path would leave ``--out`` or take one of the run's own names (an output
    key not made by :func:`facealign_cli.io.inputs.collect_inputs` with the batch engine's
    ``reserved`` names): the image fails, nothing is written for it."""


def done_path(out: Path, command: str, key: str) -> Path:
    """``<out>/.facealign/done/<command>/<key>.json``.

    Raises:
        UnsafeOutputError: ``key`` has an empty, ``.`` or ``..`` component.
    """
    if not key or not is_safe_rel(key):
        raise UnsafeOutputError(f"output key {key!r} leaves the output folder")
    return out / STATE_DIR / "done" / command / (key + ".json")


def out_path(out: Path, rel: str) -> Path:
    """The output file ``rel`` (``/``-separated, relative to ``out``) of an image.

    Raises:
        UnsafeOutputError: ``rel`` would leave ``out`` (an empty, ``.`` or ``..`` component),
            or its first component is one of the run's own names
            (:func:`facealign_cli.batch.options.is_reserved_name`; ``.thumbs/`` excepted, where
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


def read_done(out: Path, command: str, key: str) -> DoneRecord | None:
    """The done record of ``key`` (:meth:`DoneRecord.from_json
    <facealign_cli.batch.record_types.DoneRecord.from_json>`), or None: none, unreadable, or
    not a valid record."""
    try:
        return DoneRecord.from_json(records.read_json(done_path(out, command, key)))
    except (OSError, ValueError):  # (an unsafe key: UnsafeOutputError, a ValueError)
        return None


def check_done(cmd: Command, opts: RunOptions, out: Path, item: InputItem, fp: dict
               ) -> DoneRecord | None:
    """The done record of an earlier run if ``item`` can be skipped (same settings
    fingerprint ``fp``, its outputs present, ``pose``: its rows recorded), else None."""
    rec = read_done(out, cmd.name, item.key)
    if rec is None or rec.fingerprint != fp:
        return None
    if not cmd.outputs_present(out, list(rec.outputs)):
        return None
    if cmd.table and rec.rows is None:
        return None
    return rec


def _remove_stale(out: Path, command: str, key: str, keep: Sequence[str]) -> None:
    """Delete outputs listed by an earlier run's done record that this run does not produce."""
    old = read_done(out, command, key)
    for rel in old.outputs if old is not None else ():
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


def commit(out: Path | None, command: str, res: ImageResult) -> ImageResult:
    """Write one image's result under ``out``, for every backend: its output files, then the
    removal of its stale outputs, then its done record (last, so an image counts as done only
    once all its outputs are in place). A failed image loses its done record (it is not done
    now, whatever it was before). A write error, or a path that a folder or a file already
    holds the other way (a file where a folder must go), turns the result into a failure,
    and the files of it already written are removed.

    Returns:
        The result as recorded (without the files' content).
    """
    if out is None or res.status == "skipped" or res.done is None:
        discard_spools(res.files)
        if out is not None and res.status != "skipped":  # failed: not done any more
            with contextlib.suppress(OSError, UnsafeOutputError):
                done_path(out, command, res.key).unlink()
        return res.committed()
    written: list[Path] = []
    try:
        done_file = done_path(out, command, res.key)
        targets = [out_path(out, rel) for rel, _ in res.files]  # all checked before any write
        for target in [*targets, done_file]:
            _check_free(out, target)
        for target, (_rel, data) in zip(targets, res.files):
            with records.atomic_open(target, "wb") as f:
                if isinstance(data, SpoolFile):  # a video's output, streamed from disk
                    data.copy_to(f)
                else:
                    f.write(data)
            written.append(target)
        _remove_stale(out, command, res.key, res.done.outputs)
        records.write_json(done_file, res.done.to_json(), indent=None)
    except Exception as exc:  # a write error fails this image, not the run: nothing of it
        for target in written:  # is left (its outputs are listed nowhere)
            with contextlib.suppress(OSError):
                target.unlink()
        with contextlib.suppress(OSError, UnsafeOutputError):
            done_path(out, command, res.key).unlink()
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


def iter_done_records(out: Path, command: str) -> Iterator[DoneRecord]:
    """Every valid done record of ``command`` under ``out`` (any run), by key order."""
    root = out / STATE_DIR / "done" / command
    found = []
    for dirpath, name in iter_files(root):
        if name.endswith(".json") and not name.startswith("."):
            p = Path(dirpath) / name
            found.append((p.relative_to(root).as_posix()[:-5], p))
    for _key, p in sorted(found):
        try:
            rec = DoneRecord.from_json(records.read_json(p))
        except (OSError, ValueError):
            continue
        yield rec
