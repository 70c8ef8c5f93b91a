"""What the runner records of each item, in input order: its committed outputs, its manifest
line, its ``pose.csv`` rows or its NDJSON record on stdout, and the run's counts
(:class:`Recorder`)."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from facealign_cli.batch.commands import POSE_COLUMNS, Command
from facealign_cli.batch.errors import BatchError
from facealign_cli.batch.layout import MANIFEST_NAME, POSE_CSV_NAME
from facealign_cli.batch.manifest import AppendedManifest
from facealign_cli.batch.options import RunOptions
from facealign_cli.batch.result import ImageResult, RunSummary
from facealign_cli.batch.settings import run_settings, settings_path, write_settings
from facealign_cli.batch.state import commit
from facealign_cli.batch.stopping import StopNotice
from facealign_cli.batch.streams import output_error, write_all
from facealign_cli.io import records
from facealign_cli.io.inputs import InputItem


class Recorder:
    """The run's records: ``out``'s manifest, settings file, run state (``state``, a
    :class:`~facealign_cli.batch.resume.RunState`) and ``pose.csv`` (none with ``out`` None:
    streaming), the NDJSON stream ``ndjson``, the counts of ``summary``, the manifest lines a
    command's :meth:`~facealign_cli.batch.commands.Command.finish` needs.

    :meth:`open` before the first item, :meth:`record` per item (in input order; under
    :attr:`defer`, a context in which an abort waits for the whole record), :meth:`close`
    at the end, whatever happened.
    """

    def __init__(self, cmd: Command, opts: RunOptions, out: Path | None, ndjson: IO | None,
                 summary: RunSummary, reporter, notice: StopNotice, state=None):
        self.cmd, self.opts, self.out, self.ndjson = cmd, opts, out, ndjson
        self.state = state
        self.summary, self.reporter, self.notice = summary, reporter, notice
        self.manifest = self.pose_csv = None
        self.lines: list | None = [] if out is not None and cmd.wants_lines(opts) else None
        self.recorded = 0
        self.defer = contextlib.nullcontext

    def open(self) -> None:
        """Open the manifest (for appending), ``pose.csv`` (as a temporary file) and write the
        settings.

        Raises:
            BatchError: they cannot be written.
        """
        out = self.out
        if out is None:
            return
        try:
            self.manifest = AppendedManifest(out / MANIFEST_NAME,
                                             None if self.state is None else self.state.run)
            write_settings(settings_path(out, self.cmd.name), run_settings(self.cmd, self.opts))
            if self.cmd.table:
                self.pose_csv = records.StreamingCSV(out / POSE_CSV_NAME, POSE_COLUMNS)
        except OSError as exc:
            raise BatchError(f"cannot use output folder {out}: {exc}") from None
        self.summary.manifest = str(out / MANIFEST_NAME)

    def record(self, res: ImageResult) -> None:
        """Commit ``res``'s files (the one write path, for every backend) and record it.

        Raises:
            OutputWriteError: the manifest, ``pose.csv`` or stdout cannot be written.
        """
        with self.defer():
            done, old = res.done, ()
            if self.state is not None and res.status in ("ok", "failed"):
                old = self.state.old_outputs(res.key)
            res = commit(self.out, self.cmd.name, res, old)
            if self.state is not None:
                self.state.record(res, done, old)
            if self.lines is not None:
                self.lines.append((res.key, res.manifest_line()))
            self.notice.announce(self.reporter)
            self.reporter.record(res)
            self._write(res)
            self._count(res)

    def _write(self, res: ImageResult) -> None:
        if self.pose_csv is not None and res.rows:
            try:
                conv = self.opts.aligner.pose_convention
                self.pose_csv.writerows(r.with_convention(conv) for r in res.rows)
            except OSError as exc:
                raise output_error(f"the table {self.out / POSE_CSV_NAME}", exc) from None
        if self.manifest is not None:
            try:
                self.manifest.write(res.manifest_line())
            except OSError as exc:
                raise output_error(f"the manifest {self.manifest.partial}", exc) from None
        if self.ndjson is not None:
            line = (records.dumps(res.stream_record()) + "\n").encode(records.ENCODING,
                                                                      records.ERRORS)
            try:
                write_all(self.ndjson, line)
            except (OSError, ValueError) as exc:
                if isinstance(exc, ValueError):  # closed
                    exc = OSError(errno.EBADF, os.strerror(errno.EBADF))
                raise output_error("to stdout", exc) from None

    def _count(self, res: ImageResult) -> None:
        s = self.summary  # counted once recorded (a record that cannot be written is
        if res.status == "ok":  # counted as not run)
            s.ok += 1
        elif res.status == "failed":
            s.failed += 1
        elif res.interrupted:
            s.not_run += 1
        else:
            s.skipped += 1
        self.recorded += 1

    def _error(self, message: str) -> None:
        if self.summary.output_error is None:  # the first write error is the run's
            self.summary.output_error = message
            self.reporter.line(f"facealign: error: {message}")

    def close(self, items: Sequence[InputItem]) -> None:
        """Commit the manifest, write the command's run-level pages (when nothing failed to
        be written), complete ``pose.csv`` with the rows of earlier runs' items that are not
        among ``items`` and commit it. A write error is recorded in the summary (the first
        one) and printed."""
        if self.state is not None:
            self.state.db.commit()
        if self.manifest is not None:
            try:
                self.manifest.commit()
            except OSError as exc:
                self._error(str(output_error(f"the manifest {self.manifest.path}", exc)))
        if self.lines is not None and self.summary.output_error is None:
            try:
                self.cmd.finish(self.out, self.opts, self.lines)
            except OSError as exc:
                self._error(f"cannot write the run's pages in {self.out}: {exc}")
        if self.pose_csv is not None:
            try:
                self._add_other_rows(items)
                self.pose_csv.commit()
            except OSError as exc:
                self.pose_csv.abort()
                self._error(f"cannot write {self.out / POSE_CSV_NAME}: {exc}")

    def _add_other_rows(self, items: Sequence[InputItem]) -> None:
        """Append to ``pose.csv`` the rows of images done in ``out`` by earlier runs (same
        settings) that are not among this run's inputs (by output key order)."""
        if self.state is None:
            return
        paths = {it.path for it in items}
        conv = self.opts.aligner.pose_convention
        self.pose_csv.writerows(r.with_convention(conv) for r in self.state.pose_rows(paths))
