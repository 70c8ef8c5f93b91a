"""``run_batch``: images in, per-image outputs + a manifest out (see ``docs/batch.md``).

The runner is the only writer, for every backend: workers (in-process, local processes, Dask
tasks) return an :class:`~facealign_cli.batch.result.ImageResult` holding the encoded files,
and :func:`facealign_cli.batch.state.commit` writes them here, in input order, followed by the
image's manifest line (or NDJSON record on stdout).
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from facealign_cli.batch.commands import POSE_COLUMNS, get_command, pad_pose_row
from facealign_cli.batch.options import (
    BACKENDS,
    MANIFEST_NAME,
    MAX_DASK_TIMEOUT,
    POSE_CSV_NAME,
    RENDER_DRAW_CHOICES,
    BatchError,
    ClusterError,
    ModelLoadError,
    OptionError,
    OutputWriteError,
    RunOptions,
    RunSummary,
)
from facealign_cli.batch.progress import Reporter
from facealign_cli.batch.result import ImageResult, one_line
from facealign_cli.batch.settings import run_settings, settings_path, write_settings
from facealign_cli.batch.signals import StopSignals
from facealign_cli.batch.state import (
    OutputLock,
    check_done,
    clean_stale_temp_files,
    commit,
    iter_done_records,
)
from facealign_cli.batch.streams import clean_stdout, output_error, write_all
from facealign_cli.batch.worker import STOP, preflight, process_chunk
from facealign_cli.defaults import MESH_FORMATS, MESH_FRAMES
from facealign_cli.io import records
from facealign_cli.io.inputs import InputItem

MAX_CHUNK = 16
# commands with dense outputs (meshes of ~3 MB per face) send each image's files back on its
# own: a chunk's encoded outputs live in the worker, in the pipe and in the parent until they
# are written, so a 16-image chunk of meshes cost ~0.5 GB per worker
MAX_DENSE_CHUNK = 1


def _chunk_size(opts: RunOptions, n: int, jobs: int) -> int:
    cap = MAX_DENSE_CHUNK if get_command(opts.command).dense else MAX_CHUNK
    return opts.chunk_size or max(1, min(cap, -(-n // (jobs * 4))))


def _results(opts: RunOptions, todo: list[InputItem], executor,
             warn: Callable[[str], None]) -> Iterator[ImageResult]:
    """Results of the ``todo`` items in order; stops early (fewer results) after a stop signal.

    Without an ``executor`` the images run in this process, one by one. Otherwise chunks run
    on it, at most ``2 x`` its parallelism in flight. A worker that dies breaks the chunks in
    flight, so the culprit is unknown: the run then goes on in *careful mode* for the images
    that may have been in flight (one image per task, one task at a time), so a second death
    names its image exactly (recorded as failed, error ``WorkerCrashed``); after that window,
    normal fan-out resumes.

    Raises:
        ModelLoadError: the model cannot be built. ClusterError: the Dask cluster failed.
    """
    if not todo:
        return
    if executor is None:
        for it in todo:
            if STOP.is_set():
                return
            yield from process_chunk(opts, [it])
        return
    jobs = executor.parallelism
    size = _chunk_size(opts, len(todo), jobs)
    pos = 0  # results yielded so far
    careful_until = 0  # todo[pos:careful_until] run one image at a time
    inflight: deque = deque()
    finished = False
    try:
        while pos < len(todo) and not STOP.is_set():
            careful = pos < careful_until
            end = careful_until if careful else len(todo)
            csize = 1 if careful else size
            workers = 2 if careful else max(2, min(jobs, -(-(end - pos) // csize)))
            window = 1 if careful else 2 * jobs
            start = pos
            try:
                while True:
                    while len(inflight) < window and start < end and not STOP.is_set():
                        chunk = list(todo[start:start + csize])
                        inflight.append(executor.submit(opts, chunk, workers))
                        start += len(chunk)
                    if not inflight:
                        break
                    recs = inflight[0].result()
                    inflight.popleft()
                    for r in recs:
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


def _make_executor(opts: RunOptions, todo: list, stack: contextlib.ExitStack, warn):
    """The executor of the run (None: in this process); connects to Dask if needed."""
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
    if jobs == 1:
        return None
    from facealign_cli.batch.executors import LocalExecutor

    return LocalExecutor(jobs)


def _validate(opts: RunOptions) -> None:
    cmd = get_command(opts.command)
    if opts.streaming and not cmd.streamable:
        raise ValueError(f"{opts.command} cannot write to stdout ('--out -')")
    if opts.mesh_format not in MESH_FORMATS:
        raise ValueError(f"unknown mesh format {opts.mesh_format!r}")
    if opts.mesh_frame not in MESH_FRAMES:
        raise ValueError(f"unknown mesh frame {opts.mesh_frame!r}; expected one of "
                         f"{MESH_FRAMES}")
    if opts.texture and opts.mesh_format not in ("obj", "glb"):
        raise ValueError("a textured mesh is written as obj or glb, not "
                         f"{opts.mesh_format!r}")
    bad = [d for d in opts.draw if d not in RENDER_DRAW_CHOICES]
    if bad or not opts.draw:
        raise ValueError(f"invalid draw choice(s) {bad or list(opts.draw)}; expected some of "
                         f"{RENDER_DRAW_CHOICES}")
    if not 0.0 <= opts.min_score <= 1.0:
        raise ValueError(f"min_score must lie in [0, 1], got {opts.min_score!r}")
    if not 0.0 <= opts.min_quality <= 1.0:
        raise ValueError(f"min_quality must lie in [0, 1], got {opts.min_quality!r}")
    if opts.backend not in BACKENDS:
        raise ValueError(f"unknown backend {opts.backend!r}; expected one of {BACKENDS}")
    if opts.backend == "dask" and not opts.scheduler:
        raise ValueError("the dask backend needs a scheduler address")
    if not 0 < opts.dask_timeout <= MAX_DASK_TIMEOUT:  # False for nan
        raise ValueError(f"dask_timeout must lie in (0, {MAX_DASK_TIMEOUT:g}] seconds, got "
                         f"{opts.dask_timeout!r}")
    if opts.max_fps is not None and not 0 < opts.max_fps < float("inf"):
        raise ValueError(f"max_fps must be a finite number > 0, got {opts.max_fps!r}")
    if not opts.out:
        raise ValueError("the output folder is empty ('')")
    if not cmd.uses_regressor and opts.detect_every > 1:
        raise OptionError(
            f"--detect-every {opts.detect_every}: {cmd.name} runs the detector on every "
            "processed frame (it has no landmarks to carry faces with between detector "
            f"frames); use --frame-step {opts.detect_every} to process one frame in "
            f"{opts.detect_every} (--detect-every is for landmarks, pose, mesh and render)")


def run_batch(items: Sequence[InputItem], opts: RunOptions, *, stdout: IO | None = None,
              stderr: IO | None = None) -> RunSummary:
    """Run a command over images and write outputs, manifest and (``pose``) the CSV.

    Args:
        items: the run's images (:func:`facealign_cli.io.inputs.collect_inputs`), input order.
        opts: the run's settings.
        stdout: binary stream for NDJSON when ``opts.out == "-"`` (default
            ``sys.stdout.buffer``).
        stderr: text stream for progress and messages (default ``sys.stderr``).

    Returns:
        A :class:`RunSummary`; its ``exit_code`` is the CLI's exit status.

    Raises:
        OutputLockedError: another run is using ``opts.out``.
        BatchError: the output folder is unusable; with ``backend="dask"``: Dask is missing or
            its scheduler unreachable (before anything is written); with ``--out -``: no
            stdout.
        ValueError: invalid options (unknown command or backend, ``mesh`` or a video to
            stdout ...).
        OptionError: (a BatchError and a ValueError) options that do not go together for
            the command (``detect`` with ``detect_every > 1``).
    """
    _validate(opts)
    if opts.streaming:
        from facealign_cli.io.video import is_video_path

        if any(not it.skipped and is_video_path(it.path) for it in items):
            raise ValueError("videos are written as files: give a folder to --out, not '-'")
    cmd = get_command(opts.command)
    stderr = stderr or sys.stderr
    t0 = time.perf_counter()
    STOP.clear()
    from facealign_cli.io.video import is_video_path

    summary = RunSummary(total=len(items), videos=sum(
        1 for it in items if not it.skipped and is_video_path(it.path)))
    state: dict[str, Any] = {}

    with contextlib.ExitStack() as stack:
        out = None
        manifest = pose_csv = ndjson = None
        if opts.streaming:
            ndjson = stack.enter_context(clean_stdout(stdout))
        else:
            out = Path(opts.out)
            try:
                out.mkdir(parents=True, exist_ok=True)
                stack.enter_context(OutputLock(out))
            except OSError as exc:
                raise BatchError(f"cannot use output folder {out}: {exc}") from None
            with contextlib.suppress(OSError):
                clean_stale_temp_files(out)  # left by a killed run; we hold the lock

        # Resume: which images are done already (decided before any model is loaded).
        done: dict[int, dict] = {}
        if out is not None and not opts.overwrite:
            from facealign_cli.io.video import is_video_path

            fp, vfp = cmd.fingerprint(opts), cmd.video_fingerprint(opts)
            for it in items:
                if it.skipped:
                    continue
                rec = check_done(cmd, opts, out, it, vfp if is_video_path(it.path) else fp)
                if rec is not None:
                    done[it.index] = rec
        todo = [it for it in items if it.index not in done and not it.skipped]

        reporter = Reporter(opts.command, len(items), stderr, quiet=opts.quiet,
                            verbose=opts.verbose, progress=opts.progress)
        stack.callback(reporter.close)
        if todo:
            preflight(opts)  # a missing model file: one setup error before any work
        executor = _make_executor(opts, todo, stack, reporter.line)  # before any write

        if out is not None:
            try:
                manifest = records.AtomicJsonLinesFile(out / MANIFEST_NAME)
                write_settings(settings_path(out, cmd.name), run_settings(cmd, opts))
                if cmd.table:
                    pose_csv = records.StreamingCSV(out / POSE_CSV_NAME, POSE_COLUMNS)
            except OSError as exc:
                raise BatchError(f"cannot use output folder {out}: {exc}") from None
            summary.manifest = str(out / MANIFEST_NAME)

        stop_msg = ("facealign: interrupted: finishing the images in flight "
                    "(press Ctrl-C again to abort at once)")
        try:
            err_fd = stderr.fileno()
        except (OSError, ValueError, AttributeError):
            err_fd = None

        def on_signal(signum):
            # Runs inside the signal handler: only an unbuffered os.write is safe here (a
            # buffered stream may be in the middle of a write). Without a file descriptor the
            # message is printed by emit() at the next record.
            if err_fd is not None:
                with contextlib.suppress(OSError):
                    os.write(err_fd, ("\n" + stop_msg + "\n").encode())
                    state["announced"] = True

        emitted = [0]
        lines: list | None = [] if out is not None and cmd.wants_lines(opts) else None

        def emit(res: ImageResult) -> None:
            with stops.deferring():  # an abort (second signal) waits for the whole record
                _emit(res)

        def _emit(res: ImageResult) -> None:
            res = commit(out, cmd.name, res)  # the one write path, for every backend
            if lines is not None:
                lines.append((res.key, res.manifest_line()))
            if STOP.is_set() and not state.get("announced"):
                state["announced"] = True
                reporter.line(stop_msg)
            reporter.record(res)
            if pose_csv is not None and res.rows:
                try:
                    pose_csv.writerows(pad_pose_row(r) for r in res.rows)
                except OSError as exc:
                    raise output_error(f"the table {out / POSE_CSV_NAME}", exc) from None
            if manifest is not None:
                try:
                    manifest.write(res.manifest_line())
                except OSError as exc:
                    raise output_error(f"the manifest {manifest.partial}", exc) from None
            if ndjson is not None:
                line = (records.dumps(res.stream_record()) + "\n").encode(
                    records.ENCODING, records.ERRORS)
                try:
                    write_all(ndjson, line)
                except (OSError, ValueError) as exc:
                    if isinstance(exc, ValueError):  # closed
                        exc = OSError(errno.EBADF, os.strerror(errno.EBADF))
                    raise output_error("to stdout", exc) from None
            if res.status == "ok":  # counted once recorded (a record that cannot be written
                summary.ok += 1     # is counted as not run)
            elif res.status == "failed":
                summary.failed += 1
            elif res.interrupted:
                summary.not_run += 1
            else:
                summary.skipped += 1
            emitted[0] += 1

        results = _results(opts, todo, executor, reporter.line)
        # 1st signal: stop starting images; 2nd: abort (KeyboardInterrupt below); more: ignored
        stops = stack.enter_context(StopSignals(STOP, on_signal))
        try:
            for it in items:
                if it.index in done:
                    emit(ImageResult.done_earlier(it, done[it.index]))
                    continue
                if it.skipped:  # a folder entry the input walk could not take
                    emit(ImageResult.input_skipped(it))
                    continue
                res = next(results, None)  # None: stopped by a signal before this image
                emit(res if res is not None else ImageResult.not_run(it))
        except (ModelLoadError, ClusterError) as exc:
            summary.fatal = str(exc)
            reporter.line(f"facealign: error: {exc}")
            _finish_not_run(items[emitted[0]:], done, emit, "the run stopped on an error")
        except OutputWriteError as exc:
            summary.output_error = str(exc)
            summary.broken_pipe = exc.broken_pipe
            summary.not_run += len(items) - emitted[0]
            if not exc.broken_pipe:  # a reader that went away (| head) is an expected end
                reporter.line(f"facealign: error: {exc}; stopped" + (
                    " (run the same command again to resume)" if out is not None else ""))
        except KeyboardInterrupt:  # a second signal (or Ctrl-C where no handler runs)
            if not stops.first:
                summary.interrupted = signal.SIGINT
            with contextlib.suppress(OutputWriteError):
                _finish_not_run(items[emitted[0]:], done, emit, "the run was interrupted")
        finally:
            stops.close()  # signals are ignored from here on
            with contextlib.suppress(Exception):
                results.close()
            if manifest is not None:
                try:
                    manifest.commit()
                except OSError as exc:
                    if summary.output_error is None:
                        summary.output_error = str(output_error(f"the manifest {manifest.path}",
                                                                 exc))
                        reporter.line(f"facealign: error: {summary.output_error}")
            if lines is not None and summary.output_error is None:
                try:
                    cmd.finish(out, opts, lines)
                except OSError as exc:
                    summary.output_error = f"cannot write the run's pages in {out}: {exc}"
                    reporter.line(f"facealign: error: {summary.output_error}")
            if pose_csv is not None:
                try:
                    _add_other_rows(pose_csv, out, cmd, opts, items)
                    pose_csv.commit()
                except OSError as exc:
                    pose_csv.abort()
                    if summary.output_error is None:
                        summary.output_error = f"cannot write {out / POSE_CSV_NAME}: {exc}"
                        reporter.line(f"facealign: error: {summary.output_error}")
        reporter.close()
        summary.interrupted = int(stops.first or summary.interrupted)

    summary.seconds = time.perf_counter() - t0
    if not opts.quiet:
        _print_summary(opts, summary, stderr)
    STOP.clear()
    return summary


def _add_other_rows(pose_csv, out: Path, cmd, opts: RunOptions,
                    items: Sequence[InputItem]) -> None:
    """Append to ``pose.csv`` the rows of images done in ``out`` by earlier runs (same
    settings) that are not among this run's inputs (by output key order)."""
    paths = {it.path for it in items}
    fps = (cmd.fingerprint(opts), cmd.video_fingerprint(opts))
    for rec in iter_done_records(out, cmd.name):
        rows = rec.get("rows")
        if (rec.get("fingerprint") not in fps or not isinstance(rows, list)
                or rec.get("path") in paths):
            continue
        pose_csv.writerows(pad_pose_row(r) for r in rows)


def _finish_not_run(rest, done, emit, why: str) -> None:
    """Record the images not yet recorded (after an abort or a fatal error): those done by
    an earlier run as skipped, the others as not processed."""
    for it in rest:
        if it.index in done:
            emit(ImageResult.done_earlier(it, done[it.index]))
        elif it.skipped:
            emit(ImageResult.input_skipped(it))
        else:
            emit(ImageResult.not_run(it, why))


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
