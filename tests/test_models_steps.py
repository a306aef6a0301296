"""Structured output, Classify, Embed and Similar against the fake OpenAI server."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from batchgrid.core.run import events as ev
from batchgrid.core.util.errors import PipelineError
from batchgrid.core.pipeline.file import Pipeline
from fake_openai import embed_text
from engine_helpers import wait_until
from models_support import prompts

def row_text(prompt: str) -> str:
    """The row's text of a Classify or Structured output prompt (the step's instructions follow it)."""
    return prompt.split("\n\n")[0]


FIELDS = [{"name": "name", "type": "string", "description": "who"}, {"name": "words", "type": "integer"},
          {"name": "even", "type": "boolean"}, {"name": "parts", "type": "list"}]


# ---- structured output --------------------------------------------------------------------------
async def test_structured_output_fills_one_column_per_field(models):
    step = {"type": "structured", "prompt": "{text}", "fields": FIELDS, "prefix": "x_"}
    run = await models.run([step], [{"text": "ada lovelace"}, {"text": "alan m turing"}])
    assert run.statuses() == ["done", "done"]
    r0, r1 = (r.outputs for r in run.results)
    prompt0 = run.results[0].trace[0].details["request"]["messages"][-1]["content"]
    words = len(prompt0.split())  # the test server counts the words of the whole user message
    assert r0 == {"x_name": prompt0, "x_words": words, "x_even": words % 2 == 0, "x_parts": prompt0.split()}
    assert row_text(r0["x_name"]) == "ada lovelace" and r1["x_words"] == words + 1
    request = run.results[0].trace[0].details["request"]
    schema = request["response_format"]["json_schema"]
    assert schema["strict"] is True and schema["schema"]["required"] == ["name", "words", "even", "parts"]
    assert "- words (integer)" in request["messages"][-1]["content"]


async def test_json_mode_accepts_fenced_json(models):
    models.server.configure(reply=lambda p, r: "```json\n" + json.dumps({"name": row_text(p).upper(), "n": 1}) + "\n```")
    fields = [{"name": "name"}, {"name": "n", "type": "number"}]
    run = await models.run([{"type": "structured", "prompt": "{text}", "fields": fields, "mode": "json"}],
                           [{"text": "bo"}])
    assert run.results[0].outputs == {"name": "BO", "n": 1}
    assert run.results[0].trace[0].details["request"]["response_format"] == {"type": "json_object"}


async def test_output_that_does_not_parse_fails_the_row_and_keeps_the_raw_text(models):
    models.server.configure(reply=lambda p, r: "Sorry, I can't." if row_text(p) == "row 2" else json.dumps({"name": p}))
    run = await models.run([{"type": "structured", "prompt": "{text}", "fields": [{"name": "name"}]}], prompts(4))
    assert run.statuses() == ["done", "done", "error", "done"]
    bad = run.results[2]
    assert bad.error == "the model's answer is not a JSON object: Sorry, I can't."
    assert bad.trace[0].details["raw"] == "Sorry, I can't."
    assert bad.trace[0].details["response"] == "Sorry, I can't."
    assert [n for p, n in models.server.stats.per_prompt.items() if row_text(p) == "row 2"] == [1]  # never retried


async def test_a_missing_field_or_a_wrong_type_fails_the_row(models):
    replies = {"row 0": {"other": 1}, "row 1": {"name": "x", "n": "many"}}
    models.server.configure(reply=lambda p, r: json.dumps(replies[row_text(p)]))
    fields = [{"name": "name"}, {"name": "n", "type": "integer"}]
    run = await models.run([{"type": "structured", "prompt": "{text}", "fields": fields}], prompts(2))
    assert run.results[0].error.startswith("the model's answer has no field 'name'")
    assert run.results[1].error == "field 'n': expected a number, got \"many\""


def test_structured_fields_are_checked_when_the_pipeline_loads():
    bad = {"version": 1, "steps": [{"type": "structured", "prompt": "{a}",
                                    "fields": [{"name": "x", "type": "date"}, {"name": "x"}, {"type": "string"}]}]}
    with pytest.raises(PipelineError) as info:
        Pipeline.from_dict(bad)
    assert info.value.messages() == [
        "steps[0].fields[0].type: 'date' is not one of: string, number, integer, boolean, list",
        "steps[0].fields[1]: the field 'x' is listed twice",
        "steps[0].fields[2]: each field needs a \"name\" (text)",
    ]


# ---- classify -----------------------------------------------------------------------------------
def _sentiment(prompt: str, request: dict) -> str:
    return {"great": "Positive.", "awful": "negative", "meh": "\"Neutral\"", "odd": "It is mixed"}[row_text(prompt)]


async def test_classify_returns_one_of_the_labels(models):
    models.server.configure(reply=_sentiment)
    labels = {"positive": "the customer is happy", "negative": "", "neutral": ""}
    rows = [{"review": w} for w in ("great", "awful", "meh")]
    run = await models.run([{"type": "classify", "prompt": "{review}", "labels": labels}], rows)
    assert run.outputs("label") == ["positive", "negative", "neutral"]
    user = run.results[0].trace[0].details["request"]["messages"][-1]["content"]
    assert "- positive: the customer is happy" in user and "exactly one of these labels" in user


async def test_a_label_outside_the_list_is_an_error_not_a_guess(models):
    models.server.configure(reply=_sentiment)
    run = await models.run([{"type": "classify", "prompt": "{review}", "labels": ["positive", "negative"]}],
                           [{"review": "odd"}, {"review": "great"}])
    assert run.statuses() == ["error", "done"]
    assert run.results[0].error == "the model answered 'It is mixed', which is not one of the labels: positive, negative"
    assert run.results[0].trace[0].details["raw"] == "It is mixed"


async def test_classify_with_several_labels(models):
    models.server.configure(reply=lambda p, r: {"a": "bug, Billing", "b": "bug, refund"}[row_text(p)])
    step = {"type": "classify", "prompt": "{t}", "labels": ["bug", "billing", "feature"], "multiple": True}
    run = await models.run([step], [{"t": "a"}, {"t": "b"}])
    assert run.outputs("label") == ["bug, billing", None]
    assert "not among the labels" in run.results[1].error


async def test_classify_can_constrain_the_answer_with_a_schema(models):
    one = {"type": "classify", "prompt": "{t}", "labels": ["spam", "ham"], "mode": "schema"}
    several = {**one, "multiple": True, "output": "labels"}
    run = await models.run([one, several], [{"t": "buy now"}])
    assert run.results[0].outputs == {"label": "spam", "labels": "spam"}  # the server picks the first allowed
    schema = run.results[0].trace[0].details["request"]["response_format"]["json_schema"]["schema"]
    assert schema["properties"] == {"label": {"type": "string", "enum": ["spam", "ham"]}}


async def test_a_schema_answer_outside_the_labels_is_still_an_error(models):
    models.server.configure(reply=lambda p, r: json.dumps({"label": "eggs"}))
    run = await models.run([{"type": "classify", "prompt": "{t}", "labels": ["spam", "ham"], "mode": "schema"}],
                           [{"t": "x"}])
    assert run.results[0].error == "the model answered 'eggs', which is not one of the labels: spam, ham"


def test_classify_labels_are_checked_when_the_pipeline_loads():
    def problems(labels, multiple=False):
        data = {"version": 1, "steps": [{"type": "classify", "prompt": "{a}", "labels": labels, "multiple": multiple}]}
        try:
            Pipeline.from_dict(data)
        except PipelineError as exc:
            return exc.messages()
        return []

    assert problems([]) == ["steps[0].labels: must not be empty"]
    assert problems(["yes"]) == ["steps[0].labels: add at least two labels to choose from"]
    assert problems(["yes"], multiple=True) == []
    assert problems(["Yes", "yes"]) == ["steps[0].labels: two labels are the same"]
    assert problems([{"description": "x"}, "b"]) == ["steps[0].labels: each label object needs a \"label\""]


# ---- embed --------------------------------------------------------------------------------------
async def test_embeddings_are_batched_natively(models):
    rows = prompts(1000, "text")
    run = await models.run([{"type": "embed", "source": "text"}], rows, max_concurrency=200)
    batches = models.server.stats.embedding_batches
    assert run.statuses() == ["done"] * 1000
    assert sum(batches) == 1000 and max(batches) == 256
    assert len(batches) <= 5  # 4 requests of 256, not 1,000
    assert np.allclose(run.results[7].outputs["text_embedding"], embed_text("text 7"), atol=1e-6)
    assert models.server.stats.peak_in_flight <= 2


async def test_embedding_batches_follow_the_batch_size_and_usage_is_shared(models):
    run = await models.run([{"type": "embed", "source": "text", "batch_size": 8}], prompts(40), max_concurrency=40)
    assert models.server.stats.embedding_batches == [8] * 5
    assert sum(r.tokens_in for r in run.results) == 80  # the server counted 2 words a text
    assert run.results[0].cost > 0


async def test_an_empty_text_fails_its_row_only(models):
    run = await models.run([{"type": "embed", "source": "text"}], [{"text": "a"}, {"text": ""}, {"text": "b"}])
    assert run.statuses() == ["done", "error", "done"]
    assert run.results[1].error == "nothing to embed: the text is empty"


async def test_a_failed_batch_fails_its_rows_with_the_reason(models):
    models.server.configure(script={"": [500] * 50})  # every request fails
    run = await models.run([{"type": "embed", "source": "text"}], prompts(5), max_concurrency=5)
    assert run.statuses() == ["error"] * 5
    assert all("had a server error (HTTP 500" in e and "gave up after 4 attempts" in e for e in run.errors())
    assert models.server.stats.requests == 4  # one batch, four attempts


async def test_stop_cancels_a_batch_in_flight(models):
    models.server.configure(latency=10)
    run = models.engine([{"type": "embed", "source": "text"}], prompts(50), max_concurrency=50)
    task = asyncio.ensure_future(run.engine.run())
    assert await models.server.wait_for(lambda s: s.in_flight == 1)
    run.engine.stop()
    assert await models.server.wait_for(lambda s: s.disconnects == 1, timeout=1.0)
    await task
    assert run.statuses() == ["cancelled"] * 50
    assert models.server.stats.embedding_batches == [50]


async def test_stop_while_a_knowledge_base_is_embedded_closes_its_requests(models):
    models.server.configure(latency=10)
    step = {"type": "similar", "source": "text", "references": [f"passage {i}" for i in range(250)],
            "batch_size": 100}
    run = models.engine([step], prompts(5), max_concurrency=5)
    task = asyncio.ensure_future(run.engine.run())
    assert await models.server.wait_for(lambda s: s.in_flight == 3)  # 250 passages: batches of 100, 100, 50
    run.engine.stop()
    assert await models.server.wait_for(lambda s: s.disconnects == 3, timeout=1.0)
    await task
    assert models.server.stats.in_flight == 0


def gathered(run) -> int:
    """Texts waiting in the run's open embedding batches (not yet sent)."""
    batchers = run.engine.resources.models._batchers.values()
    return sum(len(b._open.texts) for b in batchers if b._open is not None)


