"""One item (a photo or a video) in, one :class:`~facealign_cli.batch.result.ImageResult` out:
the one processing path of every command (see :mod:`facealign_cli.batch.sources` for the
frames and :mod:`facealign_cli.batch.commands` for the writers)."""

from __future__ import annotations

import time
import traceback
from dataclasses import replace

from facealign_cli.batch.commands import Command, Encoded
from facealign_cli.batch.errors import ModelLoadError
from facealign_cli.batch.options import RunOptions
from facealign_cli.batch.record_types import DoneRecord, FrameCounts
from facealign_cli.batch.result import ImageResult, one_line
from facealign_cli.batch.sources import PhotoSource, open_source
from facealign_cli.batch.spools import as_bytes
from facealign_cli.io.inputs import InputItem


def process_item(cmd: Command, opts: RunOptions, item: InputItem, context,
                 stop) -> ImageResult:
    """Run one item through the model and encode its outputs (nothing is written under
    ``--out``: a photo's files are bytes, a video's spooled). Never raises for a problem of
    this item (returns a ``failed`` result; a video frame whose processing raised is recorded
    as failed and the video goes on). A stop request (``stop.is_set()``) is checked before
    each frame of a video and returns a not-run result (``Interrupted``; its partial outputs
    are discarded, no done record).

    Args:
        context: where the item runs (:class:`~facealign_cli.batch.worker.WorkerContext`:
            its cached model, its spool sweep).
        stop: the run's :class:`~facealign_cli.batch.stopping.StopFlag`.

    Raises:
        ModelLoadError: the model cannot be built.
    """
    t0 = time.perf_counter()
    source = open_source(cmd, opts, item)
    writer = None
    try:
        if source.many:
            context.sweep_spools()  # before this item's spools: those of dead runs go
        source.open()
        aligner = context.get_aligner(opts)
        source.start(aligner)
        writer = cmd.open_writer(item=item, source=source, aligner=aligner, opts=opts)
        for frame in source.frames():
            if source.many and stop.is_set():
                writer.discard()
                return ImageResult.not_run(item)
            try:
                faces = source.faces(frame, writer.dense())
                writer.add(frame, faces)
            except ModelLoadError:
                raise
            except Exception as exc:  # one bad frame never stops the video
                if not source.many:
                    raise
                writer.add_failed(frame, f"{type(exc).__name__}: {one_line(exc)}")
                faces = None
            source.count(faces)
            del frame, faces
        enc = writer.close()
        video = source.finish()
        return _ok(cmd, opts, item, source, enc, video, round(time.perf_counter() - t0, 3))
    except ModelLoadError:
        if writer is not None:
            writer.discard()
        raise
    except Exception as exc:  # one bad item never stops the batch
        if writer is not None:
            writer.discard()
        tb = traceback.format_exc() if opts.verbose >= 2 else None
        res = ImageResult.failure(item, exc, round(time.perf_counter() - t0, 3), tb)
        video = source.failed_counts(exc)
        return res if video is None else replace(res, video=video)
    finally:
        source.close()


def _ok(cmd: Command, opts: RunOptions, item: InputItem, source: PhotoSource, enc: Encoded,
        video: FrameCounts | None, seconds: float) -> ImageResult:
    """The result of an item done: its outputs and done record (none when streaming)."""
    if video is not None and enc.codec is not None:
        video = replace(video, codec=enc.codec)
    done = None
    if not opts.streaming:
        done = DoneRecord(source.fingerprint(), item.path, source.n_faces, enc.outputs,
                          source.width, source.height, video, enc.rows, enc.faces)
    files = as_bytes(enc.files) if opts.backend == "dask" else enc.files
    return ImageResult(item.path, item.key, "ok", n_faces=source.n_faces, outputs=enc.outputs,
                       message="; ".join(m for m in (item.note, enc.message or source.message)
                                         if m) or None, seconds=seconds,
                       width=source.width, height=source.height, rows=enc.rows,
                       record=enc.record, files=files, done=done, video=video)
