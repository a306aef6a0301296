"""`batchgrid run PIPELINE INPUT`: the same session as the window, headless, with a progress bar.

Exit codes:
  0  every row finished without error
  1  the run finished but some rows failed or did not run (their errors are in the output)
  2  nothing ran: bad arguments, a missing or unreadable file, an invalid pipeline (also one
     nested too deep, or with NaN or Infinity for a number), an unknown column, a journal that
     cannot be used, or a pipeline that wants trust (code, variables, files) without --trust
  3  an internal error (a bug in Batchgrid): one line; BATCHGRID_DEBUG=1 shows the traceback
  4  the rows ran but the output could not be written: they are in the journal, and the same
     command with --resume writes them without running them again
  130 stopped with Ctrl-C (or SIGTERM) at any moment: one line; before the run nothing is
     written; during the run the finished rows are written (and kept in the journal); during
     the export the previous output is left as it was (--resume writes the rows later)
     (batch mode: a step's batches go on at the provider; --resume collects them without submitting
     again, --cancel-batch cancels them there and writes what they finished)

Every failure is one line on stderr (a pipeline's problems: one line each).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sqlite3
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from batchgrid.core.pipeline.file import SETTINGS, Pipeline
from batchgrid.core.run import events as ev
from batchgrid.core.run.job import ALL, RESUME, RESUME_AND_RETRY, RETRY_FAILED
from batchgrid.core.table.password import PasswordRequired, WrongPassword
from batchgrid.core.util import secrets
from batchgrid.core.util.errors import BatchgridError, PipelineError, UntrustedError

EXIT_OK, EXIT_ROW_ERRORS, EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_NOT_WRITTEN, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130
MAX_CONCURRENCY = next(p.maximum for p in SETTINGS if p.name == "max_concurrency")  # one limit: file and flag


HEADER_ROW_HELP = ("the sheet's row (as Excel numbers it) holding the column names; 0: no header row "
                   "(columns column_1, column_2...) (default: the pipeline's header_row setting, else the first "
                   "row below any title)")


class CliError(Exception):
    """A one-line message for stderr and exit code 2."""


class NotWritten(Exception):
    """The rows ran but the output could not be written: a one-line message and exit code 4."""


class Interrupted(Exception):
    """Ctrl-C: a one-line message (what was written, what was kept) and exit code 130."""


class _ExportStopped(Exception):
    """Raised in the export's thread when Ctrl-C comes: the file is not written."""


class Parser(argparse.ArgumentParser):
    """argparse with one line on a bad argument (its default is the usage, then the error)."""

    def error(self, message: str) -> NoReturn:
        raise CliError(message)


def whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="batchgrid", description="Run a Batchgrid pipeline over a spreadsheet.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run a pipeline over every row of a sheet",
                         description="Run PIPELINE over every row of INPUT and write the results.")
    run.add_argument("pipeline", metavar="PIPELINE", help="pipeline file (.json)")
    run.add_argument("input", metavar="INPUT", help="input sheet: xlsx, xlsm, xlsb, xls, ods, csv, tsv, parquet")
    run.add_argument("-o", "--output", help="results file: .xlsx (formatted report), .csv or .parquet "
                     "(default: INPUT-results.xlsx beside the input)")
    run.add_argument("--sheet", help="sheet name in a workbook (default: the first non-empty sheet)")
    run.add_argument("--password-env", metavar="NAME", help="open a password-protected workbook with the password "
                     "in environment variable NAME")
    run.add_argument("--header-row", type=whole_number, metavar="N", help=HEADER_ROW_HELP)
    run.add_argument("--max-concurrency", type=whole_number, metavar="N",
                     help=f"rows in flight and external calls at once, 1 to {MAX_CONCURRENCY} "
                     "(default: the pipeline's setting)")
    run.add_argument("--limit", type=whole_number, metavar="N", help="run only the first N rows")
    run.add_argument("--resume", action="store_true", help="keep rows finished by the last run; run the rest")
    run.add_argument("--retry-failed", action="store_true", help="rerun only the rows that failed last time")
    run.add_argument("--cancel-batch", action="store_true",
                     help="batch mode: cancel at the provider the batches the last run left there, then write the "
                     "rows they finished (the others fail, saying so); implies --resume")
    run.add_argument("--trust", action="store_true",
                     help="trust the pipeline: let it run Python code, read environment variables outside header "
                     "values and read files outside its folder (only if you trust where it came from; "
                     "`check` lists what it wants)")
    run.add_argument("--journal", metavar="PATH", help="journal database (default: in the user data folder)")
    run.add_argument("--no-cache", action="store_true", help="do not answer model calls from the response cache")
    run.add_argument("--quiet", action="store_true", help="no progress bar, only the summary")
    run.add_argument("--cluster", metavar="ADDRESS", help="run the rows on a Dask cluster: a scheduler's address "
                     "(tcp://host:8786) or local[:N] for N worker processes here (needs batchgrid[cluster])")

    check = sub.add_parser("check", help="validate a pipeline (and its columns against a sheet)")
    check.add_argument("pipeline", metavar="PIPELINE")
    check.add_argument("input", metavar="INPUT", nargs="?")
    check.add_argument("--sheet")
    check.add_argument("--password-env", metavar="NAME")
    check.add_argument("--header-row", type=whole_number, metavar="N", help=HEADER_ROW_HELP)

    sub.add_parser("steps", help="list every step type and its parameters (Markdown)")
    return parser


