"""Screenshots of the window as a user sees it: empty, a sheet with a pipeline, a run in
progress, a finished run with errors.

    QT_QPA_PLATFORM=offscreen python tests/gui/screenshots.py [FOLDER]   (default: docs/screenshots)

The model step talks to the local test server (tests/fake_openai.py), so no key is needed.
test_screenshots.py runs the same function into a temporary folder.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import asyncio  # noqa: E402

import PySide6  # noqa: E402,F401  (before qasync)
from PySide6.QtCore import QSettings  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

import qasync  # noqa: E402
import shiboken6  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from fake_openai import FakeOpenAI  # noqa: E402

from batchgrid.core.run import events as ev  # noqa: E402
from batchgrid.gui.examples import offline_example  # noqa: E402
from batchgrid.gui.main_window import MainWindow  # noqa: E402
from batchgrid.gui.settings import AppSettings  # noqa: E402

SIZE = (1440, 900)
NAMES = ("1-empty.png", "2-sheet-and-pipeline.png", "3-run-in-progress.png", "4-finished-with-errors.png")


async def _signal(signal):
    future = asyncio.get_running_loop().create_future()
    signal.connect(lambda *args: future.done() or future.set_result(args))
    return await future


async def _shoot(window: MainWindow, server: FakeOpenAI, folder: Path) -> list[Path]:
    saved = []

    async def save(name: str) -> None:
        # Let the loop lay out and paint first; never processEvents() inside a task under qasync.
        await asyncio.sleep(0.1)
        path = folder / name
        window.grab().save(str(path))
        saved.append(path)

    await save(NAMES[0])

    example = offline_example()
    loading = _signal(window.sheetLoaded)
    window.open_example(example)
    await loading
    steps = window.doc.pipeline.steps
    window.cards.select_step(steps[-1])
    window.add_step("llm")
    llm = window.doc.pipeline.steps[-1]
    window.doc.set_provider(llm, "provider", "local", window.settings.pipeline_profile("local"))
    window.doc.set_param(llm, "prompt", "In five words, what is the customer's mood? {review_clean}")
    window.doc.set_param(llm, "output", "mood")
    window.doc.set_setting("use_cache", False)
    window.run_bar.concurrency.setValue(6)
    window.cards.select_step(llm)
    window.view.setCurrentIndex(window.model.index(1, 0))
    await asyncio.sleep(0.6)  # the projected cost follows edits after a short pause
    await save(NAMES[1])

    server.configure(latency=0.05, stream_delay=0.03, script={"refund": [400] * 1000})
    finished = asyncio.ensure_future(_signal(window.runFinished))
    window.run_bar.run_button.click()
    while sum(1 for s in window.model.status if s == ev.DONE) < 40:
        await asyncio.sleep(0.02)
    running = window.model.status.index(ev.RUNNING)
    window.view.setCurrentIndex(window.model.index(running, window.model.status_column()))
    window.view.scrollTo(window.model.index(running, window.model.status_column()),
                         window.view.ScrollHint.PositionAtCenter)
    await save(NAMES[2])

    server.configure(latency=0.0, stream_delay=0.0)
    await finished
    error_row = window.model.status.index(ev.ERROR)
    window.view.setCurrentIndex(window.model.index(error_row, window.model.error_column()))
    window.view.scrollTo(window.model.index(error_row, window.model.error_column()),
                         window.view.ScrollHint.PositionAtCenter)
    await save(NAMES[3])
    return saved


def save_screenshots(folder: Path) -> list[Path]:
    """Write the four screenshots into `folder`; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    app = QApplication.instance() or QApplication([])
    app.setStyle("Fusion")
    app.setQuitOnLastWindowClosed(False)
    with tempfile.TemporaryDirectory() as tmp, FakeOpenAI() as server:
        settings = AppSettings(QSettings(str(Path(tmp) / "settings.ini"), QSettings.Format.IniFormat),
                               use_keyring=False)
        settings.set_providers([{"name": "local", "preset": "vllm", "base_url": server.base_url,
                                 "model": "gpt-4o-mini"}])
        loop = qasync.QEventLoop(app)
        asyncio.set_event_loop(loop)
        window = MainWindow(settings, journal_path=Path(tmp) / "journal.sqlite")
        window.form_panel.app_providers = ["local"]
        window.ask = lambda title, text: True
        window.resize(*SIZE)
        window.show()
        try:
            return loop.run_until_complete(asyncio.wait_for(_shoot(window, server, folder), 120))
        finally:
            loop.run_until_complete(window.session.close())  # the run ended, the journal closed
            window.close()
            shiboken6.delete(window)
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()
            asyncio.set_event_loop(None)


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "screenshots"
    for path in save_screenshots(target):
        print(path)
