"""A run works on its own snapshot of the pipeline, bound for that run: the declarations the
user edits never carry per-run state, edits made during a run reach only the next run, and
stop while steps are being prepared ends the run at once."""

from __future__ import annotations

import asyncio
import copy

import pytest

from batchgrid.core.pipeline.file import Pipeline
from batchgrid.core.run import events as ev
from batchgrid.core.run.engine import Engine, RunResources
from batchgrid.core.run.job import Job
from batchgrid.core.steps import new_step
from batchgrid.core.steps.base import walk
from batchgrid.core.table import Table

import engine_helpers
from engine_helpers import BEHAVIOUR, METER, CallMeter, wait_until


@pytest.fixture(autouse=True)
def fresh_helpers():
    engine_helpers.METER.__dict__.update(CallMeter().__dict__)
    BEHAVIOUR.clear()
    engine_helpers.BIND_GATE.clear()
    engine_helpers.BIND_ENTERED.clear()
    yield


def pipeline(*steps) -> Pipeline:
    return Pipeline.from_dict({"version": 1, "steps": list(steps)})


def rows(n: int) -> Table:
    return Table.from_records([{"id": i, "text": f"row {i}"} for i in range(n)])


def state(steps) -> list[tuple[str, dict]]:
    """Everything every declaration holds, nested steps included (deep-copied for comparing)."""
    return [(type(s).__name__, copy.deepcopy({k: v for k, v in vars(s).items() if k != "config"}),
             copy.deepcopy(s.to_dict())) for s in walk(steps)]


# ---- declarations stay declarations ---------------------------------------------------------
async def test_a_run_leaves_the_declarations_exactly_as_they_were(tmp_path):
    (tmp_path / "prices.csv").write_text("sku,price\nA1,1.20\nB2,0.50\n", encoding="utf-8")
    lookup = {"type": "lookup", "file": "prices.csv", "file_key": "sku", "key": "sku", "columns": ["price"]}
    p = pipeline(lookup,
                 {"type": "python", "code": "price + '!'", "output": "loud"},
                 {"type": "parallel", "branches": {"a": [{**lookup, "prefix": "a_"}],
                                                   "b": [{"type": "python", "code": "sku.lower()", "output": "low"}]}})
    before = state(p.steps)
    engine = Engine(p.steps, Table.from_records([{"sku": "A1"}, {"sku": "B2"}]),
                    resources=RunResources(base_dir=tmp_path, trusted=True))
    await engine.run()
    assert [r.outputs for r in engine.results] == [
        {"price": "1.20", "loud": "1.20!", "a_price": "1.20", "low": "a1"},
        {"price": "0.50", "loud": "0.50!", "a_price": "0.50", "low": "b2"}]
    assert state(p.steps) == before  # no loaded table, no compiled code left on them


# ---- the plan: paths and labels ---------------------------------------------------------------
async def test_every_trace_carries_its_steps_path_and_numbers_count_disabled_steps():
    p = pipeline({"type": "trim", "source": "text"},
                 {"type": "template", "template": "x", "output": "off", "enabled": False},
                 {"type": "parallel", "branches": {"a": [{"type": "template", "template": "x", "output": "y",
                                                          "enabled": False},
                                                         {"type": "test_slow_call", "source": "text"}]}},
                 {"type": "test_slow_call", "source": "text", "output": "last"})
    source = Table.from_records([{"text": "fine"}, {"text": "boom"}])
    engine = Engine(p.steps, source)
    await engine.run()
    fine, boom = engine.results
    assert [(t.path, t.step) for t in fine.trace] == [  # a branch's steps after their parallel step
        ((0,), "1. Trim whitespace"), ((2,), "3. Parallel branches"),
        ((2, "a", 1), "3. Parallel branches › a › 2. Slow call (test)"), ((3,), "4. Slow call (test)")]
    assert boom.failed_step == "3. Parallel branches › a › 2. Slow call (test)"  # its place in the branch
    assert [(t.path, bool(t.error)) for t in boom.trace] == [((0,), False), ((2,), True), ((2, "a", 1), True)]


# ---- stop while binding -----------------------------------------------------------------------
async def test_stop_while_a_step_is_prepared_ends_the_run_at_once():
    p = pipeline({"type": "test_slow_bind"}, {"type": "test_slow_call", "source": "text"})
    engine = Engine(p.steps, rows(5))
    seen: list = []
    engine.subscribe(seen.append)
    task = asyncio.ensure_future(engine.run())
    try:
        assert await wait_until(engine_helpers.BIND_ENTERED.is_set)  # the "file read" has begun, in a thread
        engine.stop()
        summary = await asyncio.wait_for(task, timeout=10)  # not waiting for the read: the gate is still shut
        assert not engine_helpers.BIND_GATE.is_set()
    finally:
        engine_helpers.BIND_GATE.set()  # let the worker thread end (the loop waits for it when it closes)
    assert isinstance(seen[-1], ev.RunFinished) and seen[-1].reason == "stopped"
    assert summary.done == summary.failed == 0
    assert engine.results == [None] * 5 and METER.total == 0


# ---- editing during a run ---------------------------------------------------------------------
async def test_edits_made_during_a_run_reach_only_the_next_run():
    p = pipeline({"type": "template", "template": "{text}!", "output": "t"},
                 {"type": "test_slow_call", "source": "t", "seconds": 0.002, "output": "called"},
                 {"type": "template", "template": "after {called}", "output": "after"})
    job = Job(p, rows(12))
    engine = job.start(max_concurrency=2)
    edited = []

    def edit_while_rows_are_in_flight(event):
        if isinstance(event, ev.RowDone) and not edited:
            assert engine.progress.running > 0 and engine.progress.queued > 0
            p.steps[0].config["template"] = "{text}?"                       # change a template
            p.steps.append(new_step("template", template="new", output="extra"))  # add a step
            del p.steps[2]                                                  # delete one
            edited.append(event.index)

    engine.subscribe(edit_while_rows_are_in_flight)
    await engine.run()
    assert edited
    assert [r.outputs for r in job.results] == [
        {"t": f"row {i}!", "called": f"called:row {i}!", "after": f"after called:row {i}!"} for i in range(12)]
    assert job.result_set().output_columns == ["t", "called", "after"]  # the results' own columns

    again = job.start(max_concurrency=2)
    await again.run()
    assert [r.outputs for r in job.results] == [
        {"t": f"row {i}?", "called": f"called:row {i}?", "extra": "new"} for i in range(12)]
    assert job.result_set().output_columns == ["t", "called", "extra"]
