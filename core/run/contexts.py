"""The contexts the engine hands steps: a row's (`RowContext`) and the run's own, for work
every row shares (`SharedContext`). Both implement core/steps/context.py's `StepContext`.

External calls go through `call`, which holds one of the run's `max_concurrency` slots only
while a request is on the wire and retries transient failures with the engine's policy;
usage is counted against the row and the run (and the run's budget guard).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from batchgrid.core.steps.context import RunResources, StepContext
from batchgrid.core.steps.plan import PlannedStep
from batchgrid.core.steps.tree import StepPath
from batchgrid.core.util.errors import RetryableError, ServerUnreachable, StepError

from . import events as ev

if TYPE_CHECKING:  # pragma: no cover
    from .engine import Engine


def wait_words(seconds: float) -> str:
    """A wait, said as a user would: "45 seconds", "5 minutes", "1 hour", "2 hours 10 minutes"."""
    if seconds < 90:
        return "1 second" if round(seconds) == 1 else f"{seconds:.0f} seconds" if seconds >= 1 else f"{seconds:.1f} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} minutes"
    hours, minutes = divmod(minutes, 60)
    text = "1 hour" if hours == 1 else f"{hours} hours"
    return text + (f" {minutes} minutes" if minutes else "")

log = logging.getLogger(__name__)


class RowContext:
    """One row's view of the run, handed to async steps: external calls, streaming, usage.
    It implements core/steps/context.py's `StepContext`."""

    __slots__ = ("attempts", "cached", "cost", "details", "engine", "index", "path", "step", "tokens_in",
                 "tokens_out", "trace")

    def __init__(self, engine: Engine, index: int):
        self.engine = engine
        self.index = index
        self.step = ""
        self.path: StepPath = ()  # the step running now
        self.attempts = 1
        self.tokens_in = 0
        self.tokens_out = 0
        self.cost = 0.0
        self.cached = 0
        self.details: dict[str, Any] | None = None
        self.trace: list[ev.StepTrace] | None = None  # the row's trace, where a parallel step's branches add theirs

    async def call(self, make_call: Callable[[], Awaitable[Any]], *, limiter: Any = None) -> Any:
        """Make one external call under the run's budget, retrying what retrying can fix.

        `make_call` is called afresh for every attempt. `limiter` (optional, a provider's
        own limits) offers `acquire()` as an async context manager and
        `rate_limited(delay)`, told the server's wait when it says 429 (the provider decides
        whether the whole provider waits: see core/providers/limiter.py).

        - A transient error (5xx, timeout) spends one of the policy's `max_attempts`.
        - A 429 spends none: the row waits what the server asked for; it gives up only when
          the run has made no progress for the policy's `rate_limit_patience`.
        - A wait the server asks for above the policy's `max_server_wait` pauses the run in the
          server's words; the row tries again at once when the run is resumed.
        - ServerUnreachable (a server that answered in this run refuses connections): the row
          waits for it with the others, one probe at a time, spending no attempt
          (`Engine.server_turn`).
        """
        engine = self.engine
        policy = engine.retry_policy
        attempt = 1      # the attempt being made (transient errors count)
        limited = 0      # 429s met
        wait = None      # the server this row waits for, with the turn to probe it held
        try:
            while True:
                try:
                    result = await self._once(make_call, limiter)
                except ServerUnreachable as exc:
                    if wait is not None:
                        wait.turn.release()  # the probe failed: the next row's turn
                    wait = None
                    wait = await engine.server_turn(exc.url)
                    continue
                except RetryableError as exc:
                    if wait is not None:  # it answered, if with an error: it is back
                        engine.server_answered(wait)
                        wait = None
                    asked = exc.retry_after
                    if asked is not None and asked > policy.max_server_wait:
                        engine.pause(f"{exc}: the server asks to wait {wait_words(asked)}", "wait")
                        await engine.until_resumed()
                        continue
                    if exc.rate_limited:
                        limited += 1
                        stalled = time.monotonic() - engine.last_progress
                        if stalled >= policy.rate_limit_patience:
                            raise StepError(f"{exc} (gave up: rate limited with no progress for "
                                            f"{wait_words(stalled)})") from exc
                        delay = policy.rate_limit_delay(limited, asked)
                        if limiter is not None:
                            limiter.rate_limited(min(asked, policy.max_server_wait) if asked is not None else delay)
                        self._retrying(attempt, 0, delay, str(exc))
                    else:
                        if attempt >= policy.max_attempts:
                            raise StepError(f"{exc} (gave up after {attempt} attempts)") from exc
                        delay = policy.delay(attempt, asked)
                        attempt += 1
                        self._retrying(attempt, policy.max_attempts, delay, str(exc))
                    self.attempts += 1
                    engine.progress.retries += 1
                    await asyncio.sleep(delay)
                    continue
                if wait is not None:
                    engine.server_answered(wait)
                    wait = None
                engine.last_progress = time.monotonic()
                return result
        finally:
            if wait is not None and wait.turn.locked():
                wait.turn.release()

    async def _once(self, make_call: Callable[[], Awaitable[Any]], limiter: Any) -> Any:
        """One attempt: the provider's turn, then one of the run's slots while on the wire."""
        engine = self.engine
        if limiter is not None:
            async with limiter.acquire():
                async with engine.slots:
                    return await make_call()
        async with engine.slots:
            return await make_call()

    def _retrying(self, attempt: int, max_attempts: int, delay: float, reason: str) -> None:
        self.engine.publish(ev.RowRetrying(self.index, self.step, attempt, max_attempts, delay, reason))

    def partial(self, column: str, text: str) -> None:
        """Publish streamed output so the row's cell can grow as tokens arrive."""
        self.engine.publish(ev.RowPartial(self.index, column, text))

    def add_usage(self, tokens_in: int = 0, tokens_out: int = 0, cost: float = 0.0, cached: bool = False) -> None:
        self.tokens_in += tokens_in
        self.tokens_out += tokens_out
        self.cost += cost
        p = self.engine.progress
        p.tokens_in += tokens_in
        p.tokens_out += tokens_out
        p.cost += cost
        if cached:
            self.cached += 1
            p.cached += 1
        if self.engine.budget is not None:
            self.engine.budget.check()

    def note(self, **details: Any) -> None:
        """Attach details (request sent, raw reply) to this step's trace for the row inspector."""
        if self.details is None:
            self.details = {}
        self.details.update(details)

    def park(self, room: int) -> None:
        """This row waits in an embedding batch still gathering (up to `room` texts): the run may start
        another row meanwhile (engine.py, `Lending`). Each `park` is ended by one `unpark`."""
        self.engine.park(room)

    def unpark(self) -> None:
        """This row's batch went (or the row no longer waits for it)."""
        self.engine.unpark()

    @property
    def resources(self) -> RunResources:
        return self.engine.resources

    @property
    def max_concurrency(self) -> int:
        return self.engine.max_concurrency

    async def run_steps(self, plan: Sequence[PlannedStep], row: dict[str, Any]) -> dict[str, Any]:
        """Run a bound branch of the step running now (a parallel step's) on `row`; returns
        its outputs.

        Each branch gets its own context (branches run at once, each in its own step);
        its attempts and usage are added to the row's when it ends.
        """
        branch = RowContext(self.engine, self.index)
        branch.trace = self.trace  # the branch's steps in the row's trace (a skip there says why)
        try:
            return await self.engine._run_steps(plan, row, branch, self.trace, self.step, self.path)
        finally:
            self.attempts += branch.attempts - 1
            self.tokens_in += branch.tokens_in
            self.tokens_out += branch.tokens_out
            self.cost += branch.cost
            self.cached += branch.cached


class SharedContext(RowContext):
    """The run's own context, for work every row shares (a knowledge base embedded while the
    steps are bound): its calls take the run's slots and retry like a row's, its usage is
    charged to the run (Progress totals and `shared_*`), and it publishes no row events."""

    __slots__ = ()

    def __init__(self, engine: Engine):
        super().__init__(engine, -1)

    def _retrying(self, attempt: int, max_attempts: int, delay: float, reason: str) -> None:
        log.info("shared work: retrying (%d/%s) in %.1f s: %s", attempt, max_attempts or "-", delay, reason)

    def partial(self, column: str, text: str) -> None:
        pass  # no row's cell to grow

    def add_usage(self, tokens_in: int = 0, tokens_out: int = 0, cost: float = 0.0, cached: bool = False) -> None:
        p = self.engine.progress
        p.shared_tokens_in += tokens_in
        p.shared_tokens_out += tokens_out
        p.shared_cost += cost
        super().add_usage(tokens_in, tokens_out, cost, cached)

    async def run_steps(self, plan: Sequence[PlannedStep], row: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("shared work runs no steps")


def _as_step_context(ctx: RowContext) -> StepContext:
    """Never called: mypy checks here that a RowContext is the StepContext steps are promised."""
    return ctx
