"""The engine contract (docs/architecture.md): order, isolation, one honest concurrency budget,
stop, pause, threads, bounded memory."""

from __future__ import annotations

import asyncio
import gc
import threading
import time

import pytest

from batchgrid.core.run import events as ev
from batchgrid.core.run.engine import Engine, RetryPolicy
from batchgrid.core.table import Table
from batchgrid.core.pipeline.file import Pipeline

from engine_helpers import BEHAVIOUR, METER, CallMeter
import engine_helpers

FAST_RETRY = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05)


@pytest.fixture(autouse=True)
def fresh_meter():
    engine_helpers.METER.__dict__.update(CallMeter().__dict__)
    BEHAVIOUR.clear()
    yield


def pipeline(*steps) -> Pipeline:
    return Pipeline.from_dict({"version": 1, "steps": list(steps)})


def rows(n: int, column: str = "text", make=lambda i: f"row {i}") -> Table:
    return Table.from_records([{"id": i, column: make(i)} for i in range(n)])


def engine_for(p: Pipeline, source: Table, **kw) -> Engine:
    kw.setdefault("retry_policy", FAST_RETRY)
    return Engine(p.steps, source, **kw)


async def test_results_stay_in_input_order_under_random_latency():
    p = pipeline({"type": "test_slow_call", "source": "text", "seconds": 0.001, "jitter": 0.03},
                 {"type": "template", "template": "{id}:{called}", "output": "tag"})
    e = engine_for(p, rows(200), max_concurrency=20)
    finish_order = []
    e.subscribe(lambda event: isinstance(event, ev.RowDone) and finish_order.append(event.index))
    await e.run()
    assert finish_order != sorted(finish_order), "latency was random, so rows should finish out of order"
    assert [r.index for r in e.results] == list(range(200))
    assert [r.outputs["tag"] for r in e.results] == [f"{i}:called:row {i}" for i in range(200)]


async def test_a_failing_row_stays_in_its_row_and_the_others_finish():
    make = lambda i: "boom" if i in (3, 7) else f"row {i}"
    p = pipeline({"type": "trim", "source": "text", "output": "clean"},
                 {"type": "test_slow_call", "source": "clean", "seconds": 0.001},
                 {"type": "template", "template": "ok {called}", "output": "after"})
    e = engine_for(p, rows(12, make=make), max_concurrency=4)
    summary = await e.run()
    assert summary.done == 10 and summary.failed == 2
    for i, r in enumerate(e.results):
        if i in (3, 7):
            assert r.status == ev.ERROR
            assert r.error == "cannot process 'boom'"
            assert r.error_type == "StepError"
            assert r.failed_step == "2. Slow call (test)"
            assert r.outputs == {"clean": "boom"}  # what earlier steps produced is kept
        else:
            assert r.status == ev.DONE
            assert r.outputs["after"] == f"ok called:row {i}"


async def test_rows_are_pipelined_first_result_after_one_rows_latency():
    """No barrier between steps: row 0 finishes while later rows are still in step 1."""
    p = pipeline({"type": "test_slow_call", "source": "text", "seconds": 0.05, "output": "a"},
                 {"type": "test_slow_call", "source": "a", "seconds": 0.05, "output": "b"})
    e = engine_for(p, rows(40), max_concurrency=4)
    started = time.perf_counter()
    first_done = []
    e.subscribe(lambda event: isinstance(event, ev.RowDone) and not first_done
                and first_done.append(time.perf_counter() - started))
    await e.run()
    total = time.perf_counter() - started
    # 40 rows x 2 steps x 50 ms / 4 slots = 1 s of work; one row takes 0.1 s.
    assert first_done[0] < total / 3


@pytest.mark.parametrize("limit", [1, 3, 10])
async def test_peak_external_calls_equal_max_concurrency_and_never_exceed_it(limit):
    p = pipeline({"type": "test_slow_call", "source": "text", "seconds": 0.01, "jitter": 0.01})
    e = engine_for(p, rows(60), max_concurrency=limit)
    peak_rows = 0

    def watch(event):
        nonlocal peak_rows
        peak_rows = max(peak_rows, e.progress.running)

    e.subscribe(watch)
    await e.run()
    assert METER.peak == limit
    assert peak_rows == limit
    assert METER.total == 60


@pytest.mark.parametrize("limit, expected_peak", [(2, 2), (6, 6)])
async def test_parallel_branches_share_the_budget_and_really_overlap(limit, expected_peak):
    branch = lambda name: [{"type": "test_slow_call", "source": "text", "seconds": 0.05, "output": name}]
    p = pipeline({"type": "parallel", "branches": {"a": branch("a"), "b": branch("b"), "c": branch("c")}})
    e = engine_for(p, rows(2), max_concurrency=limit)
    await e.run()
    assert METER.peak == expected_peak  # 2 rows x 3 branches = 6 calls wanted
    assert all(r.outputs == {"a": f"called:row {r.index}", "b": f"called:row {r.index}",
                             "c": f"called:row {r.index}"} for r in e.results)


