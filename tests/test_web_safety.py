"""The HTTP step with a stranger's pipeline or data: secrets stay with their origin on a redirect,
and a cell's value lands in the URL or body as that value, never as more URL or more fields.

Against the test server (tests/fake_openai.py) on 127.0.0.1; two servers on two ports are two origins.
"""

from __future__ import annotations

import json
from urllib.parse import quote, unquote

import pytest

from batchgrid.core.pipeline.file import Pipeline
from batchgrid.core.run import events as ev
from batchgrid.core.run.engine import Engine, RetryPolicy
from batchgrid.core.table import Table

FAST_RETRY = RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.05)


async def run_steps(steps, records):
    p = Pipeline.from_dict({"version": 1, "steps": steps})
    p.validate(Table.from_records(records).columns)
    e = Engine(p.steps, Table.from_records(records), max_concurrency=2, retry_policy=FAST_RETRY)
    await e.run()
    return e.results


@pytest.fixture
def other_server():
    """A second test server: another port, so another origin."""
    from fake_openai import FakeOpenAI

    server = FakeOpenAI().start()
    try:
        yield server
    finally:
        server.stop()


SECRET_HEADERS = {"X-Api-Key": "${BG_TEST_TOK}", "Authorization": "Bearer ${BG_TEST_TOK}",
                  "X-Session-Token": "abc-{id}", "Cookie": "sid=${BG_TEST_TOK}",  # never a literal: refused
                  "Proxy-Authorization": "Basic ${BG_TEST_TOK}",
                  "X-Signed": "v=${BG_TEST_TOK}", "X-Tag": "row-{id}"}


async def test_a_redirect_to_another_origin_drops_every_secret_header(fake_openai, other_server, monkeypatch):
    monkeypatch.setenv("BG_TEST_TOK", "tok-123456")
    target = quote(other_server.url + "/echo", safe="")
    steps = [{"type": "http", "url": fake_openai.url + "/redirect?to=" + target, "headers": SECRET_HEADERS,
              "output": "body"}]
    [r] = await run_steps(steps, [{"id": 7}])
    assert r.status == ev.DONE, r.error
    seen = other_server.stats.last_headers
    assert json.loads(r.outputs["body"])["headers"] == seen  # the reply is the second server's
    assert other_server.stats.by_path["/echo"] == 1
    assert seen.get("x-tag") == "row-7"  # a plain header goes on
    for name in SECRET_HEADERS:
        if name != "X-Tag":
            assert name.lower() not in seen, name
    assert "tok-123456" not in json.dumps(seen)


async def test_a_redirect_within_the_origin_keeps_the_headers(fake_openai, monkeypatch):
    monkeypatch.setenv("BG_TEST_TOK", "tok-123456")
    steps = [{"type": "http", "url": fake_openai.url + "/redirect?to=/echo%3Fstep%3D2", "headers": SECRET_HEADERS,
              "extract": {"step": "$.query.step"}}]
    [r] = await run_steps(steps, [{"id": 7}])
    assert r.status == ev.DONE, r.error
    assert r.outputs == {"step": "2"}  # the echo's reply, after the redirect
    seen = fake_openai.stats.last_headers  # (the secret policy hides the key in results: ask the server)
    assert (seen["x-api-key"], seen["authorization"], seen["x-session-token"]) == ("tok-123456", "Bearer tok-123456",
                                                                                   "abc-7")
    assert fake_openai.stats.by_path["/redirect"] == 1 and fake_openai.stats.by_path["/echo"] == 1


async def test_a_redirect_loop_fails_the_row_in_words(fake_openai):
    steps = [{"type": "http", "url": fake_openai.url + "/redirect?to=/redirect%3Fto%3D%2Fredirect"}]
    [r] = await run_steps(steps, [{"id": 1}])
    assert r.status == ev.ERROR
    assert r.error.startswith("too many redirects")


# ---- values are encoded where they land -----------------------------------------------------

