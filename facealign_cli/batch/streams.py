"""stdout for ``--out -`` (NDJSON): a clean binary stream that nothing else prints to, whole
writes, and the error a failed write becomes (disk full, closed stdout, broken pipe).
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
import time
from collections.abc import Iterator
from typing import IO

from facealign_cli.batch.options import OutputWriteError
from facealign_cli.batch.result import one_line


@contextlib.contextmanager
def clean_stdout(stdout: IO | None) -> Iterator[IO]:
    """The binary stream NDJSON goes to; while active, anything else printed to stdout (by
    Python code or, when stdout is the real fd 1, by C libraries) goes to stderr instead.

    Raises:
        OutputWriteError: there is no stdout (closed).
    """
    if stdout is None:
        stdout = getattr(sys.stdout, "buffer", None)
    if stdout is None:
        raise OutputWriteError("cannot write to stdout: it is closed (give a folder to --out)")
    real_fd = None
    try:
        if stdout.fileno() == 1 and sys.stderr is not None and sys.stderr.fileno() == 2:
            real_fd = 1
    except (OSError, ValueError, AttributeError):
        real_fd = None
    if real_fd is None:
        with contextlib.redirect_stdout(sys.stderr):
            yield stdout
        return
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.flush()
    saved = os.dup(1)
    stream = os.fdopen(os.dup(saved), "wb", buffering=0)
    os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield stream
    finally:
        with contextlib.suppress(OSError):
            stream.close()
        os.dup2(saved, 1)
        os.close(saved)


def write_all(stream: IO, data: bytes) -> None:
    """Write all of ``data`` (a raw stream may write fewer bytes, e.g. to a pipe when a signal
    arrives), then flush."""
    view = memoryview(data)
    while view:
        n = stream.write(view)
        if n is None:  # non-blocking stream that would block: try again
            time.sleep(0.01)
            continue
        view = view[n:]
    stream.flush()


def output_error(what: str, exc: OSError) -> OutputWriteError:
    if isinstance(exc, BrokenPipeError) or exc.errno == errno.EPIPE:
        return OutputWriteError(f"cannot write {what}: the reader went away (broken pipe)",
                                broken_pipe=True)
    reason = os.strerror(exc.errno) if exc.errno else one_line(exc)
    return OutputWriteError(f"cannot write {what}: {reason}")
