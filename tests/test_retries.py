"""The engine's retry policy (issue 10): a server that restarts is waited for, not failed row by
row; a run whose rows keep failing the same way pauses and says it once; rate limits do not
spend a row's attempts; a server that asks for too long a wait pauses the run in its words.

The server here is a test step that raises what the provider raises (ServerUnreachable, 429s):
tests/test_server_restart.py and tests/test_rate_limits.py do the same against the real test server.
"""

from __future__ import annotations

import asyncio
from typing import Any, Mapping

import pytest

from batchgrid.core.pipeline.file import Pipeline
from batchgrid.core.run import events as ev
from batchgrid.core.run.engine import Engine, RetryPolicy
from batchgrid.core.steps.base import OUTPUT, SOURCE, REGISTRY, Param, Step, register
from batchgrid.core.steps.context import RunResources
from batchgrid.core.table import Table
from batchgrid.core.util.errors import ServerUnreachable

import engine_helpers
from engine_helpers import BEHAVIOUR, CallMeter

URL = "http://127.0.0.1:8080/v1"


def policy(**overrides: Any) -> RetryPolicy:
    p = RetryPolicy(max_attempts=2, base_delay=0.001, max_delay=0.01)
    for name, value in overrides.items():
        setattr(p, name, value)
    return p


class Server:
    """A server the test step calls: up or down (refusing connections), counted."""

    def __init__(self):
        self.down = False
        self.answered = 0
        self.refused = 0
        self.in_flight = 0
        self.back_after_refusals: int | None = None  # comes back by itself after this many refusals
        self.watching = False   # counting probes from now on
        self.probing = 0
        self.peak_probes = 0    # the most calls at once among those sent while down and watched
        self.on_answer = None   # callback(answered)

    async def call(self, value: str) -> str:
        watched = self.watching and self.down  # sent after the run began to wait: a probe
        self.in_flight += 1
        self.probing += watched
        self.peak_probes = max(self.peak_probes, self.probing)
        try:
            await asyncio.sleep(0.001)
            if self.down:
                self.refused += 1
                if self.back_after_refusals is not None and self.refused >= self.back_after_refusals:
                    self.down = False
                raise ServerUnreachable(f"nothing is listening at {URL} (it answered before)", url=URL)
            self.answered += 1
            if self.on_answer is not None:
                self.on_answer(self.answered)
            return f"answer:{value}"
        finally:
            self.in_flight -= 1
            self.probing -= watched


SERVER = Server()


class ServerCall(Step):
    type = "test_server_call"
    title = "Server call (test)"
    group = "Web"
    description = "test step"
    external = True
    params = (Param("source", SOURCE, "", required=True), Param("output", OUTPUT, "answer"))

    async def run(self, row: Mapping[str, Any], ctx) -> dict[str, Any]:
        value = self.source_text(row)
        return {self.output_name(): await ctx.call(lambda: SERVER.call(value))}


if ServerCall.type not in REGISTRY:
    register(ServerCall)


@pytest.fixture(autouse=True)
def fresh_state():
    global SERVER
    SERVER.__dict__.update(Server().__dict__)
    engine_helpers.METER.__dict__.update(CallMeter().__dict__)
    BEHAVIOUR.clear()
    yield
    BEHAVIOUR.clear()


def engine(steps: list[dict], n: int, *, make=lambda i: f"row {i}", settings: dict | None = None,
           max_concurrency: int = 8, retry_policy: RetryPolicy | None = None) -> tuple[Engine, list]:
    p = Pipeline.from_dict({"version": 1, "steps": steps})
    table = Table.from_records([{"id": i, "text": make(i)} for i in range(n)])
    e = Engine(p.steps, table, max_concurrency=max_concurrency, retry_policy=retry_policy or policy(),
               resources=RunResources(settings=settings or {}))
    seen: list = []
    e.subscribe(seen.append)
    return e, seen


