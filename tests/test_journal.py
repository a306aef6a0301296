"""The journal: finished rows survive a killed process; resume runs only what is missing."""

from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from batchgrid.core.run import events as ev
from batchgrid.core.table import Table
from batchgrid.core.run.job import ALL, RESUME, RETRY_FAILED, Job
from batchgrid.core.run.journal import Journal
from batchgrid.core.pipeline.file import Pipeline


def write_csv(path: Path, n: int, make=lambda i: f"row {i}") -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "text"])
        for i in range(n):
            w.writerow([i, make(i)])
    return path


def journal_rows(db: Path) -> int:
    with sqlite3.connect(db) as con:
        try:
            return con.execute("SELECT COUNT(*) FROM rows").fetchone()[0]
        except sqlite3.OperationalError:
            return 0


def test_a_killed_run_resumes_with_every_row_exactly_once(tmp_path, fake_openai):
    n = 300
    data = write_csv(tmp_path / "in.csv", n)
    pipeline = tmp_path / "p.json"
    pipeline.write_text(json.dumps({"version": 1, "settings": {"max_concurrency": 4}, "steps": [
        {"type": "http", "url": fake_openai.url + "/slow?ms=10&id={id}", "extract": {"slept": "$.slept_ms"}},
        {"type": "template", "template": "{id}:{text}", "output": "tag"},
    ]}))
    db = tmp_path / "journal.sqlite"
    out = tmp_path / "out.csv"
    cmd = [sys.executable, "-m", "batchgrid.core.cli", "run", str(pipeline), str(data), "-o", str(out),
           "--journal", str(db), "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while journal_rows(db) < 40 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)  # no cleanup, no flush, no goodbye
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    kept = journal_rows(db)
    assert 40 <= kept < n, "the kill should land mid-run"
    requests_before = fake_openai.stats.requests

    done = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    # Exactly the rows missing from the journal ran again; journaled rows made no request.
    assert fake_openai.stats.requests - requests_before == n - kept
    table = pd.read_csv(out)
    assert list(table["id"]) == list(range(n))
    assert list(table["tag"]) == [f"{i}:row {i}" for i in range(n)]
    assert set(table["status"]) == {"done"}
    assert journal_rows(db) == n


def _job(tmp_path, records, steps, journal):
    p = Pipeline.from_dict({"version": 1, "steps": steps})
    return Job(p, Table.from_records(records), input_path=tmp_path / "in.csv", journal=journal)


async def test_retry_failed_reruns_only_rows_in_error(tmp_path, fake_openai):
    journal = Journal(tmp_path / "j.sqlite")
    records = [{"status": s} for s in (200, 500, 200, 404, 200)]
    steps = [{"type": "http", "url": fake_openai.url + "/echo?status={status}", "output": "body"}]
    job = _job(tmp_path, records, steps, journal)
    job.pipeline.settings.update(max_attempts=1)
    await job.start(ALL).run()
    assert [r.status for r in job.results] == ["done", "error", "done", "error", "done"]
    before = fake_openai.stats.requests

    engine = job.start(RETRY_FAILED)
    assert engine.selection == [1, 3]
    await engine.run()
    assert fake_openai.stats.requests - before == 2
    assert [r.status for r in job.results] == ["done", "error", "done", "error", "done"]

    # A fresh job over the same pipeline and file finds the failed rows in the journal.
    again = _job(tmp_path, records, steps, Journal(tmp_path / "j.sqlite"))
    info = again.resume_info()
    assert (info.done, info.failed, info.total) == (3, 2, 5)
    engine = again.start(RETRY_FAILED)
    assert engine.selection == [1, 3]
    journal.close()


async def test_resume_reruns_a_row_whose_input_changed(tmp_path):
    journal = Journal(tmp_path / "j.sqlite")
    steps = [{"type": "template", "template": "<{text}>", "output": "wrapped"}]
    records = [{"text": f"t{i}"} for i in range(4)]
    job = _job(tmp_path, records, steps, journal)
    await job.start(ALL).run()
    records[2]["text"] = "changed"
    job2 = _job(tmp_path, records, steps, journal)
    engine = job2.start(RESUME)
    assert engine.selection == [2]
    await engine.run()
    assert [r.outputs["wrapped"] for r in job2.results] == ["<t0>", "<t1>", "<changed>", "<t3>"]


async def test_a_different_pipeline_does_not_resume_anothers_rows(tmp_path):
    journal = Journal(tmp_path / "j.sqlite")
    records = [{"text": "a"}, {"text": "b"}]
    job = _job(tmp_path, records, [{"type": "template", "template": "1{text}", "output": "o"}], journal)
    await job.start(ALL).run()
    other = _job(tmp_path, records, [{"type": "template", "template": "2{text}", "output": "o"}], journal)
    assert other.resume_info() is None
    assert other.start(RESUME).selection == [0, 1]


async def test_journal_keeps_outputs_errors_and_traces(tmp_path):
    journal = Journal(tmp_path / "j.sqlite")
    steps = [{"type": "test_slow_call", "source": "text", "seconds": 0.0}]
    import engine_helpers  # noqa: F401  (registers the test step)

    job = _job(tmp_path, [{"text": "fine"}, {"text": "boom"}], steps, journal)
    await job.start(ALL).run()
    stored = journal.load_rows(job.run_id)
    assert stored[0][1].outputs == {"called": "called:fine"} and stored[0][1].status == ev.DONE
    failed = stored[1][1]
    assert (failed.status, failed.error, failed.failed_step) == ("error", "cannot process 'boom'", "1. Slow call (test)")
    assert failed.trace[0].error == "cannot process 'boom'"


async def test_a_reopened_job_shows_the_last_runs_rows_before_running(tmp_path):
    journal = Journal(tmp_path / "j.sqlite")
    steps = [{"type": "template", "template": "<{text}>", "output": "wrapped"}]
    records = [{"text": f"t{i}"} for i in range(3)]
    job = _job(tmp_path, records, steps, journal)
    engine = job.start(ALL)
    engine.subscribe(lambda e: isinstance(e, ev.RowDone) and e.index == 1 and engine.stop())
    await engine.run()
    reopened = _job(tmp_path, records, steps, journal)
    assert reopened.load_previous() == 2
    assert [r.outputs["wrapped"] if r else None for r in reopened.results] == ["<t0>", "<t1>", None]
    assert reopened.start(RESUME).selection == [2]


async def test_after_editing_the_pipeline_old_results_are_not_mixed_with_new_ones(tmp_path):
    journal = Journal(tmp_path / "j.sqlite")
    records = [{"text": "a"}, {"text": "boom"}]
    import engine_helpers  # noqa: F401  (registers the test step)

    job = _job(tmp_path, records, [{"type": "test_slow_call", "source": "text", "seconds": 0.0, "output": "o"}], journal)
    await job.start(ALL).run()
    assert [r.status for r in job.results] == ["done", "error"]
    job.pipeline.steps[0].config["output"] = "renamed"  # edited in the window, same Job
    engine = job.start(RETRY_FAILED)
    assert engine.selection == [0, 1]  # stale results: everything runs again under the new pipeline
    await engine.run()
    assert job.results[0].outputs == {"renamed": "called:a"}


def test_the_journal_keeps_the_last_runs_of_each_job_and_sampled_traces(tmp_path):
    from batchgrid.core.run.journal import KEEP_RUNS

    journal = Journal(tmp_path / "j.sqlite", keep_runs=3)
    assert KEEP_RUNS == 5  # the default
    other = journal.new_run("other", "p", None, None, 1)
    runs = [journal.new_run("job", "p", None, None, 1000) for _ in range(5)]
    assert journal.runs("job") == runs[:1:-1]  # the last 3, newest first
    assert journal.runs("other") == [other]  # another sheet or pipeline keeps its own
    trace = [ev.StepTrace("1. Trim", 0.001, 1, "", None, (0,))]
    results = [ev.RowResult(i, ev.ERROR if i == 150 else ev.DONE, {"o": i}, trace=list(trace)) for i in range(1000)]
    journal.write_rows(runs[-1], [("h", r) for r in results])
    back = journal.load_rows(runs[-1])
    kept = sorted(i for i, (_, r) in back.items() if r.trace)
    # the first 100 rows, 1 in 100 after, and every failed row; every row's outputs
    assert kept == sorted([*range(100), 150, *range(100, 1000, 100)])
    assert [back[i][1].outputs for i in range(1000)] == [{"o": i} for i in range(1000)]
    journal.new_run("job", "p", None, None, 1)
    with sqlite3.connect(tmp_path / "j.sqlite") as con:  # the oldest run's rows went with it
        assert con.execute("SELECT COUNT(*) FROM rows WHERE run_id = ?", (runs[2],)).fetchone()[0] == 0
    journal.close()
