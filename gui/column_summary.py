"""The column summary panel (OpenRefine's facets): for one column of the results table, its values
counted as bars, a histogram of its numbers or of its texts' lengths, and its blanks, errors and
rows not run yet. Clicking a bar (or a bin) shows only those rows in the table; clicking it again,
or Clear, shows every row.

The numbers come from core/run/summary.py, kept up to date from the store's changed rows and drawn
at most four times a second during a run (less often when a refresh takes long: refreshes never
take more than a tenth of the loop's time). A big table is counted a chunk at a time between the
window's events (a worker thread would hold the GIL against the window's thread).
`install_column_summaries(window)` adds the panel beside the table, View ▸ Column summary, and a
column header's right-click ▸ Summary.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from typing import TYPE_CHECKING

from batchgrid.core.run.summary import ColumnSummary, Facts, Pick
from PySide6.QtCore import QEvent, QModelIndex, QPoint, QRect, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QFont, QPainter, QPalette, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QListView,
    QMenu,
    QPushButton,
    QSizePolicy,
    QStyle,
    QStyledItemDelegate,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from .plot_style import bar_colour, restyle, small_plot
from .results_model import ResultsModel
from .row_filter import RowFilter

if TYPE_CHECKING:  # pragma: no cover
    from .main_window import MainWindow

REFRESH_MS = 250        # at most four refreshes a second during a run
MAX_SHARE = 0.1         # a refresh may take at most this share of the loop's time
STEP_ROWS = 2048        # rows counted at a time (a few ms), between the window's events
PANEL_WIDTH = 300

CountRole = int(Qt.ItemDataRole.UserRole) + 1
ShareRole = int(Qt.ItemDataRole.UserRole) + 2
PickRole = int(Qt.ItemDataRole.UserRole) + 3


def count_text(count: int, total: int) -> str:
    share = 100 * count / total if total else 0
    return f"{count:,} ({share:.0f}%)" if share >= 1 or not count else f"{count:,} (<1%)"


class BarDelegate(QStyledItemDelegate):
    """A value, its count on the right, and a bar behind them as long as its share of the largest."""

    def paint(self, painter: QPainter, option, index: QModelIndex) -> None:
        palette = option.palette
        rect = option.rect.adjusted(2, 1, -2, -1)
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        painter.save()
        share = index.data(ShareRole) or 0.0
        if share > 0:
            bar = QRect(rect.left(), rect.top() + 2, max(2, int(rect.width() * share)), rect.height() - 4)
            painter.fillRect(bar, bar_colour(palette, picked=selected))
        if option.state & QStyle.StateFlag.State_MouseOver and not selected:
            painter.setPen(palette.color(QPalette.ColorRole.Highlight))
            painter.drawRect(rect.adjusted(0, 0, -1, -1))
        text_colour = palette.color(QPalette.ColorRole.HighlightedText if selected and share > 0.5
                                    else QPalette.ColorRole.Text)
        painter.setPen(text_colour)
        font = QFont(option.font)
        if index.data(Qt.ItemDataRole.FontRole) is not None:
            font = index.data(Qt.ItemDataRole.FontRole)
        painter.setFont(font)
        metrics = painter.fontMetrics()
        count = index.data(CountRole) or ""
        count_width = metrics.horizontalAdvance(count) + 8
        text_rect = rect.adjusted(6, 0, -count_width, 0)
        label = metrics.elidedText(" ".join(str(index.data()).split()), Qt.TextElideMode.ElideRight, text_rect.width())
        painter.drawText(text_rect, int(Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft), label)
        painter.drawText(rect.adjusted(0, 0, -6, 0), int(Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight),
                         count)
        painter.restore()

    def sizeHint(self, option, index: QModelIndex) -> QSize:
        return QSize(120, option.fontMetrics.height() + 10)


class ValueBars(QListView):
    """The column's most frequent values, the rest, its blanks, errors and rows not run, as bars."""

    picked = Signal(object)  # the Pick of a clicked bar

    def __init__(self, parent=None):
        super().__init__(parent)
        self.items = QStandardItemModel(self)
        self.setModel(self.items)
        self.setItemDelegate(BarDelegate(self))
        self.setMouseTracking(True)
        self.setUniformItemSizes(True)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.clicked.connect(lambda index: self.picked.emit(index.data(PickRole)))

    def show_facts(self, facts: Facts, picked: Pick | None) -> None:
        rows: list[tuple[str, int, Pick, bool]] = []
        if facts.bars:
            rows += [(key, count, Pick("value", key), False) for key, count in facts.top]
            if facts.other:
                others = facts.distinct - len(facts.top)
                rows.append((f"{others:,} other value{'s' if others != 1 else ''}", facts.other,
                             Pick("other", exclude=tuple(k for k, _ in facts.top)), True))
        for label, count, kind in (("(blank)", facts.blanks, "blank"), ("(error)", facts.errors, "error"),
                                   ("(not run yet)", facts.pending, "pending")):
            if count:
                rows.append((label, count, Pick(kind), True))
        largest = max((count for _, count, _, _ in rows), default=0)
        self.items.clear()
        italic = QFont(self.font())
        italic.setItalic(True)
        selected = None
        for label, count, pick, special in rows:
            item = QStandardItem(label)
            item.setData(count_text(count, facts.rows), CountRole)
            item.setData(count / largest if largest else 0.0, ShareRole)
            item.setData(pick, PickRole)
            item.setToolTip(f"{label}\n{count:,} of {facts.rows:,} rows. Click to show only these rows.")
            if special:
                item.setData(italic, Qt.ItemDataRole.FontRole)
            self.items.appendRow(item)
            if pick == picked:
                selected = item
        self.blockSignals(True)
        if selected is not None:
            self.setCurrentIndex(selected.index())
        else:
            self.clearSelection()
        self.blockSignals(False)

    def sizeHint(self) -> QSize:
        return QSize(PANEL_WIDTH, 160)


