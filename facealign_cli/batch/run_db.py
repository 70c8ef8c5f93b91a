"""The run-state database of an output folder: ``<out>/.facealign/state.sqlite3`` (the standard
library's :mod:`sqlite3`, write-ahead log), one row per item and command, one per run.

It replaces the per-image done records of earlier versions (``.facealign/done/<command>/``,
imported once by :mod:`facealign_cli.batch.resume`). The process that writes a run's outputs
(the runner) is the only writer, under the output lock
(:class:`facealign_cli.batch.state.OutputLock`); readers (``facealign status``) may read at any
time (WAL: they see the last committed state and never block the writer).

**Writes are batched**: :meth:`RunDB.put` queues an item's row, and the queue is committed
every :data:`BATCH_ITEMS` items or :data:`BATCH_SECONDS` seconds (and at the end of the run).
An item's outputs are written (atomically) *before* its row is queued, so a run killed with
SIGKILL loses at most the rows not committed yet: those items are found not done by the next
run and redone, their outputs replaced atomically. Outputs and database therefore agree after
the rerun.

Text columns that hold file names (``key``, ``path``) are stored as BLOBs of their bytes
(UTF-8 with ``surrogateescape``: a POSIX name that is not valid UTF-8 keeps its bytes); the
JSON columns are ASCII JSON (``ensure_ascii``), which keeps such names too.

**Rows are typed**: an item's outputs, frame counts, ``pose.csv`` rows and sheet faces are
stored as the typed records write them (:mod:`facealign_cli.batch.record_types`:
:meth:`FrameCounts.to_json <facealign_cli.batch.record_types.FrameCounts.to_json>`,
:meth:`PoseRow.to_json <facealign_cli.batch.record_types.PoseRow.to_json>`) and checked on the
way back by :meth:`DoneRecord.from_json <facealign_cli.batch.record_types.DoneRecord.from_json>`,
the one validator of what is read back: a row that does not validate (a hand-edited or damaged
database) is left out of :meth:`RunDB.lookup` and :meth:`RunDB.iter_items`, so its item is
redone.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facealign_cli.batch.errors import BatchError
from facealign_cli.batch.layout import STATE_DIR
from facealign_cli.batch.record_types import DoneRecord, FrameCounts, PoseRow

#: The database's file name under ``<out>/.facealign/``.
DB_NAME = "state.sqlite3"
#: Version of the tables below (``meta.schema``).
DB_SCHEMA = 1
#: Rows queued before a commit.
BATCH_ITEMS = 200
#: Seconds between commits while rows are queued.
BATCH_SECONDS = 1.0
#: Keys per look-up query (SQLite's default limit of bound parameters is 32766).
LOOKUP_CHUNK = 500

_TABLES = """
CREATE TABLE IF NOT EXISTS meta(name TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS fingerprints(digest TEXT PRIMARY KEY, doc TEXT NOT NULL)
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS file_hashes(path BLOB PRIMARY KEY, size INTEGER,
    mtime_ns INTEGER, sha256 TEXT) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS runs(id INTEGER PRIMARY KEY, command TEXT NOT NULL,
    started REAL NOT NULL, ended REAL, items INTEGER, ok INTEGER, failed INTEGER,
    skipped INTEGER, not_run INTEGER, exit_code INTEGER, fingerprint TEXT);
CREATE TABLE IF NOT EXISTS items(
    command TEXT NOT NULL, key BLOB NOT NULL, path BLOB, size INTEGER, mtime_ns INTEGER,
    sha256 TEXT, fingerprint TEXT, status TEXT NOT NULL, outputs TEXT, error TEXT,
    message TEXT, n_faces INTEGER, width INTEGER, height INTEGER, video TEXT, rows TEXT,
    faces TEXT, seconds REAL, finished REAL, run INTEGER,
    PRIMARY KEY(command, key)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS items_by_status ON items(command, status);
"""

#: Columns of ``items``, in order (:class:`ItemRow`'s fields).
ITEM_COLUMNS = ("command", "key", "path", "size", "mtime_ns", "sha256", "fingerprint",
                "status", "outputs", "error", "message", "n_faces", "width", "height", "video",
                "rows", "faces", "seconds", "finished", "run")
_JSON_COLUMNS = frozenset({"outputs", "video", "rows", "faces"})
_NAME_COLUMNS = frozenset({"key", "path"})
#: Columns of ``items`` that hold an item's record (checked by ``DoneRecord.from_json``).
_RECORD_COLUMNS = ("outputs", "n_faces", "width", "height", "video", "rows", "faces")


class StateError(BatchError):
    """The state database cannot be opened or is not one of facealign's (a newer schema, a
    file that is not SQLite): a run-level error (exit code 2). ``str()`` names the file."""


def db_path(out: str | Path) -> Path:
    """``<out>/.facealign/state.sqlite3``."""
    return Path(out) / STATE_DIR / DB_NAME


def name_blob(name: str) -> bytes:
    """A file name as stored (its bytes; ``surrogateescape`` keeps undecodable ones)."""
    return name.encode("utf-8", "surrogateescape")


def blob_name(data: bytes | str | None) -> str | None:
    """The inverse of :func:`name_blob`."""
    if data is None or isinstance(data, str):
        return data
    return bytes(data).decode("utf-8", "surrogateescape")


def to_json(value: Any) -> str | None:
    """A JSON column's text (ASCII, compact; None stays NULL)."""
    if value is None:
        return None
    return json.dumps(value, ensure_ascii=True, separators=(",", ":"), allow_nan=False,
                      default=_jsonable)


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if hasattr(value, "item"):  # a numpy scalar
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def from_json(text: str | None) -> Any:
    """A JSON column's value (NULL: None)."""
    return None if text is None else json.loads(text)


@dataclass(frozen=True)
class ItemRow:
    """One item's state (a row of ``items``).

    Attributes:
        command: the command that made it. key: the item's output key.
        path: its input path, as given. size, mtime_ns: the input's size (bytes) and
            modification time (ns since the epoch) when it was recorded (None: unknown, an
            item imported from a done record). sha256: its content's hash (hex; None: not
            computed).
        fingerprint: digest of the settings, weights and schema its outputs were made with
            (:mod:`facealign_cli.batch.fingerprint`).
        status: ``"ok"`` (outputs in place) or ``"failed"``.
        outputs: output paths relative to ``--out`` (``/``-separated).
        error, message: a failure's exception class and one-line message.
        n_faces, width, height: faces found; the full-resolution size in pixels.
        video: a video's frame counts (the manifest's ``video``), None for a photo.
        rows: ``pose.csv`` rows (``pose``). faces: what ``render --sheet`` shows of each face
            (:func:`facealign_cli.batch.commands.face_summary`).
        seconds: processing time. finished: when it was recorded (seconds since the epoch).
        run: the id of the run that recorded it (``runs.id``).
    """

    command: str
    key: str
    path: str | None = None
    size: int | None = None
    mtime_ns: int | None = None
    sha256: str | None = None
    fingerprint: str | None = None
    status: str = "ok"
    outputs: tuple[str, ...] = ()
    error: str | None = None
    message: str | None = None
    n_faces: int | None = None
    width: int | None = None
    height: int | None = None
    video: FrameCounts | None = None
    rows: tuple[PoseRow, ...] | None = None
    faces: list[dict[str, Any]] | None = None
    seconds: float | None = None
    finished: float | None = None
    run: int | None = None

    @classmethod
    def of_record(cls, rec: DoneRecord, **columns: Any) -> ItemRow:
        """The row of an item whose record is ``rec`` (its path, faces count, outputs, size,
        frame counts, rows and sheet faces; ``rec.fingerprint`` is not stored: the row's
        digest is given in ``columns``, with the other columns)."""
        return cls(path=rec.path, n_faces=rec.n_faces, outputs=tuple(rec.outputs),
                   width=rec.width, height=rec.height, video=rec.video, rows=rec.rows,
                   faces=rec.faces, **columns)

    def record(self) -> DoneRecord:
        """The item's :class:`~facealign_cli.batch.record_types.DoneRecord` (its
        ``fingerprint``: ``{"digest": <the row's digest>}``)."""
        return DoneRecord({"digest": self.fingerprint}, self.path or "", self.n_faces,
                          self.outputs, self.width, self.height, self.video, self.rows,
                          self.faces)

    def params(self) -> tuple:
        """The row's values as bound in SQL (names as BLOBs, JSON columns as text: the
        records' own JSON)."""
        vals = []
        for c in ITEM_COLUMNS:
            v = getattr(self, c)
            if c == "outputs":
                v = list(v)
            elif c == "video" and v is not None:
                v = v.to_json()
            elif c == "rows" and v is not None:
                v = [r.to_json() for r in v]
            if c in _JSON_COLUMNS:
                v = to_json(v)
            elif c in _NAME_COLUMNS and v is not None:
                v = name_blob(v)
            vals.append(v)
        return tuple(vals)

    @classmethod
    def from_sql(cls, values: Sequence[Any]) -> ItemRow:
        """The row read back from ``SELECT <ITEM_COLUMNS>``, its record checked by
        :meth:`DoneRecord.from_json <facealign_cli.batch.record_types.DoneRecord.from_json>`.

        Raises:
            ValueError: a JSON column that is not JSON or a record that does not validate.
        """
        kw = {}
        for c, v in zip(ITEM_COLUMNS, values):
            if c in _JSON_COLUMNS:
                v = from_json(v)
            elif c in _NAME_COLUMNS:
                v = blob_name(v)
            kw[c] = v
        doc = {name: kw.pop(name) for name in _RECORD_COLUMNS}
        rec = DoneRecord.from_json({**doc, "fingerprint": {}, "path": kw["path"] or "",
                                    "outputs": doc["outputs"] or []})
        return cls(**kw, outputs=rec.outputs, n_faces=rec.n_faces, width=rec.width,
                   height=rec.height, video=rec.video, rows=rec.rows, faces=rec.faces)


def _valid_rows(cursor: Iterable[Sequence[Any]]) -> Iterator[ItemRow]:
    """The rows of ``cursor`` that validate (:meth:`ItemRow.from_sql`; the others, a damaged
    or hand-edited row, are left out: their items are redone)."""
    for values in cursor:
        try:
            row = ItemRow.from_sql(values)
        except (ValueError, TypeError):
            continue
        yield row


_SELECT = f"SELECT {', '.join(ITEM_COLUMNS)} FROM items"
_UPSERT = (f"INSERT OR REPLACE INTO items({', '.join(ITEM_COLUMNS)}) "
           f"VALUES ({', '.join('?' * len(ITEM_COLUMNS))})")


class RunDB:
    """The state database of ``out`` (created when missing, unless ``readonly``).

    Args:
        out: the output folder.
        readonly: open for reading only (``facealign status``); the file must exist.

    Raises:
        StateError: the file cannot be opened, is not SQLite, or has a newer schema.
    """

    def __init__(self, out: str | Path, *, readonly: bool = False):
        self.path = db_path(out)
        self.readonly = readonly
        self._pending: list[tuple] = []
        self._pending_sql: list[tuple[str, tuple]] = []
        self._last_commit = time.monotonic()
        try:
            if readonly:
                if not self.path.is_file():
                    raise StateError(f"{self.path.parent.parent} holds no facealign run "
                                     f"state ({self.path} not found)")
                uri = self.path.resolve().as_uri() + "?mode=ro"
                self.con = sqlite3.connect(uri, uri=True, isolation_level=None)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.con = sqlite3.connect(self.path, isolation_level=None)
            self.con.execute("PRAGMA busy_timeout = 10000")
            if not readonly:
                self.con.execute("PRAGMA journal_mode = WAL")
                self.con.execute("PRAGMA synchronous = NORMAL")
                self.con.executescript(_TABLES)
                self._check_schema()
            else:
                self._check_schema()
        except sqlite3.Error as exc:
            raise StateError(f"cannot use the run state {self.path}: {exc}") from None

    def _check_schema(self) -> None:
        row = self.con.execute("SELECT value FROM meta WHERE name = 'schema'").fetchone()
        if row is None and not self.readonly:
            self.con.execute("INSERT INTO meta VALUES ('schema', ?)", (str(DB_SCHEMA),))
        elif row is not None and int(row[0]) > DB_SCHEMA:
            raise StateError(f"{self.path} was written by a newer facealign (state schema "
                             f"{row[0]}, this one knows {DB_SCHEMA})")

    # -- items -------------------------------------------------------------------------

    def lookup(self, command: str, keys: Sequence[str]) -> dict[str, ItemRow]:
        """The rows of ``keys`` (any number; queried :data:`LOOKUP_CHUNK` at a time) that
        exist and validate, by key."""
        found: dict[str, ItemRow] = {}
        for i in range(0, len(keys), LOOKUP_CHUNK):
            part = [name_blob(k) for k in keys[i:i + LOOKUP_CHUNK]]
            sql = f"{_SELECT} WHERE command = ? AND key IN ({', '.join('?' * len(part))})"
            for row in _valid_rows(self.con.execute(sql, (command, *part))):
                found[row.key] = row
        return found

    def iter_items(self, command: str | None = None, *, status: str | None = None,
                   fingerprints: Iterable[str] | None = None) -> Iterator[ItemRow]:
        """Valid rows by command and key order (one at a time from a cursor: memory flat in the
        number of rows), of ``command`` (None: all), ``status`` and ``fingerprints`` when
        given."""
        where, args = [], []
        if command is not None:
            where.append("command = ?")
            args.append(command)
        if status is not None:
            where.append("status = ?")
            args.append(status)
        if fingerprints is not None:
            fps = list(fingerprints)
            where.append(f"fingerprint IN ({', '.join('?' * len(fps))})")
            args.extend(fps)
        sql = _SELECT + (" WHERE " + " AND ".join(where) if where else "")
        yield from _valid_rows(self.con.execute(sql + " ORDER BY command, key", args))

    def put(self, row: ItemRow) -> None:
        """Queue ``row`` (replacing the item's earlier one); committed with the batch."""
        self._pending.append(row.params())
        self._maybe_commit()

    def put_many(self, rows: Iterable[ItemRow]) -> None:
        """Insert rows where the item has none yet (an import), committed at once."""
        with self.transaction():
            self.con.executemany(_UPSERT.replace("OR REPLACE", "OR IGNORE"),
                                 (r.params() for r in rows))

    def update_stat(self, command: str, key: str, size: int, mtime_ns: int,
                    sha256: str | None) -> None:
        """Queue the input's size, modification time and content hash of an item (one
        imported without them)."""
        self._pending_sql.append(("UPDATE items SET size = ?, mtime_ns = ?, sha256 = ? WHERE "
                                  "command = ? AND key = ?",
                                  (size, mtime_ns, sha256, command, name_blob(key))))
        self._maybe_commit()

    def _maybe_commit(self) -> None:
        n = len(self._pending) + len(self._pending_sql)
        if n >= BATCH_ITEMS or time.monotonic() - self._last_commit >= BATCH_SECONDS:
            self.commit()

    def commit(self) -> None:
        """Commit the queued rows now."""
        if self._pending or self._pending_sql:
            with self.transaction():
                if self._pending:
                    self.con.executemany(_UPSERT, self._pending)
                for sql, args in self._pending_sql:
                    self.con.execute(sql, args)
            self._pending.clear()
            self._pending_sql.clear()
        self._last_commit = time.monotonic()

    @contextlib.contextmanager
    def transaction(self):
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on an exception)."""
        self.con.execute("BEGIN IMMEDIATE")
        try:
            yield self.con
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self.con.execute("ROLLBACK")
            raise
        self.con.execute("COMMIT")

    def forget(self, command: str, keys: Sequence[str]) -> int:
        """Delete the rows of ``keys`` (their items are redone by the next run; their outputs
        stay on disk); how many there were."""
        n = 0
        with self.transaction():
            for i in range(0, len(keys), LOOKUP_CHUNK):
                part = [name_blob(k) for k in keys[i:i + LOOKUP_CHUNK]]
                n += self.con.execute(f"DELETE FROM items WHERE command = ? AND key IN "
                                      f"({', '.join('?' * len(part))})", (command, *part)
                                      ).rowcount
        return n

    def counts(self) -> list[tuple[str, str, int]]:
        """``(command, status, items)`` for every command and status, sorted."""
        return list(self.con.execute("SELECT command, status, count(*) FROM items "
                                     "GROUP BY command, status ORDER BY command, status"))

    # -- fingerprints, file hashes, runs --------------------------------------------------

    def add_fingerprint(self, digest: str, doc: dict[str, Any]) -> None:
        """Record what a fingerprint digest stands for (readable with ``facealign status``)."""
        self.con.execute("INSERT OR IGNORE INTO fingerprints VALUES (?, ?)",
                         (digest, to_json(doc)))

    def cached_hash(self, path: str, size: int, mtime_ns: int) -> str | None:
        """The sha256 recorded for the file ``path`` when it had this size and mtime."""
        row = self.con.execute("SELECT sha256 FROM file_hashes WHERE path = ? AND size = ? "
                               "AND mtime_ns = ?", (name_blob(path), size, mtime_ns)).fetchone()
        return None if row is None else row[0]

    def cache_hash(self, path: str, size: int, mtime_ns: int, sha256: str) -> None:
        """Remember a file's sha256 for its size and mtime (:meth:`cached_hash`)."""
        if not self.readonly:
            self.con.execute("INSERT OR REPLACE INTO file_hashes VALUES (?, ?, ?, ?)",
                             (name_blob(path), size, mtime_ns, sha256))

    def begin_run(self, command: str, fingerprint: str | None, after: int = 0) -> int:
        """Record the start of a run; its id: one more than the last run's, and than
        ``after`` (the last id in the manifest: a state deleted and made anew never reuses an
        id of the manifest's lines)."""
        last = self.con.execute("SELECT max(id) FROM runs").fetchone()[0] or 0
        cur = self.con.execute("INSERT INTO runs(id, command, started, fingerprint) VALUES "
                               "(?, ?, ?, ?)", (max(last, after) + 1, command, time.time(),
                                                fingerprint))
        return int(cur.lastrowid)

    def end_run(self, run: int, *, items: int, ok: int, failed: int, skipped: int,
                not_run: int, exit_code: int) -> None:
        """Commit the queued rows and record the end of run ``run`` and its counts."""
        self.commit()
        self.con.execute("UPDATE runs SET ended = ?, items = ?, ok = ?, failed = ?, "
                         "skipped = ?, not_run = ?, exit_code = ? WHERE id = ?",
                         (time.time(), items, ok, failed, skipped, not_run, exit_code, run))

    def runs(self, limit: int = 1) -> list[dict[str, Any]]:
        """The last ``limit`` runs, newest first, as dicts (the ``runs`` columns)."""
        cur = self.con.execute("SELECT * FROM runs ORDER BY id DESC LIMIT ?", (limit,))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur]

    def close(self) -> None:
        """Commit what is queued (not in read-only mode) and close."""
        try:
            if not self.readonly:
                self.commit()
        finally:
            self.con.close()
