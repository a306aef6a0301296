"""What real servers do to answers, and what the provider and the model steps make of it (issue 10):
restarts, hangs, empty and cut-off answers, broken streams, refused features, ignored settings,
identical requests in flight, and a local server reached through OPENAI_BASE_URL."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from batchgrid.core.providers.client import Provider
from batchgrid.core.providers.prices import PriceTable
from batchgrid.core.providers.profiles import resolve_profile
from batchgrid.core.run import events as ev
from batchgrid.core.util.errors import RetryableError, ServerUnreachable, StepError
from models_support import KEY, prompts

LLM = {"type": "llm", "prompt": "{text}", "stream": False}
STREAMED = {**LLM, "stream": True}


class Ctx:
    """The least a provider needs from a row's context: one attempt per call, no retries."""

    def __init__(self) -> None:
        self.details: dict[str, Any] = {}
        self.usage: list[tuple] = []

    async def call(self, make_call, *, limiter=None):
        for attempt in range(1, 4):  # a transient error is tried again; ServerUnreachable is for the engine
            try:
                if limiter is not None:
                    async with limiter.acquire():
                        return await make_call()
                return await make_call()
            except ServerUnreachable:
                raise
            except RetryableError:
                if attempt == 3:
                    raise

    def partial(self, column: str, text: str) -> None:
        pass

    def add_usage(self, tokens_in=0, tokens_out=0, cost=0.0, cached=False) -> None:
        self.usage.append((tokens_in, tokens_out, cost, cached))

    def note(self, **details) -> None:
        self.details.update(details)


def provider(server, **extra) -> Provider:
    profile = resolve_profile("test", {"test": {"preset": "openai", "base_url": server.base_url,
                                                "model": "gpt-4o-mini", **extra}})
    return Provider(profile, KEY, ceiling=8, cache=None, prices=PriceTable())


def chat(text: str, **extra) -> dict:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}], **extra}


# ---- 1: a refused connection after the server has answered is a restart, not a setup error ---------
async def test_a_refused_connection_before_any_answer_is_a_setup_error(fake_openai):
    p = provider(fake_openai)
    fake_openai.go_down()
    with pytest.raises(StepError) as info:
        await p.chat(Ctx(), chat("hello"))
    assert not isinstance(info.value, RetryableError)
    assert str(info.value).startswith(f"nothing is listening at {fake_openai.base_url}")
    await p.aclose()


async def test_a_refused_connection_after_an_answer_is_server_unreachable(fake_openai):
    p = provider(fake_openai)
    await p.chat(Ctx(), chat("first"))
    fake_openai.go_down()
    with pytest.raises(ServerUnreachable) as info:
        await p.chat(Ctx(), chat("second"))
    assert info.value.url == fake_openai.base_url
    assert str(info.value) == f"the server at {fake_openai.base_url} refuses connections (restarting?)"
    await p.aclose()


async def test_an_error_status_counts_as_an_answer(fake_openai):
    p = provider(fake_openai)
    fake_openai.configure(script={"first": [400]})
    with pytest.raises(StepError):
        await p.chat(Ctx(), chat("first"))
    fake_openai.go_down()
    with pytest.raises(ServerUnreachable):
        await p.chat(Ctx(), chat("second"))
    await p.aclose()


# ---- 2: timeouts: connect, first byte, idle between chunks ------------------------------------------
async def test_a_stream_that_stalls_mid_answer_times_out_on_the_idle_timeout(models):
    models.server.configure(stall_stream={"row 1": 30})
    run = await models.run([STREAMED], prompts(3), providers=models.providers(idle_timeout=0.3))
    assert run.statuses() == ["done", "error", "done"]
    url = models.server.base_url
    assert run.results[1].error == (f"the server at {url} sent nothing for 0.3 s in the middle of an answer "
                                    "(gave up after 4 attempts)")
    assert models.server.stats.per_prompt["row 1"] == 4


async def test_time_queued_at_the_server_does_not_count_against_the_idle_timeout(models):
    # One slot: rows wait their turn at the server far longer than the idle timeout allows between chunks.
    models.server.configure(slots=1, latency=0.15)
    run = await models.run([STREAMED], prompts(6), providers=models.providers(idle_timeout=0.1),
                           max_concurrency=6)
    assert run.statuses() == ["done"] * 6
    assert models.server.stats.peak_queued >= 3
    assert sum(r.attempts for r in run.results) == 6


