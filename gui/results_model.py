"""The results table: input columns, output columns, run columns, filled in as rows finish.

Built to stay quick with a million rows and thousands of events a second:
- state is kept in plain lists indexed by row number (no DataFrame lookups per cell);
- engine events only update those lists and mark rows dirty; a 40 ms single-shot timer
  then emits one dataChanged per run of contiguous dirty rows (never a model reset);
- sorting and the status filter reorder a list of row numbers (`order`), computed on the
  data, instead of a QSortFilterProxyModel calling data() a million times.
"""

from __future__ import annotations

import asyncio
import datetime
import math
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy
from batchgrid.core.run import events as ev
from batchgrid.core.run.results import NOT_RUN, RUN_COLUMNS, ResultSet
from batchgrid.core.table import Table
from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt, QTimer, Signal
from PySide6.QtGui import QBrush, QColor

from . import gc_pause
from .icons import status_icon

FLUSH_MS = 40
REFILTER_EVERY = 0.5  # seconds between re-filterings while rows change status
BACKGROUND_SORT_ROWS = 100_000  # from this many rows, sorting runs in a worker thread
TEXT_LIMIT = 300  # characters shown in a cell; the tooltip and the inspector show the rest

ROW_BRUSH = {
    ev.ERROR: QBrush(QColor("#fdecec")),
    ev.CANCELLED: QBrush(QColor("#f1f2f4")),
}
STATUS_TEXT_BRUSH = {
    ev.DONE: QBrush(QColor("#17804a")),
    ev.ERROR: QBrush(QColor("#c62828")),
    ev.RUNNING: QBrush(QColor("#2f6fde")),
    ev.RETRYING: QBrush(QColor("#b86514")),
    ev.QUEUED: QBrush(QColor("#6b7580")),
    ev.CANCELLED: QBrush(QColor("#6b7580")),
    NOT_RUN: QBrush(QColor("#9aa3ad")),
}
ERROR_TEXT_BRUSH = QBrush(QColor("#b71c1c"))
STATUSES = (ev.QUEUED, ev.RUNNING, ev.RETRYING, ev.DONE, ev.ERROR, ev.CANCELLED, NOT_RUN)

RawRole = Qt.ItemDataRole.UserRole + 10  # the unformatted value (tests, copy)


def plain_text(value: Any) -> str:
    """A value as a person reads it: blanks empty, 3.0 as 3, a midnight date as a date."""
    if value is None:
        return ""
    if isinstance(value, datetime.datetime):
        return value.date().isoformat() if value.time() == datetime.time() else value.isoformat(sep=" ")
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.6g}"
    return value if isinstance(value, str) else str(value)


