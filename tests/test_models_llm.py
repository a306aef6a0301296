"""The LLM step against the fake OpenAI server: answers, streaming, settings, usage, cost, errors."""

from __future__ import annotations

import json
import socket

import pytest

from batchgrid.core.run import events as ev
from batchgrid.core.util.errors import RetryableError, StepError
from batchgrid.core.providers.client import _sse_event
from batchgrid.core.providers.prices import DEFAULT_PRICES
from models_support import KEY, KEY_ENV, prompts

LLM = {"type": "llm", "prompt": "{text}"}


async def test_every_row_gets_the_answer_to_its_own_prompt(models):
    run = await models.run([LLM], prompts(40))
    assert run.statuses() == ["done"] * 40
    assert run.outputs("answer") == [f"echo: row {i}" for i in range(40)]
    assert models.server.stats.per_prompt == {f"row {i}": 1 for i in range(40)}


async def test_tokens_and_cost_per_row_come_from_usage_and_prices(models):
    run = await models.run([LLM], prompts(10))
    price = DEFAULT_PRICES["gpt-4o-mini"]
    for r in run.results:
        # the server counts words: "row N" is 2 in; "echo: row N" is 3 out
        assert (r.tokens_in, r.tokens_out) == (2, 3)
        assert abs(r.cost - (2 * price["input"] + 3 * price["output"]) / 1e6) < 1e-12
    p = run.engine.progress
    assert (p.tokens_in, p.tokens_out) == (20, 30)
    assert abs(p.cost - sum(r.cost for r in run.results)) < 1e-12


async def test_streaming_publishes_the_growing_answer(models):
    models.server.configure(stream_delay=0.005)
    run = await models.run([LLM], [{"text": "one two three four"}])
    partials = [e.text for e in run.of(ev.RowPartial) if e.column == "answer"]
    assert partials == ["echo: ", "echo: one ", "echo: one two ", "echo: one two three ", "echo: one two three four"]
    assert run.outputs("answer") == ["echo: one two three four"]
    assert run.results[0].tokens_out == 5  # usage arrives in the stream's last chunk


async def test_a_stream_that_breaks_off_is_retried_from_the_start(models):
    models.server.configure(cut_stream={"row 1": 1})
    run = await models.run([LLM], prompts(3))
    assert run.statuses() == ["done"] * 3
    assert run.outputs("answer")[1] == "echo: row 1"
    assert run.results[1].attempts == 2
    assert run.of(ev.RowRetrying)[0].reason == "the server ended the stream early"
    partials = [e.text for e in run.of(ev.RowPartial) if e.index == 1]
    assert partials[-1] == "echo: row 1" and "echo: " in partials[:-1]  # it started over


def test_an_error_event_or_garbage_inside_a_stream_is_said_in_words():
    assert _sse_event("[DONE]") is None
    assert _sse_event('{"choices": []}') == {"choices": []}
    with pytest.raises(RetryableError, match="the server broke off the answer: overloaded"):
        _sse_event('{"error": {"message": "overloaded"}}')
    with pytest.raises(StepError, match="the stream sent something that is not JSON: <html>"):
        _sse_event("<html>")


async def test_without_streaming_there_are_no_partials(models):
    run = await models.run([{**LLM, "stream": False}], prompts(3))
    assert run.of(ev.RowPartial) == []
    assert run.outputs("answer") == ["echo: row 0", "echo: row 1", "echo: row 2"]


async def test_messages_and_sampling_settings_reach_the_server(models):
    seen = []
    models.server.configure(reply=lambda prompt, request: seen.append(request) or "ok")
    step = {**LLM, "system": "You help with {topic}.", "prompt": "Q: {text}", "temperature": 0.3,
            "max_tokens": 50, "seed": 7, "stop": ["END"], "model": "gpt-4o", "output": "reply"}
    run = await models.run([step], [{"text": "why?", "topic": "maths"}])
    assert run.outputs("reply") == ["ok"]
    request = seen[0]
    assert request["messages"] == [{"role": "system", "content": "You help with maths."},
                                   {"role": "user", "content": "Q: why?"}]
    assert (request["model"], request["temperature"], request["seed"], request["stop"]) == ("gpt-4o", 0.3, 7, ["END"])
    assert request["max_completion_tokens"] == 50  # OpenAI's newer name; local presets send max_tokens


async def test_local_presets_send_max_tokens(models):
    seen = []
    models.server.configure(api_key=None, reply=lambda prompt, request: seen.append(request) or "ok")
    providers = {"local": {"preset": "vllm", "base_url": models.server.base_url, "model": "qwen"}}
    run = await models.run([{**LLM, "max_tokens": 9}], prompts(1), providers=providers)
    assert run.statuses() == ["done"]
    assert seen[0]["max_tokens"] == 9 and "max_completion_tokens" not in seen[0]
    assert run.results[0].cost == 0.0  # a local server costs nothing


