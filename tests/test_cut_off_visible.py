"""An LLM answer cut off at the token limit is done, and says so where the user looks:
the results table's note column (and its tooltip), the export, the journal, the CLI's summary."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd

from batchgrid.core.run import events as ev
from batchgrid.core.run.journal import keeps_trace
from batchgrid.core.run.store import ResultStore

CUT = "the answer was cut off at the token limit (max_tokens 2); raise Max tokens"


def _cut_result(index: int) -> ev.RowResult:
    trace = [ev.StepTrace("Summarise", 0.1, details={"finish_reason": "length", "warning": CUT})]
    return ev.RowResult(index, ev.DONE, {"answer": "echo: a"}, trace=trace)


async def test_a_cut_off_answer_has_a_note_in_the_results_table(models):
    run = await models.run([{"type": "llm", "prompt": "{text}", "max_tokens": 2}],
                           [{"text": "a b c d e"}, {"text": "f"}])
    assert run.statuses() == ["done", "done"]
    store = ResultStore()
    store.reset(run.engine.rows, ["answer"], run.engine.results)
    note = store.header.index("note")
    assert store.value(0, note) == f"1. LLM: {CUT}"
    assert store.value(1, note) is None  # a whole answer has nothing to say


def test_a_row_with_a_note_keeps_its_trace_in_the_journal_whatever_its_number():
    plain = ev.RowResult(151, ev.DONE, {"answer": "x"})
    assert not keeps_trace(plain)  # outside the sample: a done row's trace is not kept...
    assert keeps_trace(_cut_result(151))  # ...unless it carries the note


def test_the_cli_says_how_many_rows_were_cut_and_the_export_has_the_note(tmp_path, fake_openai):
    pipeline = tmp_path / "llm.json"
    pipeline.write_text(json.dumps({"version": 1, "steps": [
        {"type": "llm", "prompt": "{text}", "output": "summary", "max_tokens": 2, "stream": False}]}))
    data = tmp_path / "in.csv"
    data.write_text("text\none two three\nfour\n")
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    env["OPENAI_BASE_URL"] = fake_openai.base_url
    out = tmp_path / "out.csv"
    result = subprocess.run([sys.executable, "-m", "batchgrid.core.cli", "run", str(pipeline), str(data),
                             "-o", str(out), "--journal", str(tmp_path / "j.sqlite")],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    assert "1 done with a warning (see the note column)" in result.stderr
    frame = pd.read_csv(out)
    assert frame["summary"].tolist() == ["echo: one", "echo: four"]
    assert frame["note"].tolist()[0] == f"1. LLM: {CUT}" and pd.isna(frame["note"].tolist()[1])
