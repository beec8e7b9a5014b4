"""Where checkpoint sketches are computed: in this process, a local process pool, or a Dask cluster.

The unit of work is one checkpoint's sketch (:func:`spectral_edge.engine.sketch_checkpoint`:
read it tensor by tensor where it lives, return ``{group: d floats}``); the driver pushes the
sketches into its :class:`~spectral_edge.stream.analyzer.TrajectoryAnalyzer` in step order and
does the (tiny) window math. An executor here only runs a function over jobs and hands the
results back **in the order of the jobs**, whatever order they finish in; it knows nothing of
checkpoints.

- :class:`SerialExecutor`: in this process, one job at a time (``--workers 1``, the default).
- :class:`PoolExecutor`: ``--workers N`` processes started with ``spawn`` (no forked torch or
  numba thread pools), at most ``2·N`` jobs in flight. A worker that dies (killed, out of
  memory, preempted) breaks the pool: a new pool is started and the jobs that were in flight
  are submitted again, each at most ``retries`` more times (default once).
- :class:`DaskExecutor`: ``--scheduler ADDRESS``, Dask distributed (``pip install
  'spectral-edge[distributed]'``). Every job is submitted with ``retries`` (default 2), so a
  lost worker's job runs again elsewhere; Dask's own ``allowed-failures`` ends a job that keeps
  killing workers (:class:`WorkerLost`). Why Dask and not Ray: a job is a plain function call
  with a few hundred bytes in and d floats out, which is exactly Dask's ``submit``/``Future``;
  Dask installs from PyPI as pure Python, starts a ``LocalCluster`` in-process for tests and
  runs on the clusters researchers already have (SLURM, Kubernetes via dask-jobqueue / dask-k8s).

Failures that belong to the data (a corrupt or NaN checkpoint) are not failures of a worker:
the job function returns them as values (so neither the pool nor Dask retries them) and the
driver raises them in step order, with the rows before them kept.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from .errors import ConfigError

__all__ = ["DaskExecutor", "PoolExecutor", "SerialExecutor", "WorkerLost", "make_executor"]

#: seconds to wait for a Dask scheduler (``SPECTRAL_EDGE_SCHEDULER_TIMEOUT`` overrides)
SCHEDULER_TIMEOUT = 10.0


class WorkerLost(Exception):
    """The job at ``index`` was lost with its worker more often than the retries allow."""

    def __init__(self, index: int, attempts: int, detail: str):
        self.index, self.attempts, self.detail = index, attempts, detail
        super().__init__(f"job {index}: worker lost {attempts} time(s) ({detail})")


class SerialExecutor:
    """Runs each job in this process, in order."""

    workers = 1
    where = "this process"

    def imap(self, fn: Callable[[Any], Any], jobs: Sequence[Any]) -> Iterator[Any]:
        for job in jobs:
            yield fn(job)

    def close(self) -> None:
        pass

    def __enter__(self) -> "SerialExecutor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PoolExecutor(SerialExecutor):
    """``workers`` local processes (``spawn``); a broken pool is replaced and its jobs resubmitted."""

    def __init__(self, workers: int, retries: int = 1):
        if int(workers) < 1:
            raise ConfigError(f"--workers must be at least 1, got {workers}")
        self.workers, self.retries = int(workers), int(retries)
        self.where = f"{self.workers} local worker processes"
        self._pool: Any = None

    def _start(self) -> Any:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
        return self._pool

    def imap(self, fn: Callable[[Any], Any], jobs: Sequence[Any]) -> Iterator[Any]:
        from concurrent.futures.process import BrokenProcessPool

        pool = self._pool or self._start()
        attempts = [0] * len(jobs)
        flight: deque[tuple[int, Any]] = deque()
        nxt = 0
        try:
            while nxt < len(jobs) or flight:
                while nxt < len(jobs) and len(flight) < 2 * self.workers:
                    flight.append((nxt, pool.submit(fn, jobs[nxt])))
                    nxt += 1
                i, fut = flight[0]
                try:
                    result = fut.result()
                except BrokenProcessPool as e:
                    lost = [j for j, _ in flight]
                    for j in lost:
                        attempts[j] += 1
                    worst = max(lost, key=lambda j: attempts[j])
                    if attempts[worst] > self.retries:
                        raise WorkerLost(worst, attempts[worst], str(e) or "a worker process died") from None
                    self._shutdown()
                    pool = self._start()
                    flight = deque((j, pool.submit(fn, jobs[j])) for j in lost)
                    continue
                flight.popleft()
                yield result
        finally:
            if flight:
                self._shutdown()

    def _shutdown(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        procs = list(getattr(pool, "_processes", {}).values())  # stdlib internals: stop running jobs now
        pool.shutdown(wait=False, cancel_futures=True)
        for p in procs:
            if p.is_alive():
                p.terminate()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


class DaskExecutor(SerialExecutor):
    """Jobs on a Dask distributed cluster at ``address`` (``tcp://host:8786``), each with ``retries``."""

    def __init__(self, address: str, retries: int = 2):
        try:
            from distributed import Client
        except ImportError:
            raise ConfigError(f"--scheduler {address}: needs Dask distributed, which is not installed: "
                              "pip install 'spectral-edge[distributed]'") from None
        timeout = float(os.environ.get("SPECTRAL_EDGE_SCHEDULER_TIMEOUT") or SCHEDULER_TIMEOUT)
        if "://" not in address and ":" not in address:
            raise ConfigError(f"--scheduler {address!r}: not a scheduler address; write tcp://HOST:PORT")
        try:
            self.client = Client(address, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as e:
            detail = " ".join(str(e).split())[:160] or type(e).__name__
            raise ConfigError(f"--scheduler {address}: cannot reach the Dask scheduler within {timeout:g} s "
                              f"({detail})") from None
        self.retries = int(retries)
        n = len(self.client.scheduler_info().get("workers", {}))
        self.workers = max(1, n)
        self.where = f"Dask at {address} ({n} workers)"

    def imap(self, fn: Callable[[Any], Any], jobs: Sequence[Any]) -> Iterator[Any]:
        from distributed import KilledWorker

        futures = [self.client.submit(fn, job, retries=self.retries, pure=False) for job in jobs]
        try:
            for i, fut in enumerate(futures):
                try:
                    yield fut.result()
                except KilledWorker as e:
                    raise WorkerLost(i, self.retries + 1, str(e)) from None
        finally:
            for fut in futures:
                if not fut.done():
                    fut.cancel()

    def close(self) -> None:
        self.client.close()


def make_executor(workers: int = 1, scheduler: str | None = None) -> SerialExecutor:
    """The executor for ``--workers`` / ``--scheduler`` (ConfigError for 0 workers, both, or an
    unreachable scheduler)."""
    if int(workers) < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    if scheduler:
        if int(workers) != 1:
            raise ConfigError("--workers and --scheduler exclude each other: the Dask cluster has its own workers")
        return DaskExecutor(scheduler)
    return SerialExecutor() if int(workers) == 1 else PoolExecutor(int(workers))
