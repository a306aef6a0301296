"""The README's window pictures, light and dark: the bundled offline example after a run, an
error row selected and shown in the inspector.

    QT_QPA_PLATFORM=offscreen python tools/screenshots.py [FOLDER]      (default: docs/)

Writes window-light.png and window-dark.png (1280×800). Each is refused (exit 1) if a widget's
minimum size is larger than the picture: the window must fit the screens it is shown on.
No key or server is needed (the example runs offline).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import asyncio

import PySide6  # noqa: F401  (before qasync)
import qasync
import shiboken6
from batchgrid.core.run import events as ev
from batchgrid.gui import style
from batchgrid.gui.examples import offline_example
from batchgrid.gui.main_window import MainWindow
from batchgrid.gui.settings import AppSettings
from PySide6.QtCore import QSettings, QSize
from PySide6.QtWidgets import QApplication, QWidget, QWidgetItem

ROOT = Path(__file__).resolve().parents[1]
SIZE = QSize(1280, 800)
NAMES = {"light": "window-light.png", "dark": "window-dark.png"}


def oversized(window: QWidget, size: QSize) -> list[str]:
    """Shown widgets whose minimum size (as a layout sees it) is larger than `size`."""
    found = []
    for widget in [window, *window.findChildren(QWidget)]:
        least = QWidgetItem(widget).minimumSize()
        if widget.isVisibleTo(window) and (least.width() > size.width() or least.height() > size.height()):
            found.append(f"{type(widget).__name__} {widget.objectName()!r}: {least.width()}×{least.height()}")
    return found


async def _after_a_run(window: MainWindow) -> None:
    loaded = asyncio.get_running_loop().create_future()
    window.sheetLoaded.connect(lambda: loaded.done() or loaded.set_result(True))
    example = offline_example()
    if example is None:
        raise SystemExit("no bundled example in this installation")
    window.open_example(example)
    await loaded
    finished = asyncio.get_running_loop().create_future()
    window.runFinished.connect(lambda *_: finished.done() or finished.set_result(True))
    assert await window.begin_run("all")
    await finished
    window.cards.select_step(window.doc.pipeline.steps[2])  # the step the error rows failed in
    error_row = window.model.status.index(ev.ERROR)
    column = window.model.error_column()
    window.view.setCurrentIndex(window.model.index(error_row, column))
    window.view.scrollTo(window.model.index(error_row, column), window.view.ScrollHint.PositionAtCenter)
    await asyncio.sleep(0.2)  # let the loop lay out and paint (never processEvents() inside a task)


def shoot(folder: Path, scheme: str) -> Path:
    """One picture of the window in `scheme` ("light" or "dark"); returns its path."""
    app = QApplication.instance() or QApplication([])
    app.setStyle("Fusion")
    app.setQuitOnLastWindowClosed(False)
    style.apply_scheme(scheme)
    with tempfile.TemporaryDirectory() as tmp:
        settings = AppSettings(QSettings(str(Path(tmp) / "settings.ini"), QSettings.Format.IniFormat),
                               use_keyring=False)
        loop = qasync.QEventLoop(app)
        asyncio.set_event_loop(loop)
        window = MainWindow(settings, journal_path=Path(tmp) / "journal.sqlite")
        window.ask = lambda title, text: True
        window.resize(SIZE)
        window.show()
        try:
            loop.run_until_complete(asyncio.wait_for(_after_a_run(window), 120))
            too_big = oversized(window, SIZE)
            if too_big:
                raise SystemExit(f"wider or taller than {SIZE.width()}×{SIZE.height()}: {', '.join(too_big)}")
            path = folder / NAMES[scheme]
            window.grab().save(str(path))
            return path
        finally:
            loop.run_until_complete(window.session.close())
            window.close()
            shiboken6.delete(window)
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()
            asyncio.set_event_loop(None)


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs"
    target.mkdir(parents=True, exist_ok=True)
    for scheme in NAMES:
        print(shoot(target, scheme))
