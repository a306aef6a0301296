"""The HTTP step against a real server on 127.0.0.1: the budget as the server sees it, stop, retries."""

from __future__ import annotations

import asyncio
import time

import pytest

from batchgrid.core.run import events as ev
from batchgrid.core.run.engine import Engine, RetryPolicy
from batchgrid.core.table import Table
from batchgrid.core.util.errors import PipelineError
from batchgrid.core.pipeline.file import Pipeline

FAST_RETRY = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05)


def run_pipeline(steps, records, **kw):
    p = Pipeline.from_dict({"version": 1, "steps": steps})
    p.validate(Table.from_records(records).columns)
    kw.setdefault("retry_policy", FAST_RETRY)
    return Engine(p.steps, Table.from_records(records), **kw)


@pytest.mark.parametrize("limit", [2, 7])
async def test_server_sees_at_most_max_concurrency_requests_and_reaches_it(fake_openai, limit):
    steps = [{"type": "http", "url": fake_openai.url + "/slow?ms={ms}", "extract": {"slept": "$.slept_ms"}}]
    e = run_pipeline(steps, [{"ms": 20 + (i % 5) * 5} for i in range(40)], max_concurrency=limit)
    await e.run()
    assert fake_openai.stats.peak_in_flight == limit
    assert fake_openai.stats.requests == 40
    assert [r.outputs["slept"] for r in e.results] == [20 + (i % 5) * 5 for i in range(40)]


@pytest.mark.parametrize("limit, expected", [(2, 2), (6, 6)])
async def test_three_branches_of_slow_calls_share_the_budget(fake_openai, limit, expected):
    call = lambda col: [{"type": "http", "url": fake_openai.url + "/slow?ms=150", "extract": {col: "$.slept_ms"}}]
    steps = [{"type": "parallel", "branches": {"a": call("a"), "b": call("b"), "c": call("c")}}]
    e = run_pipeline(steps, [{"id": 1}, {"id": 2}], max_concurrency=limit)
    await e.run()
    assert fake_openai.stats.peak_in_flight == expected
    assert all(r.outputs == {"a": 150, "b": 150, "c": 150} for r in e.results)


async def test_stop_closes_open_requests_at_once_and_sends_no_more(fake_openai):
    steps = [{"type": "http", "url": fake_openai.url + "/slow?ms=30000"}]
    e = run_pipeline(steps, [{"id": i} for i in range(20)], max_concurrency=4)
    task = asyncio.ensure_future(e.run())
    assert await fake_openai.wait_for(lambda s: s.in_flight == 4)
    t0 = time.perf_counter()
    e.stop()
    await task
    assert await fake_openai.wait_for(lambda s: s.disconnects == 4, timeout=2.0)
    assert time.perf_counter() - t0 < 1.0
    await asyncio.sleep(0.2)
    assert fake_openai.stats.requests == 4  # nothing new after stop
    assert fake_openai.stats.in_flight == 0
    assert sum(1 for r in e.results if r is not None and r.status == ev.CANCELLED) == 4


async def test_5xx_is_retried_and_4xx_is_not(fake_openai):
    steps = [{"type": "http", "url": fake_openai.url + "/echo?status={status}", "output": "body"}]
    e = run_pipeline(steps, [{"status": 500}, {"status": 404}, {"status": 200}], max_concurrency=3)
    await e.run()
    r500, r404, r200 = e.results
    assert r500.status == ev.ERROR and r500.attempts == 3 and "HTTP 500" in r500.error
    assert r500.error.endswith("(gave up after 3 attempts)")
    assert r404.status == ev.ERROR and r404.attempts == 1 and r404.error.startswith("HTTP 404 Not Found from GET")
    assert r200.status == ev.DONE
    assert fake_openai.stats.by_path["/echo"] == 3 + 1 + 1


async def test_post_json_body_is_built_from_the_row_safely(fake_openai):
    steps = [{"type": "http", "method": "POST", "url": fake_openai.url + "/echo",
              "body": '{"q": "{query}", "n": {n}}', "headers": {"X-Tag": "row-{n}"},
              "extract": {"sent_q": "$.json.q", "sent_n": "$.json.n", "tag": "$.headers.x-tag"}}]
    e = run_pipeline(steps, [{"query": 'say "hi"\nplease', "n": 3}], max_concurrency=1)
    await e.run()
    r = e.results[0]
    assert r.status == ev.DONE, r.error
    assert r.outputs == {"sent_q": 'say "hi"\nplease', "sent_n": 3, "tag": "row-3"}


async def test_connection_refused_is_said_in_words_after_retries():
    steps = [{"type": "http", "url": "http://127.0.0.1:9/nothing"}]
    e = run_pipeline(steps, [{"id": 1}], max_concurrency=1)
    await e.run()
    r = e.results[0]
    assert r.status == ev.ERROR
    assert r.error.startswith("cannot connect to http://127.0.0.1:9/nothing")
    assert r.attempts == 3


async def test_secret_headers_come_from_the_environment(fake_openai, monkeypatch):
    monkeypatch.setenv("BATCHGRID_TEST_TOKEN", "s3cret-value")
    steps = [{"type": "http", "url": fake_openai.url + "/echo", "headers": {"Authorization": "Bearer ${BATCHGRID_TEST_TOKEN}"},
              "extract": {"auth": "$.headers.authorization"}}]
    e = run_pipeline(steps, [{"id": 1}], max_concurrency=1)
    await e.run()
    assert fake_openai.stats.last_headers["authorization"] == "Bearer s3cret-value"
    assert e.results[0].outputs["auth"] == "Bearer •••"  # sent, never written (core/util/secrets.py)


def test_a_literal_token_in_a_header_is_refused():
    with pytest.raises(PipelineError) as info:
        Pipeline.from_dict({"version": 1, "steps": [{"type": "http", "url": "http://x",
                                                      "headers": {"Authorization": "Bearer abcdefghijklmnopqrstuvwxyz012345"}}]})
    assert "steps[0].headers.Authorization: looks like an API key or token" in info.value.messages()[0]


def test_bad_json_path_is_reported_where_it_is():
    with pytest.raises(PipelineError) as info:
        Pipeline.from_dict({"version": 1, "steps": [{"type": "http", "url": "http://x", "extract": {"a": "$.[["}}]})
    assert info.value.messages()[0].startswith("steps[0].extract.a: not a valid JSON path")
