"""Embeddings in real batches (issue 13, part 3): an Embed step gathers its batch from the rows queued
for it, not only from the `max_concurrency` rows in flight; the requests still take the run's slots."""

from __future__ import annotations

import asyncio

import numpy as np

from batchgrid.core.run import events as ev
from fake_openai import embed_text
from models_support import prompts


def watch(run) -> dict:
    """Rows in flight at most (started, not finished), and the requests the server had counted when the
    first row finished."""
    seen = {"in_flight": 0, "most": 0, "requests_at_first_result": None}

    def listener(event) -> None:
        if isinstance(event, ev.RowStarted):
            seen["in_flight"] += 1
            seen["most"] = max(seen["most"], seen["in_flight"])
        elif isinstance(event, ev.RowFinished):
            seen["in_flight"] -= 1
            if seen["requests_at_first_result"] is None:
                seen["requests_at_first_result"] = len(run.server_batches())
    run.engine.subscribe(listener)
    return seen


async def test_a_thousand_rows_are_a_few_full_requests_at_the_default_settings(models):
    run = models.engine([{"type": "embed", "source": "text"}], prompts(1000, "text"))  # max concurrency 8
    run.server_batches = lambda: models.server.stats.embedding_batches
    seen = watch(run)
    await run.engine.run()
    batches = models.server.stats.embedding_batches
    assert run.statuses() == ["done"] * 1000
    assert len(batches) <= 5 and sum(batches) == 1000 and max(batches) == 256  # not 125 requests of 8
    for i in (0, 1, 255, 256, 511, 999):  # every row its own vector, in input order
        assert np.allclose(run.results[i].outputs["text_embedding"], embed_text(f"text {i}"), atol=1e-6)
    assert models.server.stats.peak_in_flight <= 8
    assert seen["most"] <= 8 + 256  # memory stays flat: max concurrency + the batch size
    assert seen["requests_at_first_result"] == 1  # the first rows are done before the second batch goes
    assert run.engine.lending.parked == 0 and not run.engine.lending.tasks


async def test_the_requests_on_the_wire_stay_within_max_concurrency(models):
    models.server.configure(latency=0.05)
    run = await models.run([{"type": "embed", "source": "text", "batch_size": 10}], prompts(200, "text"),
                           max_concurrency=2)
    batches = models.server.stats.embedding_batches
    assert run.statuses() == ["done"] * 200 and sum(batches) == 200
    assert len(batches) <= 25 and max(batches) == 10  # batches of 10 filled from queued rows, not of 2
    assert models.server.stats.peak_in_flight <= 2
    assert np.allclose(run.results[123].outputs["text_embedding"], embed_text("text 123"), atol=1e-6)


async def test_a_step_after_the_embedding_sees_every_row_in_order(models):
    steps = [{"type": "embed", "source": "text", "batch_size": 50},
             {"type": "formula", "formula": '[text] & "!"', "output": "n"}]
    run = await models.run(steps, prompts(120, "text"), max_concurrency=3)
    assert run.statuses() == ["done"] * 120
    assert [r.outputs["n"] for r in run.results] == [f"text {i}!" for i in range(120)]
    assert np.allclose(run.results[77].outputs["text_embedding"], embed_text("text 77"), atol=1e-6)
    assert models.server.stats.embedding_batches == [50, 50, 20]


async def test_a_failed_batch_fails_only_its_rows(models):
    models.server.configure(script={"": [400]})  # the first request is refused
    run = models.engine([{"type": "embed", "source": "text", "batch_size": 20}], prompts(60, "text"),
                        max_concurrency=4)
    run.engine.pause_after_failures = 0  # (the first rows all failing would pause the run)
    await run.engine.run()
    assert run.statuses() == ["error"] * 20 + ["done"] * 40
    assert models.server.stats.embedding_batches[-2:] == [20, 20]


async def test_pause_starts_no_row_and_resume_goes_on(models):
    from engine_helpers import wait_until

    run = models.engine([{"type": "embed", "source": "text"}], prompts(1000, "text"))
    run.engine.subscribe(lambda event: isinstance(event, ev.RowDone) and run.engine.pause())
    task = asyncio.ensure_future(run.engine.run())
    assert await wait_until(lambda: run.engine.paused and run.engine.progress.running == 0)
    p = run.engine.progress
    finished, requests = p.finished, models.server.stats.requests
    assert 0 < finished < 1000 and run.engine.lending.parked == 0  # rows in flight finished; none waits
    assert not await models.server.wait_for(lambda s: s.requests > requests, timeout=0.3)  # nothing new
    assert p.finished == finished
    run.engine.listeners.clear()
    run.engine.resume()
    await task
    assert run.statuses() == ["done"] * 1000
    assert np.allclose(run.results[999].outputs["text_embedding"], embed_text("text 999"), atol=1e-6)


async def test_stop_while_rows_are_parked_cancels_them(models):
    from engine_helpers import wait_until

    models.server.configure(latency=10)
    run = models.engine([{"type": "embed", "source": "text", "batch_size": 100}], prompts(1000, "text"))
    task = asyncio.ensure_future(run.engine.run())
    assert await models.server.wait_for(lambda s: s.in_flight == 1)  # the first 100 rows' batch is on the wire
    assert await wait_until(lambda: run.engine.progress.running >= 100)
    run.engine.stop()
    await task
    statuses = run.statuses()
    assert statuses.count("cancelled") == run.engine.progress.cancelled >= 100
    assert "done" not in statuses and run.engine.lending.parked == 0 and not run.engine.lending.tasks
    assert await models.server.wait_for(lambda s: s.in_flight == 0, timeout=2.0)
