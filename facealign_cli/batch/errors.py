"""Run-level errors of the batch engine and the exit codes of the image commands.

Nothing here knows a run's settings or outputs: the options, the commands, the state and the
runner all raise these, and the command line maps them to exit codes
(:attr:`BatchError.exit_code`).
"""

from __future__ import annotations

import enum
import signal

from facealign_cli.core.settings import SettingError


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
