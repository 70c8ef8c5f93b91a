"""A run's view of its output folder's state (:mod:`facealign_cli.batch.run_db`): which items
an earlier run did with the same settings, weights and inputs (:meth:`RunState.scan`), their
records for the manifest (:meth:`RunState.done_result`), and the rows of this run's items
(:meth:`RunState.record`).

**Done** means: a row with status ``ok`` and this run's fingerprint digest
(:mod:`facealign_cli.batch.fingerprint`), outputs all present, and an unchanged input: the
same size and modification time (``--verify-inputs stat``, the default) or the same content
sha256 (``--verify-inputs hash``: for archives copied with new times). Anything else is redone;
its outputs are replaced atomically and the outputs its old row lists that the new run does not
produce are removed (:func:`facealign_cli.batch.state.commit`).

**Flat memory**: items are looked up by key :data:`~facealign_cli.batch.run_db.LOOKUP_CHUNK`
at a time; what the scan keeps is one byte per item, and the records of done items are
fetched again, a chunk at a time, when the manifest needs them.

**Done records of earlier versions** (``.facealign/done/<command>/<key>.json``) are imported
the first time a run of that command meets them, then removed: a record whose settings are
this run's counts as done with this run's fingerprint (its input's size and time are taken
at its first look-up), any other is kept under a digest that matches no run (redone when asked
for). Each is checked by :meth:`DoneRecord.from_json
<facealign_cli.batch.record_types.DoneRecord.from_json>` (records of older versions, rows
without the newer columns, read with them empty); one that does not validate is not imported
and its item is redone.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from facealign_cli.batch.fingerprint import (
    digest_of,
    file_sha256,
    fingerprint_doc,
    legacy_digest,
    weights_digests,
)
from facealign_cli.batch.layout import MANIFEST_NAME
from facealign_cli.batch.manifest import last_run_id
from facealign_cli.batch.record_types import DoneRecord, PoseRow
from facealign_cli.batch.result import ImageResult
from facealign_cli.batch.run_db import LOOKUP_CHUNK, ItemRow, RunDB
from facealign_cli.io import records
from facealign_cli.io.inputs import InputItem, iter_files

#: Paths of gone inputs named in the end-of-run note.
_GONE_EXAMPLES = 3


def _is_video(path: str) -> bool:
    from facealign_cli.io.video import is_video_path

    return is_video_path(path)


def _stat(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except (OSError, ValueError):
        return None


class RunState:
    """The state of one run in ``out``: opened after the output lock is taken, closed (with
    :meth:`close`) at the end of the run, whatever happened.

    Args:
        out: the output folder (locked by this process).
        cmd: the run's :class:`~facealign_cli.batch.commands.base.Command`.
        opts: the run's :class:`~facealign_cli.batch.options.RunOptions`.
        verify: one of :data:`facealign_cli.batch.options.VERIFY_INPUTS`.

    Raises:
        facealign_cli.batch.run_db.StateError: the database cannot be used.
    """

    def __init__(self, out: Path, cmd, opts, verify: str = "stat"):
        self.out, self.cmd, self.opts, self.verify = Path(out), cmd, opts, verify
        self.db = RunDB(out)
        weights = weights_digests(opts, cmd.uses_regressor, self.db)
        self.docs = {v: fingerprint_doc(cmd, opts, video=v, weights=weights)
                     for v in (False, True)}
        self.fps = {v: digest_of(d) for v, d in self.docs.items()}
        for v, d in self.docs.items():
            self.db.add_fingerprint(self.fps[v], d)
        self.imported = import_done_records(self, Path(out))
        self.run = self.db.begin_run(cmd.name, self.fps[False],
                                     last_run_id(self.out / MANIFEST_NAME))
        self._done = bytearray()
        self._items: Sequence[InputItem] = ()
        self._cache: dict[str, ItemRow] = {}
        self.found = 0  # items of this run with a row (any status)

    def fingerprint(self, path: str) -> str:
        """The digest of an item at ``path`` (a video's or a photo's)."""
        return self.fps[_is_video(path)]

    # -- the scan before the run ----------------------------------------------------------

    def scan(self, items: Sequence[InputItem]) -> bytearray:
        """One byte per item (by ``item.index``): 1 when an earlier run did it (see the module
        docstring); none with ``opts.overwrite``."""
        self._items = items
        self._done = done = bytearray(max((it.index for it in items), default=-1) + 1)
        todo = [it for it in items if not it.skipped]
        for i in range(0, len(todo), LOOKUP_CHUNK):
            part = todo[i:i + LOOKUP_CHUNK]
            rows = self.db.lookup(self.cmd.name, [it.key for it in part])
            self.found += len(rows)
            if self.opts.overwrite:
                continue
            for it in part:
                row = rows.get(it.key)
                if row is not None and self._is_done(it, row):
                    done[it.index] = 1
        self.db.commit()
        return done

    def _is_done(self, it: InputItem, row: ItemRow) -> bool:
        if row.status != "ok" or row.fingerprint != self.fingerprint(it.path):
            return False
        if not self._same_input(it, row):
            return False
        if not self.cmd.outputs_present(self.out, row.outputs):
            return False
        return not self.cmd.table or row.rows is not None

    def _same_input(self, it: InputItem, row: ItemRow) -> bool:
        st = _stat(it.path)
        if st is None:
            return False
        if self.verify == "hash":
            if row.sha256 is None and row.size is not None:
                return False
            sha = _content_sha(it.path)
            if row.size is None:  # imported: trusted once, its input's identity taken now
                self.db.update_stat(self.cmd.name, it.key, st.st_size, st.st_mtime_ns, sha)
                return sha is not None
            return sha is not None and sha == row.sha256
        if row.size is None:
            self.db.update_stat(self.cmd.name, it.key, st.st_size, st.st_mtime_ns,
                                _content_sha(it.path))
            return True
        return row.size == st.st_size and row.mtime_ns == st.st_mtime_ns

    def is_done(self, it: InputItem) -> bool:
        """Whether :meth:`scan` found ``it`` done."""
        return it.index < len(self._done) and bool(self._done[it.index])

    def done_result(self, it: InputItem) -> ImageResult:
        """The manifest's record of a done item (its row fetched with the next done items'
        rows, :data:`~facealign_cli.batch.run_db.LOOKUP_CHUNK` at a time)."""
        row = self._cache.get(it.key)
        if row is None:
            items, keys = self._items, []
            if it.index < len(items) and items[it.index] is it:
                for k in range(it.index, len(items)):
                    if self.is_done(items[k]):
                        keys.append(items[k].key)
                        if len(keys) >= LOOKUP_CHUNK:
                            break
            self._cache = self.db.lookup(self.cmd.name, keys or [it.key])
            row = self._cache.get(it.key)
        if row is None:  # (cannot happen: only this process writes)
            return ImageResult.not_run(it, "its record is missing from the run state")
        return ImageResult.done_earlier(it, row.record())

    # -- recording ------------------------------------------------------------------------

    def old_outputs(self, key: str) -> tuple[str, ...]:
        """The outputs an earlier run listed for ``key`` (none when it has no row)."""
        row = self.db.lookup(self.cmd.name, [key]).get(key)
        return () if row is None else tuple(row.outputs)

    def record(self, res: ImageResult, done, old_outputs: Sequence[str] = ()) -> None:
        """Queue the row of an item recorded by this run: ``res`` once committed, ``done``
        its :class:`~facealign_cli.batch.record_types.DoneRecord` (None unless ok). A failed item
        keeps the list of the outputs an earlier run left (``old_outputs``), so that a later
        success removes those it does not make again. Items not processed (interrupted, done
        earlier, folder entries skipped) change nothing."""
        if res.status not in ("ok", "failed"):
            return
        st = _stat(res.path)
        common = dict(command=self.cmd.name, key=res.key,
                      size=None if st is None else st.st_size,
                      mtime_ns=None if st is None else st.st_mtime_ns,
                      fingerprint=self.fingerprint(res.path), seconds=res.seconds,
                      finished=time.time(), run=self.run)
        if res.status == "ok" and done is not None:
            row = ItemRow.of_record(done, **common, sha256=_content_sha(res.path),
                                    status="ok", message=res.message)
        else:
            row = ItemRow(**common, path=res.path, status="failed",
                          outputs=tuple(old_outputs), error=res.error, message=res.message,
                          video=res.video)
        self.db.put(row)

    def pose_rows(self, paths: set[str]) -> Iterator[PoseRow]:
        """``pose.csv`` rows (:class:`~facealign_cli.batch.record_types.PoseRow`) of the items
        done in ``out`` with this run's settings whose paths are not in ``paths`` (by key
        order; one row of the state at a time)."""
        self.db.commit()
        for row in self.db.iter_items(self.cmd.name, status="ok",
                                      fingerprints=set(self.fps.values())):
            if row.rows is not None and row.path not in paths:
                yield from row.rows

    def gone(self, n_items: int) -> tuple[int, list[str]]:
        """Items recorded for this command whose input is gone (their outputs are kept):
        ``(count, a few of their paths)``. Looked for only when the state holds more rows
        than this run has items."""
        self.db.commit()
        total = self.db.con.execute("SELECT count(*) FROM items WHERE command = ?",
                                    (self.cmd.name,)).fetchone()[0]
        if total <= n_items:
            return 0, []
        n, examples = 0, []
        for row in self.db.iter_items(self.cmd.name):
            if row.path is not None and not os.path.lexists(row.path):
                n += 1
                if len(examples) < _GONE_EXAMPLES:
                    examples.append(row.path)
        return n, examples

    def close(self, summary=None) -> None:
        """Record the run's end (with ``summary``'s counts) and close the database."""
        try:
            if summary is not None:
                self.db.end_run(self.run, items=summary.total, ok=summary.ok,
                                failed=summary.failed, skipped=summary.skipped,
                                not_run=summary.not_run, exit_code=int(summary.exit_code))
        finally:
            self.db.close()


def _content_sha(path: str) -> str | None:
    with contextlib.suppress(OSError, ValueError):
        return file_sha256(path)
    return None


def import_done_records(state: RunState, out: Path) -> int:
    """Import the done records of earlier versions for ``state``'s command (see the module
    docstring), then remove their folder. Returns how many were imported."""
    cmd, opts = state.cmd, state.opts
    root = out / ".facealign" / "done" / cmd.name
    if not root.is_dir():
        return 0
    legacy = {False: cmd.fingerprint(opts), True: cmd.video_fingerprint(opts)}
    batch: list[ItemRow] = []
    n = 0
    for dirpath, name in iter_files(root):
        if not name.endswith(".json") or name.startswith("."):
            continue
        p = Path(dirpath) / name
        try:
            row = _imported_row(cmd.name, p.relative_to(root).as_posix()[:-5],
                                records.read_json(p), legacy, state.fps)
        except (OSError, ValueError):  # unreadable, or not a done record: its item is redone
            continue
        batch.append(row)
        if len(batch) >= 1000:
            state.db.put_many(batch)
            n += len(batch)
            batch.clear()
    state.db.put_many(batch)
    n += len(batch)
    shutil.rmtree(root, ignore_errors=True)
    with contextlib.suppress(OSError):
        (out / ".facealign" / "done").rmdir()  # when no other command's records are left
    return n


def _imported_row(command: str, key: str, doc, legacy: dict, fps: dict) -> ItemRow:
    """The state row of one done record of an earlier version, as it was read (``doc``):
    checked by :meth:`DoneRecord.from_json
    <facealign_cli.batch.record_types.DoneRecord.from_json>` (older rows and frame counts
    read with the missing values empty), under this run's digest when its settings are this
    run's, else under a digest no run has.

    Raises:
        ValueError: not a valid done record.
    """
    rec = DoneRecord.from_json(doc)
    digest = next((fps[v] for v in (False, True) if rec.fingerprint == legacy[v]), None)
    return ItemRow.of_record(rec, command=command, key=key, status="ok",
                             fingerprint=digest or legacy_digest(rec.fingerprint),
                             finished=time.time())
