"""The results table view: fixed row heights, sort on the data, status filter, copy for Excel,
and a row's right-click menu (Use as header, No header row)."""

from __future__ import annotations

from batchgrid.core.run import events as ev
from batchgrid.core.run.results import NOT_RUN
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QGuiApplication, QKeySequence
from PySide6.QtWidgets import QAbstractItemView, QComboBox, QHeaderView, QMenu, QTableView

from .icons import status_icon
from .results_model import ResultsModel

FILTERS = (("All rows", ""), ("Done", ev.DONE), ("Errors", ev.ERROR), ("Running", ev.RUNNING),
           ("Retrying", ev.RETRYING), ("Queued", ev.QUEUED), ("Stopped", ev.CANCELLED), ("Not run", NOT_RUN))


class ResultsView(QTableView):
    rowSelected = Signal(int)  # the selected row's number in the sheet (0-based), -1 for none
    useAsHeader = Signal(int)  # right-click ▸ Use as header: the row's number in the table (0-based)
    noHeaderRow = Signal()     # right-click ▸ No header row

    def __init__(self, model: ResultsModel, parent=None):
        super().__init__(parent)
        self.setModel(model)
        self.can_choose_header = lambda: False  # the window says when the sheet may be read again
        self.row_menu: QMenu | None = None       # the right-click menu last shown
        vertical = self.verticalHeader()
        vertical.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)  # never ResizeToContents: 1M rows
        vertical.setDefaultSectionSize(self.fontMetrics().height() + 8)
        vertical.setMinimumWidth(44)
        horizontal = self.horizontalHeader()
        horizontal.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        horizontal.setDefaultSectionSize(140)
        horizontal.setHighlightSections(False)
        horizontal.setSortIndicator(-1, Qt.SortOrder.AscendingOrder)  # unsorted until a header is clicked
        self.setSortingEnabled(True)
        self.setWordWrap(False)
        self.setAlternatingRowColors(True)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectItems)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setHorizontalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        model.modelReset.connect(self._reset)
        self.selectionModel().currentRowChanged.connect(self._current_changed)

    def results_model(self) -> ResultsModel:
        return self.model()

    def _reset(self) -> None:
        self.horizontalHeader().setSortIndicator(-1, Qt.SortOrder.AscendingOrder)
        self.fit_columns()

    def fit_columns(self, first: int = 0) -> None:
        """Sensible widths from the header and the first rows only (never the whole table), for
        the columns from `first` on (a run's end fits the output columns it filled)."""
        model = self.results_model()
        metrics = self.fontMetrics()
        sample = min(model.rowCount(), 50)
        for c in range(first, model.columnCount()):
            width = metrics.horizontalAdvance(model.headers[c]) + 34
            for r in range(sample):
                text = model.data(model.index(r, c)) or ""
                width = max(width, metrics.horizontalAdvance(text[:60]) + 16)
            if c == model.status_column():
                width += 22  # the status icon
            self.setColumnWidth(c, max(60, min(width, 320)))

    def _current_changed(self, current, _previous) -> None:
        self.rowSelected.emit(self.results_model().source_row(current.row()) if current.isValid() else -1)

    def selected_rows(self) -> list[int]:
        """Row numbers in the sheet of every row with a selected cell."""
        model = self.results_model()
        return sorted({model.source_row(i.row()) for i in self.selectionModel().selectedIndexes()})

    def copy_selection(self) -> str:
        text = self.results_model().copy_text(self.selectionModel().selectedIndexes())
        if text:
            QGuiApplication.clipboard().setText(text)
        return text

    def contextMenuEvent(self, event) -> None:
        """Right-click a row: read the sheet again with it as the header, or with no header row.
        The menu pops up without a nested event loop (the window's asyncio loop keeps running)."""
        if not self.can_choose_header():
            event.ignore()
            return
        index = self.indexAt(event.pos())
        row = self.results_model().source_row(index.row()) if index.isValid() else -1
        menu = QMenu(self)
        menu.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        menu.setToolTipsVisible(True)
        use = menu.addAction("Use as header", lambda: self.useAsHeader.emit(row))
        use.setEnabled(row >= 0)
        use.setToolTip("Read the sheet again with this row's cells as the column names")
        menu.addAction("No header row", self.noHeaderRow.emit).setToolTip(
            "Read the sheet again with every row as data (columns column_1, column_2...)")
        self.row_menu = menu
        menu.popup(event.globalPos())
        event.accept()

    def keyPressEvent(self, event) -> None:
        if event.matches(QKeySequence.StandardKey.Copy):
            self.copy_selection()
            event.accept()
            return
        super().keyPressEvent(event)


class StatusFilter(QComboBox):
    """Show all rows, or only rows with one status."""

    def __init__(self, model: ResultsModel, parent=None):
        super().__init__(parent)
        self.model_ = model
        for text, status in FILTERS:
            self.addItem(status_icon(status) if status else status_icon(""), text, status)
        self.setToolTip("Show only rows with this status")
        self.currentIndexChanged.connect(lambda _i: model.set_status_filter(self.currentData()))
        model.modelReset.connect(self._reset)

    def _reset(self) -> None:
        self.blockSignals(True)
        self.setCurrentIndex(0)
        self.blockSignals(False)
