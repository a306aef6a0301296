"""The run journal: every finished row written to SQLite as it finishes, so nothing is lost.

Durability: the database is in WAL mode with synchronous=NORMAL, so a committed row survives
a killed process (SIGKILL; power loss may lose the last commits). A row that made a paid call
(a model call not answered from the response cache: it has a cost, or tokens and no cached
call) is committed before its worker takes the next row, together with whatever waits in the
buffer. Cheap rows (no paid call) are group-committed: buffered for at most a tenth of a second
(or 256 rows) and written in one transaction, so a killed process reruns at most that last
fraction of a second of cheap rows (an HTTP lookup among them is asked again).

What "a finished paid call" means after a kill: with the response cache on (the default) the
cache is the durable record of paid answers (`put` commits before the step returns), so a
resumed run asks again only the calls that were in flight at the kill, whatever the journal
holds. With the cache off (`--no-cache`), the journal is the only record: a row whose steps all
finished is kept, but a row killed between two paid steps had not finished and runs again from
its first step, asking its earlier calls again.

Rows are keyed by run and row number and carry a hash of the row's inputs, so a row whose input
changed since is run again rather than resumed.

Batch mode (core/providers/batches.py): each step's batches at the provider are one small JSON record
per run and step in the `batches` table (ids, files, which rows, when, the last progress seen), saved
whenever it changes, so a run whose batches are still at the provider survives closing the app: a
resumed run reads it back (`load_batches`) and collects without submitting again. An older journal
file gets the table when it is opened (CREATE TABLE IF NOT EXISTS).

Reviews (core/run/overrides.py): each reviewed row's decision and edited cells, by sheet (review
key) and row number, with the row's input hash, in the `overrides` table; each change is one
autocommitted statement, so it survives a SIGKILL. They belong to the sheet, not to a run: pruning
old runs and clearing the journal (the runs) leave them. Older files get the table when opened.

Bounded: the journal keeps the last `keep_runs` runs (default 5) of each sheet and pipeline
(job key); older runs are deleted when a new one starts. Every row's outputs, status, error and
usage are kept, but step traces only for failed rows and a sample of done rows (rows 0-99 and
every 100th row after): a done row read back without its trace has an empty `trace`.

A write that fails (a full disk, a read-only folder) is never dropped in silence: the recorder
keeps the rows it could not write, says why once through `on_failure` (a `Job` pauses the run
with that reason; a headless run stops and exits 1) and writes them when the run is resumed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
import sqlite3
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchgrid.core.util.paths import default_data_dir

from . import events as ev
from .overrides import Review

log = logging.getLogger(__name__)

JOURNAL_FILE = "journal.sqlite"
FLUSH_AFTER = 0.1   # seconds a finished cheap row may wait in memory
FLUSH_ROWS = 256    # or this many rows, whichever comes first
KEEP_RUNS = 5       # runs kept per sheet and pipeline
TRACE_FIRST = 100   # done rows whose trace is kept: the first TRACE_FIRST rows
TRACE_EVERY = 100   # and every TRACE_EVERY-th row after (failed rows always keep theirs)

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    job_key TEXT NOT NULL,
    pipeline_hash TEXT NOT NULL,
    input_path TEXT,
    sheet TEXT,
    total INTEGER NOT NULL,
    started REAL NOT NULL,
    finished REAL,
    status TEXT NOT NULL DEFAULT 'running'
);
CREATE INDEX IF NOT EXISTS runs_by_job ON runs (job_key, started);
CREATE TABLE IF NOT EXISTS rows (
    run_id TEXT NOT NULL,
    row_number INTEGER NOT NULL,
    input_hash TEXT NOT NULL,
    status TEXT NOT NULL,
    outputs TEXT NOT NULL,
    error TEXT, error_type TEXT, failed_step TEXT,
    attempts INTEGER, latency REAL, tokens_in INTEGER, tokens_out INTEGER, cost REAL, cached INTEGER,
    trace TEXT,
    finished REAL NOT NULL,
    PRIMARY KEY (run_id, row_number)
);
CREATE TABLE IF NOT EXISTS batches (
    run_id TEXT NOT NULL,
    step TEXT NOT NULL,
    record TEXT NOT NULL,
    updated REAL NOT NULL,
    PRIMARY KEY (run_id, step)
);
CREATE TABLE IF NOT EXISTS overrides (
    review_key TEXT NOT NULL,
    row_number INTEGER NOT NULL,
    input_hash TEXT NOT NULL,
    decision TEXT NOT NULL,
    edits TEXT NOT NULL,
    updated REAL NOT NULL,
    PRIMARY KEY (review_key, row_number)
);
"""