def test_the_client_has_a_short_connect_timeout_and_the_profile_timeout_for_the_answer(fake_openai):
    from batchgrid.core.providers.client import CONNECT_TIMEOUT, make_client

    profile = resolve_profile("t", {"t": {"preset": "openai", "base_url": fake_openai.base_url, "timeout": 77}})
    timeout = make_client(profile, "x")._client.timeout
    assert (timeout.connect, timeout.read) == (CONNECT_TIMEOUT, 77)
    assert CONNECT_TIMEOUT == 10


# ---- 3: an empty 200 stream is not an answer ---------------------------------------------------------
async def test_an_empty_stream_is_an_error_retried_once(models):
    models.server.configure(empty_stream={"row 1": 5})
    run = await models.run([STREAMED], prompts(3))
    assert run.statuses() == ["done", "error", "done"]
    assert run.results[1].error == ("the server sent an empty answer twice (no text and no finish reason); "
                                    "the prompt may be longer than the model's context")
    assert run.results[1].outputs == {}
    assert models.server.stats.per_prompt["row 1"] == 2
    assert run.results[1].attempts == 2


async def test_an_empty_stream_once_is_retried_and_answered(models):
    models.server.configure(empty_stream={"row 1": 1})
    run = await models.run([STREAMED], prompts(2))
    assert run.outputs("answer") == ["echo: row 0", "echo: row 1"]
    assert run.results[1].attempts == 2


async def test_an_empty_stream_from_a_prompt_longer_than_the_context_says_so(models):
    models.server.configure(context_size=20, context_overflow="empty_stream")
    long = " ".join(["word"] * 40)
    run = await models.run([STREAMED], [{"text": "short"}, {"text": long}])
    assert run.statuses() == ["done", "error"]
    assert run.results[1].error == "the prompt (about 54 tokens) is longer than the model's context (20 tokens)"
    assert models.server.stats.per_prompt[long] == 1  # deterministic: never retried


# ---- 4: answers cut at the token limit --------------------------------------------------------------
async def test_a_structured_answer_cut_at_the_token_limit_says_so(models):
    step = {"type": "structured", "prompt": "{text}", "fields": [{"name": "name"}], "max_tokens": 3}
    run = await models.run([step], [{"text": "one two three four five six seven"}])
    assert run.results[0].error == "the answer was cut off at the token limit (max_tokens 3); raise Max tokens"
    assert run.results[0].trace[0].details["raw"]


async def test_a_classify_answer_cut_at_the_token_limit_says_so(models):
    models.server.configure(reply=lambda p, r: '{"label": "po sitive"}')
    step = {"type": "classify", "prompt": "{text}", "labels": ["positive", "negative"], "max_tokens": 1}
    run = await models.run([step], [{"text": "great"}])
    assert run.results[0].error == "the answer was cut off at the token limit (max_tokens 1); raise Max tokens"


async def test_a_cut_off_llm_answer_is_done_with_a_warning_in_its_trace(models):
    run = await models.run([{**LLM, "max_tokens": 2}], [{"text": "a b c d e"}])
    assert run.statuses() == ["done"]
    assert run.outputs("answer") == ["echo: a"]
    details = run.results[0].trace[0].details
    assert details["finish_reason"] == "length"
    assert details["warning"] == "the answer was cut off at the token limit (max_tokens 2); raise Max tokens"


async def test_a_prompt_longer_than_the_context_says_both_sizes(models):
    models.server.configure(context_size=5)
    long = " ".join(["w"] * 12)
    run = await models.run([LLM], [{"text": long}])
    assert run.results[0].error == "the prompt (12 tokens) is longer than the model's context (5 tokens)"
    assert models.server.stats.per_prompt[long] == 1


async def test_max_tokens_above_the_reported_context_is_said_in_the_trace(models):
    models.server.configure(context_size=100)
    run = await models.run([{**LLM, "max_tokens": 500}], prompts(2))
    assert run.statuses() == ["done", "done"]
    warning = "max_tokens 500 is more than the model's context (100 tokens) at " + models.server.base_url
    assert [r.trace[0].details["warning"] for r in run.results] == [warning, warning]
    assert models.server.stats.by_path["/props"] == 1


async def test_a_server_without_props_is_fine(models):
    run = await models.run([{**LLM, "max_tokens": 500}], prompts(2))
    assert run.statuses() == ["done", "done"]
    assert "warning" not in run.results[0].trace[0].details


