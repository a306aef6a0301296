"""Fallbacks of a step in batch mode: the rows whose batch answer failed, asked of the step's other models.

A module of its own because it is the one part of batch mode that makes ordinary, per-row requests:
batch_mode.py deals with a batch's rows all at once, at the Batch API; here each row is asked through the
step's own `ChatStep.fall_back`, so its candidates, labels, prices, single flight, cache and trace notes
(`answered_by`, `fallbacks`, `costs`) are exactly those of a run without batch mode.

`BatchStage` hands over a row whose batch answer failed (an error line, an answer that does not validate,
an expired batch's undone row; not after a cancel: the user asked to stop spending), its own model's
usage already counted. Once every outcome is applied, `run` takes the rows in input order with at most
`max_concurrency` workers, as the engine's workers take rows: each row's calls go through its own context
(`RowContext.call`: the run's slots, the provider's limits, the retry policy), so calls in flight never
exceed max concurrency, and a pause (the budget, a server's long wait) holds back the rows not started. A
row being asked counts as running, not as waiting at the batch. A row its fallbacks answer goes on with the
rows the batch answered; one they all fail ends "every model failed: <own>: <batch error>; then ...".
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import events as ev

if TYPE_CHECKING:  # pragma: no cover
    from .batch_mode import BatchStage
    from .engine import RowState


@dataclass
class Missed:
    state: RowState
    error: BaseException     # what the batch answered
    cost: float              # what that answer cost the row (the batch price; 0 for a row sharing it)
    details: dict[str, Any]  # its trace details so far


class BatchFallbacks:
    def __init__(self, stage: BatchStage, own: str):
        self.stage = stage
        self.own = own  # how rows name the step's own model (`ChatStep.answered_by`)
        self.missed: list[Missed] = []

    def add(self, state: RowState, error: BaseException, cost: float, details: dict[str, Any] | None) -> None:
        self.missed.append(Missed(state, error, cost, {"batch": True, **(details or {})}))

    async def run(self) -> None:
        engine = self.stage.engine
        missed, self.missed = sorted(self.missed, key=lambda m: m.state.index), []
        if not missed:
            return
        todo = iter(missed)
        rows = "the row" if len(missed) == 1 else f"the {len(missed):,} rows"
        self._say(f"asking the fallbacks for {rows} the batch did not answer")  # the run bar's line meanwhile
        try:
            await asyncio.gather(*(self._worker(todo) for _ in range(min(engine.max_concurrency, len(missed)))))
        finally:
            self._say("")

    def _say(self, line: str) -> None:
        engine = self.stage.engine
        engine.progress.batch = line
        engine.publish(ev.BatchWaiting(self.stage.planned.label, line))

    async def _worker(self, todo: Iterator[Missed]) -> None:
        engine = self.stage.engine
        for missed in todo:
            if engine.paused:
                await engine.until_resumed()
            await self._ask(missed)

    async def _ask(self, missed: Missed) -> None:
        stage, state = self.stage, missed.state
        planned, ctx, p = stage.planned, state.ctx, stage.engine.progress
        ctx.step, ctx.path, ctx.details = planned.label, planned.path, missed.details
        attempts = ctx.attempts
        p.batched -= 1
        p.running += 1
        failure: Exception | None = None
        try:
            outputs = await stage.step.fall_back(state.row, ctx, self.own, missed.error, missed.cost)
        except Exception as exc:  # every model failed (or a bug in the step): the row fails here
            failure = exc
        finally:
            p.running -= 1
            p.batched += 1
        tried = ctx.attempts - attempts + 1
        if failure is not None:
            stage._fail(state, failure, 0.0, details=ctx.details, counted=True, attempts=tried)
            return
        state.row.update(outputs)
        state.trace.append(ev.StepTrace(planned.label, time.perf_counter() - state.t0, tried, "", ctx.details,
                                        planned.path))
