"""The one store of a sheet's results: every row's latest result, live status, streamed text
and notes ("retrying (2/4) in 3 s"). The session owns it; front ends read it.

Cells the user edited in a review (core/run/overrides.py) read as edited: the override is the
cell's value for the window, the summaries and every export, whatever a run writes later.

The Qt results model is a thin adapter over this store (it keeps only view state: sort
order, filter, which rows to repaint). The results list is the job's own list (the engine
fills it as rows finish), never a copy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from batchgrid.core.table import Table

from . import events as ev
from .journal import row_hash
from .overrides import ACCEPTED, EDITED, Overrides, Review
from .results import NOT_RUN, RUN_COLUMNS, ResultSet, output_position, split_outputs

UNFINISHED = (ev.QUEUED, ev.RUNNING, ev.RETRYING)
_RUN_READERS = [read for _, read in RUN_COLUMNS]


class ResultStore:
    def __init__(self) -> None:
        self.table: Table = Table([], [])
        self.step_columns: list[str] = []              # every column the steps write
        self.output_columns: list[str] = []            # the new ones, after the inputs
        self.written_inputs: set[str] = set()          # input columns a step writes over (in their place)
        self.results: list[ev.RowResult | None] = []
        self.status: list[str] = []                    # live status of every row
        self.partial: dict[int, dict[str, str]] = {}   # streamed text of rows still running
        self.notes: dict[int, str] = {}                # "retrying (2/4) in 3 s: ..." by row
        self.header: list[str] = []
        self.overrides = Overrides()                   # the sheet's reviews (the session loads them)
        self.on_change: Callable[[int], None] | None = None  # told each changed row (on the loop thread)

    # ---- what is held -----------------------------------------------------------------------
    def reset(self, table: Table, output_columns: Sequence[str],
              results: list[ev.RowResult | None] | None = None) -> None:
        """A new sheet, pipeline shape or set of results (`results` is kept, not copied)."""
        if table is not self.table:
            self.overrides = Overrides()  # another sheet's reviews are not these rows'
        self.table = table
        self.step_columns = list(output_columns)
        self.output_columns, self.written_inputs = split_outputs(table.columns, self.step_columns)
        self.results = results if results is not None else [None] * len(table)
        self.status = [NOT_RUN if r is None else r.status for r in self.results]
        # Same header as every export: run columns renamed when an input has their name.
        self.header = ResultSet(table, self.step_columns, self.results).header()
        self.partial.clear()
        self.notes.clear()

    def __len__(self) -> int:
        return len(self.table)

    @property
    def input_columns(self) -> list[str]:
        return self.table.columns

    def result_set(self, run_info: dict[str, Any] | None = None) -> ResultSet:
        return ResultSet(self.table, self.step_columns, self.results, run_info or {}, self.overrides.copy())

    def snapshot(self) -> ResultStore:
        """A copy that later events and resets do not change (for work in another thread)."""
        copy = ResultStore()
        copy.table, copy.output_columns, copy.header = self.table, list(self.output_columns), list(self.header)
        copy.step_columns, copy.written_inputs = list(self.step_columns), set(self.written_inputs)
        copy.results, copy.status = list(self.results), list(self.status)
        copy.partial = {i: dict(p) for i, p in self.partial.items()}
        copy.notes = dict(self.notes)
        copy.overrides = self.overrides.copy()
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
            name = self.table.columns[column]
            if name in self.written_inputs:  # a step writes over it: its value where it wrote one
                return self._output_value(row, name, self._input_value(row, name, input_row))
            return self._input_value(row, name, input_row)
        result = self.results[row]
        status_column = n_inputs + len(self.output_columns)
        if column < status_column:
            return self._output_value(row, self.output_columns[column - n_inputs], None)
        k = column - status_column
        status = self.status[row]
        if k == 0:
            return status
        if k == 1 and status == ev.RETRYING and row in self.notes:
            return self.notes[row]
        if result is None or status in UNFINISHED:
            return None
        return _RUN_READERS[k](result)

    def _input_value(self, row: int, name: str, input_row: dict[str, Any] | None) -> Any:
        return input_row.get(name) if input_row is not None else self.table.column(name)[row]

    def _output_value(self, row: int, name: str, otherwise: Any) -> Any:
        """A step's output cell: the user's edit, else what the step wrote, else its streamed text
        so far, else `otherwise` (blank; the sheet's value for an input column written over)."""
        review = self.overrides.rows.get(row)
        if review is not None and name in review.edits:
            return review.edits[name]
        result = self.results[row]
        if result is not None and name in result.outputs:
            return result.outputs[name]
        streamed = self.partial.get(row)
        return streamed.get(name, otherwise) if streamed else otherwise

    def step_value(self, row: int, name: str) -> Any:
        """What the steps wrote in output column `name` of a row (under any edit of the user's)."""
        result = self.results[row]
        return result.outputs.get(name) if result is not None else None

    def edited(self, row: int, column: int) -> bool:
        """The cell holds a value the user edited in a review."""
        review = self.overrides.rows.get(row)
        if review is None or not review.edits:
            return False
        name = self.step_column_at(column)
        return name is not None and name in review.edits

    def step_column_at(self, column: int) -> str | None:
        """The step output shown in table column `column` (an input a step writes over, or a new
        column); None for the sheet's own inputs and the run columns."""
        n_inputs = len(self.table.columns)
        if column < n_inputs:
            name = self.table.columns[column]
            return name if name in self.written_inputs else None
        k = column - n_inputs
        return self.output_columns[k] if k < len(self.output_columns) else None

    def column_position(self, name: str) -> int:
        """Where a step's output column stands in the table (its input's place when it writes over one)."""
        return output_position(self.table.columns, self.output_columns, name)

    # ---- the review pass --------------------------------------------------------------------
    def review(self, row: int, decision: str | None, edits: dict[str, Any] | None = None) -> Review | None:
        """Record the user's decision on a row (core/run/overrides.py), in the journal at once.
        `edits` (output column -> value) are merged with the row's earlier edits; a value equal to
        what the steps wrote is no edit. Accepting a row with edits keeps them ("edited"); None
        forgets the row's review and its edits. Then `on_change(row)`."""
        if not 0 <= row < len(self.table):
            raise IndexError(f"no row {row + 1} in this sheet")
        if decision is None:
            self.overrides.forget([row])
        else:
            unknown = [c for c in edits or {} if c not in self.step_columns]
            if unknown:
                raise ValueError(f"only the steps' output columns can be edited, not {', '.join(unknown)}")
            previous = self.overrides.get(row)
            merged = dict(previous.edits) if previous is not None else {}
            for name, value in (edits or {}).items():
                if _same(value, self.step_value(row, name)):
                    merged.pop(name, None)
                else:
                    merged[name] = value
            if decision in (ACCEPTED, EDITED):
                decision = EDITED if merged else ACCEPTED
            self.overrides.decide(row, decision, row_hash(self.table.row(row)), merged)
        if self.on_change is not None:
            self.on_change(row)
        return self.overrides.get(row)

    def forget_reviews(self, rows: Iterable[int] | None = None) -> list[int]:
        """Forget the reviews (and edits) of `rows`, every row's when None; the rows that changed."""
        gone = self.overrides.forget(rows)
        if self.on_change is not None:
            for row in gone:
                self.on_change(row)
        return gone

    def column_values(self, column: int) -> list[Any]:
        """Every row's value in one column, in row order (safe to call from a worker thread)."""
        if column < len(self.table.columns) and self.table.columns[column] not in self.written_inputs:
            return list(self.table.column(self.table.columns[column]))
        return [self.value(i, column) for i in range(len(self.table))]


def _same(a: Any, b: Any) -> bool:
    """Whether an edited value is what the step wrote (an array's == is no answer: not the same)."""
    try:
        return type(a) is type(b) and bool(a == b)
    except (TypeError, ValueError):
        return False
