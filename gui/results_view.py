"""The results table view: fixed row heights, sort on the data (one or more columns), filters,
copy for Excel, zoom, hidden and frozen columns, and the right-click menus (table_menus.py)."""

from __future__ import annotations

from batchgrid.core.run import events as ev
from batchgrid.core.run.results import NOT_RUN
from batchgrid.core.util.display import display_text
from PySide6.QtCore import SIGNAL, QModelIndex, Qt, Signal
from PySide6.QtGui import QGuiApplication, QKeySequence
from PySide6.QtWidgets import QAbstractItemView, QComboBox, QHeaderView, QMenu, QTableView

from . import table_menus
from .frozen_columns import FrozenColumns
from .icons import status_icon
from .results_model import ResultsModel, status_word
from .sort_header import SortHeader, next_keys

FILTERS = (("All rows", ""), ("Done", ev.DONE), ("Errors", ev.ERROR), ("Running", ev.RUNNING),
           ("Retrying", ev.RETRYING), ("Queued", ev.QUEUED), (status_word(ev.CANCELLED).capitalize(), ev.CANCELLED),
           ("Not run", NOT_RUN))
ZOOMS = (0.5, 0.67, 0.75, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0)  # as a browser steps


class ResultsView(QTableView):
    rowSelected = Signal(int)  # the selected row's number in the sheet (0-based), -1 for none
    rowHidden = Signal(int)    # the selected row was hidden by a filter: its number in the sheet
    useAsHeader = Signal(int)  # right-click ▸ Use as header: the row's number in the table (0-based)
    noHeaderRow = Signal()     # right-click ▸ No header row
    runRows = Signal(list)     # right-click ▸ Retry this row / Run from here: row numbers in the sheet
    inspectRow = Signal(int)   # right-click ▸ Open inspector: the row's number in the sheet
    summaryRequested = Signal(int)  # a column header's right-click ▸ Summary (offered when connected)
    filterRequested = Signal(int)   # a column header's right-click ▸ Filter…: edit that column's filter
    zoomChanged = Signal(float)

    def __init__(self, model: ResultsModel, parent=None):
        super().__init__(parent)
        self.setHorizontalHeader(SortHeader(self))
        self.setModel(model)
        self.can_choose_header = lambda: False  # the window says when the sheet may be read again
        self.can_run = lambda: False            # ... and when a row may be run
        # the header menu offers Summary when something shows it (a column summary panel)
        self.summary_available = lambda: self.receivers(SIGNAL("summaryRequested(int)")) > 0
        self.row_menu: QMenu | None = None       # the right-click menus last shown
        self.header_menu: QMenu | None = None
        self.zoom = 1.0
        self._base_point_size = self.font().pointSizeF()
        self._current_row = -1  # the selected row's number in the sheet, kept while a filter hides it
        vertical = self.verticalHeader()
        vertical.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)  # never ResizeToContents: 1M rows
        vertical.setDefaultSectionSize(self.fontMetrics().height() + 8)
        vertical.setMinimumWidth(44)
        horizontal = self.sort_header()
        horizontal.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        horizontal.setDefaultSectionSize(140)
        horizontal.setHighlightSections(False)
        horizontal.sortClicked.connect(self._sort_clicked)
        horizontal.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        horizontal.customContextMenuRequested.connect(
            lambda pos: table_menus.show_header_menu(self, horizontal.logicalIndexAt(pos), horizontal.mapToGlobal(pos)))
        self.setWordWrap(False)
        self.setAlternatingRowColors(True)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectItems)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setHorizontalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.frozen = FrozenColumns(self)
        model.modelReset.connect(self._reset)
        model.sortChanged.connect(lambda: horizontal.show_keys(model.sort_keys))
        model.layoutChanged.connect(self._follow_current)
        self.selectionModel().currentRowChanged.connect(self._current_changed)

    def results_model(self) -> ResultsModel:
        return self.model()

    def sort_header(self) -> SortHeader:
        return self.horizontalHeader()

    def _reset(self) -> None:
        self.sort_header().show_keys([])
        self._current_row = -1
        for c in range(self.results_model().columnCount()):  # another sheet: every column shows
            self.setColumnHidden(c, False)
        self.frozen.set_count(0)
        self.fit_columns()

    def fit_columns(self, first: int = 0) -> None:
        """Sensible widths from the header and the first rows only (never the whole table), for
        the columns from `first` on (a run's end fits the output columns it filled)."""
        for c in range(first, self.results_model().columnCount()):
            self.autofit(c)

    def autofit(self, column: int) -> None:
        """A column's width from its header and its first 50 shown rows, 60 to 320 px."""
        model = self.results_model()
        metrics = self.fontMetrics()
        width = metrics.horizontalAdvance(model.headers[column]) + 34
        for r in range(min(model.rowCount(), 50)):
            text = model.data(model.index(r, column)) or ""
            width = max(width, metrics.horizontalAdvance(text[:60]) + 16)
        if column == model.status_column():
            width += 22  # the status icon
        self.setColumnWidth(column, max(60, int(min(width, 320 * self.zoom))))

    # ---- selection and the inspector ----------------------------------------------------------
    def _current_changed(self, current, _previous) -> None:
        if current.isValid():
            self._current_row = self.results_model().source_row(current.row())
            self.rowSelected.emit(self._current_row)
        elif self._current_row < 0 or self.results_model().view_row(self._current_row) >= 0:
            self._current_row = -1
            self.rowSelected.emit(-1)

    def _follow_current(self) -> None:
        """After a sort or a filter: a selected row that a filter hid is said to be hidden (the
        inspector must not keep showing it as it was); one that shows again is selected again."""
        number = self._current_row
        model = self.results_model()
        if number < 0 or number >= len(model.store):
            return
        if model.view_row(number) < 0:
            if self.currentIndex().isValid():
                self.selectionModel().clearCurrentIndex()
            self.rowSelected.emit(-1)
            self.rowHidden.emit(number)
        elif not self.currentIndex().isValid():
            self.setCurrentIndex(model.index(model.view_row(number), 0))

    def selected_rows(self) -> list[int]:
        """Row numbers in the sheet of every row with a selected cell."""
        model = self.results_model()
        return sorted({model.source_row(i.row()) for i in self.selectionModel().selectedIndexes()})

    def inspect(self, view_row: int) -> None:
        """Select a row (the inspector follows) and ask for the inspector."""
        model = self.results_model()
        self.setCurrentIndex(model.index(view_row, max(0, self.currentIndex().column())))
        self.inspectRow.emit(model.source_row(view_row))

    # ---- copying ----------------------------------------------------------------------------
    def copy_selection(self, headers: bool = False) -> str:
        """The selected cells for Excel (Ctrl+C), with the column names (Ctrl+Shift+C)."""
        text = self.results_model().copy_text(self.selectionModel().selectedIndexes(), headers=headers)
        if text:
            QGuiApplication.clipboard().setText(text)
        return text

    # ---- sorting, filtering, columns ----------------------------------------------------------
    def _sort_clicked(self, column: int, add: bool) -> None:
        model = self.results_model()
        model.set_sort_keys(next_keys(model.sort_keys, column, add))

    def filter_by_value(self, index: QModelIndex) -> None:
        """Show only the rows whose cell in this column reads as this one does."""
        model = self.results_model()
        shown = model.shown_value(model.source_row(index.row()), index.column())
        model.set_column_filter(index.column(), display_text(shown), "equals")

    def hide_column(self, column: int) -> None:
        if self.visible_columns() != [column]:  # never hide the last column shown
            self.setColumnHidden(column, True)
            self.frozen.sync_columns()

    def show_all_columns(self) -> None:
        for c in range(self.results_model().columnCount()):
            self.setColumnHidden(c, False)
        self.frozen.sync_columns()

    def hidden_columns(self) -> list[int]:
        return [c for c in range(self.results_model().columnCount()) if self.isColumnHidden(c)]

    def visible_columns(self) -> list[int]:
        header = self.horizontalHeader()
        columns = [header.logicalIndex(v) for v in range(header.count())]
        return [c for c in columns if not self.isColumnHidden(c)]

    def freeze_up_to(self, column: int) -> None:
        """Keep the columns up to this one in view while the others scroll (-1 unfreezes)."""
        self.frozen.set_count(self.horizontalHeader().visualIndex(column) + 1 if column >= 0 else 0)

    def scrollTo(self, index, hint=QAbstractItemView.ScrollHint.EnsureVisible) -> None:
        """As Qt's, and a cell right of frozen columns is not left under them."""
        super().scrollTo(index, hint)
        covered = self.frozen.width()
        if covered and index.isValid() and index.column() not in self.frozen.frozen_columns():
            left = self.visualRect(index).left()
            if left < covered:
                bar = self.horizontalScrollBar()
                bar.setValue(bar.value() - (covered - left))

    # ---- zoom --------------------------------------------------------------------------------
    def set_zoom(self, zoom: float) -> None:
        """The table's font and row height (Ctrl+plus / Ctrl+minus / Ctrl+0, Ctrl+wheel)."""
        zoom = min(max(zoom, ZOOMS[0]), ZOOMS[-1])
        if zoom == self.zoom:
            return
        scale = zoom / self.zoom
        self.zoom = zoom
        font = self.font()
        font.setPointSizeF(self._base_point_size * zoom)
        for widget in (self, self.horizontalHeader(), self.verticalHeader()):
            widget.setFont(font)
        self.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 8)
        header = self.horizontalHeader()
        for c in range(header.count()):
            header.resizeSection(c, max(30, round(header.sectionSize(c) * scale)))
        self.frozen.sync_zoom()
        self.zoomChanged.emit(zoom)

    def zoom_step(self, steps: int) -> None:
        nearest = min(range(len(ZOOMS)), key=lambda i: abs(ZOOMS[i] - self.zoom))
        self.set_zoom(ZOOMS[min(max(nearest + steps, 0), len(ZOOMS) - 1)])

    def wheelEvent(self, event) -> None:
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            steps = event.angleDelta().y() // 120 or (1 if event.angleDelta().y() > 0 else -1)
            if event.angleDelta().y():
                self.zoom_step(steps)
            event.accept()
            return
        super().wheelEvent(event)

    # ---- keys and the right-click menu --------------------------------------------------------
    def contextMenuEvent(self, event) -> None:
        """Right-click a cell: copy, filter, the row's actions. The menu pops up without a nested
        event loop (the window's asyncio loop keeps running)."""
        table_menus.show_cell_menu(self, self.indexAt(event.pos()), event.globalPos())
        event.accept()

    def keyPressEvent(self, event) -> None:
        key, mods = event.key(), event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier
        ctrl = Qt.KeyboardModifier.ControlModifier
        if event.matches(QKeySequence.StandardKey.Copy):
            self.copy_selection()
        elif key == Qt.Key.Key_C and mods == ctrl | Qt.KeyboardModifier.ShiftModifier:
            self.copy_selection(headers=True)
        elif event.matches(QKeySequence.StandardKey.ZoomIn) or (mods & ctrl and key in (Qt.Key.Key_Plus, Qt.Key.Key_Equal)):
            self.zoom_step(+1)
        elif event.matches(QKeySequence.StandardKey.ZoomOut) or (mods & ctrl and key == Qt.Key.Key_Minus):
            self.zoom_step(-1)
        elif mods == ctrl and key == Qt.Key.Key_0:
            self.set_zoom(1.0)
        else:
            super().keyPressEvent(event)
            return
        event.accept()


class StatusFilter(QComboBox):
    """Show all rows, or only rows with one status; follows the model's filter (Clear filters)."""

    def __init__(self, model: ResultsModel, parent=None):
        super().__init__(parent)
        self.model_ = model
        for text, status in FILTERS:
            self.addItem(status_icon(status) if status else status_icon(""), text, status)
        self.setToolTip("Show only rows with this status")
        self.currentIndexChanged.connect(self._chosen)
        model.modelReset.connect(self._follow)
        model.filtersChanged.connect(self._follow)

    def _chosen(self, _index: int) -> None:
        if self.currentData() != self.model_.status_filter:
            self.model_.set_status_filter(self.currentData())

    def _follow(self) -> None:
        self.blockSignals(True)
        self.setCurrentIndex(max(0, self.findData(self.model_.status_filter)))
        self.blockSignals(False)
