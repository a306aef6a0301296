"""The results table: a thin Qt adapter over core's result store (core/run/store.py).

It holds no results of its own (napari's item models are the pattern): every cell is read
from the session's store. It keeps only view state, built to stay quick with a million
rows and thousands of events a second:
- engine events update the store (plain lists indexed by row number) and mark rows dirty
  here; a 40 ms single-shot timer then emits one dataChanged per run of contiguous dirty
  rows (never a model reset);
- sorting (on one or more columns) and the filters (by status, by a column's text or value)
  reorder a list of row numbers (`order`), computed on the data (in a worker thread for big
  tables), instead of a QSortFilterProxyModel calling data() a million times.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy
from batchgrid.core.run import events as ev
from batchgrid.core.run.overrides import ACCEPTED, EDITED, REJECTED
from batchgrid.core.run.results import NOT_RUN, status_word
from batchgrid.core.run.store import ResultStore
from batchgrid.core.table import Table
from batchgrid.core.util import gc_pause
from batchgrid.core.util.display import display_text
from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt, QTimer, Signal
from PySide6.QtGui import QBrush, QColor, QFont, QGuiApplication

from .icons import status_icon
from .style import is_dark

FLUSH_MS = 40
REFILTER_EVERY = 0.5  # seconds between re-filterings while rows change status
BACKGROUND_SORT_ROWS = 100_000  # from this many rows, sorting runs in a worker thread
TEXT_LIMIT = 300  # characters shown in a cell; the tooltip and the inspector show the rest

# (light, dark) pairs: each text colour reads on the table's background and on the row colours.
ROW_COLOURS = {ev.ERROR: ("#fdecec", "#3d1f1f"), ev.CANCELLED: ("#f1f2f4", "#262a2f")}
STATUS_COLOURS = {ev.DONE: ("#147040", "#6fd69b"), ev.ERROR: ("#c62828", "#ff8a80"), ev.RUNNING: ("#2563cf", "#8ab4f8"),
                  ev.RETRYING: ("#a0570f", "#f0a35e"), ev.QUEUED: ("#5f6974", "#aab3bd"),
                  ev.CANCELLED: ("#5f6974", "#aab3bd"), NOT_RUN: ("#6b7580", "#8f99a3")}
ERROR_COLOURS, NOTE_COLOURS = ("#b71c1c", "#ffb4ab"), ("#a35400", "#f0a35e")  # the error and note columns
# A cell the user edited in a review (a manual override): a violet tint under the palette's text, and italic.
EDITED_COLOURS = ("#ece4fb", "#3d3357")
# A reviewed row's mark before its number in the row header (read in the header's own text colour).
REVIEW_MARKS = {ACCEPTED: "✓", EDITED: "✎", REJECTED: "✗"}


@cache
def _brushes(dark: bool) -> tuple[dict[str, QBrush], dict[str, QBrush], QBrush, QBrush]:
    pick = int(dark)
    return ({k: QBrush(QColor(v[pick])) for k, v in ROW_COLOURS.items()},
            {k: QBrush(QColor(v[pick])) for k, v in STATUS_COLOURS.items()},
            QBrush(QColor(ERROR_COLOURS[pick])), QBrush(QColor(NOTE_COLOURS[pick])))


def brushes() -> tuple[dict[str, QBrush], dict[str, QBrush], QBrush, QBrush]:
    """Row backgrounds, status texts, the error and the note column's text, for the palette's scheme."""
    return _brushes(is_dark(QGuiApplication.palette()))


@cache
def _edited_brush(dark: bool) -> QBrush:
    return QBrush(QColor(EDITED_COLOURS[int(dark)]))


def edited_brush() -> QBrush:
    """The background of a cell edited in a review, for the palette's scheme."""
    return _edited_brush(is_dark(QGuiApplication.palette()))


@cache
def _italic() -> QFont:
    font = QFont()
    font.setItalic(True)
    return font


