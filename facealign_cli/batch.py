"""The batch runner: images in, per-image outputs + a manifest out, with fan-out, resume,
locking, progress and exit codes. The command line (:mod:`facealign_cli.cli`) only parses
options and calls :func:`run_batch`.

Commands and what one image produces (``<key>`` is the image's output key, see
:mod:`facealign_cli.inputs`; every coordinate is in the full-resolution, upright image's
pixels, frame of :mod:`facealign_cli.face`):

* ``detect``: ``<out>/<key>.json`` = ``{path, width, height, faces: [{box, score, keypoints}]}``.
* ``landmarks``: ``<out>/<key>.json`` = ``{path, width, height, faces: [Face.to_dict()]}``
  (box, score, keypoints, roi_box, landmarks_2d (68x2), landmarks_3d (68x3), pose).
* ``pose``: rows of the run's single table ``<out>/pose.csv`` with columns
  :data:`POSE_COLUMNS` (angles in degrees, box in pixels), one row per face, images in input
  order, faces by descending score.
* ``mesh``: ``<out>/<key>_face<k>.<obj|ply>`` per face ``k`` (0 = highest score): the dense
  face-region vertices (pixels, z away from the camera), the topology's triangles and per-vertex
  RGB colours sampled from the photo.

With ``out="-"`` nothing is written to disk: one NDJSON record per image goes to stdout
(``detect``, ``landmarks``, ``pose``), and nothing else is written there.

**Manifest**: ``<out>/manifest.jsonl`` gets one JSON line per input image of the run, in input
order: ``path``, ``status`` (``ok`` | ``failed`` | ``skipped``), ``n_faces``, ``outputs``
(paths relative to ``<out>``, ``/``-separated), ``error`` (exception class name or null),
``message``, ``seconds``. ``skipped`` with ``error: null`` means done by an earlier run;
``skipped`` with ``error: "Interrupted"`` means not processed because the run was interrupted.
It grows as ``manifest.jsonl.partial`` and replaces ``manifest.jsonl`` when the run ends
(normally, on error or on interruption).

**Resume**: after an image's outputs are written, a small record is written to
``<out>/.facealign/done/<command>/<key>.json`` (atomically, last). A later run skips an image
whose record exists, whose listed outputs all exist and whose settings (command, mesh format,
``max_faces``, weights) match; ``overwrite=True`` redoes everything. When an image is redone,
the outputs of its old record that the new run does not produce are removed (``_face2.obj``
after ``--max-faces 2``, or the ``.obj`` files after switching to ``--format ply``: write
different formats to different folders).
Failed images are always retried. ``pose.csv`` is rebuilt for every run from these records
(so it always covers exactly the run's inputs). Changing the *content* of the weights file
behind an unchanged path is not detected: use ``overwrite``.

**Locking**: ``<out>/.facealign/lock`` is held (``flock``) for the whole run; a second run on
the same ``<out>`` fails at once with :class:`OutputLockedError` (CLI exit code 2). The lock
dies with the process, so a crashed run never leaves a stale lock.

**Failures**: an exception while handling one image (unreadable file, decode error, a model
error on a strange image, a write error) is caught, recorded in the manifest and printed as one
line on stderr; the batch goes on. Only a model that cannot be loaded at all
(:class:`ModelLoadError`) stops the run.

**Interruption**: on SIGINT (Ctrl-C) or SIGTERM no new image is started; the images in flight
finish and are recorded, the rest are recorded as interrupted, the manifest is committed and
:attr:`RunSummary.exit_code` is 130 (SIGINT) or 143 (SIGTERM). A second signal aborts at once
(in-flight images are lost; the manifest is still committed).

**Fan-out**: ``jobs > 1`` runs chunks of images in joblib (loky) worker processes
(``Parallel(return_as="generator")``, results in input order, at most ``2 * jobs`` chunks in
flight, so memory stays bounded however long the run). Each worker builds the model once (a
module-level cache) and writes its images' outputs itself; the parent writes the manifest and
``pose.csv``. Workers ignore SIGINT and SIGTERM (the parent decides when to stop). A worker
that dies (a crash in a native library, the out-of-memory killer) does not stop the run: the
images that were in flight are redone one at a time, the one that kills a worker again is
recorded as failed (error ``WorkerCrashed``), and the run goes on with fresh workers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

from . import writers
from .inputs import InputItem

COMMANDS = ("detect", "landmarks", "pose", "mesh")
STREAMABLE = ("detect", "landmarks", "pose")
MESH_FORMATS = ("obj", "ply")
POSE_COLUMNS = ("path", "face", "yaw", "pitch", "roll", "x1", "y1", "x2", "y2", "score")
STATE_DIR = ".facealign"
MANIFEST_NAME = "manifest.jsonl"
POSE_CSV_NAME = "pose.csv"

EXIT_OK = 0
EXIT_FAILURES = 1
EXIT_USAGE = 2
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


class BatchError(RuntimeError):
    """A run-level problem (not one image's): reported by the CLI with exit code 2."""


class OutputLockedError(BatchError):
    """Another run holds the lock of the output folder."""


class ModelLoadError(BatchError):
    """The model (detector, regressor weights, 3DMM, topology) cannot be loaded."""


@dataclass(frozen=True)
class RunOptions:
    """Settings of one run (all picklable: a copy goes to every worker).

    Attributes:
        command: one of :data:`COMMANDS`.
        out: output folder, or ``"-"`` for NDJSON on stdout.
        jobs: worker processes (1 = in this process; 0 = one per CPU core).
        threads: threads per worker for the detector, torch and OpenCV (0 = CPU cores / jobs).
        max_faces: keep at most this many faces per image, highest scores first (0 = all).
        weights: regressor checkpoint (None = the default, see
            :func:`facealign_cli.regressor.default_weights_path`).
        overwrite: redo images already done.
        mesh_format: ``"obj"`` or ``"ply"`` (``mesh`` only).
        max_pixels: decode limit of :func:`facealign_cli.images.read_image` (None = default).
        chunk_size: images per worker task (0 = automatic).
        quiet: print nothing but per-image errors and run-level errors.
        verbose: 1 = one stderr line per image; 2 = also tracebacks of failures.
        progress: ``"auto"`` (a rich bar when stderr is a terminal), ``"always"`` or ``"never"``.
        aligner_factory: callable ``(RunOptions, threads) -> aligner`` used instead of building a
            :class:`facealign_cli.pipeline.FaceAligner` (tests; must be picklable).
    """

    command: str
    out: str
    jobs: int = 1
    threads: int = 0
    max_faces: int = 0
    weights: str | None = None
    overwrite: bool = False
    mesh_format: str = "obj"
    max_pixels: int | None = None
    chunk_size: int = 0
    quiet: bool = False
    verbose: int = 0
    progress: str = "auto"
    aligner_factory: Callable[..., Any] | None = None

    @property
    def streaming(self) -> bool:
        """True when records go to stdout as NDJSON instead of files."""
        return self.out == "-"

    def fingerprint(self) -> dict[str, Any]:
        """Settings an earlier run must have used for its outputs to be reused."""
        weights = self.weights or os.environ.get("FACEALIGN_WEIGHTS") or "default"
        fp: dict[str, Any] = {"command": self.command, "max_faces": self.max_faces}
        if self.command != "detect":
            fp["weights"] = str(weights)
        if self.command == "mesh":
            fp["format"] = self.mesh_format
        return fp


@dataclass
class RunSummary:
    """Counts and outcome of a run.

    Attributes:
        total: images in the run.
        ok, failed, skipped: images by status (``skipped`` = done earlier).
        not_run: images left out because the run was interrupted or stopped.
        interrupted: the signal number that stopped the run, or 0.
        fatal: message of a run-level error that stopped it (model loading), or None.
        seconds: wall time.
        manifest: path of the manifest written, or None.
    """

    total: int = 0
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    not_run: int = 0
    interrupted: int = 0
    fatal: str | None = None
    seconds: float = 0.0
    manifest: str | None = None

    @property
    def exit_code(self) -> int:
        """0 all done, 1 some images failed, 2 stopped by a run-level error, 130/143 signal."""
        if self.interrupted == signal.SIGINT:
            return EXIT_SIGINT
        if self.interrupted:
            return EXIT_SIGTERM
        if self.fatal:
            return EXIT_USAGE
        return EXIT_FAILURES if self.failed else EXIT_OK


# --------------------------------------------------------------------------------------------
# Worker side: model cache, per-image processing
# --------------------------------------------------------------------------------------------

_ALIGNER: Any = None
_ALIGNER_KEY: tuple | None = None
# Set by the parent's signal handler; only ever set in the parent process, so it stops the
# in-process (jobs=1) loop between images. Workers ignore SIGINT and finish their chunk.
_STOP = threading.Event()


class _DetectOnlyRegressor:
    """Stands in for the regressor when only detection is needed (``detect`` never loads the
    weights or torch)."""

    input_size = 120

    def predict(self, crops):  # pragma: no cover - never called by FaceAligner.detect
        raise RuntimeError("the detect command does not run the regressor")


def _effective_threads(opts: RunOptions) -> int:
    if opts.threads > 0:
        return opts.threads
    return max(1, (os.cpu_count() or 1) // max(1, opts.jobs))


def build_aligner(opts: RunOptions, threads: int):
    """The :class:`~facealign_cli.pipeline.FaceAligner` for a run's settings.

    ``detect`` gets a detector-only aligner (no weights, no torch).

    Raises:
        Exception: whatever loading raises (missing weights, 3DMM basis, topology ...).
    """
    from .pipeline import FaceAligner

    if opts.command == "detect":
        regressor = _DetectOnlyRegressor()
    else:
        from .regressor import Regressor

        regressor = Regressor(weights=opts.weights, num_threads=threads)
    aligner = FaceAligner(regressor=regressor, max_faces=opts.max_faces, num_threads=threads)
    if opts.command == "mesh":
        aligner.topology  # noqa: B018 - load the topology now so a missing file is fatal
    return aligner


def _get_aligner(opts: RunOptions):
    """The aligner of this process for ``opts``, built once and cached (one per worker)."""
    global _ALIGNER, _ALIGNER_KEY
    factory = opts.aligner_factory or build_aligner
    key = (opts.command == "detect", opts.command == "mesh", opts.weights,
           os.environ.get("FACEALIGN_WEIGHTS"), opts.threads, opts.jobs, opts.max_faces, factory)
    if _ALIGNER is None or _ALIGNER_KEY != key:
        threads = _effective_threads(opts)
        try:
            import cv2

            cv2.setNumThreads(threads)
        except ImportError:  # pragma: no cover
            pass
        _ALIGNER = None  # free the old model before building the next
        try:
            _ALIGNER = factory(opts, threads)
        except Exception as exc:
            raise ModelLoadError(f"cannot load the model: {type(exc).__name__}: {exc}") from None
        _ALIGNER_KEY = key
    return _ALIGNER


def _worker_init() -> None:
    """Initializer of loky workers: leave SIGINT / SIGTERM to the parent (which lets the
    images in flight finish; loky stops workers with SIGKILL), keep stdout clean."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with contextlib.suppress(OSError, ValueError, AttributeError):
        sys.stdout.flush()
        os.dup2(sys.stderr.fileno(), 1)  # a stray print in a worker must not corrupt NDJSON
    sys.stdout = sys.stderr


def _rescale_faces(faces, scale: int) -> None:
    """Map faces found on an image decoded at 1/``scale`` to full-resolution pixels, in place
    (x' = scale * x + (scale - 1) / 2, same for y; z' = scale * z)."""
    import numpy as np

    off = (scale - 1) / 2.0
    for f in faces:
        for name in ("box", "roi_box"):
            a = getattr(f, name)
            if a is not None:
                setattr(f, name, (np.asarray(a, np.float32) * scale + off).astype(np.float32))
        if f.keypoints is not None:
            f.keypoints = (np.asarray(f.keypoints, np.float32) * scale + off).astype(np.float32)
        for name in ("landmarks_3d", "vertices"):
            a = getattr(f, name)
            if a is not None:
                a = np.asarray(a, np.float32) * scale
                a[:, :2] += off
                setattr(f, name, a.astype(np.float32))


def _num(v, nd: int = 2):
    return round(float(v), nd)


def pose_rows(path: str, faces) -> list[list[Any]]:
    """Rows of ``pose.csv`` (:data:`POSE_COLUMNS`) for one image's faces (``pose`` filled)."""
    rows = []
    for k, f in enumerate(faces):
        yaw, pitch, roll = (_num(v) for v in f.pose)
        x1, y1, x2, y2 = (_num(v) for v in f.box[:4])
        rows.append([path, k, yaw, pitch, roll, x1, y1, x2, y2, _num(f.score, 4)])
    return rows


def _done_path(out: Path, command: str, key: str) -> Path:
    return out / STATE_DIR / "done" / command / (key + ".json")


def _out_path(out: Path, rel: str) -> Path:
    return out.joinpath(*rel.split("/"))


def _remove_stale(out: Path, command: str, key: str, keep: Sequence[str]) -> None:
    """Delete outputs listed by an earlier run's done record that this run does not produce."""
    rec_path = _done_path(out, command, key)
    try:
        old = writers.read_json(rec_path)
        old_outputs = list(old.get("outputs", []))
    except (OSError, ValueError, AttributeError):
        return
    for rel in old_outputs:
        if (not isinstance(rel, str) or rel in keep or rel in (POSE_CSV_NAME, MANIFEST_NAME)
                or rel.startswith(("/", STATE_DIR)) or ".." in rel.split("/")):
            continue  # run-wide files and anything outside <out> are never removed
        with contextlib.suppress(OSError):
            _out_path(out, rel).unlink()


def _process_one(opts: RunOptions, item: InputItem) -> dict[str, Any]:
    """Run one image through the model and write its outputs. Never raises for a problem of
    this image (returns a ``failed`` record); raises :class:`ModelLoadError`."""
    from .images import read_image

    t0 = time.perf_counter()
    out = None if opts.streaming else Path(opts.out)
    rec: dict[str, Any] = {"path": item.path, "status": "ok", "n_faces": None, "outputs": [],
                           "error": None, "message": None}
    try:
        dec = read_image(item.path, max_pixels=opts.max_pixels)
        aligner = _get_aligner(opts)
        img = dec.image
        if opts.command == "detect":
            faces = aligner.detect(img)
        else:
            faces = aligner(img, dense=opts.command == "mesh")
        colours = None
        if opts.command == "mesh":
            from .mesh_io import sample_vertex_colors

            colours = [sample_vertex_colors(img, f.vertices) for f in faces]
        if dec.scale > 1:
            _rescale_faces(faces, dec.scale)
            rec["message"] = f"decoded at 1/{dec.scale} size (over the pixel limit)"
        rec["n_faces"] = len(faces)
        rec["width"], rec["height"] = dec.width, dec.height
        del img

        if opts.command in ("detect", "landmarks"):
            if opts.command == "detect":
                fd = [{k: v for k, v in f.to_dict(with_landmarks=False).items()
                       if k in ("box", "score", "keypoints")} for f in faces]
            else:
                fd = [f.to_dict() for f in faces]
            doc = {"path": item.path, "width": dec.width, "height": dec.height, "faces": fd}
            if out is None:
                rec["data"] = doc
            else:
                rel = item.key + ".json"
                writers.write_json(_out_path(out, rel), doc, indent=None)
                rec["outputs"] = [rel]
        elif opts.command == "pose":
            rows = pose_rows(item.path, faces)
            rec["rows"] = rows
            if out is None:
                rec["data"] = {"path": item.path, "width": dec.width, "height": dec.height,
                               "faces": [dict(zip(POSE_COLUMNS[1:], r[1:])) for r in rows]}
            elif rows:
                rec["outputs"] = [POSE_CSV_NAME]
        else:  # mesh
            from .mesh_io import write_mesh

            tris = aligner.topology.triangles
            outs = []
            for k, (f, col) in enumerate(zip(faces, colours)):
                rel = f"{item.key}_face{k}.{opts.mesh_format}"
                write_mesh(_out_path(out, rel), f.vertices, tris, col, opts.mesh_format)
                outs.append(rel)
            rec["outputs"] = outs

        if out is not None:
            _remove_stale(out, opts.command, item.key, rec["outputs"])
            done = {"fingerprint": opts.fingerprint(), "path": item.path,
                    "n_faces": rec["n_faces"], "outputs": rec["outputs"],
                    "width": dec.width, "height": dec.height}
            if opts.command == "pose":
                done["rows"] = rec["rows"]
            writers.write_json(_done_path(out, opts.command, item.key), done, indent=None)
    except ModelLoadError:
        raise
    except Exception as exc:  # one bad image never stops the batch
        rec.update(status="failed", n_faces=None, outputs=[], error=type(exc).__name__,
                   message=_one_line(exc))
        rec.pop("data", None)
        rec.pop("rows", None)
        if opts.verbose >= 2:
            rec["traceback"] = traceback.format_exc()
        if out is not None:  # an image that fails now is not "done", whatever it was before
            with contextlib.suppress(OSError):
                _done_path(out, opts.command, item.key).unlink()
    rec["seconds"] = round(time.perf_counter() - t0, 3)
    return rec


def _one_line(exc: BaseException) -> str:
    from .images import ImageError

    msg = exc.reason if isinstance(exc, ImageError) else str(exc)
    msg = " ".join(msg.split())
    return (msg[:500] + "...") if len(msg) > 500 else (msg or type(exc).__name__)


def _interrupted_record(item: InputItem, why: str = "the run was interrupted") -> dict[str, Any]:
    return {"path": item.path, "status": "skipped", "n_faces": None, "outputs": [],
            "error": "Interrupted", "message": f"not processed: {why}", "seconds": 0.0}


def process_chunk(opts: RunOptions, items: Sequence[InputItem]) -> list[dict[str, Any]]:
    """Process a chunk of images (in a worker or in-process); one record per item, in order.

    Raises:
        ModelLoadError: the model cannot be built (the run stops).
    """
    recs = []
    for it in items:
        if _STOP.is_set():  # only in-process: stop between images
            recs.append(_interrupted_record(it))
        else:
            recs.append(_process_one(opts, it))
    return recs


# --------------------------------------------------------------------------------------------
# Parent side
# --------------------------------------------------------------------------------------------


class _OutputLock:
    """Exclusive lock on ``<out>/.facealign/lock`` for the duration of a run.

    Raises:
        OutputLockedError: another process holds it.
    """

    def __init__(self, out: Path):
        self.path = out / STATE_DIR / "lock"
        self._f = None

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = open(self.path, "a+")
        try:
            _lock_file(f)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "unknown process"
            f.close()
            raise OutputLockedError(
                f"output folder {self.path.parent.parent} is in use by another facealign run "
                f"({holder}); wait for it to finish or choose another --out") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}")
        f.flush()
        self._f = f
        return self

    def __exit__(self, *exc):
        if self._f is not None:
            with contextlib.suppress(OSError):
                self._f.seek(0)
                self._f.truncate()
                _unlock_file(self._f)
            self._f.close()
            self._f = None


def _lock_file(f) -> None:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        import msvcrt

        f.seek(0)
        msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)
        return
    fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


