"""Batch mode in a run: one model step's rows sent together through the provider's Batch API.

The engine splits its plan at each top-level step in batch mode (`stages`). Rows run the steps
before it as usual and wait there; once every row has arrived, `BatchStage.run`:
1. builds each row's request, exactly as the step would send it one by one (a row that cannot
   make one fails there); identical requests go once, the other rows share the answer;
2. answers from the response cache what it already holds (no batch, no cost);
3. takes up the batch this run submitted earlier for this step (the journal's record, through a
   `BatchBook`; `adopt` finds one created just before a crash) and submits only the rows it lacks,
   after checking the budget against their batch price;
4. waits (the progress in words on `Progress.batch` and `BatchWaiting` events), collects;
5. gives each row its outcome: outputs, tokens and cost at the batch price, the answer in the cache;
   or its error in the synchronous path's words, through the engine's normal failure path;
6. a step with fallbacks then asks them, one by one, for the rows whose batch answer failed
   (batch_fallbacks.py).
Stop ends only the wait: the batches go on at the provider and their record stays in the journal, so
a resumed run collects them without paying twice. `cancel()` cancels them at the provider; the rows
done there are collected, the others fail saying the batch was cancelled.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from batchgrid.core.providers import batches as bx
from batchgrid.core.providers.cache import cache_key
from batchgrid.core.providers.client import EMBEDDINGS
from batchgrid.core.providers.prices import money
from batchgrid.core.providers.profiles import api_key, resolve_profile
from batchgrid.core.providers.tokens import prompt_tokens
from batchgrid.core.steps.plan import PlannedStep
from batchgrid.core.util.errors import BatchgridError, RetryableError, StepError
from batchgrid.core.util.patterns import NeedsWorkerThread

from . import events as ev
from .batch_fallbacks import BatchFallbacks

if TYPE_CHECKING:  # pragma: no cover
    from .engine import Engine, RowState
    from .journal import Journal

log = logging.getLogger(__name__)

def _poll() -> bx.PollPolicy:
    """How often the provider is asked: 5 s growing to a minute; BATCHGRID_BATCH_POLL=SECONDS asks first after
    that long (the same growth, capped at 12 times it)."""
    first = os.environ.get("BATCHGRID_BATCH_POLL", "")
    try:
        seconds = float(first)
    except ValueError:
        return bx.DEFAULT_POLL
    return bx.PollPolicy(first=seconds, cap=seconds * 12) if seconds > 0 else bx.DEFAULT_POLL


POLL = _poll()


class BatchBook(Protocol):
    """Where a run keeps its steps' batch records (the journal; in memory without one)."""

    tag: str  # the run's id: marks its batches at the provider (BatchClient.adopt)

    def load(self, step: str) -> dict[str, Any] | None: ...

    def save(self, step: str, record: dict[str, Any]) -> None: ...

    def delete(self, step: str) -> None: ...


@dataclass
class MemoryBook:
    tag: str = ""
    records: dict[str, dict[str, Any]] = field(default_factory=dict)

    def load(self, step: str) -> dict[str, Any] | None:
        return self.records.get(step)

    def save(self, step: str, record: dict[str, Any]) -> None:
        self.records[step] = record

    def delete(self, step: str) -> None:
        self.records.pop(step, None)


class JournalBook:
    """A run's batch records in the run journal (table `batches`), by step."""

    def __init__(self, journal: Journal, run_id: str):
        self.journal = journal
        self.tag = run_id

    def load(self, step: str) -> dict[str, Any] | None:
        return self.journal.load_batches(self.tag).get(step)

    def save(self, step: str, record: dict[str, Any]) -> None:
        self.journal.save_batch(self.tag, step, record)

    def delete(self, step: str) -> None:
        self.journal.delete_batch(self.tag, step)


# ---- a run's batches left at the provider, seen (or cancelled) with no run going on -----------------
async def _client(record: bx.BatchRecord, providers: Mapping[str, dict[str, Any]]) -> bx.BatchClient:
    profile = resolve_profile(record.provider, providers)
    key = await asyncio.to_thread(api_key, profile)  # a keyring may block while it asks the desktop
    return bx.BatchClient(profile, key, poll=POLL)


async def describe_pending(record: bx.BatchRecord, providers: Mapping[str, dict[str, Any]]) -> str:
    """How far the batches are at the provider, asked now ("batch submitted 2 h ago: 41,200 of 50,000 done
    at the provider"); as last seen, saying so, when the provider cannot be asked."""
    try:
        client = await _client(record, providers)
        async with client:
            await client.refresh(record)
        return record.progress().describe()
    except (BatchgridError, OSError) as exc:
        return record.progress(f"as last seen; the provider cannot be asked now ({exc})").describe()


