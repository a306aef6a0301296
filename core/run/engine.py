"""The batch run: every row through the whole pipeline, concurrently, in input order.

How it keeps the contract (docs/architecture.md, "Engine contract"):
- A fixed pool of `max_concurrency` workers pulls row numbers from one shared lazy
  iterator (a queue of depth zero): rows in flight never exceed the knob, memory stays
  flat however many rows there are, and no task is created per row.
- Each worker takes a row through every step before taking the next one, so rows are
  pipelined with no barrier between steps.
- External calls (HTTP, models) go through `RowContext.call` (contexts.py), which holds one of
  `max_concurrency` slots only while a request is on the wire. Branches share the slots,
  so a 3-branch step never turns N rows into 3N requests; retries wait outside a slot.
- Results are stored by row number; a row's failure is caught in that row. Rows failing with
  the same error again and again pause the run, saying it once (`_row_failed_like`).
- Retries and waits follow `RetryPolicy`: transient errors spend attempts, 429s wait the
  server's word, a server that stopped answering is waited for with one probe at a time
  (`server_turn`), and waits too long for the run pause it, saying why.
- The steps it is given are declarations. The run first binds them (`core/steps/plan.py`):
  loaded files, compiled code and knowledge vectors live on the bound plan, never on the
  steps, so editing the pipeline during a run changes nothing in it (a `Job` hands the
  engine its own snapshot of the pipeline as well).
- Stop cancels the workers, or the binding still going on: whatever they await (an HTTP
  request, a file read in a worker thread, a wait for a server) is given up at once. Pause
  lets rows in flight finish and starts no new ones.
- Rows waiting in an embedding batcher's gathering batch are not rows at work (`Lending`): while
  some are, workers take more rows, up to the batch size beyond `max_concurrency`, so a batch
  fills from queued rows (1,000 rows, 4 requests of 256) while the requests still take the slots.
- A worker that only runs cheap steps yields to the loop every few milliseconds, so a
  window on the same loop stays responsive.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from batchgrid.core.steps.base import Step, all_writes
from batchgrid.core.steps.context import RunResources
from batchgrid.core.steps.plan import PlannedStep, bind_steps
from batchgrid.core.steps.tree import StepPath
from batchgrid.core.table.columnar import Table
from batchgrid.core.util import template as tpl
from batchgrid.core.util.errors import BatchgridError
from batchgrid.core.util.patterns import NeedsWorkerThread

from . import batch_mode
from . import events as ev
from .budget import BudgetGuard
from .contexts import RowContext, SharedContext, wait_words

log = logging.getLogger(__name__)

YIELD_EVERY = 0.005  # seconds a worker may run cheap steps before letting the loop breathe
DEFAULT_MAX_CONCURRENCY = 8


@dataclass
class RetryPolicy:
    """When a row's call is tried again (contexts.py, `RowContext.call`).

    - Transient errors (5xx, timeouts, a broken connection): exponential backoff with jitter,
      at most `max_attempts` attempts; a server's Retry-After wins over our guess.
    - Rate limits (429): the server's Retry-After (or our backoff when it gives none); they spend
      none of the row's attempts. A rate-limited row gives up only when the run has made no
      progress for `rate_limit_patience` seconds.
    - A server's suggested wait is honoured up to `max_server_wait`; above it the run pauses,
      saying what the server asked for.
    - A server that answered in this run and now refuses connections (ServerUnreachable, a
      restart) is waited for: one probe at a time, `base_delay` doubling up to
      `server_retry_cap` apart; after `server_patience` seconds of silence the run pauses.
    """

    max_attempts: int = 4
    base_delay: float = 1.0
    max_delay: float = 60.0
    max_server_wait: float = 120.0
    server_retry_cap: float = 8.0
    server_patience: float = 300.0
    rate_limit_patience: float = 300.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        backoff = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        wait = backoff * random.uniform(0.5, 1.0)  # jitter: rows that failed together don't retry together
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.max_server_wait) * random.uniform(1.0, 1.1))
        return wait

    def rate_limit_delay(self, waits: int, retry_after: float | None = None) -> float:
        """Seconds a row waits after its `waits`-th 429: what the server asked for (a little more,
        so rows told the same do not come back together), else our backoff."""
        if retry_after is not None:
            return min(retry_after, self.max_server_wait) * random.uniform(1.0, 1.1)
        return min(self.max_delay, self.base_delay * (2 ** (waits - 1))) * random.uniform(0.5, 1.0)

    def probe_delay(self, probes: int) -> float:
        """Seconds before probe number `probes` (1-based) of a server that refuses connections."""
        return min(self.server_retry_cap, self.base_delay * (2 ** (probes - 1)))


FIRST_ROWS = 3  # when the first rows of a run all fail with the same error, the run pauses and says it
DEFAULT_PAUSE_AFTER_FAILURES = 20


class ServerWait:
    """A server that answered in this run and now refuses connections (a restart). Rows that meet
    it wait together: one of them at a time probes it (holding `turn`), the backoff capped by
    the retry policy; the first answer ends the wait for all."""

    def __init__(self, url: str):
        self.url = url
        self.since = time.monotonic()  # about when it last answered
        self.probes = 0
        self.over = False
        self.turn = asyncio.Lock()


@dataclass
class Progress:
    total: int = 0        # rows in the table
    selected: int = 0     # rows this run tries
    done: int = 0
    failed: int = 0
    cancelled: int = 0
    running: int = 0
    started_at: float = 0.0   # time.time()
    finished_at: float = 0.0
    clock_start: float = 0.0  # time.perf_counter() at the start
    clock_end: float = 0.0    # and at the end (0 while running)
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float = 0.0
    cached: int = 0
    retries: int = 0
    # A server the run waits for (one line for the front ends: "waiting for the server at ..."),
    # and when it is tried next (time.perf_counter()); "" when the run waits for nothing.
    waiting: str = ""
    waiting_until: float = 0.0
    # Batch mode: rows waiting at a step in batch mode, and how its batches are going at the provider
    # ("batch submitted 2 h ago: 41,200 of 50,000 done at the provider"; "" when none is waited for).
    batched: int = 0
    batch: str = ""
    # Of the totals above, what work shared by every row cost (a knowledge base embedded
    # once): the run's, in no row's result.
    shared_tokens_in: int = 0
    shared_tokens_out: int = 0
    shared_cost: float = 0.0

    @property
    def elapsed(self) -> float:
        if not self.clock_start:
            return 0.0
        return (self.clock_end or time.perf_counter()) - self.clock_start

    @property
    def finished(self) -> int:
        return self.done + self.failed + self.cancelled

    @property
    def queued(self) -> int:
        return max(0, self.selected - self.finished - self.running - self.batched)

    @property
    def rows_per_second(self) -> float:
        return (self.done + self.failed) / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        rate = self.rows_per_second
        left = self.selected - self.finished
        return left / rate if rate > 0 else None


class RowState:
    """A row between its steps: what it holds so far. Batch mode parks rows in it at a step in batch
    mode until every row has arrived (core/run/batch_mode.py)."""

    __slots__ = ("ctx", "index", "row", "t0", "trace")

    def __init__(self, index: int, row: dict[str, Any], ctx: RowContext, trace: list[ev.StepTrace], t0: float):
        self.index = index
        self.row = row
        self.ctx = ctx
        self.trace = trace
        self.t0 = t0


class Lending:
    """Rows parked in an embedding batcher (core/providers/batcher.py) while its batch gathers: they wait
    for rows to join them, not for a server, so their workers are free. While `extra` rows are parked,
    `extra` more rows than `max_concurrency` may be in flight: a row parking starts one more worker when
    there is room, and a worker whose row ends goes on only while rows at work stay within
    `max_concurrency` (rows in flight <= max_concurrency + batch size). A batch on the wire holds one
    slot and its rows count as rows at work again (memory stays flat)."""

    __slots__ = ("crashed", "extra", "parked", "room", "starting", "tasks", "todo")

    def __init__(self) -> None:
        self.parked = 0       # rows parked in a gathering batch
        self.room = 0         # the largest batch size parked rows asked room for
        self.extra = 0        # min(parked, room): rows allowed beyond max_concurrency
        self.starting = 0     # workers started for parked rows that have not taken a row yet
        self.tasks: set[asyncio.Task] = set()
        self.todo: Any = None  # the run's row numbers, while rows run (not while binding, nor in batch mode)
        self.crashed: list[BaseException] = []


class StepFailed(Exception):
    """Internal: carries the failing step's label up to the row."""

    def __init__(self, label: str, error: BaseException):
        super().__init__(str(error))
        self.label = label
        self.error = error


