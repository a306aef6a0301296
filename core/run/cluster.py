"""A run on a Dask cluster: the same rows, results, journal and events as a run on this computer.

Why this is ours and what Dask does: Dask (`distributed`) starts the workers, ships tasks,
schedules them and reschedules a task whose worker died. We cut the rows a run selected into
partitions (in input order, sized as the run goes: cluster_cut.py), send each as a task that runs the existing
engine on its rows (cluster_task.py), and take the partitions' results as they finish
(`distributed.as_completed`) into this run's `Engine` bookkeeping: the results list by row
number, the progress counters and the events (RowDone / RowFailed...) that the journal's
recorder, the result store and the front ends already listen to. So input order, per-row status
and errors, resume (only rows without a current result are selected, hence sent) and retry
failed work as they do on one machine.

`ClusterEngine` is an `Engine` whose rows run elsewhere: `cluster_engine(engine, client)` turns
the engine a `Job` made into one (same results list, listeners and settings; binding is the
workers' business, so the client never loads files or embeds a knowledge base). Nothing of
engine.py changes.

- One budget across the cluster: max concurrency is a `distributed.Semaphore` of that many
  leases (cluster_slots.py), and each provider's RPM/TPM is split between the workers (each
  partition takes its share of the workers counted when it was sent).
- A worker that dies loses its partition in flight: the scheduler runs the task again
  elsewhere (`retries=` covers a task that raised), and the journal already holds every
  partition that finished.
- Pause sends no new partition (partitions in flight finish); a partition that paused itself
  (the same error again and again) pauses the run, and its unfinished rows are sent again
  when the run resumes. Stop cancels every partition in flight and sets the
  run's stop signal (a `distributed.Event` on the scheduler), on which each running partition stops its
  engine: Dask's cancel cannot stop a task already running.
- `distributed` is an optional extra, imported only here (`pip install 'batchgrid[cluster]'`).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import re
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict
from typing import Any, NamedTuple

from batchgrid.core.util.errors import BatchgridError

from . import events as ev
from .cluster_cut import Cutter
from .cluster_task import TOTALS, Partition, PartitionOutcome, RunSpec, run_partition, stop_event
from .engine import Engine

# Rows per task, when set (BATCHGRID_PARTITION_ROWS); else the run sizes them (cluster_cut.py).
PARTITION_ROWS = int(os.environ.get("BATCHGRID_PARTITION_ROWS") or 0) or None
# Seconds a dead worker's leases stay taken (Dask's default is 30): the workers refresh theirs every
# fifth of it. A local cluster's scheduler checks them every LEASE_CHECK seconds (a scheduler of
# its own checks at its `distributed.scheduler.locks.lease-validation-interval`, 10 s by default).
LEASE_TIMEOUT = float(os.environ.get("BATCHGRID_LEASE_TIMEOUT") or 6.0)
LEASE_CHECK = 1.0
TASK_RETRIES = 2          # a task that raised (not a row: rows fail in their own cells) is tried again
INSTALL = "Dask is not installed: pip install 'batchgrid[cluster]' (distributed and dask[dataframe])"


class ClusterError(BatchgridError):
    """The cluster could not be used or lost the run: one line."""


def require_distributed() -> Any:
    """The `distributed` module, or a one-line error saying how to install it."""
    try:
        import distributed
    except ImportError:
        raise ClusterError(INSTALL) from None
    return distributed


def installed() -> bool:
    """`distributed` can be imported (found without importing it: that takes a second)."""
    try:
        return importlib.util.find_spec("distributed") is not None  # None too when sys.modules holds None
    except ValueError:  # imported, without a spec
        return True


# ---- where the rows go: `--cluster ADDRESS`, the window's Run on ----------------------------------
LOCAL = re.compile(r"local(?::(.*))?", re.DOTALL)
PROTOCOLS = ("tcp", "tls", "ws", "wss", "ucx")  # what Dask's comms speak
HOST_PORT = re.compile(r"(\[[^\]\s]+\]|[^\s:/\[\]]+):(\d+)")  # host:port, [ipv6]:port


class Address(NamedTuple):
    local: bool            # a LocalCluster started here, for the run
    workers: int | None    # its worker processes (None: one per core)
    scheduler: str         # else the scheduler's address with its protocol: tcp://scheduler:8786


def refuse_batch_mode(steps: Sequence[Any]) -> None:
    """A step in batch mode waits for every row at the provider's Batch API, which does the work: such
    a run goes from this computer (its batch and file ids in this computer's journal), not a cluster."""
    for number, step in enumerate(steps, 1):
        if step.enabled and step.config.get("batch") is True:
            raise ClusterError(f"{number}. {step.label} is in batch mode: the provider's Batch API does its rows, so "
                               "the run goes from this computer, not a cluster (run it here, or turn batch mode off)")


def parse_address(text: str) -> Address:
    """Where a run's rows go: `local` or `local:N` (N worker processes on this machine; `local`: one
    per core), `host:port` (tcp) or `PROTOCOL://host:port` (tcp, tls, ws, wss, ucx). Anything else
    is a ClusterError of one line, said before anything is started or asked."""
    address = text.strip()
    local = LOCAL.fullmatch(address)
    if local:
        number = local.group(1)
        if number is None:
            return Address(True, None, "")
        if not (number.isascii() and number.isdigit()):
            raise ClusterError(f"{address}: local:N takes a number of worker processes (local:2)")
        if int(number) < 1:
            raise ClusterError("local:N needs at least 1 worker")
        return Address(True, int(number), "")
    if not address:
        raise ClusterError("give a scheduler's address (tcp://scheduler:8786), or local:N for N worker processes "
                           "on this computer")
    protocol, sep, rest = address.partition("://")
    if not sep:
        protocol, rest = "tcp", address
    elif protocol.lower() not in PROTOCOLS:
        raise ClusterError(f"{address}: a scheduler's address starts with tcp:// or tls:// (or is host:port)")
    host_port = HOST_PORT.fullmatch(rest)
    if host_port is None:
        raise ClusterError(f"{address}: give the scheduler's host and port (tcp://scheduler:8786)")
    if not 0 < int(host_port.group(2)) < 65536:
        raise ClusterError(f"{address}: the port is a number from 1 to 65535")
    return Address(False, None, f"{protocol.lower()}://{rest}")


def address_problem(text: str) -> str:
    """What is wrong with `text` as a cluster's address, in one line ('' when nothing is)."""
    try:
        parse_address(text)
    except ClusterError as exc:
        return str(exc)
    return ""


async def connect(address: str) -> tuple[Any, Any]:
    """(client, cluster) for a run on `address` (parse_address): `local[:N]` starts a LocalCluster
    of N worker processes on this machine (default: one per core), anything else is a scheduler's
    address. Both async, on the running loop. A failure is one line (no scheduler there, a bad address)."""
    distributed = require_distributed()
    where = parse_address(address)
    local = where.local
    cluster = None
    try:
        if local:
            workers = where.workers
            import dask

            # The workers' statistical profiler samples every thread each 10 ms: CPU a local cluster
            # needs for rows (a Nanny hands this config to its worker process).
            with dask.config.set({"distributed.worker.profile.enabled": False,
                                  "distributed.scheduler.locks.lease-validation-interval": f"{LEASE_CHECK}s"}):
                cluster = await distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                                         dashboard_address=None, asynchronous=True)
            client = await distributed.Client(cluster, asynchronous=True)
        else:
            client = await distributed.Client(where.scheduler, asynchronous=True, timeout="10s")
    except ClusterError:
        raise
    except (OSError, TimeoutError, ValueError) as exc:
        if cluster is not None:
            await cluster.close()
        what = "could not start a local Dask cluster" if local else f"no Dask scheduler answers at {address}"
        raise ClusterError(f"{what}: {' '.join(str(exc).split()) or type(exc).__name__}") from None
    return client, cluster