class Histogram(QWidget):
    """A histogram of numbers or of text lengths (pyqtgraph, made when first shown); click a bin."""

    picked = Signal(object)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.plot = None
        self.bars = None
        self.edges: list[float] = []
        self.counts: list[int] = []
        self.of = "numbers"
        self.picked_bin = -1
        self.title = QLabel()
        self.title.setObjectName("help")
        self.title.setWordWrap(True)
        self.column = QVBoxLayout(self)
        self.column.setContentsMargins(0, 4, 0, 0)
        self.column.setSpacing(2)
        self.column.addWidget(self.title)

    def _make_plot(self) -> None:
        import pyqtgraph as pg

        self.plot = small_plot(self)
        self.plot.setMinimumHeight(110)
        self.plot.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.bars = pg.BarGraphItem(x0=[], x1=[], height=[], pen=None)
        self.plot.addItem(self.bars)
        self.plot.scene().sigMouseClicked.connect(self._clicked)
        self.column.addWidget(self.plot, 1)

    def show_histogram(self, facts: Facts, picked: Pick | None) -> None:
        self.edges, self.counts, self.of = facts.edges, facts.counts, facts.histogram_of
        what = "the texts' lengths (characters)" if self.of == "lengths" else "the values"
        self.title.setText(f"Histogram of {what}: click a bar to show its rows")
        if self.plot is None:
            self._make_plot()
        self.picked_bin = -1
        if picked is not None and picked.kind == "range" and picked.of == self.of:
            self.picked_bin = next((i for i, lo in enumerate(self.edges[:-1])
                                    if lo == picked.lo and self.edges[i + 1] == picked.hi), -1)
        palette = self.palette()
        brushes = [bar_colour(palette, picked=i == self.picked_bin) for i in range(len(self.counts))]
        self.bars.setOpts(x0=self.edges[:-1], x1=self.edges[1:], height=self.counts, brushes=brushes, pen=None)
        if self.edges:
            self.plot.setXRange(self.edges[0], self.edges[-1], padding=0.02)
            self.plot.setYRange(0, max(self.counts or [1]) * 1.05, padding=0)

    def _clicked(self, event) -> None:
        if not self.edges or self.plot is None:
            return
        x = self.plot.getPlotItem().getViewBox().mapSceneToView(event.scenePos()).x()
        i = bisect.bisect_right(self.edges, x) - 1
        if 0 <= i < len(self.counts) and self.counts[i]:
            self.picked.emit(self.bin_pick(i))

    def bin_pick(self, i: int) -> Pick:
        return Pick("range", lo=self.edges[i], hi=self.edges[i + 1], of=self.of)

    def changeEvent(self, event) -> None:
        if event.type() == QEvent.Type.PaletteChange and self.plot is not None:
            restyle(self.plot)
        super().changeEvent(event)


