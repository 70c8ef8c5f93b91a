"""``facealign status OUT``: what the run state of an output folder says
(:mod:`facealign_cli.batch.run_db`): items by command and status, the last run's start, end and
rate, and with ``--failed`` the failed items with their reasons, ``--gone`` the recorded items
whose input is gone. Read-only (it may run while a run writes the folder). Exit 0, or 1 when
items failed (for a cron wrapper's alert), 2 when the folder holds no run state.

Imported only when the command runs (``facealign --help`` stays instant): ``click`` and the
standard library at module level.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

import click

FORMATS = ("text", "jsonl", "csv")
#: Columns of ``--format csv`` (one row per record; a record fills the columns it has).
CSV_COLUMNS = ("kind", "command", "status", "count", "path", "key", "error", "message", "run",
               "started", "ended", "items", "ok", "failed", "skipped", "not_run", "rate",
               "exit_code")


def _when(t: float | None) -> str:
    return "-" if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def status_records(db, *, failed: bool, gone: bool) -> Iterator[dict[str, Any]]:
    """The records ``status`` prints, in order: ``{"kind": "count", command, status, count}``
    per command and status; ``{"kind": "run", ...}`` for the last run (``runs`` columns, and
    ``rate`` in items per second); with ``failed`` one ``{"kind": "failed", command, path,
    key, error, message, run}`` per failed item, with ``gone`` one ``{"kind": "gone", command,
    path, key}`` per item whose input path does not exist any more (rows read one at a
    time)."""
    for command, status, n in db.counts():
        yield {"kind": "count", "command": command, "status": status, "count": n}
    for run in db.runs(1):
        rate = None
        if run.get("ended") and run.get("items"):
            rate = round(run["items"] / max(run["ended"] - run["started"], 1e-9), 3)
        yield {"kind": "run", "run": run["id"], **{k: v for k, v in run.items() if k != "id"},
               "rate": rate}
    if failed:
        for row in db.iter_items(status="failed"):
            yield {"kind": "failed", "command": row.command, "path": row.path, "key": row.key,
                   "error": row.error, "message": row.message, "run": row.run}
    if gone:
        for row in db.iter_items():
            if row.path is not None and not os.path.lexists(row.path):
                yield {"kind": "gone", "command": row.command, "path": row.path,
                       "key": row.key}


def _text(rec: dict[str, Any]) -> str:
    from facealign_cli.batch.result import printable

    kind = rec["kind"]
    if kind == "count":
        return f"{rec['command']:<10} {rec['status']:<8} {rec['count']}"
    if kind == "run":
        rate = "-" if rec["rate"] is None else f"{rec['rate']:g} items/s"
        counts = ("" if rec.get("items") is None else
                  f", {rec['items']} items: {rec['ok']} ok, {rec['failed']} failed, "
                  f"{rec['skipped']} skipped, {rec['not_run']} not run, exit "
                  f"{rec['exit_code']}")
        return (f"last run: {rec['command']} #{rec['run']}, started {_when(rec['started'])}, "
                f"ended {_when(rec['ended'])}{counts}, rate {rate}")
    if kind == "failed":
        return (f"failed: {rec['command']}: {printable(str(rec['path']))}: {rec['error']}: "
                f"{printable(str(rec['message']))}")
    return f"gone: {rec['command']}: {printable(str(rec['path']))}"


def _emit(records: Iterator[dict[str, Any]], fmt: str, stream) -> int:
    """Print ``records`` in ``fmt``; the number of failed items counted."""
    failed = 0
    writer = csv.writer(stream, lineterminator="\n") if fmt == "csv" else None
    if writer is not None:
        writer.writerow(CSV_COLUMNS)
    header = False
    for rec in records:
        if rec["kind"] == "count" and rec["status"] == "failed":
            failed += rec["count"]
        if fmt == "jsonl":
            stream.write(json.dumps(rec, ensure_ascii=False) + "\n")
        elif writer is not None:
            writer.writerow(["" if rec.get(c) is None else rec.get(c) for c in CSV_COLUMNS])
        else:
            if rec["kind"] == "count" and not header:
                stream.write(f"{'command':<10} {'status':<8} items\n")
                header = True
            stream.write(_text(rec) + "\n")
    return failed


@click.command("status", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("out", metavar="OUT", type=click.Path(file_okay=False))
@click.option("--failed", "show_failed", is_flag=True,
              help="List the failed items with their error and message.")
@click.option("--gone", "show_gone", is_flag=True,
              help="List the recorded items whose input is gone (their outputs are kept).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True,
              help="text for people; jsonl (one JSON object per line) or csv for programs.")
def status(out: str, show_failed: bool, show_gone: bool, fmt: str) -> None:
    """Show the state of an output folder: items by command and status, the last run's start,
    end and rate; --failed lists failures with their reasons.

    \b
    Exit codes: 0 no item failed, 1 some items failed, 2 OUT holds no run state.
    """
    from facealign_cli.batch.run_db import RunDB, StateError

    try:
        db = RunDB(out, readonly=True)
    except StateError as exc:
        click.echo(f"facealign: error: {exc}", err=True)
        sys.exit(2)
    try:
        failed = _emit(status_records(db, failed=show_failed, gone=show_gone), fmt,
                       click.get_text_stream("stdout"))
    finally:
        db.close()
    sys.exit(1 if failed else 0)