def of(seen: list, kind) -> list:
    return [e for e in seen if isinstance(e, kind)]


def statuses(e: Engine) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in e.results:
        key = r.status if r else "not run"
        counts[key] = counts.get(key, 0) + 1
    return counts


CALL = {"type": "test_server_call", "source": "text"}


# ---- a server that stops answering (a restart) --------------------------------------------
async def test_rows_wait_for_a_restarting_server_without_spending_attempts_and_all_finish():
    e, seen = engine([CALL], 120, retry_policy=policy(max_attempts=2, server_retry_cap=0.02))
    SERVER.on_answer = lambda n: n == 10 and setattr(SERVER, "down", True)  # killed after 10 answers
    SERVER.back_after_refusals = 40                                          # and back later
    waiting = []

    def watch(event):
        if type(event).__name__ == "RunWaiting":
            waiting.append(event)
            SERVER.watching = True  # from the first "waiting" on, one probe at a time

    e.subscribe(watch)
    summary = await e.run()
    assert statuses(e) == {ev.DONE: 120}
    assert [r.outputs["answer"] for r in e.results] == [f"answer:row {i}" for i in range(120)]
    assert SERVER.refused == 40
    assert waiting and waiting[0].url == URL
    assert all(0 < w.retry_in <= 0.02 for w in waiting)
    assert "waiting for the server at http://127.0.0.1:8080/v1 (retrying in" in waiting[0].describe()
    assert SERVER.peak_probes == 1  # the rows do not hammer it: one probe at a time
    assert summary.failed == 0
    assert e.progress.waiting == ""  # nothing left to wait for


async def test_a_server_silent_for_too_long_pauses_the_run_saying_so_and_resume_goes_on():
    e, seen = engine([CALL], 30, max_concurrency=4,
                     retry_policy=policy(server_retry_cap=0.01, server_patience=0.1))
    SERVER.on_answer = lambda n: n == 5 and setattr(SERVER, "down", True)

    def on_pause(event):
        if isinstance(event, ev.RunPaused):
            SERVER.down = False
            asyncio.get_running_loop().call_soon(e.resume)

    e.subscribe(on_pause)
    await e.run()
    paused = of(seen, ev.RunPaused)
    assert len(paused) == 1
    assert paused[0].reason == f"the server at {URL} has not answered for 0.1 s"
    assert paused[0].kind == "server"
    assert statuses(e) == {ev.DONE: 30}


async def test_stop_ends_a_wait_for_the_server_at_once():
    e, seen = engine([CALL], 20, max_concurrency=4, retry_policy=policy(base_delay=3600, server_retry_cap=3600))
    SERVER.down = True  # (it answered before: the step says ServerUnreachable)
    e.subscribe(lambda event: type(event).__name__ == "RunWaiting" and e.stop())
    summary = await asyncio.wait_for(e.run(), 10)  # a guard against a hang, not a measure
    assert e.outcome == ("stopped", "")
    assert summary.cancelled == 4 and summary.failed == 0


# ---- fail fast: the same error over and over ---------------------------------------------
BOOM = {"type": "test_slow_call", "source": "text", "seconds": 0.0}


async def test_when_the_first_rows_all_fail_the_same_way_the_run_pauses_and_says_it_once():
    e, seen = engine([BOOM], 10_000, make=lambda i: "boom", max_concurrency=4)
    e.subscribe(lambda event: isinstance(event, ev.RunPaused) and asyncio.get_running_loop().call_soon(e.stop))
    summary = await e.run()
    paused = of(seen, ev.RunPaused)
    assert len(paused) == 1
    assert paused[0].reason.startswith("cannot process 'boom'")
    assert "the first 3 rows all failed with this error" in paused[0].reason
    assert summary.failed <= 3 + 4  # the first rows, and those in flight when it paused
    assert e.outcome == ("stopped", "")


