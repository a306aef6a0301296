"""The review pass in core: a row's decision and edited cells (core/run/overrides.py) are kept in the
journal at once, read by the result store over what the steps wrote, kept through reruns, a SIGKILL
and a changed sheet, and exported with a "review" column and a summary on the Run sheet.

Real sessions and journal files, a real subprocess killed with SIGKILL, workbooks read back with
openpyxl."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import openpyxl
import pandas as pd
import pytest
from batchgrid.core.pipeline import Pipeline
from batchgrid.core.run import events as ev
from batchgrid.core.run.journal import Journal
from batchgrid.core.run.overrides import ACCEPTED, EDITED, REJECTED, coerce
from batchgrid.core.session import Session

PIPELINE = {"version": 1, "steps": [{"type": "template", "template": "<{text}>", "output": "wrapped"}]}


def write_sheet(path: Path, texts: list[str]) -> Path:
    pd.DataFrame({"text": texts}).to_csv(path, index=False)
    return path


async def run_session(tmp_path: Path, sheet: Path, pipeline: dict | None = None) -> Session:
    """A session over `sheet` with the journal in tmp_path, every row run."""
    session = Session(journal_path=tmp_path / "journal.sqlite")
    session.set_pipeline(Pipeline.from_dict(pipeline or PIPELINE))
    await session.open_sheet(sheet)
    await session.start("resume")
    assert (await session.wait())[0] == "finished"
    session.run_ended()
    return session


def wrapped_column(session: Session) -> int:
    return session.store.header.index("wrapped")


async def test_a_review_is_kept_and_an_edited_cell_reads_as_edited(tmp_path):
    sheet = write_sheet(tmp_path / "rows.csv", [f"t{i}" for i in range(10)])
    session = await run_session(tmp_path, sheet)
    changed = []
    session.store.on_change = changed.append
    session.review(0, ACCEPTED)
    session.review(1, EDITED, {"wrapped": "fixed by hand"})
    session.review(2, REJECTED)
    assert changed == [0, 1, 2]  # the window repaints each row
    column = wrapped_column(session)
    assert session.store.value(1, column) == "fixed by hand"
    assert session.store.step_value(1, "wrapped") == "<t1>"
    assert session.store.edited(1, column) and not session.store.edited(0, column)
    assert session.overrides.counts() == {ACCEPTED: 1, EDITED: 1, REJECTED: 1}
    assert session.overrides.summary(10) == "1 accepted, 1 edited, 1 rejected of 10"
    # Accepting an edited row keeps its edits; an edit back to the step's value is no edit.
    assert session.review(1, ACCEPTED).decision == EDITED
    review = session.review(1, EDITED, {"wrapped": "<t1>"})
    assert review.decision == ACCEPTED and review.edits == {}
    assert session.store.value(1, column) == "<t1>"
    # None forgets a row's review
    assert session.review(2, None) is None and 2 not in session.overrides
    await session.close()


async def test_only_output_columns_can_be_edited(tmp_path):
    session = await run_session(tmp_path, write_sheet(tmp_path / "rows.csv", ["a", "b"]))
    with pytest.raises(ValueError, match="text"):
        session.review(0, EDITED, {"text": "changed input"})
    with pytest.raises(IndexError):
        session.review(5, ACCEPTED)
    assert len(session.overrides) == 0
    await session.close()


async def test_edits_survive_run_all_again_and_an_edited_pipeline_and_come_back_in_a_new_session(tmp_path):
    sheet = write_sheet(tmp_path / "rows.csv", [f"t{i}" for i in range(6)])
    session = await run_session(tmp_path, sheet)
    session.review(3, EDITED, {"wrapped": "mine"})
    session.review(4, REJECTED)
    await session.start("all")  # every row afresh
    await session.wait()
    session.run_ended()
    column = wrapped_column(session)
    assert session.store.value(3, column) == "mine"
    assert session.store.value(2, column) == "<t2>"
    # The pipeline edited: the step writes something else, the edited cell stays the user's.
    session.set_pipeline(Pipeline.from_dict({"version": 1, "steps": [
        {"type": "template", "template": "[{text}]", "output": "wrapped"}]}))
    await session.start("resume")
    await session.wait()
    session.run_ended()
    assert session.store.value(2, column) == "[t2]"
    assert session.store.value(3, column) == "mine"
    await session.close()

    again = Session(journal_path=tmp_path / "journal.sqlite")
    again.set_pipeline(Pipeline.from_dict(PIPELINE))
    await again.open_sheet(sheet)
    assert {r: (v.decision, v.edits) for r, v in again.overrides.rows.items()} == {
        3: (EDITED, {"wrapped": "mine"}), 4: (REJECTED, {})}
    assert again.overrides.notes == []
    await again.close()


async def test_a_review_follows_its_row_and_is_dropped_with_a_note_when_the_input_changed(tmp_path):
    sheet = write_sheet(tmp_path / "rows.csv", ["a", "b", "c", "d", "e", "f"])
    session = await run_session(tmp_path, sheet)
    session.review(2, EDITED, {"wrapped": "C!"})   # "c"
    session.review(4, ACCEPTED)                    # "e"
    await session.close()

    write_sheet(sheet, ["new", "a", "b", "c", "d", "E changed", "f"])  # a row inserted, "e" changed
    again = Session(journal_path=tmp_path / "journal.sqlite")
    again.set_pipeline(Pipeline.from_dict(PIPELINE))
    await again.open_sheet(sheet)
    assert {r: v.edits for r, v in again.overrides.rows.items()} == {3: {"wrapped": "C!"}}
    assert again.overrides.notes == ["1 review followed its row to a new place in the sheet: row 3 → 4",
                                     "1 review dropped: the input of row 5 changed since"]
    await again.close()

    third = Session(journal_path=tmp_path / "journal.sqlite")
    await third.open_sheet(sheet)  # written back: said once
    assert list(third.overrides.rows) == [3] and third.overrides.notes == []
    await third.close()


def test_an_older_journal_gets_the_overrides_table_and_keeps_its_runs(tmp_path):
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as old:  # a journal file from before reviews (and batches)
        old.execute("CREATE TABLE runs (run_id TEXT PRIMARY KEY, job_key TEXT NOT NULL, pipeline_hash TEXT NOT NULL,"
                    " input_path TEXT, sheet TEXT, total INTEGER NOT NULL, started REAL NOT NULL, finished REAL,"
                    " status TEXT NOT NULL DEFAULT 'running')")
        old.execute("INSERT INTO runs VALUES ('r1', 'job', 'p', NULL, NULL, 3, 1.0, NULL, 'finished')")
    journal = Journal(path)
    assert journal.runs("job") == ["r1"]
    journal.save_override("sheet", 2, "h", EDITED, {"x": 1.5})
    assert {r: (v.decision, v.edits) for r, v in journal.load_overrides("sheet").items()} == {2: (EDITED, {"x": 1.5})}
    journal.clear()  # clearing the runs leaves the user's reviews
    assert list(journal.load_overrides("sheet")) == [2]
    journal.delete_overrides("sheet", [2])
    assert journal.load_overrides("sheet") == {}
    journal.close()


def test_a_typed_value_keeps_the_kind_the_step_wrote():
    assert coerce("42", 7) == 42 and coerce("4.5", 7) == 4.5 and coerce("1,200", 3.0) == 1200.0
    assert coerce("n/a", 7) == "n/a" and coerce("  ", 7) is None
    assert coerce('{"a": [1]}', {"b": 2}) == {"a": [1]} and coerce("[1,", []) == "[1,"
    assert coerce("false", True) is False and coerce("text", "old") == "text"


async def test_the_export_has_a_review_column_edited_fills_and_a_summary_on_the_run_sheet(tmp_path):
    sheet = write_sheet(tmp_path / "rows.csv", [f"t{i}" for i in range(5)])
    session = await run_session(tmp_path, sheet)
    plain = tmp_path / "plain.csv"
    await session.export(plain)
    assert "review" not in pd.read_csv(plain).columns  # nothing reviewed: no column
    session.review(0, ACCEPTED)
    session.review(1, EDITED, {"wrapped": "by hand"})
    session.review(3, REJECTED)
    out = tmp_path / "out.xlsx"
    await session.export(out)
    book = openpyxl.load_workbook(out)
    results = book["Results"]
    header = [c.value for c in results[1]]
    assert header[-1] == "review"
    assert [results.cell(r, len(header)).value for r in range(2, 7)] == ["reviewed", "edited", None, "rejected", None]
    column = header.index("wrapped") + 1
    assert [results.cell(r, column).value for r in range(2, 7)] == ["<t0>", "by hand", "<t2>", "<t3>", "<t4>"]
    assert results.cell(3, column).fill.fgColor.rgb.endswith("FFEB9C")   # the edited cell
    assert not results.cell(2, column).fill.fgColor.rgb.endswith("FFEB9C")
    run = {row[0]: row[1] for row in book["Run"].iter_rows(min_row=2, values_only=True)}
    assert run["review"] == "1 accepted, 1 edited, 1 rejected of 5"
    csv = tmp_path / "out.csv"
    await session.export(csv, rows=[3, 1])  # as shown: the review column follows the rows
    shown = pd.read_csv(csv)
    assert list(shown["wrapped"]) == ["<t3>", "by hand"] and list(shown["review"]) == ["rejected", "edited"]
    await session.close()


# ---- a real session process killed with SIGKILL -------------------------------------------------

CHILD = textwrap.dedent("""
    import asyncio, sys
    from batchgrid.core.pipeline import Pipeline
    from batchgrid.core.session import Session

    async def main(journal, sheet, pipeline, rows):
        session = Session(journal_path=journal)
        session.set_pipeline(Pipeline.from_dict(pipeline))
        await session.open_sheet(sheet)
        await session.start("resume")
        await session.wait()
        session.run_ended()
        for i in range(rows):
            decision = ("accepted", "edited", "rejected")[i % 3]
            session.review(i, decision, {"wrapped": f"hand {i}"} if decision == "edited" else None)
        print("reviewed", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until killed

    import json
    asyncio.run(main(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])))
