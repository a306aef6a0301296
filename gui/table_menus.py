"""The results table's right-click menus, as in a spreadsheet.

On a cell: Copy, Copy with headers, Filter by this value; the input-row actions (Use as header,
No header row: reading the sheet, before a run); the run actions (Retry this row, Run from here),
Open inspector. On a column header: sorting, filtering, hiding, freezing, autofit and, when a
column summary panel listens, Summary.

Menus pop up with popup(), never exec(): the window's asyncio loop keeps running. The last menu
shown is the view's `row_menu` / `header_menu` (tests find their actions there).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QModelIndex, QPoint, Qt
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QMenu

from .sort_header import ASC, DESC

if TYPE_CHECKING:  # pragma: no cover
    from .results_view import ResultsView


def _menu(view: ResultsView) -> QMenu:
    menu = QMenu(view)
    menu.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    menu.setToolTipsVisible(True)
    return menu


def _add(menu: QMenu, text: str, slot, tip: str = "", enabled: bool = True, shortcut: str = ""):
    action = menu.addAction(text, slot)
    action.setEnabled(enabled)
    if tip:
        action.setToolTip(tip)
    if shortcut:  # shown beside the entry; the view handles the key itself
        action.setShortcut(QKeySequence(shortcut))
        action.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)
    return action


def show_cell_menu(view: ResultsView, index: QModelIndex, pos: QPoint) -> QMenu | None:
    model = view.results_model()
    if not model.columnCount():  # no sheet yet: nothing to act on
        return None
    valid = index.isValid()
    selection = view.selectionModel()
    if valid and not selection.isSelected(index):  # right-click selects the cell, as in Excel
        view.setCurrentIndex(index)
    view_row = index.row() if valid else -1
    number = model.source_row(view_row) if valid else -1
    rows = view.selected_rows() if valid else []
    if number not in rows:
        rows = [number] if valid else []
    menu = _menu(view)
    has_cells = bool(selection.selectedIndexes())
    _add(menu, "Copy", view.copy_selection, "Copy the selected cells for Excel", has_cells, "Ctrl+C")
    _add(menu, "Copy with headers", lambda: view.copy_selection(headers=True),
         "Copy the selected cells with their column names", has_cells, "Ctrl+Shift+C")
    if valid:
        header = model.headers[index.column()]
        text = model.data(index) or ""
        shown = f"“{text[:40]}…”" if len(text) > 40 else f"“{text}”" if text else "blank"
        _add(menu, "Filter by this value", lambda: view.filter_by_value(index),
             f"Show only rows whose {header} is {shown}")
    if view.can_choose_header():  # reading the sheet: before a run
        menu.addSeparator()
        _add(menu, "Use as header", lambda: view.useAsHeader.emit(number),
             "Read the sheet again with this row's cells as the column names", valid)
        _add(menu, "No header row", view.noHeaderRow.emit,
             "Read the sheet again with every row as data (columns column_1, column_2...)")
    menu.addSeparator()
    can_run = valid and view.can_run()
    several = len(rows) > 1
    _add(menu, f"Retry these {len(rows)} rows" if several else "Retry this row",
         lambda: view.runRows.emit(list(rows)), "Run the pipeline again on the selected rows", can_run)
    _add(menu, "Run from here", lambda: view.runRows.emit([model.source_row(r) for r in range(view_row, model.rowCount())]),
         "Run the pipeline on this row and every row shown below it", can_run)
    _add(menu, "Open inspector", lambda: view.inspect(view_row),
         "What each step of this row read and wrote", valid)
    view.row_menu = menu
    menu.popup(pos)
    return menu


def show_header_menu(view: ResultsView, column: int, pos: QPoint) -> QMenu | None:
    if column < 0:
        return None
    model = view.results_model()
    menu = _menu(view)
    sort = model.set_sort_keys
    _add(menu, "Sort ascending", lambda: sort([(column, ASC)]), "A to Z, smallest first; blanks last (Shift+click "
         "a header to add a sort key)")
    _add(menu, "Sort descending", lambda: sort([(column, DESC)]), "Z to A, largest first; blanks last")
    _add(menu, "Sheet order", lambda: sort([]), "The rows in the sheet's order again", bool(model.sort_keys))
    menu.addSeparator()
    _add(menu, "Filter…", lambda: view.filterRequested.emit(column), "Show only rows whose cell contains a text")
    _add(menu, "Clear this column's filter", lambda: model.set_column_filter(column, ""),
         enabled=column in model.column_filters)
    menu.addSeparator()
    _add(menu, "Hide column", lambda: view.hide_column(column), enabled=len(view.visible_columns()) > 1)
    hidden = view.hidden_columns()
    if hidden:
        _add(menu, f"Show hidden columns ({len(hidden)})", view.show_all_columns,
             ", ".join(model.headers[c] for c in hidden))
    if view.frozen.count:
        _add(menu, "Unfreeze columns", lambda: view.freeze_up_to(-1))
    _add(menu, "Freeze columns up to here", lambda: view.freeze_up_to(column),
         "Keep this column and those left of it in view while scrolling sideways")
    _add(menu, "Autofit", lambda: view.autofit(column), "Fit the column's width to its header and first rows")
    if view.summary_available():  # a column summary panel is installed
        menu.addSeparator()
        _add(menu, "Summary", lambda: view.summaryRequested.emit(column),
             f"{model.headers[column]}'s values as bars and a histogram")
    view.header_menu = menu
    menu.popup(pos)
    return menu
