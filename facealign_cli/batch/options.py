"""Settings of a run, its outcome, run-level errors and the exit codes.

Nothing here reads the environment: the command line (:mod:`facealign_cli.cli.main`) reads and
validates the ``FACEALIGN_*`` variables once and passes their values in :class:`RunOptions`.
"""

from __future__ import annotations

import enum
import math
import re
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from facealign_cli.defaults import (
    DEFAULT_MESH_FRAME,
    DEFAULT_MIN_QUALITY,
    DEFAULT_MIN_SCORE,
    DEFAULT_POSE_CONVENTION,
    MESH_FORMATS,
    MESH_FRAMES,
    POSE_CONVENTIONS,
)

BACKENDS = ("local", "dask")
#: ``RunOptions.progress``: a rich bar when stderr is a terminal, always, never.
PROGRESS_CHOICES = ("auto", "always", "never")
#: What ``render`` draws by default, and what it can draw (``facealign_cli.render``'s).
RENDER_DRAW_CHOICES = ("box", "landmarks", "pose", "mesh", "depth")
RENDER_DEFAULT_DRAW = ("box", "landmarks", "pose")
#: ``mesh`` on a video writes the meshes of every N-th processed frame (``--mesh-every``).
DEFAULT_MESH_EVERY = 30
STATE_DIR = ".facealign"
MANIFEST_NAME = "manifest.jsonl"
POSE_CSV_NAME = "pose.csv"
#: Folder (under ``--out``) of the thumbnails of ``render --sheet``.
THUMBS_DIR = ".thumbs"
#: Stem of the pages of ``render --sheet``: ``index.html``, ``index-2.html``, ...
SHEET_STEM = "index"
#: What the runner writes at the top of ``--out`` (besides the sheet's further pages): no
#: output key may start with one of these, or with one of them without its extension
#: (:func:`is_reserved_name`).
RESERVED_NAMES = frozenset({STATE_DIR, MANIFEST_NAME, MANIFEST_NAME + ".partial", POSE_CSV_NAME,
                            THUMBS_DIR, SHEET_STEM + ".html"})
_RESERVED_STEMS = frozenset(n.split(".")[0] for n in RESERVED_NAMES if not n.startswith("."))
_SHEET_PAGE = re.compile(re.escape(SHEET_STEM) + r"-[0-9]+(?:\.html)?")


def is_reserved_name(name: str) -> bool:
    """Whether a name at the top of ``--out`` belongs to the tool: one of
    :data:`RESERVED_NAMES`, such a name without its extension (``manifest``, ``pose``,
    ``index``: a video's ``<key>.jsonl`` or a key used as a folder would reach them), or a page
    of the sheet (``index-2.html``, ``index-2``). ``name`` is compared as given: pass it
    folded (:func:`facealign_cli.io.inputs.fold_key`) to compare as a case-insensitive file
    system would. The ``reserved`` test of
    :func:`facealign_cli.io.inputs.collect_inputs` for the batch engine."""
    return (name in RESERVED_NAMES or name in _RESERVED_STEMS
            or _SHEET_PAGE.fullmatch(name) is not None)

class ExitCode(enum.IntEnum):
    """The exit status of an image command (``facealign --help`` lists them)."""

    OK = 0
    #: some items failed
    FAILED = 1
    #: a usage or setup error (bad options, missing model, unusable output folder ...)
    USAGE = 2
    #: the manifest or the NDJSON stream on stdout could not be written (disk full, closed
    #: stdout): the run stopped cleanly; run the same command again to resume
    OUTPUT = 3
    #: stopped by SIGINT (Ctrl-C)
    INTERRUPTED_INT = 130
    #: stdout is a pipe whose reader went away (``| head -1``): 128 + SIGPIPE, as a shell
    #: reports
    BROKEN_PIPE = 141
    #: stopped by SIGTERM or SIGHUP
    TERMINATED = 143


EXIT_OK = ExitCode.OK
EXIT_FAILURES = ExitCode.FAILED
EXIT_USAGE = ExitCode.USAGE
EXIT_OUTPUT = ExitCode.OUTPUT
EXIT_SIGINT = ExitCode.INTERRUPTED_INT
EXIT_BROKEN_PIPE = ExitCode.BROKEN_PIPE
EXIT_SIGTERM = ExitCode.TERMINATED


def signal_exit_code(signum: int) -> ExitCode:
    """The exit status of a command stopped by signal ``signum`` (its first stop signal):
    :attr:`ExitCode.INTERRUPTED_INT` for SIGINT, :attr:`ExitCode.TERMINATED` for SIGTERM and
    SIGHUP."""
    return ExitCode.INTERRUPTED_INT if signum == signal.SIGINT else ExitCode.TERMINATED


