"""Run conditions ("only if"): a step runs on a row only when the row meets its `when`."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from batchgrid.core.pipeline.file import Pipeline
from batchgrid.core.run import events as ev
from batchgrid.core.run.engine import Engine, RunResources
from batchgrid.core.run.estimate import estimate_cost
from batchgrid.core.session import Session
from batchgrid.core.steps import REGISTRY, conditions
from batchgrid.core.steps.base import OUTPUT, SOURCE, Param, Step, register
from batchgrid.core.table import Table
from batchgrid.core.util.errors import PipelineError

EXAMPLES = Path(__file__).resolve().parent.parent / "resources" / "examples"
RAN: list[Any] = []  # the rows the counting step ran on


class CountingStep(Step):
    """Writes "seen <value>" and remembers each row it ran on."""

    type = "test_counting"
    title = "Counting (test)"
    group = "Text"
    params = (Param("source", SOURCE, "", required=True), Param("output", OUTPUT, "seen"))

    def apply(self, row: Mapping[str, Any]) -> dict[str, Any]:
        RAN.append(row.get(self.config["source"]))
        return {self.output_name(): f"seen {row.get(self.config['source'])}"}


if CountingStep.type not in REGISTRY:
    register(CountingStep)


def rule(column: str, op: str, value: Any = None) -> dict[str, Any]:
    return {"column": column, "op": op} if value is None else {"column": column, "op": op, "value": value}


def unmet(when: dict, row: dict) -> str | None:
    condition = conditions.parse(when)
    assert condition is not None
    return condition.unmet(row)


# ---- comparing values ---------------------------------------------------------------------------
def test_numbers_compare_as_numbers_when_both_sides_read_as_numbers():
    when = {"all": [rule("rating", "<", 3)]}
    assert unmet(when, {"rating": 2}) is None
    assert unmet(when, {"rating": "2.5"}) is None          # text that reads as a number
    assert unmet(when, {"rating": "10"}) == "rating is not < 3"  # not "10" < "3" as text
    assert unmet(when, {"rating": 3}) == "rating is not < 3"
    assert unmet(when, {"rating": None}) == "rating is not < 3"  # blank: no number, no order
    assert unmet(when, {"rating": "n/a"}) == "rating is not < 3"
    assert unmet({"all": [rule("price", ">=", "1,000")]}, {"price": "$1,200.50"}) is None
    assert unmet({"all": [rule("x", "equals", 3)]}, {"x": "3.0"}) is None


def test_text_compares_without_regard_to_case_and_patterns_as_written():
    assert unmet({"all": [rule("language", "equals", "EN")]}, {"language": " en "}) is None
    assert unmet({"all": [rule("language", "does not equal", "en")]}, {"language": "En"}) == \
        'language equals "en"'
    assert unmet({"all": [rule("review", "contains", "REFUND")]}, {"review": "I want a refund"}) is None
    assert unmet({"all": [rule("language", "is one of", ["de", "fr"])]}, {"language": "FR"}) is None
    assert unmet({"all": [rule("language", "is one of", ["de", "fr"])]}, {"language": "en"}) == \
        'language is not one of "de", "fr"'
    assert unmet({"all": [rule("sku", "matches", r"^KT-\d+$")]}, {"sku": "KT-100"}) is None
    assert unmet({"all": [rule("sku", "matches", r"^kt-")]}, {"sku": "KT-100"}) == 'sku does not match "^kt-"'


def test_dates_compare_as_dates_and_blanks_are_empty():
    when = {"all": [rule("date", ">=", "2024-03-01")]}
    assert unmet(when, {"date": dt.datetime(2024, 3, 1, 9, 30)}) is None
    assert unmet(when, {"date": "2024-02-29"}) == 'date is not >= "2024-03-01"'
    assert unmet({"all": [rule("summary", "is empty")]}, {"summary": "  "}) is None
    assert unmet({"all": [rule("summary", "is empty")]}, {"summary": float("nan")}) is None
    assert unmet({"all": [rule("summary", "is empty")]}, {"summary": "done"}) == "summary is not empty"


def test_all_names_the_first_rule_that_fails_and_any_names_every_one():
    rules = [rule("rating", "<", 3), rule("language", "does not equal", "en")]
    assert unmet({"all": rules}, {"rating": 1, "language": "en"}) == 'language equals "en"'
    assert unmet({"any": rules}, {"rating": 1, "language": "en"}) is None
    assert unmet({"any": rules}, {"rating": 4, "language": "en"}) == 'rating is not < 3 and language equals "en"'
    assert conditions.describe({"any": rules}) == 'rating < 3 or language does not equal "en"'


# ---- the pipeline file --------------------------------------------------------------------------
def _load(when: Any, columns: list[str] | None = None) -> list[str]:
    data = {"version": 1, "steps": [{"type": "trim", "source": "review", "when": when}]}
    try:
        pipeline = Pipeline.from_dict(data)
    except PipelineError as exc:
        return [str(p) for p in exc.problems]
    return [str(p) for p in pipeline.problems(columns)] if columns is not None else []


def test_a_condition_is_saved_only_when_set_and_read_back_as_written(tmp_path):
    when = {"all": [rule("rating", "<", 3)]}
    pipeline = Pipeline.from_dict({"version": 1, "steps": [{"type": "trim", "source": "review", "when": when},
                                                           {"type": "trim", "source": "review", "output": "b"}]})
    pipeline.save(tmp_path / "p.json")
    saved = json.loads((tmp_path / "p.json").read_text())["steps"]
    assert saved[0]["when"] == when and "when" not in saved[1]
    again = Pipeline.load(tmp_path / "p.json")
    assert again.steps[0].when == when and again.steps[1].when is None
    assert again.fingerprint() != Pipeline.from_dict({"version": 1, "steps": saved[1:]}).fingerprint()


def test_a_broken_condition_is_one_line_saying_what_is_wrong():
    assert _load({"all": [rule("rating", "less than", 3)]}) == [
        'steps[0].when: rule 1: unknown op "less than"; ops are: is empty, is not empty, equals, does not equal, '
        "contains, matches, >, <, >=, <=, is one of"]
    assert _load({"all": [rule("rating", "lt", 3)]})[0].startswith('steps[0].when: rule 1: unknown op "lt" '
                                                                    '(did you mean "<"?)')
    assert _load({"all": [rule("rating", "<")]}) == ['steps[0].when: rule 1: "rating <" needs a value']
    assert _load({"all": [rule("rating", "<", "high")]}) == [
        'steps[0].when: rule 1: "<" compares numbers or dates; "high" is neither']
    assert _load({"all": [{"op": "is empty"}]}) == ['steps[0].when: rule 1: "column" is missing: name the column '
                                                   "to test"]
    assert _load({"rating": "<3"})[0].startswith('steps[0].when: a condition is {"all": [rules]} or {"any": [rules]}')


def test_an_unknown_column_in_a_condition_suggests_the_one_meant():
    assert _load({"all": [rule("ratng", "<", 3)]}, ["review", "rating"]) == [
        'steps[0].when: the condition tests an unknown column "ratng" (did you mean "rating"?); '
        "columns are: review, rating"]


# ---- running ------------------------------------------------------------------------------------
def _steps(*raw: dict) -> list[Step]:
    return Pipeline.from_dict({"version": 1, "steps": list(raw)}).steps


async def _run(steps: list[Step], records: list[dict], tmp_path: Path) -> Engine:
    resources = RunResources(providers={}, settings={}, data_dir=tmp_path, use_cache=False, base_dir=tmp_path)
    engine = Engine(steps, Table.from_records(records), max_concurrency=4, resources=resources)
    await engine.run()
    return engine


async def test_rows_that_do_not_meet_it_skip_the_step_with_blank_outputs_and_say_why(tmp_path):
    RAN.clear()
    records = [{"id": i, "rating": r} for i, r in enumerate([1, 5, 2, "n/a", 3])]
    steps = _steps({"type": "test_counting", "source": "id", "when": {"all": [rule("rating", "<", 3)]}},
                   {"type": "test_counting", "source": "seen", "output": "after"})
    engine = await _run(steps, records, tmp_path)
    assert sorted(x for x in RAN if isinstance(x, int)) == [0, 2]  # the conditioned step: rows 0 and 2 only
    assert len(RAN) == 2 + 5  # the second step ran on every row
    assert [r.status for r in engine.results] == [ev.DONE] * 5
    assert [r.outputs["seen"] for r in engine.results] == ["seen 0", None, "seen 2", None, None]
    assert [r.outputs["after"] for r in engine.results] == ["seen seen 0", "seen None", "seen seen 2",
                                                          "seen None", "seen None"]
    skipped = engine.results[1].trace[0]
    assert skipped.step == "1. Counting (test)" and skipped.error == ""
    assert skipped.details == {"skipped": "rating is not < 3"}
    assert engine.results[0].trace[0].details is None


async def test_a_condition_inside_a_parallel_branch_skips_only_that_step(tmp_path):
    RAN.clear()
    steps = _steps({"type": "parallel", "branches": {
        "a": [{"type": "test_counting", "source": "id", "output": "a", "when": {"any": [rule("tag", "is one of",
                                                                                        ["x", "y"])]}}],
        "b": [{"type": "test_counting", "source": "id", "output": "b"}]}})
    engine = await _run(steps, [{"id": 0, "tag": "X"}, {"id": 1, "tag": "z"}], tmp_path)
    assert [r.outputs["a"] for r in engine.results] == ["seen 0", None]
    assert [r.outputs["b"] for r in engine.results] == ["seen 0", "seen 1"]
    assert sorted(RAN) == [0, 0, 1]  # branch a ran on row 0 only
    # The inspector's trace has the branches' steps, after their parallel step; the skip says why.
    assert [(t.step, t.details) for t in engine.results[1].trace] == [
        ("1. Parallel branches", None),
        ("1. Parallel branches › a › 1. Counting (test)", {"skipped": 'tag is not one of "x", "y"'}),
        ("1. Parallel branches › b › 1. Counting (test)", None)]
    assert engine.results[1].trace[1].path == (0, "a", 0)


def test_the_projection_counts_only_the_rows_that_meet_the_condition(tmp_path):
    rows = Table.from_records([{"text": "x" * 400, "rating": r} for r in [1, 4, 5, 2] * 50])
    pipeline = Pipeline.from_dict({
        "version": 1, "providers": {"p": {"preset": "openai", "model": "gpt-4o-mini"}},
        "steps": [{"type": "llm", "prompt": "{text}", "max_tokens": 100, "output": "a",
                   "when": {"all": [rule("rating", "<=", 2)]}},
                  {"type": "llm", "prompt": "{text}", "max_tokens": 100, "output": "b"}]})
    estimate = estimate_cost(pipeline, rows, sample=20, data_dir=tmp_path)
    conditioned, every = estimate.steps
    assert (conditioned.calls, every.calls) == (100, 200)  # half the sampled rows meet it
    assert conditioned.tokens_in * 2 == every.tokens_in and abs(conditioned.cost * 2 - every.cost) < 1e-12


# ---- the bundled model example ------------------------------------------------------------------
async def test_the_model_example_pays_only_for_the_rows_that_meet_its_condition(tmp_path, fake_openai, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", fake_openai.base_url)  # a local server: no key, every model free
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)

    def reply(prompt: str, request: dict) -> str:  # a label for the classifier, the fields for the extractor
        if "response_format" in request:
            return json.dumps({"problem": "it broke", "wants_refund": False})
        return "negative" if "Classify" in prompt else f"echo: {prompt}"

    fake_openai.configure(reply=reply)
    session = Session(journal_path=tmp_path / "journal.sqlite", data_dir=tmp_path, use_cache=False)
    await session.load_pipeline(EXAMPLES / "reviews-llm.batchgrid.json")
    await session.open_sheet(EXAMPLES / "reviews.xlsx")
    assert session.problems() == []
    ratings = list(session.table.column("rating"))
    low = [i for i, r in enumerate(ratings) if r <= 3]
    assert 0 < len(low) < len(ratings)
    estimate = await session.estimate()
    calls = {s.step: s.calls for s in estimate.steps}
    sampled_low = sum(r <= 3 for r in ratings[:20])
    assert calls["3. What went wrong"] == round(sampled_low * len(ratings) / 20) < calls["2. Sentiment"] == 240
    await session.start()
    reason, _ = await session.wait()
    assert reason == "finished" and session.store.count(ev.DONE) == 240
    out = tmp_path / "out.csv"
    await session.export(out)
    frame = pd.read_csv(out)
    asked = {p.split("\n\nExtract")[0] for p in fake_openai.stats.per_prompt if p.startswith("Review: ")}
    assert asked == {f"Review: {text}" for text in frame["review_clean"][low]}  # the extractor's requests
    assert sum(n for p, n in fake_openai.stats.per_prompt.items() if p.startswith("Review: ")) <= len(low)
    assert frame["problem"].notna().tolist() == [r <= 3 for r in ratings]
    assert frame["reply"].notna().all()
    await session.close()


def test_the_readme_s_condition_examples_are_valid_and_read_well():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    block = readme.split("Any step can run **only when**", 1)[1].split("```json\n", 1)[1].split("```", 1)[0]
    steps = json.loads(block)
    assert [conditions.problems(s["when"]) for s in steps] == [[], [], []]
    assert [conditions.describe(s["when"]) for s in steps] == [
        "summary is empty", 'language does not equal "en"', 'rating <= 2 or sentiment equals "negative"']
    example = json.loads((EXAMPLES / "reviews-llm.batchgrid.json").read_text())
    assert [conditions.describe(s.get("when")) for s in example["steps"]] == ["", "", "rating <= 3", ""]


def _cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "batchgrid.core.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_the_command_line_checks_a_condition_and_runs_it(tmp_path):
    data = tmp_path / "reviews.csv"
    data.write_text("review,rating\n  good ,5\n bad ,1\n so-so ,2\n")
    pipeline = tmp_path / "p.json"
    step = {"type": "trim", "source": "review", "output": "clean", "when": {"all": [rule("ratng", "<", 3)]}}
    pipeline.write_text(json.dumps({"version": 1, "steps": [step]}))
    bad = _cli("check", pipeline, data)
    assert bad.returncode != 0
    assert 'steps[0].when: the condition tests an unknown column "ratng" (did you mean "rating"?)' in bad.stderr
    step["when"] = {"all": [rule("rating", "<", 3)]}
    pipeline.write_text(json.dumps({"version": 1, "steps": [step]}))
    out = tmp_path / "out.csv"
    ran = _cli("run", pipeline, data, "-o", out, "--journal", tmp_path / "j.sqlite")
    assert ran.returncode == 0, ran.stderr
    frame = pd.read_csv(out, keep_default_na=False)
    assert frame["clean"].tolist() == ["", "bad", "so-so"]
