"""The run journal: every finished row written to SQLite as it finishes, so nothing is lost.

Rows are buffered for at most a tenth of a second (or 256 rows) and written in one
transaction: a group commit. The database is in WAL mode, so a killed process (SIGKILL,
power loss) loses at most the rows of that last fraction of a second, and a resumed run
reruns exactly those. Rows are keyed by run and row number and carry a hash of the row's
inputs, so a row whose input changed since is run again rather than resumed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import sqlite3
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchgrid.core.util.paths import default_data_dir

from . import events as ev

FLUSH_AFTER = 0.1   # seconds a finished row may wait in memory
FLUSH_ROWS = 256    # or this many rows, whichever comes first

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
    def __init__(self, path: str | Path | None = None):
        if path is None:
            path = default_data_dir() / "journal.sqlite"
        self.path = Path(path)
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
        run_id = uuid.uuid4().hex[:12]
        self._db.execute("INSERT INTO runs (run_id, job_key, pipeline_hash, input_path, sheet, total, started)"
                         " VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (run_id, job_key, pipeline_hash, input_path, sheet, total, time.time()))
        return run_id

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
                     "details": t.details, "path": list(t.path)} for t in r.trace]), now)
            for h, r in items
        ]
        with self._db:  # one transaction: a group commit
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO rows VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", records)

    def recorder(self, run_id: str, input_hash: Callable[[int], str]) -> Recorder:
        return Recorder(self, run_id, input_hash)


class Recorder:
    """An engine listener that journals finished rows in small group commits."""

    def __init__(self, journal: Journal, run_id: str, input_hash: Callable[[int], str]):
        self.journal = journal
        self.run_id = run_id
        self.input_hash = input_hash
        self._buffer: list[tuple[str, ev.RowResult]] = []
        self._timer: asyncio.TimerHandle | None = None

    def __call__(self, event: object) -> None:
        if isinstance(event, (ev.RowDone, ev.RowFailed)):  # cancelled rows are unfinished: they run again
            self._buffer.append((self.input_hash(event.index), event.result))
            if len(self._buffer) >= FLUSH_ROWS:
                self.flush()
            elif self._timer is None:
                self._timer = asyncio.get_running_loop().call_later(FLUSH_AFTER, self.flush)
        elif isinstance(event, ev.RunFinished):
            self.flush()
            self.journal.mark_run(self.run_id, event.reason)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._buffer:
            items, self._buffer = self._buffer, []
            self.journal.write_rows(self.run_id, items)
