"""The batch runner: images in, per-image outputs + a manifest out, with fan-out, resume,
locking, progress and exit codes. The command line (:mod:`facealign_cli.cli.main`) only parses
options and calls :func:`run_batch`.

Commands and what one image produces (``<key>`` is the image's output key, see
:mod:`facealign_cli.io.inputs`; every coordinate is in the full-resolution, upright image's
pixels, frame of :mod:`facealign_cli.core.face`):

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

**Dask** (``backend="dask"``, ``scheduler="tcp://host:8786"``): the same chunks run as tasks on a
Dask distributed cluster through joblib's dask backend (``joblib.parallel_config(backend=
"dask")`` with a ``distributed.Client`` connected to the scheduler; ``dask[distributed]`` is an
optional extra, imported only then). Every worker process builds the model once (the same
module-level cache; tasks of one worker process run one at a time) and *returns* the encoded
output files instead of writing them: the client process writes outputs, done records, the
manifest and ``pose.csv``, so the output folder need not be visible to the workers and the
files are byte-for-byte those of a local run. The workers need facealign installed and the
same weights at the same path (``weights`` is resolved on the client). ``jobs`` is not used:
the cluster's worker threads set the parallelism (at most ``2 x`` that many chunks in flight).
Failing to import dask or to reach the scheduler (or a scheduler without workers) within
:data:`DASK_CONNECT_TIMEOUT` seconds raises :class:`BatchError`. A task that keeps killing
workers (Dask's ``KilledWorker``) is handled like a crashed loky worker.

**Temporary files**: outputs are written as hidden ``.<name>.<random>.tmp`` files and renamed
into place (:mod:`facealign_cli.io.records`); a run that is killed (SIGKILL, power loss) can leave
such files behind, never a partial file under an output's name. Each run removes the leftover
ones from ``<out>`` once it holds the lock (:func:`clean_stale_temp_files`).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

from facealign_cli.io import records as writers
from facealign_cli.io.inputs import InputItem

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

BACKENDS = ("local", "dask")
#: Seconds to wait for the Dask scheduler to answer and for at least one worker
#: (``$FACEALIGN_DASK_TIMEOUT`` overrides).
DASK_CONNECT_TIMEOUT = 10.0


class BatchError(RuntimeError):
    """A run-level problem (not one image's): reported by the CLI with exit code 2."""


class OutputLockedError(BatchError):
    """Another run holds the lock of the output folder."""


class ModelLoadError(BatchError):
    """The model (detector, regressor weights, 3DMM, topology) cannot be loaded."""


class ClusterError(BatchError):
    """The Dask cluster failed the run mid-way (scheduler lost, tasks cancelled): the run
    stops like on a :class:`ModelLoadError` (exit code 2; re-run to resume)."""


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
            :func:`facealign_cli.models.regressor.default_weights_path`).
        runtime: regressor runtime, ``"auto"``, ``"onnxruntime"`` or ``"torch"`` (None:
            ``$FACEALIGN_RUNTIME``, else auto; see
            :func:`facealign_cli.models.regressor_onnx.make_regressor`).
        overwrite: redo images already done.
        mesh_format: ``"obj"`` or ``"ply"`` (``mesh`` only).
        max_pixels: decode limit of :func:`facealign_cli.io.images.read_image` (None = default).
        chunk_size: images per worker task (0 = automatic).
        quiet: print nothing but per-image errors and run-level errors.
        verbose: 1 = one stderr line per image; 2 = also tracebacks of failures.
        progress: ``"auto"`` (a rich bar when stderr is a terminal), ``"always"`` or ``"never"``.
        aligner_factory: callable ``(RunOptions, threads) -> aligner`` used instead of building a
            :class:`facealign_cli.core.pipeline.FaceAligner` (tests; must be picklable).
        backend: ``"local"`` (this machine: in-process or loky workers) or ``"dask"`` (tasks
            on the Dask cluster at ``scheduler``; outputs still written by this process).
        scheduler: Dask scheduler address (``tcp://host:8786``); required with ``"dask"``.
    """

    command: str
    out: str
    jobs: int = 1
    threads: int = 0
    max_faces: int = 0
    weights: str | None = None
    runtime: str | None = None
    overwrite: bool = False
    mesh_format: str = "obj"
    max_pixels: int | None = None
    chunk_size: int = 0
    quiet: bool = False
    verbose: int = 0
    progress: str = "auto"
    aligner_factory: Callable[..., Any] | None = None
    backend: str = "local"
    scheduler: str | None = None

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
    """Threads per worker: ``opts.threads``, else CPU cores / jobs (local) or 1 (dask: a
    cluster scales with worker processes, ``dask worker --nworkers N --nthreads 1``)."""
    if opts.threads > 0:
        return opts.threads
    if opts.backend == "dask":
        return 1
    return max(1, (os.cpu_count() or 1) // max(1, opts.jobs))


def build_aligner(opts: RunOptions, threads: int):
    """The :class:`~facealign_cli.core.pipeline.FaceAligner` for a run's settings.

    ``detect`` gets a detector-only aligner (no weights, no torch).

    Raises:
        Exception: whatever loading raises (missing weights, 3DMM basis, topology ...).
    """
    from facealign_cli.core.pipeline import FaceAligner

    if opts.command == "detect":
        regressor = _DetectOnlyRegressor()
    else:
        from facealign_cli.models.regressor_onnx import make_regressor

        regressor = make_regressor(opts.weights, num_threads=threads, runtime=opts.runtime)
    aligner = FaceAligner(regressor=regressor, max_faces=opts.max_faces, num_threads=threads)
    if opts.command == "mesh":
        aligner.topology  # noqa: B018 - load the topology now so a missing file is fatal
    return aligner


def _get_aligner(opts: RunOptions):
    """The aligner of this process for ``opts``, built once and cached (one per worker)."""
    global _ALIGNER, _ALIGNER_KEY
    factory = opts.aligner_factory or build_aligner
    key = (opts.command == "detect", opts.command == "mesh", opts.weights, opts.runtime,
           os.environ.get("FACEALIGN_WEIGHTS"), os.environ.get("FACEALIGN_RUNTIME"),
           opts.threads, opts.jobs, opts.max_faces, factory)
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


def _json_file_bytes(doc: Any) -> bytes:
    """The bytes :func:`facealign_cli.io.records.write_json` writes for ``doc`` with
    ``indent=None`` (one line + ``\n``, UTF-8)."""
    return (writers.dumps(doc) + "\n").encode(writers.ENCODING, writers.ERRORS)


def _write_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (hidden temporary file + rename)."""
    with writers.atomic_open(path, "wb") as f:
        f.write(data)


def _write_outputs(out: Path, command: str, key: str, files: Sequence[tuple[str, bytes]],
                   done: dict[str, Any]) -> None:
    """Write one image's output files, remove its stale ones, then its done record (last, so
    an image counts as done only once all its outputs are in place).

    Args:
        files: ``(path relative to out, '/'-separated; file content)`` pairs.
        done: the done record (see the module docstring, *Resume*).

    Raises:
        OSError: a file cannot be written.
    """
    for rel, data in files:
        _write_file(_out_path(out, rel), data)
    _remove_stale(out, command, key, done["outputs"])
    writers.write_json(_done_path(out, command, key), done, indent=None)


def _commit_pending(opts: RunOptions, rec: dict[str, Any]) -> dict[str, Any]:
    """Client side of ``backend="dask"``: write the files a worker returned in ``rec``
    (key ``pending``) under ``opts.out``; a write error turns the record into a failure."""
    pending = rec.pop("pending", None)
    if pending is None or opts.streaming:
        return rec
    out = Path(opts.out)
    try:
        if pending["files"] is None:  # the image failed on the worker: it is not done now
            with contextlib.suppress(OSError):
                _done_path(out, opts.command, pending["key"]).unlink()
        else:
            _write_outputs(out, opts.command, pending["key"], pending["files"],
                           pending["done"])
    except Exception as exc:  # a write error fails this image, not the run
        rec.update(status="failed", n_faces=None, outputs=[], error=type(exc).__name__,
                   message=_one_line(exc))
        rec.pop("rows", None)
        with contextlib.suppress(OSError):
            _done_path(out, opts.command, pending["key"]).unlink()
    return rec


def _process_one(opts: RunOptions, item: InputItem, write: bool = True) -> dict[str, Any]:
    """Run one image through the model and write its outputs. Never raises for a problem of
    this image (returns a ``failed`` record); raises :class:`ModelLoadError`.

    With ``write=False`` (Dask workers) nothing is written under ``opts.out``: the record gets
    a ``pending`` entry ``{key, files: [(rel, bytes)] or None when failed, done}`` for
    :func:`_commit_pending` in the client process."""
    from facealign_cli.io.images import read_image

    t0 = time.perf_counter()
    out = None if opts.streaming else Path(opts.out)
    rec: dict[str, Any] = {"path": item.path, "status": "ok", "n_faces": None, "outputs": [],
                           "error": None, "message": None}
    files: list[tuple[str, bytes]] = []  # (rel, content) of the files not yet written

    def put(rel: str, data: bytes) -> None:
        if write:
            _write_file(_out_path(out, rel), data)
        else:
            files.append((rel, data))
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
            from facealign_cli.io.meshes import sample_vertex_colors

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
                put(rel, _json_file_bytes(doc))
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
            from facealign_cli.io.meshes import mesh_bytes

            tris = aligner.topology.triangles
            outs = []
            for k, (f, col) in enumerate(zip(faces, colours)):
                rel = f"{item.key}_face{k}.{opts.mesh_format}"
                put(rel, mesh_bytes(f.vertices, tris, col, opts.mesh_format))
                outs.append(rel)
            rec["outputs"] = outs

        if out is not None:
            done = {"fingerprint": opts.fingerprint(), "path": item.path,
                    "n_faces": rec["n_faces"], "outputs": rec["outputs"],
                    "width": dec.width, "height": dec.height}
            if opts.command == "pose":
                done["rows"] = rec["rows"]
            if write:  # the files are written already: stale outputs, then the done record
                _write_outputs(out, opts.command, item.key, [], done)
            else:
                rec["pending"] = {"key": item.key, "files": files, "done": done}
    except ModelLoadError:
        raise
    except Exception as exc:  # one bad image never stops the batch
        rec.update(status="failed", n_faces=None, outputs=[], error=type(exc).__name__,
                   message=_one_line(exc))
        rec.pop("data", None)
        rec.pop("rows", None)
        if opts.verbose >= 2:
            rec["traceback"] = traceback.format_exc()
        if out is not None and not write:  # the client unlinks the done record
            rec["pending"] = {"key": item.key, "files": None, "done": None}
        elif out is not None:  # an image that fails now is not "done", whatever it was before
            with contextlib.suppress(OSError):
                _done_path(out, opts.command, item.key).unlink()
    rec["seconds"] = round(time.perf_counter() - t0, 3)
    return rec


def _one_line(exc: BaseException) -> str:
    from facealign_cli.io.images import ImageError

    msg = exc.reason if isinstance(exc, ImageError) else str(exc)
    msg = " ".join(msg.split())
    return (msg[:500] + "...") if len(msg) > 500 else (msg or type(exc).__name__)


def _interrupted_record(item: InputItem, why: str = "the run was interrupted") -> dict[str, Any]:
    return {"path": item.path, "status": "skipped", "n_faces": None, "outputs": [],
            "error": "Interrupted", "message": f"not processed: {why}", "seconds": 0.0}


def process_chunk(opts: RunOptions, items: Sequence[InputItem], write: bool = True
                  ) -> list[dict[str, Any]]:
    """Process a chunk of images (in a worker or in-process); one record per item, in order.

    Args:
        write: write outputs here (False: return them in the records, see :func:`_process_one`).

    Raises:
        ModelLoadError: the model cannot be built (the run stops).
    """
    recs = []
    for it in items:
        if _STOP.is_set():  # only in-process: stop between images
            recs.append(_interrupted_record(it))
        else:
            recs.append(_process_one(opts, it, write))
    return recs


#: Serialises the tasks of one Dask worker process (a worker started with several threads
#: would otherwise run the one cached model from several threads at once, and could build it
#: twice).
_REMOTE_LOCK = threading.Lock()


def remote_chunk(opts: RunOptions, items: Sequence[InputItem]) -> list[dict[str, Any]]:
    """The task run on Dask workers: :func:`process_chunk` without writing (the client writes
    the returned files), one task at a time per worker process, model cached per process.

    Raises:
        ModelLoadError: the model cannot be built on the worker (the run stops).
    """
    with _REMOTE_LOCK:
        return process_chunk(opts, items, write=False)


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


def _results(opts: RunOptions, todo: list[InputItem], client: Any = None
             ) -> Iterator[dict[str, Any]]:
    """Records of the ``todo`` items in order; stops early (fewer records) after a stop
    signal. Raises :class:`ModelLoadError`.

    With a Dask ``client`` (``backend="dask"``) the chunks run on its cluster and the records
    carry the files to write (``pending``); otherwise locally (in-process or loky workers).

    A worker process that dies breaks every chunk in flight, so the culprit is unknown. The
    run then goes on in *careful mode* for the images that may have been in flight: one image
    per task, one task at a time, so a second death names its image exactly (recorded as
    failed with error ``WorkerCrashed``); after that window, normal fan-out resumes.
    """
    if not todo:
        return
    jobs = opts.jobs if opts.jobs > 0 else (os.cpu_count() or 1)
    if client is not None:
        jobs = max(1, sum(client.nthreads().values()))
    elif jobs == 1:
        for it in todo:
            if _STOP.is_set():
                return
            yield from process_chunk(opts, [it])
        return
    size = opts.chunk_size or max(1, min(16, -(-len(todo) // (jobs * 4))))
    from joblib import Parallel, delayed, parallel_config

    if client is not None:
        from distributed import KilledWorker

        task_fn, crashed = remote_chunk, KilledWorker
        backend = _dask_backend(client)

        def config():  # entered around Parallel's creation and use (it reads the config)
            if backend is None:  # pragma: no cover - joblib's plain dask backend
                return parallel_config(backend="dask", client=client,
                                       wait_for_workers_timeout=_dask_timeout())
            return parallel_config(backend=backend)
    else:
        from joblib.externals.loky.process_executor import BrokenProcessPool

        task_fn, crashed, config = process_chunk, BrokenProcessPool, contextlib.nullcontext

    def tasks(rest, csize):
        for ch in _chunks(rest, csize):
            if _STOP.is_set():  # consumed lazily by joblib: stop dispatching new chunks
                return
            yield delayed(task_fn)(opts, ch)

    pos = 0  # records yielded so far
    careful_until = 0  # todo[pos:careful_until] run one image at a time
    while pos < len(todo) and not _STOP.is_set():
        careful = pos < careful_until
        rest = todo[pos:careful_until] if careful else todo[pos:]
        csize = 1 if careful else size
        n_jobs = 2 if careful else max(2, min(jobs, -(-len(rest) // csize)))
        try:
            with config():
                if client is not None:  # the dask backend uses every worker thread
                    par = Parallel(return_as="generator", batch_size=1,
                                   pre_dispatch=1 if careful else 2 * jobs)
                else:
                    par = Parallel(n_jobs=n_jobs, backend="loky", return_as="generator",
                                   batch_size=1, pre_dispatch=1 if careful else "2*n_jobs",
                                   initializer=_worker_init)
                for recs in par(tasks(rest, csize)):
                    for r in recs:
                        pos += 1
                        yield r
        except ModelLoadError:
            raise
        except Exception as exc:
            if not isinstance(exc, crashed):
                if client is None:
                    raise
                raise ClusterError(f"the Dask cluster failed: {type(exc).__name__}: "
                                   f"{_one_line(exc)}") from None
            if careful:  # exactly one image was in flight
                yield _crashed_record(todo[pos])
                pos += 1
            else:  # every chunk dispatched since the last result may have been lost
                careful_until = min(len(todo), pos + 2 * n_jobs * size)


def _dask_backend(client):
    """joblib's dask backend on ``client`` (None if joblib's layout is unknown), made to report tasks that fail on the scheduler's
    side (a task that killed its workers: ``KilledWorker``) to ``Parallel``.

    joblib's ``DaskDistributedBackend`` only calls a batch's completion callback for tasks that
    return; for a future in error it sets the exception on its internal future and nothing
    else, so ``Parallel`` would wait for that batch forever. Here the callback is also called
    with the exception, which ``Parallel`` then raises from its results. And the backend never
    reports a single worker thread, which would make ``Parallel`` run the tasks in the client
    process instead of on the cluster.
    """
    try:
        from joblib._dask import DaskDistributedBackend
    except ImportError:  # pragma: no cover - another joblib layout: use the plain backend
        return None

    class _ReportingDaskBackend(DaskDistributedBackend):
        def effective_n_jobs(self, n_jobs):
            # joblib runs everything in this process when this is 1 (a one-thread cluster,
            # or one worker left while another restarts): never let it.
            return max(2, super().effective_n_jobs(n_jobs))

        def submit(self, func, callback=None):
            fut = super().submit(func, callback=callback)

            def on_done(f):
                if callback is not None and not f.cancelled() and f.exception() is not None:
                    callback(f.exception())

            fut.add_done_callback(on_done)
            return fut

    return _ReportingDaskBackend(client=client, wait_for_workers_timeout=_dask_timeout())


def _dask_timeout() -> float:
    """:data:`DASK_CONNECT_TIMEOUT`, or ``$FACEALIGN_DASK_TIMEOUT`` (seconds) when set."""
    try:
        return float(os.environ.get("FACEALIGN_DASK_TIMEOUT", DASK_CONNECT_TIMEOUT))
    except ValueError:
        return DASK_CONNECT_TIMEOUT


def connect_dask(address: str, timeout: float | None = None):
    """A ``distributed.Client`` for the scheduler at ``address`` (``tcp://host:8786``), once at
    least one worker is connected to it. Imports ``distributed`` (only here).

    Args:
        address: the scheduler's address, as ``dask scheduler`` prints it.
        timeout: seconds to wait for the scheduler, then for a worker (default
            :func:`_dask_timeout`).

    Raises:
        BatchError: ``dask[distributed]`` is not installed, the scheduler cannot be reached in
            time (or the address is malformed), or no worker joins it in time.
    """
    timeout = _dask_timeout() if timeout is None else timeout
    try:
        from distributed import Client
    except ImportError:
        raise BatchError("--backend dask needs Dask: pip install 'facealign-cli[dask]' "
                         "(that is, dask[distributed])") from None
    from distributed.comm import parse_address
    from distributed.comm.addressing import parse_host_port

    try:  # checked first: a Client that fails on a bad address hangs in its finaliser
        scheme, loc = parse_address(address)
        if scheme in ("tcp", "tls", "ws", "wss"):
            parse_host_port(loc)
    except (ValueError, TypeError) as exc:
        raise BatchError(f"not a Dask scheduler address: {address!r} ({_one_line(exc)}); "
                         "expected e.g. tcp://scheduler-host:8786") from None
    try:
        client = Client(address, timeout=timeout, set_as_default=False)
    except Exception as exc:  # OSError / TimeoutError: no answer in time
        raise BatchError(f"cannot reach the Dask scheduler at {address}: "
                         f"{type(exc).__name__}: {_one_line(exc)}") from None
    try:
        client.wait_for_workers(1, timeout=timeout)
    except Exception:
        with contextlib.suppress(Exception):
            client.close()
        raise BatchError(f"the Dask scheduler at {address} has no workers "
                         f"(waited {timeout:g} s)") from None
    return client


@contextlib.contextmanager
def _quiet_dask_logs(enabled: bool = True) -> Iterator[None]:
    """While active, the client-side log records of Dask (``distributed.*`` loggers: after a
    lost scheduler, reconnection attempts with tracebacks) are dropped: the run reports a
    cluster failure itself, in one line. Levels are restored afterwards."""
    import logging

    if not enabled:
        yield
        return
    names = ["distributed"] + [n for n in list(logging.root.manager.loggerDict)
                               if n.startswith("distributed.")]
    saved = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for n, level in saved.items():
            logging.getLogger(n).setLevel(level)


def _close_dask(client) -> None:
    """Close a client of :func:`connect_dask` (errors while closing are ignored)."""
    with contextlib.suppress(Exception):
        client.close(timeout=_dask_timeout())


#: Names :func:`facealign_cli.io.records.atomic_open` gives its temporary files
#: (``tempfile.mkstemp(prefix=".<name>.", suffix=".tmp")``: 8 random characters).
_TEMP_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")


def clean_stale_temp_files(out: str | os.PathLike) -> int:
    """Remove the temporary files a killed run left under ``out`` (hidden
    ``.<name>.<8 characters>.tmp`` files; symbolic links to folders are not followed).

    Call it only while holding the output lock: a running writer's file would go too.

    Returns:
        The number of files removed.
    """
    n = 0
    for dirpath, _dirs, names in os.walk(out):
        for name in names:
            if _TEMP_NAME.match(name):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(dirpath, name))
                    n += 1
    return n


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
            its scheduler unreachable (before anything is written).
        ValueError: invalid options (unknown command or backend, ``mesh`` to stdout ...).
    """
    if opts.command not in COMMANDS:
        raise ValueError(f"unknown command {opts.command!r}")
    if opts.streaming and opts.command not in STREAMABLE:
        raise ValueError(f"{opts.command} cannot write to stdout ('--out -')")
    if opts.mesh_format not in MESH_FORMATS:
        raise ValueError(f"unknown mesh format {opts.mesh_format!r}")
    if opts.backend not in BACKENDS:
        raise ValueError(f"unknown backend {opts.backend!r}; expected one of {BACKENDS}")
    if opts.backend == "dask" and not opts.scheduler:
        raise ValueError("the dask backend needs a scheduler address")
    # Pin settings that come from the environment now: reused worker processes may have
    # another environment than this one.
    if opts.weights is None and os.environ.get("FACEALIGN_WEIGHTS"):
        opts = replace(opts, weights=os.environ["FACEALIGN_WEIGHTS"])
    if opts.max_pixels is None:
        from facealign_cli.io.images import DEFAULT_MAX_PIXELS

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
            with contextlib.suppress(OSError):
                clean_stale_temp_files(out)  # left by a killed run; we hold the lock

        # Resume: which images are done already (decided before any model is loaded).
        done: dict[int, dict] = {}
        if out is not None and not opts.overwrite:
            fp = opts.fingerprint()
            for it in items:
                rec = _check_done(opts, out, it, fp)
                if rec is not None:
                    done[it.index] = rec
        todo = [it for it in items if it.index not in done]
        client = None
        if opts.backend == "dask" and todo:  # connect before anything is written
            client = connect_dask(opts.scheduler)
            stack.enter_context(_quiet_dask_logs(opts.verbose < 2))  # -vv: keep Dask's logs
            stack.callback(_close_dask, client)

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
            rec = _commit_pending(opts, rec)  # dask: write what the worker returned
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

        results = _results(opts, todo, client)
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
        except (ModelLoadError, ClusterError) as exc:
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


__all__ = ["COMMANDS", "BACKENDS", "POSE_COLUMNS", "RunOptions", "RunSummary", "run_batch",
           "process_chunk", "remote_chunk", "connect_dask", "clean_stale_temp_files",
           "build_aligner", "pose_rows", "BatchError", "OutputLockedError", "ModelLoadError"]
