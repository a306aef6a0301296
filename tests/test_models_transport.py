"""What the HTTP layer under the model steps must do, through the openai SDK's own client (httpx2):
keep connections alive and reuse them, read streams as they arrive (chunked or ended by the
connection's close), never send a POST twice on its own, and close what a stop or a run's end
leaves open."""

from __future__ import annotations

import asyncio
import itertools

from batchgrid.core.providers.client import make_client
from batchgrid.core.providers.profiles import resolve_profile
from batchgrid.core.run import events as ev
from models_support import KEY, prompts

LLM = {"type": "llm", "prompt": "{text}", "stream": False}
HTTP_POST = {"type": "http", "method": "POST", "url": "{url}/echo?prompt={text}", "body": '{"q": "{text}"}',
             "output": "reply"}


def client(server):
    """The SDK client a run's provider gets for this server."""
    return make_client(resolve_profile("test", {"test": {"preset": "openai", "base_url": server.base_url}}), "x")


def chat(text: str) -> dict:
    return {"model": "m", "messages": [{"role": "user", "content": text}]}


async def test_connections_are_kept_and_reused(fake_openai):
    sdk = client(fake_openai)
    for i in range(30):
        data = await sdk.post("/chat/completions", body=chat(f"q{i}"), cast_to=object)
        assert data["choices"][0]["message"]["content"] == f"echo: q{i}"
    await asyncio.gather(*(sdk.post("/chat/completions", body=chat(f"p{i}"), cast_to=object) for i in range(10)))
    assert fake_openai.stats.requests == 40
    assert fake_openai.stats.connections == 10  # one per request in flight at once, none per request
    await sdk.close()


async def test_a_connection_the_server_closed_while_idle_is_replaced_quietly(fake_openai):
    sdk = client(fake_openai)
    await sdk.post("/chat/completions", body=chat("a"), cast_to=object)
    fake_openai.drop_idle_connections()
    data = await sdk.post("/chat/completions", body=chat("b"), cast_to=object)
    assert data["choices"][0]["message"]["content"] == "echo: b"
    assert (fake_openai.stats.requests, fake_openai.stats.connections) == (2, 2)
    await sdk.close()


async def test_chunked_streams_are_read_and_the_connection_is_reused(models):
    models.server.configure(stream_delay=0.001)
    run = await models.run([{**LLM, "stream": True}], prompts(5), max_concurrency=1)
    assert run.outputs("answer") == [f"echo: row {i}" for i in range(5)]
    assert models.server.stats.connections == 1


async def test_a_stream_that_ends_with_the_connection_grows_in_its_cell_as_it_arrives(models):
    """llama.cpp-style servers end an SSE body by closing the connection (no length, no chunks):
    the answer must still appear piece by piece, not all at once when the body has ended."""
    models.server.configure(stream_close=True, stream_delay=0.2)
    words = "one two three four five six seven eight"
    run = models.engine([{**LLM, "stream": True}], [{"text": words}])
    seen = []  # (text so far, streams the server had ended when it arrived)

    def on_event(event) -> None:
        if isinstance(event, ev.RowPartial) and event.text:
            seen.append((event.text, models.server.stats.streams_ended))

    run.engine.subscribe(on_event)
    await run.engine.run()
    assert run.outputs("answer") == [f"echo: {words}"]
    texts = [text for text, _ in seen]
    assert texts[-1] == f"echo: {words}"
    assert all(len(a) < len(b) and b.startswith(a) for a, b in itertools.pairwise(texts))
    assert seen[0][1] == 0  # the first piece was shown while the server was still sending
    assert models.server.stats.connections == 1


async def test_streams_ended_by_the_connection_work_for_many_rows(models):
    models.server.configure(stream_close=True)
    run = await models.run([{**LLM, "stream": True}], prompts(20), max_concurrency=5)
    assert run.outputs("answer") == [f"echo: row {i}" for i in range(20)]
    assert models.server.stats.streams_ended == 20


async def test_a_stream_cut_short_by_the_connection_is_retried_not_taken_as_the_answer(models):
    """When the connection's close is what ends the body, a server that dies mid-answer looks like
    a complete body: the answer's own end (a finish reason, or [DONE]) tells them apart."""
    models.server.configure(stream_close=True, cut_stream={"row 0": 1})
    run = await models.run([{**LLM, "stream": True}], prompts(1))
    assert run.outputs("answer") == ["echo: row 0"]
    assert run.results[0].attempts == 2 == models.server.stats.per_prompt["row 0"]
    assert run.of(ev.RowRetrying)[0].reason == "the server ended the stream early"


