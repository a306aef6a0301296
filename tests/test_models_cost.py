"""Prices, projected cost before a run, and the budget cap during one."""

from __future__ import annotations

import asyncio
import json

import pytest

from batchgrid.core.run import events as ev
from batchgrid.core.table import Table
from batchgrid.core.util.errors import InputError
from batchgrid.core.pipeline.file import Pipeline
from batchgrid.core.providers import PriceTable, save_user_prices
from batchgrid.core.run.estimate import estimate_cost
from batchgrid.core.providers.tokens import DEFAULT_ANSWER_TOKENS
from models_support import prompts


def test_prices_find_dated_and_vendor_prefixed_models():
    table = PriceTable.load(None)
    mini = table.price("gpt-4o-mini")
    assert (mini.input, mini.output) == (0.15, 0.60)
    assert table.price("gpt-4o-mini-2024-07-18") == mini
    assert table.price("openai/gpt-4o-mini") == mini
    assert table.price("gpt-4o-2024-08-06") == table.price("gpt-4o")
    assert table.price("my-own-model") is None
    assert table.cost("my-own-model", 1000, 1000) == 0.0
    assert table.cost("llama3.1", 10**6, 10**6, local=True) == 0.0
    assert abs(table.cost("gpt-4o-mini", 10**6, 10**6) - 0.75) < 1e-12


def test_the_users_price_table_wins(tmp_path):
    save_user_prices(tmp_path, {"gpt-4o-mini": {"input": 1.0, "output": 2.0}, "house-model": {"input": 5}})
    table = PriceTable.load(tmp_path)
    assert table.price("gpt-4o-mini").input == 1.0
    assert table.price("house-model").input == 5.0
    assert table.price("gpt-4o").input == 2.5  # defaults stay


def test_a_broken_price_table_is_a_clear_error(tmp_path):
    (tmp_path / "prices.json").write_text('{"gpt-4o": "cheap"}')
    with pytest.raises(InputError, match="every entry must look like"):
        PriceTable.load(tmp_path)
    (tmp_path / "prices.json").write_text("{not json")
    with pytest.raises(InputError, match="the price table cannot be read"):
        PriceTable.load(tmp_path)


def _pipeline(steps, **extra) -> Pipeline:
    return Pipeline.from_dict({"version": 1, "providers": {"p": {"preset": "openai", "model": "gpt-4o-mini"}},
                               "steps": steps, **extra})


def test_projected_cost_scales_a_sample_to_every_row(tmp_path):
    rows = Table.from_records([{"text": "x" * 400}] * 200)
    estimate = estimate_cost(_pipeline([{"type": "llm", "prompt": "{text}", "max_tokens": 100}]), rows,
                             sample=10, data_dir=tmp_path)
    # 400 characters = 100 tokens + 4 for the message, per row; answers at max tokens
    assert (estimate.rows, estimate.sampled) == (200, 10)
    assert (estimate.tokens_in, estimate.tokens_out) == (104 * 200, 100 * 200)
    assert abs(estimate.cost - (104 * 200 * 0.15 + 100 * 200 * 0.60) / 1e6) < 1e-9
    assert estimate.describe().startswith("about 40,800 tokens, $0.02 for 200 rows (projected from the first 10)")


def test_later_steps_are_estimated_with_earlier_answers_in_their_prompts(tmp_path):
    steps = [{"type": "llm", "prompt": "{text}"},
             {"type": "classify", "prompt": "{answer}", "labels": ["yes", "no"]}]
    estimate = estimate_cost(_pipeline(steps), Table.from_records([{"text": "hi"}] * 4), data_dir=tmp_path)
    llm, classify = estimate.steps
    assert llm.tokens_out == 4 * DEFAULT_ANSWER_TOKENS
    assert classify.tokens_in > 4 * DEFAULT_ANSWER_TOKENS  # the answer it reads is in its prompt
    assert classify.tokens_out == 4 * 3


def test_a_knowledge_base_is_counted_once_and_unknown_prices_are_named(tmp_path):
    steps = [{"type": "similar", "source": "text", "references": ["a" * 40, "b" * 40], "model": "house-embedder"}]
    estimate = estimate_cost(_pipeline(steps), Table.from_records([{"text": "q" * 40}] * 100), sample=5,
                             data_dir=tmp_path)
    (step,) = estimate.steps
    assert step.calls == 100 + 2
    assert step.tokens_in == 100 * 10 + 2 * 10
    assert estimate.unpriced_models == ["house-embedder"]
    assert "no price for house-embedder" in estimate.describe()


async def test_requests_already_in_the_cache_are_not_counted(models):
    pipeline = Pipeline.from_dict({"version": 1, "providers": models.providers(), "steps": [
        {"type": "llm", "prompt": "{text}"}]})
    rows = Table.from_records(prompts(10))
    before = estimate_cost(pipeline, rows, data_dir=models.data_dir)
    assert before.cost > 0
    await models.run([{"type": "llm", "prompt": "{text}"}], prompts(10))
    after = estimate_cost(pipeline, rows, data_dir=models.data_dir)
    assert after.cost == 0 and after.steps[0].cached == 10


