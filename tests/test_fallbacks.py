"""Fallbacks of the model steps (issue 14, part 2): another model or provider asked when the first
fails for a row, answers what does not validate, or is rate limited past the fallback wait."""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest
from batchgrid.core.pipeline.file import Pipeline
from batchgrid.core.providers import DEFAULT_PRICES
from batchgrid.core.run.estimate import estimate_cost
from batchgrid.core.steps import new_step
from batchgrid.core.table import Table
from batchgrid.core.util.errors import PipelineError
from models_support import KEY_ENV, example_replies, prompts

FIELDS = [{"name": "problem", "type": "string"}]


def counting(server, answer):
    """Configure the server's answers with `answer(prompt, model)`; returns the 200 answers per model."""
    asked: Counter = Counter()

    def reply(prompt: str, request: dict) -> str:
        asked[request["model"]] += 1
        return answer(prompt.split("\n\n")[0], request["model"])

    server.configure(reply=reply)
    return asked


def _price(model: str, tokens_in: int, tokens_out: int) -> float:
    price = DEFAULT_PRICES[model]
    return (tokens_in * price["input"] + tokens_out * price["output"]) / 1e6


async def test_a_fallback_answers_the_rows_the_first_model_does_not_know(models):
    models.server.configure(models=["gpt-4o"])  # the step's own gpt-4o-mini: 404 model_not_found
    asked = counting(models.server, lambda prompt, model: f"{model} says {prompt}")
    step = {"type": "llm", "prompt": "{text}", "fallbacks": [{"model": "gpt-4o"}], "stream": False}
    run = await models.run([step], prompts(4), max_concurrency=1)
    assert run.statuses() == ["done"] * 4
    assert run.outputs("answer") == [f"gpt-4o says row {i}" for i in range(4)]
    assert run.outputs("answer_model") == ["gpt-4o"] * 4
    assert asked == {"gpt-4o": 4}
    assert models.server.stats.statuses[404] == 1  # the unknown model is asked once; later rows know
    for result in run.results:
        trace = result.trace[0].details
        assert trace["answered_by"] == "gpt-4o"
        assert trace["fallbacks"].startswith("gpt-4o-mini: provider 'test' has no model 'gpt-4o-mini'")


async def test_a_structured_answer_that_is_not_json_goes_to_the_fallback_and_each_call_is_priced_by_its_model(models):
    def answer(prompt, model):
        return "sorry, no JSON" if model == "gpt-4o-mini" and prompt != "row 0" else '{"problem": "late"}'

    asked = counting(models.server, answer)
    step = {"type": "structured", "prompt": "{text}", "fields": FIELDS, "mode": "json",
            "fallbacks": [{"model": "gpt-4o"}]}
    run = await models.run([step], prompts(3))
    assert run.statuses() == ["done"] * 3
    assert run.outputs("problem") == ["late"] * 3
    assert run.outputs("answered_by") == ["gpt-4o-mini", "gpt-4o", "gpt-4o"]
    assert asked == {"gpt-4o-mini": 3, "gpt-4o": 2}
    first, second = run.results[0], run.results[1]
    # the server counts words; the prompt is the same for both models, the answers differ
    mini_in = first.tokens_in
    assert abs(first.cost - _price("gpt-4o-mini", mini_in, 2)) < 1e-12
    assert second.tokens_in == 2 * mini_in
    assert abs(second.cost - (_price("gpt-4o-mini", mini_in, 3) + _price("gpt-4o", mini_in, 2))) < 1e-12
    assert "not a JSON object" in second.trace[0].details["fallbacks"]
    costs = second.trace[0].details["costs"]  # the inspector: what each model cost this row
    assert costs.keys() == {"gpt-4o-mini", "gpt-4o"}
    assert abs(costs["gpt-4o"] - _price("gpt-4o", mini_in, 2)) < 1e-12 and abs(sum(costs.values()) - second.cost) < 1e-12


async def test_a_label_outside_the_list_goes_to_another_provider(models):
    providers = {**models.providers(), "big": {"preset": "openai", "base_url": models.server.base_url,
                                                "api_key_env": KEY_ENV, "model": "gpt-4o"}}
    asked = counting(models.server, lambda prompt, model: "maybe" if model == "gpt-4o-mini" else "positive")
    step = {"type": "classify", "provider": "test", "prompt": "{text}", "labels": ["positive", "negative"],
            "fallbacks": [{"provider": "big"}], "output": "sentiment"}
    run = await models.run([step], prompts(2), providers=providers)
    assert run.outputs("sentiment") == ["positive", "positive"]
    assert run.outputs("sentiment_model") == ["gpt-4o at big"] * 2
    assert asked == {"gpt-4o-mini": 2, "gpt-4o": 2}