async def test_a_post_dropped_on_a_kept_connection_is_not_sent_again_behind_the_engines_back(models):
    """The first row leaves a keep-alive connection in the pool; the server reads the second
    row's request on it and drops the connection. The HTTP layer must not re-send it (the
    server may have started, and billed, the work): the engine's retry is the second attempt."""
    models.server.configure(drop_after_read={"dropped": 1})
    run = await models.run([LLM], [{"text": "first"}, {"text": "dropped once"}], max_concurrency=1)
    assert run.outputs("answer") == ["echo: first", "echo: dropped once"]
    assert models.server.stats.dropped == 1
    assert models.server.stats.per_prompt["dropped once"] == 2
    assert run.results[1].attempts == 2
    assert [e.attempt for e in run.of(ev.RowRetrying)] == [2]


async def test_a_server_that_always_drops_the_request_fails_the_row_after_the_engines_attempts(models):
    models.server.configure(drop_after_read={"dropped": 100})
    run = await models.run([LLM], [{"text": "warm"}, {"text": "dropped always"}], max_concurrency=1)
    assert run.statuses() == ["done", "error"]
    assert models.server.stats.per_prompt["dropped always"] == 4 == run.results[1].attempts
    error = run.results[1].error
    assert error.startswith("the server at http://127.0.0.1:") and "\n" not in error
    assert "closed the connection without an answer" in error
    assert error.endswith("(gave up after 4 attempts)")


async def test_an_http_step_post_dropped_on_a_kept_connection_is_not_sent_again(fake_openai):
    from models_support import make_engine

    fake_openai.configure(drop_after_read={"dropped": 1})
    rows = [{"url": fake_openai.url, "text": "first"}, {"url": fake_openai.url, "text": "dropped"}]
    run = make_engine([HTTP_POST], rows, data_dir=None, max_concurrency=1)
    await run.engine.run()
    assert run.statuses() == ["done", "done"]
    assert fake_openai.stats.by_path["/echo"] == 3  # first, dropped, the engine's second attempt
    assert run.results[1].attempts == 2


async def test_a_slow_answer_times_out_and_is_retried(models):
    models.server.configure(latency_by_prompt={"row 1": 5})
    run = await models.run([LLM], prompts(3), providers=models.providers(timeout=0.2))
    assert run.statuses() == ["done", "error", "done"]
    assert run.results[1].error == "provider 'test' did not answer within 0.2 s (gave up after 4 attempts)"
    assert len([e for e in run.of(ev.RowRetrying) if e.index == 1]) == 3
    assert await models.server.wait_for(lambda s: s.disconnects == 4)  # each timed-out request was closed
    assert models.server.stats.per_prompt["row 1"] == 4


async def test_stop_closes_requests_in_flight(models):
    models.server.configure(latency=10)
    stopped = models.engine([LLM], prompts(20, "other"), max_concurrency=4)
    task = asyncio.ensure_future(stopped.engine.run())
    assert await models.server.wait_for(lambda s: s.in_flight == 4)
    stopped.engine.stop()
    assert await models.server.wait_for(lambda s: s.disconnects == 4, timeout=1.0)
    await task


async def test_stop_closes_a_stream_in_flight(models):
    models.server.configure(stream_delay=10)
    stopped = models.engine([{**LLM, "stream": True}], prompts(2), max_concurrency=2)
    task = asyncio.ensure_future(stopped.engine.run())
    assert await models.server.wait_for(lambda s: s.stream_events == 2)  # each stream's role chunk, then a pause
    stopped.engine.stop()
    assert await models.server.wait_for(lambda s: s.disconnects == 2, timeout=1.0)
    await task


async def test_closing_the_client_closes_its_connections(fake_openai):
    sdk = client(fake_openai)
    await sdk.post("/chat/completions", body=chat("a"), cast_to=object)
    await sdk.close()
    assert await fake_openai.wait_for(lambda s: len(fake_openai._connections) == 0, timeout=1.0)


async def test_a_run_closes_its_connections_when_it_ends(models):
    run = await models.run([LLM, {"type": "embed", "source": "text"}], prompts(20), max_concurrency=10)
    assert run.statuses() == ["done"] * 20
    assert await models.server.wait_for(lambda s: len(models.server._connections) == 0, timeout=1.0)


def test_the_key_is_sent_and_no_environment_key_is_picked_up(fake_openai, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-environment")
    sdk = make_client(resolve_profile("test", {"test": {"preset": "openai", "base_url": fake_openai.base_url}}), KEY)
    assert sdk.api_key == KEY
    assert sdk.max_retries == 0
