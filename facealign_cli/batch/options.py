"""Settings of a run, its outcome, run-level errors and the exit codes.

A run's settings (:class:`RunOptions`) are the run's own (output folder, workers, backend,
messages) and three groups: the model's (:class:`~facealign_cli.core.settings.AlignerSettings`,
``opts.aligner``), the videos' (:class:`~facealign_cli.core.settings.VideoSettings`,
``opts.video``) and the command's own (``opts.command_options``: an instance of the command's
:attr:`~facealign_cli.batch.commands.base.Command.Options`, e.g. ``mesh``'s format, frame,
texture and ``--mesh-every``), each checked where it is defined.

Nothing here reads the environment: the command line (:mod:`facealign_cli.cli.main`) reads and
validates the ``FACEALIGN_*`` variables once and passes their values in :class:`RunOptions`.
"""

from __future__ import annotations

import enum
import re
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from facealign_cli.core.settings import (
    AlignerSettings,
    SettingError,
    VideoSettings,
    field_names,
)

BACKENDS = ("local", "dask")
#: ``RunOptions.progress``: a rich bar when stderr is a terminal, always, never.
PROGRESS_CHOICES = ("auto", "always", "never")
#: ``RunOptions.verify_inputs``: an input is unchanged when its size and modification time are
#: (``stat``), or its content's sha256 is (``hash``).
VERIFY_INPUTS = ("stat", "hash")
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
#: The largest decode limit that can be set (``--max-megapixels`` 1e6,
#: ``FACEALIGN_MAX_PIXELS``): a terapixel, more than any image can be decoded at (a JPEG is at
#: most 65535 x 65535, 4.3 gigapixels) and small enough for every computation with it.
MAX_PIXELS_LIMIT = 10**12


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

    @classmethod
    def of(cls, exc: SettingError) -> OptionError:
        """The usage error of an invalid setting (named by its flag)."""
        return cls(exc.flag, exc.message)


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
    """Settings of one run (all picklable: a copy goes to every worker). Made with
    :meth:`make` from flat keyword settings (the command line's), or with the groups given.

    Attributes:
        command: one of :data:`facealign_cli.batch.commands.COMMANDS`.
        out: output folder, or ``"-"`` for NDJSON on stdout.
        aligner: the model's settings
            (:class:`~facealign_cli.core.settings.AlignerSettings`: weights, runtime, flip, roi
            crop scale, second pass, min score, max faces, min quality, pose convention); the
            worker builds its :class:`~facealign_cli.core.pipeline.FaceAligner` from them (an
            ``aligner_factory`` finds them here too: its faces' ``pose_convention`` should be
            ``aligner.pose_convention``, the one the outputs state).
        video: the videos' settings (:class:`~facealign_cli.core.settings.VideoSettings`:
            frame step, max fps, smoothing, detect every).
        command_options: the command's own options, an instance of its
            :attr:`Command.Options <facealign_cli.batch.commands.base.Command.Options>`
            (None = its defaults).
        jobs: worker processes (1 = in this process; 0 = one per CPU core).
        threads: threads per worker for the detector, the regressor, OpenCV and numpy's BLAS
            (0 = :data:`facealign_cli.batch.worker.DEFAULT_THREADS`, one).
        overwrite: redo images already done.
        verify_inputs: how an input is known unchanged since an earlier run made its outputs:
            ``"stat"`` (same size and modification time) or ``"hash"`` (same content sha256:
            archives copied with new times); :mod:`facealign_cli.batch.resume`.
        max_pixels: decode limit of :func:`facealign_cli.io.images.read_image` (None = its
            default; at most :data:`MAX_PIXELS_LIMIT`).
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
    """

    command: str
    out: str
    aligner: AlignerSettings = field(default_factory=AlignerSettings)
    video: VideoSettings = field(default_factory=VideoSettings)
    command_options: Any = None
    jobs: int = 1
    threads: int = 0
    overwrite: bool = False
    verify_inputs: str = "stat"
    max_pixels: int | None = None
    chunk_size: int = 0
    quiet: bool = False
    verbose: int = 0
    progress: str = "auto"
    aligner_factory: Callable[..., Any] | None = None
    backend: str = "local"
    scheduler: str | None = None
    dask_timeout: float = DASK_CONNECT_TIMEOUT

    def __post_init__(self):
        self.validate()

    @classmethod
    def make(cls, command: str, out: str, **settings) -> RunOptions:
        """Run options from flat keyword settings: each one goes to the group with a field of
        its name (:class:`~facealign_cli.core.settings.AlignerSettings`,
        :class:`~facealign_cli.core.settings.VideoSettings`, the command's
        :attr:`~facealign_cli.batch.commands.base.Command.Options`), the others are the run's
        own. ``RunOptions.make("mesh", "out", flip=False, mesh_format="ply", jobs=2)``.

        Raises:
            OptionError: an invalid value, or an unknown command.
            TypeError: a setting that is none of these (e.g. ``draw`` for ``mesh``).
        """
        cmd = _command(command)
        groups = {}
        try:
            for name, kind in (("aligner", AlignerSettings), ("video", VideoSettings),
                               ("command_options", cmd.Options)):
                names = field_names(kind)
                groups[name] = kind(**{k: settings.pop(k) for k in list(settings)
                                       if k in names})
        except SettingError as exc:
            raise OptionError.of(exc) from None
        return cls(command, out, **groups, **settings)

    def validate(self) -> None:
        """Check the run's own values and that the groups are of their types (run when the
        options are made, so a :class:`RunOptions` is always valid; :func:`dataclasses.replace`
        checks again; each group checked its own values when it was made), then the command's
        checks of the whole (:meth:`~facealign_cli.batch.commands.base.Command.check`).

        Raises:
            OptionError: the first invalid option, naming its command-line flag.
        """
        cmd = _command(self.command)
        if self.command_options is None:
            object.__setattr__(self, "command_options", cmd.Options())
        for name, kind in (("aligner", AlignerSettings), ("video", VideoSettings),
                           ("command_options", cmd.Options)):
            _require(isinstance(getattr(self, name), kind), name,
                     f"{self.command} needs a {kind.__name__}, got "
                     f"{type(getattr(self, name)).__name__}")
        _check_out(self, cmd)
        _check_numbers(self)
        _check_run(self)
        cmd.check(self)

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


