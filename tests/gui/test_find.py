"""Find in the results (Ctrl+F): the shown cells' text, case-insensitive, in the table's order;
next / previous with a count; Esc closes; searched in a worker thread."""

from __future__ import annotations

import threading

import pytest
from batchgrid.core.run import events as ev
from batchgrid.core.table import Table
from batchgrid.gui.find_bar import find_cells
from batchgrid.gui.results_model import ResultsModel
from batchgrid.gui.results_pane import ResultsPane
from batchgrid.gui.results_view import ResultsView
from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence

NAMES = ["Anna", "bob", "Hanna", "Carl", "joHANNes", "Dora"]


@pytest.fixture
def pane(qtbot):
    model = ResultsModel()
    model.set_table(Table(["name", "city"], [NAMES, ["Oslo", "Annecy", "Rome", "Oslo", "Lima", "Oslo"]]), ["out"])
    model.on_event(ev.RowCancelled(3, ev.RowResult(3, ev.CANCELLED, {})))
    model.flush()
    widget = ResultsPane(ResultsView(model))
    qtbot.addWidget(widget)
    widget.resize(800, 300)
    widget.show()
    qtbot.waitExposed(widget)
    return widget


def current(pane) -> tuple[int, str]:
    index = pane.view.currentIndex()
    return index.row(), pane.view.results_model().headers[index.column()]


def find(qtbot, pane, text: str) -> None:
    """Ctrl+F in the table, type `text`, and wait for the count."""
    pane.view.setFocus()
    qtbot.keyClick(pane.view, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
    bar = pane.find_bar
    assert bar.isVisible() and bar.edit.hasFocus()
    bar.edit.clear()
    qtbot.keyClicks(bar.edit, text)
    qtbot.waitUntil(lambda: " of " in bar.count.text() or bar.count.text() == "No matches")


def test_ctrl_f_finds_case_insensitively_then_enter_and_shift_enter_move_through_the_matches(qtbot, pane):
    bar = pane.find_bar
    find(qtbot, pane, "ANN")  # Anna, Annecy, Hanna, joHANNes
    assert bar.count.text() == "1 of 4" and current(pane) == (0, "name")
    qtbot.keyClick(bar.edit, Qt.Key.Key_Return)
    assert bar.count.text() == "2 of 4" and current(pane) == (1, "city")  # Annecy: row by row, then by column
    qtbot.keyClick(bar.edit, Qt.Key.Key_Return)
    qtbot.keyClick(bar.edit, Qt.Key.Key_Return)
    assert bar.count.text() == "4 of 4" and current(pane) == (4, "name")
    qtbot.keyClick(bar.edit, Qt.Key.Key_Return)  # wraps around
    assert bar.count.text() == "1 of 4"
    qtbot.keyClick(bar.edit, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    assert bar.count.text() == "4 of 4"
    qtbot.mouseClick(bar.previous_button, Qt.MouseButton.LeftButton)
    assert bar.count.text() == "3 of 4" and current(pane) == (2, "name")
    qtbot.keyClick(pane.view, Qt.Key.Key_F3)  # F3 / Shift+F3 from the table
    assert bar.count.text() == "4 of 4"


def test_esc_closes_the_bar_and_does_not_reach_the_windows_stop(qtbot, pane):
    stopped = []
    stop = QAction("Stop", pane)
    stop.setShortcut(QKeySequence("Esc"))
    stop.triggered.connect(lambda: stopped.append(1))
    pane.addAction(stop)  # as the window's Stop (Esc) is
    find(qtbot, pane, "oslo")
    qtbot.keyClick(pane.find_bar.edit, Qt.Key.Key_Escape)
    assert not pane.find_bar.isVisible() and stopped == []
    assert pane.view.hasFocus()


def test_find_searches_the_rows_and_columns_shown_in_their_order_and_the_words_shown(qtbot, pane):
    view, bar = pane.view, pane.find_bar
    model = view.results_model()
    find(qtbot, pane, "stopped")  # the status cell says "stopped" (the engine's "cancelled")
    assert bar.count.text() == "1 of 1" and current(pane) == (3, "status")
    find(qtbot, pane, "cancelled")
    assert bar.count.text() == "No matches"

    model.set_sort_keys([(0, Qt.SortOrder.DescendingOrder)])  # joHANNes, Hanna, Dora, Carl, bob, Anna
    model.set_column_filter(1, "o")  # not Annecy's row... Annecy has no "o": Oslo, Rome, Oslo, Oslo
    view.setColumnHidden(1, True)  # and not the city column
    view.setCurrentIndex(model.index(0, 0))  # from the top (a search starts at the selected cell)
    find(qtbot, pane, "a")
    shown = [model.data(model.index(r, 0)) for r in range(model.rowCount())]
    assert shown == ["Hanna", "Dora", "Carl", "Anna"]
    assert bar.count.text() == "1 of 4" and current(pane) == (0, "name")


def test_the_search_runs_off_the_windows_thread(qtbot, pane, monkeypatch):
    import batchgrid.gui.find_bar as find_bar

    threads = []

    def find_cells_recorded(*args):
        threads.append(threading.current_thread())
        return find_cells(*args)

    monkeypatch.setattr(find_bar, "find_cells", find_cells_recorded)
    model = pane.view.results_model()
    n = 50_000
    model.set_table(Table(["text"], [[f"row {i} of many" for i in range(n)]]), ["out"])
    bar = pane.find_bar
    bar.show()
    bar.edit.setText("9")
    bar.search(0)
    assert bar.count.text() == "Searching…"  # the window goes on; the answer comes later
    expected = sum("9" in str(i) for i in range(n))
    qtbot.waitUntil(lambda: bar.count.text() == f"1 of {expected:,}", timeout=30_000)
    assert threads and threads[0] is not threading.main_thread()
    assert current(pane) == (9, "text")


def test_find_cells_orders_matches_by_position_then_column():
    model = ResultsModel()
    model.set_table(Table(["a", "b"], [["x", "y", "xx"], ["x", "x", "z"]]), [])
    model.set_sort_keys([(0, Qt.SortOrder.DescendingOrder)])  # y, xx, x
    assert find_cells(model.store, model.order, model.position, [1, 0], "X") == [(1, 1), (2, 0), (0, 1), (0, 0)]
    assert find_cells(model.store, None, None, [0], "") == []