def _unlock_file(f) -> None:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        import msvcrt

        f.seek(0)
        msvcrt.locking(f.fileno(), msvcrt.LK_UNLCK, 1)
        return
    fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _check_done(opts: RunOptions, out: Path, item: InputItem, fp: dict) -> dict | None:
    """The done record of an earlier run if ``item`` can be skipped, else None."""
    try:
        rec = writers.read_json(_done_path(out, opts.command, item.key))
    except (OSError, ValueError):
        return None
    if not isinstance(rec, dict) or rec.get("fingerprint") != fp:
        return None
    outputs = rec.get("outputs")
    if not isinstance(outputs, list):
        return None
    if opts.command != "pose" and not all(_out_path(out, o).is_file() for o in outputs):
        return None
    if opts.command == "pose" and not isinstance(rec.get("rows"), list):
        return None
    return rec


class _Reporter:
    """Progress and per-image messages on stderr: a rich bar on a terminal, plain lines
    otherwise (failures always; one line per image with ``verbose``; nothing else unless the
    run ends)."""

    def __init__(self, opts: RunOptions, total: int, stderr: IO):
        self.opts = opts
        self.stderr = stderr
        self.total = total
        self._progress = None
        self._task = None
        want_bar = {"always": True, "never": False}.get(
            opts.progress, bool(getattr(stderr, "isatty", lambda: False)()))
        if want_bar and not opts.quiet and total > 0:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)

            console = Console(file=stderr, stderr=True)
            self._progress = Progress(TextColumn(f"{opts.command}"), BarColumn(),
                                      MofNCompleteColumn(), TimeElapsedColumn(),
                                      TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                                      console=console, transient=False)
            self._task = self._progress.add_task(opts.command, total=total, info="")
            self._progress.start()
        self.counts = {"ok": 0, "failed": 0, "skipped": 0}

    def line(self, text: str) -> None:
        """Print one line on stderr (above the bar if there is one)."""
        if self._progress is not None:
            self._progress.console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            self.stderr.write(text + "\n")
            self.stderr.flush()

    def record(self, rec: dict) -> None:
        st = rec["status"]
        if st == "failed":
            self.line(f"facealign: failed: {rec['path']}: {rec['error']}: {rec['message']}")
            if rec.get("traceback"):
                self.line(rec["traceback"].rstrip())
        elif self.opts.verbose and not self.opts.quiet:
            if st == "ok":
                self.line(f"ok {rec['path']}: {rec['n_faces']} face(s) ({rec['seconds']:.2f} s)")
            elif rec.get("error") is None:
                self.line(f"skipped {rec['path']}: done by an earlier run")
        if st in self.counts and rec.get("error") != "Interrupted":
            self.counts[st] += 1
        if self._progress is not None:
            c = self.counts
            info = f"{c['failed']} failed" if c["failed"] else ""
            self._progress.update(self._task, advance=1, info=info)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