async def test_a_batch_whose_rows_were_all_stopped_is_never_sent(models, monkeypatch):
    from batchgrid.core.providers import batcher

    monkeypatch.setattr(batcher, "DEFAULT_LINGER", 0.2)  # rows gather for 0.2 s before their batch goes
    models.server.configure(rate_500=1.0)  # a request sent anyway would fail and be retried ("retrying")
    run = models.engine([{"type": "embed", "source": "text"}], prompts(5), max_concurrency=5)
    task = asyncio.ensure_future(run.engine.run())
    assert await wait_until(lambda: gathered(run) == 5)  # every row waits in the open batch
    run.engine.stop()
    await task
    assert run.statuses() == ["cancelled"] * 5
    # Well past the linger: nothing reached the server, and nothing was said after the run's end.
    assert not await models.server.wait_for(lambda s: s.requests > 0, timeout=1.0)
    assert isinstance(run.events[-1], ev.RunFinished) and run.of(ev.RowRetrying) == []


async def test_a_batch_whose_rows_were_all_cancelled_is_not_sent(models, monkeypatch):
    """Branch b fails the row, which cancels branch a while it waits in the open batch. Row 0 parked
    there, so row 1 was started meanwhile (max concurrency 1: core/run/engine.py, `Lending`) and waits
    in the same batch: when it fails too, nobody waits for the batch and it must not be sent."""
    from batchgrid.core.providers import batcher

    monkeypatch.setattr(batcher, "DEFAULT_LINGER", 0.2)
    models.server.configure(rate_500=1.0)  # a request sent anyway would fail and be retried ("retrying")
    step = {"type": "parallel", "branches": {
        "a": [{"type": "embed", "source": "text"}],
        "b": [{"type": "test_slow_call", "source": "text", "seconds": 0.02}, {"type": "test_slow_call", "source": "b"}]}}
    steps = Pipeline.from_dict({"version": 1, "steps": [step]}).steps
    run = models.engine(steps, [{"text": "hello", "b": "boom"}] * 2, max_concurrency=1)
    run.engine.pause_after_failures = 0
    waiting: list[int] = []  # texts in the open batch when each row failed
    run.engine.subscribe(lambda event: isinstance(event, ev.RowFailed) and waiting.append(gathered(run)))
    await run.engine.run()
    assert run.statuses() == ["error", "error"]
    assert waiting == [2, 0]  # both rows in one batch; dropped when the last of them failed
    assert not await models.server.wait_for(lambda s: s.requests > 0, timeout=1.0)  # well past the linger
    assert run.of(ev.RowRetrying) == []  # no "retrying" for the failed rows


