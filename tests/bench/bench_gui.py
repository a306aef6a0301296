"""The window against a headless run of the same session, in the same process and run.

    QT_QPA_PLATFORM=offscreen .venv/bin/python tests/bench/bench_gui.py            # 200,000 rows x 3 pairs; 1,000,000 to scroll
    QT_QPA_PLATFORM=offscreen .venv/bin/python tests/bench/bench_gui.py --quick    # 20,000 rows x 2; 200,000 to scroll
    options: --rows N  --repeat K  --no-big-sheet

1. The same 3-step text pipeline (trim, upper case, template) over the same rows, journal on
   in both: headless (`core.session.Session` on a plain asyncio loop: open_sheet,
   set_pipeline, start, wait) and through the window (`gui.MainWindow` on the qasync loop:
   load_pipeline, load_sheet, begin_run, until `runFinished`; the results table is live).
   Each timed from the start call to the run's end. Headless and window runs alternate,
   K pairs; the medians are compared. Target: window <= 1.3x headless.
2. Event-loop lag during the window runs: the gaps between ticks of a 10 ms precise QTimer,
   against the same timer on the same idle window just before. Target: p99 < 50 ms.
   Each window is closed and deleted after its run (the app has one window; here the next
   one must not pay for scanning a dead one's objects); with each window run, the garbage
   collections during it (the window's end-of-run full collection runs on the loop).
3. One window, Run pressed three times (each run replaces the last one's results): time
   against headless, lag and garbage collections of each run.
4. A sheet of 1,000,000 rows: time until its first rows show, until all of it is in, the
   time to paint the table at 40 scroll positions, and one sort on a column (in a worker
   thread, with the event loop's longest gap meanwhile).

Everything stays in this process and a temporary folder; nothing is sent anywhere.
About 1.5 minutes for the default sizes on a 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import PySide6  # noqa: F401  (before qasync)
import qasync
from batchgrid.core.pipeline.file import Pipeline
from batchgrid.core.session import Session
from batchgrid.gui.main_window import MainWindow
from batchgrid.gui.settings import AppSettings
from benchkit import (
    TEXT_PIPELINE,
    GcWatch,
    Load,
    Ticker,
    describe_gaps,
    gaps_ms,
    make_sheet,
    median,
    percentile,
    python_line,
)
from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import QApplication


async def headless_run(data: Path, sheet: Path, pipeline: Path, k: int) -> float:
    session = Session(journal_path=data / f"headless{k}.sqlite")
    await session.open_sheet(sheet)
    await session.load_pipeline(pipeline)
    t0 = time.perf_counter()
    await session.start("all")
    reason, message = await session.wait()
    elapsed = time.perf_counter() - t0
    assert reason == "finished", (reason, message)
    assert session.progress.done == len(session.table), session.progress
    await session.close()
    return elapsed


def signal_future(signal) -> asyncio.Future:
    """A future for the next emission of `signal`, connected now (before the action)."""
    future = asyncio.get_running_loop().create_future()
    signal.connect(lambda *args: future.done() or future.set_result(args))
    return future


async def timed_run(window: MainWindow, ticker: Ticker) -> tuple[float, list[float], str]:
    """Press Run and wait for the end: (seconds, the timer's gaps meanwhile, the collections meanwhile)."""
    t0 = time.perf_counter()
    finished = signal_future(window.runFinished)
    watch = GcWatch().start()
    assert await window.begin_run("all")
    reason, message = await finished
    elapsed = time.perf_counter() - t0
    await asyncio.sleep(0.05)
    ticker.stop()
    watch.stop()
    assert reason == "finished", (reason, message)
    assert window.session.progress.done == len(window.rows), window.session.progress
    return elapsed, gaps_ms(ticker.ticks, t0, t0 + elapsed), watch.describe(t0, t0 + elapsed, ticker.ticks)


async def window_run(window: MainWindow, sheet: Path, pipeline: Path) -> tuple[float, list[float], list[float], str]:
    assert await window.load_pipeline(pipeline)
    assert await window.load_sheet(sheet)
    ticker = Ticker()
    ticker.start()
    idle0 = time.perf_counter()
    await asyncio.sleep(1.0)  # the idle window: the baseline of the timer
    idle1 = time.perf_counter()
    elapsed, gaps, collections = await timed_run(window, ticker)
    return elapsed, gaps, gaps_ms(ticker.ticks, idle0, idle1), collections


async def run_again(window: MainWindow) -> tuple[float, list[float], str]:
    """Press Run again in the same window: the last run's results are replaced."""
    ticker = Ticker()
    ticker.start()
    return await timed_run(window, ticker)


async def close_window(window: MainWindow) -> None:
    """Close it as the user does, then delete it: Qt keeps a closed top-level window (and, through
    its signal connections, its session and results) until it is deleted. The app has one window
    and quits when it closes; here the next window must not pay for scanning this one's objects."""
    closed = signal_future(window.closed)
    window.close()
    await asyncio.wait_for(closed, 30)
    window.deleteLater()
    await asyncio.sleep(0.1)
    gc.collect()


async def big_sheet(window: MainWindow, sheet: Path) -> dict[str, float]:
    figures = {}
    shown = asyncio.get_running_loop().create_future()
    window.model.modelReset.connect(lambda: shown.done() or shown.set_result(time.perf_counter()))
    t0 = time.perf_counter()
    task = asyncio.ensure_future(window.load_sheet(sheet))
    figures["first rows shown (s)"] = (await shown) - t0
    assert await task
    figures["whole sheet in (s)"] = time.perf_counter() - t0
    figures["rows"] = len(window.rows)
    view = window.view
    bar = view.verticalScrollBar()
    paints = []
    for k in range(40):
        bar.setValue(int(bar.maximum() * k / 39))
        t = time.perf_counter()
        view.viewport().repaint()
        paints.append((time.perf_counter() - t) * 1000)
    figures["paint per scroll position, median (ms)"] = median(paints)
    figures["paint per scroll position, max (ms)"] = max(paints)
    ticker = Ticker()
    ticker.start()
    await asyncio.sleep(0.1)
    started = signal_future(window.model.sorting)
    t = time.perf_counter()
    window.model.sort(window.model.headers.index("amount"), Qt.SortOrder.DescendingOrder)
    assert (await started) == (True,)
    assert (await signal_future(window.model.sorting)) == (False,)  # the new order is shown
    figures["sort 1 column, in a worker thread (s)"] = time.perf_counter() - t
    ticker.stop()
    figures["longest 10 ms timer gap while sorting (ms)"] = max(gaps_ms(ticker.ticks, t))
    bar.setValue(bar.maximum() // 2)
    t = time.perf_counter()
    view.viewport().repaint()
    figures["paint after sort (ms)"] = (time.perf_counter() - t) * 1000
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rows", type=int)
    parser.add_argument("--repeat", type=int)
    parser.add_argument("--no-big-sheet", action="store_true")
    args = parser.parse_args()
    n_run, n_big, repeat = (20_000, 200_000, 2) if args.quick else (200_000, 1_000_000, 3)
    n_run, repeat = args.rows or n_run, args.repeat or repeat
    load = Load()
    app = QApplication.instance() or QApplication([])
    app.setQuitOnLastWindowClosed(False)
    loop = qasync.QEventLoop(app)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        sheet, big, pipeline = data / "sheet.parquet", data / "big.parquet", data / "pipeline.json"
        make_sheet(sheet, n_run)
        Pipeline.from_dict(TEXT_PIPELINE).save(pipeline)
        settings = AppSettings(QSettings(str(data / "s.ini"), QSettings.Format.IniFormat), use_keyring=False)

        heads, wins, run_gaps, idle_gaps = [], [], [], []
        for k in range(repeat):
            for which in (("headless", "window") if k % 2 == 0 else ("window", "headless")):
                gc.collect()
                if which == "headless":
                    heads.append(asyncio.run(headless_run(data, sheet, pipeline, k)))
                    print(f"  pair {k + 1}: headless {heads[-1]:.2f} s", flush=True)
                else:
                    asyncio.set_event_loop(loop)
                    window = MainWindow(settings, journal_path=data / f"window{k}.sqlite")
                    window.ask = lambda title, text: True
                    window.resize(1400, 900)
                    window.show()
                    elapsed, gaps, idle, collections = loop.run_until_complete(window_run(window, sheet, pipeline))
                    loop.run_until_complete(close_window(window))
                    wins.append(elapsed)
                    run_gaps += gaps
                    idle_gaps += idle
                    print(f"  pair {k + 1}: window   {elapsed:.2f} s   (lag p99 {percentile(gaps, 0.99):.1f} ms, "
                          f"max {max(gaps):.1f} ms)", flush=True)
                    print(f"          garbage collections during it: {collections}", flush=True)
                    del window
                    gc.unfreeze()  # the run froze what survived it: this window is garbage now
                    gc.collect()

        # Run, then run again, in one window (as a user who changed nothing presses Run twice).
        asyncio.set_event_loop(loop)
        window = MainWindow(settings, journal_path=data / "again.sqlite")
        window.ask = lambda title, text: True
        window.resize(1400, 900)
        window.show()
        first = loop.run_until_complete(window_run(window, sheet, pipeline))
        again = [loop.run_until_complete(run_again(window)) for _ in range(2)]
        loop.run_until_complete(close_window(window))
        del window
        gc.unfreeze()
        gc.collect()

        figures = None
        if not args.no_big_sheet:
            make_sheet(big, n_big)
            asyncio.set_event_loop(loop)
            second = MainWindow(settings, journal_path=data / "big.sqlite")
            second.resize(1400, 900)
            second.show()
            figures = loop.run_until_complete(big_sheet(second, big))
        loop.run_until_complete(loop.shutdown_default_executor())

    base, win = median(heads), median(wins)
    print()
    print(python_line())
    print(load.line())
    print(f"3-step text pipeline, {n_run:,} rows, max concurrency 8, journal on in both; {repeat} pairs, medians")
    print(f"  headless (Session on asyncio.run):         {base:6.2f} s  {n_run / base:9,.0f} rows/s   "
          f"(each: {', '.join(f'{x:.2f}' for x in heads)})")
    print(f"  the window (MainWindow on qasync, live):   {win:6.2f} s  {n_run / win:9,.0f} rows/s   "
          f"(each: {', '.join(f'{x:.2f}' for x in wins)})")
    print(f"  window / headless: {win / base:.2f}x   (target <= 1.3x)")
    print("event-loop lag, 10 ms precise QTimer:")
    print(f"  the idle window (baseline): {describe_gaps(idle_gaps)}")
    print(f"  during the window runs:     {describe_gaps(run_gaps)}   (target p99 < 50 ms)")
    print("the same window, Run pressed three times (each run replaces the last one's results):")
    for k, (elapsed, gaps, collections) in enumerate([first[0:2] + first[3:], *again], 1):
        print(f"  run {k}: {elapsed:6.2f} s = {elapsed / base:.2f}x headless; lag {describe_gaps(gaps)}")
        print(f"         garbage collections: {collections}")
    if figures is not None:
        print(f"a sheet of {figures.pop('rows'):,} rows x 5 columns (parquet):")
        for name, value in figures.items():
            print(f"  {name}: {value:.3f}")
    sys.stdout.flush()
    os._exit(0)  # skip Qt's teardown of big windows


if __name__ == "__main__":
    main()