@contextlib.contextmanager
def _signals_to_stop(state: dict) -> Iterator[None]:
    """While active, SIGINT/SIGTERM set ``_STOP`` (and ``state['signal']``); a second signal
    raises KeyboardInterrupt. No-op outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if state.get("committing"):
            return
        if _STOP.is_set():
            raise KeyboardInterrupt
        state["signal"] = signum
        _STOP.set()
        cb = state.get("on_signal")
        if cb:
            cb(signum)

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _chunks(items: Sequence[InputItem], size: int) -> Iterator[list[InputItem]]:
    for i in range(0, len(items), size):
        yield list(items[i : i + size])


def _crashed_record(item: InputItem) -> dict[str, Any]:
    return {"path": item.path, "status": "failed", "n_faces": None, "outputs": [],
            "error": "WorkerCrashed",
            "message": "the worker process died while processing this image (out of memory, "
                       "or a crash in a native library)",
            "seconds": 0.0}


def _results(opts: RunOptions, todo: list[InputItem]) -> Iterator[dict[str, Any]]:
    """Records of the ``todo`` items in order; stops early (fewer records) after a stop
    signal. Raises :class:`ModelLoadError`.

    A worker process that dies breaks every chunk in flight, so the culprit is unknown. The
    run then goes on in *careful mode* for the images that may have been in flight: one image
    per task, one task at a time, so a second death names its image exactly (recorded as
    failed with error ``WorkerCrashed``); after that window, normal fan-out resumes.
    """
    if not todo:
        return
    jobs = opts.jobs if opts.jobs > 0 else (os.cpu_count() or 1)
    if jobs == 1:
        for it in todo:
            if _STOP.is_set():
                return
            yield from process_chunk(opts, [it])
        return
    size = opts.chunk_size or max(1, min(16, -(-len(todo) // (jobs * 4))))
    from joblib import Parallel, delayed
    from joblib.externals.loky.process_executor import BrokenProcessPool

    def tasks(rest, csize):
        for ch in _chunks(rest, csize):
            if _STOP.is_set():  # consumed lazily by joblib: stop dispatching new chunks
                return
            yield delayed(process_chunk)(opts, ch)

    pos = 0  # records yielded so far
    careful_until = 0  # todo[pos:careful_until] run one image at a time
    while pos < len(todo) and not _STOP.is_set():
        careful = pos < careful_until
        rest = todo[pos:careful_until] if careful else todo[pos:]
        csize = 1 if careful else size
        n_jobs = 2 if careful else max(2, min(jobs, -(-len(rest) // csize)))
        par = Parallel(n_jobs=n_jobs, backend="loky", return_as="generator", batch_size=1,
                       pre_dispatch=1 if careful else "2*n_jobs", initializer=_worker_init)
        try:
            for recs in par(tasks(rest, csize)):
                for r in recs:
                    pos += 1
                    yield r
        except BrokenProcessPool:
            if careful:  # exactly one image was in flight
                yield _crashed_record(todo[pos])
                pos += 1
            else:  # every chunk dispatched since the last result may have been lost
                careful_until = min(len(todo), pos + 2 * n_jobs * size)


@contextlib.contextmanager
def _clean_stdout(stdout: IO | None) -> Iterator[IO]:
    """The binary stream NDJSON goes to; while active, anything else printed to stdout (by
    Python code or, when stdout is the real fd 1, by C libraries) goes to stderr instead."""
    if stdout is None:
        stdout = sys.stdout.buffer
    real_fd = None
    try:
        if stdout.fileno() == 1 and sys.stderr.fileno() == 2:
            real_fd = 1
    except (OSError, ValueError, AttributeError):
        real_fd = None
    if real_fd is None:
        with contextlib.redirect_stdout(sys.stderr):
            yield stdout
        return
    sys.stdout.flush()
    saved = os.dup(1)
    stream = os.fdopen(os.dup(saved), "wb", buffering=0)
    os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield stream
    finally:
        stream.close()
        os.dup2(saved, 1)
        os.close(saved)


def run_batch(items: Sequence[InputItem], opts: RunOptions, *, stdout: IO | None = None,
              stderr: IO | None = None) -> RunSummary:
    """Run a command over images and write outputs, manifest and (``pose``) the CSV.

    Args:
        items: the run's images (:func:`facealign_cli.inputs.collect_inputs`), input order.
        opts: the run's settings.
        stdout: binary stream for NDJSON when ``opts.out == "-"`` (default
            ``sys.stdout.buffer``).
        stderr: text stream for progress and messages (default ``sys.stderr``).

    Returns:
        A :class:`RunSummary`; its ``exit_code`` is the CLI's exit status.

    Raises:
        OutputLockedError: another run is using ``opts.out``.
        ValueError: invalid options (unknown command, ``mesh`` to stdout ...).
    """
    if opts.command not in COMMANDS:
        raise ValueError(f"unknown command {opts.command!r}")
    if opts.streaming and opts.command not in STREAMABLE:
        raise ValueError(f"{opts.command} cannot write to stdout ('--out -')")
    if opts.mesh_format not in MESH_FORMATS:
        raise ValueError(f"unknown mesh format {opts.mesh_format!r}")
    # Pin settings that come from the environment now: reused worker processes may have
    # another environment than this one.
    if opts.weights is None and os.environ.get("FACEALIGN_WEIGHTS"):
        opts = replace(opts, weights=os.environ["FACEALIGN_WEIGHTS"])
    if opts.max_pixels is None:
        from .images import DEFAULT_MAX_PIXELS

        opts = replace(opts, max_pixels=int(os.environ.get("FACEALIGN_MAX_PIXELS",
                                                           DEFAULT_MAX_PIXELS)))
    stderr = stderr or sys.stderr
    t0 = time.perf_counter()
    _STOP.clear()
    summary = RunSummary(total=len(items))
    state: dict[str, Any] = {}

    with contextlib.ExitStack() as stack:
        out = None
        manifest = pose_csv = ndjson = None
        if opts.streaming:
            ndjson = writers.JsonLinesWriter(stack.enter_context(_clean_stdout(stdout)))
        else:
            out = Path(opts.out)
            try:
                out.mkdir(parents=True, exist_ok=True)
                lock = _OutputLock(out)
                stack.enter_context(lock)
            except OSError as exc:
                raise BatchError(f"cannot use output folder {out}: {exc}") from None

        # Resume: which images are done already (decided before any model is loaded).
        done: dict[int, dict] = {}
        if out is not None and not opts.overwrite:
            fp = opts.fingerprint()
            for it in items:
                rec = _check_done(opts, out, it, fp)
                if rec is not None:
                    done[it.index] = rec
        todo = [it for it in items if it.index not in done]

        if out is not None:
            manifest = writers.AtomicJsonLinesFile(out / MANIFEST_NAME)
            summary.manifest = str(out / MANIFEST_NAME)
            if opts.command == "pose":
                pose_csv = writers.StreamingCSV(out / POSE_CSV_NAME, POSE_COLUMNS)

        reporter = _Reporter(opts, len(items), stderr)
        stack.callback(reporter.close)

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

        state["on_signal"] = on_signal
        stack.enter_context(_signals_to_stop(state))

        emitted = [0]

        def emit(rec: dict) -> None:
            if _STOP.is_set() and not state.get("announced"):
                state["announced"] = True
                reporter.line(stop_msg)
            st, err = rec["status"], rec.get("error")
            if st == "ok":
                summary.ok += 1
            elif st == "failed":
                summary.failed += 1
            elif err == "Interrupted":
                summary.not_run += 1
            else:
                summary.skipped += 1
            reporter.record(rec)
            if pose_csv is not None and rec.get("rows"):
                pose_csv.writerows(rec["rows"])
            line = {k: rec.get(k) for k in ("path", "status", "n_faces", "outputs", "error",
                                            "message", "seconds")}
            if manifest is not None:
                manifest.write(line)
            if ndjson is not None:
                data = rec.get("data") or {"path": rec["path"], "width": rec.get("width"),
                                           "height": rec.get("height"), "faces": []}
                ndjson.write({**data, "status": st, "error": err, "message": rec.get("message")})
            emitted[0] += 1

        results = _results(opts, todo)
        try:
            for it in items:
                if it.index in done:
                    d = done[it.index]
                    emit({"path": it.path, "status": "skipped", "n_faces": d.get("n_faces"),
                          "outputs": d.get("outputs", []), "error": None, "message": None,
                          "seconds": 0.0, "rows": d.get("rows")})
                    continue
                rec = next(results, None)  # None: stopped by a signal before this image
                emit(rec if rec is not None else _interrupted_record(it))
        except ModelLoadError as exc:
            summary.fatal = str(exc)
            reporter.line(f"facealign: error: {exc}")
            _finish_not_run(items[emitted[0]:], done, emit, "the run stopped on an error")
        except KeyboardInterrupt:
            state.setdefault("signal", signal.SIGINT)
            _finish_not_run(items[emitted[0]:], done, emit, "the run was interrupted")
        finally:
            state["committing"] = True  # signals are ignored from here on
            with contextlib.suppress(Exception):
                results.close()
            if manifest is not None:
                manifest.commit()
            if pose_csv is not None:
                pose_csv.commit()
        reporter.close()
        summary.interrupted = int(state.get("signal", 0))

    summary.seconds = time.perf_counter() - t0
    if not opts.quiet:
        _print_summary(opts, summary, stderr)
    _STOP.clear()
    return summary


def _finish_not_run(rest, done, emit, why: str) -> None:
    """Record the images not yet recorded (after an abort or a fatal error): those done by
    an earlier run as skipped, the others as not processed."""
    for it in rest:
        if it.index in done:
            d = done[it.index]
            emit({"path": it.path, "status": "skipped", "n_faces": d.get("n_faces"),
                  "outputs": d.get("outputs", []), "error": None, "message": None,
                  "seconds": 0.0, "rows": d.get("rows")})
        else:
            emit(_interrupted_record(it, why))


def _print_summary(opts: RunOptions, s: RunSummary, stderr: IO) -> None:
    parts = [f"{s.ok} ok", f"{s.failed} failed", f"{s.skipped} skipped"]
    if s.not_run:
        parts.append(f"{s.not_run} not run")
    msg = (f"facealign {opts.command}: {s.total} image(s): " + ", ".join(parts)
           + f" in {s.seconds:.1f} s")
    if s.manifest:
        msg += f"; manifest: {s.manifest}"
    stderr.write(msg + "\n")
    if s.interrupted:
        stderr.write("facealign: interrupted; run the same command again to resume\n")
    stderr.flush()


__all__ = ["COMMANDS", "POSE_COLUMNS", "RunOptions", "RunSummary", "run_batch", "process_chunk",
           "build_aligner", "pose_rows", "BatchError", "OutputLockedError", "ModelLoadError"]
