"""The results table speaks Excel: right-click menus on cells and headers, filters by any column
with a "showing N of M rows" count and Clear filters, zoom, hidden and frozen columns, sorting
on several columns and back to the sheet's order with the arrow pointing the conventional way,
"not run" with an icon and "stopped" named alike everywhere (issue 12)."""

from __future__ import annotations

import pytest
from batchgrid.core.run import events as ev
from batchgrid.core.run.results import NOT_RUN
from batchgrid.core.table import Table
from batchgrid.gui.icons import status_icon
from batchgrid.gui.inspector import RowInspector
from batchgrid.gui.results_model import ResultsModel
from batchgrid.gui.results_pane import ResultsPane
from batchgrid.gui.results_view import FILTERS, ResultsView, StatusFilter
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QColor, QContextMenuEvent, QWheelEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QMenu

CITIES = ["Paris", "Oslo", "Lima", "Oslo", "Paris", "Lima", "Oslo", "Paris"]
SCORES = [3, 1, 2, 3, None, 1, 2, 3]


@pytest.fixture
def pane(qtbot):
    """Eight rows (id, city, score) and an output column; rows 0-2 done, 3 failed, 4 stopped."""
    model = ResultsModel()
    model.set_table(Table(["id", "city", "score"], [list(range(8)), CITIES, SCORES]), ["summary"])
    model.run_starting([None] * 8, range(5))
    for i in range(3):
        model.on_event(ev.RowDone(i, ev.RowResult(i, ev.DONE, {"summary": f"s{i}"})))
    model.on_event(ev.RowFailed(3, ev.RowResult(3, ev.ERROR, {}, "boom", "StepError", "1. Ask", 1, 0.1)))
    model.on_event(ev.RowCancelled(4, ev.RowResult(4, ev.CANCELLED, {})))
    model.run_ended()
    view = ResultsView(model)
    widget = ResultsPane(view)
    qtbot.addWidget(widget)
    widget.resize(900, 400)
    widget.show()
    qtbot.waitExposed(widget)
    return widget


def shown(view: ResultsView, column: str) -> list:
    model = view.results_model()
    c = model.headers.index(column)
    return [model.data(model.index(r, c)) for r in range(model.rowCount())]


def right_click_cell(view: ResultsView, row: int, column: int) -> QMenu:
    viewport = view.viewport()
    pos = view.visualRect(view.model().index(row, column)).center()
    QApplication.sendEvent(viewport, QContextMenuEvent(QContextMenuEvent.Reason.Mouse, pos, viewport.mapToGlobal(pos)))
    menu = QApplication.activePopupWidget()
    assert isinstance(menu, QMenu) and menu is view.row_menu
    return menu


