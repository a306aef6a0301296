"""The results table with its filter line above it and its find bar below it, and the
table's keys: Ctrl+F find, F3 / Shift+F3 next / previous match, Ctrl+Shift+L filter the
current column (LibreOffice's and Excel's AutoFilter key).

`install_table_conventions(window)` puts the pane where the view was and wires the table's
menus to the window (run rows, the inspector, Clear filters).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import QVBoxLayout, QWidget

from .column_filter import FilterBar
from .find_bar import FindBar
from .results_view import ResultsView

if TYPE_CHECKING:  # pragma: no cover
    from .main_window import MainWindow


class ResultsPane(QWidget):
    def __init__(self, view: ResultsView, parent=None):
        super().__init__(parent)
        self.view = view
        self.filter_bar = FilterBar(view.results_model(), self)
        self.find_bar = FindBar(view, self)
        column = QVBoxLayout(self)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        column.addWidget(self.filter_bar)
        column.addWidget(view, 1)
        column.addWidget(self.find_bar)
        view.filterRequested.connect(self.filter_bar.edit_column)
        self.shortcuts = {}
        for keys, slot in ((QKeySequence.StandardKey.Find, self.find_bar.open_bar),
                           (QKeySequence.StandardKey.FindNext, lambda: self.find_bar.step(+1)),
                           (QKeySequence.StandardKey.FindPrevious, lambda: self.find_bar.step(-1)),
                           ("Ctrl+Shift+L", self._filter_current_column)):
            shortcut = QShortcut(QKeySequence(keys), self)
            shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)  # only in the results
            shortcut.activated.connect(slot)
            self.shortcuts[QKeySequence(keys).toString()] = shortcut

    def _filter_current_column(self) -> None:
        index = self.view.currentIndex()
        self.filter_bar.edit_column(index.column() if index.isValid() else 0)


def install_table_conventions(window: MainWindow) -> ResultsPane:
    """Put the results pane (filter line, table, find bar) where the table was, and connect the
    table's menus to the window. Call it after connect_signals."""
    view = window.view
    split = window.bottom_split
    at, sizes = split.indexOf(view), split.sizes()
    pane = ResultsPane(view)
    split.insertWidget(at, pane)
    split.setSizes(sizes)
    split.setCollapsible(split.indexOf(pane), False)
    view.can_run = lambda: not window.runner.running and not window.run_blockers()
    view.runRows.connect(lambda rows: window.start_run("all", rows))
    view.rowHidden.connect(window.inspector.show_hidden)
    view.inspectRow.connect(lambda _number: window.inspector.setFocus())
    # Clear filters clears a column summary's bar filter too (its panel, when installed, connects
    # view.summaryRequested itself: the header menu offers Summary from then on).
    pane.filter_bar.clearRequested.connect(lambda: _clear_summary_filter(window))
    window.results_pane = pane
    return pane


def _clear_summary_filter(window: MainWindow) -> None:
    row_filter = getattr(window, "row_filter", None)  # a bar clicked in a column summary
    if row_filter is not None:
        row_filter.clear()
