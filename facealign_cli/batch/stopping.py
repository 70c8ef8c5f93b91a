"""Stopping a run, in one place: the run's stop request (:class:`StopFlag`, made per run and
handed down to wherever its items run), how it reaches local worker processes
(:class:`WorkerStops`), the stop signals of a run and of the command line around it
(:class:`StopSignals`, :class:`SignalGuard`) and the one message of a stop (:class:`StopNotice`).

Signals: SIGINT, SIGTERM, SIGHUP. The first signal decides the exit status
(:func:`facealign_cli.batch.errors.signal_exit_code`: 130 for SIGINT, 143 for SIGTERM or
SIGHUP), however many follow: a supervisor that sends SIGTERM every 50 ms still gets 143 and a
manifest that lists every input (done, failed, or ``Interrupted``). Handlers run in the main
thread only (Python's rule); elsewhere nothing is installed, and a run is stopped through its
flag (``run_batch(..., stop=flag)``, then ``flag.set()`` from any thread).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable
from typing import IO, Any

#: Signals that stop a run like Ctrl-C does (finish the images in flight, commit, exit).
STOP_SIGNALS = tuple(s for s in (getattr(signal, n, None) for n in ("SIGINT", "SIGTERM",
                                                                    "SIGHUP")) if s)


class StopFlag:
    """One run's stop request, seen wherever its items run.

    The run's signal handler (or any thread holding the flag) calls :meth:`set`; the runner
    checks :meth:`is_set` before it starts an image, the in-process loop and local workers
    between two images and :func:`~facealign_cli.batch.items.process_item` between two frames
    of a video, and what is left is returned as not run (no outputs, no done record).

    A flag is made per run (two runs of one process never share one). Local worker processes
    see it through a process-shared semaphore that :class:`WorkerStops` lends to the run
    (:meth:`attach`; its count is 1 while a stop is requested): a semaphore takes no lock, so
    setting it is safe inside a signal handler, and a worker killed while reading it leaves
    nothing held. Dask workers (other machines) do not see it: they finish their task.
    """

    def __init__(self):
        self._local = threading.Event()
        self._shared = None  # the semaphore lent to this run for its local workers

    @classmethod
    def watching(cls, semaphore) -> StopFlag:
        """In a worker process: a flag that is set while the runner's ``semaphore`` is."""
        flag = cls()
        flag._shared = semaphore
        return flag

    def set(self) -> None:
        """Request a stop (also for the run's local workers)."""
        self._local.set()
        sem = self._shared
        if sem is not None and not _sem_is_set(sem):
            sem.release()

    def is_set(self) -> bool:
        """Whether a stop was requested (by this run, or by the runner of this worker)."""
        return self._local.is_set() or (self._shared is not None
                                         and _sem_is_set(self._shared))

    def attach(self, semaphore) -> None:
        """Pass this flag on to the local workers that watch ``semaphore`` (cleared here;
        set at once if a stop was already requested); ``None`` detaches it."""
        if semaphore is not None:
            _sem_clear(semaphore)
            if self._local.is_set():
                semaphore.release()
        self._shared = semaphore


def _sem_is_set(sem) -> bool:
    try:
        return sem.get_value() > 0
    except NotImplementedError:  # macOS has no sem_getvalue
        if sem.acquire(False):
            sem.release()
            return True
        return False


def _sem_clear(sem) -> None:
    while sem.acquire(False):
        pass


class WorkerStops:
    """The stop semaphores of this process's local workers: ``SLOTS`` process-shared
    semaphores, made once (from the worker pool's multiprocessing context) and handed to every
    worker when it starts (the same object every time, so that loky's reusable pool, and the
    models its workers hold, are reused by the next run). Each run that uses local workers
    borrows one slot (:meth:`lend`) and sends its index with each task: a run's stop reaches
    its own tasks only, even when two runs of this process share the pool.
    """

    SLOTS = 8

    def __init__(self):
        self._lock = threading.Lock()
        self._sems: tuple | None = None
        self._free = list(range(self.SLOTS))

    def semaphores(self, context) -> tuple:
        """The semaphores (made on the first call, from ``context``)."""
        with self._lock:
            if self._sems is None:
                self._sems = tuple(context.Semaphore(0) for _ in range(self.SLOTS))
            return self._sems

    def lend(self, flag: StopFlag, context) -> int | None:
        """Attach ``flag`` to a free slot and return the slot's index; None when every slot is
        taken (that run's workers then finish their chunk on a stop; no new chunk starts)."""
        sems = self.semaphores(context)
        with self._lock:
            if not self._free:
                return None
            slot = self._free.pop()
        flag.attach(sems[slot])
        return slot

    def give_back(self, flag: StopFlag, slot: int | None) -> None:
        """Detach ``flag`` from ``slot`` (cleared for the next run) and free the slot."""
        if slot is None:
            return
        flag.attach(None)
        _sem_clear(self._sems[slot])
        with self._lock:
            self._free.append(slot)


#: The stop semaphores of this process's local workers (a resource of the process, like the
#: reusable worker pool they are handed to; every run borrows its own slot).
WORKER_STOPS = WorkerStops()


