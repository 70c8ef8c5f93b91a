"""``run_batch``: images in, per-image outputs + a manifest out (see ``docs/batch.md``).

The runner is the only writer, for every backend: workers (in-process, local processes, Dask
tasks) return an :class:`~facealign_cli.batch.result.ImageResult` holding the encoded files,
and :func:`facealign_cli.batch.state.commit` writes them here, in input order, followed by the
image's manifest line (or NDJSON record on stdout).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO

from facealign_cli.batch.commands import quality_filter_warning
from facealign_cli.batch.errors import (
    BatchError,
    ClusterError,
    ModelLoadError,
    OptionError,
    OutputWriteError,
)
from facealign_cli.batch.options import RunOptions
from facealign_cli.batch.progress import Reporter
from facealign_cli.batch.recorder import Recorder
from facealign_cli.batch.result import ImageResult, RunSummary, one_line
from facealign_cli.batch.state import OutputLock, clean_stale_temp_files
from facealign_cli.batch.stopping import StopFlag, StopNotice, StopSignals
from facealign_cli.batch.streams import clean_stdout
from facealign_cli.batch.worker import preflight, run_provider
from facealign_cli.io.inputs import InputItem

MAX_CHUNK = 16
# commands with dense outputs (meshes of ~3 MB per face) send each image's files back on its
# own: a chunk's encoded outputs live in the worker, in the pipe and in the parent until they
# are written, so a 16-image chunk of meshes cost ~0.5 GB per worker
MAX_DENSE_CHUNK = 1


def _chunk_size(opts: RunOptions, n: int, executor) -> int:
    if executor.in_process:
        return 1
    cap = MAX_DENSE_CHUNK if opts.cmd.dense else MAX_CHUNK
    return opts.chunk_size or max(1, min(cap, -(-n // (executor.parallelism * 4))))


def _results(opts: RunOptions, todo: list[InputItem], executor, warn: Callable[[str], None],
             stop: StopFlag) -> Iterator[ImageResult]:
    """Results of the ``todo`` items in order; stops early (fewer results) once ``stop`` is
    set.

    Chunks run on ``executor``, at most ``2 x`` its parallelism in flight (in this process:
    one image at a time, each run when its result is needed). A worker that dies breaks the
    chunks in flight, so the culprit is unknown: the run then goes on in *careful mode* for the
    images that may have been in flight (one image per task, one task at a time), so a second death
    names its image exactly (recorded as failed, error ``WorkerCrashed``); after that window,
    normal fan-out resumes.

    Raises:
        ModelLoadError: the model cannot be built. ClusterError: the Dask cluster failed.
    """
    if not todo:
        return
    jobs = executor.parallelism
    size = _chunk_size(opts, len(todo), executor)
    pos = 0  # results yielded so far
    careful_until = 0  # todo[pos:careful_until] run one image at a time
    inflight: deque = deque()
    finished = False
    try:
        while pos < len(todo) and not stop.is_set():
            careful = pos < careful_until
            end = careful_until if careful else len(todo)
            csize = 1 if careful else size
            workers = 2 if careful else max(2, min(jobs, -(-(end - pos) // csize)))
            window = 1 if careful or executor.in_process else 2 * jobs
            try:
                for r in _window(opts, todo[pos:end], executor, csize, workers, window,
                                 inflight, stop):
                    pos += 1
                    yield r
            except ModelLoadError:
                raise
            except executor.crash_errors:
                for f in inflight:
                    f.cancel()
                inflight.clear()
                if careful:  # exactly one image was in flight
                    yield ImageResult.crashed(todo[pos])
                    pos += 1
                else:  # every chunk dispatched since the last result may have been lost
                    warn("facealign: warning: a worker process died (out of memory or a crash "
                         "in a native library); redoing the images in flight one at a time")
                    careful_until = min(len(todo), pos + 2 * workers * size)
            except executor.cluster_errors as exc:
                raise ClusterError(f"the Dask cluster failed: {type(exc).__name__}: "
                                   f"{one_line(exc)}") from None
        finished = True
    finally:
        for f in inflight:
            with contextlib.suppress(Exception):
                f.cancel()
        if not finished:
            executor.abort()


def _window(opts: RunOptions, todo: Sequence[InputItem], executor, csize: int, workers: int,
            window: int, inflight: deque, stop: StopFlag) -> Iterator[ImageResult]:
    """Results of ``todo`` in order, run in chunks of ``csize`` items on ``executor`` with at
    most ``window`` chunks in flight (``inflight``: their futures, left there for the caller
    to cancel when this stops early); no new chunk once ``stop`` is set."""
    start = 0
    while True:
        while len(inflight) < window and start < len(todo) and not stop.is_set():
            chunk = list(todo[start:start + csize])
            inflight.append(executor.submit(opts, chunk, workers))
            start += len(chunk)
        if not inflight:
            return
        recs = inflight[0].result()
        inflight.popleft()
        yield from recs


def _make_executor(opts: RunOptions, todo: list, stack: contextlib.ExitStack,
                   stop: StopFlag):
    """The executor of the run, closed when ``stack`` closes (None: nothing to run); connects
    to Dask if needed."""
    if not todo:
        return None
    if opts.backend == "dask":
        from facealign_cli.batch.executors import DaskExecutor, connect_dask, quiet_dask_logs

        client = connect_dask(opts.scheduler, opts.dask_timeout)
        stack.enter_context(quiet_dask_logs(opts.verbose < 2))  # -vv: keep Dask's logs
        ex = DaskExecutor(client, opts.dask_timeout)
        stack.callback(ex.close)
        return ex
    jobs = opts.jobs if opts.jobs > 0 else (os.cpu_count() or 1)
    from facealign_cli.batch.executors import InProcessExecutor, LocalExecutor

    ex = InProcessExecutor(stop) if jobs == 1 else LocalExecutor(jobs, stop)
    stack.callback(ex.close)
    return ex


def run_batch(items: Sequence[InputItem], opts: RunOptions, *, stdout: IO | None = None,
              stderr: IO | None = None, stop: StopFlag | None = None) -> RunSummary:
    """Run a command over images and write outputs, manifest and (``pose``) the CSV, in
    steps: :func:`_lock`, :func:`_open_state` (the run state and its
    :meth:`~facealign_cli.batch.resume.RunState.scan`), :func:`_start` (executor),
    :func:`_record_all` (:class:`~facealign_cli.batch.recorder.Recorder`), then the summary.

    Args:
        items: the run's images (:func:`facealign_cli.io.inputs.collect_inputs`), input order.
        opts: the run's settings.
        stdout: binary stream for NDJSON when ``opts.out == "-"`` (default
            ``sys.stdout.buffer``).
        stderr: text stream for progress and messages (default ``sys.stderr``).
        stop: the run's stop flag (default: a new one), for a caller that stops the run from
            another thread (``stop.set()``: no new image starts, those in flight finish, the
            rest are recorded as not run and the exit code is 130, as for Ctrl-C). In the
            main thread the stop signals set it too. One flag per run: runs of one process
            (threads) stop independently.

    Returns:
        A :class:`RunSummary`; its ``exit_code`` is the CLI's exit status.

    Raises:
        ModelLoadError: ``opts.aligner.device`` is not available (before anything is
            written; :func:`~facealign_cli.batch.worker.run_provider`).
        OutputLockedError: another run is using ``opts.out``.
        BatchError: the output folder is unusable; with ``backend="dask"``: Dask is missing or
            its scheduler unreachable (before anything is written); with ``--out -``: no
            stdout.
        OptionError: (a BatchError and a ValueError) a video among the items with
            ``--out -`` (the options themselves are checked when they are made:
            :meth:`RunOptions.validate`).
    """
    from facealign_cli.io.video import is_video_path

    cmd = opts.cmd
    videos = sum(1 for it in items if not it.skipped and is_video_path(it.path))
    if opts.streaming and videos:
        raise OptionError("--out", "videos are written as files (one .jsonl per video, or "
                          "rows of pose.csv): give a folder to --out, not '-'")
    stderr = stderr or sys.stderr
    note = quality_filter_warning(cmd, opts)
    if note and not opts.quiet:
        stderr.write(note + "\n")
    run_provider(opts)  # an unavailable --device: one setup error before --out is touched
    t0 = time.perf_counter()
    stop = stop if stop is not None else StopFlag()
    summary = RunSummary(total=len(items), videos=videos)
    with contextlib.ExitStack() as stack:
        out, ndjson = _lock(opts, stdout, stack)
        state = _open_state(cmd, opts, out, summary, stack)
        if state is not None:
            state.scan(items)
        done = state.is_done if state is not None else (lambda it: False)
        todo = [it for it in items if not it.skipped and not done(it)]
        reporter = Reporter(opts.command, len(items), stderr, quiet=opts.quiet,
                            verbose=opts.verbose, progress=opts.progress)
        stack.callback(reporter.close)
        executor = _start(opts, todo, stack, stop)  # before any write
        notice = StopNotice(stderr, stop)
        recorder = Recorder(cmd, opts, out, ndjson, summary, reporter, notice, state)
        recorder.open()
        results = _results(opts, todo, executor, reporter.line, stop)
        # 1st signal: stop starting images; 2nd: abort (KeyboardInterrupt below); more: ignored
        stops = stack.enter_context(StopSignals(stop, notice.on_signal))
        recorder.defer = stops.deferring  # an abort (second signal) waits for a whole record
        _record_all(items, state, results, recorder, stops)
        reporter.close()
        if state is not None and not opts.quiet:
            _note_gone(state, len(items), stderr)
        summary.interrupted = int(stops.first or summary.interrupted or _stopped(stop, summary))
    summary.seconds = time.perf_counter() - t0
    if not opts.quiet:
        _print_summary(opts, summary, stderr)
    return summary


def _stopped(stop: StopFlag, summary: RunSummary) -> int:
    """SIGINT's number when the run's flag was set without a signal (by its caller) and
    images were left out, else 0."""
    return signal.SIGINT if stop.is_set() and summary.not_run else 0


def _lock(opts: RunOptions, stdout: IO | None, stack: contextlib.ExitStack):
    """``(out, ndjson)``: the output folder, created and locked for the run (stale temporary
    files of a killed run removed), or, streaming, the NDJSON stream (``out`` None).

    Raises:
        OutputLockedError: another run holds the folder. BatchError: it cannot be used.
    """
    if opts.streaming:
        return None, stack.enter_context(clean_stdout(stdout))
    out = Path(opts.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        stack.enter_context(OutputLock(out))
    except OSError as exc:
        raise BatchError(f"cannot use output folder {out}: {exc}") from None
    with contextlib.suppress(OSError):
        clean_stale_temp_files(out)  # left by a killed run; we hold the lock
    return out, None


def _open_state(cmd, opts: RunOptions, out: Path | None, summary: RunSummary,
                stack: contextlib.ExitStack):
    """The run state of ``out`` (:class:`~facealign_cli.batch.resume.RunState`; None when
    streaming), closed with the run's counts when the run ends (before the lock is released).

    Raises:
        BatchError: the state database cannot be used.
    """
    if out is None:
        return None
    from facealign_cli.batch.resume import RunState

    state = RunState(out, cmd, opts, opts.verify_inputs)
    stack.callback(state.close, summary)
    return state


def _note_gone(state, n_items: int, stderr: IO) -> None:
    """Say which recorded items' inputs are gone (their outputs are kept, not deleted)."""
    from facealign_cli.batch.result import printable

    n, examples = state.gone(n_items)
    if n:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            stderr.write(f"facealign: note: {n} item(s) recorded in {state.out} have no input "
                         f"any more (e.g. {printable(examples[0])}); their outputs are kept "
                         f"(facealign status {state.out} --gone lists them)\n")