class ColumnSummaryPanel(QWidget):
    refreshed = Signal()  # new numbers were drawn (tests count these)
    closed = Signal()     # the user closed the panel (its ✕)

    def __init__(self, model: ResultsModel, row_filter: RowFilter, parent=None):
        super().__init__(parent)
        self.setObjectName("columnSummary")
        self.model = model
        self.store = model.store
        self.row_filter = row_filter
        self.summary: ColumnSummary | None = None
        self.column = -1
        self.pick: Pick | None = None      # what the table is filtered by (from this panel)
        self.pick_column = -1
        self.refreshes = 0
        self.facts: Facts | None = None    # what is drawn
        self.building: asyncio.Task | None = None
        self._generation = 0
        self._stale = True                 # counted while hidden: count again when shown
        self._dirty: set[int] = set()
        self._interval = REFRESH_MS
        self._drawn_at = 0.0
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.refresh)

        # The store tells one listener which rows changed (the results model); tell this panel too.
        previous = self.store.on_change

        def changed(row: int, first=previous, second=self._mark) -> None:
            if first is not None:
                first(row)
            second(row)

        self.store.on_change = changed

        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 4, 4, 4)
        layout.setSpacing(4)
        head = QHBoxLayout()
        title = QLabel("Column summary")
        title.setObjectName("panelTitle")
        head.addWidget(title, 1)
        close = QToolButton()
        close.setText("✕")
        close.setAutoRaise(True)
        close.setToolTip("Close the column summary (View ▸ Column summary opens it again)")
        close.clicked.connect(self._close_clicked)
        head.addWidget(close)
        layout.addLayout(head)
        self.chooser = QComboBox()
        self.chooser.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.chooser.setMinimumContentsLength(12)
        self.chooser.setToolTip("The column to summarise")
        self.chooser.activated.connect(lambda i: self.show_column(i))
        layout.addWidget(self.chooser)
        self.facts_line = QLabel()
        self.facts_line.setObjectName("help")
        self.facts_line.setWordWrap(True)
        layout.addWidget(self.facts_line)
        self.bars = ValueBars()
        self.bars.picked.connect(self.toggle_pick)
        layout.addWidget(self.bars, 2)
        self.histogram = Histogram()
        self.histogram.picked.connect(self.toggle_pick)
        self.histogram.hide()
        layout.addWidget(self.histogram, 1)
        filter_line = QHBoxLayout()
        self.filter_text = QLabel()
        self.filter_text.setWordWrap(True)
        self.filter_text.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        filter_line.addWidget(self.filter_text, 1)
        self.clear_button = QPushButton("Clear")
        self.clear_button.setToolTip("Show every row again")
        self.clear_button.clicked.connect(self.clear_filter)
        filter_line.addWidget(self.clear_button)
        layout.addLayout(filter_line)
        self.setMinimumWidth(180)

        model.modelReset.connect(self._columns_changed)
        row_filter.changed.connect(self._show_filter)
        self._columns_changed()

    def sizeHint(self) -> QSize:
        return QSize(PANEL_WIDTH, 400)

    # ---- which column ---------------------------------------------------------------------------
    def _columns_changed(self) -> None:
        """A new sheet, pipeline or results: the columns are offered anew and counted again."""
        headers = list(self.model.headers)
        self.chooser.blockSignals(True)
        self.chooser.clear()
        self.chooser.addItems(headers)
        self.chooser.blockSignals(False)
        if not headers:
            self.column = -1
        elif not 0 <= self.column < len(headers):
            self.column = self.default_column()
        self.chooser.setCurrentIndex(self.column)
        if self.row_filter.keep is None:
            self.pick, self.pick_column = None, -1
        self.rebuild()

    def default_column(self) -> int:
        """The first column the steps write (what the pipeline made), else the status column."""
        store = self.model.store
        return store.column_position(store.step_columns[0]) if store.step_columns else self.model.status_column()

    def choose_column(self, column: int) -> bool:
        """The column to summarise from now on (counted when shown). False: no such column."""
        if not 0 <= column < self.model.columnCount():
            return False
        self.column = column
        self.chooser.setCurrentIndex(column)
        return True

    def show_column(self, column: int) -> None:
        """Summarise this column (the panel must be shown to count it)."""
        if self.choose_column(column):
            self.rebuild()

    # ---- counting ---------------------------------------------------------------------------------
    def rebuild(self) -> None:
        """Count the column again from the store (a new table, a run starting or ending)."""
        self._generation += 1
        self._dirty.clear()
        self._timer.stop()
        if not self.isVisible():
            self._stale = True
            return
        self._stale = False
        if self.column < 0:
            self.summary = None
            self._draw()
            return
        summary = ColumnSummary(self.store, self.column)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None or len(self.store) < STEP_ROWS:
            self.summary = summary.rebuild()
            self._counted()
            self._draw()
            return
        self.summary = None
        self.facts_line.setText(f"Counting {len(self.store):,} rows…")
        self.building = loop.create_task(self._count_in_steps(summary, self._generation))

    async def _count_in_steps(self, summary: ColumnSummary, generation: int) -> None:
        """A big table is counted a chunk at a time between the window's events (a few ms each)."""
        for _ in summary.rebuild_in_steps(STEP_ROWS):
            await asyncio.sleep(0)
            if generation != self._generation:  # counted again meanwhile, or hidden
                return
        self.summary = summary
        self._counted()
        self.refresh()

    def _counted(self) -> None:
        """Counted afresh: a filter from this column follows (a run's end changes many rows at once)."""
        if self.summary is not None and self.pick is not None and self.pick_column == self.column \
                and self.row_filter.active:
            self.row_filter.set_mask(self.summary.mask(self.pick), self.row_filter.label)

    def _mark(self, row: int) -> None:
        if self._stale:
            return
        self._dirty.add(row)
        if not self._timer.isActive():
            self._timer.start(self._interval)

    def refresh(self) -> None:
        """Count the rows that changed, and draw (coalesced: called by a timer). Many changed rows
        (a count that took a while, a fast run) are counted a chunk a turn, drawn when all are in."""
        if self.summary is None:
            return  # still counting: the marked rows wait for it
        started = time.perf_counter()
        if len(self._dirty) > STEP_ROWS:
            rows = [self._dirty.pop() for _ in range(STEP_ROWS)]
        else:
            rows, self._dirty = list(self._dirty), set()
        changed = self.summary.update(rows)
        if self.pick is not None and self.pick_column == self.column and self.row_filter.active:
            self.row_filter.update_rows({row: self.summary.matches(row, self.pick) for row in changed})
        if self._dirty:  # the rest at the loop's next turn; drawn once all are counted (or after a second)
            self._timer.start(0)
            if started - self._drawn_at < 1.0:
                return
        self._draw()
        spent = time.perf_counter() - started
        self._interval = max(REFRESH_MS, int(spent / MAX_SHARE * 1000))

    def _draw(self) -> None:
        self.refreshes += 1
        self._drawn_at = time.perf_counter()
        summary = self.summary
        if summary is None:
            self.facts_line.setText("Open a spreadsheet to see its columns summarised.")
            self.bars.items.clear()
            self.histogram.hide()
            self.refreshed.emit()
            return
        facts = summary.facts()
        parts = [f"{facts.rows:,} rows", f"{facts.values:,} with a value", f"{facts.distinct:,} distinct"
                 + ("" if facts.bars or facts.numeric or not facts.values else " (too many to list)")]
        for count, word in ((facts.blanks, "blank"), (facts.errors, "failed"), (facts.pending, "not run yet")):
            if count:
                parts.append(f"{count:,} {word}")
        self.facts_line.setText(" · ".join(parts))
        picked = self.pick if self.pick_column == self.column else None
        self.bars.show_facts(facts, picked)
        self.bars.setVisible(self.bars.items.rowCount() > 0)
        if facts.histogram_of:
            self.histogram.show()
            self.histogram.show_histogram(facts, picked)
        else:
            self.histogram.hide()
        self.facts = facts
        self.refreshed.emit()

    # ---- filtering the table ----------------------------------------------------------------------
    def toggle_pick(self, pick: Pick | None) -> None:
        """Show only the rows behind a bar; the same bar again shows every row."""
        if pick is None or self.summary is None:
            return
        if pick == self.pick and self.pick_column == self.column and self.row_filter.active:
            self.clear_filter()
            return
        self.pick, self.pick_column = pick, self.column
        self.row_filter.set_mask(self.summary.mask(pick), pick.describe(self.summary.name))
        self._draw()

    def clear_filter(self) -> None:
        self.pick, self.pick_column = None, -1
        self.row_filter.clear()
        if self.summary is not None:
            self._draw()

    def _show_filter(self) -> None:
        active = self.row_filter.active
        if not active:
            self.pick, self.pick_column = None, -1
        shown, total = self.row_filter.shown(), len(self.store)
        self.filter_text.setText(f"Showing {shown:,} of {total:,} rows: {self.row_filter.label}" if active else "")
        self.filter_text.setToolTip(self.row_filter.label)
        self.filter_text.setVisible(active)
        self.clear_button.setVisible(active)

    # ---- shown or not -------------------------------------------------------------------------------
    def showEvent(self, event) -> None:
        super().showEvent(event)
        self._show_filter()
        if self._stale:
            self.rebuild()

    def hideEvent(self, event) -> None:
        super().hideEvent(event)
        self._stale = True  # a hidden panel counts nothing; it counts again when shown
        self._generation += 1  # a count in steps stops
        self._dirty.clear()
        self._timer.stop()

    def _close_clicked(self) -> None:
        self.hide()
        self.closed.emit()