def _command(name: str):
    """The command named ``name``.

    Raises:
        OptionError: unknown command.
    """
    from facealign_cli.batch.commands import COMMANDS, get_command

    _require(name in COMMANDS, "COMMAND", f"unknown command {name!r}; expected one of {COMMANDS}")
    return get_command(name)


def _require(ok: bool, flag: str, message: str) -> None:
    if not ok:
        raise OptionError(flag, message)


def _check_out(o: RunOptions, cmd) -> None:
    """``--out`` for the command (:meth:`RunOptions.validate`)."""
    _require(isinstance(o.out, str) and bool(o.out.strip()) and "\0" not in o.out, "--out",
             "empty or invalid folder name; give a folder, or '-' for stdout")
    _require(not o.streaming or cmd.streamable, "--out",
             f"{o.command} writes files, it cannot write to stdout: give a folder to --out, "
             "not '-'")


def _check_numbers(o: RunOptions) -> None:
    """The run's counts and limits (:meth:`RunOptions.validate`; NaN fails every range)."""
    for flag, value, low in (("--jobs", o.jobs, 0), ("--threads", o.threads, 0),
                             ("chunk_size", o.chunk_size, 0), ("--verbose", o.verbose, 0)):
        _require(isinstance(value, int) and value >= low, flag,
                 f"must be a whole number >= {low}, got {value!r}")
    _require(o.max_pixels is None or (isinstance(o.max_pixels, int)
                                      and 0 < o.max_pixels <= MAX_PIXELS_LIMIT),
             "--max-megapixels", f"the decode limit must lie in [1, {MAX_PIXELS_LIMIT:.0e}] "
                                 f"pixels, got {o.max_pixels!r}")
    _require(0 < o.dask_timeout <= MAX_DASK_TIMEOUT, "FACEALIGN_DASK_TIMEOUT",
             f"must lie in (0, {MAX_DASK_TIMEOUT:g}] seconds, got {o.dask_timeout!r}")


def _check_run(o: RunOptions) -> None:
    """How the run goes: backend, scheduler, messages (:meth:`RunOptions.validate`)."""
    _require(o.backend in BACKENDS, "--backend",
             f"unknown backend {o.backend!r}; expected one of {BACKENDS}")
    _require(o.backend != "dask" or bool(o.scheduler), "--scheduler",
             "--backend dask needs --scheduler ADDRESS (e.g. tcp://scheduler-host:8786)")
    _require(not o.scheduler or o.backend == "dask", "--scheduler",
             "--scheduler is used only with --backend dask")
    _require(o.progress in PROGRESS_CHOICES, "progress",
             f"unknown progress mode {o.progress!r}; expected one of {PROGRESS_CHOICES}")
    _require(not (o.quiet and o.verbose), "--quiet", "--quiet and --verbose exclude each other")
    _require(o.verify_inputs in VERIFY_INPUTS, "--verify-inputs",
             f"expected one of {VERIFY_INPUTS}, got {o.verify_inputs!r}")


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