def main(argv: list[str] | None = None) -> int:
    code = _main(argv)
    if code == EXIT_INTERRUPTED and argv is None:
        exit_now_if_threads_linger(code)
    return code


def _main(argv: list[str] | None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.command == "run":
            return run_command(args)
        if args.command == "check":
            return check_command(args)
        from .reference import steps_markdown

        print(steps_markdown())
        return EXIT_OK
    except (Interrupted, KeyboardInterrupt) as exc:
        said = str(exc) if isinstance(exc, Interrupted) else "before any row ran; nothing was written"
        print(f"batchgrid: stopped: {said}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except NotWritten as exc:
        print(f"batchgrid: error: {exc}", file=sys.stderr)
        return EXIT_NOT_WRITTEN
    except PasswordRequired as exc:  # the window asks; here, say how to give it
        said = one_line(exc) if isinstance(exc, WrongPassword) else (
            one_line(exc).split(";")[0] + ": put its password in an environment variable and pass the "
            "variable's name with --password-env NAME")
        print(f"batchgrid: error: {said}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (CliError, BatchgridError) as exc:
        print(f"batchgrid: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:  # a file that cannot be written, a full disk...
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"batchgrid: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as exc:  # a bug of ours: still one line, the details on request
        if os.environ.get("BATCHGRID_DEBUG"):
            raise
        print(f"batchgrid: internal error: {type(exc).__name__}: {one_line(exc)} "
              "(set BATCHGRID_DEBUG=1 to see the details; please report it)", file=sys.stderr)
        return EXIT_INTERNAL


def one_line(exc: BaseException) -> str:
    if isinstance(exc, PipelineError) and len(exc.problems) > 1:
        # Every problem is worth seeing; each is its own line, each stands alone.
        return "the pipeline has problems:\n  " + "\n  ".join(exc.messages())
    if isinstance(exc, UntrustedError) and len(exc.lines) > 1:
        return ("this pipeline needs your trust to run; add --trust if you trust where it came from. It wants to:\n  "
                + "\n  ".join(exc.lines))
    return secrets.redact(" ".join(str(exc).split()))  # an unexpected error's text may quote a request


def load_pipeline(pipeline_path: str) -> Pipeline:
    return Pipeline.load(pipeline_path)


def check_input(input_path: str) -> Path:
    path = Path(input_path)
    if not path.exists():
        raise CliError(f"{input_path}: no such file")
    if path.is_dir():
        raise CliError(f"{input_path}: is a folder, not a spreadsheet")
    return path


def check_header_row(value: int | None) -> None:
    if value is not None and value < 0:
        raise CliError("--header-row must be 0 (no header row) or the header's row number, 1 or more")


def check_command(args) -> int:
    check_header_row(args.header_row)
    if args.header_row is not None and args.input is None:
        raise CliError("--header-row needs an INPUT sheet to read")
    pipeline = load_pipeline(args.pipeline)
    rows = None
    if args.input is not None:
        from batchgrid.core.table import worker  # read in a reader process: no file can crash the CLI
        from batchgrid.core.table.password import password_from_env

        header_row = args.header_row if args.header_row is not None else pipeline.settings.get("header_row")
        rows = worker.read_rows(check_input(args.input), sheet=args.sheet, header_row=header_row,
                                password=password_from_env(args.password_env))
        print_notes(rows)
        pipeline.validate(rows.columns)
    print(f"{args.pipeline}: ok ({len(pipeline.steps)} steps"
          + (f", {len(rows)} rows" if rows is not None else "") + ")")
    wanted = pipeline.permissions()
    if wanted:  # not a problem: what `run` needs --trust for, said before anyone runs it
        print("needs your trust to run (run it with --trust only if you trust where it came from):\n  "
              + "\n  ".join(str(p) for p in wanted))
    return EXIT_OK


def print_notes(table) -> None:
    """What the reader noticed about the input file (an encoding guessed, a title row skipped)."""
    for note in table.notes if table is not None else ():
        print(f"batchgrid: note: {note}", file=sys.stderr)


def run_command(args) -> int:
    for flag, value, most in (("--max-concurrency", args.max_concurrency, MAX_CONCURRENCY), ("--limit", args.limit, None)):
        if value is not None and value < 1:
            raise CliError(f"{flag} must be at least 1")
        if value is not None and most is not None and value > most:
            raise CliError(f"{flag} must be at most {most:g}")
    check_header_row(args.header_row)
    pipeline = load_pipeline(args.pipeline)
    input_path = check_input(args.input)
    output = Path(args.output) if args.output else default_output(input_path)
    if output.suffix.lower() not in (".xlsx", ".csv", ".parquet"):
        raise CliError(f"{output}: the output must end in .xlsx, .csv or .parquet")
    if args.cluster:
        from batchgrid.core.run.cluster import address_problem
        from batchgrid.core.run.cluster_files import reads_on_workers

        problem = address_problem(args.cluster)
        if problem:
            raise CliError(f"--cluster {problem}")

        if reads_on_workers(input_path):  # too big to read here: read, run and written by partition on the workers
            from .cluster import run_file_on_cluster

            return run_loop(run_file_on_cluster(args, pipeline, input_path, output))
    if not output.parent.exists():
        raise CliError(f"{output.parent}: no such folder for the output")
    if output.is_dir():
        raise CliError(f"{output}: is a folder, not a results file")
    return run_loop(run_headless(args, pipeline, input_path, output))


def run_loop(main_coro) -> int:
    """asyncio.run, except that a worker thread abandoned by Ctrl-C (a sheet still being read) is
    not waited for here: `main` ends the process instead (exit_now_if_threads_linger)."""
    loop = asyncio.new_event_loop()
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(main_coro)
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()  # the default executor is shut down without waiting


def exit_now_if_threads_linger(code: int) -> None:
    """After Ctrl-C: a worker thread still busy (reading a big sheet for a run that will not happen)
    would hold the process until it is done; nothing it does is kept, so end the process now."""
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


STARTING, RUNNING, EXPORTING, CLOSING = "starting", "running", "exporting", "closing"


class CtrlC:
    """What Ctrl-C does depends on the moment: while starting, the start is cancelled (nothing is
    written); while running, the run stops (what finished is written); while exporting, the export
    stops (its temporary file is removed, the previous output stays as it was)."""

    def __init__(self, task: asyncio.Task, session):
        self.task = task
        self.session = session
        self.phase = STARTING
        self.pressed = False
        self.stop_export = threading.Event()

    def __call__(self) -> None:
        self.pressed = True
        if self.phase == STARTING:
            self.task.cancel()
        elif self.phase == RUNNING:
            self.session.stop()
        elif self.phase == EXPORTING:
            self.stop_export.set()

    def export_progress(self, done: int, total: int) -> None:
        """The export's progress callback (in its thread): stop it while it can still be undone."""
        if self.stop_export.is_set() and done < total:
            raise _ExportStopped


def install_interrupt_handler(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> Callable[[], None]:
    """Run `callback` on the loop when Ctrl-C (or SIGTERM) comes; returns what undoes it.

    loop.add_signal_handler where there is one (Unix); where it raises NotImplementedError
    (Windows), signal.signal, which works there for Ctrl-C and Ctrl-Break: the same callback."""
    added: list[int] = []
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, callback)
            added.append(sig)
    except (NotImplementedError, RuntimeError, AttributeError):
        for number in added:
            loop.remove_signal_handler(number)
    else:
        def remove() -> None:
            for number in added:
                loop.remove_signal_handler(number)

        return remove

    def handler(signum: int, frame: Any) -> None:
        loop.call_soon_threadsafe(callback)

    previous: dict[int, Any] = {}
    ctrl_signals: list[int] = [signal.SIGINT] + ([signal.SIGBREAK] if hasattr(signal, "SIGBREAK") else [])  # Windows
    for ctrl in ctrl_signals:
        previous[ctrl] = signal.getsignal(ctrl)
        signal.signal(ctrl, handler)

    def restore() -> None:
        for number, old in previous.items():
            signal.signal(number, old)

    return restore


def open_journal(path: Path | None):
    """The run journal, or CliError in words: a headless run that cannot be resumed is not started."""
    from batchgrid.core.run.journal import Journal
    from batchgrid.core.util.paths import default_data_dir

    path = path or default_data_dir() / "journal.sqlite"
    where = f"cannot use the journal at {path}"
    fix = "choose another file with --journal PATH"
    if path.is_dir():
        raise CliError(f"{where}: it is a folder; {fix}")
    try:
        return Journal(path)
    except sqlite3.DatabaseError as exc:
        text = str(exc)
        if "not a database" in text or "malformed" in text:
            raise CliError(f"{where}: it is not a Batchgrid journal ({text}); {fix}") from None
        raise CliError(f"{where}: it cannot be written ({text}); {fix}") from None
    except OSError as exc:
        raise CliError(f"{where}: it cannot be written ({exc.strerror or exc}); {fix}") from None


async def run_headless(args, pipeline: Pipeline, input_path: Path, output: Path) -> int:
    """The run through core's session, as the window does it: open, check, start, wait, export."""
    from batchgrid.core.session import Session  # the run's machinery: not needed by `check` or `steps`

    session = Session(journal_path=Path(args.journal) if args.journal else None, use_cache=not args.no_cache,
                      pipeline=pipeline)
    task = asyncio.current_task()
    assert task is not None
    ctrl_c = CtrlC(task, session)
    restore = install_interrupt_handler(asyncio.get_running_loop(), ctrl_c)
    try:
        try:
            session.trusted = args.trust
            session.journal = await asyncio.to_thread(open_journal, session.journal_path)
            from batchgrid.core.table.password import password_from_env

            sheet = await session.open_sheet(input_path, args.sheet, limit=args.limit,
                                             password=password_from_env(args.password_env),
                                             header_row=args.header_row)  # None: the pipeline's setting
            print_notes(sheet.table if sheet else None)
            await session.check_ready()
            await print_projected_cost(session)
            modes = {(False, False): ALL, (True, False): RESUME, (False, True): RETRY_FAILED,
                     (True, True): RESUME_AND_RETRY}
            args.resume = args.resume or args.cancel_batch
            engine = await session.start(modes[args.resume, args.retry_failed], max_concurrency=args.max_concurrency,
                                         cluster=args.cluster or None)  # --cluster: its rows on a Dask cluster
            ctrl_c.phase = RUNNING  # no await between the start and this: Ctrl-C now stops the run
            if args.cancel_batch and hasattr(engine, "cancel_batch"):
                engine.cancel_batch()  # as soon as the step in batch mode takes its batches up again
        except asyncio.CancelledError:
            if not ctrl_c.pressed:
                raise
            kept = f" ({output.name} is as it was)" if output.exists() else ""
            raise Interrupted(f"before any row ran; nothing was written{kept}") from None
        await follow(session, engine, quiet=args.quiet)
        reason, message = await session.wait()
        session.run_ended()
        if reason == "failed":
            raise CliError(message)
        ctrl_c.phase = EXPORTING
        line = summary(session, engine, output)
        finished = session.store.count(ev.DONE) + session.store.count(ev.ERROR)
        try:
            await session.export(output, on_progress=ctrl_c.export_progress)
        except _ExportStopped:
            raise Interrupted(f"while writing {output.name}, which is left as it was; {finished} finished rows are "
                              "kept in the journal: run again with --resume to write them") from None
        except (BatchgridError, OSError) as exc:
            reason_line = one_line(exc) if isinstance(exc, BatchgridError) else f"{output}: {exc.strerror or exc}"
            if session.journal_failure:  # neither the output nor the journal holds the rows
                raise NotWritten(f"{reason_line}; and {session.journal_failure}: the {finished} finished rows "
                                 "could not be saved anywhere") from None
            raise NotWritten(f"{reason_line}; the {finished} finished rows are kept in the journal: run again "
                             "with --resume (and an output you can write) to write them without running them again") \
                from None
    finally:
        ctrl_c.phase = CLOSING
        try:
            await session.close()
        finally:
            restore()
    if ctrl_c.pressed:
        rest = "; finished rows are kept: run again with --resume to finish the rest" if session.store.count(ev.DONE) \
            + session.store.count(ev.ERROR) < len(session.store) else ""
        left = getattr(engine, "left_at_provider", [])
        if left:  # batch mode: Ctrl-C ended only the wait; the provider goes on
            rest = (f"; the batch goes on at the provider ({'; '.join(left)}): run again with --resume to collect it "
                    "(nothing is submitted twice), or with --cancel-batch to cancel it")
        raise Interrupted(f"{line}{rest}")
    print(line, file=sys.stderr)
    if session.journal_failure:  # the run stopped on it, or its last rows were not journalled
        print(f"batchgrid: error: {session.journal_failure}; stopped: the finished rows are in "
              f"{output.name} (a --resume runs again those the journal could not keep)", file=sys.stderr)
        return EXIT_ROW_ERRORS
    done, failed = session.store.count(ev.DONE), session.store.count(ev.ERROR)
    return EXIT_ROW_ERRORS if failed or done + failed < len(session.store) else EXIT_OK


def summary(session, engine, output: Path) -> str:
    progress = engine.progress
    store = session.store
    done, failed = store.count(ev.DONE), store.count(ev.ERROR)
    not_run = len(store) - done - failed
    line = (f"{done} done, {failed} failed" + (f", {not_run} not run" if not_run else "")
            + f" of {len(store)} rows in {progress.elapsed:.1f} s")
    if progress.tokens_in or progress.tokens_out:
        line += f"; {progress.tokens_in + progress.tokens_out:,} tokens, ${progress.cost:.4f}"
    warned = sum(1 for r in store.results if r is not None and r.status == ev.DONE and r.note)
    if warned:  # done, but worth a look: an answer cut off at the token limit
        line += f"; {warned} done with a warning (see the note column)"
    return f"{line} -> {output}"


async def print_projected_cost(session) -> None:
    """Before a run with model steps: what it will probably cost (nothing is sent to estimate)."""
    estimate = await session.estimate()
    if estimate is not None and estimate.steps:
        budget = session.pipeline.settings.get("budget")
        print(f"projected: {estimate.describe()}" + (f"; budget {budget}" if budget else ""), file=sys.stderr)


class BatchLines:
    """Without a bar (stderr is a log): a line each time a step in batch mode's wait changes
    ("batchgrid: 2. LLM: batch submitted 3 min ago: 120 of 500 done at the provider")."""

    def __init__(self) -> None:
        self.said = ""

    def __call__(self, event: object) -> None:
        if isinstance(event, ev.BatchWaiting) and event.line and event.line != self.said:
            self.said = event.line
            print(f"batchgrid: {event.step}: {event.line}", file=sys.stderr, flush=True)


def default_output(input_path: Path) -> Path:
    return input_path.with_name(f"{input_path.stem}-results.xlsx")


async def follow(session, engine, *, quiet: bool) -> None:
    """Follow the run with a live progress bar (Ctrl-C stops it: run_headless's CtrlC)."""

    def on_pause(event):
        # Nobody is at a headless run to press Resume: a pause (the budget cap, the same error
        # again and again, a server silent for minutes) ends it; the rows left count as not run (exit 1).
        if isinstance(event, ev.RunPaused) and session.journal_failure:
            session.stop()  # said once, after the export (core/run/journal.py)
            return
        if isinstance(event, ev.RunPaused):
            again = "raise the budget and run again" if event.kind in ("", "budget") else "run again"
            print(f"batchgrid: paused: {event.reason or 'the run was paused'}; stopping here "
                  f"(finished rows are kept: {again} with --resume)", file=sys.stderr)
            session.stop()

    engine.subscribe(on_pause)  # the run has not published anything yet: it starts on the next loop turn
    if not quiet and not sys.stderr.isatty():  # a log, not a bar: batch mode's wait said when it moves
        engine.subscribe(BatchLines())
    if quiet or not sys.stderr.isatty():
        await session.wait()
        return
    from .progress import ProgressBar

    with ProgressBar(engine) as bar:
        engine.subscribe(bar.on_event)
        await session.wait()
