"""Writing plain records: atomic JSON / CSV files, NDJSON streams, the manifest.

Nothing here knows about models, faces or images: records are JSON-compatible dicts (numbers,
strings, lists, dicts, ``None``) or CSV rows.

**Atomicity**: every file is written to a temporary file in the same folder
(``.<name>.<8 random characters>.facealign-tmp``, :data:`TEMP_SUFFIX`; ``<name>`` shortened
so that the temporary name stays within 255 bytes whenever the final name does) and moved over
the destination with :func:`os.replace`, which is atomic on POSIX and Windows within one file
system. A reader therefore sees either the old file or the complete new one, never a partial
file, even if the writer is killed; a killed writer can leave such a hidden file behind
(:func:`is_temp_name` recognises them; names of other programs' files never match). Files
are not fsync'ed (a power cut may lose the newest outputs, never leave half-written ones behind
an existing name on journaling file systems).

**Encoding**: UTF-8; JSON keeps non-ASCII characters as they are (``ensure_ascii=False``); a
file name that is not valid UTF-8 (possible on POSIX) is written back with its original bytes
(``surrogateescape``). NaN / infinity are written as ``null``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import re
import secrets
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

ENCODING = "utf-8"
ERRORS = "surrogateescape"
#: Suffix of the temporary files of :func:`atomic_open` (tool-specific, so that cleaning up
#: after a killed run never touches anyone else's ``.tmp`` files).
TEMP_SUFFIX = ".facealign-tmp"
_NAME_MAX = 255  # bytes, on every common file system
_TEMP_NAME = re.compile(r"^\..*\.[a-z0-9_]{8}" + re.escape(TEMP_SUFFIX) + r"$", re.DOTALL)


def is_temp_name(name: str) -> bool:
    """Whether ``name`` is a temporary file name of :func:`atomic_open`."""
    return bool(_TEMP_NAME.match(name))


def _temp_prefix(name: str) -> str:
    """``.<name>.``, ``name`` cut (by characters) so that ``prefix + 8 + suffix`` fits in
    255 bytes."""
    room = _NAME_MAX - 2 - 8 - len(TEMP_SUFFIX)
    while len(os.fsencode(name)) > room:
        name = name[:-1]
    return f".{name}."


def _clean(obj: Any) -> Any:
    """Replace non-finite floats (not valid JSON) by None, recursively."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def dumps(record: Any, *, indent: int | None = None) -> str:
    """A record as JSON text (one line unless ``indent``); NaN/inf become ``null``.

    Raises:
        TypeError: the record holds something that is not JSON-compatible.
    """
    return json.dumps(_clean(record), ensure_ascii=False, indent=indent, allow_nan=False,
                      separators=None if indent else (",", ":"))


def make_folders(folder: str | os.PathLike) -> None:
    """Create ``folder`` and its missing parents, like ``os.makedirs(folder, exist_ok=True)``
    but without recursion (any depth; Python 3.11's ``makedirs`` and ``Path.mkdir`` recurse
    once per missing level).

    Raises:
        OSError: a folder cannot be created (also: a file is in the way).
    """
    missing = []
    f = Path(folder)
    while not f.is_dir() and f.parent != f:
        missing.append(f)
        f = f.parent
    for f in reversed(missing):
        try:
            f.mkdir()
        except FileExistsError:
            if not f.is_dir():
                raise


_TEMP_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_"


def _new_temp_file(path: Path) -> tuple[int, str]:
    """``(fd, name)``: a new temporary file beside ``path`` (:func:`is_temp_name`), created
    exclusively with mode 0666 (less the umask), open for writing.

    Raises:
        OSError: it cannot be created (``FileExistsError`` after 100 names taken).
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) \
        | getattr(os, "O_BINARY", 0) | getattr(os, "O_NOFOLLOW", 0)
    prefix = _temp_prefix(path.name)
    for _ in range(100):
        rnd = "".join(secrets.choice(_TEMP_CHARS) for _ in range(8))
        tmp = str(path.parent / f"{prefix}{rnd}{TEMP_SUFFIX}")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", *, newline: str | None = None
                ) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on a clean exit move it over ``path``.

    Args:
        path: destination; its folder is created if needed.
        mode: ``"w"`` (text, UTF-8) or ``"wb"``.
        newline: passed to :func:`open` in text mode (``""`` for CSV).

    On an exception inside the block the temporary file is removed and ``path`` is untouched.
    The file gets the usual permissions (0666 minus the process's umask at that moment, applied
    by the system when the file is made: the umask is never read or changed here).
    """
    path = Path(path)
    make_folders(path.parent)
    fd, tmp = _new_temp_file(path)
    try:
        if "b" in mode:
            f = os.fdopen(fd, mode)
        else:
            f = os.fdopen(fd, mode, encoding=ENCODING, errors=ERRORS, newline=newline)
        with f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_json(path: str | os.PathLike, record: Any, *, indent: int | None = 1) -> None:
    """Write one JSON document atomically (trailing newline)."""
    with atomic_open(path) as f:
        f.write(dumps(record, indent=indent))
        f.write("\n")


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON document written by :func:`write_json`.

    Raises:
        OSError: unreadable; ValueError: not valid JSON.
    """
    with open(path, encoding=ENCODING, errors=ERRORS) as f:
        return json.load(f)


def write_csv(path: str | os.PathLike, header: Sequence[str], rows: Iterable[Sequence[Any]]
              ) -> None:
    """Write a CSV file (RFC 4180 quoting, ``\\n`` line ends, UTF-8) atomically."""
    with atomic_open(path, newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


class StreamingCSV:
    """A CSV file written row by row into a temporary file and moved into place by
    :meth:`commit` (so readers never see a partial table).

    Args:
        path: final destination.
        header: column names.
    """

    def __init__(self, path: str | os.PathLike, header: Sequence[str]):
        self._cm = atomic_open(path, newline="")
        self._f = self._cm.__enter__()
        self._w = csv.writer(self._f, lineterminator="\n")
        self._w.writerow(header)

    def writerows(self, rows: Iterable[Sequence[Any]]) -> None:
        """Append rows (sequences of str / numbers / None)."""
        self._w.writerows(rows)

    def commit(self) -> None:
        """Finish the file and move it into place."""
        self._cm.__exit__(None, None, None)

    def abort(self) -> None:
        """Drop the temporary file; the destination is untouched."""
        with contextlib.suppress(BaseException):
            self._cm.__exit__(RuntimeError, RuntimeError("aborted"), None)


class JsonLinesWriter:
    """Writes one JSON record per line to a binary stream, flushing after each line.

    Used for NDJSON on stdout (``--out -``) and for the manifest. Writes straight to the
    stream: a reader following it sees whole lines as they are produced.

    Args:
        stream: a binary stream (``sys.stdout.buffer``, a file opened ``"wb"``), or a text
            stream (then written as ``str``).
    """

    def __init__(self, stream: IO):
        self._s = stream
        self._binary = not isinstance(stream, io.TextIOBase)

    def write(self, record: Any) -> None:
        """Write ``record`` as one line and flush (all of it: a raw stream that takes fewer
        bytes, e.g. a pipe interrupted by a signal, gets the rest in further writes)."""
        line = dumps(record) + "\n"
        if not self._binary:
            self._s.write(line)
        else:
            view = memoryview(line.encode(ENCODING, ERRORS))
            while view:
                n = self._s.write(view)
                view = view[len(view) if n is None else n:]
        self._s.flush()