async def test_a_row_every_model_fails_says_so_in_one_line_naming_each(models):
    models.server.configure(models=["gpt-4o-mini"])
    counting(models.server, lambda prompt, model: "no JSON here")
    step = {"type": "structured", "prompt": "{text}", "fields": FIELDS, "mode": "json",
            "fallbacks": [{"model": "llama3.1"}]}
    run = await models.run([step], prompts(1))
    assert run.statuses() == ["error"]
    error = run.errors()[0]
    assert "\n" not in error
    assert error.startswith("every model failed: gpt-4o-mini: the model's answer is not a JSON object: no JSON here; "
                            "then llama3.1: provider 'test' has no model 'llama3.1'")


async def test_a_transient_error_retries_the_same_model_and_a_400_moves_on(models):
    models.server.configure(script={"row 0": [500], "row 1": [400]})
    asked = counting(models.server, lambda prompt, model: f"{model}: {prompt}")
    step = {"type": "llm", "prompt": "{text}", "fallbacks": [{"model": "gpt-4o"}]}
    run = await models.run([step], prompts(2))
    assert run.outputs("answer") == ["gpt-4o-mini: row 0", "gpt-4o: row 1"]
    assert run.results[0].attempts == 2
    assert asked == {"gpt-4o-mini": 1, "gpt-4o": 1}


async def test_a_rate_limit_longer_than_the_fallback_wait_goes_to_the_next_model(models):
    models.server.configure(script={"row 0": [429]}, retry_after=30)
    asked = counting(models.server, lambda prompt, model: f"{model}: {prompt}")
    step = {"type": "llm", "prompt": "{text}", "fallbacks": [{"model": "gpt-4o"}], "fallback_wait": 5}
    run = await models.run([step], prompts(1))
    assert run.outputs("answer") == ["gpt-4o: row 0"]
    assert "fallback wait (5 s)" in run.results[0].trace[0].details["fallbacks"]
    assert asked == {"gpt-4o": 1}


async def test_a_row_the_provider_would_hold_past_the_fallback_wait_goes_on_without_asking_it():
    """When the provider's limiter holds every request (429s were the rule) for longer than the fallback
    wait, a row with a fallback does not wait there: the model is not asked, the next one is."""
    from batchgrid.core.providers.limiter import ProviderLimiter
    from batchgrid.core.steps.models import _HeldGate
    from batchgrid.core.util.errors import StepError

    limiter = ProviderLimiter(ceiling=4)
    limiter.blocked_until = time.monotonic() + 30  # as rate_limited() sets it
    with pytest.raises(StepError, match=r"holds every request for 30 s more .* longer than the fallback wait \(5 s\)"):
        async with _HeldGate(limiter.gate(), 5).acquire():
            raise AssertionError("asked while held")
    assert limiter.in_flight == 0
    limiter.blocked_until = 0.0  # no hold: the row takes its turn as usual
    async with _HeldGate(limiter.gate(), 5).acquire():
        assert limiter.in_flight == 1
    assert limiter.in_flight == 0


async def test_a_short_rate_limit_waits_for_the_same_model(models):
    models.server.configure(script={"row 0": [429]}, retry_after=0.01)
    asked = counting(models.server, lambda prompt, model: f"{model}: {prompt}")
    step = {"type": "llm", "prompt": "{text}", "fallbacks": [{"model": "gpt-4o"}], "fallback_wait": 5}
    run = await models.run([step], prompts(1))
    assert run.outputs("answer") == ["gpt-4o-mini: row 0"]
    assert asked == {"gpt-4o-mini": 1}


