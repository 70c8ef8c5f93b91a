"""Stop signals (SIGINT, SIGTERM, SIGHUP): what a run does with the first, the second and any
later one, and what the command line does with those that come before or after the run.

The first signal decides the exit status (:func:`facealign_cli.batch.options.signal_exit_code`:
130 for SIGINT, 143 for SIGTERM or SIGHUP), however many follow: a supervisor that sends
SIGTERM every 50 ms still gets 143 and a manifest that lists every input (done, failed, or
``Interrupted``). Handlers run in the main thread only (Python's rule); elsewhere nothing is
installed.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any

#: Signals that stop a run like Ctrl-C does (finish the images in flight, commit, exit).
STOP_SIGNALS = tuple(s for s in (getattr(signal, n, None) for n in ("SIGINT", "SIGTERM",
                                                                    "SIGHUP")) if s)


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

    * the first sets ``first`` (its number) and ``stop`` (an Event: no new image starts, those
      in flight finish) and calls ``on_first(signum)`` (inside the handler: only async-safe
      work, e.g. ``os.write``);
    * the second aborts: ``KeyboardInterrupt`` is raised in the main thread, at once or, inside
      a :meth:`deferring` block (a record being written), when the block ends;
    * any later one, and every one after :meth:`close`, is ignored.

    On exit, a previous handler that is a :class:`SignalGuard` is told the run's first signal
    and stops raising (before it is restored: no signal can fall in between).
    """

    def __init__(self, stop: threading.Event, on_first: Callable[[int], None] | None = None):
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


__all__ = ["STOP_SIGNALS", "StopSignals", "SignalGuard"]
