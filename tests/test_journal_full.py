"""A journal that cannot be written is never ignored: the run pauses saying why (resume once
there is room: nothing is lost), a headless run stops with exit code 1 and one line, and the
rows that finished are still exported.

Real failures: a CLI process whose file size limit (RLIMIT_FSIZE, as a full disk) stops the
journal's WAL from growing; in a session, SQLite's own `max_page_count` ("database or disk is
full", SQLITE_FULL) on the journal's connection.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sqlite3
import subprocess
import sys

import pandas as pd

from batchgrid.core.pipeline.file import Pipeline
from batchgrid.core.run import events as ev
from batchgrid.core.session import Session

PIPELINE = {"version": 1, "steps": [
    {"type": "trim", "source": "review", "output": "clean"},
    {"type": "template", "template": "[{rating}] {clean}", "output": "line"},
]}


def write_rows(path, n: int):
    path.write_text("review,rating\n" + "".join(f"  text number {i} ,{i % 5}\n" for i in range(n)))
    return path


def journalled(db) -> list[int]:
    with sqlite3.connect(db) as con:
        return [r for (r,) in con.execute("SELECT row_number FROM rows ORDER BY row_number")]


def test_a_headless_run_stops_on_a_full_journal_with_one_line_and_exit_1(tmp_path):
    n = 20_000
    data = write_rows(tmp_path / "in.csv", n)
    pipeline = tmp_path / "p.json"
    pipeline.write_text(json.dumps(PIPELINE))
    out, db = tmp_path / "out.csv", tmp_path / "journal.sqlite"
    limit = 1_000_000  # bytes any file of the process may reach: the journal's WAL passes it, the output not

    def full_disk():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    result = subprocess.run([sys.executable, "-m", "batchgrid.core.cli", "run", str(pipeline), str(data),
                             "-o", str(out), "--journal", str(db), "--quiet"],
                            capture_output=True, text=True, timeout=120, preexec_fn=full_disk)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "listener" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("batchgrid:")]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith("batchgrid: error: the run journal cannot be written (")
    assert str(db) in errors[0] and "out.csv" in errors[0]
    # What finished is exported, with its values; the rest is marked not run.
    table = pd.read_csv(out)
    assert len(table) == n
    done = table[table["status"] == "done"]
    assert 0 < len(done) < n
    assert list(done["line"]) == [f"[{i % 5}] text number {i}" for i in done.index]
    kept = journalled(db)
    assert len(kept) < len(done)  # the journal stopped short: that is what the line said


async def test_a_full_journal_pauses_the_session_and_resume_loses_nothing(tmp_path):
    n = 3_000
    data = write_rows(tmp_path / "in.csv", n)
    session = Session(journal_path=tmp_path / "journal.sqlite", pipeline=Pipeline.from_dict(PIPELINE))
    await session.open_sheet(data)
    paused = asyncio.Event()
    reasons: list[str] = []

    def on_event(event):
        if isinstance(event, ev.RunPaused):
            reasons.append(event.reason)
            paused.set()

    session.listeners.append(on_event)
    await session.start(max_concurrency=8)
    db = session.journal._db  # the run has not begun (it starts on the next loop turn): fill the file now
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    assert db.execute(f"PRAGMA max_page_count = {pages}").fetchone()[0] == pages
    await asyncio.wait_for(paused.wait(), 60)
    assert session.paused and session.running
    assert reasons == [f"the run journal cannot be written (database or disk is full): {tmp_path / 'journal.sqlite'}"]
    assert session.journal_failure == reasons[0]
    assert journalled(tmp_path / "journal.sqlite") == []  # nothing could be written

    db.execute("PRAGMA max_page_count = 1073741823")  # room is made
    session.resume()
    reason, _ = await asyncio.wait_for(session.wait(), 60)
    assert reason == "finished"
    assert reasons == reasons[:1]  # it did not pause again
    assert session.store.count(ev.DONE) == n
    await session.close()
    assert journalled(tmp_path / "journal.sqlite") == list(range(n))  # every row, none lost
    with sqlite3.connect(tmp_path / "journal.sqlite") as con:
        assert con.execute("SELECT status FROM runs").fetchall() == [("finished",)]
        assert con.execute("SELECT outputs FROM rows WHERE row_number = 2999").fetchone()[0] == \
            json.dumps({"clean": "text number 2999", "line": "[4] text number 2999"}, separators=(",", ":"))
