"""Frozen columns (Excel's Freeze panes, LibreOffice's Freeze first columns) for the results
table: the first columns stay in view while the others scroll sideways.

Qt has no frozen columns; this is its "Frozen Column" example: a second table over the left
of the view, on the same model and selection model, showing only the frozen columns, its
vertical scrolling tied to the view's. It shares the view's sort header, menus and zoom.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtWidgets import QAbstractItemView, QFrame, QHeaderView, QTableView

from . import table_menus
from .sort_header import SortHeader

if TYPE_CHECKING:  # pragma: no cover
    from .results_view import ResultsView


class FrozenTable(QTableView):
    """The frozen columns' table: right-clicks and the wheel go to the view below it."""

    def __init__(self, view: ResultsView):
        super().__init__(view)
        self.main = view

    def contextMenuEvent(self, event) -> None:
        table_menus.show_cell_menu(self.main, self.indexAt(event.pos()), event.globalPos())
        event.accept()

    def wheelEvent(self, event) -> None:
        self.main.wheelEvent(event)


class FrozenColumns(QObject):
    def __init__(self, view: ResultsView):
        super().__init__(view)
        self.view = view
        self.count = 0  # how many columns (by visual position) are frozen
        self.table: FrozenTable | None = None

    def set_count(self, count: int) -> None:
        """Freeze the first `count` columns (0: none)."""
        self.count = max(0, count)
        if self.count and self.table is None:
            self._build()
        if self.table is not None:
            self.table.setVisible(bool(self.count))
            self.sync_columns()

    def frozen_columns(self) -> list[int]:
        """The frozen columns still shown (logical indexes)."""
        header = self.view.horizontalHeader()
        return [header.logicalIndex(v) for v in range(min(self.count, header.count()))
                if not self.view.isColumnHidden(header.logicalIndex(v))]

    def _build(self) -> None:
        view = self.view
        table = self.table = FrozenTable(view)
        header = SortHeader(table)
        table.setHorizontalHeader(header)
        table.setModel(view.model())
        table.setSelectionModel(view.selectionModel())
        table.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        table.verticalHeader().hide()
        table.setFrameShape(QFrame.Shape.NoFrame)
        table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        table.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        table.setWordWrap(False)
        table.setAlternatingRowColors(True)
        table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectItems)
        table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        header.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        header.setHighlightSections(False)
        header.sortClicked.connect(view.sort_header().sortClicked)
        header.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        header.customContextMenuRequested.connect(
            lambda pos: table_menus.show_header_menu(view, header.logicalIndexAt(pos), header.mapToGlobal(pos)))
        model = view.results_model()
        model.sortChanged.connect(lambda: header.show_keys(model.sort_keys))
        model.modelReset.connect(self.sync_columns)
        header.show_keys(model.sort_keys)
        view.viewport().stackUnder(table)
        # scrolling up and down together; widths follow the view's
        table.verticalScrollBar().valueChanged.connect(view.verticalScrollBar().setValue)
        view.verticalScrollBar().valueChanged.connect(table.verticalScrollBar().setValue)
        view.horizontalHeader().sectionResized.connect(lambda *_: self.sync_columns())
        view.verticalHeader().geometriesChanged.connect(self.place)
        view.horizontalHeader().geometriesChanged.connect(self.place)
        view.installEventFilter(self)
        self.sync_zoom()

    def sync_columns(self) -> None:
        table = self.table
        if table is None:
            return
        frozen = set(self.frozen_columns()) if self.count else set()
        for c in range(self.view.model().columnCount()):
            table.setColumnHidden(c, c not in frozen)
            if c in frozen:
                table.setColumnWidth(c, self.view.columnWidth(c))
        self.place()

    def sync_zoom(self) -> None:
        table = self.table
        if table is None:
            return
        font = self.view.font()
        for widget in (table, table.horizontalHeader()):
            widget.setFont(font)
        table.verticalHeader().setDefaultSectionSize(self.view.verticalHeader().defaultSectionSize())
        self.sync_columns()

    def place(self) -> None:
        """Over the left of the view's cells and header, as wide as the frozen columns."""
        table, view = self.table, self.view
        if table is None or not self.count:
            return
        width = sum(view.columnWidth(c) for c in self.frozen_columns())
        frame = view.frameWidth()
        table.horizontalHeader().setFixedHeight(view.horizontalHeader().height())
        table.setGeometry(view.verticalHeader().width() + frame, frame, width,
                          view.viewport().height() + view.horizontalHeader().height())
        table.verticalScrollBar().setValue(view.verticalScrollBar().value())

    def width(self) -> int:
        return self.table.width() if self.table is not None and self.count and self.table.isVisible() else 0

    def eventFilter(self, watched, event) -> bool:
        if watched is self.view and event.type() in (QEvent.Type.Resize, QEvent.Type.Show):
            self.place()
        return False
