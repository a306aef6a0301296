"""Right-click a row ▸ Use as header / No header row: the sheet is read again with that row as
its header, the choice is the pipeline's header_row setting (undoable, saved with it)."""

from __future__ import annotations

import json

from PySide6.QtCore import QPoint
from PySide6.QtGui import QContextMenuEvent
from PySide6.QtWidgets import QApplication, QMenu

from batchgrid.core.pipeline import Pipeline
from qt_async import next_signal, run
from table_fixtures import write_workbook

SALES = [["Sales report Q3"], [], ["region", "units", "price"],
         ["North", 3, 2.5], ["South", 4, 1.25], ["East", 7, 3.0]]


def right_click(view, pos: QPoint) -> None:
    """The context-menu event Qt makes of a right-click at `pos` in the table (QTest's synthetic
    clicks go straight to the widget, so Qt never turns them into one)."""
    viewport = view.viewport()
    QApplication.sendEvent(viewport, QContextMenuEvent(QContextMenuEvent.Reason.Mouse, pos, viewport.mapToGlobal(pos)))


def right_click_row(window, row: int) -> QMenu:
    """A right-click on the table's row `row` (as shown); the menu it pops up."""
    view = window.view
    right_click(view, view.visualRect(view.model().index(row, 0)).center())
    menu = QApplication.activePopupWidget()
    assert isinstance(menu, QMenu) and menu is view.row_menu
    return menu


async def choose(window, row: int, text: str) -> None:
    """Right-click `row` ▸ `text`, and wait until the sheet is read again."""
    menu = right_click_row(window, row)
    action = next(a for a in menu.actions() if a.text() == text)
    assert action.isEnabled()
    loaded = next_signal(window.sheetLoaded)
    action.trigger()
    menu.close()
    await loaded


def test_use_as_header_and_no_header_row_read_the_sheet_again(qloop, window, tmp_path):
    path = write_workbook(tmp_path / "report.xlsx", {"Data": SALES})
    assert run(qloop, window.load_sheet(path))
    assert window.rows.columns == ["region", "units", "price"]  # the title above it was found
    assert window.rows.column("units") == [3, 4, 7]
    assert window.table_info.text().endswith("· header: row 3")
    assert 'rows 1-2 look like a title: "Sales report Q3"' in window.last_message

    run(qloop, choose(window, 1, "Use as header"))  # the "South" row: sheet row 5
    assert window.rows.columns == ["South", "4", "1.25"]
    assert window.rows.column("4") == [7] and window.rows.column("South") == ["East"]
    assert window.doc.pipeline.settings["header_row"] == 5
    assert window.table_info.text().endswith("· header: row 5")
    assert window.model.headers[:3] == ["South", "4", "1.25"]

    run(qloop, choose(window, 0, "No header row"))
    assert window.rows.columns == ["column_1", "column_2", "column_3"]
    assert window.rows.column("column_1") == ["Sales report Q3", None, "region", "North", "South", "East"]
    assert window.doc.pipeline.settings["header_row"] == 0
    assert window.table_info.text().endswith("· no header row")

    async def undo() -> None:  # the choice is an edit of the pipeline: undone, the sheet follows
        loaded = next_signal(window.sheetLoaded)
        window.doc.undo_stack.undo()  # choices in a row are one undo step, as a setting's edits are
        await loaded

    run(qloop, undo())
    assert window.doc.pipeline.settings["header_row"] is None
    assert window.rows.columns == ["region", "units", "price"] and window.table_info.text().endswith("row 3")

    run(qloop, choose(window, 0, "No header row"))
    run(qloop, choose(window, 3, "Use as header"))  # the table's row 4 is the sheet's row 4 now
    assert window.rows.columns == ["North", "3", "2.5"] and window.doc.pipeline.settings["header_row"] == 4


def test_the_header_row_is_saved_with_the_pipeline_and_opening_it_reads_the_sheet_again(qloop, window, tmp_path):
    path = write_workbook(tmp_path / "report.xlsx", {"Data": SALES})
    assert run(qloop, window.load_sheet(path))
    run(qloop, choose(window, 0, "No header row"))
    saved = tmp_path / "p.batchgrid.json"
    assert window._save_to(saved)
    assert json.loads(saved.read_text())["settings"] == {"header_row": 0}

    window._use_pipeline(Pipeline())  # a new pipeline: no header row chosen
    assert run(qloop, window.load_sheet(path)) and window.rows.columns == ["region", "units", "price"]

    async def open_saved() -> bool:
        loaded = next_signal(window.sheetLoaded)
        opened = await window.load_pipeline(saved)
        await loaded
        return opened

    assert run(qloop, open_saved())
    assert window.rows.columns == ["column_1", "column_2", "column_3"] and len(window.rows) == 6


def test_no_menu_without_a_sheet_and_use_as_header_is_off_where_there_is_no_row(qloop, window, tmp_path):
    view = window.view
    right_click(view, view.viewport().rect().center())
    assert QApplication.activePopupWidget() is None  # nothing to choose before a sheet is open

    assert run(qloop, window.load_sheet(write_workbook(tmp_path / "r.xlsx", {"Data": SALES})))
    below = view.visualRect(view.model().index(2, 0)).bottomLeft() + QPoint(4, 40)  # under the last row
    right_click(view, below)
    menu = QApplication.activePopupWidget()
    assert isinstance(menu, QMenu)
    entries = {a.text(): a.isEnabled() for a in menu.actions() if not a.isSeparator()}
    assert {k: entries[k] for k in ("Use as header", "No header row")} == {"Use as header": False, "No header row": True}
    assert not any(entries[k] for k in ("Retry this row", "Run from here", "Open inspector"))  # no row there
    menu.close()