def test_the_pipeline_check_validates_fallback_entries():
    def problems(step, providers=None):
        try:
            pipeline = Pipeline.from_dict({"version": 1, "providers": providers or {"local": {
                "preset": "ollama", "model": "llama3.1"}, "hosted": {"preset": "openai", "model": "gpt-4o-mini"}},
                "steps": [step]})
        except PipelineError as exc:  # the step's own checks: said when the file is read
            return exc.messages()
        return [str(p) for p in pipeline.problems()]

    base = {"type": "llm", "provider": "local", "prompt": "{text}"}
    assert problems({**base, "fallbacks": [{"provider": "hosted"}]}) == []
    assert problems({**base, "fallbacks": [{"provider": "hostd"}]}) == [
        "steps[0].fallbacks[0]: no provider profile named 'hostd'; profiles are: local, hosted"]
    assert problems({**base, "fallbacks": [{"provider": "bare"}]},
                    {"local": {"preset": "ollama", "model": "llama3.1"}, "bare": {"preset": "llamacpp"}}) == [
        "steps[0].fallbacks[0]: no model; provider 'bare' has no default model, so name one here "
        "(\"model\": ...) or set providers.bare.model"]
    assert problems({**base, "fallbacks": [{"modle": "x"}]}) == [
        "steps[0].fallbacks[0]: unknown key 'modle'; a fallback has provider and model"]
    assert problems({**base, "fallbacks": [{}]}) == ["steps[0].fallbacks[0]: name a provider, a model or both"]
    assert problems({**base, "fallbacks": [{"provider": "local"}]}) == [
        "steps[0].fallbacks[0]: the same model on the same provider is already asked before it"]
    assert problems({**base, "batch": True, "fallbacks": [{"provider": "hosted"}]}) == []  # batch mode takes them


def test_the_model_column_is_declared_only_with_fallbacks():
    assert new_step("llm", prompt="{x}").writes() == ["answer"]
    assert new_step("llm", prompt="{x}", fallbacks=[{"model": "b"}]).writes() == ["answer", "answer_model"]
    assert new_step("structured", prompt="{x}", fields=FIELDS, prefix="p_",
                    fallbacks=[{"model": "b"}]).writes() == ["p_problem", "p_answered_by"]


def test_the_projection_uses_the_first_model_and_says_fallbacks_may_cost_more(tmp_path):
    rows = Table.from_records([{"text": "x" * 400}] * 10)
    providers = {"p": {"preset": "openai", "model": "gpt-4o-mini"}}
    plain = {"type": "llm", "prompt": "{text}", "max_tokens": 100}
    one = estimate_cost(Pipeline.from_dict({"version": 1, "providers": providers, "steps": [plain]}), rows,
                        data_dir=tmp_path)
    two = estimate_cost(Pipeline.from_dict({"version": 1, "providers": providers,
                                            "steps": [{**plain, "fallbacks": [{"model": "gpt-4o"}]}]}), rows,
                        data_dir=tmp_path)
    assert two.cost == one.cost and [s.model for s in two.steps] == ["gpt-4o-mini"]
    assert two.describe().endswith("; rows that fall back to another model cost more")
    assert "fall back" not in one.describe()


def test_the_readme_s_fallback_example_is_a_valid_step():
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    block = readme.split("A model step can name **fallbacks**", 1)[1].split("```json\n", 1)[1].split("```", 1)[0]
    pipeline = Pipeline.from_dict(json.loads(block))
    assert [str(p) for p in pipeline.problems()] == []
    assert pipeline.steps[0].config["fallbacks"] == [{"provider": "hosted", "model": "gpt-4o-mini"}]


async def test_the_model_example_s_extractor_falls_back_to_the_bigger_model(tmp_path, fake_openai, monkeypatch):
    from pathlib import Path

    import pandas as pd
    from batchgrid.core.session import Session

    examples = Path(__file__).resolve().parent.parent / "resources" / "examples"
    monkeypatch.setenv("OPENAI_BASE_URL", fake_openai.base_url)  # a local server: no key, every model free
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    extracted: Counter = Counter()
    answered: dict[str, str] = {}  # the extractor's prompt -> the model whose JSON was kept
    fake_openai.configure(reply=example_replies(answered, extracted))
    session = Session(journal_path=tmp_path / "journal.sqlite", data_dir=tmp_path, use_cache=False)
    await session.load_pipeline(examples / "reviews-llm.batchgrid.json")
    await session.open_sheet(examples / "reviews.xlsx")
    assert session.problems() == []
    await session.start()
    reason, _ = await session.wait()
    assert reason == "finished"
    out = tmp_path / "out.csv"
    await session.export(out)
    frame = pd.read_csv(out)
    await session.close()
    low = frame[frame["rating"] <= 3]
    assert low["problem"].eq("it broke").all() and frame[frame["rating"] > 3]["answered_by"].isna().all()
    assert low["answered_by"].tolist() == [answered[f"Review: {t}"] for t in low["review_clean"]]
    fell_back = sum(len(f"Review: {t}") % 2 for t in low["review_clean"])
    assert 0 < fell_back < len(low)
    # identical reviews share one request (single flight): at most one call per row and model
    assert set(extracted) == {"gpt-4o-mini", "gpt-4o"}
    assert extracted["gpt-4o-mini"] <= len(low) and 0 < extracted["gpt-4o"] <= fell_back
    assert low["answered_by"].value_counts().to_dict() == {"gpt-4o-mini": len(low) - fell_back, "gpt-4o": fell_back}


