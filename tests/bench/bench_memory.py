"""Memory per result row, beyond the input table, against the input table measured in the same run.

    .venv/bin/python tests/bench/bench_memory.py                # 200,000 rows
    .venv/bin/python tests/bench/bench_memory.py --rows 50000

The 3-step text pipeline (trim, upper case, template: three short text outputs a row) runs
headless through `core.session.Session` (open_sheet, set_pipeline, start, wait; journal on),
as the window and the CLI run it. Each measure runs in a fresh process of its own:

1. RSS (psutil, after gc.collect): the process after its imports; after the sheet is open
   (the input table alone: the baseline); after the run, the session still open (what the
   user holds while looking at the results); after session.close() (journal closed).
   Result memory per row = (after the run - after the sheet) / rows.
2. tracemalloc (Python allocations only; SQLite's own cache is not among them): the same
   difference, then the lines that allocated it (`Snapshot.compare_to(..., "lineno")`), per row.
3. What one result is made of (sys.getsizeof over 2,000 results, shared objects counted
   once): RowResult, its outputs dict, the output values (the floor: the data itself),
   the trace list and its StepTraces, and the floats.

Target: <= 0.6 KB per result row beyond the input table. Nothing is sent anywhere; under
a minute for 200,000 rows.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchkit import TEXT_PIPELINE, Load, make_sheet, python_line

TARGET_KB = 0.6


def rss() -> int:
    import psutil

    gc.collect()
    return psutil.Process().memory_info().rss


async def run_session(sheet: Path, data: Path, measure, marks: dict) -> dict:
    from batchgrid.core.pipeline.file import Pipeline
    from batchgrid.core.session import Session

    marks["start"] = measure()
    session = Session(journal_path=data / "journal.sqlite", data_dir=data)
    await session.open_sheet(sheet)
    marks["sheet"] = measure()
    session.set_pipeline(Pipeline.from_dict(TEXT_PIPELINE))
    t0 = time.perf_counter()
    await session.start("all")
    reason, message = await session.wait()
    marks["seconds"] = time.perf_counter() - t0
    assert reason == "finished", (reason, message)
    assert session.progress.done == len(session.table)
    marks["run"] = measure()
    marks["_session"] = session
    await session.close()
    marks["closed"] = measure()
    return marks


def phase_rss(sheet: Path, data: Path) -> dict:
    import batchgrid.core.session  # noqa: F401
    import pandas  # noqa: F401  (imports are not the table's memory)

    marks: dict = {}
    asyncio.run(run_session(sheet, data, rss, marks))
    marks.pop("_session")
    return marks


def phase_trace(sheet: Path, data: Path) -> dict:
    import tracemalloc

    import batchgrid.core.session  # noqa: F401
    import pandas  # noqa: F401

    snapshots = {}

    def measure() -> int:
        gc.collect()
        snap = tracemalloc.take_snapshot()
        snapshots[len(snapshots)] = snap
        return sum(s.size for s in snap.statistics("filename"))

    tracemalloc.start(4)
    marks: dict = {}
    asyncio.run(run_session(sheet, data, measure, marks))
    session = marks.pop("_session")
    sheet_snap, run_snap = snapshots[1], snapshots[2]
    top = []
    for stat in run_snap.compare_to(sheet_snap, "traceback")[:12]:
        frames = [f"{short(f.filename)}:{f.lineno}" for f in reversed(stat.traceback)]  # the allocating line first
        top.append((stat.size_diff, stat.count_diff, " <- ".join(frames[:3])))
    marks["top"] = top
    tracemalloc.stop()
    marks["parts"] = anatomy(session.store.results)
    return marks


def short(filename: str) -> str:
    path = Path(filename)
    for root in (Path(__file__).resolve().parents[2], Path(os.__file__).parent):
        if path.is_relative_to(root):
            return str(path.relative_to(root))
    return path.name


def anatomy(results: list, sample: int = 2000) -> dict[str, float]:
    """Bytes per result by part, over `sample` results spread over the run (shared objects once)."""
    step = max(1, len(results) // sample)
    chosen = [r for r in results[::step] if r is not None][:sample]
    seen: set[int] = set()
    parts: dict[str, int] = {}

    def add(part: str, obj) -> None:
        if id(obj) not in seen:
            seen.add(id(obj))
            parts[part] = parts.get(part, 0) + sys.getsizeof(obj)

    for r in chosen:
        add("RowResult object", r)
        add("outputs dict", r.outputs)
        for value in r.outputs.values():
            add("output values (the data itself)", value)
        for name in ("status", "error", "error_type", "failed_step", "latency", "cost"):
            add("RowResult fields (latency float, strings)", getattr(r, name))
        add("trace list", r.trace)
        for t in r.trace:
            add("StepTrace objects", t)
            add("StepTrace fields (seconds float, label, path)", t.seconds)
            add("StepTrace fields (seconds float, label, path)", t.step)
            add("StepTrace fields (seconds float, label, path)", t.path)
    return {k: v / len(chosen) for k, v in sorted(parts.items(), key=lambda x: -x[1])}


def child(phase: str, sheet: Path, data: Path) -> dict:
    done = subprocess.run([sys.executable, __file__, "--phase", phase, "--sheet", str(sheet), "--data", str(data)],
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"{phase} failed: {done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--phase", choices=("rss", "trace"))
    parser.add_argument("--sheet")
    parser.add_argument("--data")
    args = parser.parse_args()
    if args.phase:
        data = Path(args.data) / args.phase
        data.mkdir()
        figures = (phase_rss if args.phase == "rss" else phase_trace)(Path(args.sheet), data)
        print(json.dumps(figures))
        return

    load = Load()
    n = args.rows
    with tempfile.TemporaryDirectory() as tmp:
        sheet = Path(tmp) / "sheet.parquet"
        make_sheet(sheet, n)
        by_rss = child("rss", sheet, Path(tmp))
        by_trace = child("trace", sheet, Path(tmp))

    kb = 1024
    print(python_line())
    print(load.line())
    print(f"3-step text pipeline over {n:,} rows x 5 columns, headless through Session, journal on")
    for name, m in (("RSS (psutil)", by_rss), ("tracemalloc (Python objects)", by_trace)):
        table = (m["sheet"] - m["start"]) / n / kb
        results = (m["run"] - m["sheet"]) / n / kb
        closed = (m["closed"] - m["sheet"]) / n / kb
        print(f"  {name}:")
        print(f"    the input table alone (baseline):   {table:6.3f} KB/row   ({(m['sheet'] - m['start']) / 2**20:.0f} MiB)")
        print(f"    results, session open:              {results:6.3f} KB/row   ({(m['run'] - m['sheet']) / 2**20:.0f} MiB)"
              f"   = {results / table:.2f}x the input table   (target <= {TARGET_KB} KB: "
              f"{'met' if results <= TARGET_KB else 'NOT met'})")
        print(f"    results, after session.close():     {closed:6.3f} KB/row")
        print(f"    run time: {m['seconds']:.2f} s")
    print("  where the results' Python memory was allocated (tracemalloc, top lines, bytes per row):")
    for size, count, where in by_trace["top"]:
        print(f"    {size / n:7.1f} B/row  {count / n:5.2f} blocks/row  {where}")
    print("  what one result is made of (sys.getsizeof, 2,000 results):")
    total = sum(by_trace["parts"].values())
    for part, size in by_trace["parts"].items():
        print(f"    {size:7.1f} B  {part}")
    print(f"    {total:7.1f} B  in all ({total / kb:.3f} KB; the output values are "
          f"{by_trace['parts'].get('output values (the data itself)', 0) / total:.0%} of it)")


if __name__ == "__main__":
    main()
