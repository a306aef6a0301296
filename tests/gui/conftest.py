"""Window tests: real widgets offscreen, a real qasync loop, real files and a real test server.

Async scenarios run on a qasync QEventLoop with `run(qloop, coroutine)` (qt_async.py);
inside them we wait for Qt signals with `next_signal(signal)` (a future), never with a
nested Qt loop (qtbot.waitSignal/waitUntil hang under qasync).
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before Qt is imported

import asyncio
import gc
from pathlib import Path

import PySide6  # noqa: F401  (qasync binds to the first Qt imported: PySide6)
import pytest
import qasync
import shiboken6
from PySide6.QtCore import QSettings

from batchgrid.gui.main_window import MainWindow
from batchgrid.gui.settings import AppSettings

EXAMPLES = Path(__file__).resolve().parents[2] / "resources" / "examples"


@pytest.fixture(autouse=True)
def collect_on_the_gui_thread():
    """Qt objects must die on the GUI thread: collect a test's leftovers here, before a worker
    thread of the next test happens to trigger the garbage collector."""
    yield
    gc.collect()


@pytest.fixture
def qloop(qapp):
    """A qasync event loop on the test's QApplication; closed (threads joined) afterwards."""
    qapp.setQuitOnLastWindowClosed(False)  # closing a window in a test must not end the loop
    loop = qasync.QEventLoop(qapp)
    asyncio.set_event_loop(loop)
    try:
        yield loop
    finally:
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
        asyncio.set_event_loop(None)


@pytest.fixture
def app_settings(tmp_path):
    return AppSettings(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat), use_keyring=False)


@pytest.fixture
def window(qloop, app_settings, tmp_path):
    """The main window with its settings and journal in tmp_path. Questions are answered Yes
    and recorded in `window.questions`. Deleted (on this thread) after the test."""
    w = MainWindow(app_settings, journal_path=tmp_path / "journal.sqlite")
    w.questions = []

    def answer_yes(title, text):
        w.questions.append(title)
        return True

    w.ask = answer_yes
    w.show()
    yield w
    qloop.run_until_complete(w.session.close())
    qloop.run_until_complete(w.runner.wait())
    w.close()  # closing ends the session's tasks on the loop before the window goes
    qloop.run_until_complete(asyncio.gather(*w._tasks, return_exceptions=True))
    shiboken6.delete(w)