def right_click_header(view: ResultsView, column: int) -> QMenu:
    header = view.horizontalHeader()
    pos = QPoint(header.sectionViewportPosition(column) + 10, header.height() // 2)
    header.customContextMenuRequested.emit(pos)  # what Qt sends for a right-click on a header
    menu = QApplication.activePopupWidget()
    assert isinstance(menu, QMenu) and menu is view.header_menu
    return menu


def choose(menu: QMenu, text: str) -> None:
    action = next(a for a in menu.actions() if a.text() == text)
    assert action.isEnabled(), text
    action.trigger()
    menu.close()


def entries(menu: QMenu) -> list[str]:
    return [a.text() if not a.isSeparator() else "|" for a in menu.actions()]


def click_header(qtbot, view: ResultsView, column: int, shift: bool = False) -> None:
    header = view.horizontalHeader()
    pos = QPoint(header.sectionViewportPosition(column) + 10, header.height() // 2)
    modifier = Qt.KeyboardModifier.ShiftModifier if shift else Qt.KeyboardModifier.NoModifier
    qtbot.mouseClick(header.viewport(), Qt.MouseButton.LeftButton, modifier, pos)


# ---- right-click menus ---------------------------------------------------------------------------

def test_a_cells_menu_has_copy_filter_then_input_row_then_run_actions(qtbot, pane):
    view = pane.view
    view.can_choose_header = lambda: True
    view.can_run = lambda: True
    menu = right_click_cell(view, 1, 1)
    assert entries(menu) == ["Copy", "Copy with headers", "Filter by this value", "|", "Use as header",
                             "No header row", "|", "Retry this row", "Run from here", "Open inspector"]
    assert view.currentIndex().row() == 1  # the right-click selected the cell, as in Excel
    menu.close()

    view.can_run = lambda: False  # during a run: the row actions are off
    menu = right_click_cell(view, 1, 1)
    assert {a.text(): a.isEnabled() for a in menu.actions()}["Retry this row"] is False
    menu.close()


def test_copy_and_copy_with_headers_from_the_cells_menu(qtbot, pane, qapp):
    view = pane.view
    choose(right_click_cell(view, 2, 1), "Copy")
    assert qapp.clipboard().text() == "Lima\r\n"
    choose(right_click_cell(view, 2, 1), "Copy with headers")
    assert qapp.clipboard().text() == "city\r\nLima\r\n"


def test_retry_this_row_run_from_here_and_open_inspector_say_which_rows(qtbot, pane):
    view = pane.view
    view.can_run = lambda: True
    view.results_model().set_sort_keys([(0, Qt.SortOrder.DescendingOrder)])  # ids 7, 6, ..., 0 shown
    with qtbot.waitSignal(view.runRows) as retry:
        choose(right_click_cell(view, 4, 0), "Retry this row")  # id 3
    assert retry.args == [[3]]
    with qtbot.waitSignal(view.runRows) as run_from:
        choose(right_click_cell(view, 5, 0), "Run from here")  # ids 2, 1, 0: the rows shown below
    assert run_from.args == [[2, 1, 0]]
    with qtbot.waitSignal(view.inspectRow) as inspect, qtbot.waitSignal(view.rowSelected) as selected:
        choose(right_click_cell(view, 7, 2), "Open inspector")
    assert inspect.args == [0] and selected.args == [0]


def test_a_headers_menu_sorts_hides_freezes_fits_and_offers_summary_only_when_a_panel_listens(qtbot, pane):
    view = pane.view
    menu = right_click_header(view, 1)
    assert entries(menu) == ["Sort ascending", "Sort descending", "Sheet order", "|", "Filter…",
                             "Clear this column's filter", "|", "Hide column", "Freeze columns up to here", "Autofit"]
    menu.close()
    asked = []
    view.summaryRequested.connect(asked.append)  # the column summary panel connects this
    menu = right_click_header(view, 1)
    assert entries(menu)[-1] == "Summary"
    choose(menu, "Summary")
    assert asked == [1]

    choose(right_click_header(view, 2), "Sort descending")
    assert shown(view, "score") == ["3", "3", "3", "2", "2", "1", "1", ""]  # blanks last either way
    choose(right_click_header(view, 2), "Sheet order")
    assert shown(view, "id") == [str(i) for i in range(8)]

    view.setColumnWidth(1, 300)
    choose(right_click_header(view, 1), "Autofit")
    assert 60 <= view.columnWidth(1) < 300


def test_hide_a_column_then_show_hidden_columns(qtbot, pane):
    view = pane.view
    choose(right_click_header(view, 1), "Hide column")
    assert view.isColumnHidden(1) and view.hidden_columns() == [1]
    menu = right_click_header(view, 0)
    assert "Show hidden columns (1)" in entries(menu)
    choose(menu, "Show hidden columns (1)")
    assert not view.isColumnHidden(1)


def test_frozen_columns_stay_in_view_while_the_others_scroll(qtbot, pane):
    view = pane.view
    pane.resize(700, 150)  # a few rows in view: there is something to scroll up and down
    for c in range(view.model().columnCount()):
        view.setColumnWidth(c, 160)
    choose(right_click_header(view, 1), "Freeze columns up to here")
    frozen = view.frozen.table
    assert frozen is not None and frozen.isVisible()
    assert [c for c in range(view.model().columnCount()) if not frozen.isColumnHidden(c)] == [0, 1]
    assert frozen.width() == 320 and frozen.x() == view.verticalHeader().width() + view.frameWidth()
    view.horizontalScrollBar().setValue(view.horizontalScrollBar().maximum())
    qtbot.waitUntil(lambda: view.columnViewportPosition(0) < 0)  # the table scrolled sideways...
    assert frozen.columnViewportPosition(0) == 0 and frozen.columnViewportPosition(1) == 160  # ...these did not
    view.scrollTo(view.model().index(0, 2))  # a cell right of them is brought out from under them
    assert view.visualRect(view.model().index(0, 2)).left() >= frozen.width()
    qtbot.waitUntil(lambda: view.verticalScrollBar().maximum() >= 3)
    view.verticalScrollBar().setValue(3)
    assert frozen.verticalScrollBar().value() == 3  # and they scroll up and down with the table
    assert frozen.rowViewportPosition(3) == view.rowViewportPosition(3)
    frozen_header = frozen.horizontalHeader()  # a right-click on a frozen header is about that column
    frozen_header.customContextMenuRequested.emit(QPoint(frozen_header.sectionViewportPosition(0) + 5, 5))
    choose(view.header_menu, "Sort descending")
    assert view.results_model().sort_keys == [(0, Qt.SortOrder.DescendingOrder)]
    qtbot.mouseClick(frozen_header.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(170, 5))  # city, frozen
    assert view.results_model().sort_keys == [(1, Qt.SortOrder.AscendingOrder)]
    menu = right_click_header(view, 0)
    choose(menu, "Unfreeze columns")
    assert not frozen.isVisible()


# ---- filters ---------------------------------------------------------------------------------------

def test_filter_by_this_value_combines_with_the_status_filter_and_clear_filters_shows_every_row(qtbot, pane):
    view, bar = pane.view, pane.filter_bar
    model = view.results_model()
    assert not bar.isVisible()  # nothing filtered: no filter line
    choose(right_click_cell(view, 1, 1), "Filter by this value")  # Oslo
    assert shown(view, "city") == ["Oslo", "Oslo", "Oslo"] and shown(view, "id") == ["1", "3", "6"]
    assert bar.isVisible() and bar.count.text() == "Showing 3 of 8 rows"
    assert bar.chips[1].label.text() == "city = “Oslo”"

    status = StatusFilter(model)
    qtbot.addWidget(status)
    status.setCurrentIndex(status.findData(ev.DONE))  # and done: row 1 only
    assert shown(view, "id") == ["1"] and bar.count.text() == "Showing 1 of 8 rows · status done"

    qtbot.mouseClick(bar.clear_button, Qt.MouseButton.LeftButton)
    assert model.rowCount() == 8 and not bar.isVisible()
    assert status.currentText() == "All rows"  # the status box follows


def test_a_column_filter_from_the_headers_menu_filters_as_you_type(qtbot, pane):
    view, bar = pane.view, pane.filter_bar
    choose(right_click_header(view, 1), "Filter…")
    chip = bar.chips[1]
    assert bar.isVisible() and chip.edit.hasFocus()
    qtbot.keyClicks(chip.edit, "LI")  # case-insensitive, contains
    qtbot.waitUntil(lambda: view.model().rowCount() == 2)
    assert shown(view, "city") == ["Lima", "Lima"] and bar.count.text() == "Showing 2 of 8 rows"
    qtbot.mouseClick(chip.close, Qt.MouseButton.LeftButton)
    assert view.model().rowCount() == 8 and not bar.isVisible()


def test_ctrl_shift_l_opens_the_current_columns_filter(qtbot, pane):
    view = pane.view
    view.setFocus()
    view.setCurrentIndex(view.model().index(0, 2))
    qtbot.keyClick(view, Qt.Key.Key_L, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert 2 in pane.filter_bar.chips and pane.filter_bar.chips[2].edit.hasFocus()


def test_filtering_on_an_output_column_follows_rows_as_a_run_fills_them(qtbot, pane):
    model = pane.view.results_model()
    model.set_column_filter(model.headers.index("summary"), "s")
    assert shown(pane.view, "id") == ["0", "1", "2"]
    model.on_event(ev.RowDone(6, ev.RowResult(6, ev.DONE, {"summary": "s6"})))
    model._last_refilter = 0.0
    model.flush()
    assert shown(pane.view, "id") == ["0", "1", "2", "6"]


def test_a_big_tables_column_filter_runs_in_a_worker_thread(qloop, monkeypatch):
    import batchgrid.gui.results_model as results_model
    from qt_async import next_signal, run

    monkeypatch.setattr(results_model, "BACKGROUND_SORT_ROWS", 100)
    model = ResultsModel()
    model.set_table(Table(["word"], [[("good", "bad", "fine")[i % 3] for i in range(3000)]]), [])

    async def scenario():
        started = next_signal(model.sorting)
        model.set_column_filter(0, "OO")
        assert model.rowCount() == 3000  # not yet: a worker thread filters, the window goes on
        assert (await started) == (True,)
        assert (await next_signal(model.sorting)) == (False,)

    run(qloop, scenario())
    assert model.rowCount() == 1000 and {model.data(model.index(r, 0)) for r in range(1000)} == {"good"}


# ---- sorting -----------------------------------------------------------------------------------------

def test_header_clicks_sort_ascending_descending_then_sheet_order_and_shift_click_adds_a_key(qtbot, pane):
    view = pane.view
    model = view.results_model()
    click_header(qtbot, view, 1)
    assert shown(view, "city") == ["Lima", "Lima", "Oslo", "Oslo", "Oslo", "Paris", "Paris", "Paris"]
    assert shown(view, "id") == ["2", "5", "1", "3", "6", "0", "4", "7"]  # a stable sort: the sheet's order within
    click_header(qtbot, view, 2, shift=True)  # then by score, ascending
    assert shown(view, "id") == ["5", "2", "1", "6", "3", "0", "7", "4"]
    click_header(qtbot, view, 2, shift=True)  # score descending
    assert shown(view, "id") == ["2", "5", "3", "6", "1", "0", "7", "4"]
    assert model.sort_keys == [(1, Qt.SortOrder.AscendingOrder), (2, Qt.SortOrder.DescendingOrder)]
    click_header(qtbot, view, 2, shift=True)  # a third Shift+click drops the key
    assert model.sort_keys == [(1, Qt.SortOrder.AscendingOrder)]
    click_header(qtbot, view, 1)
    assert shown(view, "city")[0] == "Paris"  # descending
    click_header(qtbot, view, 1)  # the third click: the sheet's order
    assert model.sort_keys == [] and shown(view, "id") == [str(i) for i in range(8)]


def arrow_widths(view: ResultsView, column: int) -> list[int]:
    """How wide the sort arrow's ink is on each pixel row of the header section, top to bottom."""
    header = view.horizontalHeader()
    image = header.grab().toImage()
    x0 = header.sectionViewportPosition(column)
    background = QColor(image.pixel(x0 + 8, 3))
    widths = []
    for y in range(2, image.height() - 2):  # not the borders
        ink = 0
        for x in range(x0 + header.sectionSize(column) - 24, x0 + header.sectionSize(column) - 2):
            colour = QColor(image.pixel(x, y))
            if abs(colour.lightness() - background.lightness()) > 60:
                ink += 1
        if ink:
            widths.append(ink)
    return widths


def test_the_sort_arrow_points_up_for_ascending_as_in_excel_and_libreoffice(qtbot, pane):
    view = pane.view
    view.setColumnWidth(1, 140)
    model = view.results_model()
    model.set_sort_keys([(1, Qt.SortOrder.AscendingOrder)])
    view.horizontalHeader().repaint()
    up = arrow_widths(view, 1)
    assert len(up) >= 2 and up[-1] > up[0]  # ▲: widest at the bottom
    model.set_sort_keys([(1, Qt.SortOrder.DescendingOrder)])
    down = arrow_widths(view, 1)
    assert len(down) >= 2 and down[0] > down[-1]  # ▼
    model.set_sort_keys([(1, Qt.SortOrder.AscendingOrder), (0, Qt.SortOrder.AscendingOrder)])
    assert view.horizontalHeader().keys == model.sort_keys  # both drawn, ranked ¹ ²


# ---- zoom ----------------------------------------------------------------------------------------------

def test_ctrl_plus_minus_zero_and_ctrl_wheel_zoom_the_tables_font_and_rows(qtbot, pane):
    view = pane.view
    size, height = view.font().pointSizeF(), view.verticalHeader().defaultSectionSize()
    view.setFocus()
    qtbot.keyClick(view, Qt.Key.Key_Plus, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClick(view, Qt.Key.Key_Equal, Qt.KeyboardModifier.ControlModifier)  # Ctrl+= as well
    assert view.zoom == 1.25 and view.font().pointSizeF() == pytest.approx(size * 1.25)
    assert view.verticalHeader().defaultSectionSize() > height
    assert view.horizontalHeader().font().pointSizeF() == pytest.approx(size * 1.25)
    qtbot.keyClick(view, Qt.Key.Key_Minus, Qt.KeyboardModifier.ControlModifier)
    assert view.zoom == 1.1
    qtbot.keyClick(view, Qt.Key.Key_0, Qt.KeyboardModifier.ControlModifier)
    assert view.zoom == 1.0 and view.font().pointSizeF() == pytest.approx(size)
    assert view.verticalHeader().defaultSectionSize() == height

    def wheel(delta: int) -> None:
        pos = view.viewport().rect().center()
        QApplication.sendEvent(view.viewport(), QWheelEvent(
            pos, view.viewport().mapToGlobal(pos), QPoint(), QPoint(0, delta), Qt.MouseButton.NoButton,
            Qt.KeyboardModifier.ControlModifier, Qt.ScrollPhase.NoScrollPhase, False))

    wheel(-120)
    assert view.zoom == 0.9
    wheel(240)
    assert view.zoom == 1.1


# ---- statuses --------------------------------------------------------------------------------------------

def test_not_run_has_an_icon_and_stopped_is_named_alike_in_the_filter_the_cells_and_the_inspector(qtbot, pane):
    view = pane.view
    model = view.results_model()
    status = model.headers.index("status")
    assert not status_icon(NOT_RUN).isNull()
    assert not model.data(model.index(7, status), Qt.ItemDataRole.DecorationRole).isNull()  # row 7: not run
    assert shown(view, "status")[3:6] == ["error", "stopped", "not run"]
    assert dict((v, k) for k, v in FILTERS)[ev.CANCELLED] == "Stopped"
    model.set_status_filter(ev.CANCELLED)
    assert shown(view, "status") == ["stopped"]
    inspector = RowInspector()
    qtbot.addWidget(inspector)
    inspector.show_row(4, {"id": 4}, model.results[4], model.status[4], [])
    assert "Row 5 · stopped" in inspector.toPlainText()


# ---- in the window ---------------------------------------------------------------------------------------

def test_in_the_window_the_pane_sits_beside_the_inspector_and_its_menus_reach_the_window(qloop, window, tmp_path,
                                                                                         monkeypatch):
    from batchgrid.gui.column_summary import install_column_summaries
    from batchgrid.gui.results_pane import install_table_conventions
    from qt_async import run

    if not hasattr(window, "results_pane"):  # the window installs it; a window without it gets it here
        install_table_conventions(window)
    pane, view = window.results_pane, window.view
    assert window.bottom_split.indexOf(pane) == 0 and view.parent() is pane
    sheet = tmp_path / "people.csv"
    sheet.write_text("name,city\n" + "\n".join(f"person {i},{('Oslo', 'Lima')[i % 2]}" for i in range(6)) + "\n")
    assert run(qloop, window.load_sheet(sheet))

    if getattr(window, "column_summary", None) is None:
        menu = right_click_header(view, 1)
        assert "Summary" not in entries(menu)  # no column summary panel yet
        menu.close()
        install_column_summaries(window)
    choose(right_click_header(view, 1), "Summary")
    assert window.column_summary.isVisible() and window.column_summary.column == 1
    import numpy
    window.row_filter.set_mask(numpy.array([True, False] * 3), "city = Oslo")  # a bar clicked in the summary
    assert view.model().rowCount() == 3 and pane.filter_bar.count.text() == "Showing 3 of 6 rows"
    pane.filter_bar.clear_button.click()  # Clear filters clears that one too
    assert not window.row_filter.active and view.model().rowCount() == 6

    started = []
    monkeypatch.setattr(window, "start_run", lambda mode, rows=None: started.append((mode, rows)))
    window.doc.add_step("change_case")  # a pipeline that can run
    window.doc.set_param(window.doc.pipeline.steps[0], "source", "name")
    assert not window.run_blockers()
    choose(right_click_cell(view, 4, 0), "Retry this row")
    choose(right_click_cell(view, 4, 0), "Run from here")
    assert started == [("all", [4]), ("all", [4, 5])]

    window.activateWindow()
    view.setFocus()
    QTest.keyClick(view, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)  # Ctrl+F in the window's table
    assert pane.find_bar.isVisible() and pane.find_bar.edit.hasFocus()