STATUSES = (ev.QUEUED, ev.RUNNING, ev.RETRYING, ev.DONE, ev.ERROR, ev.CANCELLED, NOT_RUN)


@dataclass(frozen=True)
class ColumnFilter:
    """Rows whose cell in `column` reads `text` (kind "equals") or contains it ("contains"),
    case-insensitive, as the cell shows it."""
    column: int
    text: str
    kind: str = "contains"

    def matcher(self):
        """A quick test of one shown text (the needle folded once, not per row)."""
        needle = self.text.casefold()
        if self.kind == "equals":
            return lambda shown: shown.casefold() == needle
        return lambda shown: needle in shown.casefold()

    def matches(self, shown: str) -> bool:
        return self.matcher()(shown)

RawRole = Qt.ItemDataRole.UserRole + 10  # the unformatted value (tests, copy)


def cell_text(value: Any) -> str:
    """How a value reads in a cell: as display_text, on one line, long text cut short."""
    text = display_text(value)
    if len(text) > TEXT_LIMIT:
        text = text[:TEXT_LIMIT] + "…"
    return text.replace("\n", " ⏎ ")


def sort_key(value: Any) -> tuple:
    """Blanks last, numbers before text, text case-insensitive; mixed columns never raise."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return (2, 0, "")
    if isinstance(value, bool):
        return (0, int(value), "")
    if isinstance(value, (int, float)):
        return (0, value, "")
    return (1, 0, str(value).casefold())


class ResultsModel(QAbstractTableModel):
    sorting = Signal(bool)  # a big sort started (True) or ended (False)
    filtersChanged = Signal()  # the status or a column filter was set or cleared
    sortChanged = Signal()     # the sort keys changed (the header draws them)

    def __init__(self, store: ResultStore | None = None, parent=None):
        super().__init__(parent)
        self.store = store if store is not None else ResultStore()
        self.store.on_change = self._mark
        self.order: list[int] | None = None       # view row -> row number; None: all, in order
        self.position: list[int] | None = None    # row number -> view row (-1: filtered out)
        self.sort_keys: list[tuple[int, Qt.SortOrder]] = []  # (column, order), most significant first
        self.status_filter: str = ""
        self.column_filters: dict[int, ColumnFilter] = {}
        self._dirty: set[int] = set()
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(FLUSH_MS)
        self._timer.timeout.connect(self.flush)
        self._row_cache: tuple[int, dict[str, Any]] = (-1, {})
        self._last_refilter = 0.0
        self._order_generation = 0  # bumped by every new sort, filter or table
        self._sort_task: asyncio.Task | None = None

    # ---- the store's state, read through ------------------------------------------------------
    @property
    def rows(self) -> Table:
        return self.store.table

    @property
    def results(self) -> list[ev.RowResult | None]:
        return self.store.results

    @property
    def status(self) -> list[str]:
        return self.store.status

    @property
    def partial(self) -> dict[int, dict[str, str]]:
        return self.store.partial

    @property
    def notes(self) -> dict[int, str]:
        return self.store.notes

    @property
    def headers(self) -> list[str]:
        return self.store.header

    @property
    def input_columns(self) -> list[str]:
        return self.store.input_columns

    @property
    def output_columns(self) -> list[str]:
        return self.store.output_columns

    # ---- what is shown ---------------------------------------------------------------------
    def set_table(self, rows: Table, output_columns: Sequence[str],
                  results: list[ev.RowResult | None] | None = None) -> None:
        """A new sheet or pipeline: new columns, and the results known so far (or none)."""
        self.beginResetModel()
        self.store.reset(rows, output_columns, results)
        self.refresh_reset()

    def store_reset(self) -> None:
        """The store was reset by the session (a new sheet, pipeline or results): show it anew."""
        self.beginResetModel()
        self.refresh_reset()

    def refresh_reset(self) -> None:
        self._dirty.clear()
        self._row_cache = (-1, {})
        self._timer.stop()
        self.order = self.position = None
        self._order_generation += 1
        self.sort_keys = []
        self.status_filter = ""
        self.column_filters = {}
        self.endResetModel()

    def set_output_columns(self, output_columns: Sequence[str]) -> None:
        if list(output_columns) != self.store.step_columns:
            self.set_table(self.rows, output_columns, self.results)

    def status_column(self) -> int:
        return len(self.store.table.columns) + len(self.store.output_columns)

    def error_column(self) -> int:
        return self.status_column() + 1

    @property
    def sort_column(self) -> int:
        return self.sort_keys[0][0] if self.sort_keys else -1

    @property
    def sort_order(self) -> Qt.SortOrder:
        return self.sort_keys[0][1] if self.sort_keys else Qt.SortOrder.AscendingOrder

    def source_row(self, view_row: int) -> int:
        return view_row if self.order is None else self.order[view_row]

    def view_row(self, source_row: int) -> int:
        return source_row if self.position is None else self.position[source_row]

    # ---- Qt model ----------------------------------------------------------------------------
    def rowCount(self, parent=QModelIndex()):
        if parent.isValid():
            return 0
        return len(self.rows) if self.order is None else len(self.order)

    def columnCount(self, parent=QModelIndex()):
        return 0 if parent.isValid() else len(self.headers)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        if orientation == Qt.Orientation.Horizontal:
            if role == Qt.ItemDataRole.DisplayRole and 0 <= section < len(self.headers):
                return self.headers[section]
            if role == Qt.ItemDataRole.ToolTipRole and 0 <= section < len(self.headers):
                kind = ("run column" if section >= self.status_column() else "output column"
                        if section >= len(self.input_columns) else "input column, written over by a step"
                        if self.store.step_column_at(section) else "input column")
                return f"{self.headers[section]} ({kind}); click to sort"
            return None
        if 0 <= section < self.rowCount() and role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole):
            row = self.source_row(section)
            review = self.store.overrides.rows.get(row)
            if role == Qt.ItemDataRole.ToolTipRole:
                return f"Row {row + 1}: {review.decision} in review" if review is not None else None
            # the row's number in the sheet, sorted or not; a reviewed row's mark before it
            return f"{REVIEW_MARKS[review.decision]} {row + 1}" if review is not None else str(row + 1)
        return None

    def _input_row(self, row: int) -> dict[str, Any]:
        cached_row, values = self._row_cache
        if cached_row != row:
            values = self.rows.row(row)
            self._row_cache = (row, values)
        return values

    def raw_value(self, row: int, column: int) -> Any:
        """The value behind a cell, by row number (not view row)."""
        if column < len(self.store.table.columns):
            return self.store.value(row, column, self._input_row(row))
        return self.store.value(row, column)

    def shown_value(self, row: int, column: int) -> Any:
        """The value as the table shows it: the raw value, the status in the window's words."""
        value = self.raw_value(row, column)
        return status_word(value) if column == self.status_column() else value

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        column = index.column()
        row = self.source_row(index.row())
        if role == Qt.ItemDataRole.DisplayRole:
            return cell_text(self.shown_value(row, column))
        if role == Qt.ItemDataRole.BackgroundRole:
            if self.store.overrides.rows and self.store.edited(row, column):
                return edited_brush()
            return brushes()[0].get(self.status[row])
        if role == Qt.ItemDataRole.FontRole:
            return _italic() if self.store.overrides.rows and self.store.edited(row, column) else None
        status_col = self.status_column()
        if role == Qt.ItemDataRole.ForegroundRole:
            _rows, status_text, error_text, note_text = brushes()
            if column == status_col:
                return status_text.get(self.status[row])
            if column == status_col + 1 and self.status[row] == ev.ERROR:
                return error_text
            if column == status_col + 2:
                return note_text
            return None
        if role == Qt.ItemDataRole.DecorationRole:
            if column != status_col:
                return None
            result = self.results[row]
            if self.status[row] == ev.DONE and result is not None and result.note:
                return status_icon(ev.RETRYING)  # done, with a warning to read (the note column)
            return status_icon(self.status[row])
        if role == Qt.ItemDataRole.ToolTipRole:
            return self.tooltip(row, column)
        if role == Qt.ItemDataRole.TextAlignmentRole:
            value = self.raw_value(row, column)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            return None
        if role == RawRole:
            return self.raw_value(row, column)
        return None

    def tooltip(self, row: int, column: int) -> str | None:
        if self.store.overrides.rows and self.store.edited(row, column):
            was = display_text(self.store.step_value(row, self.store.step_column_at(column) or ""))
            return f"Edited in review (a manual override: a run keeps it).\nThe step wrote: {was[:1000] or '(blank)'}"
        result = self.results[row]
        if self.status[row] == ev.ERROR and result is not None:
            where = f" in step {result.failed_step}" if result.failed_step else ""
            kind = f"{result.error_type}: " if result.error_type and result.error_type not in result.error else ""
            return f"Row {row + 1} failed{where}:\n{kind}{result.error}"
        if self.status[row] == ev.RETRYING and row in self.notes:
            return self.notes[row]
        if self.status[row] == ev.DONE and result is not None and result.note:
            return f"Row {row + 1} finished with a warning:\n{result.note}"
        value = self.raw_value(row, column)
        if isinstance(value, str) and (len(value) > 60 or "\n" in value):
            return value[:4000]
        return None

    def flags(self, index):
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable

    # ---- a run's events ----------------------------------------------------------------------
    def run_starting(self, results: list[ev.RowResult | None], selection: Iterable[int]) -> None:
        """A run begins (see ResultStore.run_starting): the rows it will run show as queued."""
        self.store.run_starting(results, selection)
        self.run_started()

    def run_started(self) -> None:
        """The store was told a run begins: show every row afresh."""
        self._dirty.clear()
        if self.filtering():
            self._apply_order()
        self._refresh_all()

    def run_ended(self) -> None:
        """Rows still queued or in flight when a run stops did not finish: they show their last
        result, or "not run"."""
        self._dirty.update(self.store.run_ended())
        self.flush()

    def on_event(self, event: object) -> None:
        """An engine listener (for a model used without a session): the store updates, and
        tells `_mark` which row changed."""
        self.store.on_event(event)

    def _mark(self, row: int) -> None:
        self._dirty.add(row)
        if not self._timer.isActive():
            self._timer.start()

    def flush(self) -> None:
        """Tell the view which rows changed: one dataChanged per run of adjacent rows."""
        self._timer.stop()
        self._timer.setInterval(FLUSH_MS)
        if not self._dirty:
            return
        dirty, self._dirty = self._dirty, set()
        if self.filtering() and any(self.passes(i) != (self.view_row(i) >= 0) for i in dirty):
            # Rows enter or leave the filter: redo the order, but not more often than twice a second.
            wait = REFILTER_EVERY - (time.monotonic() - self._last_refilter)
            if wait > 0:
                self._dirty |= dirty
                self._timer.start(int(wait * 1000) + 1)
                return
            self._last_refilter = time.monotonic()
            self._apply_order()
            # and the rows still shown changed too (the inspector of a selected row follows it)
        rows = sorted(r for r in map(self.view_row, dirty) if r >= 0)
        last = self.columnCount() - 1
        start = prev = rows[0] if rows else 0
        for r in rows[1:]:
            if r != prev + 1:
                self.dataChanged.emit(self.index(start, 0), self.index(prev, last))
                start = r
            prev = r
        if rows:
            self.dataChanged.emit(self.index(start, 0), self.index(prev, last))

    def review_changed(self, row: int) -> None:
        """A row's review changed (gui/review.py): its row header's mark, and its cells (soon)."""
        self._mark(row)
        view_row = self.view_row(row)
        if view_row >= 0:
            self.headerDataChanged.emit(Qt.Orientation.Vertical, view_row, view_row)

    def _refresh_all(self) -> None:
        if self.rowCount() and self.columnCount():
            self.dataChanged.emit(self.index(0, 0), self.index(self.rowCount() - 1, self.columnCount() - 1))

    # ---- sorting and filtering (on the data) -------------------------------------------------------
    def sort(self, column: int, order=Qt.SortOrder.AscendingOrder) -> None:
        """Sort on one column (Qt's call); -1 shows the sheet's order."""
        self.set_sort_keys([(column, order)] if column >= 0 else [])

    def set_sort_keys(self, keys: Sequence[tuple[int, Qt.SortOrder]]) -> None:
        """Sort on these columns, the first the most significant ([]: the sheet's order). A big
        table is sorted in a worker thread (the window stays live) and the new order is shown
        when it is ready; `sorting` says when that starts and ends."""
        self.sort_keys = [(c, o) for c, o in keys if 0 <= c < self.columnCount()]
        self.sortChanged.emit()
        self._reorder()

    def filtering(self) -> bool:
        return bool(self.status_filter or self.column_filters)

    def passes(self, row: int) -> bool:
        """Whether a row passes the status and column filters as it is now."""
        if self.status_filter and self.status[row] != self.status_filter:
            return False
        return all(f.matches(display_text(self.shown_value(row, c))) for c, f in self.column_filters.items())

    def set_status_filter(self, status: str) -> None:
        """Show only rows with this status ('' shows every row)."""
        self.status_filter = status
        self.filtersChanged.emit()
        self._reorder()

    def set_column_filter(self, column: int, text: str, kind: str = "contains") -> None:
        """Show only rows whose cell in `column` contains (or reads) `text`; an empty text
        removes the column's filter."""
        if text == "" and kind == "contains":
            self.column_filters.pop(column, None)
        else:
            self.column_filters[column] = ColumnFilter(column, text, kind)
        self.filtersChanged.emit()
        self._reorder()

    def clear_filters(self) -> None:
        """Every row again (the status and every column filter; the sort stays)."""
        self.status_filter = ""
        self.column_filters = {}
        self.filtersChanged.emit()
        self._reorder()

    def _reorder(self) -> None:
        """Sort and filter again: at once for a small table, in a worker thread for a big one."""
        self._order_generation += 1
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None or len(self.rows) < BACKGROUND_SORT_ROWS or not (self.sort_keys or self.column_filters):
            self._apply_order()
            return
        self.sorting.emit(True)
        self._sort_task = loop.create_task(self._sort_in_thread(self._order_generation))

    async def _sort_in_thread(self, generation: int) -> None:
        # The sort reads a snapshot: a new table or results list mid-sort cannot be mixed in.
        snapshot = self.store.snapshot()
        try:
            async with gc_pause.paused():  # a million sort keys would set off full collections
                order = await asyncio.to_thread(compute_order, snapshot, self.status_filter, list(self.sort_keys),
                                                None, list(self.column_filters.values()))
            if generation == self._order_generation:  # nothing newer was asked for meanwhile
                self._set_order(*order)
        finally:  # a sort that fails must not leave "Sorting…" up for good
            self.sorting.emit(False)

    def _apply_order(self) -> None:
        self._set_order(*compute_order(self.store, self.status_filter, self.sort_keys, None,
                                       list(self.column_filters.values())))

    def _set_order(self, rows: list[int] | None, position: list[int] | None) -> None:
        self.layoutAboutToBeChanged.emit()
        old = [(p, self.source_row(p.row()) if p.row() < self.rowCount() else -1, p.column())
               for p in self.persistentIndexList()]
        self.order, self.position = rows, position
        self.changePersistentIndexList(
            [p for p, _, _ in old],
            [self.index(self.view_row(s), c) if s >= 0 and self.view_row(s) >= 0 else QModelIndex()
             for _, s, c in old])
        self.layoutChanged.emit()

    # ---- copying ------------------------------------------------------------------------------------
    def copy_text(self, indexes: Iterable[QModelIndex | QPersistentModelIndex], headers: bool = True) -> str:
        """The selected cells (with their headers), as tab-separated text that pastes into Excel."""
        cells = {(i.row(), i.column()) for i in indexes if i.isValid()}
        if not cells:
            return ""
        rows = sorted({r for r, _ in cells})
        columns = sorted({c for _, c in cells})
        lines = ["\t".join(tsv_cell(self.headers[c]) for c in columns)] if headers else []
        for r in rows:
            source = self.source_row(r)
            lines.append("\t".join(tsv_cell(self.shown_value(source, c)) if (r, c) in cells else ""
                                   for c in columns))
        return "\r\n".join(lines) + "\r\n"


