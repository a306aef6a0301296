"""A step that writes over an input column (issue 14, part 1): "keep the input value when the step
writes over a column". The headline use: call the model only for rows whose `summary` is still
empty, and pay once, even across reruns on an updated sheet.

The column keeps its place among the inputs in the results table, the store, every export and the
review pass; rows the step skips (or that fail or do not run) keep the value the sheet has.
"""

from __future__ import annotations

import json

import openpyxl
import pandas as pd
from batchgrid.core.pipeline.file import Pipeline
from batchgrid.core.run import events as ev
from batchgrid.core.run.results import ResultSet
from batchgrid.core.run.store import ResultStore
from batchgrid.core.session import Session
from batchgrid.core.table import Table

EMPTY_SUMMARY = {"all": [{"column": "summary", "op": "is empty"}]}


def _lines(problems) -> list[str]:
    return [str(p) for p in problems]


def test_a_step_may_write_over_an_input_column_but_two_steps_may_not_write_the_same_one():
    pipeline = Pipeline.from_dict({"version": 1, "steps": [
        {"type": "template", "template": "about {text}", "output": "summary", "when": EMPTY_SUMMARY},
        {"type": "change_case", "source": "summary", "output": "loud"},
        {"type": "template", "template": "{text}", "output": "summary"},
    ]})
    assert _lines(pipeline.problems(["text", "summary"])) == [
        'steps[2]: output "summary" is already written by steps[0]; choose another name']


def _result(index: int, outputs: dict, status: str = ev.DONE) -> ev.RowResult:
    return ev.RowResult(index, status, outputs, "boom" if status == ev.ERROR else "")


def test_the_results_table_keeps_a_written_column_in_its_place_with_the_sheet_s_value_where_the_step_did_not_write():
    rows = Table.from_records([{"text": "a", "summary": "kept"}, {"text": "b", "summary": None},
                               {"text": "c", "summary": "old"}, {"text": "d", "summary": "untouched"}])
    results = [_result(0, {"summary": "kept", "loud": "KEPT"}), _result(1, {"summary": "about b", "loud": "ABOUT B"}),
               _result(2, {"summary": "old"}, ev.ERROR), None]
    result_set = ResultSet(rows, ["summary", "loud"], results)
    assert result_set.header()[:3] == ["text", "summary", "loud"] and result_set.header().count("summary") == 1
    assert result_set.output_columns == ["loud"] and result_set.written_inputs == {"summary"}
    assert [result_set.row_values(i)[:3] for i in range(4)] == [
        ["a", "kept", "KEPT"], ["b", "about b", "ABOUT B"], ["c", "old", None], ["d", "untouched", None]]


def test_the_store_reads_and_reviews_a_written_column_where_it_stands():
    rows = Table.from_records([{"text": "a", "summary": None}, {"text": "b", "summary": "mine"}])
    store = ResultStore()
    store.reset(rows, ["summary", "loud"], [_result(0, {"summary": "about a", "loud": "X"}), None])
    assert store.header[:3] == ["text", "summary", "loud"]
    assert store.step_columns == ["summary", "loud"] and store.output_columns == ["loud"]
    assert [store.value(0, 1), store.value(1, 1), store.value(0, 2)] == ["about a", "mine", "X"]
    assert store.value(1, 1, input_row={"text": "b", "summary": "mine"}) == "mine"
    assert store.column_values(1) == ["about a", "mine"]
    assert not store.edited(0, 0) and not store.edited(0, 1)
    store.review(0, "accepted", {"summary": "about a, edited"})
    assert store.value(0, 1) == "about a, edited" and store.edited(0, 1) and not store.edited(0, 0)
    assert store.result_set().edited_columns(0) == [1]
    assert store.result_set().row_values(0)[1] == "about a, edited"


async def test_pay_once_across_reruns_on_an_updated_sheet(tmp_path, fake_openai, monkeypatch):
    """Run, export, add rows to the export, run again on it: only the new rows call the model."""
    monkeypatch.setenv("OPENAI_BASE_URL", fake_openai.base_url)  # a local server: no key, free
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    fake_openai.configure(reply=lambda prompt, request: f"summary of {prompt.removeprefix('Summarise: ')}")
    pipeline = tmp_path / "summaries.batchgrid.json"
    pipeline.write_text(json.dumps({"version": 1, "steps": [
        {"type": "llm", "prompt": "Summarise: {text}", "output": "summary", "when": EMPTY_SUMMARY}]}))
    sheet = tmp_path / "tickets.xlsx"
    pd.DataFrame({"text": ["one", "two", "three"], "summary": [None, "written by hand", None]}).to_excel(
        sheet, index=False)

    session = Session(journal_path=tmp_path / "journal.sqlite", data_dir=tmp_path, use_cache=False)
    await session.load_pipeline(pipeline)
    await session.open_sheet(sheet)
    assert session.problems() == []
    estimate = await session.estimate()
    assert [s.calls for s in estimate.steps] == [2]  # the projection counts the empty summaries only
    await session.start()
    assert (await session.wait())[0] == "finished"
    assert fake_openai.stats.by_path["/v1/chat/completions"] == 2
    first = tmp_path / "first.xlsx"
    await session.export(first)
    sheet_rows = list(openpyxl.load_workbook(first).worksheets[0].iter_rows(values_only=True))
    assert sheet_rows[0][:3] == ("text", "summary", "status")
    assert [r[:3] for r in sheet_rows[1:]] == [("one", "summary of one", "done"),
                                               ("two", "written by hand", "done"),
                                               ("three", "summary of three", "done")]
    skipped = session.store.results[1].trace[0]
    assert skipped.details == {"skipped": "summary is not empty"}

    # The analyst adds two tickets to the exported sheet and runs the same pipeline on it.
    updated = tmp_path / "updated.xlsx"
    frame = pd.read_excel(first, engine="openpyxl")[["text", "summary"]]
    frame = pd.concat([frame, pd.DataFrame({"text": ["four", "five"], "summary": [None, None]})])
    frame.to_excel(updated, index=False)
    await session.open_sheet(updated)
    assert session.problems() == []
    await session.start()
    assert (await session.wait())[0] == "finished"
    assert fake_openai.stats.by_path["/v1/chat/completions"] == 4  # two more: the new rows only
    second = tmp_path / "second.csv"
    await session.export(second)
    assert pd.read_csv(second)["summary"].tolist() == [
        "summary of one", "written by hand", "summary of three", "summary of four", "summary of five"]
    await session.close()