# ---- 5: a broken stream says so, not the innermost library error ------------------------------------
@pytest.mark.parametrize("close", [False, True])
async def test_a_broken_stream_says_the_server_ended_it_early(models, close):
    models.server.configure(cut_stream={"row 1": 10}, stream_close=close)
    run = await models.run([STREAMED], prompts(2))
    assert run.results[1].error == "the server ended the stream early (gave up after 4 attempts)"
    retries = [e for e in run.of(ev.RowRetrying) if e.index == 1]
    assert retries[0].describe().startswith("retrying (2/4) in ")
    assert retries[0].reason == "the server ended the stream early"


# ---- 6: the instructions a step depends on are in the user message ----------------------------------
async def test_classify_and_structured_put_their_instructions_in_the_user_message(models):
    steps = [{"type": "classify", "prompt": "{text}", "labels": ["spam", "ham"]},
             {"type": "structured", "prompt": "{text}", "fields": [{"name": "total", "type": "number"}],
              "system": "You read invoices.", "mode": "json"}]
    models.server.configure(reply=lambda p, r: "spam" if "labels" in p.lower() else json.dumps({"total": 1}))
    run = await models.run(steps, [{"text": "buy now"}])
    assert run.statuses() == ["done"]
    classify, structured = (t.details["request"]["messages"] for t in run.results[0].trace)
    assert [m["role"] for m in classify] == ["user"]
    assert classify[0]["content"].startswith("buy now\n\n") and "- spam" in classify[0]["content"]
    assert structured[0] == {"role": "system", "content": "You read invoices."}
    assert structured[1]["role"] == "user" and "- total (number)" in structured[1]["content"]


# ---- 7: dimensions a server ignores -----------------------------------------------------------------
async def test_dimensions_the_server_ignores_are_an_error_said_once(models):
    models.server.configure(ignore_dimensions=True, embedding_dim=48)
    run = await models.run([{"type": "embed", "source": "text", "dimensions": 16, "batch_size": 2}],
                           prompts(2), max_concurrency=1)  # 2 rows: 3 failing alike would pause the run
    assert run.statuses() == ["error"] * 2
    assert set(run.errors()) == {f"the server at {models.server.base_url} ignored dimensions=16 and sent vectors "
                                 "of 48; leave Dimensions blank for this server"}
    assert len(models.server.stats.embedding_batches) == 1  # later rows fail at once


# ---- 8: errors that can never succeed fail once -----------------------------------------------------
@pytest.mark.parametrize("kind,status", [("501", 501), ("500", 500)])
async def test_embeddings_on_a_server_without_them_fail_once_in_words(models, kind, status):
    models.server.configure(embeddings=kind)
    run = await models.run([{"type": "embed", "source": "text"}], prompts(2), max_concurrency=1)
    assert run.statuses() == ["error"] * 2
    assert set(run.errors()) == {f"the server at {models.server.base_url} does not serve embeddings "
                                 "(start it with embeddings enabled, e.g. llama-server --embeddings) "
                                 "or use another server"}
    assert models.server.stats.by_path["/v1/embeddings"] == 1
    assert not run.of(ev.RowRetrying)


async def test_a_bad_request_is_not_retried(models):
    models.server.configure(script={"row 1": [422]})
    run = await models.run([LLM], prompts(2))
    assert run.statuses() == ["done", "error"]
    assert models.server.stats.per_prompt["row 1"] == 1


async def test_structured_output_falls_back_to_json_mode_when_json_schema_is_refused(models):
    models.server.configure(refuse_json_schema=True, reply=lambda p, r: json.dumps({"total": 3}))
    step = {"type": "structured", "prompt": "{text}", "fields": [{"name": "total", "type": "number"}]}
    run = await models.run([step], prompts(5), max_concurrency=1)
    assert run.outputs("total") == [3] * 5
    assert models.server.stats.statuses[500] == 1  # refused once; later rows go straight to JSON mode
    assert models.server.stats.by_path["/v1/chat/completions"] == 6
    for r in run.results:
        assert r.trace[0].details["mode"] == "json (the server refused json_schema)"
        assert r.trace[0].details["request"]["response_format"] == {"type": "json_object"}


