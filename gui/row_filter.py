"""Show only some rows of the results table: the rows behind a bar clicked in a column summary,
on top of the model's own status filter and sort.

The results model (results_model.py) keeps its view as a list of row numbers and sets it in one
place, `_set_order(rows, position)`, whatever asked for it (a sort, in a worker thread or not, the
status filter, a refilter during a run). A QSortFilterProxyModel would call data() on every row
and would break the view's `source_row` (the inspector, copy and export all use it), so instead
this wraps that one method on the model instance and keeps only the rows of a mask. The model
needs no change; a `row_filter` hook there (see the column summary's note in docs/window.md)
would make this wrapper unnecessary.
"""

from __future__ import annotations

import time

import numpy
from PySide6.QtCore import QObject, Signal

from .results_model import REFILTER_EVERY, ResultsModel


class RowFilter(QObject):
    changed = Signal()  # a filter was set, cleared, or its rows changed

    def __init__(self, model: ResultsModel, parent=None):
        super().__init__(parent)
        self.model = model
        self.keep: numpy.ndarray | None = None  # a bool per row number; None: no filter
        self.label = ""
        self._last_apply = 0.0
        self._pending = False
        original = model._set_order

        def set_order(rows, position):
            keep = self.keep
            if keep is not None and len(keep) == len(model.store):
                rows = numpy.flatnonzero(keep).tolist() if rows is None else [r for r in rows if keep[r]]
                position = [-1] * len(keep)
                for view, row in enumerate(rows):
                    position[row] = view
            original(rows, position)

        model._set_order = set_order
        model.modelReset.connect(self._model_reset)

    @property
    def active(self) -> bool:
        return self.keep is not None

    def set_mask(self, keep: numpy.ndarray, label: str) -> None:
        """Show only the rows where `keep` is true (with the model's sort and status filter)."""
        self.keep, self.label = keep.astype(bool, copy=True), label
        self.apply()

    def clear(self) -> None:
        if self.keep is None:
            return
        self.keep, self.label = None, ""
        self.apply()

    def update_rows(self, rows: dict[int, bool]) -> None:
        """Rows changed during a run: `rows` says which of them match now. The table follows,
        but not more often than the model refilters (twice a second)."""
        keep = self.keep
        if keep is None:
            return
        moved = False
        for row, match in rows.items():
            if row < len(keep) and keep[row] != match:
                keep[row] = match
                moved = True
        if moved or self._pending:
            wait = REFILTER_EVERY - (time.monotonic() - self._last_apply)
            if wait > 0:
                self._pending = True  # applied by a later refresh
                return
            self.apply()

    def apply(self) -> None:
        self._pending = False
        self._last_apply = time.monotonic()
        self.model._apply_order()
        self.changed.emit()

    def shown(self) -> int:
        return self.model.rowCount()

    def _model_reset(self) -> None:
        """A new sheet, pipeline or results: the mask was for other rows."""
        if self.keep is not None:
            self.keep, self.label, self._pending = None, "", False
            self.changed.emit()
