"""Concurrency, provider limits, 429 storms, Retry-After and stop, counted at the server."""

from __future__ import annotations

import asyncio
import time

from batchgrid.core.run import events as ev
from batchgrid.core.run.engine import RetryPolicy
from batchgrid.core.util.errors import RetryableError
from batchgrid.core.providers.limiter import ProviderLimiter, TokenBucket
from models_support import prompts

LLM = {"type": "llm", "prompt": "{text}", "stream": False}


async def test_peak_in_flight_reaches_max_concurrency_and_never_passes_it(models):
    models.server.configure(latency=0.05)
    run = await models.run([LLM], prompts(60), max_concurrency=10)
    assert run.statuses() == ["done"] * 60
    assert models.server.stats.peak_in_flight == 10


async def test_the_provider_limit_is_a_ceiling_below_max_concurrency(models):
    models.server.configure(latency=0.05)
    run = await models.run([LLM], prompts(40), max_concurrency=10, providers=models.providers(max_in_flight=4))
    assert run.statuses() == ["done"] * 40
    assert models.server.stats.peak_in_flight == 4


async def test_a_429_storm_ends_with_every_row_done_with_its_own_answer(models):
    models.server.configure(rate_429=0.2, retry_after=0.01, latency=0.002, seed=3)
    policy = RetryPolicy(max_attempts=12, base_delay=0.005, max_delay=0.05)
    run = await models.run([LLM], prompts(500), max_concurrency=20, retry_policy=policy)
    stats = models.server.stats
    assert run.statuses() == ["done"] * 500
    assert run.outputs("answer") == [f"echo: row {i}" for i in range(500)]
    assert stats.statuses[429] > 50  # it was a storm
    # No request beyond what backoff needs: one per 429, plus the one that succeeded.
    assert stats.per_prompt == {f"row {i}": stats.faults_by_prompt[f"row {i}"] + 1 for i in range(500)}
    assert stats.requests == 500 + stats.statuses[429]
    assert all(r.attempts == stats.faults_by_prompt[f"row {r.index}"] + 1 for r in run.results)


async def test_retry_after_is_honoured_and_holds_the_whole_provider(models):
    # 429s to every request of the first round: a rate limit, not a scattered 429 (which delays
    # only its own row: tests/test_rate_limits.py)
    models.server.configure(script={"row 0": [429], "row 1": [429], "row 2": [429], "row 3": [429]}, retry_after=0.3)
    t0 = time.monotonic()
    run = await models.run([LLM], prompts(12), max_concurrency=4)
    assert run.statuses() == ["done"] * 12
    log = [(t, prompt, status) for t, _, prompt, status in models.server.stats.log]
    t429 = next(t for t, prompt, status in log if status == 429)
    again = next(t for t, prompt, status in log if prompt == "row 0" and status == 200)
    assert again - t429 >= 0.3
    # During the hold only requests already on the wire (at most 3 others) were answered;
    # without it, the 11 other rows would all have run in that time.
    during = [p for t, p, s in log if t429 < t < t429 + 0.25]
    assert len(during) <= 3
    assert time.monotonic() - t0 >= 0.3
    retry = next(e for e in run.of(ev.RowRetrying) if e.index == 0)
    assert retry.delay >= 0.3 and "rate limiting" in retry.reason


async def test_retry_after_ms_and_ratelimit_reset_are_read_too(models):
    models.server.configure(script={"row 0": [429]}, retry_after=None, retry_after_ms=200)
    run = await models.run([LLM], prompts(1))
    assert run.statuses() == ["done"]
    assert run.of(ev.RowRetrying)[0].delay >= 0.2
    models.server.configure(script={"row 1": [429]}, retry_after_ms=None, ratelimit_reset="250ms")
    run = await models.run([LLM], [{"text": "row 1"}])
    assert run.statuses() == ["done"]
    assert run.of(ev.RowRetrying)[0].delay >= 0.25


