"""Where chunks of images run: this process (:class:`InProcessExecutor`), local worker
processes (:class:`LocalExecutor`), or a Dask cluster (:class:`DaskExecutor`).

Every executor runs :meth:`facealign_cli.batch.worker.WorkerContext.process_chunk` on a chunk
(in a worker: :func:`~facealign_cli.batch.worker.local_chunk`,
:func:`~facealign_cli.batch.worker.remote_chunk`) and hands back its results as a future
(``result()``, ``cancel()``); none of them writes outputs. An executor is made per run, with
the run's stop flag, and closed when the run ends. Public APIs only: loky's
``get_reusable_executor`` (the executor joblib uses, ``concurrent.futures`` semantics; a dead
worker breaks the pool with :class:`concurrent.futures.process.BrokenProcessPool`) and
``distributed.Client.submit`` (a task that keeps killing workers fails with ``KilledWorker``).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from concurrent.futures.process import BrokenProcessPool

from facealign_cli.batch.errors import BatchError
from facealign_cli.batch.options import RunOptions
from facealign_cli.batch.result import one_line
from facealign_cli.batch.stopping import WORKER_STOPS, StopFlag
from facealign_cli.batch.worker import WorkerContext, local_chunk, remote_chunk, worker_init


class _Deferred:
    """The future of a chunk run in this process: it runs when its result is asked for."""

    def __init__(self, run):
        self._run = run

    def result(self):
        return self._run()

    def cancel(self) -> bool:
        self._run = list  # never run: no results
        return True


class InProcessExecutor:
    """This process, one image at a time (``--jobs 1``), with a :class:`WorkerContext` of the
    run's own (its model is dropped when the run ends) and the run's ``stop`` flag, checked
    before each image and each video frame."""

    crash_errors: tuple[type[BaseException], ...] = ()
    cluster_errors: tuple[type[BaseException], ...] = ()
    parallelism = 1
    in_process = True

    def __init__(self, stop: StopFlag):
        self.stop = stop
        self.context = WorkerContext()

    def submit(self, opts: RunOptions, chunk, workers: int) -> _Deferred:
        return _Deferred(lambda: self.context.process_chunk(opts, chunk, self.stop))

    def abort(self) -> None:
        pass  # nothing runs in the background

    def close(self) -> None:
        self.context.close()


class LocalExecutor:
    """Worker processes on this machine (loky's reusable executor: workers and their models
    are reused by the next run of the same process). The run's ``stop`` flag reaches them
    through a stop semaphore lent to the run
    (:data:`~facealign_cli.batch.stopping.WORKER_STOPS`), given back by :meth:`close`."""

    crash_errors: tuple[type[BaseException], ...] = (BrokenProcessPool,)
    cluster_errors: tuple[type[BaseException], ...] = ()
    in_process = False

    def __init__(self, jobs: int, stop: StopFlag):
        from facealign_cli.batch.streams import ensure_standard_streams

        ensure_standard_streams()  # workers started with a closed fd 0/1/2 die at once
        self.parallelism = jobs
        self.stop = stop
        self._ex = None
        self._context = _loky()[1]()
        self._slot = WORKER_STOPS.lend(stop, self._context)

    def submit(self, opts: RunOptions, chunk, workers: int):
        # the workers get every stop semaphore (the same object each time, so the reusable
        # executor and its loaded models are reused); each task names its run's
        stops = WORKER_STOPS.semaphores(self._context)
        self._ex = _loky()[0](max_workers=workers, initializer=worker_init,
                              initargs=(os.getpid(), stops))
        return self._ex.submit(local_chunk, opts, chunk, self._slot)

    def abort(self) -> None:
        """Stop every worker now (the run was aborted; results in flight are dropped)."""
        if self._ex is not None:
            with contextlib.suppress(Exception):
                self._ex.shutdown(wait=False, kill_workers=True)
            self._ex = None

    def close(self) -> None:
        """Give the stop semaphore back (idle workers stay for the next run of this process,
        and die with it)."""
        WORKER_STOPS.give_back(self.stop, self._slot)
        self._slot = None


def _loky():
    """``(get_reusable_executor, get_context)`` of the loky package, else of the copy joblib
    ships (the same public API)."""
    try:
        from loky import get_reusable_executor
        from loky.backend import get_context
    except ImportError:
        from joblib.externals.loky import get_reusable_executor
        from joblib.externals.loky.backend import get_context
    return get_reusable_executor, get_context


class DaskExecutor:
    """Tasks on a Dask cluster through a connected ``distributed.Client``."""

    cluster_errors: tuple[type[BaseException], ...] = (Exception,)
    in_process = False

    def __init__(self, client, timeout: float):
        from distributed import KilledWorker

        self.client = client
        self.timeout = timeout
        self.crash_errors = (KilledWorker,)
        self.parallelism = max(1, sum(client.nthreads().values()))

    def submit(self, opts: RunOptions, chunk, workers: int):
        return self.client.submit(remote_chunk, opts, chunk, pure=False)

    def abort(self) -> None:
        pass  # futures are cancelled one by one by the runner

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close(timeout=self.timeout)


def connect_dask(address: str, timeout: float):
    """A ``distributed.Client`` for the scheduler at ``address`` (``tcp://host:8786``), once at
    least one worker is connected to it. Imports ``distributed`` (only here).

    Args:
        address: the scheduler's address, as ``dask scheduler`` prints it.
        timeout: seconds to wait for the scheduler, then for a worker (finite, > 0).

    Raises:
        BatchError: ``dask[distributed]`` is not installed, the scheduler cannot be reached in
            time (or the address is malformed), or no worker joins it in time.
    """
    try:
        from distributed import Client
    except ImportError:
        raise BatchError("--backend dask needs Dask: pip install 'facealign-cli[dask]' "
                         "(that is, dask[distributed])") from None
    _check_address(address)
    try:
        client = Client(address, timeout=timeout, set_as_default=False)
    except Exception as exc:  # OSError / TimeoutError: no answer in time
        raise BatchError(f"cannot reach the Dask scheduler at {address}: "
                         f"{type(exc).__name__}: {one_line(exc)}") from None
    try:
        client.wait_for_workers(1, timeout=timeout)
    except Exception:
        with contextlib.suppress(Exception):
            client.close()
        raise BatchError(f"the Dask scheduler at {address} has no workers "
                         f"(waited {timeout:g} s)") from None
    return client


def _check_address(address: str) -> None:
    """Refuse, before a ``distributed.Client`` is made, a scheduler address that no client of
    this process can connect to. Such a Client fails on something other than an ``OSError``
    and is left half-started: its finaliser then waits twice the timeout and prints a
    ``Client.__del__`` traceback. Refused: a malformed address or an unknown scheme
    (``http://``), ``inproc://`` (reaches only a scheduler inside the same process), a
    transport whose connector this Dask install cannot make (``ucx://`` without
    ``distributed-ucxx``), and ``tls://`` without a TLS configuration (the
    ``distributed.comm.tls.*`` keys of the Dask config; ``wss://`` falls back to the system's
    certificate authorities, so it is let through).

    Raises:
        BatchError: one line saying what is wrong with the address.
    """
    from distributed.comm import parse_address
    from distributed.comm.addressing import parse_host_port
    from distributed.comm.registry import get_backend

    try:
        scheme, loc = parse_address(address)
        backend = get_backend(scheme)  # ValueError: unknown address scheme 'http' (...)
        if scheme in ("tcp", "tls", "ws", "wss"):
            parse_host_port(loc)
    except (ValueError, TypeError, ImportError) as exc:
        raise BatchError(f"not a Dask scheduler address: {address!r} ({one_line(exc)}); "
                         "expected e.g. tcp://scheduler-host:8786") from None
    if scheme == "inproc":
        raise BatchError(f"{address}: an inproc:// scheduler lives inside one Python process "
                         "and cannot be reached from facealign; give the scheduler's tcp:// "
                         "(or tls://) address, e.g. tcp://scheduler-host:8786")
    try:
        backend.get_connector()
    except Exception as exc:  # ucx: "Can't instantiate abstract class UCXConnector"
        raise BatchError(f"{address}: this Dask install cannot connect over {scheme}:// "
                         f"({describe(exc)}); install its transport (for ucx: "
                         "distributed-ucxx) or use a tcp:// address") from None
    if scheme == "tls":
        from distributed.security import Security

        try:
            context = Security().get_connection_args("client").get("ssl_context")
        except Exception as exc:  # unreadable certificate or key files
            raise BatchError(f"{address}: Dask's TLS configuration cannot be used: "
                             f"{describe(exc)}") from None
        if context is None:
            raise BatchError(
                f"{address}: a tls:// scheduler needs a TLS configuration, and Dask has "
                "none: set distributed.comm.tls.ca-file, .client.cert and .client.key in the "
                "Dask config (e.g. DASK_DISTRIBUTED__COMM__TLS__CA_FILE=..., "
                "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT=..., "
                "DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY=...)")


@contextlib.contextmanager
def quiet_dask_logs(enabled: bool = True) -> Iterator[None]:
    """While active, the client-side log records of Dask (``distributed.*`` loggers: after a
    lost scheduler, reconnection attempts with tracebacks) are dropped: the run reports a
    cluster failure itself, in one line. Levels are restored afterwards."""
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


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {one_line(exc)}"


__all__ = ["DaskExecutor", "InProcessExecutor", "LocalExecutor", "connect_dask",
           "quiet_dask_logs"]
