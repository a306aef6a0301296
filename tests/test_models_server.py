"""The test server itself: what it answers and what it counts (other tests rely on both)."""

from __future__ import annotations

import asyncio
import json

import httpx2 as httpx
import openai
import pytest


def chat(content: str, **extra):
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}], **extra}


async def test_chat_answers_are_a_function_of_the_prompt_and_counted(fake_openai):
    async with httpx.AsyncClient() as http:
        replies = await asyncio.gather(*[http.post(fake_openai.base_url + "/chat/completions", json=chat(f"p{i}"))
                                         for i in range(5)])
    assert [r.json()["choices"][0]["message"]["content"] for r in replies] == [f"echo: p{i}" for i in range(5)]
    assert replies[0].json()["usage"] == {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
    assert fake_openai.stats.requests == 5
    assert fake_openai.stats.per_prompt == {f"p{i}": 1 for i in range(5)}
    assert fake_openai.stats.in_flight == 0


async def test_streaming_through_the_openai_sdk(fake_openai):
    client = openai.AsyncOpenAI(api_key="x", base_url=fake_openai.base_url, max_retries=0)
    stream = await client.chat.completions.create(**chat("one two three"), stream=True,
                                                  stream_options={"include_usage": True})
    pieces, usage = [], None
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        usage = chunk.usage or usage
    await client.close()
    assert "".join(pieces) == "echo: one two three"
    assert len(pieces) == 4
    assert usage.completion_tokens == 4


async def test_peak_in_flight_and_latency(fake_openai):
    fake_openai.configure(latency=0.1)
    async with httpx.AsyncClient() as http:
        await asyncio.gather(*[http.get(fake_openai.url + "/slow?ms=0") for _ in range(12)])
    assert fake_openai.stats.peak_in_flight == 12
    assert fake_openai.stats.in_flight == 0


async def test_client_disconnect_is_counted_at_once(fake_openai):
    async with httpx.AsyncClient() as http:
        task = asyncio.ensure_future(http.get(fake_openai.url + "/slow?ms=10000"))
        assert await fake_openai.wait_for(lambda s: s.in_flight == 1)
        task.cancel()
        assert await fake_openai.wait_for(lambda s: s.disconnects == 1, timeout=1.0)
    assert fake_openai.stats.in_flight == 0


async def test_faults_api_key_and_models(fake_openai):
    fake_openai.configure(script={"flaky": [429, 500]}, retry_after=2, api_key="sk-right", models=["m1"])
    good = {"Authorization": "Bearer sk-right"}
    async with httpx.AsyncClient() as http:
        url = fake_openai.base_url + "/chat/completions"
        first = await http.post(url, json={**chat("flaky"), "model": "m1"}, headers=good)
        second = await http.post(url, json={**chat("flaky"), "model": "m1"}, headers=good)
        third = await http.post(url, json={**chat("flaky"), "model": "m1"}, headers=good)
        wrong_key = await http.post(url, json={**chat("x"), "model": "m1"}, headers={"Authorization": "Bearer no"})
        unknown_model = await http.post(url, json={**chat("x"), "model": "m2"}, headers=good)
    assert (first.status_code, first.headers["retry-after"]) == (429, "2")
    assert second.status_code == 500
    assert third.status_code == 200
    assert wrong_key.status_code == 401
    assert unknown_model.status_code == 404 and unknown_model.json()["error"]["code"] == "model_not_found"
    assert fake_openai.stats.faults_by_prompt == {"flaky": 2}


async def test_rate_faults_follow_the_configured_fraction(fake_openai):
    fake_openai.configure(rate_429=0.2, seed=1)
    async with httpx.AsyncClient() as http:
        replies = [await http.get(fake_openai.url + "/slow") for _ in range(200)]
    share = sum(r.status_code == 429 for r in replies) / 200
    assert 0.1 < share < 0.3


async def test_embeddings_record_batches_and_similar_texts_are_close(fake_openai):
    async with httpx.AsyncClient() as http:
        reply = await http.post(fake_openai.base_url + "/embeddings",
                                json={"model": "e", "input": ["cats purr softly", "cats purr", "stock market"]})
        await http.post(fake_openai.base_url + "/embeddings", json={"model": "e", "input": "one"})
    vectors = [d["embedding"] for d in reply.json()["data"]]
    dot = lambda a, b: sum(x * y for x, y in zip(a, b))  # noqa: E731
    assert dot(vectors[0], vectors[1]) > dot(vectors[0], vectors[2])
    assert fake_openai.stats.embedding_batches == [3, 1]


async def test_json_answers_follow_the_requested_schema(fake_openai):
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "n": {"type": "integer"},
                                               "tag": {"type": "string", "enum": ["a", "b"]}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    async with httpx.AsyncClient() as http:
        reply = await http.post(fake_openai.base_url + "/chat/completions", json=chat("two words", response_format=fmt))
    assert json.loads(reply.json()["choices"][0]["message"]["content"]) == {"name": "two words", "n": 2, "tag": "a"}


async def test_control_endpoints_configure_and_report(fake_openai):
    async with httpx.AsyncClient() as http:
        await http.post(fake_openai.url + "/_config", json={"latency": 0.01})
        await http.post(fake_openai.url + "/echo", content=b"hi")
        stats = (await http.get(fake_openai.url + "/_stats")).json()
    assert fake_openai.options["latency"] == 0.01
    assert stats["requests"] == 1 and stats["by_path"] == {"/echo": 1}


def test_unknown_option_is_refused(fake_openai):
    with pytest.raises(TypeError):
        fake_openai.configure(latencyy=1)


async def test_plain_endpoints_take_a_prompt_for_scripts_and_slow_rows(fake_openai):
    fake_openai.configure(script={"flaky": [503]}, latency_by_prompt={"slow": 0.2})
    async with httpx.AsyncClient() as http:
        first = await http.get(fake_openai.url + "/slow?prompt=flaky")
        second = await http.get(fake_openai.url + "/slow?prompt=flaky")
        task = asyncio.ensure_future(http.get(fake_openai.url + "/echo?prompt=slow"))
        assert await fake_openai.wait_for(lambda s: s.in_flight == 1)
        await task
    assert (first.status_code, second.status_code) == (503, 200)
    assert fake_openai.stats.log[-1][2:] == ("slow", 200)


async def test_streams_can_end_with_the_connection_instead_of_a_last_chunk(fake_openai):
    fake_openai.configure(stream_close=True)
    reader, writer = await asyncio.open_connection(fake_openai.host, fake_openai.port)
    body = json.dumps(chat("one two", stream=True)).encode()
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    answer = await reader.read()  # to the end: the server closes the connection
    writer.close()
    head, _, events = answer.partition(b"\r\n\r\n")
    assert b"Connection: close" in head
    assert b"Transfer-Encoding" not in head and b"Content-Length" not in head
    assert events.startswith(b"data: {") and events.endswith(b"data: [DONE]\n\n")
    assert (fake_openai.stats.streams_ended, fake_openai.stats.stream_events) == (1, 6)  # role, "echo: one two" in 3 pieces, stop, DONE


async def test_requests_can_be_read_and_then_dropped_unanswered(fake_openai):
    fake_openai.configure(drop_after_read={"drop": 1})
    async with httpx.AsyncClient() as http:
        with pytest.raises(httpx.RemoteProtocolError):
            await http.post(fake_openai.base_url + "/chat/completions", json=chat("drop me"))
        second = await http.post(fake_openai.base_url + "/chat/completions", json=chat("drop me"))
    assert second.json()["choices"][0]["message"]["content"] == "echo: drop me"
    assert (fake_openai.stats.requests, fake_openai.stats.dropped, fake_openai.stats.per_prompt["drop me"]) == (2, 1, 2)