async def test_an_answer_cut_at_the_token_limit_falls_back_and_leaves_no_warning_on_the_row(models):
    def answer(prompt, model):
        return "one two three four five six seven eight nine ten" if model == "gpt-4o-mini" else '{"problem": "late"}'

    counting(models.server, answer)
    step = {"type": "structured", "prompt": "{text}", "fields": FIELDS, "mode": "json", "max_tokens": 4,
            "fallbacks": [{"model": "gpt-4o"}]}
    run = await models.run([step], prompts(1))
    result = run.results[0]
    assert run.outputs("problem") == ["late"] and run.outputs("answered_by") == ["gpt-4o"]
    assert "cut off at the token limit (max_tokens 4)" in result.trace[0].details["fallbacks"]
    assert result.note == ""


def test_the_command_line_check_names_a_fallback_s_unknown_provider(tmp_path):
    import subprocess
    import sys

    data = tmp_path / "reviews.csv"
    data.write_text("review\ngood\n")
    pipeline = tmp_path / "p.json"
    pipeline.write_text(json.dumps({"version": 1, "providers": {"local": {"preset": "ollama", "model": "llama3.1"}},
                                    "steps": [{"type": "llm", "provider": "local", "prompt": "{review}",
                                               "fallbacks": [{"provider": "hosted", "model": "gpt-4o-mini"}]}]}))
    checked = subprocess.run([sys.executable, "-m", "batchgrid.core.cli", "check", str(pipeline), str(data)],
                             capture_output=True, text=True, timeout=120)
    assert checked.returncode != 0
    assert "steps[0].fallbacks[0]: no provider profile named 'hosted'; profiles are: local" in checked.stderr


def test_a_fallback_s_provider_must_be_set_up_before_the_run():
    from batchgrid.core.pipeline.model_checks import setup_problems

    providers = {"local": {"preset": "ollama", "model": "llama3.1"}, "hosted": {"preset": "openai"}}
    step = new_step("llm", provider="local", prompt="{text}", fallbacks=[{"provider": "hosted"}])
    problems = setup_problems([step], providers, environ={})
    assert len(problems) == 1 and "OPENAI_API_KEY" in problems[0]
    assert setup_problems([step], providers, environ={"OPENAI_API_KEY": "sk-test"}) == []


def test_the_command_line_runs_a_fallback_and_writes_which_model_answered(tmp_path, fake_openai, monkeypatch):
    """A local model first, a hosted one for the rows it cannot do, headless: the output says which answered."""
    import pandas as pd
    from batchgrid.core.cli.main import main
    from models_support import KEY

    monkeypatch.setenv(KEY_ENV, KEY)
    fake_openai.configure(api_key=KEY, models=["gpt-4o"])  # the first model is unknown there: a permanent error
    asked = counting(fake_openai, lambda prompt, model: f"{model} says {prompt}")
    data = tmp_path / "reviews.csv"
    data.write_text("review\ngood\nbad\n")
    pipeline = tmp_path / "p.json"
    pipeline.write_text(json.dumps({"version": 1, "providers": {"hosted": {
        "preset": "openai", "base_url": fake_openai.base_url, "api_key_env": KEY_ENV, "model": "gpt-4o-mini"}},
        "steps": [{"type": "llm", "prompt": "{review}", "stream": False, "fallbacks": [{"model": "gpt-4o"}]}]}))
    out = tmp_path / "out.csv"
    assert main(["run", str(pipeline), str(data), "-o", str(out), "--journal", str(tmp_path / "j.sqlite"),
                 "--quiet"]) == 0
    frame = pd.read_csv(out)
    assert frame["answer"].tolist() == ["gpt-4o says good", "gpt-4o says bad"]
    assert frame["answer_model"].tolist() == ["gpt-4o", "gpt-4o"]
    assert asked == {"gpt-4o": 2}
