"""The session: the application layer every front end drives (open, check, estimate, run,
resume, export, close), with no Qt."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from batchgrid.core.pipeline import Pipeline
from batchgrid.core.run import events as ev
from batchgrid.core.run.job import RESUME
from batchgrid.core.run.journal import Journal
from batchgrid.core.session import Session
from batchgrid.core.util.errors import BatchgridError, InputError

import engine_helpers  # noqa: F401  (registers the test steps)

EXAMPLES = Path(__file__).resolve().parent.parent / "resources" / "examples"


def slow_pipeline(seconds: float = 0.02, template: str = "<{text}>") -> Pipeline:
    return Pipeline.from_dict({"version": 1, "steps": [
        {"type": "template", "template": template, "output": "wrapped"},
        {"type": "test_slow_call", "source": "wrapped", "seconds": seconds, "output": "called"},
    ]})


def write_sheet(path: Path, n: int) -> Path:
    pd.DataFrame({"text": [f"t{i}" for i in range(n)]}).to_csv(path, index=False)
    return path


def first_event(session: Session, kind: type, predicate=lambda e: True) -> asyncio.Future:
    """A future that completes with the next event of `kind` from the session's next run."""
    future: asyncio.Future = asyncio.get_running_loop().create_future()

    def listen(event):
        if isinstance(event, kind) and predicate(event) and not future.done():
            future.set_result(event)

    session.listeners.append(listen)
    return future


async def test_the_bundled_example_runs_end_to_end_through_a_session(tmp_path):
    session = Session(journal_path=tmp_path / "journal.sqlite")
    await session.load_pipeline(EXAMPLES / "reviews-offline.batchgrid.json")
    sheet = await session.open_sheet(EXAMPLES / "reviews.xlsx")
    assert sheet is not None and len(sheet.table) == 240
    assert session.problems() == []
    await session.start()
    reason, _ = await session.wait()
    assert reason == "finished"
    assert session.store.count(ev.DONE) + session.store.count(ev.ERROR) == 240
    assert session.store.count(ev.ERROR) == 3  # the three typed-in bad prices
    out = tmp_path / "out.xlsx"
    assert await session.export(out) == 240
    frame = pd.read_excel(out, sheet_name="Results")
    assert len(frame) == 240 and "summary" in frame.columns
    await session.close()


async def test_a_big_sheet_shows_its_first_rows_before_the_rest(tmp_path):
    path = write_sheet(tmp_path / "big.csv", 5_000)
    session = Session(journal_path=tmp_path / "j.sqlite")
    seen = []
    sheet = await session.open_sheet(path, on_preview=lambda s: seen.append((len(s.table), s.complete)))
    assert seen and seen[0][1] is False and seen[0][0] < 5_000
    assert sheet is not None and sheet.complete and len(session.table) == 5_000


async def test_an_unreadable_sheet_says_why_in_one_line(tmp_path):
    bad = tmp_path / "report.xlsx"
    bad.write_bytes(b"%PDF-1.4 not a workbook")
    with pytest.raises(InputError) as caught:
        await Session(journal_path=tmp_path / "j.sqlite").open_sheet(bad)
    assert "\n" not in str(caught.value) and "report.xlsx" in str(caught.value)


async def test_editing_the_pipeline_during_a_run_does_not_change_the_run(tmp_path):
    session = Session(journal_path=tmp_path / "j.sqlite")
    await session.open_sheet(write_sheet(tmp_path / "in.csv", 40))
    session.set_pipeline(slow_pipeline(seconds=0.01))
    row_done = first_event(session, ev.RowDone)
    await session.start(max_concurrency=2)
    await row_done
    # The user edits while rows are in flight: a new template, a step removed, one added.
    steps = session.pipeline.steps
    steps[0].config["template"] = "[{text}]"
    del steps[1]
    from batchgrid.core.steps import new_step
    steps.append(new_step("change_case", source="text", output="upper"))
    session.pipeline_edited()
    reason, _ = await session.wait()
    assert reason == "finished"
    results = [r for r in session.store.results if r is not None]
    assert len(results) == 40
    assert all(r.outputs["wrapped"].startswith("<") and r.outputs["called"].startswith("called:<") for r in results)
    assert all("upper" not in r.outputs for r in results)
    # The next run uses the pipeline as edited.
    session.run_ended()
    await session.start()
    await session.wait()
    assert all(r.outputs["wrapped"].startswith("[") and "upper" in r.outputs for r in session.store.results)