async def test_stop_closes_open_requests_at_once_and_sends_no_more(models):
    models.server.configure(latency=10)
    run = models.engine([LLM], prompts(50), max_concurrency=10)
    task = asyncio.ensure_future(run.engine.run())
    assert await models.server.wait_for(lambda s: s.in_flight == 10)
    stopped = time.monotonic()
    run.engine.stop()
    assert await models.server.wait_for(lambda s: s.disconnects == 10, timeout=1.0)
    assert time.monotonic() - stopped < 1.0
    await task
    await asyncio.sleep(0.2)
    assert models.server.stats.requests == 10  # no new ones
    assert models.server.stats.in_flight == 0
    assert run.statuses().count("cancelled") == 10


async def test_stop_closes_a_stream_mid_answer(models):
    models.server.configure(stream_delay=5)
    run = models.engine([{**LLM, "stream": True}], prompts(3), max_concurrency=3)
    task = asyncio.ensure_future(run.engine.run())
    assert await models.server.wait_for(lambda s: s.in_flight == 3)
    run.engine.stop()
    assert await models.server.wait_for(lambda s: s.disconnects == 3, timeout=1.0)
    await task
    assert run.statuses() == ["cancelled"] * 3


async def test_requests_per_minute_are_spread_out(models):
    # 1,200 a minute = 20 a second; a bucket holds one second's worth, so 40 requests need about a second
    t0 = time.monotonic()
    run = await models.run([LLM], prompts(40), max_concurrency=40, providers=models.providers(rpm=1200))
    assert run.statuses() == ["done"] * 40
    assert time.monotonic() - t0 >= 0.9


async def test_tokens_per_minute_are_estimated_then_corrected():
    limiter = ProviderLimiter(ceiling=10, tpm=6000)  # 100 tokens a second
    gate = limiter.gate(80)
    async with gate.acquire():
        pass
    assert round(limiter.tokens.level) == 20
    limiter.settle(80, 30)  # the response said 30: 50 come back
    assert round(limiter.tokens.level) == 70


def test_a_token_bucket_waits_for_what_is_missing():
    bucket = TokenBucket(600)  # 10 a second, holds 10
    now = bucket.stamp
    assert bucket.wait_time(10, now) == 0
    bucket.take(10)
    assert abs(bucket.wait_time(1, now) - 0.1) < 1e-9
    assert abs(bucket.wait_time(50, now) - 1.0) < 1e-9  # bigger than the bucket: waits for a full one


async def test_a_429_halves_the_window_once_per_round_then_it_creeps_back():
    limiter = ProviderLimiter(ceiling=16)
    gates = [limiter.gate() for _ in range(4)]
    for g in gates:
        await g.__aenter__()
    for g in gates:  # four 429s to requests sent together: one piece of news
        await g.__aexit__(RetryableError, RetryableError("429"), None)
        g.rate_limited(0.0)
    assert limiter.window == 8
    later = limiter.gate()
    await later.__aenter__()
    await later.__aexit__(RetryableError, RetryableError("429"), None)
    later.rate_limited(0.0)  # sent after the cut: news again
    assert limiter.window == 4
    for _ in range(200):
        async with limiter.gate().acquire():
            pass
    assert limiter.window == 16  # back to the ceiling, never above


async def test_a_full_window_makes_callers_wait_their_turn():
    limiter = ProviderLimiter(ceiling=2)
    inside, peak = 0, 0

    async def call():
        nonlocal inside, peak
        async with limiter.gate().acquire():
            inside += 1
            peak = max(peak, inside)
            await asyncio.sleep(0.01)
            inside -= 1

    tasks = [asyncio.ensure_future(call()) for _ in range(10)]
    await asyncio.sleep(0.005)
    tasks[5].cancel()  # a waiter that goes away passes its turn on
    await asyncio.gather(*tasks, return_exceptions=True)
    assert peak == 2 and limiter.in_flight == 0 and not limiter._waiters
