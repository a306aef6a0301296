"""A job: one pipeline over one input table, across runs (first run, resume, retry failed).

Both front ends drive runs through this: the CLI and the window only choose what to run
and show what happens. It checks the pipeline and trust before any row runs, wires the
journal, and keeps the latest result of every row.

The journal's recorder pauses the run when the journal cannot be written (a full disk): the
reason is the pause's, `journal_failure` keeps it, and resuming writes the rows it held.

Each run works on its own copy of the pipeline, taken when it starts: the user may go on
editing `job.pipeline` while it runs, and the edits apply to the next run.

A row's result is current when the pipeline as it is now made it from the row's input as it is
now (the journal keeps both hashes; a job's results in memory are of one pipeline fingerprint).
Resume runs the rows without a current result, so finished work is never redone: rows not run,
stopped, or run only up to a step (`up_to`: a run of the first steps, not journalled). An edit
makes every result stale: resume then takes the journal's rows of that exact pipeline, if any.
"""

from __future__ import annotations

import copy
import hashlib
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchgrid.core.pipeline.file import Pipeline
from batchgrid.core.pipeline.model_checks import setup_problems
from batchgrid.core.pipeline.trust import untrusted_error
from batchgrid.core.providers.prices import money
from batchgrid.core.table import Table
from batchgrid.core.util.errors import BatchgridError, PipelineError, SetupError
from batchgrid.core.util.problems import Problem, StepPath

from . import events as ev
from .batch_mode import JournalBook
from .engine import Engine, RetryPolicy, RunResources
from .journal import Journal, Recorder, row_hash, write_failure
from .results import ResultSet

# What a run tries: every row afresh; the rows without a current result (not run, stopped, run up
# to a step); the rows that failed or were stopped; or both of the last two.
ALL, RESUME, RETRY_FAILED, RESUME_AND_RETRY = "all", "resume", "retry_failed", "resume_and_retry_failed"
MODES = (ALL, RESUME, RETRY_FAILED, RESUME_AND_RETRY)



@dataclass
class ResumeInfo:
    """A previous run of the same pipeline over the same input, found in the journal."""

    run_id: str
    done: int
    failed: int
    total: int
    started_at: float
    status: str

    @property
    def unfinished(self) -> int:
        return self.total - self.done - self.failed