def tsv_cell(value: Any) -> str:
    """One cell for Excel's paste: as display_text, quoted (with "" for ") when it holds a tab,
    newline or quote."""
    text = display_text(value)
    if any(ch in text for ch in '\t\n\r"'):
        return '"' + text.replace('"', '""') + '"'
    return text


def shown_texts(store: ResultStore, column: int) -> list[str]:
    """Every row's text in one column as the table shows it (safe in a worker thread)."""
    values = store.column_values(column)
    if column == len(store.table.columns) + len(store.output_columns):
        return [status_word(v) for v in values]
    texts: list[str] = []
    for start in range(0, len(values), 20_000):
        texts += [v if type(v) is str else display_text(v) for v in values[start:start + 20_000]]
        time.sleep(0)  # in a worker thread: let the window's thread in between chunks
    return texts


def _sort_rows(store: ResultStore, rows: list[int], column: int, order) -> list[int]:
    """`rows` stably sorted on one column, blanks last either way (as in Excel)."""
    values = store.column_values(column)
    if column == len(store.table.columns) + len(store.output_columns):
        values = [status_word(v) for v in values]
    keys = [sort_key(v) for v in values]
    reverse = order == Qt.SortOrder.DescendingOrder
    filled = [i for i in rows if keys[i][0] != 2]
    blank = [i for i in rows if keys[i][0] == 2]
    if all(keys[i][0] == 0 for i in filled):
        # numbers: numpy sorts without holding the GIL (a stable sort, like Python's)
        numbers = numpy.array([keys[i][1] for i in filled], dtype=float)
        ranks = numpy.argsort(-numbers if reverse else numbers, kind="stable").tolist()
        return [filled[j] for j in ranks] + blank
    return sorted(filled, key=lambda i: keys[i], reverse=reverse) + blank  # a key function lets other threads run


