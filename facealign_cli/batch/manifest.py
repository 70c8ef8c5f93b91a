"""``<out>/manifest.jsonl``: one JSON line per item of every run, appended as the items are
recorded (never rewritten: a rerun over a million done items adds its lines and touches
nothing else). Each line carries ``run``, the id of its run in the run state
(:mod:`facealign_cli.batch.run_db`, ``facealign status``); a run's lines are those with its id,
in input order (:func:`read_manifest`).

Every line is whole: a write that fails (disk full) is cut back before the error is raised, and
a line cut short by a killed process (SIGKILL mid-write) is removed when the next run opens the
file.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from facealign_cli.io import records

_TAIL = 1 << 16


def _cut_partial_line(fd: int) -> int:
    """Truncate the file open as ``fd`` after its last newline (nothing when it ends with one
    or is empty); its new size."""
    size = os.fstat(fd).st_size
    end = size
    while end > 0:
        start = max(0, end - _TAIL)
        chunk = os.pread(fd, end - start, start)
        i = chunk.rfind(b"\n")
        if i >= 0:
            end = start + i + 1
            break
        end = start
    if end != size:
        os.ftruncate(fd, end)
    return end


class AppendedManifest:
    """The manifest of ``out`` open for appending the lines of run ``run``.

    Raises:
        OSError: it cannot be opened.
    """

    def __init__(self, path: str | os.PathLike, run: int | None):
        self.path = self.partial = Path(path)
        self.run = run
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):  # the growing file of an earlier version
            self.path.with_name(self.path.name + ".partial").unlink()
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o666)
        try:
            self._size = _cut_partial_line(self._fd)
        except OSError:
            os.close(self._fd)
            raise

    def write(self, record: dict[str, Any]) -> None:
        """Append one line (``record`` with ``run``), completely or not at all.

        Raises:
            OSError: it could not be written (the file is left as before the call).
        """
        line = {**record, "run": self.run} if self.run is not None else record
        data = (records.dumps(line) + "\n").encode(records.ENCODING, records.ERRORS)
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view):]
        except BaseException:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._size)
            raise
        self._size += len(data)

    def commit(self) -> None:
        """Close the file (its lines are in place already)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


def last_run_id(path: str | os.PathLike) -> int:
    """The ``run`` of the manifest's last whole line (0: none, no file, or not readable)."""
    try:
        with open(path, "rb") as f:
            start = max(0, f.seek(0, os.SEEK_END) - _TAIL)
            f.seek(start)
            lines = f.read().split(b"\n")
        whole = lines[1 if start else 0:-1]  # (the first may be cut by the seek, the last is)
        for line in reversed(whole):
            run = json.loads(line).get("run")
            return run if isinstance(run, int) else 0
    except (OSError, ValueError, AttributeError):
        pass
    return 0


def read_manifest(path: str | os.PathLike, run: int | str | None = "last") -> list[dict]:
    """The lines of a manifest, parsed: those of run ``run`` (an id), of the last run in the
    file (``"last"``, the default: the run of its last line) or all (None).

    Raises:
        OSError: it cannot be read. ValueError: a line is not JSON.
    """
    with open(path, encoding=records.ENCODING, errors=records.ERRORS) as f:
        lines = [json.loads(s) for s in f if s.strip()]
    if run is None or not lines:
        return lines
    if run == "last":
        run = lines[-1].get("run")
    return [ln for ln in lines if ln.get("run") == run]