#: Seconds to wait for the Dask scheduler to answer and for at least one worker.
DASK_CONNECT_TIMEOUT = 10.0
#: The longest wait for the Dask scheduler and a worker that can be set
#: (``FACEALIGN_DASK_TIMEOUT``): one hour.
MAX_DASK_TIMEOUT = 3600.0


def _default_roi_crop_scale() -> float:
    """:data:`facealign_cli.core.geometry.ROI_CROP_SCALE` (imported when a run's options are
    built, never for ``facealign --help``)."""
    from facealign_cli.core.geometry import ROI_CROP_SCALE

    return ROI_CROP_SCALE


class BatchError(RuntimeError):
    """A run-level problem (not one image's): reported by the CLI with :attr:`exit_code`
    (2, a usage or setup error)."""

    exit_code: ExitCode = ExitCode.USAGE


class OptionError(BatchError, ValueError):
    """An invalid option value, or options that do not go together for the command (a usage
    error: exit code 2, reported before anything is read or written; the command line shows
    it as a click usage error), e.g. ``--min-score nan`` or ``detect`` with
    ``--detect-every`` > 1. Raised by :meth:`RunOptions.validate`.

    Attributes:
        flag: the command-line flag (``"--min-score"``) or environment variable
            (``"FACEALIGN_DASK_TIMEOUT"``) of the option at fault.
        message: what is wrong with it; ``str()`` of the error is ``"<flag>: <message>"``, or
            the message alone when it starts with the flag already.
    """

    def __init__(self, flag: str, message: str):
        self.flag = flag
        self.message = message
        super().__init__(message if message.startswith(flag) else f"{flag}: {message}")


class OutputLockedError(BatchError):
    """Another run holds the lock of the output folder."""


class ModelLoadError(BatchError):
    """The model (detector, regressor weights, 3DMM, topology) cannot be loaded."""


class ClusterError(BatchError):
    """The Dask cluster failed the run mid-way (scheduler lost, tasks cancelled): the run
    stops like on a :class:`ModelLoadError` (exit code 2; re-run to resume)."""


class OutputWriteError(BatchError):
    """The manifest or the NDJSON stream cannot be written (exit code
    :attr:`ExitCode.OUTPUT`, or :attr:`ExitCode.BROKEN_PIPE` when ``broken_pipe``)."""

    def __init__(self, message: str, broken_pipe: bool = False):
        super().__init__(message)
        self.broken_pipe = broken_pipe

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.BROKEN_PIPE if self.broken_pipe else ExitCode.OUTPUT