async def test_the_row_inspector_sees_request_and_reply_but_never_the_key(models):
    run = await models.run([LLM], prompts(2))
    details = run.results[0].trace[0].details
    assert details["response"] == "echo: row 0"
    assert details["request"]["messages"][-1]["content"] == "row 0"
    assert details["provider"] == "test" and details["cached"] is False
    assert KEY not in json.dumps([r.trace[0].details for r in run.results], default=str)
    assert models.server.stats.authorizations == {f"Bearer {KEY}"}  # it was sent, to the server only


async def test_a_wrong_key_pauses_the_run_once_without_retries(models, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-wrong-key-000000000000")
    run = models.engine([LLM], prompts(60), max_concurrency=8)
    run.engine.subscribe(lambda event: isinstance(event, ev.RunPaused) and run.engine.stop())
    await run.engine.run()
    message = ("the API key for provider 'test' was rejected (HTTP 401: Incorrect API key "
               "provided.); check the environment variable BATCHGRID_TEST_KEY")
    paused = run.of(ev.RunPaused)
    assert len(paused) == 1 and paused[0].reason.startswith(message)
    assert set(run.errors()) == {message}
    assert run.statuses().count("error") <= 8  # the first wave; the rest never ran
    assert run.of(ev.RowRetrying) == []
    assert all(r.attempts == 1 for r in run.results if r and r.status == "error")
    # Only the first wave reached the server; the others failed without a request.
    assert models.server.stats.requests <= 8
    assert models.server.stats.statuses == {401: models.server.stats.requests}


async def test_a_missing_key_says_which_variable_to_set(models, monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    run = await models.run([LLM], prompts(5))
    assert set(run.errors()) == {"no API key for provider 'test': set the environment variable "
                                 "BATCHGRID_TEST_KEY (or name a keyring entry in the profile)"}
    assert models.server.stats.requests == 0


async def test_the_default_provider_uses_openai_environment_variables(models, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", models.server.base_url)
    run = await models.run([LLM], prompts(3), providers={})
    assert run.outputs("answer") == ["echo: row 0", "echo: row 1", "echo: row 2"]
    assert run.results[0].trace[0].details["provider"] == "openai"


async def test_an_unknown_model_is_named_and_not_retried(models):
    models.server.configure(models=["gpt-4o-mini"])
    run = models.engine([{**LLM, "model": "gpt-9-turbo"}], prompts(30), max_concurrency=4)
    run.engine.subscribe(lambda event: isinstance(event, ev.RunPaused) and run.engine.stop())
    await run.engine.run()
    assert len(run.of(ev.RunPaused)) == 1
    assert 1 <= run.statuses().count("error") <= 4
    assert all("provider 'test' has no model 'gpt-9-turbo'" in e for e in run.errors())
    assert run.of(ev.RowRetrying) == []
    assert models.server.stats.requests <= 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_connection_refused_says_what_is_not_running(models):
    url = f"http://127.0.0.1:{_free_port()}/v1"
    providers = {"local": {"preset": "ollama", "base_url": url, "model": "llama3.1"}}
    run = await models.run([LLM], prompts(3), providers=providers)
    assert set(run.errors()) == {f"nothing is listening at {url} — is Ollama running?"}
    assert run.of(ev.RowRetrying) == []


async def test_server_errors_are_retried_and_the_row_shows_why(models):
    models.server.configure(script={"row 3": [500, 500]})
    run = await models.run([LLM], prompts(6))
    assert run.statuses() == ["done"] * 6
    assert run.results[3].attempts == 3 and run.results[3].outputs["answer"] == "echo: row 3"
    retrying = [e for e in run.of(ev.RowRetrying) if e.index == 3]
    assert [e.attempt for e in retrying] == [2, 3]
    assert "provider 'test' had a server error (HTTP 500" in retrying[0].reason
    assert models.server.stats.per_prompt["row 3"] == 3


async def test_a_step_gives_up_after_the_last_attempt(models):
    models.server.configure(script={"row 1": [503] * 10})
    run = await models.run([LLM], prompts(3))
    assert run.statuses() == ["done", "error", "done"]
    assert "(gave up after 4 attempts)" in run.results[1].error
    assert models.server.stats.per_prompt["row 1"] == 4


async def test_a_refusal_or_a_reply_that_is_not_a_completion_fails_the_row(models):
    models.server.configure(api_key=None)
    providers = {"x": {"preset": "vllm", "base_url": models.server.url + "/nothing", "model": "m"}}
    run = await models.run([LLM], prompts(1), providers=providers)
    assert run.statuses() == ["error"]
    assert "provider 'x' has no such endpoint at" in run.errors()[0]
