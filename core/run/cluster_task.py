"""What a Dask worker runs: one partition of a run's rows through the existing engine.

Why this is ours: Dask ships the task, schedules it, retries it when its worker dies; what it
runs is `Engine` (engine.py), unchanged, on a `Table` of the partition's rows, in an event loop
of the task's own. Only two things differ from a run on this computer:
- calls in flight are counted against the whole cluster's max concurrency: the engine's slots
  are a `ClusterSlots` (cluster_slots.py, leases of a `distributed.Semaphore`);
- each provider's requests and tokens per minute are this worker's share (the limit divided by
  the workers the cluster had when the partition was sent): `shared_limits`.

A task carries the pipeline as its file says it (`Pipeline.to_dict`: provider profiles name the
environment variable or keyring entry of their key, never the key), the partition's rows and
numbers: a worker reads keys from its own environment or keyring. What comes back is the rows
that finished (done or failed: their `RowResult`, secrets already redacted here) by their
number in the whole input, and the partition engine's end: a pause (the same error again and
again, a server silent too long) stops the partition and is said to the client, which pauses
the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchgrid.core.steps.context import RunResources
from batchgrid.core.table.columnar import Table

from . import events as ev
from .engine import Engine


@dataclass
class RunSpec:
    """What every partition of a run shares. No secret: only names of keys."""

    pipeline: dict[str, Any]   # Pipeline.to_dict() of the run's snapshot (its steps as the engine has them)
    settings: dict[str, Any]   # the run's settings (the engine's: defaults filled in)
    base_dir: str              # where relative paths start (the pipeline's folder: workers must see it)
    trusted: bool
    data_dir: str | None       # the response cache and prices (None: each worker's default folder)
    use_cache: bool
    max_concurrency: int       # the cluster-wide cap on calls in flight (and each partition's rows in flight)
    retry: dict[str, Any]      # RetryPolicy's fields
    semaphore: str             # the name of the run's distributed.Semaphore
    lease_timeout: float = 30.0  # seconds a dead worker's leases stay taken (cluster.LEASE_TIMEOUT)


@dataclass
class Partition:
    number: int
    indexes: list[int]            # row numbers in the whole input, in order
    columns: list[str]
    values: list[list[Any]]       # one list per column, the partition's rows
    workers: int = 1              # workers in the cluster when it was sent: RPM/TPM shares


@dataclass
class PartitionOutcome:
    number: int
    results: list[ev.RowResult]   # finished rows (done or error), `index` in the whole input
    reason: str = "finished"      # the partition engine's end: finished, stopped, failed
    message: str = ""
    paused: str = ""              # why the partition paused itself (it then stopped): the run pauses
    kind: str = ""
    worker: str = ""
    totals: dict[str, float] = field(default_factory=dict)  # Progress counters to add to the run's
    peak_leases: int = 0          # the most cluster leases this partition held at once
    lease_asks: int = 0           # its requests for a lease at the scheduler (round trips)
    lease_seconds: float = 0.0    # their time, summed
    lease_grants: int = 0         # requests that brought a lease (the others waited ASK seconds: the cap was full)
    seconds: float = 0.0          # the partition's wall time on the worker
    cpu: float = 0.0              # and its thread's CPU time there (how busy the worker kept its core)


TOTALS = ("tokens_in", "tokens_out", "cost", "cached", "retries", "shared_tokens_in", "shared_tokens_out",
          "shared_cost")


def shared_limits(providers: Mapping[str, dict[str, Any]], workers: int) -> dict[str, dict[str, Any]]:
    """Each profile's requests and tokens per minute, and its own cap in flight, as one worker's share."""
    from batchgrid.core.providers.profiles import resolve_profile

    shared = {name: dict(raw) for name, raw in providers.items()}
    if workers <= 1:
        return shared
    for name, raw in shared.items():
        try:
            profile = resolve_profile(name, providers)
        except Exception:  # a step naming it says so in its rows, as on this computer
            continue
        for key in ("rpm", "tpm", "max_in_flight"):
            value = getattr(profile, key, None)
            if value:
                raw[key] = max(1, math.floor(value / workers))
    return shared


class PartitionEngine(Engine):
    """`Engine` with no listeners (no event per row: the client makes the run's events from the
    outcome) whose pause stops the partition: nobody can press Resume on a worker, so the
    partition ends and the client pauses the run."""

    paused_for: tuple[str, str] = ("", "")

    def pause(self, reason: str = "", kind: str = "") -> None:
        if not self.paused_for[0] and not self._stopping:
            self.paused_for = (reason or "paused", kind)
            self.stop()


def run_partition(spec: RunSpec, part: Partition) -> PartitionOutcome:
    """The task: on a Dask worker, in one of its threads."""
    from distributed import get_worker

    worker = get_worker()
    wall, cpu = time.perf_counter(), time.thread_time()
    with leased(spec, worker) as semaphore:
        outcome = run_on_worker(spec, part, semaphore, worker)
    outcome.seconds, outcome.cpu = time.perf_counter() - wall, time.thread_time() - cpu
    return outcome


@contextlib.contextmanager
def leased(spec: RunSpec, worker: Any) -> Iterator[Any]:
    """The run's semaphore on this worker, its leases given back (and their refreshing stopped) at
    the end. Made under the run's lease timeout: the semaphore refreshes its leases every fifth of
    it, which must match the timeout the client created the semaphore with."""
    import dask
    from distributed import Semaphore

    from .cluster_slots import release_all

    with dask.config.set({"distributed.scheduler.locks.lease-timeout": f"{spec.lease_timeout}s"}):
        semaphore = Semaphore(max_leases=spec.max_concurrency, name=spec.semaphore)
    try:
        yield semaphore
    finally:
        asyncio.run_coroutine_threadsafe(release_all(semaphore), worker.loop.asyncio_loop).result(timeout=30)


def stop_event(spec: RunSpec) -> str:
    """The name of the run's stop signal on the scheduler (a `distributed.Event`): set when the user
    stops the run; every partition in flight stops its engine then (Dask's cancel cannot stop a task
    that is running)."""
    return f"{spec.semaphore}-stop"


def run_on_worker(spec: RunSpec, part: Partition, semaphore: Any, worker: Any) -> PartitionOutcome:
    """Rows of a partition through the engine in an event loop of this thread's own."""
    loop = worker.loop.asyncio_loop  # tornado.platform.asyncio.AsyncIOLoop
    outcome = asyncio.run(_run(spec, part, semaphore, loop, worker.scheduler))
    outcome.worker = worker.address
    return outcome