@dataclass(frozen=True)
class RunOptions:
    """Settings of one run (all picklable: a copy goes to every worker).

    Attributes:
        command: one of :data:`facealign_cli.batch.commands.COMMANDS`.
        out: output folder, or ``"-"`` for NDJSON on stdout.
        jobs: worker processes (1 = in this process; 0 = one per CPU core).
        threads: threads per worker for the detector, the regressor, OpenCV and numpy's BLAS
            (0 = :data:`facealign_cli.batch.worker.DEFAULT_THREADS`, one).
        max_faces: keep at most this many faces per image, highest scores first (0 = all).
        weights: regressor checkpoint (None = the shipped weights, see
            :func:`facealign_cli.models.weights.default_weights_path`).
        runtime: regressor runtime, ``"auto"``, ``"onnxruntime"`` or ``"torch"`` (None = auto;
            see :func:`facealign_cli.models.regressor_onnx.make_regressor`).
        flip: test-time flip averaging of the regressor (see
            :mod:`facealign_cli.core.regression`).
        roi_crop_scale: factor on every roi box the regressor crops (default
            :data:`facealign_cli.core.geometry.ROI_CROP_SCALE`; 1 = 3DDFA's standard crop;
            :class:`facealign_cli.core.pipeline.FaceAligner`).
        second_pass: re-crop each face at the roi box of its first fit's landmarks and regress
            again (:class:`facealign_cli.core.pipeline.FaceAligner`).
        overwrite: redo images already done.
        mesh_format: ``"obj"``, ``"ply"`` or ``"glb"`` (``mesh`` only).
        mesh_frame: ``"viewer"`` (x, H - y, -z: y up, z towards the viewer) or ``"image"``
            (the pixel frame of :mod:`facealign_cli.core.face`) (``mesh`` only).
        texture: ``mesh`` writes a UV texture (PNG) per face instead of vertex colours (OBJ:
            OBJ + MTL + PNG; GLB: embedded).
        min_score: drop detections below this score (the detector runs with it as its
            threshold; default :data:`facealign_cli.defaults.DEFAULT_MIN_SCORE`, the
            detector's own).
        min_quality: the regressing commands drop faces whose quality
            (:func:`facealign_cli.core.quality.face_quality`) is below this (0 keeps all;
            default :data:`facealign_cli.defaults.DEFAULT_MIN_QUALITY`).
        draw: the layers ``render`` draws (:data:`RENDER_DRAW_CHOICES`).
        sheet: ``render`` also writes thumbnails and ``index.html`` (a contact sheet).
        max_pixels: decode limit of :func:`facealign_cli.io.images.read_image` (None = its
            default).
        chunk_size: images per worker task (0 = automatic).
        quiet: print nothing but per-image errors and run-level errors.
        verbose: 1 = one stderr line per image; 2 = also tracebacks of failures.
        progress: ``"auto"`` (a rich bar when stderr is a terminal), ``"always"`` or ``"never"``.
        aligner_factory: the plug-in point for another model: a picklable callable
            ``(RunOptions, threads) -> aligner`` called once per worker process instead of
            :func:`facealign_cli.batch.worker.build_aligner`; the aligner needs what the
            commands use of :class:`facealign_cli.core.pipeline.FaceAligner`: ``detect``,
            ``fit`` (and ``topology`` for ``mesh`` and ``render --draw mesh``). The model
            files are then not checked before the run (a factory that raises fails the run
            with exit code 2). None = the shipped model.
        backend: ``"local"`` (this machine: in-process or worker processes) or ``"dask"``
            (tasks on the Dask cluster at ``scheduler``).
        scheduler: Dask scheduler address (``tcp://host:8786``); required with ``"dask"``.
        dask_timeout: seconds to wait for the scheduler and for a worker, in (0,
            :data:`MAX_DASK_TIMEOUT`].
        frame_step: videos: process every N-th frame (:class:`facealign_cli.io.video.VideoReader`).
        max_fps: videos: process at most this many frames per second of video (None = all).
        smooth: videos: One-Euro smoothing per face track
            (:class:`facealign_cli.core.smoothing.FaceSmoother`, its defaults).
        detect_every: videos: run the detector on every k-th processed frame, landmarks
            carried in between (:class:`facealign_cli.core.tracking.VideoAligner`).
        mesh_every: videos, ``mesh``: write the meshes of every N-th processed frame.
        pose_convention: the convention of the pose angles of the outputs
            (:data:`facealign_cli.defaults.POSE_CONVENTIONS`; ``landmarks``, ``pose``,
            ``render --sheet``): ``"yaw-first"`` (default) or ``"aflw2000"``; given to the
            aligner (:func:`facealign_cli.batch.worker.build_aligner`; an ``aligner_factory``
            finds it in the options) and written in each output.
    """

    command: str
    out: str
    jobs: int = 1
    threads: int = 0
    max_faces: int = 0
    weights: str | None = None
    runtime: str | None = None
    flip: bool = True
    roi_crop_scale: float = field(default_factory=_default_roi_crop_scale)
    second_pass: bool = True
    overwrite: bool = False
    mesh_format: str = MESH_FORMATS[0]
    mesh_frame: str = DEFAULT_MESH_FRAME
    texture: bool = False
    min_score: float = DEFAULT_MIN_SCORE
    min_quality: float = DEFAULT_MIN_QUALITY
    draw: tuple[str, ...] = RENDER_DEFAULT_DRAW
    sheet: bool = False
    max_pixels: int | None = None
    chunk_size: int = 0
    quiet: bool = False
    verbose: int = 0
    progress: str = "auto"
    aligner_factory: Callable[..., Any] | None = None
    backend: str = "local"
    scheduler: str | None = None
    dask_timeout: float = DASK_CONNECT_TIMEOUT
    frame_step: int = 1
    max_fps: float | None = None
    smooth: bool = False
    detect_every: int = 1
    mesh_every: int = DEFAULT_MESH_EVERY
    pose_convention: str = DEFAULT_POSE_CONVENTION

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Check every value and combination of values (run when the options are made, so a
        :class:`RunOptions` is always valid; :func:`dataclasses.replace` checks again).

        Raises:
            OptionError: the first invalid option, naming its command-line flag.
        """
        _check_outputs(self)
        _check_numbers(self)
        _check_run(self)

    @property
    def cmd(self):
        """The :class:`~facealign_cli.batch.commands.Command` named by :attr:`command` (one
        shared object per command: a look-up, not a copy; a plain property, so the options
        pickle as before, even by value).

        Raises:
            ValueError: unknown command.
        """
        from facealign_cli.batch.commands import get_command

        return get_command(self.command)

    @property
    def streaming(self) -> bool:
        """True when records go to stdout as NDJSON instead of files."""
        return self.out == "-"


def _require(ok: bool, flag: str, message: str) -> None:
    if not ok:
        raise OptionError(flag, message)


def _check_outputs(o: RunOptions) -> None:
    """The command, ``--out`` and what the command writes (:meth:`RunOptions.validate`)."""
    from facealign_cli.batch.commands import COMMANDS, get_command

    _require(o.command in COMMANDS, "COMMAND",
             f"unknown command {o.command!r}; expected one of {COMMANDS}")
    _require(isinstance(o.out, str) and bool(o.out.strip()) and "\0" not in o.out, "--out",
             "empty or invalid folder name; give a folder, or '-' for stdout")
    _require(not o.streaming or get_command(o.command).streamable, "--out",
             f"{o.command} writes files, it cannot write to stdout: give a folder to --out, "
             "not '-'")
    _require(o.mesh_format in MESH_FORMATS, "--format",
             f"unknown mesh format {o.mesh_format!r}; expected one of {MESH_FORMATS}")
    _require(o.mesh_frame in MESH_FRAMES, "--mesh-frame",
             f"unknown mesh frame {o.mesh_frame!r}; expected one of {MESH_FRAMES}")
    _require(not o.texture or o.mesh_format in ("obj", "glb"), "--texture",
             f"a textured mesh is written as OBJ + MTL + PNG or GLB: use --format obj or glb, "
             f"not {o.mesh_format!r}")
    _require(o.pose_convention in POSE_CONVENTIONS, "--pose-convention",
             f"unknown pose convention {o.pose_convention!r}; expected one of "
             f"{POSE_CONVENTIONS}")
    bad = [d for d in o.draw if d not in RENDER_DRAW_CHOICES]
    _require(bool(o.draw) and not bad, "--draw",
             f"invalid choice(s) {bad or list(o.draw)}; expected some of {RENDER_DRAW_CHOICES}")


def _check_numbers(o: RunOptions) -> None:
    """The counts and limits (:meth:`RunOptions.validate`; NaN fails every range)."""
    for flag, value, low in (("--jobs", o.jobs, 0), ("--threads", o.threads, 0),
                             ("--max-faces", o.max_faces, 0), ("chunk_size", o.chunk_size, 0),
                             ("--verbose", o.verbose, 0), ("--frame-step", o.frame_step, 1),
                             ("--detect-every", o.detect_every, 1),
                             ("--mesh-every", o.mesh_every, 1)):
        _require(isinstance(value, int) and value >= low, flag,
                 f"must be a whole number >= {low}, got {value!r}")
    _require(o.max_pixels is None or (isinstance(o.max_pixels, int) and o.max_pixels > 0),
             "--max-megapixels", f"the decode limit must be > 0 pixels, got {o.max_pixels!r}")
    for flag, value in (("--min-score", o.min_score), ("--min-quality", o.min_quality)):
        _require(0.0 <= value <= 1.0, flag, f"must lie in [0, 1], got {value!r}")
    _require(0 < o.roi_crop_scale < math.inf, "--roi-crop-scale",
             f"must be a finite number > 0, got {o.roi_crop_scale!r}")
    _require(0 < o.dask_timeout <= MAX_DASK_TIMEOUT, "FACEALIGN_DASK_TIMEOUT",
             f"must lie in (0, {MAX_DASK_TIMEOUT:g}] seconds, got {o.dask_timeout!r}")
    _require(o.max_fps is None or 0 < o.max_fps < math.inf, "--max-fps",
             f"must be a finite number > 0, got {o.max_fps!r}")


def _check_run(o: RunOptions) -> None:
    """How the run goes: backend, scheduler, runtime, messages, ``--detect-every`` for the
    command (:meth:`RunOptions.validate`)."""
    from facealign_cli.batch.commands import get_command
    from facealign_cli.models.weights import RUNTIMES

    _require(o.backend in BACKENDS, "--backend",
             f"unknown backend {o.backend!r}; expected one of {BACKENDS}")
    _require(o.backend != "dask" or bool(o.scheduler), "--scheduler",
             "--backend dask needs --scheduler ADDRESS (e.g. tcp://scheduler-host:8786)")
    _require(not o.scheduler or o.backend == "dask", "--scheduler",
             "--scheduler is used only with --backend dask")
    _require(o.runtime is None or o.runtime in RUNTIMES, "--runtime",
             f"unknown runtime {o.runtime!r}; expected one of {RUNTIMES}")
    _require(o.progress in PROGRESS_CHOICES, "progress",
             f"unknown progress mode {o.progress!r}; expected one of {PROGRESS_CHOICES}")
    _require(not (o.quiet and o.verbose), "--quiet", "--quiet and --verbose exclude each other")
    cmd = get_command(o.command)
    _require(cmd.uses_regressor or o.detect_every == 1, "--detect-every",
             f"--detect-every {o.detect_every}: {cmd.name} runs the detector on every "
             "processed frame (it has no landmarks to carry faces with between detector "
             f"frames); use --frame-step {o.detect_every} to process one frame in "
             f"{o.detect_every} (--detect-every is for landmarks, pose, mesh and render)")


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