def _jsonable(value: Any) -> Any:
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    tolist = getattr(value, "tolist", None)  # numpy arrays and scalars (embeddings)
    if tolist is not None:
        return tolist()
    if isinstance(value, (set, tuple)):
        return list(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=_jsonable, separators=(",", ":"))


def row_hash(values: Mapping[str, Any]) -> str:
    """A short hash of one row's input values: changes when the row's input changes."""
    return hashlib.blake2b(dumps(values).encode(), digest_size=8).hexdigest()


def made_paid_call(result: ev.RowResult) -> bool:
    """The row made a model call not answered from the cache: it cost something, or it used
    tokens with no call answered from the cache (a free local model counts too)."""
    return result.cost > 0 or (bool(result.tokens_in or result.tokens_out) and not result.cached)


def keeps_trace(result: ev.RowResult) -> bool:
    """Traces kept: every failed row's, every row's with a warning (its note), and a sample of done rows'."""
    return (result.status != ev.DONE or result.index < TRACE_FIRST or result.index % TRACE_EVERY == 0
            or bool(result.note))


def default_journal_path() -> Path:
    return default_data_dir() / JOURNAL_FILE


def write_failure(path: Path, exc: BaseException) -> str:
    """One line for a journal write that failed."""
    why = str(exc) or type(exc).__name__
    return f"the run journal cannot be written ({why}): {path}"


@dataclass
class RunRecord:
    run_id: str
    job_key: str
    total: int
    started: float
    finished: float | None
    status: str
    done: int = 0
    failed: int = 0