async def test_a_failing_branch_fails_the_row_and_names_the_step():
    p = pipeline({"type": "parallel", "branches": {
        "ok": [{"type": "test_slow_call", "source": "text", "seconds": 0.01, "output": "fine"}],
        "bad": [{"type": "template", "template": "x", "output": "x"},
                {"type": "test_slow_call", "source": "x_in", "output": "never"}],
    }})
    source = Table.from_records([{"text": "a", "x_in": "boom"}, {"text": "b", "x_in": "fine"}])
    e = engine_for(p, source, max_concurrency=2)
    await e.run()
    assert e.results[0].status == ev.ERROR
    assert e.results[0].failed_step == "1. Parallel branches › bad › 2. Slow call (test)"
    assert e.results[1].status == ev.DONE and e.results[1].outputs["never"] == "called:fine"


async def test_stop_cancels_a_slow_call_at_once_and_keeps_finished_rows():
    make = lambda i: "fast" if i < 3 else f"slow {i}"
    p = pipeline({"type": "test_slow_call", "source": "text", "seconds": 0.0, "output": "quick"},
                 {"type": "test_slow_call", "source": "text", "seconds": 30.0, "output": "slow"})
    # Rows 0-2 are only fast if the slow step is skipped: give them their own pipeline run first.
    e = engine_for(p, rows(10, make=make), max_concurrency=3)
    task = asyncio.ensure_future(e.run())
    while METER.now < 3:  # three rows are awaiting their 30 s call
        await asyncio.sleep(0.005)
    stopped_at = time.perf_counter()
    e.stop()
    summary = await task
    elapsed = time.perf_counter() - stopped_at
    assert elapsed < 0.5, f"stop took {elapsed:.2f} s"
    assert METER.cancelled == 3 and METER.now == 0
    assert summary.cancelled == 3 and summary.done == 0
    assert [r.status if r else None for r in e.results] == [ev.CANCELLED] * 3 + [None] * 7


async def test_stop_keeps_rows_that_finished_before_it():
    p = pipeline({"type": "test_slow_call", "source": "text", "seconds": 0.0, "jitter": 0.0})
    make = lambda i: f"row {i}"
    e = engine_for(p, rows(50, make=make), max_concurrency=2)
    finished = []

    def stop_after_ten(event):
        if isinstance(event, ev.RowDone):
            finished.append(event.index)
            if len(finished) == 10:
                e.stop()

    e.subscribe(stop_after_ten)
    summary = await e.run()
    assert summary.done >= 10
    kept = [r for r in e.results if r is not None and r.status == ev.DONE]
    assert len(kept) == summary.done
    assert all(r.outputs["called"] == f"called:row {r.index}" for r in kept)
    assert e.results[-1] is None  # rows never started stay unrun


async def test_pause_lets_rows_in_flight_finish_and_starts_no_new_ones():
    p = pipeline({"type": "test_slow_call", "source": "text", "seconds": 0.05})
    e = engine_for(p, rows(30), max_concurrency=3)
    started = []
    e.subscribe(lambda event: isinstance(event, ev.RowStarted) and started.append(event.index))
    task = asyncio.ensure_future(e.run())
    while len(started) < 3:
        await asyncio.sleep(0.001)
    e.pause()
    await asyncio.sleep(0.3)  # six times a row's latency
    assert e.progress.running == 0
    assert e.progress.done == len(started)  # everything that started, finished
    held = len(started)
    await asyncio.sleep(0.1)
    assert len(started) == held  # and nothing new started while paused
    e.resume()
    summary = await task
    assert summary.done == 30


async def test_retries_are_per_row_and_results_stay_bound_to_their_row():
    BEHAVIOUR["flaky"] = {"row 2": 2, "row 5": 1}
    BEHAVIOUR["rate_limited"] = False  # transient errors, which spend attempts (429s do not)
    p = pipeline({"type": "test_slow_call", "source": "text", "seconds": 0.001})
    e = engine_for(p, rows(8), max_concurrency=8)
    retrying = []
    e.subscribe(lambda event: isinstance(event, ev.RowRetrying) and retrying.append(event))
    summary = await e.run()
    assert summary.done == 8 and summary.retries == 3
    assert sorted(r.index for r in retrying) == [2, 2, 5]
    assert retrying[0].describe().startswith("retrying (2/4) in ")
    assert e.results[2].attempts == 3 and e.results[5].attempts == 2 and e.results[0].attempts == 1
    assert all(r.outputs["called"] == f"called:row {r.index}" for r in e.results)


