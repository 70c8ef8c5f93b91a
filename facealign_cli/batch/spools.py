"""Spool files: the outputs of a video kept in local temporary files (outside ``--out``;
workers never write there) until the runner commits them, and the housekeeping of those
files.

Outputs are handed to the runner as :class:`~facealign_cli.batch.result.SpoolFile` s, which it
copies atomically to their output names; with the Dask backend (workers on other machines)
they travel as bytes instead (:func:`as_bytes`). A spool's name holds the pid of its *owner*,
the process that commits or discards it (``facealign-video-<pid>-<random>.spool[.mp4]``,
:func:`spool_owner`); the first video of a run (and of each worker process) first removes the
spools of owners that are gone (:func:`remove_stale_spools`, through
:meth:`facealign_cli.batch.worker.WorkerContext.sweep_spools`), so a run killed with SIGKILL
leaks them only until the next run that handles a video.

Where an item's files go while it is processed: a :class:`MemorySink` (a photo: bytes in
memory) or a :class:`SpoolSink` (a video: spool files).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import re
import tempfile
from typing import Any

from facealign_cli.batch.result import SpoolFile, discard_spools

#: Name prefix of the spool files; a spool is ``SPOOL_PREFIX + "<owner pid>-" + <mkstemp's
#: random part> + ".spool"`` (``.spool.mp4`` for ``render``'s video).
SPOOL_PREFIX = "facealign-video-"
#: Seconds of slack when comparing a process's start with a spool's modification time (the
#: boot time Linux reports is whole seconds and follows clock steps).
_START_SLACK = 60.0


def spool_owner(backend: str = "local") -> int:
    """The pid of the process that commits (or discards) the spools this process writes: the
    runner, i.e. the parent of a local worker process, else this process (in-process runs,
    and Dask workers, which read their spools back into bytes themselves)."""
    parent = multiprocessing.parent_process()
    if backend != "dask" and parent is not None and parent.pid == os.getppid():
        return int(parent.pid)
    return os.getpid()


def _process_start(pid: int) -> float | None:
    """Start time of process ``pid`` (seconds since the epoch) from Linux's ``/proc``, or
    ``None`` where that cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            ticks = int(f.read().rsplit(b")", 1)[1].split()[19])  # field 22, starttime
        with open("/proc/stat", "rb") as f:
            btime = next(int(ln.split()[1]) for ln in f if ln.startswith(b"btime "))
        return btime + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _owner_gone(pid: int, mtime: float) -> bool:
    """Whether no live process can own a spool named with ``pid`` and last written at
    ``mtime`` (epoch seconds): ``pid`` is not running, or the process running under it
    started after the spool was last written (the pid was reused)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OverflowError:  # not a pid of this system: not a spool of ours
        return False
    except OSError:  # exists (another user's: not ours to judge by signals)
        pass
    start = _process_start(pid)
    return start is not None and start > mtime + _START_SLACK


def remove_stale_spools(folder: str | None = None) -> list[str]:
    """Delete the spool files left in ``folder`` (default: the temporary folder,
    :func:`tempfile.gettempdir`) by owners that are gone (killed with SIGKILL, the OOM killer).

    Only names of the tool's own pattern (``facealign-video-<pid>-<random>.spool`` and
    ``.spool.mp4``) are looked at, and only regular files of this user; a spool is stale when
    its owner pid is not running, or runs a process started after the spool was last written
    (pid reuse; Linux only, elsewhere a running pid keeps its spools). Errors (a file removed
    meanwhile, one that cannot be removed) are ignored.

    Returns:
        The paths removed.
    """
    from facealign_cli.io.video_writer import WRITE_SUFFIX

    name = re.compile(re.escape(SPOOL_PREFIX) + r"([1-9][0-9]{0,9})-[a-z0-9_]+\.spool(?:"
                      + re.escape(WRITE_SUFFIX) + ")?")
    folder = folder or tempfile.gettempdir()
    uid = os.getuid() if hasattr(os, "getuid") else None
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for e in entries:
        m = name.fullmatch(e.name)
        if m is None:
            continue
        with contextlib.suppress(OSError):
            st = e.stat(follow_symlinks=False)
            mine = st.st_uid == uid if uid is not None else True
            if mine and e.is_file(follow_symlinks=False) and _owner_gone(int(m.group(1)),
                                                                           st.st_mtime):
                os.unlink(e.path)
                removed.append(e.path)
    return removed


def new_spool(backend: str = "local", suffix: str = "") -> tuple[SpoolFile, Any]:
    """A new spool file (``suffix`` after ``.spool``) in the temporary folder, named with its
    owner's pid (:func:`spool_owner` of ``backend``), open for writing (binary)."""
    owner = spool_owner(backend)
    fd, path = tempfile.mkstemp(prefix=f"{SPOOL_PREFIX}{owner}-", suffix=".spool" + suffix)
    return SpoolFile(path), os.fdopen(fd, "wb")


class MemorySink:
    """The output files of one item kept in memory (a photo): ``files`` is the list of
    ``(relative path, bytes)`` in the order added."""

    def __init__(self):
        self.files: list[tuple[str, Any]] = []

    def add(self, rel: str, data: bytes) -> None:
        """Add the file ``rel`` (``/``-separated, relative to ``--out``) with ``data``."""
        self.files.append((rel, data))

    def discard(self) -> None:
        """Forget the files added."""
        self.files.clear()


class SpoolSink(MemorySink):
    """The output files of one item spooled to temporary files (a video: its outputs can be
    large); ``files`` holds ``(relative path, SpoolFile)``. ``backend`` names the owner of the
    spools (:func:`spool_owner`)."""

    def __init__(self, backend: str = "local"):
        super().__init__()
        self.backend = backend

    def add(self, rel: str, data: bytes) -> None:
        sp, f = new_spool(self.backend)
        with f:
            f.write(data)
        self.files.append((rel, sp))

    def open(self, rel: str, suffix: str = "") -> tuple[SpoolFile, Any]:
        """A new spool for the file ``rel``, added now and written by the caller: the spool
        and its file object, open for binary writing (``suffix`` after ``.spool``: a video
        writer picks its container from it)."""
        sp, f = new_spool(self.backend, suffix)
        self.files.append((rel, sp))
        return sp, f

    def discard(self) -> None:
        """Delete the spools added."""
        discard_spools(self.files)
        self.files.clear()


def as_bytes(files) -> tuple[tuple[str, Any], ...]:
    """``files`` (``(relative path, bytes or SpoolFile)``) with each spool read into bytes and
    deleted (Dask: the runner is on another machine and cannot read this machine's spools)."""
    loaded = []
    for rel, data in files:
        if isinstance(data, SpoolFile):
            with open(data.path, "rb") as f:
                rel_data = f.read()
            data.discard()
            data = rel_data
        loaded.append((rel, data))
    return tuple(loaded)
