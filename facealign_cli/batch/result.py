"""The outcome of one image: a frozen :class:`ImageResult`, made by the worker, committed and
recorded by the runner (manifest line, NDJSON record, ``pose.csv`` rows); the records it
carries are typed (:mod:`facealign_cli.batch.record_types`)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from facealign_cli.batch.errors import ExitCode, signal_exit_code
from facealign_cli.batch.record_types import DoneRecord, FrameCounts, PoseRow
from facealign_cli.io.inputs import InputItem

#: ``error`` of a folder entry that was not processed (unreadable folder, FIFO, device,
#: dangling link ...; :attr:`facealign_cli.io.inputs.InputItem.skip_reason` is the message).
INPUT_SKIPPED = "InputSkipped"
#: Keys of a manifest line, in order.
MANIFEST_KEYS = ("path", "status", "n_faces", "outputs", "error", "message", "seconds")

_CONTROL = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F]}
_CONTROL.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})


def printable(text: str) -> str:
    """``text`` for a one-line terminal message: control characters (newline, escape ...)
    written as ``\\n``, ``\\x1b``, and bytes that are not valid UTF-8 as ``\\udcXX``-free
    ``\\xNN``."""
    out = text.translate(_CONTROL)
    if any(0xDC80 <= ord(c) <= 0xDCFF for c in out):
        out = "".join(f"\\x{ord(c) - 0xDC00:02x}" if 0xDC80 <= ord(c) <= 0xDCFF else c
                      for c in out)
    return out


def one_line(exc: BaseException) -> str:
    """A short, single-line message for an exception (at most about 500 characters)."""
    from facealign_cli.io.images import ImageError

    msg = exc.reason if isinstance(exc, ImageError) else str(exc)
    msg = " ".join(msg.split())
    return (msg[:500] + "...") if len(msg) > 500 else (msg or type(exc).__name__)


@dataclass(frozen=True)
class SpoolFile:
    """An output file's content kept in a local temporary file (``path``, outside ``--out``)
    instead of memory: the outputs of a video, which can be large. The runner copies it to
    its output name (atomically) and deletes it (:func:`facealign_cli.batch.state.commit`);
    a result that is not committed deletes it with :meth:`discard`."""

    path: str

    def copy_to(self, f) -> None:
        import shutil

        with open(self.path, "rb") as src:
            shutil.copyfileobj(src, f, 1 << 20)

    def discard(self) -> None:
        import contextlib
        import os

        with contextlib.suppress(OSError):
            os.unlink(self.path)


def discard_spools(files) -> None:
    """Delete the :class:`SpoolFile` s among ``files`` (``(relative path, content)``)."""
    for _rel, data in files:
        if isinstance(data, SpoolFile):
            data.discard()


@dataclass(frozen=True)
class ImageResult:
    """One image's outcome.

    Attributes:
        path: the input path (as given or found).
        key: its output key (:mod:`facealign_cli.io.inputs`).
        status: ``"ok"``, ``"failed"`` or ``"skipped"``.
        n_faces: faces found (None unless ok / done earlier).
        outputs: output paths relative to ``out`` (``/``-separated).
        error: exception class name, ``"Interrupted"`` / ``"WorkerCrashed"`` /
            ``"InputSkipped"`` (a folder entry that cannot be read as a file), or None.
        message: human-readable detail, or None.
        seconds: processing time.
        width, height: image size (full resolution), when decoded.
        rows: ``pose.csv`` rows (``pose`` only).
        record: the NDJSON record's ``{path, width, height, faces}`` (streaming only).
        files: ``(relative path, content)`` of the files to write (not yet written).
        done: the resume record to write after ``files`` (None: nothing to commit).
        traceback: the failure's traceback (``verbose >= 2``).
        video: a video's frame counts, None for a photo; written to its manifest line as
            ``video``.
    """

    path: str
    key: str = ""
    status: str = "ok"
    n_faces: int | None = None
    outputs: tuple[str, ...] = ()
    error: str | None = None
    message: str | None = None
    seconds: float = 0.0
    width: int | None = None
    height: int | None = None
    rows: tuple[PoseRow, ...] | None = None
    record: dict[str, Any] | None = field(default=None, compare=False)
    files: tuple[tuple[str, bytes], ...] = field(default=(), repr=False, compare=False)
    done: DoneRecord | None = field(default=None, compare=False)
    traceback: str | None = None
    video: FrameCounts | None = field(default=None, compare=False)

    @property
    def interrupted(self) -> bool:
        return self.error == "Interrupted"

    @classmethod
    def failure(cls, item: InputItem, exc: BaseException, seconds: float = 0.0,
                tb: str | None = None) -> ImageResult:
        return cls(item.path, item.key, "failed", error=type(exc).__name__,
                   message=one_line(exc), seconds=seconds, traceback=tb)

    @classmethod
    def not_run(cls, item: InputItem, why: str = "the run was interrupted") -> ImageResult:
        return cls(item.path, item.key, "skipped", error="Interrupted",
                   message=f"not processed: {why}")

    @classmethod
    def input_skipped(cls, item: InputItem) -> ImageResult:
        """A folder entry the input walk could not take (``item.skip_reason``)."""
        return cls(item.path, item.key, "skipped", error=INPUT_SKIPPED,
                   message=item.skip_reason)

    @classmethod
    def crashed(cls, item: InputItem) -> ImageResult:
        return cls(item.path, item.key, "failed", error="WorkerCrashed",
                   message="the worker process died while processing this image (out of "
                           "memory, or a crash in a native library)")

    @classmethod
    def done_earlier(cls, item: InputItem, done: DoneRecord) -> ImageResult:
        """An item an earlier run did (its done record ``done``): skipped, with that run's
        faces count, outputs, rows and frame counts."""
        return cls(item.path, item.key, "skipped", n_faces=done.n_faces, outputs=done.outputs,
                   rows=done.rows, video=done.video)

    def failed_with(self, exc: BaseException) -> ImageResult:
        """This result turned into a failure (a write error while committing it)."""
        discard_spools(self.files)
        return replace(self, status="failed", n_faces=None, outputs=(), rows=None, record=None,
                       files=(), done=None, error=type(exc).__name__, message=one_line(exc))

    def committed(self) -> ImageResult:
        """This result once its files are written (drops their content)."""
        return replace(self, files=(), done=None)

    def manifest_line(self) -> dict[str, Any]:
        line = {"path": self.path, "status": self.status, "n_faces": self.n_faces,
                "outputs": list(self.outputs), "error": self.error, "message": self.message,
                "seconds": self.seconds}
        if self.video is not None:
            line["video"] = self.video.to_json()
        return line

    def stream_record(self) -> dict[str, Any]:
        data = self.record or {"path": self.path, "width": self.width, "height": self.height,
                               "faces": []}
        return {**data, "status": self.status, "error": self.error, "message": self.message}


@dataclass
class RunSummary:
    """Counts and outcome of a run.

    Attributes:
        total: items in the run (images, videos, and folder entries that cannot be taken).
        videos: how many of them are videos.
        ok, failed, skipped: images by status (``skipped`` = done earlier).
        not_run: images left out because the run was interrupted or stopped.
        interrupted: the signal number that stopped the run, or 0.
        fatal: message of a run-level error that stopped it (model loading), or None.
        output_error: message of a failed write of the manifest or of stdout, or None.
        broken_pipe: the output error was a reader that went away.
        seconds: wall time.
        manifest: path of the manifest written, or None.
    """

    total: int = 0
    videos: int = 0
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    not_run: int = 0
    interrupted: int = 0
    fatal: str | None = None
    output_error: str | None = None
    broken_pipe: bool = False
    seconds: float = 0.0
    manifest: str | None = None

    @property
    def exit_code(self) -> ExitCode:
        """0 all done, 1 some images failed, 2 stopped by a run-level error, 3 the manifest or
        stdout could not be written (141: stdout's reader went away), 130/143 signal."""
        if self.interrupted:
            return signal_exit_code(self.interrupted)
        if self.output_error:
            return ExitCode.BROKEN_PIPE if self.broken_pipe else ExitCode.OUTPUT
        if self.fatal:
            return ExitCode.USAGE
        return ExitCode.FAILED if self.failed else ExitCode.OK