# ---- similar / retrieve ---------------------------------------------------------------------------
PASSAGES = ["Cats purr when they are content.", "The stock market fell sharply today.",
            "Rain is expected over the weekend.", "Dogs bark at strangers."]


async def test_similar_finds_the_nearest_label_for_zero_shot_classification(models):
    step = {"type": "similar", "source": "text", "references": ["cats", "stocks market", "rain weekend"], "top_k": 2}
    rows = [{"text": "my cats purr"}, {"text": "market news"}, {"text": "heavy rain"}]
    run = await models.run([step], rows)
    assert run.outputs("match") == ["cats", "stocks market", "rain weekend"]
    assert all(0 < s <= 1 for s in run.outputs("match_score"))
    assert run.outputs("match_matches")[0].splitlines()[0].endswith("  cats")


async def test_retrieved_passages_feed_a_later_llm_step(models, tmp_path):
    kb = tmp_path / "kb.csv"
    kb.write_text("id,passage\n" + "".join(f'{i},"{p}"\n' for i, p in enumerate(PASSAGES)), encoding="utf-8")
    steps = [{"type": "similar", "source": "question", "reference_file": str(kb), "reference_column": "passage",
              "top_k": 2},
             {"type": "llm", "system": "Context:\n{context}", "prompt": "{question}", "stream": False}]
    rows = [{"question": "why do cats purr"}, {"question": "will it rain this weekend"}] * 10
    seen = []
    models.server.configure(reply=lambda p, r: seen.append(r["messages"][0]["content"]) or "ok")
    run = await models.run(steps, rows, base_dir=tmp_path)  # the reference file is in the pipeline's folder
    assert run.statuses() == ["done"] * 20
    assert run.outputs("match")[:2] == [PASSAGES[0], PASSAGES[2]]
    assert run.outputs("context")[0].split("\n\n")[0] == PASSAGES[0]
    assert any(s.startswith("Context:\n" + PASSAGES[0]) for s in seen)
    # The knowledge base was embedded once, not once per row.
    assert all(models.server.stats.embedded[p] == 1 for p in PASSAGES)