async def test_classify_falls_back_to_text_when_json_schema_is_refused(models):
    models.server.configure(refuse_json_schema=True, reply=lambda p, r: "ham")
    step = {"type": "classify", "prompt": "{text}", "labels": ["spam", "ham"], "mode": "schema"}
    run = await models.run([step], prompts(3), max_concurrency=1)
    assert run.outputs("label") == ["ham"] * 3
    assert models.server.stats.statuses[500] == 1
    assert run.results[2].trace[0].details["mode"] == "text (the server refused json_schema)"
    assert "response_format" not in run.results[2].trace[0].details["request"]


# ---- 13: a dropped connection is an engine attempt ---------------------------------------------------
async def test_a_request_dropped_by_the_server_is_an_attempt_the_row_shows(models):
    models.server.configure(drop_after_read={"row 1": 2})
    run = await models.run([LLM], prompts(3), max_concurrency=1)
    assert run.statuses() == ["done"] * 3
    assert run.results[1].attempts == models.server.stats.per_prompt["row 1"] == 3
    assert models.server.stats.dropped == 2


# ---- 11: identical requests in flight share one call ----------------------------------------------
async def test_identical_requests_in_flight_share_one_call(models):
    models.server.configure(latency=0.05)
    run = await models.run([LLM], [{"text": "same"}] * 200, max_concurrency=20)
    assert run.statuses() == ["done"] * 200
    assert models.server.stats.per_prompt["same"] == 1
    assert sum(r.cached for r in run.results) == 199
    assert run.engine.progress.tokens_in > 0


async def test_identical_requests_share_one_call_without_the_cache_too(models):
    models.server.configure(latency=0.05)
    run = await models.run([LLM], [{"text": "same"}] * 10, max_concurrency=10, use_cache=False)
    assert run.outputs("answer") == ["echo: same"] * 10
    assert models.server.stats.per_prompt["same"] == 1


async def test_a_follower_makes_its_own_call_when_the_leader_is_cancelled(fake_openai):
    fake_openai.configure(hold=True)
    p = provider(fake_openai)
    leader = asyncio.ensure_future(p.chat(Ctx(), chat("same")))
    assert await fake_openai.wait_for(lambda s: s.in_flight == 1)
    follower = asyncio.ensure_future(p.chat(Ctx(), chat("same")))
    await asyncio.sleep(0)
    leader.cancel()
    assert await fake_openai.wait_for(lambda s: s.per_prompt["same"] == 2)
    fake_openai.configure(hold=False)
    reply = await follower
    assert reply.text == "echo: same"
    await p.aclose()


# ---- 19: the default OpenAI profile pointed at a local server ---------------------------------------
async def test_openai_base_url_at_a_local_server_uses_its_model_max_tokens_and_no_price(fake_openai, monkeypatch,
                                                                                      tmp_path):
    from models_support import make_engine

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_BASE_URL", fake_openai.base_url)
    fake_openai.configure(models=["qwen2.5-0.5b-instruct"], ignores_max_completion_tokens=True)
    run = make_engine([{**LLM, "max_tokens": 2}], [{"text": "a b c d e"}], data_dir=tmp_path)
    await run.engine.run()
    assert run.statuses() == ["done"]
    assert fake_openai.stats.last_body["model"] == "qwen2.5-0.5b-instruct"
    assert fake_openai.stats.last_body["max_tokens"] == 2 and "max_completion_tokens" not in fake_openai.stats.last_body
    assert run.outputs("answer") == ["echo: a"]
    assert run.results[0].cost == 0.0 and run.results[0].tokens_in > 0


async def test_openai_base_url_at_a_server_with_several_models_asks_for_one(fake_openai, monkeypatch, tmp_path):
    from models_support import make_engine

    monkeypatch.setenv("OPENAI_BASE_URL", fake_openai.base_url)
    fake_openai.configure(models=["a", "b"])
    run = make_engine([LLM], [{"text": "x"}], data_dir=tmp_path)
    await run.engine.run()
    assert run.results[0].error == (f"the server at {fake_openai.base_url} serves 2 models (a, b): "
                                    "name one in the step's model")


async def test_a_price_the_user_set_is_used_for_a_local_server(fake_openai, monkeypatch, tmp_path):
    from models_support import make_engine

    monkeypatch.setenv("OPENAI_BASE_URL", fake_openai.base_url)
    fake_openai.configure(models=["mine"])
    (tmp_path / "prices.json").write_text(json.dumps({"mine": {"input": 1000000, "output": 0}}))
    run = make_engine([LLM], [{"text": "x"}], data_dir=tmp_path)
    await run.engine.run()
    assert run.results[0].cost == run.results[0].tokens_in