async def disconnect(client: Any, cluster: Any) -> None:
    with contextlib.suppress(Exception):
        await client.close()
    if cluster is not None:
        with contextlib.suppress(Exception):
            await cluster.close()


def cluster_engine(engine: Engine, client: Any, pipeline: dict[str, Any], *, cluster: Any = None,
                   partition_rows: int | None = None, owns_client: bool = True) -> ClusterEngine:
    """The engine a Job made (not started), run on the cluster instead: the same object, so the
    job's results, the journal's recorder and every listener already subscribed stay as they are.
    `pipeline`: the run's snapshot as its file says it (`Pipeline.to_dict()`). With `owns_client`, the
    client (and `cluster`, a LocalCluster it started) is closed when the run ends."""
    if engine.running:
        raise RuntimeError("the run has already started")
    engine.__class__ = ClusterEngine
    assert isinstance(engine, ClusterEngine)
    engine.client = client
    engine.owned = (client, cluster) if owns_client else None
    engine.pipeline = {**pipeline, "steps": [s.to_dict() for s in engine._steps]}
    rows = partition_rows or PARTITION_ROWS
    engine.partition_rows = max(1, rows) if rows else 0
    engine.partitions_run = 0
    engine.worker_seconds = engine.worker_cpu = engine.lease_seconds = 0.0
    engine.lease_asks = engine.lease_grants = 0
    engine.peak_leases = 0
    engine._futures = {}
    return engine