class Job:
    def __init__(self, pipeline: Pipeline, rows: Table, *, input_path: str | Path | None = None,
                 sheet: str | None = None, journal: Journal | None = None, trusted: bool = False,
                 data_dir: Path | None = None, use_cache: bool = True):
        self.pipeline = pipeline
        self.rows = rows
        self.input_path = Path(input_path).resolve() if input_path else None
        self.sheet = sheet
        self.journal = journal
        self.trusted = trusted
        self.data_dir = data_dir or (journal.path.parent if journal else None)
        self.use_cache = use_cache
        self.results: list[ev.RowResult | None] = [None] * len(rows)
        self.run_pipeline: Pipeline | None = None  # the copy the latest run works on
        self.run_id: str | None = None
        self._run_fingerprint = ""  # the pipeline's fingerprint when the current results were made
        self._partial: set[int] = set()  # rows whose result came from a run up to a step: not current
        self.engine: Engine | None = None
        self.recorder: Recorder | None = None  # the latest run's journal listener
        self.started_at: float | None = None

    # ---- before a run --------------------------------------------------------------
    def problems(self) -> list[Problem]:
        """What stops this pipeline from running over this table (each located by its step's path)."""
        return self.pipeline.problems(self.rows.columns)

    def setup_problems(self) -> list[str]:
        """What the user must set up first (an API key, a model server), one line each."""
        return setup_problems(self.pipeline.steps, self.pipeline.providers)

    def key(self) -> str:
        """Same pipeline (what decides outputs) over the same input file and sheet."""
        where = f"{self.input_path or ''}|{self.sheet or ''}"
        return hashlib.sha256(f"{self.pipeline.fingerprint()}|{where}".encode()).hexdigest()[:16]

    def resume_info(self) -> ResumeInfo | None:
        if self.journal is None:
            return None
        record = self.journal.latest_run(self.key())
        if record is None or (record.done + record.failed) == 0:
            return None
        return ResumeInfo(record.run_id, record.done, record.failed, record.total, record.started, record.status)

    def pending_batches(self) -> dict[str, dict[str, Any]]:
        """The batch records (by step) the latest run of this pipeline on this input left at the provider."""
        record = self.journal.latest_run(self.key()) if self.journal is not None else None
        return self.journal.load_batches(record.run_id) if self.journal is not None and record is not None else {}

    def load_previous(self) -> int:
        """Take the last run's finished rows from the journal (without running anything), so a
        reopened sheet shows them at once. Returns how many rows it found."""
        if self.journal is None or self.resume_info() is None:
            return 0
        self._load_latest_run()
        return sum(1 for r in self.results if r is not None)

    # ---- running -------------------------------------------------------------------
    def check_ready(self, pipeline: Pipeline | None = None) -> None:
        """Raise what stops `pipeline` (default: the job's) from running over this table: its
        problems, what it wants that the user has not trusted (code, `${NAME}` outside header
        values, files outside its folder: one line each), a key or server to set up first."""
        pipeline = pipeline or self.pipeline
        problems = pipeline.problems(self.rows.columns)
        if problems:
            raise PipelineError(problems)
        wanted = [] if self.trusted else pipeline.permissions()
        if wanted:
            raise untrusted_error(wanted)
        setup = setup_problems(pipeline.steps, pipeline.providers)
        if setup:
            raise SetupError(setup)

    def start(self, mode: str = ALL, *, rows: Iterable[int] | None = None,
              max_concurrency: int | None = None, up_to: StepPath | int | None = None) -> Engine:
        """A ready engine (subscribe, then `await engine.run()`). Raises before any row runs
        if the pipeline is invalid for this table or wants what the user has not trusted.
        `up_to`: run only the top-level steps up to and including this one (its path, or its
        index): later steps' outputs stay blank, and the rows count as not run for `RESUME`."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
        if self.engine is not None and self.engine.running:
            raise RuntimeError("a run is already in progress")
        pipeline = copy.deepcopy(self.pipeline)  # the run's own: later edits never reach it
        self.check_ready(pipeline)
        steps = pipeline.steps
        if up_to is not None:
            last = up_to if isinstance(up_to, int) else int(up_to[0])
            if not 0 <= last < len(steps):
                raise ValueError(f"no step {last + 1} in this pipeline")
            steps = steps[:last + 1]  # a prefix: every step keeps its path
        wanted = set(range(len(self.rows))) if rows is None else {i for i in rows if 0 <= i < len(self.rows)}
        selection = self._select(mode, wanted, every_row=rows is None)
        if up_to is not None:
            self._partial |= selection
        else:
            self._partial -= selection

        settings = pipeline.settings
        resources = RunResources(
            base_dir=pipeline.folder,
            trusted=self.trusted, providers=pipeline.providers, settings=settings,
            data_dir=self.data_dir, use_cache=self.use_cache and settings.get("use_cache", True),
        )
        policy = RetryPolicy(settings["max_attempts"], settings["retry_base_delay"], settings["retry_max_delay"],
                             server_patience=settings.get("server_patience", 300.0))
        previous = {i: r for i, r in enumerate(self.results) if r is not None and i not in selection}
        # Batch mode's records live in the journal with the run's rows: a resume collects, never submits twice.
        book = JournalBook(self.journal, self.run_id) if self.journal is not None and self.run_id is not None \
            and up_to is None else None
        engine = Engine(steps, self.rows,
                        max_concurrency=max_concurrency or settings["max_concurrency"],
                        retry_policy=policy, resources=resources, only=selection, previous=previous, batches=book)
        self.results = engine.results  # the engine fills the job's results as rows finish
        self.recorder = None
        if self.journal is not None and self.run_id is not None and up_to is None:
            # A journal that cannot be written pauses the run, saying why (rows are held, not lost).
            self.recorder = self.journal.recorder(self.run_id, self.input_hash, on_failure=engine.pause)
            engine.subscribe(self.recorder)
        self.engine = engine
        self.run_pipeline = pipeline
        self.started_at = time.time()
        return engine

    def _select(self, mode: str, wanted: set[int], every_row: bool) -> set[int]:
        """The rows a run in `mode` runs among `wanted`; makes `results` this pipeline's first
        (from memory, else from the journal's latest run of it, else a new run)."""
        if self._run_fingerprint and self._run_fingerprint != self.pipeline.fingerprint():
            # The pipeline was edited since these results were made: none of them is current.
            self.run_id, self._run_fingerprint = None, ""
            self.results = [None] * len(self.rows)
            self._partial.clear()
            if mode == RETRY_FAILED:  # the failures shown are stale: every row runs, as Run does
                mode, every_row = ALL, True
        current = self._run_fingerprint == self.pipeline.fingerprint()
        if mode == ALL:
            if every_row:
                self._new_run()
            elif not current:  # a preview keeps every other row's current result
                self._load_latest_run()
            for i in wanted:
                self.results[i] = None
            return wanted
        if not current:
            self._load_latest_run()
        rerun = {ev.CANCELLED}
        if mode in (RETRY_FAILED, RESUME_AND_RETRY):
            rerun.add(ev.ERROR)
        keep_unfinished = mode != RETRY_FAILED
        selection = set()
        for i in wanted:
            result = self.results[i]
            if result is None or i in self._partial:
                if keep_unfinished or (result is not None and result.status in rerun):
                    selection.add(i)
            elif result.status in rerun:
                selection.add(i)
        return selection

    def unfinished(self) -> int | None:
        """How many rows a `RESUME` would run, when known without reading the journal (None: the
        pipeline changed since the results in memory were made, or no run yet)."""
        if not self._run_fingerprint or self._run_fingerprint != self.pipeline.fingerprint():
            return None
        return sum(1 for i, r in enumerate(self.results) if r is None or r.status == ev.CANCELLED or i in self._partial)

    def kept(self) -> int:
        """Rows with a current finished result (done or failed): what running every row again repeats."""
        if not self._run_fingerprint or self._run_fingerprint != self.pipeline.fingerprint():
            return 0
        return sum(1 for i, r in enumerate(self.results)
                   if r is not None and r.status in (ev.DONE, ev.ERROR) and i not in self._partial)

    @property
    def journal_failure(self) -> str:
        """Why the latest run's journal could not be written, one line ('' if it could)."""
        return self.recorder.failure if self.recorder is not None else ""

    def input_hash(self, index: int) -> str:
        return row_hash(self.rows.row(index))

    def _new_run(self) -> None:
        self.results = [None] * len(self.rows)
        self._partial.clear()
        self._run_fingerprint = self.pipeline.fingerprint()
        if self.journal is not None:
            try:
                self.run_id = self.journal.new_run(self.key(), self.pipeline.fingerprint(),
                                                   str(self.input_path) if self.input_path else None,
                                                   self.sheet, len(self.rows))
            except sqlite3.Error as exc:  # a full disk before any row ran: nothing runs
                raise BatchgridError(write_failure(self.journal.path, exc)) from exc

    def _load_latest_run(self) -> None:
        """Take the journal's finished rows (of this pipeline: the job key has its fingerprint)
        whose input has not changed since; without a journal or a run of it, start a new run."""
        record = self.journal.latest_run(self.key()) if self.journal is not None else None
        if self.journal is None or record is None:
            if self._run_fingerprint != self.pipeline.fingerprint():
                self._new_run()
            return
        self.run_id = record.run_id
        self._run_fingerprint = self.pipeline.fingerprint()
        for index, (stored_hash, result) in self.journal.load_rows(record.run_id).items():
            if index < len(self.rows) and stored_hash == self.input_hash(index):
                self.results[index] = result
                self._partial.discard(index)

    # ---- after a run ---------------------------------------------------------------
    def results_pipeline(self) -> Pipeline:
        """The pipeline the results were made with: the latest run's copy (the pipeline may
        have been edited since), or the pipeline itself before any run."""
        return self.run_pipeline or self.pipeline

    def result_set(self) -> ResultSet:
        return ResultSet(self.rows, self.results_pipeline().output_columns(), self.results, self.run_info())

    def run_info(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for r in self.results:
            key = "not run" if r is None else r.status
            counts[key] = counts.get(key, 0) + 1
        p = self.engine.progress if self.engine else None
        pipeline = self.results_pipeline()
        info: dict[str, Any] = {
            "pipeline": pipeline.name or (pipeline.path.name if pipeline.path else "(unsaved)"),
            "pipeline file": str(pipeline.path or ""),
            "input file": str(self.input_path or ""),
            "sheet": self.sheet or "",
            "rows": len(self.rows),
            "max concurrency": self.engine.max_concurrency if self.engine else pipeline.settings["max_concurrency"],
        }
        info.update({f"rows {k}": v for k, v in sorted(counts.items())})
        if p is not None:
            info.update({
                "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(p.started_at)) if p.started_at else "",
                "finished": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(p.finished_at)) if p.finished_at else "",
                "elapsed (s)": round(p.elapsed, 3),
                # The rows' own usage, plus what the latest run spent on work every row shared.
                "tokens in": sum(r.tokens_in for r in self.results if r) + p.shared_tokens_in,
                "tokens out": sum(r.tokens_out for r in self.results if r) + p.shared_tokens_out,
                "cost": round(sum(r.cost for r in self.results if r) + p.shared_cost, 6),
                "retries": p.retries,
            })
            if p.shared_tokens_in or p.shared_cost:
                info["shared work (tokens, cost)"] = f"{p.shared_tokens_in + p.shared_tokens_out:,}, {money(p.shared_cost)}"
        info["steps"] = pipeline.to_json()
        return info