def echo_step(url: str, **more):
    return {"type": "http", "url": url, "output": "body", "fail_on_error_status": False, **more}


async def test_a_value_in_the_url_path_stays_one_path_segment(fake_openai):
    values = ["../redirect?to=/x#", "1?admin=1", "..", "a b/c%20d", "ünï"]
    [*results] = await run_steps([echo_step(fake_openai.url + "/echo/{id}")], [{"id": v} for v in values])
    for value, r in zip(values, results, strict=True):
        assert r.status == ev.DONE, r.error
        reply = json.loads(r.outputs["body"])
        assert unquote(reply["path"]) == "/echo/" + value
        assert reply["query"] == {}
    assert fake_openai.stats.by_path["/redirect"] == 0


async def test_a_value_in_the_query_stays_one_query_value(fake_openai):
    values = ["1&admin=1", "1#frag", "a+b c", "x=y?z"]
    [*results] = await run_steps([echo_step(fake_openai.url + "/echo?id={id}&n=1")], [{"id": v} for v in values])
    for value, r in zip(values, results, strict=True):
        assert json.loads(r.outputs["body"])["query"] == {"id": value, "n": "1"}


async def test_a_url_that_starts_with_a_column_takes_that_column_as_the_address(fake_openai):
    steps = [echo_step("{base}/echo?q={q}")]
    [r] = await run_steps(steps, [{"base": fake_openai.url, "q": "a&b"}])
    assert r.status == ev.DONE, r.error
    assert json.loads(r.outputs["body"])["query"] == {"q": "a&b"}


async def test_raw_columns_go_into_the_url_as_they_are(fake_openai):
    steps = [echo_step(fake_openai.url + "/echo?{params}&id={id}", raw_in_url=["params"])]
    [r] = await run_steps(steps, [{"params": "a=1&b=2", "id": "3&c=4"}])
    assert json.loads(r.outputs["body"])["query"] == {"a": "1", "b": "2", "id": "3&c=4"}


async def test_a_form_body_value_stays_one_field(fake_openai):
    body = "name = {name}\nnote={note}"
    steps = [echo_step(fake_openai.url + "/echo", method="POST", body=body, body_format="form")]
    [r] = await run_steps(steps, [{"name": "Ann&admin=1", "note": " two\nadmin=1 "}])
    reply = json.loads(r.outputs["body"])
    from urllib.parse import parse_qs

    assert parse_qs(reply["body"], keep_blank_values=True) == {"name": ["Ann&admin=1"], "note": [" two\nadmin=1 "]}


async def test_a_json_body_value_stays_one_string(fake_openai):
    steps = [echo_step(fake_openai.url + "/echo", method="POST", body='{"q": "{q}", "n": 1}')]
    [r] = await run_steps(steps, [{"q": '", "admin": true, "x": "\n'}])
    assert json.loads(r.outputs["body"])["json"] == {"q": '", "admin": true, "x": "\n', "n": 1}


def test_a_raw_column_that_is_not_in_the_url_is_a_problem():
    from batchgrid.core.util.errors import PipelineError

    with pytest.raises(PipelineError) as info:
        Pipeline.from_dict({"version": 1, "steps": [{"type": "http", "url": "http://x/{id}", "raw_in_url": ["idd"]}]})
    assert info.value.messages()[0] == 'steps[0].raw_in_url: "idd" is not a {column} of the URL'


async def test_a_line_break_in_a_header_value_fails_the_row_in_words(fake_openai):
    steps = [{"type": "http", "url": fake_openai.url + "/echo", "headers": {"X-Tag": "row-{id}"}}]
    [r] = await run_steps(steps, [{"id": "1\r\nX-Admin: 1"}])
    assert (r.status, r.attempts) == (ev.ERROR, 1)
    assert r.error == "the header X-Tag would hold a line break after filling in; a header value is one line"
    assert fake_openai.stats.requests == 0
