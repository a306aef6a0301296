"""The one store of a sheet's results: every row's latest result, live status, streamed text
and notes ("retrying (2/4) in 3 s"). The session owns it; front ends read it.

The Qt results model is a thin adapter over this store (it keeps only view state: sort
order, filter, which rows to repaint). The results list is the job's own list (the engine
fills it as rows finish), never a copy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from batchgrid.core.table import Table

from . import events as ev
from .results import NOT_RUN, RUN_COLUMNS, ResultSet

UNFINISHED = (ev.QUEUED, ev.RUNNING, ev.RETRYING)
_RUN_READERS = [read for _, read in RUN_COLUMNS]


class ResultStore:
    def __init__(self) -> None:
        self.table: Table = Table([], [])
        self.output_columns: list[str] = []
        self.results: list[ev.RowResult | None] = []
        self.status: list[str] = []                    # live status of every row
        self.partial: dict[int, dict[str, str]] = {}   # streamed text of rows still running
        self.notes: dict[int, str] = {}                # "retrying (2/4) in 3 s: ..." by row
        self.header: list[str] = []
        self.on_change: Callable[[int], None] | None = None  # told each changed row (on the loop thread)

    # ---- what is held -----------------------------------------------------------------------
    def reset(self, table: Table, output_columns: Sequence[str],
              results: list[ev.RowResult | None] | None = None) -> None:
        """A new sheet, pipeline shape or set of results (`results` is kept, not copied)."""
        self.table = table
        self.output_columns = list(output_columns)
        self.results = results if results is not None else [None] * len(table)
        self.status = [NOT_RUN if r is None else r.status for r in self.results]
        # Same header as every export: run columns renamed when an input has their name.
        self.header = ResultSet(table, self.output_columns, self.results).header()
        self.partial.clear()
        self.notes.clear()

    def __len__(self) -> int:
        return len(self.table)

    @property
    def input_columns(self) -> list[str]:
        return self.table.columns

    def result_set(self, run_info: dict[str, Any] | None = None) -> ResultSet:
        return ResultSet(self.table, self.output_columns, self.results, run_info or {})

    def snapshot(self) -> ResultStore:
        """A copy that later events and resets do not change (for work in another thread)."""
        copy = ResultStore()
        copy.table, copy.output_columns, copy.header = self.table, list(self.output_columns), list(self.header)
        copy.results, copy.status = list(self.results), list(self.status)
        copy.partial = {i: dict(p) for i, p in self.partial.items()}
        copy.notes = dict(self.notes)
        return copy

    def count(self, status: str) -> int:
        return self.status.count(status)

    # ---- a run's events ---------------------------------------------------------------------
    def run_starting(self, results: list[ev.RowResult | None], selection: Iterable[int]) -> None:
        """A run begins over `results` (the engine's list: rows it will not run keep theirs);
        the rows it will run show as queued."""
        self.results = results
        self.status = [NOT_RUN if r is None else r.status for r in results]
        for i in selection:
            self.status[i] = ev.QUEUED
        self.partial.clear()
        self.notes.clear()

    def run_ended(self) -> list[int]:
        """Rows still queued or in flight when a run ends did not finish: they show their last
        result, or "not run". Returns the rows that changed."""
        changed = []
        for i, status in enumerate(self.status):
            if status in UNFINISHED:
                result = self.results[i]
                self.status[i] = NOT_RUN if result is None else result.status
                changed.append(i)
        self.partial.clear()
        self.notes.clear()
        return changed

    def on_event(self, event: object) -> None:
        """An engine listener: quick (a few list writes), then `on_change(row)`."""
        kind = type(event)
        if kind is ev.RowStarted:
            i = event.index  # type: ignore[attr-defined]
            self.status[i] = ev.RUNNING
        elif kind is ev.RowDone or kind is ev.RowFailed or kind is ev.RowCancelled:
            i = event.index  # type: ignore[attr-defined]
            result = event.result  # type: ignore[attr-defined]
            self.results[i] = result
            self.status[i] = result.status
            self.partial.pop(i, None)
            self.notes.pop(i, None)
        elif kind is ev.RowPartial:
            i = event.index  # type: ignore[attr-defined]
            self.partial.setdefault(i, {})[event.column] = event.text  # type: ignore[attr-defined]
        elif kind is ev.RowRetrying:
            i = event.index  # type: ignore[attr-defined]
            self.status[i] = ev.RETRYING
            self.notes[i] = event.describe()  # type: ignore[attr-defined]
        else:
            return
        if self.on_change is not None:
            self.on_change(i)

    # ---- reading cells ----------------------------------------------------------------------
    def value(self, row: int, column: int, input_row: dict[str, Any] | None = None) -> Any:
        """The value behind one cell of the results table (inputs, outputs, run columns).
        `input_row` is the row's inputs when the caller already has them (a cache)."""
        n_inputs = len(self.table.columns)
        if column < n_inputs:
            if input_row is not None:
                return input_row.get(self.table.columns[column])
            return self.table.column(self.table.columns[column])[row]
        result = self.results[row]
        status_column = n_inputs + len(self.output_columns)
        if column < status_column:
            name = self.output_columns[column - n_inputs]
            if result is not None and name in result.outputs:
                return result.outputs[name]
            streamed = self.partial.get(row)
            return streamed.get(name) if streamed else None
        k = column - status_column
        status = self.status[row]
        if k == 0:
            return status
        if k == 1 and status == ev.RETRYING and row in self.notes:
            return self.notes[row]
        if result is None or status in UNFINISHED:
            return None
        return _RUN_READERS[k](result)

    def column_values(self, column: int) -> list[Any]:
        """Every row's value in one column, in row order (safe to call from a worker thread)."""
        if column < len(self.table.columns):
            return list(self.table.column(self.table.columns[column]))
        return [self.value(i, column) for i in range(len(self.table))]
