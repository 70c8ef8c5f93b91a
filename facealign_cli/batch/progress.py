"""Progress and messages on stderr: a rich bar on a terminal, plain lines otherwise.

:func:`progress_bar` is the one progress bar of the tool (the batch commands and ``evaluate``
use it). Writing to stderr never stops the work: a closed or broken stderr only silences the
messages.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import IO, Any

from facealign_cli.batch.result import INPUT_SKIPPED, ImageResult, printable


def progress_bar(stream: IO | None, label: str, *, info: bool = False, transient: bool = False):
    """A started-not rich ``Progress`` on ``stream`` (None: stderr) with the tool's columns:
    label, bar, done/total, elapsed, remaining (and a free ``info`` text field)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = Console(file=stream, stderr=True) if stream is not None else Console(stderr=True)
    cols = [TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TimeRemainingColumn()]
    if info:
        cols.append(TextColumn("{task.fields[info]}"))
    return Progress(*cols, console=console, transient=transient)


@contextlib.contextmanager
def terminal_progress(total: int, description: str) -> Iterator[Any]:
    """A transient bar on stderr when stderr is a terminal; yields ``advance(n)`` or None."""
    bar = progress_bar(None, "{task.description}", transient=True)
    if not bar.console.is_terminal:
        yield None
        return
    with bar as p:
        task = p.add_task(description, total=total)
        yield lambda n: p.advance(task, n)


def _is_tty(stream: IO) -> bool:
    try:
        return bool(stream.isatty())
    except (OSError, ValueError, AttributeError):
        return False


class Reporter:
    """Progress and per-image messages of a run (failures always; one line per image with
    ``verbose``; nothing else until the run ends)."""

    def __init__(self, command: str, total: int, stderr: IO, *, quiet: bool = False,
                 verbose: int = 0, progress: str = "auto"):
        self.stderr = stderr
        self.quiet, self.verbose = quiet, verbose
        self._progress = None
        self._task = None
        self.counts = {"ok": 0, "failed": 0, "skipped": 0}
        want_bar = {"always": True, "never": False}.get(progress, _is_tty(stderr))
        if want_bar and not quiet and total > 0:
            self._progress = progress_bar(stderr, command, info=True)
            self._task = self._progress.add_task(command, total=total, info="")
            self._progress.start()

    def line(self, text: str) -> None:
        """Print one line on stderr (above the bar if there is one); errors are ignored."""
        try:
            if self._progress is not None:
                self._progress.console.print(text, markup=False, highlight=False,
                                             soft_wrap=True)
            else:
                self.stderr.write(text + "\n")
                self.stderr.flush()
        except (OSError, ValueError, AttributeError):
            pass  # a closed stderr must not stop the work

    def record(self, res: ImageResult) -> None:
        self._say(res)
        st = res.status
        if st in self.counts and not res.interrupted:
            self.counts[st] += 1
        if self._progress is not None:
            c = self.counts
            info = f"{c['failed']} failed" if c["failed"] else ""
            with contextlib.suppress(OSError, ValueError):
                self._progress.update(self._task, advance=1, info=info)

    def _say(self, res: ImageResult) -> None:
        """The lines of one result: a failure (always), a warning (unless quiet), the
        ``-v`` line."""
        st = res.status
        if st == "failed":
            self.line(f"facealign: failed: {printable(res.path)}: {res.error}: "
                      f"{printable(res.message or '')}")
            if res.traceback:
                self.line(res.traceback.rstrip())
            return
        if self.quiet:
            return
        warning = _warning(res)
        if warning:
            self.line(warning)
        if not self.verbose or (st == "skipped" and res.error == INPUT_SKIPPED):
            return
        if st == "ok":
            self.line(f"ok {printable(res.path)}: {res.n_faces} face(s) ({res.seconds:.2f} s)")
        elif res.error is None:
            self.line(f"skipped {printable(res.path)}: done by an earlier run")

    def close(self) -> None:
        if self._progress is not None:
            with contextlib.suppress(OSError, ValueError):
                self._progress.stop()
            self._progress = None


def _warning(res: ImageResult) -> str | None:
    """The warning line of a result that is not a failure: a folder entry that could not be
    taken, a video done with lost frames (``video.frames_lost``); else None."""
    if res.status == "skipped" and res.error == INPUT_SKIPPED:
        return f"facealign: warning: skipped {printable(res.path)}: {printable(res.message or '')}"
    if res.status == "ok" and res.video is not None and res.video.frames_lost:
        return f"facealign: warning: {printable(res.path)}: {printable(res.message or '')}"
    return None


def one_line_warnings() -> None:
    """Show Python warnings as ``facealign: warning: MESSAGE`` lines on stderr (no source
    line): a stale or corrupt ONNX export, a capped ``--jobs``. Called by the CLI and by
    each worker process."""
    import warnings

    def fmt(message, category, filename, lineno, line=None):
        return f"facealign: warning: {message}\n"

    warnings.formatwarning = fmt