def describe_error(exc: BaseException) -> tuple[str, str]:
    """(type, message) for the results table: words for ours, the class name for the rest."""
    if isinstance(exc, BatchgridError):
        return type(exc).__name__, str(exc) or type(exc).__name__
    message = str(exc) or repr(exc)
    return type(exc).__name__, message


class Engine:
    """Runs one pipeline over one table. Create, subscribe, `await run()`; `stop()` any time."""

    def __init__(
        self,
        steps: Sequence[Step],
        rows: Table,
        *,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        retry_policy: RetryPolicy | None = None,
        resources: RunResources | None = None,
        only: Iterable[int] | None = None,
        previous: Mapping[int, ev.RowResult] | None = None,
        batches: batch_mode.BatchBook | None = None,
    ):
        if max_concurrency < 1:
            raise ValueError("max concurrency must be at least 1")
        self.steps = [s for s in steps if s.enabled]
        self.rows = rows
        self.max_concurrency = int(max_concurrency)
        self.retry_policy = retry_policy or RetryPolicy()
        self.resources = resources or RunResources()
        self.selection = list(range(len(rows))) if only is None else sorted(set(only))
        # Results by row number; rows not run in this run keep what an earlier run found.
        self.results: list[ev.RowResult | None] = [None] * len(rows)
        for i, r in (previous or {}).items():
            if 0 <= i < len(rows):
                self.results[i] = r
        self.progress = Progress(total=len(rows), selected=len(self.selection))
        self.listeners: list[ev.Listener] = []
        self.slots = asyncio.Semaphore(self.max_concurrency)
        # A provider's own window of requests in flight never goes above the run's slots.
        self.resources.models.ceiling = self.max_concurrency
        # Pauses the run if the pipeline sets a budget (dollars) and the cost would pass it.
        budget = self.resources.settings.get("budget")
        self.budget = BudgetGuard(budget, self.progress, self.pause) if budget is not None else None
        self._steps = list(steps)  # all of them: a step's number and path are its place in this list
        self._plan: list[PlannedStep] = []  # bound when the run starts
        self._binding: asyncio.Future | None = None
        self._output_columns = [c for s in self.steps for c in all_writes(s)]
        self._unpaused = asyncio.Event()
        self._unpaused.set()
        self._stopping = False
        self._workers: list[asyncio.Task] = []
        self._running = False
        self.outcome: tuple[str, str] | None = None  # (reason, message) once the run has ended
        self._slice_start = 0.0
        self._slice_used = False
        # Fail fast: consecutive rows failing with the same error pause the run (0: never).
        setting = self.resources.settings.get("pause_after_failures")
        self.pause_after_failures = DEFAULT_PAUSE_AFTER_FAILURES if setting is None else int(setting)
        self._streak_error: tuple[str, str] | None = None  # (step, error) of the latest failures
        self._streak = 0
        self._accepted_errors: set[tuple[str, str]] = set()  # the user resumed anyway after these
        self._server_waits: dict[str, ServerWait] = {}
        self.last_progress = time.monotonic()  # the latest call that succeeded (or row that ended)
        # Batch mode's state, one attribute: past 30 attributes an instance's dict loses CPython's
        # shared keys and every `self.x` of the hot path gets slower (tests/bench/bench_engine.py).
        self.batch = batch_mode.RunBatches(batches if batches is not None else batch_mode.MemoryBook())
        self.lending = Lending()

    # ---- control -----------------------------------------------------------------
    def subscribe(self, listener: ev.Listener) -> None:
        self.listeners.append(listener)

    def publish(self, event: object) -> None:
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:  # a broken front end must not break the run
                log.exception("event listener failed on %r", event)

    def stop(self) -> None:
        """Cancel everything in flight now; finished rows stay as they are."""
        self._stopping = True
        self._unpaused.set()
        if self._binding is not None:
            self._binding.cancel()  # a file read in a worker thread is left to end on its own
        for task in self._workers:
            task.cancel()
        for task in self.lending.tasks:
            task.cancel()

    def cancel_batch(self) -> None:
        """Cancel at the provider the batches of the step in batch mode (now, or when it submits them);
        the rows they finished are collected, the others fail saying the batch was cancelled."""
        self.batch.cancel = True
        if self.batch.stage is not None:
            self.batch.stage.cancel()

    @property
    def batch_pending(self) -> bool:
        """A step in batch mode is waiting for its batches at the provider."""
        return self.batch.stage is not None and self.batch.stage.submitted

    @property
    def left_at_provider(self) -> list[str]:
        """What the run left at the provider when it ended (stopped while a batch waited): a line per step."""
        return self.batch.left_at_provider

    def pause(self, reason: str = "", kind: str = "") -> None:
        """Let rows in flight finish; start no new row until `resume()`. `reason`: why the run
        paused itself, one line (see events.RunPaused for `kind`)."""
        if self._unpaused.is_set() and not self._stopping:
            self._unpaused.clear()
            self.publish(ev.RunPaused(reason, kind))

    def resume(self) -> None:
        if not self._unpaused.is_set():
            self._unpaused.set()
            self.publish(ev.RunResumed())

    @property
    def paused(self) -> bool:
        return not self._unpaused.is_set()

    async def until_resumed(self) -> None:
        """Wait while the run is paused; raises CancelledError if it is stopped meanwhile."""
        await self._unpaused.wait()
        if self._stopping:
            raise asyncio.CancelledError

    # ---- waiting for a server that stopped answering ---------------------------------------
    async def server_turn(self, url: str) -> ServerWait | None:
        """A row's call met `url` refusing connections: wait for this row's turn to probe it.
        Returns the wait with its turn held (the row probes, then calls `server_answered` or
        gives the turn back), or None if the server answered meanwhile (retry at once)."""
        wait = self._server_waits.get(url)
        if wait is None:
            wait = self._server_waits[url] = ServerWait(url)
        await wait.turn.acquire()
        try:
            if wait.over:
                wait.turn.release()
                return None
            policy = self.retry_policy
            silent = time.monotonic() - wait.since
            if silent >= policy.server_patience:
                self.pause(f"the server at {url} has not answered for {wait_words(policy.server_patience)}",
                           "server")
                await self.until_resumed()
                wait.since = time.monotonic()
                wait.probes = 0
                silent = 0.0
            wait.probes += 1
            delay = min(policy.probe_delay(wait.probes), max(0.0, policy.server_patience - silent))
            p = self.progress
            p.waiting = f"waiting for the server at {url}"
            p.waiting_until = time.perf_counter() + delay
            self.publish(ev.RunWaiting(url, delay, silent))
            await asyncio.sleep(delay)
            return wait
        except BaseException:
            wait.turn.release()
            raise

    def server_answered(self, wait: ServerWait) -> None:
        """The probe got an answer: the wait is over for every row."""
        wait.over = True
        if self._server_waits.get(wait.url) is wait:
            del self._server_waits[wait.url]
        if not self._server_waits:
            self.progress.waiting = ""
        if wait.turn.locked():
            wait.turn.release()
        self.publish(ev.ServerBack(wait.url))

    # ---- fail fast -------------------------------------------------------------------------
    def _row_failed_like(self, result: ev.RowResult) -> None:
        """Rows failing with the same error, again and again, pause the run: said once."""
        error = (result.failed_step, result.error)
        if error == self._streak_error:
            self._streak += 1
        else:
            self._streak_error, self._streak = error, 1
        n = self.pause_after_failures
        if not n or error in self._accepted_errors or self.paused:
            return
        if self.progress.done == 0 and self._streak == min(FIRST_ROWS, n) < self.progress.selected:
            reason = f"{result.error} (the first {self._streak} rows all failed with this error)"
        elif self._streak == n:
            reason = f"{n} rows in a row failed with the same error: {result.error}"
        else:
            return
        self._accepted_errors.add(error)  # resumed: not asked again for this error
        self.pause(reason, "failures")

    @property
    def running(self) -> bool:
        return self._running

    # ---- running -----------------------------------------------------------------
    async def run(self) -> Progress:
        # `${NAME}` outside header values expands only in a run the user trusts: this run's rows,
        # bindings and worker threads inherit the answer (core/util/template.py).
        with tpl.env_trusted(self.resources.trusted):
            return await self._run()

    async def _run(self) -> Progress:
        if self._running:
            raise RuntimeError("this run is already running")
        self._running = True
        p = self.progress
        p.started_at = time.time()
        p.clock_start = self._slice_start = time.perf_counter()
        reason, message = "finished", ""
        try:
            self.publish(ev.RunStarted(len(self.rows), len(self.selection)))
            self._plan = await self._bind()
            stages = batch_mode.stages(self._plan)
            if len(stages) > 1 and not self._stopping:
                await batch_mode.check_support(self, self._plan)
            crashed = [] if self._stopping else await (self._run_stages(stages) if len(stages) > 1
                                                        else self._run_rows())
            if self._stopping:
                reason = "stopped"
            elif crashed:  # a bug in the engine itself, never a row's failure
                reason, message = "failed", describe_error(crashed[0])[1]
        except asyncio.CancelledError:
            self.stop()
            reason = "stopped"
            raise
        except BatchgridError as exc:  # a step could not start (missing lookup file, untrusted code...)
            reason, message = "failed", str(exc)
        except Exception as exc:  # a bug: the front end still hears of it, in one line
            log.exception("the run failed")
            reason, message = "failed", "{}: {}".format(*describe_error(exc))
        finally:
            p.clock_end = time.perf_counter()
            p.finished_at = time.time()
            p.running = 0
            self._running = False
            self.resources.shared = None
            await self.resources.aclose()
            self.outcome = (reason, message)
            self.publish(ev.RunFinished(reason, p, message))
        return p

    async def _bind(self) -> list[PlannedStep]:
        """Bind the steps for this run (load files, compile code, embed knowledge bases).
        Done in a task that `stop()` cancels: a stop never waits for a preparation."""
        self.resources.shared = SharedContext(self)
        self._binding = asyncio.ensure_future(bind_steps(self._steps, self.resources))
        if self._stopping:  # stop() before the run began
            self._binding.cancel()
        try:
            return await self._binding
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if self._stopping and not (task is not None and task.cancelling()):
                return []  # stopped while binding: no row runs
            raise
        finally:
            self._binding = None

    async def _run_rows(self) -> list[BaseException]:
        """Every selected row through the plan, by a fixed pool of workers (and those lent while rows
        are parked in a batcher: `park`); returns the errors that crashed a worker (a bug in the engine)."""
        todo = iter(self.selection)
        lend = self.lending
        lend.todo = todo
        count = min(self.max_concurrency, len(self.selection))
        self._workers = [asyncio.ensure_future(self._worker(todo)) for _ in range(count)]
        if self._stopping:  # stop() while the workers were being created
            for task in self._workers:
                task.cancel()
        try:
            results = await asyncio.gather(*self._workers, return_exceptions=True)
            while lend.tasks:
                await asyncio.gather(*list(lend.tasks), return_exceptions=True)  # their crashes: `lend.crashed`
        finally:
            lend.todo = None
        return [r for r in [*results, *lend.crashed]
                if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError)]

    async def _worker(self, todo) -> None:
        lend = self.lending
        p = self.progress
        most = self.max_concurrency
        for index in todo:
            if not self._unpaused.is_set():
                await self._unpaused.wait()
            if self._stopping:
                return
            await self._run_row(index)
            await self._breathe()
            if p.running >= most + lend.extra:
                return  # rows at work are max_concurrency without this worker: it was lent (`park`)

    # ---- rows parked in an embedding batcher: workers lent meanwhile (`Lending`) --------------------
    def park(self, room: int) -> None:
        """A row waits in a batch still gathering (of up to `room` texts): its worker is not at work, so
        one more row may start, if there are rows to start and room for them."""
        lend = self.lending
        lend.parked += 1
        if room > lend.room:
            lend.room = room
        lend.extra = min(lend.parked, lend.room)
        if (lend.todo is not None and not self._stopping and self._unpaused.is_set()
                and self.progress.running + lend.starting < self.max_concurrency + lend.extra):
            lend.starting += 1
            task = asyncio.ensure_future(self._lent_worker(lend.todo))
            lend.tasks.add(task)
            task.add_done_callback(self._lent_worker_done)

    def unpark(self) -> None:
        """A parked row's batch went (or the row was cancelled): it counts as a row at work again."""
        lend = self.lending
        lend.parked -= 1
        lend.extra = min(lend.parked, lend.room)

    async def _lent_worker(self, todo) -> None:
        self.lending.starting -= 1
        if self.progress.running < self.max_concurrency + self.lending.extra:
            await self._worker(todo)

    def _lent_worker_done(self, task: asyncio.Task) -> None:
        lend = self.lending
        lend.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            lend.crashed.append(task.exception())  # type: ignore[arg-type]

    # ---- batch mode: the plan in stages, rows parked at each step in batch mode ------------------
    async def _run_stages(self, stages) -> list[BaseException]:
        """Rows through the steps before a step in batch mode, pipelined; there they wait for every
        row; its batches go to the provider; the rows answered go on to the next stage."""
        crashed: list[BaseException] = []
        states: list[RowState] | None = None
        try:
            for plan, batch_step in stages:
                parked: list[RowState] | None = [] if batch_step is not None else None
                crashed += await self._run_phase(plan, states, parked)
                if parked is None or self._stopping or crashed:
                    break
                parked.sort(key=lambda s: s.index)
                states = await self._run_batch(batch_step, parked)
                if states is None:
                    break
        finally:
            stage = self.batch.stage
            left = stage is not None and stage.submitted
            if left and stage is not None:
                self.left_at_provider.append(f"{stage.planned.label}: {stage.last_line or 'a batch'}")
            self.batch.stage = None
            for state in sorted(self.batch.parked.values(), key=lambda s: s.index):  # stopped while waiting
                self.progress.batched -= 1
                self._finish_row(state, ev.CANCELLED, "stopped while its batch is at the provider: resume the run "
                                 "to collect it" if left else "stopped before this row finished")
            self.batch.parked.clear()
        return crashed

    async def _run_phase(self, plan, states: list[RowState] | None, parked: list[RowState] | None
                         ) -> list[BaseException]:
        todo: Iterable[Any] = iter(self.selection) if states is None else iter(states)
        count = min(self.max_concurrency, len(self.selection) if states is None else len(states))
        self._workers = [asyncio.ensure_future(self._phase_worker(todo, plan, parked)) for _ in range(count)]
        if self._stopping:
            for task in self._workers:
                task.cancel()
        results = await asyncio.gather(*self._workers, return_exceptions=True)
        return [r for r in results if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError)]

    async def _phase_worker(self, todo, plan, parked: list[RowState] | None) -> None:
        for item in todo:
            if not self._unpaused.is_set():
                await self._unpaused.wait()
            if self._stopping:
                return
            await self._run_part(item, plan, parked)
            await self._breathe()

    async def _run_part(self, item: int | RowState, plan, parked: list[RowState] | None) -> None:
        """A row through one stage's steps: then parked for the next step in batch mode, or finished."""
        p = self.progress
        if isinstance(item, RowState):
            state = item
            self.row_left_batch(state)
            p.batched -= 1
        else:
            state = RowState(item, self.rows.row(item), RowContext(self, item), [], time.perf_counter())
            state.ctx.trace = state.trace
            if self.listeners:
                self.publish(ev.RowStarted(item))
        p.running += 1
        status = ev.DONE
        error = error_type = failed_step = ""
        try:
            await self._run_steps(plan, state.row, state.ctx, state.trace)
        except StepFailed as failure:
            status = ev.ERROR
            error_type, error = describe_error(failure.error)
            failed_step = failure.label
        except asyncio.CancelledError:
            status = ev.CANCELLED
            error = "stopped before this row finished"
            raise
        finally:
            p.running -= 1
            if status == ev.DONE and parked is not None:
                parked.append(state)
                self.batch.parked[state.index] = state
                p.batched += 1
            else:
                self._finish_row(state, status, error, error_type, failed_step)

    def row_left_batch(self, state: RowState) -> None:
        self.batch.parked.pop(state.index, None)

    async def _run_batch(self, planned: PlannedStep, parked: list[RowState]) -> list[RowState] | None:
        """The step in batch mode over the parked rows, as a task that stop() cancels (which ends only
        the wait: the batches go on at the provider). None when stopped."""
        stage = self.batch.stage = batch_mode.BatchStage(self, planned, self.batch.book)
        if self.batch.cancel:
            stage.cancel()
        task = asyncio.ensure_future(stage.run(parked))
        self._workers = [task]
        if self._stopping:
            task.cancel()
        (outcome,) = await asyncio.gather(task, return_exceptions=True)
        if isinstance(outcome, asyncio.CancelledError):
            return None
        if isinstance(outcome, BaseException):
            raise outcome
        self.batch.stage = None
        return outcome

    async def _breathe(self) -> None:
        """Give the loop a turn every YIELD_EVERY seconds of cheap rows.

        The time slice is shared by all workers: once it is used up, every worker yields
        until the loop has had its turn (else N workers would hold it N slices in a row).
        """
        if self._slice_used or time.perf_counter() - self._slice_start > YIELD_EVERY:
            if not self._slice_used:
                self._slice_used = True
                asyncio.get_running_loop().call_soon(self._new_slice)
            await asyncio.sleep(0)

    def _new_slice(self) -> None:
        self._slice_used = False
        self._slice_start = time.perf_counter()

    async def _run_row(self, index: int) -> None:
        p = self.progress
        p.running += 1
        if self.listeners:
            self.publish(ev.RowStarted(index))
        row = self.rows.row(index)
        ctx = RowContext(self, index)
        trace: list[ev.StepTrace] = []
        ctx.trace = trace
        t0 = time.perf_counter()
        status = ev.DONE
        error = error_type = failed_step = ""
        try:
            await self._run_steps(self._plan, row, ctx, trace)
        except StepFailed as failure:
            status = ev.ERROR
            error_type, error = describe_error(failure.error)
            failed_step = failure.label
        except asyncio.CancelledError:
            status = ev.CANCELLED
            error = "stopped before this row finished"
            raise
        finally:
            p.running -= 1
            # _finish, inlined: every row of a run without batch mode ends here (tests/bench/bench_engine.py)
            outputs = {c: row[c] for c in self._output_columns if c in row}
            result = ev.RowResult(index, status, outputs, error, error_type, failed_step, ctx.attempts,
                                  time.perf_counter() - t0, ctx.tokens_in, ctx.tokens_out, ctx.cost,
                                  ctx.cached, trace)
            self.results[index] = result
            event: ev.RowFinished
            if status == ev.DONE:
                p.done += 1
                self._streak_error, self._streak = None, 0
                self.last_progress = time.monotonic()
                event = ev.RowDone(index, result)
            elif status == ev.ERROR:
                p.failed += 1
                event = ev.RowFailed(index, result)
            else:
                p.cancelled += 1
                event = ev.RowCancelled(index, result)
            if self.budget is not None and status != ev.CANCELLED:
                self.budget.row_finished(result.cost)
            self.publish(event)
            if status == ev.ERROR:
                self._row_failed_like(result)

    def _finish_row(self, state: RowState, status: str, error: str = "", error_type: str = "", failed_step: str = "",
                    *, fail_fast: bool = True) -> None:
        """A parked row (batch mode) reached its end."""
        self._finish(state.index, state.row, state.ctx, state.trace, state.t0, status, error, error_type, failed_step,
                     fail_fast)

    def _finish(self, index: int, row: dict[str, Any], ctx: RowContext, trace: list[ev.StepTrace], t0: float,
                status: str, error: str, error_type: str, failed_step: str, fail_fast: bool = True) -> None:
        """A row reached its end: its result stored, counted and published."""
        p = self.progress
        outputs = {c: row[c] for c in self._output_columns if c in row}
        result = ev.RowResult(index, status, outputs, error, error_type, failed_step, ctx.attempts,
                              time.perf_counter() - t0, ctx.tokens_in, ctx.tokens_out, ctx.cost,
                              ctx.cached, trace)
        self.results[index] = result
        event: ev.RowFinished
        if status == ev.DONE:
            p.done += 1
            self._streak_error, self._streak = None, 0
            self.last_progress = time.monotonic()
            event = ev.RowDone(index, result)
        elif status == ev.ERROR:
            p.failed += 1
            event = ev.RowFailed(index, result)
        else:
            p.cancelled += 1
            event = ev.RowCancelled(index, result)
        if self.budget is not None and status != ev.CANCELLED:
            self.budget.row_finished(result.cost)
        self.publish(event)
        if status == ev.ERROR and fail_fast:
            self._row_failed_like(result)

    async def _run_steps(self, plan: Sequence[PlannedStep], row: dict[str, Any], ctx: RowContext,
                         trace: list[ev.StepTrace] | None, parent: str = "",
                         parent_path: StepPath = ()) -> dict[str, Any]:
        """Run bound steps in order on `row`, merging each step's outputs into it. A branch's
        plan (of a parallel step) runs under its `parent` step's label and path."""
        produced: dict[str, Any] = {}
        for path, label, is_async, call, _ in plan:
            if parent:
                label = f"{parent} › {label}"
                path = parent_path + path
            t = time.perf_counter()
            attempts_before = ctx.attempts
            mark = len(trace) if trace is not None else 0  # a parallel step's entry goes before its branches'
            try:
                if is_async:
                    ctx.step = label
                    ctx.path = path
                    ctx.details = None
                    out = await call(row, ctx)
                else:
                    try:
                        out = call(row)
                    except NeedsWorkerThread:  # a user's pattern outran its slice of the loop
                        out = await asyncio.to_thread(call, row)
            except StepFailed as failure:  # a step of a branch of this (parallel) step failed
                if trace is not None:
                    trace.insert(mark, ev.StepTrace(label, time.perf_counter() - t, ctx.attempts - attempts_before + 1,
                                                    describe_error(failure.error)[1], None, path))
                raise
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the row fails here; the run carries on
                if trace is not None:
                    details = ctx.details if is_async else None
                    raw = getattr(exc, "raw", None)
                    if raw is not None:
                        details = {**(details or {}), "raw": raw}
                    trace.insert(mark, ev.StepTrace(label, time.perf_counter() - t, ctx.attempts - attempts_before + 1,
                                                    describe_error(exc)[1], details, path))
                raise StepFailed(label, exc) from exc
            if out:
                row.update(out)
                produced.update(out)
            if trace is not None:
                trace.insert(mark, ev.StepTrace(label, time.perf_counter() - t, ctx.attempts - attempts_before + 1,
                                                "", ctx.details if is_async else None, path))
        return produced