async def test_retry_after_is_honoured():
    BEHAVIOUR["flaky"] = {"row 0": 1}
    BEHAVIOUR["retry_after"] = 0.3
    p = pipeline({"type": "test_slow_call", "source": "text", "seconds": 0.0})
    e = engine_for(p, rows(1), max_concurrency=1)
    delays = []
    e.subscribe(lambda event: isinstance(event, ev.RowRetrying) and delays.append(event.delay))
    started = time.perf_counter()
    await e.run()
    assert delays and delays[0] >= 0.3
    assert time.perf_counter() - started >= 0.3


async def test_giving_up_after_max_attempts_fails_only_that_row():
    BEHAVIOUR["flaky"] = {"row 1": 99}
    BEHAVIOUR["rate_limited"] = False
    p = pipeline({"type": "test_slow_call", "source": "text", "seconds": 0.0})
    e = engine_for(p, rows(3), max_concurrency=3)
    await e.run()
    assert e.results[1].status == ev.ERROR
    assert e.results[1].error == "HTTP 429 Too Many Requests (gave up after 4 attempts)"
    assert e.results[1].attempts == 4
    assert e.results[0].status == e.results[2].status == ev.DONE


async def test_blocking_steps_run_in_a_worker_thread_and_the_loop_stays_free():
    p = pipeline({"type": "test_blocking_sleep", "source": "text"})
    e = engine_for(p, rows(4), max_concurrency=4)
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    t = asyncio.ensure_future(ticker())
    await e.run()
    t.cancel()
    assert all(r.outputs["slept_in"] != threading.main_thread().name for r in e.results)
    assert ticks >= 5  # four 50 ms sleeps ran in threads, the loop kept ticking


async def test_cheap_steps_yield_to_the_loop_so_a_window_stays_responsive():
    p = pipeline({"type": "trim", "source": "text"}, {"type": "template", "template": "{text_trimmed}!"})
    e = engine_for(p, rows(30_000), max_concurrency=4)
    gaps = []
    last = time.perf_counter()

    async def ticker():
        nonlocal last
        while True:
            await asyncio.sleep(0)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    t = asyncio.ensure_future(ticker())
    await e.run()
    t.cancel()
    assert len(gaps) > 20, f"the loop got only {len(gaps)} turns during the run"


async def test_workers_are_a_fixed_pool_not_a_task_per_row():
    p = pipeline({"type": "test_slow_call", "source": "text", "seconds": 0.001})
    e = engine_for(p, rows(2000), max_concurrency=5)
    peak_tasks = 0

    def count(event):
        nonlocal peak_tasks
        peak_tasks = max(peak_tasks, len(asyncio.all_tasks()))

    e.subscribe(count)
    await e.run()
    assert peak_tasks <= 5 + 3  # the workers, the test itself, a margin


def test_hundred_thousand_rows_run_with_flat_memory():
    import tracemalloc

    p = pipeline({"type": "trim", "source": "text"}, {"type": "template", "template": "<{text_trimmed}>"})

    def peak_for(n: int) -> int:
        source = rows(n)
        e = engine_for(p, source, max_concurrency=8)
        gc.collect()
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        peak_during = 0

        def watch(event):
            nonlocal peak_during
            if isinstance(event, ev.RowDone) and event.index % 5000 == 0:
                e.results = [None] * len(e.results)  # drop results: measure the engine alone
                peak_during = max(peak_during, tracemalloc.get_traced_memory()[1] - base)

        e.subscribe(watch)
        asyncio.run(e.run())
        tracemalloc.stop()
        return peak_during

    small, large = peak_for(10_000), peak_for(100_000)
    # Ten times the rows must not mean ten times the memory: the engine holds no per-row state
    # beyond results (dropped here), so the working set is the same.
    assert large < small * 2 + 1_000_000, (small, large)


async def test_events_arrive_in_a_sensible_sequence():
    p = pipeline({"type": "test_slow_call", "source": "text", "seconds": 0.001})
    e = engine_for(p, rows(3), max_concurrency=1)
    seen = []
    e.subscribe(lambda event: seen.append(type(event).__name__))
    await e.run()
    assert seen[0] == "RunStarted" and seen[-1] == "RunFinished"
    assert seen[1:-1] == ["RowStarted", "RowDone"] * 3


async def test_a_broken_listener_does_not_break_the_run():
    p = pipeline({"type": "trim", "source": "text"})
    e = engine_for(p, rows(5), max_concurrency=2)

    def broken(event):
        raise RuntimeError("front end bug")

    e.subscribe(broken)
    summary = await e.run()
    assert summary.done == 5