async def test_an_estimate_after_a_run_is_the_estimate_before_it(models, tmp_path):
    """The estimate never sees what a run loaded (a lookup table) and changes nothing itself."""
    import copy

    from batchgrid.core.steps.base import walk

    (tmp_path / "notes.csv").write_text("id,note\n" + "".join(f"{i},{'long note ' * 20}\n" for i in range(10)),
                                        encoding="utf-8")
    pipeline = Pipeline.from_dict({"version": 1, "providers": models.providers(), "steps": [
        {"type": "lookup", "file": str(tmp_path / "notes.csv"), "file_key": "id", "key": "id", "columns": ["note"]},
        {"type": "llm", "prompt": "{text} {note}", "stream": False}]})
    records = [{"id": i, "text": f"row {i}"} for i in range(10)]
    rows = Table.from_records(records)

    def declarations():
        return [copy.deepcopy(vars(s)) for s in walk(pipeline.steps)]

    before_state = declarations()
    before = estimate_cost(pipeline, rows, data_dir=models.data_dir, use_cache=False)
    assert declarations() == before_state  # the estimate changed nothing
    run = models.engine(pipeline.steps, records, use_cache=False, base_dir=tmp_path)  # binds these very declarations
    await run.engine.run()
    assert run.statuses() == ["done"] * 10
    after = estimate_cost(pipeline, rows, data_dir=models.data_dir, use_cache=False)
    assert (after.tokens_in, after.tokens_out, after.cost) == (before.tokens_in, before.tokens_out, before.cost)
    assert declarations() == before_state


def test_an_estimate_reports_what_it_cannot_price():
    pipeline = Pipeline.from_dict({"version": 1, "providers": {"o": {"preset": "ollama"}},
                                   "steps": [{"type": "llm", "prompt": "{text}"}]})
    estimate = estimate_cost(pipeline, Table.from_records([{"text": "a"}]), data_dir=None)
    assert estimate.cost == 0
    assert estimate.problems == ["1. LLM: no model: set the step's model, or model in provider profile 'o'"]


# ---- the budget cap ------------------------------------------------------------------------------
async def test_the_run_pauses_when_its_projected_cost_passes_the_budget(models):
    models.server.configure(latency=0.01)
    # each row costs (2 x 0.15 + 3 x 0.60) / 1e6 = $0.0000021; 300 rows project to $0.00063
    run = models.engine([{"type": "llm", "prompt": "{text}", "stream": False}], prompts(300), max_concurrency=4,
                        settings={"budget": 0.0003})
    task = asyncio.ensure_future(run.engine.run())
    for _ in range(500):
        if run.engine.paused:
            break
        await asyncio.sleep(0.01)
    assert run.engine.paused
    paused = run.of(ev.RunPaused)
    assert len(paused) == 1
    assert paused[0].reason.startswith("the projected cost $0.00063 would pass the budget of $0.0003 ($0.0000")
    await asyncio.sleep(0.1)
    finished = run.engine.progress.finished
    assert finished < 50  # it stopped starting rows
    run.engine.stop()
    await task
    assert run.engine.progress.done < 50


async def test_the_run_pauses_again_when_the_money_spent_passes_the_budget(models):
    run = models.engine([{"type": "llm", "prompt": "{text}", "stream": False}], prompts(30), max_concurrency=2,
                        settings={"budget": 0.00003})
    task = asyncio.ensure_future(run.engine.run())
    for _ in range(500):
        if run.engine.paused:
            break
        await asyncio.sleep(0.01)
    run.engine.resume()  # the user goes on despite the projection
    for _ in range(500):
        if len(run.of(ev.RunPaused)) == 2:
            break
        await asyncio.sleep(0.01)
    reasons = [e.reason for e in run.of(ev.RunPaused)]
    assert reasons[0].startswith("the projected cost $0.000063 would pass the budget of $0.00003")
    assert len(reasons) == 2 and reasons[1].startswith("the run has spent $0.0000")
    run.engine.stop()
    await task


async def test_a_run_within_its_budget_is_not_paused(models):
    run = await models.run([{"type": "llm", "prompt": "{text}"}], prompts(20), settings={"budget": 1.0})
    assert run.of(ev.RunPaused) == []
    assert run.statuses() == ["done"] * 20


def test_the_price_table_file_is_plain_json(tmp_path):
    path = save_user_prices(tmp_path, {"m": {"input": 1, "output": 2}})
    assert json.loads(path.read_text()) == {"m": {"input": 1, "output": 2}}


async def test_a_knowledge_base_does_not_skew_the_budget_projection(models):
    """100 passages (300 tokens) are embedded once; 50 rows cost 2 tokens each. The run costs
    400 tokens in all; charged to the first row, the knowledge base would make every row look
    like it cost 62 and project 3,100."""
    price = 0.02 / 1e6  # text-embedding-3-small, per token
    step = {"type": "similar", "source": "text", "references": [f"passage number {i}" for i in range(100)]}
    run = models.engine([step], prompts(50), max_concurrency=1, settings={"budget": 1000 * price})
    run.engine.subscribe(lambda event: isinstance(event, ev.RunPaused) and run.engine.stop())
    await run.engine.run()
    assert [e.reason for e in run.of(ev.RunPaused)] == []
    assert run.engine.progress.done == 50
    assert run.engine.progress.cost == pytest.approx(400 * price)