async def cancel_pending(record: bx.BatchRecord, providers: Mapping[str, dict[str, Any]]) -> None:
    """Cancel at the provider the batches of a record (a resumed run then collects what they did)."""
    client = await _client(record, providers)
    async with client:
        await client.cancel(record)


@dataclass
class RunBatches:
    """A run's batch mode: where its records are kept, the step waiting for its batches now, a cancel
    asked for, rows parked at a step in batch mode, and what was left at the provider when the run ended
    ("2. LLM: batch submitted ... at the provider")."""

    book: BatchBook
    stage: BatchStage | None = None
    cancel: bool = False
    parked: dict[int, RowState] = field(default_factory=dict)
    left_at_provider: list[str] = field(default_factory=list)


def in_batch_mode(planned: PlannedStep) -> bool:
    return len(planned.path) == 1 and bool(getattr(planned.bound.step, "batch", False))


def stages(plan: Sequence[PlannedStep]) -> list[tuple[list[PlannedStep], PlannedStep | None]]:
    """The plan cut at each step in batch mode: (the steps before it, it), ..., (the steps after, None)."""
    out: list[tuple[list[PlannedStep], PlannedStep | None]] = []
    segment: list[PlannedStep] = []
    for planned in plan:
        if in_batch_mode(planned):
            out.append((segment, planned))
            segment = []
        else:
            segment.append(planned)
    out.append((segment, None))
    return out


async def check_support(engine: Engine, plan: Sequence[PlannedStep]) -> None:
    """Before any row: every step in batch mode names a provider with a Batch API (else the run fails, in words)."""
    for planned in plan:
        if in_batch_mode(planned):
            provider = await planned.bound.step.provider(engine.resources)  # type: ignore[attr-defined]
            why = bx.batch_support(provider.profile)
            if why:
                raise BatchgridError(f"{planned.label}: {why}")