async def _stop_when_asked(spec: RunSpec, engine: Engine, scheduler: Any, worker_loop: asyncio.AbstractEventLoop
                           ) -> None:
    """Stop the partition's engine when the run's stop signal is set (the wait runs on the worker's loop,
    where its connection to the scheduler lives)."""
    asked = asyncio.run_coroutine_threadsafe(scheduler.event_wait(name=stop_event(spec), timeout=None), worker_loop)
    try:
        if await asyncio.wrap_future(asked):
            engine.stop()
    finally:
        asked.cancel()


async def _run(spec: RunSpec, part: Partition, semaphore: Any, worker_loop: asyncio.AbstractEventLoop,
               scheduler: Any = None) -> PartitionOutcome:
    from batchgrid.core.pipeline.file import Pipeline

    from .cluster_slots import ClusterSlots
    from .engine import RetryPolicy

    pipeline = Pipeline.from_dict(spec.pipeline)
    resources = RunResources(base_dir=Path(spec.base_dir), trusted=spec.trusted,
                             providers=shared_limits(pipeline.providers, part.workers), settings=dict(spec.settings),
                             data_dir=Path(spec.data_dir) if spec.data_dir else None, use_cache=spec.use_cache)
    engine = PartitionEngine(pipeline.steps, Table(part.columns, part.values), max_concurrency=spec.max_concurrency,
                             retry_policy=RetryPolicy(**spec.retry), resources=resources)
    slots = ClusterSlots(semaphore, worker_loop, spec.max_concurrency, share=-(-spec.max_concurrency // part.workers))
    engine.slots = slots  # type: ignore[assignment]  # RowContext holds `engine.slots` while on the wire
    outcome = PartitionOutcome(part.number, [])
    watch = asyncio.ensure_future(_stop_when_asked(spec, engine, scheduler, worker_loop)) if scheduler else None
    try:
        await engine.run()
    finally:
        if watch is not None:
            watch.cancel()
        await slots.aclose()
    outcome.reason, outcome.message = engine.outcome or ("finished", "")
    outcome.paused, outcome.kind = engine.paused_for
    for result in engine.results:
        if result is not None and result.status in (ev.DONE, ev.ERROR):
            result.index = part.indexes[result.index]
            outcome.results.append(result)
    p = engine.progress
    outcome.totals = {name: getattr(p, name) for name in TOTALS}
    outcome.peak_leases = slots.peak
    outcome.lease_asks, outcome.lease_seconds, outcome.lease_grants = slots.asks, slots.ask_seconds, slots.grants
    return outcome