class ClusterEngine(Engine):
    """An Engine whose rows run as partitions on a Dask cluster (made by `cluster_engine`)."""

    client: Any
    owned: tuple[Any, Any] | None
    pipeline: dict[str, Any]
    partition_rows: int    # rows per task (0: sized as the run goes, cluster_cut.Cutter)
    partitions_run: int    # tasks that came back (a retried one counts once)
    worker_seconds: float  # the partitions' wall time on their workers, summed
    worker_cpu: float      # and their CPU time (worker_cpu / worker_seconds: how busy the workers were)
    lease_asks: int        # requests for a lease at the scheduler, all partitions
    lease_seconds: float   # their round trips, summed
    lease_grants: int      # requests that brought a lease
    peak_leases: int       # the most leases one partition held at once (never above max concurrency)
    _futures: dict[Any, Partition]

    async def run(self):
        try:
            return await super().run()
        finally:
            if self.owned is not None:
                await disconnect(*self.owned)

    async def _bind(self) -> list:
        return []  # the workers bind the steps, each for its partitions

    async def _run_rows(self) -> list[BaseException]:
        driver = asyncio.ensure_future(self._drive())
        self._workers = [driver]
        if self._stopping:
            driver.cancel()
        try:
            await driver
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if not self._stopping or (task is not None and task.cancelling()):
                raise
        return []

    def _spec(self, semaphore: str) -> RunSpec:
        r = self.resources
        return RunSpec(pipeline=self.pipeline, settings=dict(r.settings), base_dir=str(r.base_dir),
                       trusted=r.trusted, data_dir=str(r.data_dir) if r.data_dir else None, use_cache=r.use_cache,
                       max_concurrency=self.max_concurrency, retry=asdict(self.retry_policy), semaphore=semaphore,
                       lease_timeout=LEASE_TIMEOUT)

    def _partition(self, number: int, indexes: list[int], workers: int) -> Partition:
        columns = self.rows.columns
        values = [[column[i] for i in indexes] for column in (self.rows.column(c) for c in columns)]
        return Partition(number, indexes, columns, values, workers)

    async def _drive(self) -> None:
        name = f"batchgrid-{uuid.uuid4().hex[:12]}"
        async with self._semaphore(name):
            await self._send(name)

    @contextlib.asynccontextmanager
    async def _semaphore(self, name: str) -> AsyncIterator[None]:
        """The run's cap on calls in flight, on the scheduler, for the time of the run. Its lease
        timeout (how long a dead worker's leases stay taken) is LEASE_TIMEOUT: the workers refresh
        their leases every fifth of it (cluster_task.leased makes theirs with the same)."""
        import dask

        distributed = require_distributed()
        client = self.client
        with dask.config.set({"distributed.scheduler.locks.lease-timeout": f"{LEASE_TIMEOUT}s"}):
            semaphore = await distributed.Semaphore(max_leases=self.max_concurrency, name=name,
                                                    scheduler_rpc=client.scheduler, loop=client.loop)
        try:
            yield
        finally:
            semaphore.refresh_callback.stop()
            with contextlib.suppress(Exception):
                await client.scheduler.semaphore_close(name=name)

    async def _send(self, name: str) -> None:
        """The selected rows as partitions, a window of them in flight; their results as they come."""
        distributed = require_distributed()
        client = self.client
        spec = self._spec(name)
        workers = await client.nthreads()  # asked: the client's scheduler_info() may not list them yet
        todo = Cutter(self.selection, sum(workers.values()), self.partition_rows)
        numbers = iter(range(1 << 62))
        waiting = distributed.as_completed([], loop=client.loop)
        futures = self._futures
        try:
            while todo or futures:
                if todo:  # workers come and go: the RPM/TPM shares, the sizes and the window follow them
                    workers = await client.nthreads()
                    todo.workers_changed(sum(workers.values()))
                window = max(2, 2 * sum(workers.values()))
                while todo and len(futures) < window and not self.paused and not self._stopping:
                    part = self._partition(next(numbers), todo.take(), max(1, len(workers)))
                    future = client.submit(run_partition, spec, part, retries=TASK_RETRIES, pure=False,
                                           key=f"{name}-part-{part.number}")
                    futures[future] = part
                    waiting.add(future)
                if not futures:
                    await self.until_resumed()  # paused with nothing in flight
                    continue
                future = await waiting.__anext__()
                part = futures.pop(future)
                outcome = await self._outcome(future, part)
                unfinished = self._take(outcome, part)
                todo.ran(len(part.indexes) - len(unfinished), outcome.seconds)
                if outcome.reason == "failed":
                    raise ClusterError(f"on worker {outcome.worker}: {outcome.message}")
                if outcome.paused:
                    self.pause(outcome.paused, outcome.kind)
                if unfinished:
                    todo.give_back(unfinished)  # sent again (first) when the run resumes
        finally:
            if futures:
                if self._stopping:  # the tasks running go on unless told: the stop signal (cluster_task.stop_event)
                    with contextlib.suppress(Exception):
                        await client.scheduler.event_set(name=stop_event(spec))
                with contextlib.suppress(Exception):
                    await client.cancel(list(futures), force=True)
            futures.clear()

    async def _outcome(self, future: Any, part: Partition) -> PartitionOutcome:
        rows = f"rows {part.indexes[0] + 1}-{part.indexes[-1] + 1}"
        try:
            outcome = await future
        except asyncio.CancelledError:
            if future.status == "cancelled" and not self._stopping:
                raise ClusterError(f"the cluster dropped the task for {rows} (was the scheduler restarted?)") \
                    from None
            raise
        except BatchgridError as exc:
            raise ClusterError(f"{rows}: {exc}") from None
        except Exception as exc:  # KilledWorker (its workers died again and again), a bug in a task
            text = " ".join(str(exc).split()) or type(exc).__name__
            raise ClusterError(f"the cluster could not run {rows}: {type(exc).__name__}: {text}") from None
        finally:
            with contextlib.suppress(Exception):
                future.release()
        self.partitions_run += 1
        self.worker_seconds += outcome.seconds
        self.worker_cpu += outcome.cpu
        self.lease_asks += outcome.lease_asks
        self.lease_seconds += outcome.lease_seconds
        self.lease_grants += outcome.lease_grants
        self.peak_leases = max(self.peak_leases, outcome.peak_leases)
        return outcome

    def _take(self, outcome: PartitionOutcome, part: Partition) -> list[int]:
        """The partition's finished rows into the run (results, progress, events, budget); returns
        the rows of it that did not finish."""
        p = self.progress
        for name in TOTALS:
            setattr(p, name, getattr(p, name) + type(getattr(p, name))(outcome.totals.get(name, 0)))
        finished = set()
        for result in outcome.results:
            i = result.index
            finished.add(i)
            self.results[i] = result
            event: ev.RowFinished
            if result.status == ev.DONE:
                p.done += 1
                event = ev.RowDone(i, result)
            else:
                p.failed += 1
                event = ev.RowFailed(i, result)
            if self.budget is not None:
                self.budget.row_finished(result.cost)
            self.publish(event)
        return [i for i in part.indexes if i not in finished]