class BatchStage:
    def __init__(self, engine: Engine, planned: PlannedStep, book: BatchBook):
        self.engine = engine
        self.planned = planned
        self.step: Any = planned.bound.step
        self.key = str(planned.path[0])  # the step's part of each custom_id, and of the journal's record
        self.book = book
        self.submitted = False          # a batch of this step is at the provider
        self.last_line = ""             # how far it was, the last time the provider was asked
        self.provider_name = ""
        self.fallbacks: BatchFallbacks | None = None  # the rows whose batch answer failed, for the step's fallbacks
        self._cancel = asyncio.Event()

    def cancel(self) -> None:
        """Cancel this step's batches at the provider (now, or as soon as they are submitted)."""
        self._cancel.set()

    async def run(self, rows: list[RowState]) -> list[RowState]:
        """Send the waiting rows' requests as batches and give each row its outcome; returns the rows
        that go on (the others have failed, through the engine's failure path)."""
        engine, step = self.engine, self.step
        provider = await step.provider(engine.resources)
        profile = provider.profile
        self.provider_name = provider.name
        requests: dict[int, dict[str, Any]] = {}
        groups: dict[str, list[RowState]] = {}  # identical requests: sent once
        keys: dict[int, str] = {}
        going: list[RowState] = []
        condition = getattr(self.planned.call, "condition", None)  # a step with `when` (core/steps/plan.py)
        for state in rows:
            if condition is not None and await self._skipped(state, condition):
                going.append(state)
                continue
            try:
                request = step.batch_request(state.row, profile)
            except Exception as exc:  # a template that does not render, an empty text...
                self._fail(state, exc, 0.0)
                continue
            key = cache_key(provider.endpoint(step.batch_path), request)
            requests[state.index] = request
            keys[state.index] = key
            groups.setdefault(key, []).append(state)
            going.append(state)
        if requests and step.fallbacks():  # every request names the step's own model
            self.fallbacks = BatchFallbacks(self, step.answered_by(provider, next(iter(requests.values()))["model"]))
        cache = provider.cache
        waiting: list[RowState] = []
        for key, group in groups.items():
            hit = cache.get(key) if cache is not None else None
            if hit is None:
                waiting.extend(group)
                continue
            for state in group:
                self._answer(state, requests[state.index], hit, cached=True)
        if waiting:
            outcomes = await self._outcomes(provider, waiting, requests, keys)
            for state in sorted(waiting, key=lambda s: s.index):
                outcome = outcomes.get(state.index)
                if outcome is None:  # shares the answer of an identical request (its group's leader)
                    continue
                self._settle(provider, state, outcome, requests[state.index], keys[state.index], groups)
        if self.fallbacks is not None:
            await self.fallbacks.run()
        return [state for state in going if engine.results[state.index] is None]

    async def _skipped(self, state: RowState, condition: Any) -> bool:
        """A row that does not meet the step's condition skips the batch, as it would skip the step."""
        try:
            why = condition.unmet(state.row)
        except NeedsWorkerThread:  # a pattern of the user's outran its slice of the loop
            why = await asyncio.to_thread(condition.unmet, state.row)
        if why is None:
            return False
        state.row.update(self.planned.call.skipped(state.row))  # type: ignore[attr-defined]
        state.trace.append(ev.StepTrace(self.planned.label, 0.0, 1, "", {"skipped": why}, self.planned.path))
        return True

    # ---- at the provider ----------------------------------------------------------------------
    async def _outcomes(self, provider, waiting: list[RowState], requests: dict[int, dict[str, Any]],
                        keys: dict[int, str]) -> dict[int, bx.RowOutcome]:
        """Each group leader's outcome (row -> RowOutcome), from this run's earlier batch or a new one."""
        engine = self.engine
        endpoint = bx.EMBEDDINGS if self.step.batch_path == EMBEDDINGS else bx.CHAT
        client = bx.BatchClient(provider.profile, provider._key, prices=provider.prices, poll=POLL)
        try:
            saved = self.book.load(self.key)
            record = bx.BatchRecord.from_dict(saved) if saved else None
            if record is not None:
                await self._try(lambda: client.adopt(record, self.book.tag))
                self.submitted = True
            known = set(record.rows()) if record is not None else set()
            leaders: dict[str, int] = {}
            for state in waiting:  # a row the record holds leads its group; else the group's first row
                key = keys[state.index]
                if key not in leaders or (state.index in known and leaders[key] not in known):
                    leaders[key] = state.index
            new = sorted(i for i in leaders.values() if i not in known)
            if new:
                await self._within_budget(provider, [requests[i] for i in new])
                record = await self._try(lambda: client.submit(
                    self.key, [(i, requests[i]) for i in new], endpoint=endpoint, record=record,
                    tag=self.book.tag, on_record=self._save))
                self.submitted = True
            assert record is not None
            await self._wait(client, record)
            outcomes = {o.row: o for o in await self._try(lambda: client.collect(record, requests))}
            self.book.delete(self.key)  # every answer is in the rows (and the cache): nothing left to collect
            self.submitted = False
            return {i: outcomes.get(i) or bx.RowOutcome(i, error=bx.MISSING["completed"]) for i in leaders.values()}
        except BatchgridError as exc:  # the batch could not be made or read: every row waiting says why
            for state in waiting:
                if engine.results[state.index] is None:
                    self._fail(state, exc, 0.0)
            return {}
        finally:
            if not self.submitted:  # else (stopped while it waits) the run's last line still says where it is
                engine.progress.batch = ""
                engine.publish(ev.BatchWaiting(self.planned.label, ""))
            await client.aclose()

    async def _try(self, call):
        """A call to the Batch API, tried again on a passing failure as a row's call would be."""
        policy = self.engine.retry_policy
        attempt = 1
        while True:
            try:
                return await call()
            except RetryableError as exc:
                if attempt >= policy.max_attempts:
                    raise StepError(f"{exc} (gave up after {attempt} attempts)") from None
                await asyncio.sleep(policy.delay(attempt, exc.retry_after))
                attempt += 1

    async def _within_budget(self, provider, requests: list[dict[str, Any]]) -> None:
        """The pipeline's budget against what these requests would cost at the batch price: past it, the
        run pauses before submitting (Resume anyway submits)."""
        engine = self.engine
        if engine.budget is None:
            return
        answer = self.step.batch_answer_tokens()
        profile = provider.profile
        cost = sum(provider.prices.batch_cost(r["model"], prompt_tokens(r), answer, preset=profile.preset.name,
                                              local=profile.preset.local) for r in requests)
        budget = engine.budget.budget
        spent = engine.progress.cost
        if spent + cost > budget:
            engine.pause(f"{self.planned.label}: {len(requests):,} rows in batch mode would cost about {money(cost)} "
                         f"at the batch price ({money(spent)} spent), past the budget of {money(budget)}", "budget")
            await engine.until_resumed()

    async def _wait(self, client: bx.BatchClient, record: bx.BatchRecord) -> None:
        """Until every batch is finished; a cancel asked for meanwhile is made at the provider first."""
        while True:
            if self._cancel.is_set() and not record.cancelled:
                await self._try(lambda: client.cancel(record, on_record=self._save))
            waiter = asyncio.ensure_future(client.wait(record, on_progress=self._progress, on_record=self._save))
            # once cancelled, nothing more to race against: the wait ends when the provider says cancelled
            cancel = asyncio.ensure_future(self._cancel.wait() if not record.cancelled else asyncio.Event().wait())
            try:
                done, _ = await asyncio.wait({waiter, cancel}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                cancel.cancel()
                if not waiter.done():
                    waiter.cancel()
                    await asyncio.gather(waiter, return_exceptions=True)
            if waiter in done:
                waiter.result()
                return

    def _save(self, record: bx.BatchRecord) -> None:
        self.book.save(self.key, record.to_dict())

    def _progress(self, progress: bx.BatchProgress) -> None:
        line = self.last_line = progress.describe()
        self.engine.progress.batch = line
        self.engine.publish(ev.BatchWaiting(self.planned.label, line))

    # ---- the rows -----------------------------------------------------------------------------
    def _settle(self, provider, state: RowState, outcome: bx.RowOutcome, request: dict[str, Any], key: str,
                groups: dict[str, list[RowState]]) -> None:
        """A leader's outcome: the answer cached and given to its group, or its error to each row of it."""
        group = groups[key]
        if outcome.error or outcome.body is None:
            for member in group:
                self._missed(member, StepError(outcome.error or "the provider sent no answer"),
                             outcome.cost if member is state else 0.0, outcome if member is state else None)
            return
        try:
            value = self.step.batch_cache_value(outcome.body, request)
        except Exception as exc:  # paid for, but not an answer
            for member in group:
                self._missed(member, exc, outcome.cost if member is state else 0.0,
                             outcome if member is state else None)
            return
        if provider.cache is not None:
            provider.cache.put(key, value)
        for member in group:
            paid = member is state
            self._answer(member, request, value, cached=not paid, outcome=outcome if paid else None)

    def _answer(self, state: RowState, request: dict[str, Any], value: dict[str, Any], *, cached: bool,
                outcome: bx.RowOutcome | None = None) -> None:
        tokens_in = outcome.tokens_in if outcome else int(value.get("tokens_in", value.get("tokens", 0)) or 0)
        tokens_out = outcome.tokens_out if outcome else int(value.get("tokens_out", 0) or 0)
        cost = outcome.cost if outcome else 0.0
        state.ctx.add_usage(tokens_in, tokens_out, cost, cached=cached)
        details = self._details(request, tokens_in, tokens_out, cost, cached)
        try:
            outputs = self.step.batch_outputs(value, request)
        except Exception as exc:
            self._missed(state, exc, cost, details=details, counted=True)
            return
        if "text" in value:
            details["response"] = value["text"]
        if self.fallbacks is not None:  # the step's own model answered, as a run without batch mode says it
            own = self.fallbacks.own
            outputs[self.step.model_column()] = own
            details.update(costs={own: cost}, answered_by=own)
        state.row.update(outputs)
        state.trace.append(ev.StepTrace(self.planned.label, time.perf_counter() - state.t0, 1, "", details,
                                        self.planned.path))

    def _missed(self, state: RowState, exc: BaseException, cost: float, outcome: bx.RowOutcome | None = None, *,
                details: dict[str, Any] | None = None, counted: bool = False) -> None:
        """The row's batch answer failed (`cost`: what it cost the row): the row waits for the step's fallbacks,
        if it has any and the batch was not cancelled (the user asked to stop spending), else it fails."""
        if outcome is not None and not counted:
            state.ctx.add_usage(outcome.tokens_in, outcome.tokens_out, cost)
        if self.fallbacks is not None and not self._cancel.is_set() and str(exc) != bx.MISSING["cancelled"]:
            self.fallbacks.add(state, exc, cost, details)
        else:
            self._fail(state, exc, cost, details=details, counted=True)

    def _fail(self, state: RowState, exc: BaseException, cost: float, outcome: bx.RowOutcome | None = None, *,
              details: dict[str, Any] | None = None, counted: bool = False, attempts: int = 1) -> None:
        """The row fails at this step, through the engine's failure path (no fail-fast pause: a batch's
        rows all end at once, their errors already decided)."""
        from .engine import describe_error

        if outcome is not None and not counted:
            state.ctx.add_usage(outcome.tokens_in, outcome.tokens_out, cost)
        error_type, error = describe_error(exc)
        raw = getattr(exc, "raw", None)
        if raw is not None:
            details = {**(details or {}), "raw": raw}
        state.trace.append(ev.StepTrace(self.planned.label, time.perf_counter() - state.t0, attempts, error, details,
                                        self.planned.path))
        self.engine.progress.batched -= 1
        self.engine.row_left_batch(state)
        self.engine._finish_row(state, ev.ERROR, error, error_type, self.planned.label, fail_fast=False)

    def _details(self, request: dict[str, Any], tokens_in: int, tokens_out: int, cost: float,
                 cached: bool) -> dict[str, Any]:
        return {"provider": self.provider_name, "request": request, "batch": True,
                "cached": cached, "tokens_in": tokens_in, "tokens_out": tokens_out, "cost": cost}