""")


async def test_reviews_survive_a_sigkill_of_the_session_process_and_a_rerun_after_it(tmp_path):
    sheet = write_sheet(tmp_path / "rows.csv", [f"t{i}" for i in range(300)])
    journal = tmp_path / "journal.sqlite"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(journal), str(sheet), json.dumps(PIPELINE), "200"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=dict(os.environ))
    try:
        line = child.stdout.readline()
        assert line.strip() == "reviewed", child.stderr.read()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        for pipe in (child.stdin, child.stdout, child.stderr):
            pipe.close()
    assert child.returncode == -signal.SIGKILL

    session = Session(journal_path=journal)
    session.set_pipeline(Pipeline.from_dict(PIPELINE))
    await session.open_sheet(sheet)
    assert len(session.overrides) == 200
    assert session.overrides.counts() == {ACCEPTED: 67, EDITED: 67, REJECTED: 66}
    await session.start("all")  # a rerun of every row: the edits stay
    await session.wait()
    session.run_ended()
    assert session.store.count(ev.DONE) == 300
    column = wrapped_column(session)
    assert [session.store.value(i, column) for i in (0, 1, 4, 250)] == ["<t0>", "hand 1", "hand 4", "<t250>"]
    out = tmp_path / "after.xlsx"
    await session.export(out)
    book = openpyxl.load_workbook(out, read_only=True)
    rows = list(book["Results"].iter_rows(values_only=True))
    header = rows[0]
    assert [r[header.index("review")] for r in rows[1:4]] == ["reviewed", "edited", "rejected"]
    assert rows[1 + 201][header.index("review")] is None
    run = {r[0]: r[1] for r in book["Run"].iter_rows(min_row=2, values_only=True)}
    assert run["review"] == "67 accepted, 67 edited, 66 rejected of 300"
    book.close()
    await session.close()