def view_menu(window: MainWindow) -> QMenu:
    """The window's View menu (made, before Run, if it has none yet)."""
    bar = window.menuBar()
    for action in bar.actions():
        if action.menu() is not None and action.text().replace("&", "") == "View":
            return action.menu()
    before = next((a for a in bar.actions() if a.text().replace("&", "") == "Run"), None)
    menu = QMenu("&View", window)
    if before is not None:
        bar.insertMenu(before, menu)
    else:
        bar.addMenu(menu)
    return menu


def install_column_summaries(window: MainWindow) -> ColumnSummaryPanel:
    """Add the column summary panel right of the results table (hidden until asked for), View ▸
    Column summary, and a column header's right-click ▸ Summary (through the view's
    `summaryRequested` where its header has a menu of its own). Call it after build_actions."""
    if isinstance(getattr(window, "column_summary", None), ColumnSummaryPanel):
        return window.column_summary  # installed already (once is enough)
    row_filter = RowFilter(window.model, window)
    panel = ColumnSummaryPanel(window.model, row_filter)
    panel.hide()
    split = window.bottom_split
    split.addWidget(panel)
    split.setCollapsible(split.indexOf(panel), False)

    action = QAction("Column summary", window)
    action.setCheckable(True)
    action.setToolTip("Each column's values as bars and histograms; click a bar to filter the table")
    action.setStatusTip(action.toolTip())
    view_menu(window).addAction(action)

    def set_shown(shown: bool) -> None:
        if shown and panel.isHidden():
            sizes = split.sizes()
            i = split.indexOf(panel)
            panel.setVisible(True)
            if sizes[i] < panel.minimumWidth():  # first shown: take its width from the table
                sizes[0] = max(200, sizes[0] - PANEL_WIDTH)
                sizes[i] = PANEL_WIDTH
                split.setSizes(sizes)
        elif not shown:
            panel.hide()

    action.toggled.connect(set_shown)
    panel.closed.connect(lambda: action.setChecked(False))
    window.runner.started.connect(panel.rebuild)
    window.runner.finished.connect(lambda _reason, _message: panel.rebuild())

    header = window.view.horizontalHeader()
    requested = getattr(window.view, "summaryRequested", None)
    if requested is not None:  # the table's own header menu offers Summary once this is connected
        requested.connect(lambda section: summarise(section))
    elif header.contextMenuPolicy() == Qt.ContextMenuPolicy.DefaultContextMenu:
        header.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)

        def header_menu(pos: QPoint) -> None:
            section = header.logicalIndexAt(pos)
            if section < 0:
                return
            menu = QMenu(header)
            menu.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            menu.addAction(f"Summary of “{window.model.headers[section]}”", lambda: summarise(section))
            window.header_menu = menu
            menu.popup(header.mapToGlobal(pos))  # no nested event loop: the asyncio loop keeps running

        header.customContextMenuRequested.connect(header_menu)

    def summarise(section: int) -> None:
        if panel.choose_column(section):
            if action.isChecked():
                panel.rebuild()
            else:
                action.setChecked(True)  # shown, it counts the chosen column

    window.column_summary = panel
    window.act_column_summary = action
    window.row_filter = row_filter
    return panel
