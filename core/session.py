"""The application layer: one analyst's workspace, the only thing a front end drives.

A session holds a sheet, the pipeline being edited, the journal and one result store, and
offers everything the window, the CLI and the tests do: open a sheet, load / save / check a
pipeline, estimate the cost, find what the journal kept for this sheet and pipeline, start /
pause / resume / stop a run (all rows, the rows without a current result, failed or stopped rows,
chosen rows, or the first steps only), export.

It is Qt-free and async: every file, SQLite, keyring and pandas operation runs in a worker
thread, so a window on the same event loop stays live; the loop only awaits.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchgrid.core import table as tables
from batchgrid.core.pipeline import Pipeline, walk
from batchgrid.core.pipeline.trust import Permission
from batchgrid.core.providers.batches import BatchRecord
from batchgrid.core.run import batch_mode
from batchgrid.core.run import cluster as dask_run  # `distributed` itself only for a run on a cluster
from batchgrid.core.run import events as ev
from batchgrid.core.run import overrides as reviews
from batchgrid.core.run import storage as kept
from batchgrid.core.run.engine import Engine, Progress
from batchgrid.core.run.estimate import CostEstimate, estimate_cost
from batchgrid.core.run.job import ALL, Job, ResumeInfo
from batchgrid.core.run.journal import Journal, default_journal_path, row_hash
from batchgrid.core.run.store import ResultStore
from batchgrid.core.table import Table
from batchgrid.core.table import worker as reader
from batchgrid.core.util import gc_pause
from batchgrid.core.util import template as tpl
from batchgrid.core.util.errors import BatchgridError
from batchgrid.core.util.paths import default_data_dir
from batchgrid.core.util.problems import StepPath

PREVIEW_ROWS = 200  # rows shown at once while a big sheet is read


@dataclass
class Sheet:
    """The sheet a session holds (or a first look at it, while the rest is read)."""

    path: Path
    name: str                 # the sheet within the workbook
    names: list[str]          # every sheet of the workbook that can hold a table
    table: Table
    complete: bool            # False while only the first rows are read
    header_row: int | None = None   # the header's sheet row as Excel shows it (0: none; None: a parquet file)
    first_row: int | None = None    # the sheet row of table row 0 (table row i is sheet row first_row + i)
    header_asked: int | None = None  # what it was read with: a row, 0, or None (found by itself)

    def sheet_row(self, row: int) -> int | None:
        """The sheet row (as Excel shows it) of table row `row` (0-based); None for a parquet file."""
        return None if self.first_row is None else self.first_row + row


def _read_whole(path: Path, sheet: str, limit: int | None, password: str | None,
                header_row: int | None) -> tuple[Table, int | None, int | None]:
    """The whole sheet read in a reader process: a Table, its header's sheet row and its first row's."""
    frame = reader.read_table(path, sheet=sheet, limit=limit, password=password, header_row=header_row)
    return Table.from_frame(frame), frame.attrs.get("header_row"), frame.attrs.get("first_row")


class Session:
    def __init__(self, *, data_dir: Path | None = None, journal_path: Path | None = None,
                 use_cache: bool = True, pipeline: Pipeline | None = None):
        self.journal_path = Path(journal_path) if journal_path else None
        self.data_dir = Path(data_dir) if data_dir else (self.journal_path.parent if self.journal_path
                                                          else default_data_dir())
        self.use_cache = use_cache
        self.pipeline = pipeline or Pipeline()
        self.sheet: Sheet | None = None
        self.store = ResultStore()
        self.journal: Journal | None = None
        self.journal_problem = ""  # why the journal could not be opened (runs then cannot resume)
        self.job: Job | None = None
        self.engine: Engine | None = None
        # The user trusts this pipeline (its code, `${NAME}` outside header values, files outside
        # its folder: core/pipeline/trust.py). A pipeline handed in or loaded is not trusted until
        # the front end asks (`needs_trust`) and the user says yes (`trust`).
        self.trusted = False
        self._trusted_files: set[tuple[Path, str]] = set()  # (file, fingerprint) trusted in this session
        self.listeners: list[ev.Listener] = []  # hear every run's events (after the store)
        self._run_task: asyncio.Task | None = None
        self._starting = False     # start() is setting a run up (the journal, a cluster's connection)
        self._stop_asked = False   # Stop was pressed meanwhile: the run starts stopped
        self._batches_left = ""  # what pending_batch() last found at the provider (until a run starts)
        self._open_generation = 0

    # ---- the sheet --------------------------------------------------------------------------
    @property
    def table(self) -> Table | None:
        return self.sheet.table if self.sheet else None

    async def open_sheet(self, path: str | Path, sheet: str | None = None,
                         on_preview: Callable[[Sheet], None] | None = None, limit: int | None = None,
                         password: str | None = None, header_row: int | None = None) -> Sheet | None:
        """Read a sheet off the loop: its first rows at once (handed to `on_preview`), then all
        of it (or its first `limit` rows). None if another open_sheet started meanwhile.
        `header_row`: the header's row as Excel shows it, 0 for none (columns column_1...); None
        reads it as the pipeline's `header_row` setting says (unset: the first row below any title).
        The file is read in a reader process (`core/table/worker.py`): no file can crash or hang
        the app. `password` opens an encrypted workbook (it is not kept). Raises InputError
        (PasswordRequired / WrongPassword for an encrypted one) with one line for the user."""
        if self.running:
            raise BatchgridError("stop the run before opening another sheet")
        path = Path(path)
        if header_row is None:
            header_row = self.pipeline.settings.get("header_row")
        self._open_generation += 1
        generation = self._open_generation
        first = await asyncio.to_thread(reader.preview, path, sheet=sheet, rows=min(PREVIEW_ROWS, limit or PREVIEW_ROWS),
                                        password=password, header_row=header_row)
        if generation != self._open_generation:
            return None
        shown = Sheet(path.resolve(), first.sheet, list(first.sheets), Table.from_frame(first.frame), first.complete,
                      first.header_row, first.first_row, header_row)
        if not first.complete and limit is not None and limit <= PREVIEW_ROWS:
            first.complete = True  # the preview holds the rows asked for
        if not first.complete:
            if on_preview is not None:
                self._set_sheet(shown)
                on_preview(shown)
            table, header_at, first_row = await asyncio.to_thread(_read_whole, path, first.sheet, limit, password,
                                                                  header_row)
            if generation != self._open_generation:
                return None
            shown = Sheet(shown.path, shown.name, shown.names, table, True, header_at, first_row, header_row)
        self._set_sheet(shown)
        await self._load_reviews(shown)
        return shown

    def header_differs(self) -> bool:
        """The pipeline's `header_row` setting asks for another header than the open sheet was read
        with: the front end opens the sheet again (a pipeline opened, the setting undone)."""
        sheet = self.sheet
        wanted = self.pipeline.settings.get("header_row")
        if sheet is None or sheet.header_row is None or wanted == sheet.header_asked:
            return False
        return wanted != sheet.header_row  # a row chosen that was found by itself reads the same

    def _set_sheet(self, sheet: Sheet) -> None:
        self.sheet = sheet
        self.job = None
        self.store.reset(sheet.table, self.output_columns())

    # ---- the pipeline -----------------------------------------------------------------------
    async def load_pipeline(self, path: str | Path) -> Pipeline:
        """Read and check a pipeline file off the loop; it becomes this session's pipeline."""
        pipeline = await asyncio.to_thread(Pipeline.load, path)
        self.set_pipeline(pipeline)
        return pipeline

    def set_pipeline(self, pipeline: Pipeline) -> None:
        """Make `pipeline` this session's. One read from a file is not trusted until the user says
        so; one with no file is being built by the user, so it is theirs: trusted."""
        self.pipeline = pipeline
        self.job = None
        # Trust is given to one pipeline, not to whatever is opened next; reopening a file trusted in
        # this session, unchanged, is not asked about again.
        self.trusted = pipeline.path is None or self._file_key(pipeline) in self._trusted_files
        self.pipeline_edited()

    def needs_trust(self) -> list[Permission]:
        """What the front end must ask the user to trust before this pipeline runs (what it wants
        beyond an untrusted pipeline's rights, each located); [] once trusted."""
        return [] if self.trusted else self.pipeline.permissions()

    def trust(self) -> None:
        """The user trusts this pipeline, for this session (until another pipeline is set)."""
        self.trusted = True
        if self.job is not None:
            self.job.trusted = True
        if self.pipeline.path is not None:
            self._trusted_files.add(self._file_key(self.pipeline))

    @staticmethod
    def _file_key(pipeline: Pipeline) -> tuple[Path, str]:
        assert pipeline.path is not None
        return pipeline.path, pipeline.fingerprint()  # what its steps and providers are: what it may want

    def pipeline_edited(self) -> None:
        """The pipeline's shape may have changed: the table's output columns follow (between runs;
        a run in flight keeps its own snapshot and columns)."""
        if self.sheet is not None and not self.running and self.output_columns() != self.store.step_columns:
            self.store.reset(self.sheet.table, self.output_columns(), self.store.results)

    async def save_pipeline(self, path: str | Path | None = None) -> Path:
        target = Path(path) if path else self.pipeline.path
        if target is None:
            raise BatchgridError("choose where to save the pipeline")
        await asyncio.to_thread(self.pipeline.save, target)
        return target

    def output_columns(self) -> list[str]:
        return self.pipeline.output_columns()

    def problems(self) -> list:
        """What stops the pipeline from running over this sheet (each located, one line)."""
        return self.pipeline.problems(self.table.columns if self.table is not None else None)

    def uses_models(self) -> bool:
        return any(type(s).group == "Models" for s in walk(self.pipeline.steps) if s.enabled)

    async def estimate(self) -> CostEstimate | None:
        """The projected cost of running every row (nothing is sent); None without model steps."""
        if self.table is None or not self.uses_models() or self.problems():
            return None
        snapshot = Pipeline.from_dict(self.pipeline.to_dict())  # the editor may change it meanwhile
        snapshot.path = self.pipeline.path
        # No full collection in the worker while the window waits (it holds the interpreter).
        with tpl.env_trusted(self.trusted):  # the prompts read `${NAME}` as the run would
            async with gc_pause.paused():
                return await asyncio.to_thread(estimate_cost, snapshot, self.table, data_dir=self.data_dir,
                                               use_cache=self.use_cache)

    # ---- what the journal holds -------------------------------------------------------------
    async def _current_job(self) -> Job:
        if self.table is None:
            raise BatchgridError("open a spreadsheet first")
        if self.job is None or self.job.pipeline is not self.pipeline or self.job.rows is not self.table:
            if self.journal is None and not self.journal_problem:
                try:
                    self.journal = await asyncio.to_thread(Journal, self.journal_path)
                except Exception as exc:  # runs still work, they just cannot be resumed
                    self.journal_problem = f"the run journal cannot be opened ({exc}); runs will not be resumable"
            assert self.sheet is not None
            self.job = Job(self.pipeline, self.table, input_path=self.sheet.path, sheet=self.sheet.name,
                           journal=self.journal, data_dir=self.data_dir, use_cache=self.use_cache)
        self.job.trusted = self.trusted
        return self.job

    async def previous_run(self) -> ResumeInfo | None:
        """The last run of this pipeline on this sheet, if the journal kept one; its finished rows
        are put in the result store at once (hashing and decoding them runs off the loop)."""
        if self.table is None or self.running or not self.pipeline.steps or self.problems():
            return None
        job = await self._current_job()
        # Decoding a big journal allocates millions of objects: full collections set off in the
        # worker thread would hold the interpreter (and the window's loop) for 100-400 ms each.
        async with gc_pause.paused():
            info = await asyncio.to_thread(job.resume_info)
            if info is None:
                return None
            if await asyncio.to_thread(job.load_previous):
                self.store.reset(self.table, self.output_columns(), job.results)
            gc_pause.keep_long_lived()  # the journal's rows stay: no collection need scan them again
        return info

    # ---- batch mode: batches left at the provider ------------------------------------------------
    async def pending_batch(self) -> str:
        """The batches the last run of this pipeline on this sheet left at the provider, asked of it now:
        "2. Summarise: batch submitted 2 h ago: 41,200 of 50,000 done at the provider" (one line per
        step); '' when there are none (or a run is going on: its own progress says it). A run in resume
        mode collects them (Session.start("resume"): the window's Resume, the CLI's --resume)."""
        if self.table is None or self.running or not self.pipeline.steps or self.problems():
            return ""
        job = await self._current_job()
        pending = await asyncio.to_thread(job.pending_batches)
        labels = {str(i): f"{i + 1}. {step.label}" for i, step in enumerate(self.pipeline.steps)}
        lines = []
        for key, data in pending.items():
            line = await batch_mode.describe_pending(BatchRecord.from_dict(data), self.pipeline.providers)
            lines.append(f"{labels.get(key, 'a step')}: {line}")
        self._batches_left = "\n".join(lines)
        return self._batches_left

    async def cancel_batch(self) -> bool:
        """Cancel at the provider the batches of a step in batch mode: the running run's (its rows done at the
        provider are collected, the others fail saying so), else those the last run left there (a resume
        collects what they did). False when there is none."""
        if self.running and self.engine is not None:
            self.engine.cancel_batch()
            return True
        if self.table is None:
            return False
        job = await self._current_job()
        pending = await asyncio.to_thread(job.pending_batches)
        for data in pending.values():
            await batch_mode.cancel_pending(BatchRecord.from_dict(data), self.pipeline.providers)
        return bool(pending)

    @property
    def batch_pending(self) -> bool:
        """A step's batches wait at the provider: the running run's, or those the last run (or the journal, as
        pending_batch() found) left there (the window offers Cancel batch)."""
        if self.running:
            return self.engine is not None and self.engine.batch_pending
        return bool(self._batches_left or (self.engine is not None and getattr(self.engine, "left_at_provider", [])))

    # ---- running ----------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._run_task is not None and not self._run_task.done()

    @property
    def paused(self) -> bool:
        return self.engine is not None and self.running and self.engine.paused

    @property
    def progress(self) -> Progress | None:
        return self.engine.progress if self.engine is not None else None

    async def check_ready(self) -> None:
        """Raise what would stop a run before any row: problems, what the user has not trusted
        (one line each), a key to set up."""
        job = await self._current_job()
        job.check_ready()

    async def start(self, mode: str = ALL, *, rows: list[int] | None = None,
                    max_concurrency: int | None = None, up_to: StepPath | int | None = None,
                    cluster: str | None = None, partition_rows: int | None = None) -> Engine:
        """Start a run and return its engine (already running as a task). Raises before any row
        runs if the pipeline is invalid, runs untrusted code or needs a key or server.
        `mode` (core/run/job.py): "all" runs every row afresh (or every row of `rows`); "resume"
        the rows without a current result; "retry_failed" the failed and stopped rows.
        `up_to`: only the top-level steps up to and including this one (path or index).
        `cluster`: run the rows on the Dask cluster at this address (core/run/cluster.py
        `parse_address`: a scheduler's, or `local[:N]` for worker processes started here), in
        partitions of `partition_rows` (None: sized as the run goes). The same run otherwise: the
        job's engine, made a `ClusterEngine`, fills the same results, journal and listeners. Without
        `distributed`, with a bad address or no scheduler there: a ClusterError of one line."""
        if self.running or self._starting:
            raise BatchgridError("a run is already in progress")
        self._starting, self._stop_asked = True, False
        try:
            engine = await self._set_up_run(mode, rows, max_concurrency, up_to, cluster, partition_rows)
        finally:
            self._starting = False
        if self._stop_asked:  # before any row: the engine ends at once, as stopped
            engine.stop()
        return engine

    async def _set_up_run(self, mode: str, rows: list[int] | None, max_concurrency: int | None,
                          up_to: StepPath | int | None, cluster: str | None, partition_rows: int | None) -> Engine:
        if cluster is not None:  # said before anything is opened
            dask_run.require_distributed()
            dask_run.parse_address(cluster)
            dask_run.refuse_batch_mode(self.pipeline.steps)
        job = await self._current_job()
        self._batches_left = ""  # a run takes them up again (resume) or leaves them (another run)
        client, local = await dask_run.connect(cluster) if cluster is not None else (None, None)
        try:
            # Job.start snapshots the pipeline, opens the journal's run and reads its rows: off the loop.
            engine = await asyncio.to_thread(job.start, mode, rows=rows, max_concurrency=max_concurrency, up_to=up_to)
            if client is not None:
                assert job.run_pipeline is not None
                engine = dask_run.cluster_engine(engine, client, job.run_pipeline.to_dict(), cluster=local,
                                                 partition_rows=partition_rows)
        except BaseException:
            if client is not None:
                await dask_run.disconnect(client, local)
            raise
        self.engine = engine
        self.store.reset(job.rows, self.output_columns(), job.results)
        self.store.run_starting(job.results, engine.selection)
        engine.subscribe(self.store.on_event)
        for listener in self.listeners:
            engine.subscribe(listener)
        self._run_task = asyncio.ensure_future(engine.run())
        return engine

    def rows_left(self) -> int | None:
        """How many rows a "resume" would run, when known without the journal (None: not known
        yet, e.g. before the first run or after an edit: then every row may be left)."""
        job = self.job
        if job is None or job.pipeline is not self.pipeline or job.rows is not self.table:
            return None
        return job.unfinished()

    def rerun_repeats(self) -> str:
        """Before running every row again: what it would send again, one line ('' when nothing
        is: no row has a current result, or its steps call no web API and their model calls
        are answered from the response cache)."""
        if self.batch_pending and not self.running:  # a new run would submit (and pay for) those rows again
            return ("A batch of the last run is still at the provider: running every row again submits its rows "
                    "again, and they are paid twice. Run collects it instead.")
        job = self.job
        done = job.kept() if job is not None and job.pipeline is self.pipeline and job.rows is self.table else 0
        if not done:
            return ""
        groups = {type(s).group for s in walk(self.pipeline.steps) if s.enabled}
        cached = self.use_cache and self.pipeline.settings.get("use_cache", True)
        what = [w for w, sent in (("model calls", "Models" in groups and not cached), ("web requests", "Web" in groups))
                if sent]
        if not what:
            return ""
        return (f"{done:,} row{'s' if done != 1 else ''} already {'have' if done != 1 else 'has'} a result of "
                f"this pipeline: running {'them' if done != 1 else 'it'} again sends {' and '.join(what)} again.")

    def pause(self) -> None:
        if self.engine is not None and self.running:
            self.engine.pause()

    def resume(self) -> None:
        if self.engine is not None and self.running:
            self.engine.resume()

    def stop(self) -> None:
        if self.engine is not None and self.running:
            self.engine.stop()
        elif self._starting:
            self._stop_asked = True

    async def wait(self) -> tuple[str, str]:
        """Until the current run has ended: (reason, message), reason one of finished, stopped, failed."""
        if self._run_task is not None:
            await asyncio.gather(self._run_task, return_exceptions=True)
        outcome = self.engine.outcome if self.engine is not None else None
        return outcome or ("finished", "")

    def run_ended(self) -> list[int]:
        """After a run: rows left queued or in flight show their last result (rows that changed)."""
        return self.store.run_ended()

    @property
    def journal_failure(self) -> str:
        """Why the latest run's journal could not be written, one line ('' if it could): the run
        was paused with this reason; a headless run stops on it."""
        return self.job.journal_failure if self.job is not None else ""

    # ---- the review pass (core/run/overrides.py) ----------------------------------------------
    @property
    def overrides(self) -> reviews.Overrides:
        """The sheet's reviews: each reviewed row's decision and edited cells."""
        return self.store.overrides

    def review(self, row: int, decision: str | None, edits: dict[str, Any] | None = None) -> reviews.Review | None:
        """Accept, edit or reject a row (None forgets its review), in the journal at once; an edited
        cell is never overwritten by a run (ResultStore.review)."""
        return self.store.review(row, decision, edits)

    async def _load_reviews(self, sheet: Sheet) -> None:
        """The reviews the journal kept for this sheet, matched to its rows (off the loop)."""
        if self.journal is None and not self.journal_problem:
            with contextlib.suppress(Exception):  # _current_job says why, when a run needs it
                self.journal = await asyncio.to_thread(Journal, self.journal_path)
        if self.journal is not None:
            found = await asyncio.to_thread(reviews.load, self.journal, reviews.review_key(sheet.path, sheet.name),
                                            sheet.table, row_hash)
            if self.sheet is sheet:  # no other sheet opened meanwhile
                self.store.overrides = found

    # ---- what is kept on disk ---------------------------------------------------------------
    def _journal_file(self) -> Path:
        return self.journal.path if self.journal is not None else (self.journal_path or default_journal_path())

    async def storage(self) -> kept.Storage:
        """The response cache's and the journal's files and their sizes on disk (read off the loop)."""
        return await asyncio.to_thread(kept.sizes, self.data_dir, self._journal_file())

    async def clear_cache(self) -> None:
        """Forget every cached model answer (off the loop)."""
        await asyncio.to_thread(kept.clear_cache, self.data_dir)

    async def clear_journal(self) -> None:
        """Forget every run the journal kept (off the loop); not while a run writes to it."""
        if self.running:
            raise BatchgridError("stop the run before clearing the journal")
        await asyncio.to_thread(kept.clear_journal, self.journal, self._journal_file())
        self.job = None  # its run is gone: the next run starts afresh

    # ---- results ----------------------------------------------------------------------------
    def run_info(self) -> dict[str, Any]:
        return self.job.run_info() if self.job is not None else {}

    async def export(self, path: str | Path, on_progress: Callable[..., None] | None = None,
                     rows: Sequence[int] | None = None) -> int:
        """Write the results (xlsx report, csv or parquet) off the loop; the rows written.
        `rows`: the row numbers to write, in that order (a window's sorted or filtered view)."""
        path = Path(path)
        if path.suffix.lower() not in (".xlsx", ".csv", ".parquet"):
            raise BatchgridError(f"{path.name}: export to a .xlsx, .csv or .parquet file")
        if self.table is None:
            raise BatchgridError("open a spreadsheet and run a pipeline before exporting")
        results = self.store.result_set(self.run_info())
        await asyncio.to_thread(tables.export_results, results, path, on_progress=on_progress, rows=rows)
        return len(results) if rows is None else len(rows)

    async def close(self) -> None:
        """Stop a run in flight, wait for its end (its last rows reach the journal), close the journal."""
        self.stop()
        await self.wait()
        if self.journal is not None:
            journal, self.journal = self.journal, None
            with contextlib.suppress(Exception):
                await asyncio.to_thread(journal.close)

