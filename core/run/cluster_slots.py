"""One cap on calls in flight for the whole cluster: leases of a `distributed.Semaphore`.

Why this is ours: Dask keeps the count (the semaphore lives on the scheduler, and a dead
worker's leases expire after `distributed.scheduler.locks.lease-timeout`, 30 s by default); we
only decide when a lease is asked for and given back. A partition's engine (cluster_task.py)
holds its calls to the run's max concurrency with `engine.slots` (an asyncio.Semaphore that
`RowContext.call` holds while a request is on the wire); there it gets a `ClusterSlots`, which
also holds one of the cluster's leases for the time on the wire.

A scheduler round trip per call would cost more than a fast call: a lease given back by a call
goes straight to another call of the same partition waiting for one. Up to its share of the cap
(max concurrency / the workers when the partition was sent) a partition keeps its leases while it
has calls waiting: in a steady run each lease is asked for once per partition, not once per call.
Leases above its share (taken while other workers did not want them) go back to the scheduler
after `HOLD` seconds, where another worker may be waiting. A lease nobody here waits for goes back
at once: an idle partition never sits on the cluster's budget.

Lives on a worker, inside a task's own event loop; the semaphore's messages go through the
worker's loop (another thread), so every call to it is handed over with
`asyncio.run_coroutine_threadsafe`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from typing import Any

HOLD = 0.5  # seconds a lease may serve this partition's calls before it goes back to the scheduler
ASK = 0.5   # seconds one request for a lease waits at the scheduler before it is made again


class ClusterSlots:
    """`async with slots:` one of `local` slots of this partition and one lease of the cluster's."""

    def __init__(self, semaphore: Any, worker_loop: asyncio.AbstractEventLoop, local: int, share: int | None = None):
        self.semaphore = semaphore  # distributed.Semaphore, bound to this worker
        self.worker_loop = worker_loop
        self.local = asyncio.Semaphore(local)
        self.share = local if share is None else max(1, share)  # leases kept while busy (above: HOLD seconds)
        self.asks = 0                                   # requests made at the scheduler (round trips)
        self.ask_seconds = 0.0                          # their time, summed (granted or not)
        self.grants = 0                                 # of them, those that brought a lease
        self.held: deque[tuple[str, float]] = deque()  # our leases: (id, when it was granted)
        self.busy = 0                                   # of them, in use by a call
        self.asking = 0                                 # requests for a lease at the scheduler
        self.waiters: deque[asyncio.Future] = deque()
        self.peak = 0                                   # the most leases this partition used at once
        self._closing = False
        self._tasks: set[asyncio.Future] = set()
        self._releases: list[Any] = []  # concurrent futures of leases being given back

    async def __aenter__(self) -> ClusterSlots:
        await self.local.acquire()
        try:
            await self._lease()
        except BaseException:
            self.local.release()
            raise
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.busy -= 1
        self.local.release()
        if len(self.held) > max(self.share, self.busy) and time.monotonic() - self.held[0][1] > HOLD:
            self._give_back(1)  # above our share, served long enough: back to the scheduler, for whoever waits
        self._assign()

    async def _lease(self) -> None:
        if len(self.held) > self.busy:  # one of ours is free
            self._use()
            return
        future = asyncio.get_running_loop().create_future()
        self.waiters.append(future)
        self._ask()
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.busy -= 1  # handed a lease we will not use: pass it on
                self._assign()
            else:
                self.waiters.remove(future)
            raise

    def _use(self) -> None:
        self.busy += 1
        self.peak = max(self.peak, self.busy)

    def _ask(self) -> None:
        """One more request at the scheduler while fewer are out than calls waiting."""
        if self.asking >= len(self.waiters):
            return
        self.asking += 1
        task = asyncio.ensure_future(self._acquire())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _acquire(self) -> None:
        """Ask until a lease comes or nobody here waits any more. Never cancelled: a request given
        up while the scheduler still holds it would be granted to nobody (and kept from every worker
        until its lease timed out), so each asks for at most ASK seconds and is then asked again."""
        try:
            while self.waiters and not self._closing:
                self.asks += 1
                t = time.perf_counter()
                lease = await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(
                    _try_acquire(self.semaphore), self.worker_loop))
                self.ask_seconds += time.perf_counter() - t
                if lease is not None:
                    self.grants += 1
                    self.held.append((lease, time.monotonic()))
                    break
        finally:
            self.asking -= 1
        self._assign()
        self._ask()  # still waiting calls (a lease given back on time)

    def _assign(self) -> None:
        while self.waiters and len(self.held) > self.busy:
            future = self.waiters.popleft()
            if not future.done():
                self._use()
                future.set_result(None)
        spare = len(self.held) - self.busy
        if spare > 0 and (not self.waiters or self._closing):
            self._give_back(spare)  # nobody here needs them: another worker may

    def _give_back(self, count: int) -> None:
        for _ in range(count):
            lease, _since = self.held.popleft()
            self._releases = [f for f in self._releases if not f.done()]
            self._releases.append(asyncio.run_coroutine_threadsafe(_release(self.semaphore, lease), self.worker_loop))

    async def aclose(self) -> None:
        """The partition is over: every lease goes back (requests still out end within ASK seconds)."""
        self._closing = True
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.busy = 0
        self._assign()
        await asyncio.gather(*(asyncio.wrap_future(f) for f in self._releases), return_exceptions=True)


async def _try_acquire(semaphore: Any) -> str | None:
    """One lease within ASK seconds, or None (on the worker's loop); the semaphore refreshes it while held."""
    await semaphore  # registered (idempotent)
    lease = uuid.uuid4().hex
    if not await semaphore.scheduler.semaphore_acquire(name=semaphore.name, timeout=ASK, lease_id=lease):
        return None
    semaphore._leases.append(lease)
    return lease


async def release_all(semaphore: Any) -> None:
    """The task is over: whatever lease is still listed goes back, and the refreshing stops."""
    for lease in list(semaphore._leases):
        await _release(semaphore, lease)
    callback = getattr(semaphore, "refresh_callback", None)
    if callback is not None:
        callback.stop()


async def _release(semaphore: Any, lease: str) -> None:
    """Give one lease back (on the worker's loop, where the semaphore keeps its list)."""
    try:
        semaphore._leases.remove(lease)
    except ValueError:
        pass
    await semaphore._release(lease)
