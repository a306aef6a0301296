"""`batchgrid run PIPELINE INPUT`: the same session as the window, headless, with a progress bar.

Exit codes:
  0  every row finished without error
  1  the run finished but some rows failed (their errors are in the output)
  2  nothing ran: bad arguments, a missing or unreadable file, an invalid pipeline,
     an unknown column, or a pipeline that wants trust (code, variables, files) without --trust
  3  an internal error (a bug in Batchgrid): one line; BATCHGRID_DEBUG=1 shows the traceback
  130 stopped with Ctrl-C (finished rows are kept in the journal and the output)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path

from batchgrid.core.pipeline.file import Pipeline
from batchgrid.core.run import events as ev
from batchgrid.core.run.job import ALL, RESUME, RESUME_AND_RETRY, RETRY_FAILED
from batchgrid.core.util import secrets
from batchgrid.core.util.errors import BatchgridError, PipelineError, UntrustedError

EXIT_OK, EXIT_ROW_ERRORS, EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class CliError(Exception):
    """A one-line message for stderr and exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="batchgrid", description="Run a Batchgrid pipeline over a spreadsheet.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run a pipeline over every row of a sheet",
                         description="Run PIPELINE over every row of INPUT and write the results.")
    run.add_argument("pipeline", metavar="PIPELINE", help="pipeline file (.json)")
    run.add_argument("input", metavar="INPUT", help="input sheet: xlsx, xlsm, xlsb, xls, ods, csv, tsv, parquet")
    run.add_argument("-o", "--output", help="results file: .xlsx (formatted report), .csv or .parquet "
                     "(default: INPUT-results.xlsx beside the input)")
    run.add_argument("--sheet", help="sheet name in a workbook (default: the first non-empty sheet)")
    run.add_argument("--max-concurrency", type=int, metavar="N",
                     help="rows in flight and external calls at once (default: the pipeline's setting)")
    run.add_argument("--limit", type=int, metavar="N", help="run only the first N rows")
    run.add_argument("--resume", action="store_true", help="keep rows finished by the last run; run the rest")
    run.add_argument("--retry-failed", action="store_true", help="rerun only the rows that failed last time")
    run.add_argument("--trust", action="store_true",
                     help="trust the pipeline: let it run Python code, read environment variables outside header "
                     "values and read files outside its folder (only if you trust where it came from; "
                     "`check` lists what it wants)")
    run.add_argument("--journal", metavar="PATH", help="journal database (default: in the user data folder)")
    run.add_argument("--no-cache", action="store_true", help="do not answer model calls from the response cache")
    run.add_argument("--quiet", action="store_true", help="no progress bar, only the summary")

    check = sub.add_parser("check", help="validate a pipeline (and its columns against a sheet)")
    check.add_argument("pipeline", metavar="PIPELINE")
    check.add_argument("input", metavar="INPUT", nargs="?")
    check.add_argument("--sheet")

    sub.add_parser("steps", help="list every step type and its parameters (Markdown)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            return run_command(args)
        if args.command == "check":
            return check_command(args)
        from .reference import steps_markdown

        print(steps_markdown())
        return EXIT_OK
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


def check_command(args) -> int:
    pipeline = load_pipeline(args.pipeline)
    rows = None
    if args.input is not None:
        from batchgrid.core.table import Table, read_table

        rows = Table.from_frame(read_table(check_input(args.input), sheet=args.sheet))
        pipeline.validate(rows.columns)
    print(f"{args.pipeline}: ok ({len(pipeline.steps)} steps"
          + (f", {len(rows)} rows" if rows is not None else "") + ")")
    wanted = pipeline.permissions()
    if wanted:  # not a problem: what `run` needs --trust for, said before anyone runs it
        print("needs your trust to run (run it with --trust only if you trust where it came from):\n  "
              + "\n  ".join(str(p) for p in wanted))
    return EXIT_OK


def run_command(args) -> int:
    if args.max_concurrency is not None and args.max_concurrency < 1:
        raise CliError("--max-concurrency must be at least 1")
    if args.limit is not None and args.limit < 1:
        raise CliError("--limit must be at least 1")
    pipeline = load_pipeline(args.pipeline)
    input_path = check_input(args.input)
    output = Path(args.output) if args.output else default_output(input_path)
    if output.suffix.lower() not in (".xlsx", ".csv", ".parquet"):
        raise CliError(f"{output}: the output must end in .xlsx, .csv or .parquet")
    if not output.parent.exists():
        raise CliError(f"{output.parent}: no such folder for the output")
    return asyncio.run(run_headless(args, pipeline, input_path, output))


async def run_headless(args, pipeline: Pipeline, input_path: Path, output: Path) -> int:
    """The run through core's session, as the window does it: open, check, start, wait, export."""
    from batchgrid.core.session import Session  # the run's machinery: not needed by `check` or `steps`

    session = Session(journal_path=Path(args.journal) if args.journal else None, use_cache=not args.no_cache,
                      pipeline=pipeline)
    try:
        session.trusted = args.trust
        await session.open_sheet(input_path, args.sheet, limit=args.limit)
        await session.check_ready()
        await print_projected_cost(session)
        modes = {(False, False): ALL, (True, False): RESUME, (False, True): RETRY_FAILED,
                 (True, True): RESUME_AND_RETRY}
        engine = await session.start(modes[args.resume, args.retry_failed], max_concurrency=args.max_concurrency)
        interrupted = await follow(session, engine, quiet=args.quiet)
        reason, message = await session.wait()
        session.run_ended()
        if reason == "failed":
            raise CliError(message)
        await session.export(output)
    finally:
        await session.close()
    progress = engine.progress
    store = session.store
    done, failed = store.count(ev.DONE), store.count(ev.ERROR)
    not_run = len(store) - done - failed
    line = (f"{done} done, {failed} failed" + (f", {not_run} not run" if not_run else "")
            + f" of {len(store)} rows in {progress.elapsed:.1f} s")
    if progress.tokens_in or progress.tokens_out:
        line += f"; {progress.tokens_in + progress.tokens_out:,} tokens, ${progress.cost:.4f}"
    print(f"{line} -> {output}", file=sys.stderr)
    if session.journal_failure:  # the run stopped on it, or its last rows were not journalled
        print(f"batchgrid: error: {session.journal_failure}; stopped: the finished rows are in "
              f"{output.name} (a --resume runs again those the journal could not keep)", file=sys.stderr)
        return EXIT_ROW_ERRORS
    if interrupted:
        print("stopped: finished rows are kept; run again with --resume to finish the rest", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_ROW_ERRORS if failed or not_run else EXIT_OK


async def print_projected_cost(session) -> None:
    """Before a run with model steps: what it will probably cost (nothing is sent to estimate)."""
    estimate = await session.estimate()
    if estimate is not None and estimate.steps:
        budget = session.pipeline.settings.get("budget")
        print(f"projected: {estimate.describe()}" + (f"; budget {budget}" if budget else ""), file=sys.stderr)


def default_output(input_path: Path) -> Path:
    return input_path.with_name(f"{input_path.stem}-results.xlsx")


async def follow(session, engine, *, quiet: bool) -> bool:
    """Follow the run with a live progress bar; Ctrl-C stops at once. True if interrupted."""
    loop = asyncio.get_running_loop()
    interrupted = False

    def on_interrupt():
        nonlocal interrupted
        interrupted = True
        session.stop()

    def on_pause(event):
        # Nobody is at a headless run to press Resume: a pause (the budget cap) ends it.
        if isinstance(event, ev.RunPaused) and session.journal_failure:
            session.stop()  # said once, after the export (core/run/journal.py)
            return
        if isinstance(event, ev.RunPaused):
            print(f"batchgrid: paused: {event.reason or 'the run was paused'}; stopping here "
                  "(finished rows are kept: raise the budget and run again with --resume)", file=sys.stderr)
            session.stop()

    engine.subscribe(on_pause)  # the run has not published anything yet: it starts on the next loop turn
    try:
        loop.add_signal_handler(signal.SIGINT, on_interrupt)
        loop.add_signal_handler(signal.SIGTERM, on_interrupt)
    except (NotImplementedError, RuntimeError):  # Windows: KeyboardInterrupt still ends the run
        pass
    if quiet or not sys.stderr.isatty():
        await session.wait()
        return interrupted
    from .progress import ProgressBar

    with ProgressBar(engine) as bar:
        engine.subscribe(bar.on_event)
        await session.wait()
    return interrupted