def _start(opts: RunOptions, todo: list, stack: contextlib.ExitStack, stop: StopFlag):
    """Check the model files (one setup error before any work) and start the executor of
    the run (None: nothing to run)."""
    if todo:
        preflight(opts)
    return _make_executor(opts, todo, stack, stop)


def _item_result(it: InputItem, state, results: Iterator[ImageResult] | None,
                 why: str = "the run was interrupted") -> ImageResult:
    """The result of item ``it``: done earlier (``state``:
    :class:`~facealign_cli.batch.resume.RunState`, or None), a folder entry the input walk
    could not take, the next of ``results``, or (``results`` None or ended by a stop) not
    run."""
    if state is not None and state.is_done(it):
        return state.done_result(it)
    if it.skipped:
        return ImageResult.input_skipped(it)
    res = next(results, None) if results is not None else None
    return res if res is not None else ImageResult.not_run(it, why)


def _record_all(items: Sequence[InputItem], state, results,
                rec: Recorder, stops: StopSignals) -> None:
    """Record every item in input order; after a run-level error or an abort, the items
    not recorded yet as not run; then close the recorder (whatever happened)."""
    summary, reporter = rec.summary, rec.reporter

    def rest_not_run(why: str) -> None:
        for it in items[rec.recorded:]:
            rec.record(_item_result(it, state, None, why))

    try:
        for it in items:
            rec.record(_item_result(it, state, results))
    except (ModelLoadError, ClusterError) as exc:
        summary.fatal = str(exc)
        reporter.line(f"facealign: error: {exc}")
        rest_not_run("the run stopped on an error")
    except OutputWriteError as exc:
        summary.output_error = str(exc)
        summary.broken_pipe = exc.broken_pipe
        summary.not_run += len(items) - rec.recorded
        if not exc.broken_pipe:  # a reader that went away (| head) is an expected end
            reporter.line(f"facealign: error: {exc}; stopped" + (
                " (run the same command again to resume)" if rec.out is not None else ""))
    except KeyboardInterrupt:  # a second signal (or Ctrl-C where no handler runs)
        if not stops.first:
            summary.interrupted = signal.SIGINT
        with contextlib.suppress(OutputWriteError):
            rest_not_run("the run was interrupted")
    finally:
        stops.close()  # signals are ignored from here on
        with contextlib.suppress(Exception):
            results.close()
        rec.close(items)


def _count_items(s: RunSummary) -> str:
    """``"3 image(s)"``, ``"1 video(s)"`` or ``"2 image(s) and 1 video(s)"``."""
    images = s.total - s.videos
    if not s.videos:
        return f"{images} image(s)"
    return f"{images} image(s) and {s.videos} video(s)" if images else f"{s.videos} video(s)"


def _print_summary(opts: RunOptions, s: RunSummary, stderr: IO) -> None:
    parts = [f"{s.ok} ok", f"{s.failed} failed", f"{s.skipped} skipped"]
    if s.not_run:
        parts.append(f"{s.not_run} not run")
    msg = (f"facealign {opts.command}: {_count_items(s)}: " + ", ".join(parts)
           + f" in {s.seconds:.1f} s")
    if s.manifest:
        msg += f"; manifest: {s.manifest}"
    try:
        stderr.write(msg + "\n")
        if s.interrupted:
            stderr.write("facealign: interrupted; run the same command again to resume\n")
        stderr.flush()
    except (OSError, ValueError, AttributeError):
        pass  # a closed stderr must not turn a finished run into an error


__all__ = ["run_batch", "RunOptions", "RunSummary"]
