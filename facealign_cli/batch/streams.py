"""The standard streams of a run: valid file descriptors 0, 1 and 2 for this process and its
workers, whatever the caller left closed; stdout for ``--out -`` (NDJSON): a clean binary stream
that nothing else prints to, whole writes, and the error a failed write becomes (disk full,
closed stdout, broken pipe).
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
import time
from collections.abc import Iterator
from typing import IO

from facealign_cli.batch.errors import OutputWriteError
from facealign_cli.batch.result import one_line


def ensure_standard_streams() -> frozenset[int]:
    """Make file descriptors 0, 1 and 2 valid: each one that is closed (``cmd 2>&-``) is opened
    on :data:`os.devnull`, *inheritable*, so that no file opened later takes its number (and
    becomes "stdout") and worker processes start with all three (a worker started with closed
    standard descriptors dies before its first task). ``sys.stdout`` / ``sys.stderr`` that
    Python set to None for a descriptor closed at start-up become text streams on the (now
    null) descriptor (loky flushes both when it starts a worker). ``sys.stdin`` is left as it
    is (None: ``-`` as an input is refused). Idempotent; call it before any file is opened.

    Returns:
        The descriptors (among 0, 1, 2) that were closed, or whose Python stream was None (the
        process started with it closed): a caller that would write results to stdout must
        report 1 as unwritable rather than write into the null device.
    """
    closed = set()
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
            continue
        except OSError:
            closed.add(fd)
        try:
            nul = os.open(os.devnull, os.O_RDWR)
        except OSError:
            continue
        if nul == fd:
            os.set_inheritable(fd, True)  # os.open makes close-on-exec descriptors
        else:
            os.dup2(nul, fd)  # inheritable by default
            os.close(nul)
    for fd, name in ((1, "stdout"), (2, "stderr")):
        if getattr(sys, name) is None:
            # fd itself when reopened here; else it is some file opened since start-up
            target = fd if fd in closed else os.devnull
            closed.add(fd)
            with contextlib.suppress(OSError):
                setattr(sys, name, open(target, "w", errors="backslashreplace",  # noqa: SIM115
                                        closefd=target != fd))
    return frozenset(closed)


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
        raise stdout_closed_error()
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


def stdout_closed_error() -> OutputWriteError:
    """The error of a run that would write to a closed stdout (exit code 3)."""
    return OutputWriteError("cannot write to stdout: it is closed (give a folder to --out)")


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
