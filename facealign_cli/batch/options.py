"""Settings of a run (the run-level errors and exit codes are in
:mod:`facealign_cli.batch.errors`, the names a run writes under ``--out`` in
:mod:`facealign_cli.batch.layout`, its outcome in :class:`facealign_cli.batch.result.RunSummary`).

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

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from facealign_cli.batch.errors import OptionError
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
#: Seconds to wait for the Dask scheduler to answer and for at least one worker.
DASK_CONNECT_TIMEOUT = 10.0
#: The longest wait for the Dask scheduler and a worker that can be set
#: (``FACEALIGN_DASK_TIMEOUT``): one hour.
MAX_DASK_TIMEOUT = 3600.0
#: The largest decode limit that can be set (``--max-megapixels`` 1e6,
#: ``FACEALIGN_MAX_PIXELS``): a terapixel, more than any image can be decoded at (a JPEG is at
#: most 65535 x 65535, 4.3 gigapixels) and small enough for every computation with it.
MAX_PIXELS_LIMIT = 10**12


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