def cell_text(value: Any) -> str:
    """How a value reads in a cell: as plain_text, on one line, long text cut short."""
    text = plain_text(value)
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

    def __init__(self, parent=None):
        super().__init__(parent)
        self.rows: Table = Table([], [])
        self.input_columns: list[str] = []
        self.output_columns: list[str] = []
        self.headers: list[str] = []
        self.run_readers: list[Callable] = []
        self.results: list[ev.RowResult | None] = []
        self.status: list[str] = []               # live status of every row
        self.partial: dict[int, dict[str, str]] = {}  # streamed text of rows still running
        self.notes: dict[int, str] = {}           # "retrying (2/4) in 3 s: ..." by row
        self.order: list[int] | None = None       # view row -> row number; None: all, in order
        self.position: list[int] | None = None    # row number -> view row (-1: filtered out)
        self.sort_column = -1
        self.sort_order = Qt.SortOrder.AscendingOrder
        self.status_filter: str = ""
        self._dirty: set[int] = set()
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(FLUSH_MS)
        self._timer.timeout.connect(self.flush)
        self._row_cache: tuple[int, dict[str, Any]] = (-1, {})
        self._n_inputs = 0
        self._n_outputs = 0
        self._last_refilter = 0.0
        self._order_generation = 0  # bumped by every new sort, filter or table
        self._sort_task: asyncio.Task | None = None

    # ---- what is shown ---------------------------------------------------------------------
    def set_table(self, rows: Table, output_columns: Sequence[str],
                  results: Sequence[ev.RowResult | None] | None = None) -> None:
        """A new sheet or pipeline: new columns, and the results known so far (or none)."""
        self.beginResetModel()
        self.rows = rows
        self.input_columns = list(rows.columns)
        self.output_columns = list(output_columns)
        n = len(rows)
        self.results = list(results) if results is not None else [None] * n
        self.status = [NOT_RUN if r is None else r.status for r in self.results]
        # Same header as every export: run columns renamed when an input has their name.
        self.headers = ResultSet(rows, self.output_columns, self.results).header()
        self.run_readers = [read for _, read in RUN_COLUMNS]
        self._n_inputs, self._n_outputs = len(self.input_columns), len(self.output_columns)
        self.partial.clear()
        self.notes.clear()
        self._dirty.clear()
        self._row_cache = (-1, {})
        self._timer.stop()
        self.order = self.position = None
        self._order_generation += 1
        self.sort_column = -1
        self.status_filter = ""
        self.endResetModel()

    def set_output_columns(self, output_columns: Sequence[str]) -> None:
        if list(output_columns) != self.output_columns:
            self.set_table(self.rows, output_columns, self.results)

    def status_column(self) -> int:
        return self._n_inputs + self._n_outputs

    def error_column(self) -> int:
        return self.status_column() + 1

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
                kind = ("input column" if section < self._n_inputs else
                        "output column" if section < self.status_column() else "run column")
                return f"{self.headers[section]} ({kind}); click to sort"
            return None
        if role == Qt.ItemDataRole.DisplayRole and 0 <= section < self.rowCount():
            return str(self.source_row(section) + 1)  # the row's number in the sheet, sorted or not
        return None

    def _input_row(self, row: int) -> dict[str, Any]:
        cached_row, values = self._row_cache
        if cached_row != row:
            values = self.rows.row(row)
            self._row_cache = (row, values)
        return values

    def raw_value(self, row: int, column: int) -> Any:
        """The value behind a cell, by row number (not view row)."""
        if column < self._n_inputs:
            return self._input_row(row).get(self.input_columns[column])
        result = self.results[row]
        if column < self.status_column():
            name = self.output_columns[column - self._n_inputs]
            if result is not None and name in result.outputs:
                return result.outputs[name]
            streamed = self.partial.get(row)
            return streamed.get(name) if streamed else None
        k = column - self.status_column()
        if k == 0:
            return self.status[row]
        if k == 1 and row in self.notes and self.status[row] == ev.RETRYING:
            return self.notes[row]
        if result is None or self.status[row] in (ev.QUEUED, ev.RUNNING, ev.RETRYING):
            return None
        return self.run_readers[k](result)

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        column = index.column()
        row = self.source_row(index.row())
        if role == Qt.ItemDataRole.DisplayRole:
            return cell_text(self.raw_value(row, column))
        if role == Qt.ItemDataRole.BackgroundRole:
            return ROW_BRUSH.get(self.status[row])
        status_col = self.status_column()
        if role == Qt.ItemDataRole.ForegroundRole:
            if column == status_col:
                return STATUS_TEXT_BRUSH.get(self.status[row])
            if column == status_col + 1 and self.status[row] == ev.ERROR:
                return ERROR_TEXT_BRUSH
            return None
        if role == Qt.ItemDataRole.DecorationRole:
            return status_icon(self.status[row]) if column == status_col else None
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
        result = self.results[row]
        if self.status[row] == ev.ERROR and result is not None:
            where = f" in step {result.failed_step}" if result.failed_step else ""
            kind = f"{result.error_type}: " if result.error_type and result.error_type not in result.error else ""
            return f"Row {row + 1} failed{where}:\n{kind}{result.error}"
        if self.status[row] == ev.RETRYING and row in self.notes:
            return self.notes[row]
        value = self.raw_value(row, column)
        if isinstance(value, str) and (len(value) > 60 or "\n" in value):
            return value[:4000]
        return None

    def flags(self, index):
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable

    # ---- a run's events ----------------------------------------------------------------------
    def run_starting(self, results: Sequence[ev.RowResult | None], selection: Iterable[int]) -> None:
        """A run begins: `results` are the engine's (rows it will not run keep theirs, from this
        session or the journal); the rows it will run show as queued."""
        self.results = list(results)
        self.status = [NOT_RUN if r is None else r.status for r in self.results]
        for i in selection:
            self.status[i] = ev.QUEUED
        self.partial.clear()
        self.notes.clear()
        self._dirty.clear()
        if self.status_filter:
            self._apply_order()
        self._refresh_all()

    def run_ended(self) -> None:
        """Rows still queued or in flight when a run stops did not finish: they show their last
        result, or "not run"."""
        unfinished = (ev.QUEUED, ev.RUNNING, ev.RETRYING)
        for i, status in enumerate(self.status):
            if status in unfinished:
                result = self.results[i]
                self.status[i] = NOT_RUN if result is None else result.status
                self._dirty.add(i)
        self.partial.clear()
        self.notes.clear()
        self.flush()

    def on_event(self, event: object) -> None:
        """An engine listener: runs on the loop thread, so it only updates lists and marks rows."""
        kind = type(event)
        if kind is ev.RowStarted:
            i = event.index
            self.status[i] = ev.RUNNING
        elif kind is ev.RowDone or kind is ev.RowFailed or kind is ev.RowCancelled:
            i = event.index
            self.results[i] = event.result
            self.status[i] = event.result.status
            self.partial.pop(i, None)
            self.notes.pop(i, None)
        elif kind is ev.RowPartial:
            i = event.index
            self.partial.setdefault(i, {})[event.column] = event.text
        elif kind is ev.RowRetrying:
            i = event.index
            self.status[i] = ev.RETRYING
            self.notes[i] = event.describe()
        else:
            return
        self._dirty.add(i)
        if not self._timer.isActive():
            self._timer.start()

    def flush(self) -> None:
        """Tell the view which rows changed: one dataChanged per run of adjacent rows."""
        self._timer.stop()
        self._timer.setInterval(FLUSH_MS)
        if not self._dirty:
            return
        dirty, self._dirty = self._dirty, set()
        if self.status_filter and any((self.status[i] == self.status_filter) != (self.view_row(i) >= 0)
                                      for i in dirty):
            # Rows enter or leave the filter: redo the order, but not more often than twice a second.
            wait = REFILTER_EVERY - (time.monotonic() - self._last_refilter)
            if wait > 0:
                self._dirty |= dirty
                self._timer.start(int(wait * 1000) + 1)
                return
            self._last_refilter = time.monotonic()
            self._apply_order()
            return
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

    def _refresh_all(self) -> None:
        if self.rowCount() and self.columnCount():
            self.dataChanged.emit(self.index(0, 0), self.index(self.rowCount() - 1, self.columnCount() - 1))

    # ---- sorting and filtering (on the data) -------------------------------------------------------
    def sort(self, column: int, order=Qt.SortOrder.AscendingOrder) -> None:
        """Sort on the data. A big table is sorted in a worker thread (the window stays live) and
        the new order is shown when it is ready; `sorting` says when that starts and ends."""
        self.sort_column, self.sort_order = column, order
        self._order_generation += 1
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None or len(self.rows) < BACKGROUND_SORT_ROWS or not 0 <= column < self.columnCount():
            self._apply_order()
            return
        self.sorting.emit(True)
        self._sort_task = loop.create_task(self._sort_in_thread(self._order_generation))

    async def _sort_in_thread(self, generation: int) -> None:
        async with gc_pause.paused():  # a million sort keys would set off full collections
            order = await asyncio.to_thread(self._compute_order, self.status_filter, self.sort_column,
                                            self.sort_order)
        if generation == self._order_generation:  # nothing newer was asked for meanwhile
            self._set_order(*order)
        self.sorting.emit(False)

    def set_status_filter(self, status: str) -> None:
        """Show only rows with this status ('' shows every row)."""
        self.status_filter = status
        self._order_generation += 1
        self._apply_order()

    def column_values(self, column: int) -> list[Any]:
        """Every row's value in one column, in row order (safe to call from a worker thread)."""
        if column < self._n_inputs:
            name = self.input_columns[column]
            column_of = getattr(self.rows, "column", None)
            if column_of is not None:
                return list(column_of(name))
            return [self.rows.row(i).get(name) for i in range(len(self.rows))]
        return [self.raw_value(i, column) for i in range(len(self.rows))]

    def _apply_order(self) -> None:
        self._set_order(*self._compute_order(self.status_filter, self.sort_column, self.sort_order))

    def _compute_order(self, status_filter: str, sort_column: int, sort_order):
        """(order, position) for a filter and a sort column: row numbers in view order, and each
        row's view row (-1: filtered out); (None, None) means every row, as is. A sort is a
        snapshot, as in a spreadsheet: rows do not jump while a run changes them. Runs in a
        worker thread for big tables, so the long parts let the window's thread in."""
        n = len(self.rows)
        rows = [i for i, s in enumerate(self.status) if s == status_filter] if status_filter else None
        if 0 <= sort_column < self.columnCount():
            keys = [sort_key(v) for v in self.column_values(sort_column)]
            source = range(n) if rows is None else rows
            reverse = sort_order == Qt.SortOrder.DescendingOrder
            filled = [i for i in source if keys[i][0] != 2]
            blank = [i for i in source if keys[i][0] == 2]  # blanks stay last either way, as in Excel
            if all(keys[i][0] == 0 for i in filled):
                # numbers: numpy sorts without holding the GIL (a stable sort, like Python's)
                values = numpy.array([keys[i][1] for i in filled], dtype=float)
                ranks = numpy.argsort(-values if reverse else values, kind="stable").tolist()
                rows = [filled[j] for j in ranks] + blank
            else:  # a Python key function lets other threads run during the sort
                rows = sorted(filled, key=lambda i: keys[i], reverse=reverse) + blank
        if rows is None:
            return None, None
        position = [-1] * n
        for view, source_row in enumerate(rows):
            position[source_row] = view
        return rows, position

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
    def copy_text(self, indexes: Iterable[QModelIndex | QPersistentModelIndex]) -> str:
        """The selected cells with their headers, as tab-separated text that pastes into Excel."""
        cells = {(i.row(), i.column()) for i in indexes if i.isValid()}
        if not cells:
            return ""
        rows = sorted({r for r, _ in cells})
        columns = sorted({c for _, c in cells})
        lines = ["\t".join(tsv_cell(self.headers[c]) for c in columns)]
        for r in rows:
            source = self.source_row(r)
            lines.append("\t".join(tsv_cell(self.raw_value(source, c)) if (r, c) in cells else ""
                                   for c in columns))
        return "\r\n".join(lines) + "\r\n"


def tsv_cell(value: Any) -> str:
    """One cell for Excel's paste: quoted (with "" for ") when it holds a tab, newline or quote."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float) and value.is_integer():
        text = str(int(value))
    else:
        text = value if isinstance(value, str) else str(value)
    if any(ch in text for ch in '\t\n\r"'):
        return '"' + text.replace('"', '""') + '"'
    return text
