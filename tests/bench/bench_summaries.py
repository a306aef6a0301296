"""The window's event-loop lag during a 100,000-row run with the column summary panel open,
against the same run with it closed (issue 12: p99 < 50 ms with the summaries open).

    QT_QPA_PLATFORM=offscreen .venv/bin/python tests/bench/bench_summaries.py
    QT_QPA_PLATFORM=offscreen .venv/bin/python tests/bench/bench_summaries.py --rows 20000   # quicker

A fast text pipeline (benchkit.TEXT_PIPELINE: trim, upper case, template) over a parquet sheet,
so rows finish quickly and the store changes thousands of times a second. Each situation gets a
fresh window (the run chart installed too) and runs the whole sheet once:
  closed   the summary panel hidden (the baseline);
  open     the panel open on the template's output `line` (100,000 distinct texts: the costliest
           column, top values over every distinct text and a histogram of their lengths);
  status   the panel open on the status column (few values, the common case).
The lag is the gaps between ticks of a 10 ms precise QTimer on the window's qasync loop:
p50, p99 and max; the ratio is p99 open / p99 closed. Also: the run's time and the panel's
refreshes (coalesced: a few a second, never one per row).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "gui"))  # qt_async

import PySide6  # noqa: E402,F401  (before qasync)
import qasync  # noqa: E402
from batchgrid.gui.column_summary import install_column_summaries  # noqa: E402
from batchgrid.gui.main_window import MainWindow  # noqa: E402
from batchgrid.gui.run_chart import install_run_chart  # noqa: E402
from batchgrid.gui.settings import AppSettings  # noqa: E402
from benchkit import TEXT_PIPELINE, Ticker, make_sheet, percentile, python_line  # noqa: E402
from PySide6.QtCore import QSettings  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402
from qt_async import run_to_end  # noqa: E402


async def one_run(tmp: Path, sheet: Path, pipeline: Path, situation: str) -> dict:
    settings = AppSettings(QSettings(str(tmp / f"{situation}.ini"), QSettings.Format.IniFormat), use_keyring=False)
    window = MainWindow(settings, journal_path=tmp / f"{situation}.sqlite")
    window.ask = lambda title, text: True
    panel = install_column_summaries(window)
    install_run_chart(window)
    window.resize(1400, 900)
    window.show()
    assert await window.load_pipeline(pipeline)
    assert await window.load_sheet(sheet), window.last_message
    if situation != "closed":
        window.act_column_summary.setChecked(True)
        panel.show_column(window.model.headers.index("line") if situation == "open" else window.model.status_column())
        if panel.building is not None:
            await panel.building
    await asyncio.sleep(0.5)
    before = panel.refreshes
    ticker = Ticker()
    ticker.start()
    t0 = time.perf_counter()
    reason, message = await run_to_end(window)
    seconds = time.perf_counter() - t0
    await asyncio.sleep(0.3)
    ticker.stop()
    assert reason == "finished", (reason, message)
    gaps = ticker.gaps(t0, t0 + seconds)
    result = {"situation": situation, "seconds": seconds, "rows_per_s": len(window.rows) / seconds,
              "p50": percentile(gaps, 0.5), "p99": percentile(gaps, 0.99), "max": max(gaps),
              "refreshes": panel.refreshes - before,
              "top": panel.facts.top[:2] if panel.facts is not None and situation != "closed" else []}
    await window.session.close()
    await window.runner.wait()
    window.close()
    window.deleteLater()
    return result


async def main(rows: int) -> None:
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        sheet = tmp / "sheet.parquet"
        make_sheet(sheet, rows)
        pipeline = tmp / "text.json"
        pipeline.write_text(json.dumps(TEXT_PIPELINE))
        print(python_line())
        print(f"{rows:,} rows, {TEXT_PIPELINE['settings']['max_concurrency']} at once, a text pipeline of "
              f"{len(TEXT_PIPELINE['steps'])} steps; lag = gaps of a 10 ms timer during the run (ms)")
        results = [await one_run(tmp, sheet, pipeline, s) for s in ("closed", "open", "status")]
        base = results[0]["p99"]
        print(f"{'panel':8} {'run s':>7} {'rows/s':>8} {'p50':>6} {'p99':>6} {'max':>6} {'p99 / closed':>13} "
              f"{'refreshes':>9}")
        for r in results:
            print(f"{r['situation']:8} {r['seconds']:7.2f} {r['rows_per_s']:8,.0f} {r['p50']:6.1f} {r['p99']:6.1f} "
                  f"{r['max']:6.1f} {r['p99'] / base:13.2f} {r['refreshes']:9}")
        worst = max(r["p99"] for r in results)
        print(f"target p99 < 50 ms with the panel open: {'met' if worst < 50 else 'NOT met'} (worst p99 {worst:.1f} ms)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    app = QApplication.instance() or QApplication([])
    app.setQuitOnLastWindowClosed(False)
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    with loop:
        loop.run_until_complete(main(args.rows))
