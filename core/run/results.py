"""A run's results as one table: input columns, output columns, run columns, in input order.

The CLI, the window and every export read results through this one shape, so "what a
results row is" is decided once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from batchgrid.core.table import Table

from . import events as ev
from .overrides import REVIEW_COLUMN, Overrides

NOT_RUN = "not run"

# Run columns, after the outputs: (header, how to read it off a RowResult).
# The word a user reads for a status where it differs from the engine's: a row the user stopped
# is "stopped" in the window's cells, filter, inspector and summaries, and in every export.
STATUS_WORDS = {ev.CANCELLED: "stopped"}


def status_word(status: str) -> str:
    return STATUS_WORDS.get(status, status)


RUN_COLUMNS: tuple[tuple[str, Any], ...] = (
    ("status", lambda r: status_word(r.status)),
    ("error", lambda r: r.error),
    ("note", lambda r: r.note or None),  # a finished row's warnings ("LLM: the answer was cut off ...")
    ("failed step", lambda r: r.failed_step),
    ("attempts", lambda r: r.attempts),
    ("latency (s)", lambda r: round(r.latency, 3)),
    ("tokens", lambda r: r.tokens or None),
    ("cost", lambda r: round(r.cost, 6) if r.cost else None),
)
RUN_COLUMN_NAMES = tuple(name for name, _ in RUN_COLUMNS)


def split_outputs(input_columns: Sequence[str], step_columns: Sequence[str]) -> tuple[list[str], set[str]]:
    """The steps' output columns as the results table places them: (the new columns, after the
    inputs; the input columns a step writes over, which keep their place)."""
    inputs = set(input_columns)
    return [c for c in step_columns if c not in inputs], {c for c in step_columns if c in inputs}


def output_position(input_columns: Sequence[str], new_columns: Sequence[str], name: str) -> int:
    """Where a step's output column `name` stands in the results table (split_outputs' two parts):
    its input's place when it writes over one, else among the new columns after the inputs."""
    if name in new_columns:
        return len(input_columns) + list(new_columns).index(name)
    return list(input_columns).index(name)


@dataclass
class ResultSet:
    rows: Table
    # Given: every column the steps write. Kept: the new ones (after the inputs); `step_columns`
    # keeps what was given, and `written_inputs` the input columns a step writes over (a row the
    # step did not write, or that did not run, shows the sheet's value there).
    output_columns: list[str]
    results: Sequence[ev.RowResult | None]
    run_info: dict[str, Any] = field(default_factory=dict)  # shown on the export's "Run" sheet
    # The review pass (core/run/overrides.py): edited cells read as edited, and a last "review"
    # column (reviewed / edited / rejected) once any row is reviewed.
    overrides: Overrides | None = None

    def __post_init__(self) -> None:
        self.step_columns = list(self.output_columns)
        self.output_columns, self.written_inputs = split_outputs(self.rows.columns, self.step_columns)
        self._written_at = {name: self.rows.columns.index(name) for name in self.written_inputs}

    def column_position(self, name: str) -> int:
        """Where a step's output column stands in `header()`: its input's place when it writes over one."""
        if name in self._written_at:
            return self._written_at[name]
        return output_position(self.rows.columns, self.output_columns, name)

    @property
    def input_columns(self) -> list[str]:
        return self.rows.columns

    def header(self) -> list[str]:
        taken = set(self.input_columns) | set(self.output_columns)
        # A run column never hides an input column of the same name ("status" is common).
        run = [name if name not in taken else f"run {name}" for name in self.run_column_names()]
        return [*self.input_columns, *self.output_columns, *run]

    def run_column_names(self) -> tuple[str, ...]:
        return RUN_COLUMN_NAMES + ((REVIEW_COLUMN,) if self.overrides else ())

    def __len__(self) -> int:
        return len(self.rows)

    def row_values(self, index: int) -> list[Any]:
        values = self.rows.values(index)
        result = self.results[index]
        if result is None:
            values += [None] * len(self.output_columns)
            values += [NOT_RUN] + [None] * (len(RUN_COLUMNS) - 1)
        else:
            outputs = result.outputs
            for name, at in self._written_at.items():
                if name in outputs:
                    values[at] = outputs[name]
            values += [outputs.get(c) for c in self.output_columns]
            values += [read(result) for _, read in RUN_COLUMNS]
        if self.overrides:
            review = self.overrides.get(index)
            if review is not None:
                for column, value in review.edits.items():
                    if column in self.step_columns:
                        values[self.column_position(column)] = value
            values.append(self.overrides.word(index))
        return values

    def edited_columns(self, index: int) -> list[int]:
        """The positions (in `header()`) of the row's cells the user edited in a review."""
        review = self.overrides.get(index) if self.overrides else None
        if review is None or not review.edits:
            return []
        return sorted(self.column_position(c) for c in self.step_columns if c in review.edits)

    def review_summary(self) -> str:
        """'412 accepted, 23 edited, 9 rejected of 500' ('' when no row is reviewed)."""
        return self.overrides.summary(len(self.rows)) if self.overrides else ""

    def iter_rows(self) -> Iterator[list[Any]]:
        for i in range(len(self.rows)):
            yield self.row_values(i)

    def status(self, index: int) -> str:
        result = self.results[index]
        return NOT_RUN if result is None else result.status

    def error_indexes(self) -> list[int]:
        return [i for i, r in enumerate(self.results) if r is not None and r.status == ev.ERROR]

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.results:
            key = NOT_RUN if r is None else r.status
            counts[key] = counts.get(key, 0) + 1
        return counts

    def to_frame(self):
        """The whole table as a pandas DataFrame (for csv/parquet export and tests)."""
        import pandas as pd

        return pd.DataFrame(list(self.iter_rows()), columns=self.header())