def compute_order(store: ResultStore, status_filter: str, sort_keys, sort_order=None,
                  column_filters: Sequence[ColumnFilter] = ()):
    """(order, position) for the filters and the sort keys: row numbers in view order, and
    each row's view row (-1: filtered out); (None, None) means every row, as is. `sort_keys` is a
    list of (column, order), the first the most significant (or one column with `sort_order`).
    A sort is a snapshot, as in a spreadsheet: rows do not jump while a run changes them. Runs
    in a worker thread for big tables, so the long parts let the window's thread in."""
    if isinstance(sort_keys, int):
        sort_keys = [(sort_keys, sort_order)] if sort_keys >= 0 else []
    n = len(store)
    rows = [i for i, s in enumerate(store.status) if s == status_filter] if status_filter else None
    for f in column_filters:
        if not 0 <= f.column < len(store.header):
            continue
        texts, match = shown_texts(store, f.column), f.matcher()
        rows = [i for i in (range(n) if rows is None else rows) if match(texts[i])]
    keys = [(c, o) for c, o in sort_keys if 0 <= c < len(store.header)]
    if keys:
        rows = list(range(n)) if rows is None else rows
        for column, order in reversed(keys):  # least significant first: each stable sort keeps the last
            rows = _sort_rows(store, rows, column, order)
    if rows is None:
        return None, None
    position = [-1] * n
    for view, source_row in enumerate(rows):
        position[source_row] = view
    return rows, position