class _Handlers:
    """Installs ``self._handle`` for :data:`STOP_SIGNALS` on ``__enter__`` (main thread only)
    and restores the previous handlers on ``__exit__``."""

    def __init__(self):
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, frame) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, self._handle) for s in STOP_SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old = {}


class StopSignals(_Handlers):
    """The stop signals of a run, while installed (``with StopSignals(stop) as stops:``).

    * the first sets ``first`` (its number) and ``stop`` (the run's :class:`StopFlag`: no new
      image starts, those in flight finish) and calls ``on_first(signum)`` (inside the
      handler: only async-safe work, e.g. ``os.write``);
    * the second aborts: ``KeyboardInterrupt`` is raised in the main thread, at once or, inside
      a :meth:`deferring` block (a record being written), when the block ends;
    * any later one, and every one after :meth:`close`, is ignored.

    On exit, a previous handler that is a :class:`SignalGuard` is told the run's first signal
    and stops raising (before it is restored: no signal can fall in between).
    """

    def __init__(self, stop: StopFlag, on_first: Callable[[int], None] | None = None):
        super().__init__()
        self.first = 0
        self._stop = stop
        self._on_first = on_first
        self._aborting = False
        self._closed = False
        self._deferring = 0
        self._pending = False

    def _handle(self, signum: int, frame) -> None:
        if self._closed or self._aborting:
            return
        if not self.first:
            self.first = signum
            self._stop.set()
            if self._on_first is not None:
                self._on_first(signum)
            return
        self._aborting = True
        if self._deferring:
            self._pending = True
            return
        raise KeyboardInterrupt

    def deferring(self) -> _Deferring:
        """A block (re-entrant) that an abort does not cut: the ``KeyboardInterrupt`` of a
        second signal that arrives inside it is raised when it ends (not when it ends with an
        exception: that one goes on)."""
        return _Deferring(self)

    def close(self) -> None:
        """Ignore every signal from now on (the run is committing its outputs)."""
        self._closed = True

    def __exit__(self, *exc) -> None:
        self._closed = True
        for h in self._old.values():
            guard = getattr(h, "__self__", None)  # the bound SignalGuard._handle
            if isinstance(guard, SignalGuard):
                guard.settle(self.first)
        super().__exit__(*exc)


class _Deferring:
    def __init__(self, stops: StopSignals):
        self._stops = stops

    def __enter__(self) -> None:
        self._stops._deferring += 1

    def __exit__(self, exc_type, *exc) -> None:
        s = self._stops
        s._deferring -= 1
        if exc_type is None and not s._deferring and s._pending:
            s._pending = False
            raise KeyboardInterrupt


class SignalGuard(_Handlers):
    """The stop signals of the command line around a run (``with SignalGuard() as guard:``):
    before the run takes them over, the first one raises ``KeyboardInterrupt`` (the command
    stops, nothing half-written: the run has not opened its manifest yet) and sets ``first``;
    every later one, and every one once the run has ended (:meth:`settle`), is ignored. On
    exit the previous handlers come back, unless a signal was received (``first``): the
    process is then ending and ignores the rest."""

    def __init__(self):
        super().__init__()
        self.first = 0
        self._armed = True

    def _handle(self, signum: int, frame) -> None:
        if self.first or not self._armed:
            return
        self.first = signum
        raise KeyboardInterrupt

    def __exit__(self, *exc) -> None:
        if not self.first:
            super().__exit__(*exc)
            return
        for s in self._old:  # a signal stopped the command: it is ending, ignore the rest
            signal.signal(s, signal.SIG_IGN)
        self._old = {}

    def settle(self, first: int) -> None:
        """The run is over and ``first`` (0: none) was its first signal: keep it, raise no
        more."""
        self._armed = False
        self.first = self.first or first


class StopNotice:
    """Prints, once, that the run stops after the items in flight: from the signal handler
    (:meth:`on_signal`: only an unbuffered ``os.write`` to stderr's file descriptor is safe
    there, a buffered stream may be in the middle of a write) or, where stderr has no file
    descriptor (or the stop came from the run's flag, not a signal), at the next record
    (:meth:`announce`)."""

    MESSAGE = ("facealign: interrupted: finishing the images in flight "
               "(press Ctrl-C again to abort at once)")

    def __init__(self, stderr: IO, stop: StopFlag):
        self.stop = stop
        self.announced = False
        try:
            self._fd = stderr.fileno()
        except (OSError, ValueError, AttributeError):
            self._fd = None

    def on_signal(self, signum: int) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.write(self._fd, ("\n" + self.MESSAGE + "\n").encode())
                self.announced = True

    def announce(self, reporter) -> None:
        """Print the message through ``reporter`` if a stop was requested and it was not
        printed yet."""
        if self.stop.is_set() and not self.announced:
            self.announced = True
            reporter.line(self.MESSAGE)


__all__ = ["STOP_SIGNALS", "WORKER_STOPS", "SignalGuard", "StopFlag", "StopNotice",
           "StopSignals", "WorkerStops"]