async def test_n_rows_in_a_row_failing_the_same_way_pause_the_run_and_resume_anyway_goes_on():
    make = lambda i: f"row {i}" if i < 10 else "boom"
    e, seen = engine([BOOM], 100, make=make, max_concurrency=2, settings={"pause_after_failures": 20})
    failed_at_pause = []

    def on_pause(event):
        if isinstance(event, ev.RunPaused):
            failed_at_pause.append(e.progress.failed)
            asyncio.get_running_loop().call_soon(e.resume)  # the user says: Resume anyway

    e.subscribe(on_pause)
    summary = await e.run()
    paused = of(seen, ev.RunPaused)
    assert len(paused) == 1  # resumed anyway: not asked again for the same error
    assert paused[0].reason == "20 rows in a row failed with the same error: cannot process 'boom'"
    assert paused[0].kind == "failures"
    assert 20 <= failed_at_pause[0] <= 22
    assert summary.done == 10 and summary.failed == 90


async def test_pause_after_failures_0_turns_it_off():
    e, seen = engine([BOOM], 60, make=lambda i: "boom", max_concurrency=4, settings={"pause_after_failures": 0})
    summary = await e.run()
    assert of(seen, ev.RunPaused) == []
    assert summary.failed == 60


async def test_different_errors_do_not_pause():
    e, seen = engine([{"type": "test_slow_call", "source": "text", "seconds": 0.0},
                      {"type": "parse_json", "source": "text", "output": "parsed"}], 60,
                     make=lambda i: "boom" if i % 2 else f"not json {i}", max_concurrency=1)
    summary = await e.run()
    assert of(seen, ev.RunPaused) == []
    assert summary.failed == 60


# ---- rate limits and server-suggested waits ---------------------------------------------
async def test_rate_limited_retries_do_not_spend_the_attempts_for_transient_errors():
    BEHAVIOUR["flaky"] = {"row 1": 6}  # six 429s in a row; max_attempts is 2
    e, seen = engine([BOOM], 3, max_concurrency=3)
    summary = await e.run()
    assert summary.done == 3
    assert e.results[1].attempts == 7
    retries = [r for r in of(seen, ev.RowRetrying) if r.index == 1]
    assert len(retries) == 6
    assert retries[0].describe().startswith("rate limited, retrying in 0 s: HTTP 429")


async def test_a_transient_error_still_gives_up_after_max_attempts():
    BEHAVIOUR["flaky"] = {"row 1": 99}
    BEHAVIOUR["rate_limited"] = False  # a 503, say
    e, seen = engine([BOOM], 3, max_concurrency=3, retry_policy=policy(max_attempts=3))
    await e.run()
    assert e.results[1].status == ev.ERROR
    assert e.results[1].error == "HTTP 429 Too Many Requests (gave up after 3 attempts)"
    assert e.results[0].status == e.results[2].status == ev.DONE


async def test_a_wait_above_the_cap_pauses_the_run_in_the_servers_words():
    BEHAVIOUR["flaky"] = {"row 0": 1}
    BEHAVIOUR["retry_after"] = 3600
    e, seen = engine([BOOM], 4, max_concurrency=2)
    first: asyncio.Future = asyncio.get_running_loop().create_future()

    def on_event(event):
        if isinstance(event, (ev.RunPaused, ev.RowRetrying)) and not first.done():
            first.set_result(event)
        if isinstance(event, ev.RunPaused):
            asyncio.get_running_loop().call_soon(e.resume)

    e.subscribe(on_event)
    task = asyncio.ensure_future(e.run())
    event = await asyncio.wait_for(first, 10)
    if not isinstance(event, ev.RunPaused):
        e.stop()
        await task
    assert isinstance(event, ev.RunPaused), event
    assert event.reason == "HTTP 429 Too Many Requests: the server asks to wait 1 hour"
    summary = await task
    assert summary.done == 4  # resumed: the row tried again at once
