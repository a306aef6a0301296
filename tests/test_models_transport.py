"""The keep-alive transport under the openai SDK for plain-http servers."""

from __future__ import annotations

import asyncio

import openai

from batchgrid.core.run import events as ev
from batchgrid.core.providers import transport
from models_support import prompts

LLM = {"type": "llm", "prompt": "{text}", "stream": False}


def client(server) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key="x", base_url=server.base_url, max_retries=0,
                              http_client=transport.http.AsyncClient(transport=transport.KeepAliveTransport()))


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
    assert fake_openai.stats.connections == 2
    await sdk.close()


async def test_streams_are_read_as_they_arrive_and_the_connection_is_reused(fake_openai):
    fake_openai.configure(stream_delay=0.01)
    sdk = client(fake_openai)
    for _ in range(3):
        stream = await sdk.post("/chat/completions", body={**chat("x y z"), "stream": True}, cast_to=object,
                                stream=True, stream_cls=openai.AsyncStream[object])
        pieces = [c["choices"][0]["delta"].get("content") async for c in stream if c["choices"]]
        assert "".join(p for p in pieces if p) == "echo: x y z"
    assert fake_openai.stats.connections == 1
    await sdk.close()


async def test_closing_the_client_closes_its_connections(fake_openai):
    sdk = client(fake_openai)
    await sdk.post("/chat/completions", body=chat("a"), cast_to=object)
    await sdk.close()
    assert await fake_openai.wait_for(lambda s: len(fake_openai._connections) == 0, timeout=1.0)


async def test_a_slow_answer_times_out_and_is_retried(models):
    models.server.configure(latency_by_prompt={"row 1": 5})
    run = await models.run([LLM], prompts(3), providers=models.providers(timeout=0.2))
    assert run.statuses() == ["done", "error", "done"]
    assert run.results[1].error == "provider 'test' did not answer within 0.2 s (gave up after 4 attempts)"
    assert len([e for e in run.of(ev.RowRetrying) if e.index == 1]) == 3
    assert await models.server.wait_for(lambda s: s.disconnects == 4)  # each timed-out request was closed


def test_only_plain_http_without_a_proxy_uses_it(monkeypatch):
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", "no_proxy",
                 "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert transport.suits("http://127.0.0.1:11434/v1")
    assert not transport.suits("https://api.openai.com/v1")
    monkeypatch.setenv("http_proxy", "http://proxy.corp:3128")
    assert not transport.suits("http://gpu-box:8000/v1")
    monkeypatch.setenv("no_proxy", "gpu-box")
    assert transport.suits("http://gpu-box:8000/v1")


async def test_the_sdks_own_transport_works_too_and_stop_still_closes_requests(models, monkeypatch):
    monkeypatch.setattr(transport, "suits", lambda url: False)  # as for https and proxies
    run = await models.run([{**LLM, "stream": True}], prompts(5))
    assert run.outputs("answer") == [f"echo: row {i}" for i in range(5)]
    models.server.configure(latency=10)
    stopped = models.engine([LLM], prompts(20, "other"), max_concurrency=4)
    task = asyncio.ensure_future(stopped.engine.run())
    assert await models.server.wait_for(lambda s: s.in_flight == 4)
    stopped.engine.stop()
    assert await models.server.wait_for(lambda s: s.disconnects == 4, timeout=1.0)
    await task


async def test_a_run_closes_its_connections_when_it_ends(models):
    run = await models.run([LLM, {"type": "embed", "source": "text"}], prompts(20), max_concurrency=10)
    assert run.statuses() == ["done"] * 20
    assert await models.server.wait_for(lambda s: len(models.server._connections) == 0, timeout=1.0)
