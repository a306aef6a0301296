"""Fallbacks in batch mode: the step's own model answers through the provider's Batch API; a row whose
batch answer fails (an error-file line, an answer that does not validate, an expired batch's undone row)
is asked of the fallbacks one after another, synchronously, at their normal price. A cancelled batch's
undone rows do not fall back (the user wanted it to stop). The test server's batches move on by themselves
at each poll (batch_seconds_per_stage=0), or when the test moves them: no sleeps."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pandas as pd
import pytest
from batchgrid.core.pipeline import Pipeline
from batchgrid.core.providers import DEFAULT_PRICES
from batchgrid.core.providers.batches import PollPolicy
from batchgrid.core.run import batch_mode
from batchgrid.core.run import events as ev
from batchgrid.core.session import Session
from models_support import KEY_ENV, example_replies, prompts

EXAMPLES = Path(__file__).resolve().parent.parent / "resources" / "examples"
FIELDS = [{"name": "problem", "type": "string"}]


@pytest.fixture(autouse=True)
def quick_polls(monkeypatch):
    """The provider is asked again within milliseconds."""
    monkeypatch.setattr(batch_mode, "POLL", PollPolicy(first=0.002, factor=2, cap=0.02))


def price(model: str, tokens_in: int, tokens_out: int, *, batch: bool = False) -> float:
    p = DEFAULT_PRICES[model]
    return (tokens_in * p["input"] + tokens_out * p["output"]) / 1e6 * (0.5 if batch else 1.0)


def answering(server, answer) -> None:
    """The server answers `answer(prompt, model)`, batch lines and synchronous requests alike; its batches move
    on at each poll."""

    def reply(prompt: str, request: dict) -> str:
        return answer(prompt.split("\n\n")[0], request["model"])

    server.configure(reply=reply, batch_seconds_per_stage=0)


def sync_calls(server) -> int:
    return server.stats.by_path.get("/v1/chat/completions", 0)


async def test_error_file_lines_are_answered_by_the_fallback_synchronously_and_the_model_column_says_which(models):
    server = models.server
    answering(server, lambda prompt, model: f"{model} says {prompt}")
    server.configure(batch_line_errors={r"^1:": 400, r"^3:": "server_error"})
    step = {"type": "llm", "prompt": "{text}", "batch": True, "fallbacks": [{"model": "gpt-4o"}]}
    run = await models.run([step], prompts(5))
    assert run.statuses() == ["done"] * 5
    assert run.outputs("answer") == ["gpt-4o-mini says row 0", "gpt-4o says row 1", "gpt-4o-mini says row 2",
                                     "gpt-4o says row 3", "gpt-4o-mini says row 4"]
    assert run.outputs("answer_model") == ["gpt-4o-mini", "gpt-4o", "gpt-4o-mini", "gpt-4o", "gpt-4o-mini"]
    assert server.stats.batches_created == 1 and len(server.stats.batch_lines) == 5
    assert sync_calls(server) == 2  # rows 1 and 3, one ordinary request each
    by_batch, by_fallback = run.results[0], run.results[1]
    assert by_batch.cost == pytest.approx(price("gpt-4o-mini", by_batch.tokens_in, by_batch.tokens_out, batch=True))
    assert by_fallback.cost == pytest.approx(price("gpt-4o", by_fallback.tokens_in, by_fallback.tokens_out))
    batch_trace = by_batch.trace[0].details
    assert batch_trace["answered_by"] == "gpt-4o-mini" and batch_trace["batch"] is True
    assert batch_trace["costs"] == {"gpt-4o-mini": pytest.approx(by_batch.cost)} and "fallbacks" not in batch_trace
    trace = by_fallback.trace[0].details
    assert trace["answered_by"] == "gpt-4o" and trace["response"] == "gpt-4o says row 1"
    assert trace["fallbacks"].startswith("gpt-4o-mini: ") and "\n" not in trace["fallbacks"]
    assert run.results[3].trace[0].details["fallbacks"] == (
        "gpt-4o-mini: the provider did not run this row: The request failed (server_error). (server_error)")
    assert trace["costs"] == {"gpt-4o-mini": 0.0, "gpt-4o": pytest.approx(by_fallback.cost)}
    assert run.engine.progress.batched == 0 and run.engine.progress.running == 0
    assert run.engine.progress.cost == pytest.approx(sum(r.cost for r in run.results))
    lines = [e.line for e in run.events if isinstance(e, ev.BatchWaiting)]  # the run bar's line, as it goes
    assert "asking the fallbacks for the 2 rows the batch did not answer" in lines
    assert lines[-1] == "" and run.engine.progress.batch == ""


async def test_a_label_outside_the_list_from_the_batch_goes_to_another_provider(models):
    providers = {**models.providers(), "big": {"preset": "openai", "base_url": models.server.base_url,
                                                "api_key_env": KEY_ENV, "model": "gpt-4o"}}
    server = models.server
    answering(server, lambda prompt, model: "maybe" if model == "gpt-4o-mini" and prompt == "row 1" else "positive")
    step = {"type": "classify", "provider": "test", "prompt": "{text}", "labels": ["positive", "negative"],
            "batch": True, "fallbacks": [{"provider": "big"}], "output": "sentiment"}
    run = await models.run([step], prompts(3), providers=providers)
    assert run.outputs("sentiment") == ["positive"] * 3
    assert run.outputs("sentiment_model") == ["gpt-4o-mini at test", "gpt-4o at big", "gpt-4o-mini at test"]
    assert server.stats.batches_created == 1 and sync_calls(server) == 1
    fell_back = run.results[1]
    details = fell_back.trace[0].details
    assert details["fallbacks"] == ("gpt-4o-mini at test: the model answered 'maybe', which is not one of the "
                                    "labels: positive, negative")
    assert details["answered_by"] == "gpt-4o at big" and details["provider"] == "big"
    costs = details["costs"]  # the batch answer was paid (at the batch price), then the fallback's
    assert costs.keys() == {"gpt-4o-mini at test", "gpt-4o at big"} and costs["gpt-4o-mini at test"] > 0
    assert fell_back.cost == pytest.approx(sum(costs.values()))


async def test_a_structured_answer_missing_a_field_falls_back(models):
    server = models.server
    answering(server, lambda prompt, model: '{"other": 1}' if model == "gpt-4o-mini" and prompt == "row 0"
              else '{"problem": "late"}')
    step = {"type": "structured", "prompt": "{text}", "fields": FIELDS, "mode": "json", "batch": True,
            "fallbacks": [{"model": "gpt-4o"}]}
    run = await models.run([step], prompts(2))
    assert run.outputs("problem") == ["late", "late"]
    assert run.outputs("answered_by") == ["gpt-4o", "gpt-4o-mini"]
    assert "the model's answer has no field 'problem'" in run.results[0].trace[0].details["fallbacks"]


async def test_a_row_every_model_fails_says_so_in_one_line_naming_each(models):
    server = models.server
    server.configure(models=["gpt-4o-mini"])
    answering(server, lambda prompt, model: '{"other": 1}' if prompt == "row 0" else "no JSON here")
    step = {"type": "structured", "prompt": "{text}", "fields": FIELDS, "mode": "json", "batch": True,
            "fallbacks": [{"model": "llama3.1"}]}
    run = await models.run([step], prompts(2))
    assert run.statuses() == ["error", "error"]
    first, second = run.errors()
    assert first.startswith("every model failed: gpt-4o-mini: the model's answer has no field 'problem': "
                            "{\"other\": 1}; then llama3.1: provider 'test' has no model 'llama3.1'")
    assert "\n" not in first and "\n" not in second
    assert second.startswith("every model failed: gpt-4o-mini: the model's answer is not a JSON object: no JSON "
                              "here; then llama3.1: provider 'test' has no model 'llama3.1'")
    result = run.results[1]
    assert result.failed_step == "1. Structured output" and result.cost > 0  # the batch answer was paid for
    assert result.trace[0].error == second and result.trace[0].details["raw"] == "no JSON here"
    assert result.trace[0].details["costs"].keys() == {"gpt-4o-mini", "llama3.1"}
    assert run.engine.progress.batched == 0 and run.engine.progress.failed == 2


async def test_an_expired_batch_s_undone_rows_fall_back(models):
    server = models.server
    answering(server, lambda prompt, model: f"{model} says {prompt}")
    server.configure(batch_expire_after=2, batch_shuffle=False)
    step = {"type": "llm", "prompt": "{text}", "batch": True, "fallbacks": [{"model": "gpt-4o"}]}
    run = await models.run([step, {"type": "change_case", "source": "answer", "case": "upper", "output": "shout"}],
                           prompts(5))
    assert run.statuses() == ["done"] * 5
    assert run.outputs("answer_model") == ["gpt-4o-mini"] * 2 + ["gpt-4o"] * 3
    assert run.outputs("shout") == ["GPT-4O-MINI SAYS ROW 0", "GPT-4O-MINI SAYS ROW 1", "GPT-4O SAYS ROW 2",
                                    "GPT-4O SAYS ROW 3", "GPT-4O SAYS ROW 4"]  # the step after it ran
    assert sync_calls(server) == 3
    assert run.results[4].trace[0].details["fallbacks"] == "gpt-4o-mini: the batch expired before this row was done"


async def test_a_cancelled_batch_s_undone_rows_do_not_fall_back(models):
    server = models.server
    answering(server, lambda prompt, model: f"{model} says {prompt}")
    server.configure(batch_seconds_per_stage=None, batch_lines_per_stage=2)
    step = {"type": "llm", "prompt": "{text}", "batch": True, "fallbacks": [{"model": "gpt-4o"}]}
    run = models.engine([step], prompts(5))
    engine = run.engine
    loop = asyncio.get_running_loop()
    submitted = loop.create_future()
    cancelling = loop.create_future()

    def listen(event):
        if isinstance(event, ev.BatchWaiting) and "done at the provider" in event.line and not submitted.done():
            submitted.set_result(None)
        if isinstance(event, ev.BatchWaiting) and "cancelling" in event.line and not cancelling.done():
            cancelling.set_result(None)

    engine.subscribe(listen)
    running = asyncio.ensure_future(engine.run())
    await submitted
    server.advance_batches()
    server.advance_batches()  # two rows done at the provider
    engine.cancel_batch()
    await cancelling
    server.finish_batches()
    await running
    assert sorted(run.statuses()) == ["done", "done", "error", "error", "error"]
    assert set(run.errors()) == {"the batch was cancelled before this row was done"}
    assert sync_calls(server) == 0
    assert [r.outputs.get("answer_model") for r in run.results if r.status == "done"] == ["gpt-4o-mini"] * 2


async def test_fallback_calls_stay_within_max_concurrency(models):
    server = models.server
    server.configure(models=["gpt-4o"], latency=0.02)  # every batch line fails: gpt-4o-mini is unknown
    answering(server, lambda prompt, model: f"{model} says {prompt}")
    step = {"type": "llm", "prompt": "{text}", "batch": True, "fallbacks": [{"model": "gpt-4o"}]}
    run = await models.run([step], prompts(12), max_concurrency=2)
    assert run.outputs("answer_model") == ["gpt-4o"] * 12
    assert sync_calls(server) == 12 and server.stats.peak_in_flight <= 2


# ---- the bundled model example, its model steps in batch mode ----------------------------------------
async def test_the_model_example_runs_in_batch_mode_with_its_fallback(tmp_path, fake_openai, monkeypatch):
    """The README's "reviews-llm with batch: true". OPENAI_BASE_URL at the test server would make the default
    provider a local server, which has no Batch API: an explicit openai profile points at it instead."""
    monkeypatch.setenv(KEY_ENV, "sk-test")
    data = json.loads((EXAMPLES / "reviews-llm.batchgrid.json").read_text(encoding="utf-8"))
    data["providers"] = {"openai": {"preset": "openai", "base_url": fake_openai.base_url, "api_key_env": KEY_ENV,
                                    "model": "gpt-4o-mini"}}
    for step in data["steps"]:
        if step["type"] in ("classify", "structured", "llm"):
            step["batch"] = True
    pipeline = Pipeline.from_dict(data)
    assert [str(p) for p in pipeline.problems()] == []
    answered: dict[str, str] = {}  # the extractor's prompt -> the model whose JSON was kept
    fake_openai.configure(reply=example_replies(answered), batch_seconds_per_stage=0)
    session = Session(journal_path=tmp_path / "journal.sqlite", data_dir=tmp_path, use_cache=False)
    session.set_pipeline(pipeline)
    await session.open_sheet(EXAMPLES / "reviews.xlsx")
    assert session.problems() == []
    await session.start()
    assert await session.wait() == ("finished", "")
    out = tmp_path / "out.csv"
    await session.export(out)
    frame = pd.read_csv(out)
    await session.close()
    assert len(frame) == 240 and frame["error"].isna().all()
    assert fake_openai.stats.batches_created == 3
    low = frame[frame["rating"] <= 3]
    assert low["problem"].eq("it broke").all() and frame[frame["rating"] > 3]["answered_by"].isna().all()
    assert low["answered_by"].tolist() == [answered[f"Review: {t}"] for t in low["review_clean"]]
    fell_back = sum(len(f"Review: {t}") % 2 for t in low["review_clean"])
    assert 0 < fell_back < len(low)
    assert low["answered_by"].value_counts().to_dict() == {"gpt-4o-mini": len(low) - fell_back, "gpt-4o": fell_back}
    # only the fallback is asked synchronously; identical reviews share one request
    assert 0 < sync_calls(fake_openai) <= fell_back
    assert (frame["sentiment"] == "negative").all() and (frame["reply"] == "Thank you.").all()


async def test_stop_while_the_fallbacks_are_asked_ends_those_rows_as_stopped(models):
    server = models.server
    answering(server, lambda prompt, model: f"{model} says {prompt}")
    server.configure(batch_line_errors={r"^[12]:": 400}, latency=60)  # the fallback's requests never answer
    step = {"type": "llm", "prompt": "{text}", "batch": True, "fallbacks": [{"model": "gpt-4o"}]}
    run = models.engine([step], prompts(3))
    running = asyncio.ensure_future(run.engine.run())
    assert await server.wait_for(lambda stats: stats.by_path.get("/v1/chat/completions", 0) == 2, timeout=30)
    assert run.engine.progress.running == 2 and run.engine.progress.batched == 1
    run.engine.stop()
    progress = await running
    assert run.statuses() == ["cancelled"] * 3  # the row the batch answered waited for the others
    assert {r.error for r in run.results} == {"stopped before this row finished"}
    assert progress.running == 0 and progress.batched == 0 and progress.cancelled == 3