async def test_the_knowledge_base_is_charged_to_the_run_not_to_a_row(models):
    references = [f"passage number {i}" for i in range(10)]  # the server counts 3 tokens each
    step = {"type": "similar", "source": "text", "references": references}
    run = await models.run([step], prompts(4))  # "row i": 2 tokens each
    assert run.statuses() == ["done"] * 4
    assert [r.tokens_in for r in run.results] == [2, 2, 2, 2]
    row_cost = run.results[0].cost
    assert row_cost > 0 and all(r.cost == row_cost for r in run.results)
    p = run.engine.progress
    assert (p.tokens_in, p.shared_tokens_in) == (8 + 30, 30)
    assert p.cost == pytest.approx(4 * row_cost + p.shared_cost) and p.shared_cost == pytest.approx(15 * row_cost)


async def test_the_run_info_counts_the_knowledge_base_once(models):
    from batchgrid.core.run.job import Job
    from batchgrid.core.table import Table

    pipeline = Pipeline.from_dict({"version": 1, "providers": models.providers(), "steps": [
        {"type": "similar", "source": "text", "references": [f"passage number {i}" for i in range(10)]}]})
    job = Job(pipeline, Table.from_records(prompts(4)), data_dir=models.data_dir)
    await job.start().run()
    info = job.run_info()
    assert info["tokens in"] == 4 * 2 + 10 * 3
    assert info["cost"] == round(job.engine.progress.cost, 6) > 0


async def test_a_run_keeps_the_knowledge_base_off_the_similar_declaration(models):
    import copy

    steps = Pipeline.from_dict({"version": 1, "steps": [
        {"type": "similar", "source": "text", "references": PASSAGES}]}).steps
    before = copy.deepcopy(vars(steps[0]))
    run = await models.run(steps, [{"text": "dogs bark"}])
    assert run.outputs("match") == [PASSAGES[3]]
    assert vars(steps[0]) == before  # no texts, no vectors left on it


async def test_similar_reads_vectors_from_an_embed_step(models):
    steps = [{"type": "embed", "source": "text", "output": "vec"},
             {"type": "similar", "source": "vec", "references": PASSAGES, "top_k": 1}]
    run = await models.run(steps, [{"text": "dogs bark"}])
    assert run.outputs("match") == [PASSAGES[3]]
    assert models.server.stats.embedded["dogs bark"] == 1  # embedded once, by the Embed step


async def test_a_missing_reference_column_is_a_clear_error(models, tmp_path):
    kb = tmp_path / "kb.csv"
    kb.write_text("a,b\n1,2\n", encoding="utf-8")
    step = {"type": "similar", "source": "text", "reference_file": str(kb), "reference_column": "passage"}
    run = await models.run([step], prompts(1), base_dir=tmp_path)
    assert run.engine.progress.done == 0
    finished = run.of(ev.RunFinished)[0]
    assert finished.reason == "failed"
    assert finished.message == "kb.csv: no column 'passage'; columns are: a, b"


def test_similar_needs_exactly_one_kind_of_reference():
    with pytest.raises(PipelineError) as info:
        Pipeline.from_dict({"version": 1, "steps": [{"type": "similar", "source": "a"}]})
    assert info.value.messages() == ["steps[0].references: give either a list of references or a reference file, "
                                   "not neither"]
