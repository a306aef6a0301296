"""Rate limits against the real test server (issue 10): random 429 and 500 storms end with every
row done; a sliding-window limit is met with few rejections (counted by the server); server wait
hints are read right (an epoch reset is a time) and capped (above the cap the run pauses)."""

from __future__ import annotations

import asyncio
import time

from batchgrid.core.run import events as ev
from batchgrid.core.run.engine import RetryPolicy
from batchgrid.core.util.httputil import retry_after_seconds
from models_support import prompts

LLM = {"type": "llm", "prompt": "{text}", "stream": False}
FAST = RetryPolicy(max_attempts=4, base_delay=0.005, max_delay=0.05)


async def test_random_429s_and_500s_end_with_every_row_done_with_the_default_attempts(models):
    # 20% 429 and 5% 500 at random, and one row rate limited six times in a row: with 4 attempts
    # for transient errors, only the 500s spend them.
    models.server.configure(rate_429=0.2, rate_500=0.05, retry_after=0.01, latency=0.002, seed=5,
                            script={"limited": [429] * 6})
    records = prompts(200)
    records[3] = {"text": "limited"}
    run = await models.run([LLM], records, max_concurrency=20, retry_policy=FAST)
    stats = models.server.stats
    assert stats.statuses[429] > 30 and stats.statuses[500] > 5  # it was a storm
    assert run.statuses() == ["done"] * 200
    assert run.outputs("answer") == [f"echo: {r['text']}" for r in records]
    assert run.results[3].attempts >= 7


async def test_a_sliding_window_limit_is_met_with_few_rejections(models):
    # 60 requests per 0.5 s, answered 429 with the time until the window has room above it.
    models.server.configure(rate_limit=(60, 0.5), latency=0.002)
    run = await models.run([LLM], prompts(900), max_concurrency=20, retry_policy=FAST)
    stats = models.server.stats
    assert run.statuses() == ["done"] * 900
    assert stats.statuses[200] == 900
    rejected = stats.rate_limited / stats.requests
    assert stats.rate_limited > 0  # the limit was met
    assert rejected <= 0.06, (stats.rate_limited, stats.requests)
    print(f"rejected {stats.rate_limited} of {stats.requests}")


async def test_a_lone_429_delays_its_own_row_not_the_whole_provider(models):
    # Row 5's 429 asks for 0.5 s: the other rows go on meanwhile (the row waits, not the provider).
    models.server.configure(script={"row 5": [429]}, retry_after=0.5, latency=0.002)
    retried = asyncio.Event()
    run = models.engine([LLM], prompts(400), max_concurrency=4)
    run.engine.subscribe(lambda e: isinstance(e, ev.RowRetrying) and retried.set())
    await run.engine.run()
    assert run.statuses() == ["done"] * 400
    log = models.server.stats.log
    t429 = next(t for t, _, prompt, status in log if status == 429)
    again = next(t for t, _, prompt, status in log if prompt == "row 5" and status == 200)
    assert again - t429 >= 0.5
    assert sum(1 for t, _, _, status in log if t429 < t < again and status == 200) > 20


async def test_a_rate_limit_storm_holds_the_whole_provider_for_the_servers_wait(models):
    # The first four requests all meet 429 (Retry-After 0.3 s): 429s are the rule, a real limit.
    models.server.configure(script={f"row {i}": [429] for i in range(4)}, retry_after=0.3)
    run = await models.run([LLM], prompts(12), max_concurrency=4)
    assert run.statuses() == ["done"] * 12
    log = [(t, prompt, status) for t, _, prompt, status in models.server.stats.log]
    last429 = max(t for t, _, status in log if status == 429)
    first429 = min(t for t, _, status in log if status == 429)
    assert next(t for t, _, status in log if status == 200) - first429 >= 0.3
    assert [p for t, p, s in log if first429 < t < last429 and s == 200] == []


def test_an_epoch_reset_is_a_time_not_a_duration():
    soon = int(time.time()) + 30
    assert 28 <= retry_after_seconds({"x-ratelimit-reset": str(soon)}) <= 30
    assert retry_after_seconds({"x-ratelimit-reset-requests": "6m0s"}) == 360
    assert retry_after_seconds({"Retry-After": "3600"}) == 3600  # read as said; the engine caps it


async def test_an_epoch_reset_from_the_server_is_waited_as_the_time_it_names(models):
    models.server.configure(script={"row 0": [429]}, retry_after=1, retry_after_style="epoch")
    run = models.engine([LLM], prompts(1))
    first: asyncio.Future = asyncio.get_running_loop().create_future()
    run.engine.subscribe(lambda e: isinstance(e, ev.RowRetrying) and not first.done() and first.set_result(e))
    task = asyncio.ensure_future(run.engine.run())
    retrying = await asyncio.wait_for(first, 10)
    if retrying.delay > 10:
        run.engine.stop()
    await task
    assert retrying.delay <= 2.5  # a second or two, not 56 years
    assert run.statuses() == ["done"]


async def test_a_retry_after_above_the_cap_pauses_the_run_in_the_servers_words(models):
    models.server.configure(script={"row 0": [429]}, retry_after=3600)
    run = models.engine([LLM], prompts(3), max_concurrency=1)
    first: asyncio.Future = asyncio.get_running_loop().create_future()

    def on_event(event):
        if isinstance(event, (ev.RunPaused, ev.RowRetrying)) and not first.done():
            first.set_result(event)

    run.engine.subscribe(on_event)
    task = asyncio.ensure_future(run.engine.run())
    event = await asyncio.wait_for(first, 10)
    assert not task.done() and models.server.stats.requests == 1  # the row waits for Resume; nothing new starts
    run.engine.resume()
    if not isinstance(event, ev.RunPaused):
        run.engine.stop()
    await task
    assert isinstance(event, ev.RunPaused), event
    assert event.reason == ("provider 'test' is rate limiting (HTTP 429: Rate limit reached. Please try again "
                            "later.): the server asks to wait 1 hour")
    assert run.statuses() == ["done"] * 3


async def test_once_the_pace_is_learnt_meeting_the_limit_again_holds_only_the_refused_row():
    from batchgrid.core.providers.limiter import ProviderLimiter

    limiter = ProviderLimiter(ceiling=20)
    for _ in range(40):  # 40 requests went through, then the limit: 429s are the rule now
        sent = await limiter.enter(0)
        limiter.leave(True, sent)
    for _ in range(32):  # refused, one after another (each sent after the previous answer)
        limiter.rate_limited(2.0, time.monotonic())
    assert limiter.pace is not None and limiter.blocked_until > time.monotonic() + 1  # first limit: all wait
    limiter.blocked_until = 0.0  # (its Retry-After has passed)
    limiter.rate_limited(2.0, time.monotonic())  # met again: the pace grew past the limit
    assert limiter.blocked_until == 0.0  # only that row waits its Retry-After; the pace is set again
    assert limiter.pace is not None