class Journal:
    def __init__(self, path: str | Path | None = None, keep_runs: int = KEEP_RUNS):
        if path is None:
            path = default_journal_path()
        self.path = Path(path)
        self.keep_runs = max(1, keep_runs)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # with WAL: durable on process death
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    # ---- runs --------------------------------------------------------------------
    def new_run(self, job_key: str, pipeline_hash: str, input_path: str | None, sheet: str | None, total: int) -> str:
        """A new run of `job_key`; only the last `keep_runs` runs of the job key are kept."""
        run_id = uuid.uuid4().hex[:12]
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute("INSERT INTO runs (run_id, job_key, pipeline_hash, input_path, sheet, total, started)"
                             " VALUES (?, ?, ?, ?, ?, ?, ?)",
                             (run_id, job_key, pipeline_hash, input_path, sheet, total, time.time()))
            old = [(r,) for (r,) in self._db.execute(
                "SELECT run_id FROM runs WHERE job_key = ? ORDER BY started DESC, rowid DESC LIMIT -1 OFFSET ?",
                (job_key, self.keep_runs))]
            if old:
                self._db.executemany("DELETE FROM rows WHERE run_id = ?", old)
                self._db.executemany("DELETE FROM batches WHERE run_id = ?", old)
                self._db.executemany("DELETE FROM runs WHERE run_id = ?", old)
        return run_id

    def runs(self, job_key: str) -> list[str]:
        """The runs kept for a job key, newest first."""
        return [r for (r,) in self._db.execute(
            "SELECT run_id FROM runs WHERE job_key = ? ORDER BY started DESC, rowid DESC", (job_key,))]

    def latest_run(self, job_key: str) -> RunRecord | None:
        row = self._db.execute("SELECT run_id, job_key, total, started, finished, status FROM runs"
                               " WHERE job_key = ? ORDER BY started DESC LIMIT 1", (job_key,)).fetchone()
        if row is None:
            return None
        record = RunRecord(*row)
        for status, count in self._db.execute("SELECT status, COUNT(*) FROM rows WHERE run_id = ? GROUP BY status",
                                              (record.run_id,)):
            if status == ev.DONE:
                record.done = count
            elif status == ev.ERROR:
                record.failed = count
        return record

    def mark_run(self, run_id: str, status: str) -> None:
        self._db.execute("UPDATE runs SET status = ?, finished = ? WHERE run_id = ?", (status, time.time(), run_id))

    # ---- rows --------------------------------------------------------------------
    def load_rows(self, run_id: str) -> dict[int, tuple[str, ev.RowResult]]:
        """Finished rows of a run: row number -> (input hash, result)."""
        found = {}
        for (number, input_hash, status, outputs, error, error_type, failed_step, attempts, latency,
             tokens_in, tokens_out, cost, cached, trace) in self._db.execute(
                "SELECT row_number, input_hash, status, outputs, error, error_type, failed_step, attempts,"
                " latency, tokens_in, tokens_out, cost, cached, trace FROM rows WHERE run_id = ?", (run_id,)):
            steps = [ev.StepTrace(**t) for t in json.loads(trace or "[]")]
            result = ev.RowResult(number, status, json.loads(outputs), error or "", error_type or "",
                                  failed_step or "", attempts or 1, latency or 0.0, tokens_in or 0,
                                  tokens_out or 0, cost or 0.0, cached or 0, steps)
            found[number] = (input_hash, result)
        return found

    def write_rows(self, run_id: str, items: list[tuple[str, ev.RowResult]]) -> None:
        now = time.time()
        records = [
            (run_id, r.index, h, r.status, dumps(r.outputs), r.error, r.error_type, r.failed_step, r.attempts,
             r.latency, r.tokens_in, r.tokens_out, r.cost, r.cached,
             dumps([{"step": t.step, "seconds": t.seconds, "attempts": t.attempts, "error": t.error,
                     "details": t.details, "path": list(t.path)} for t in r.trace]) if keeps_trace(r) else None,
             now)
            for h, r in items
        ]
        with self._db:  # one transaction: a group commit
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO rows VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", records)

    # ---- batches at the provider (batch mode) --------------------------------------
    def save_batch(self, run_id: str, step: str, record: Mapping[str, Any]) -> None:
        """Keep (or replace) the batch record of a run's step (BatchRecord.to_dict())."""
        self._db.execute("INSERT INTO batches (run_id, step, record, updated) VALUES (?, ?, ?, ?)"
                         " ON CONFLICT (run_id, step) DO UPDATE SET record = excluded.record, updated = excluded.updated",
                         (run_id, step, dumps(record), time.time()))

    def load_batches(self, run_id: str) -> dict[str, dict[str, Any]]:
        """The batch records of a run, by step, in the order they were first saved."""
        return {step: json.loads(record) for step, record in self._db.execute(
            "SELECT step, record FROM batches WHERE run_id = ? ORDER BY rowid", (run_id,))}

    def delete_batch(self, run_id: str, step: str) -> None:
        """Forget a step's batches (collected, or given up on)."""
        self._db.execute("DELETE FROM batches WHERE run_id = ? AND step = ?", (run_id, step))

    # ---- reviews (core/run/overrides.py) ------------------------------------------------
    def save_override(self, key: str, row: int, input_hash: str, decision: str, edits: Mapping[str, Any],
                      at: float | None = None) -> None:
        """Keep (or replace) a row's review: one statement, committed when it returns."""
        self._db.execute("INSERT INTO overrides (review_key, row_number, input_hash, decision, edits, updated)"
                         " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (review_key, row_number) DO UPDATE SET"
                         " input_hash = excluded.input_hash, decision = excluded.decision, edits = excluded.edits,"
                         " updated = excluded.updated",
                         (key, row, input_hash, decision, dumps(dict(edits)), at or time.time()))

    def load_overrides(self, key: str) -> dict[int, Review]:
        """A sheet's reviews: row number -> Review."""
        return {row: Review(decision, input_hash, json.loads(edits), updated)
                for row, input_hash, decision, edits, updated in self._db.execute(
                    "SELECT row_number, input_hash, decision, edits, updated FROM overrides WHERE review_key = ?",
                    (key,))}

    def delete_overrides(self, key: str, rows: list[int]) -> None:
        """Forget these rows' reviews (one statement)."""
        for start in range(0, len(rows), 500):  # SQLite's limit on a statement's parameters
            part = rows[start:start + 500]
            self._db.execute(f"DELETE FROM overrides WHERE review_key = ? AND row_number IN ({','.join('?' * len(part))})",
                             (key, *part))

    # ---- size ---------------------------------------------------------------------
    def clear(self) -> None:
        """Forget every run and give the space back to the disk."""
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM batches")
            self._db.execute("DELETE FROM rows")
            self._db.execute("DELETE FROM runs")
        self._db.execute("VACUUM")
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def recorder(self, run_id: str, input_hash: Callable[[int], str],
                 on_failure: Callable[[str], None] | None = None) -> Recorder:
        return Recorder(self, run_id, input_hash, on_failure)