async def test_closing_during_a_run_waits_for_its_end_and_closes_the_journal(tmp_path):
    journal_path = tmp_path / "j.sqlite"
    session = Session(journal_path=journal_path)
    await session.open_sheet(write_sheet(tmp_path / "in.csv", 200))
    session.set_pipeline(slow_pipeline(seconds=0.05))
    row_done = first_event(session, ev.RowDone)
    await session.start(max_concurrency=4)
    done = await row_done
    await session.close()
    assert not session.running and session.journal is None
    assert session.engine.outcome[0] == "stopped"
    # Every row that finished before the stop is in the journal (the final flush happened).
    finished = {i for i, r in enumerate(session.store.results) if r is not None and r.status == ev.DONE}
    assert done.index in finished
    journal = Journal(journal_path)
    try:
        run = journal.latest_run(session.job.key())
        assert run is not None and run.status == "stopped"
        assert set(journal.load_rows(run.run_id)) == finished
    finally:
        journal.close()


async def test_a_reopened_sheet_offers_the_rest_and_shows_what_was_kept(tmp_path):
    sheet_path = write_sheet(tmp_path / "in.csv", 60)
    journal_path = tmp_path / "j.sqlite"
    first = Session(journal_path=journal_path)
    await first.open_sheet(sheet_path)
    first.set_pipeline(slow_pipeline(seconds=0.01))
    ten_done = first_event(first, ev.RowDone, lambda e: sum(r is not None for r in first.store.results) >= 10)
    await first.start(max_concurrency=2)
    await ten_done
    await first.close()
    kept = sum(1 for r in first.store.results if r is not None and r.status == ev.DONE)

    second = Session(journal_path=journal_path)
    await second.open_sheet(sheet_path)
    second.set_pipeline(slow_pipeline(seconds=0.01))
    offer = await second.previous_run()
    assert offer is not None and offer.done == kept and offer.unfinished == 60 - kept
    assert second.store.count(ev.DONE) == kept  # shown before any click
    engine = await second.start(RESUME)
    assert len(engine.selection) == 60 - kept
    await second.wait()
    assert second.store.count(ev.DONE) == 60
    await second.close()


async def test_export_refuses_an_unknown_format_in_one_line(tmp_path):
    session = Session(journal_path=tmp_path / "j.sqlite")
    await session.open_sheet(write_sheet(tmp_path / "in.csv", 3))
    with pytest.raises(BatchgridError, match=r"out\.pdf: export to a \.xlsx, \.csv or \.parquet file"):
        await session.export(tmp_path / "out.pdf")


def test_the_session_imports_no_qt():
    code = ("import sys, batchgrid.core.session\n"
            "print([m for m in sys.modules if m.split('.')[0] in ('PySide6', 'qasync', 'shiboken6')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


async def test_stop_while_a_run_is_starting_stops_it_before_any_row(tmp_path, monkeypatch):
    """Stop pressed while a run is being set up (a cluster connecting, the journal opening) is not
    lost: the run starts stopped and no row runs."""
    session = Session(journal_path=tmp_path / "j.sqlite", data_dir=tmp_path / "data")
    session.set_pipeline(slow_pipeline())
    await session.open_sheet(write_sheet(tmp_path / "s.csv", 20))
    setting_up = session._current_job

    async def user_presses_stop_meanwhile():
        job = await setting_up()
        session.stop()
        return job

    monkeypatch.setattr(session, "_current_job", user_presses_stop_meanwhile)
    await session.start()
    reason, _ = await session.wait()
    assert reason == "stopped"
    assert session.progress.done == 0 and session.store.count(ev.DONE) == 0
    monkeypatch.undo()
    await session.start()  # the next run is not stopped by it
    assert (await session.wait())[0] == "finished" and session.store.count(ev.DONE) == 20
    await session.close()