class Recorder:
    """An engine listener that journals finished rows: at once for rows that made a paid call,
    in small group commits for the rest. A failed write keeps its rows, calls `on_failure(line)`
    once and waits for the run to be resumed (RunResumed) before it writes again."""

    def __init__(self, journal: Journal, run_id: str, input_hash: Callable[[int], str],
                 on_failure: Callable[[str], None] | None = None):
        self.journal = journal
        self.run_id = run_id
        self.input_hash = input_hash
        self.on_failure = on_failure
        self.failure = ""      # the first write failure of this run, one line ('' if none)
        self._blocked = False  # a write failed: hold the rows until the run is resumed
        self._buffer: list[tuple[str, ev.RowResult]] = []
        self._timer: asyncio.TimerHandle | None = None

    def __call__(self, event: object) -> None:
        if isinstance(event, (ev.RowDone, ev.RowFailed)):  # cancelled rows are unfinished: they run again
            result = event.result
            self._buffer.append((self.input_hash(event.index), result))
            if self._blocked:
                return
            if made_paid_call(result) or len(self._buffer) >= FLUSH_ROWS:
                self.flush()  # durable before the worker takes its next row
            elif self._timer is None:
                self._timer = asyncio.get_running_loop().call_later(FLUSH_AFTER, self.flush)
        elif isinstance(event, ev.RunResumed):
            if self._blocked:  # the user made room (or says so): try again
                self._blocked = False
                self.flush()
        elif isinstance(event, ev.RunFinished):
            self._blocked = False   # one last try
            self.on_failure = None  # the run is over: nothing left to pause
            if self.flush():
                try:
                    self.journal.mark_run(self.run_id, event.reason)
                except Exception as exc:
                    self._failed(exc)

    def flush(self) -> bool:
        """Write what waits; False if the write failed (the rows stay for the next try)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._buffer and not self._blocked:
            try:
                self.journal.write_rows(self.run_id, self._buffer)
            except Exception as exc:  # a full disk, a read-only folder, a damaged file...
                self._failed(exc)
                return False
            self._buffer = []
        return not self._blocked

    def _failed(self, exc: BaseException) -> None:
        line = write_failure(self.journal.path, exc)
        log.info("%s", line)  # said once, by the front end
        self._blocked = True
        if not self.failure:
            self.failure = line
        if self.on_failure is not None:
            self.on_failure(line)
