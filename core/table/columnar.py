"""The columnar table every layer reads rows from: the sheet as read, one list per column."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


class Table:
    """An input table held by column; rows are produced one at a time as plain dicts (blank cells are None)."""

    def __init__(self, columns: Sequence[str], column_values: Sequence[Sequence[Any]],
                 notes: Sequence[str] = ()):
        self.columns = list(columns)
        self.notes = list(notes)  # the reader's one-line notes for the user (frame.Grid.notes)
        self._values = column_values
        self._len = len(column_values[0]) if column_values else 0

    @classmethod
    def from_frame(cls, frame) -> Table:
        import pandas as pd

        columns = [str(c) for c in frame.columns]
        values = []
        for c in frame.columns:
            series = frame[c]
            # Blank cells become None: a step sees "no value", never a float NaN.
            values.append([None if v is None or (isinstance(v, float) and v != v) or v is pd.NaT else v
                           for v in series.tolist()])
        return cls(columns, values, frame.attrs.get("notes", ()))

    @classmethod
    def from_records(cls, records: Sequence[Mapping[str, Any]]) -> Table:
        columns = list(dict.fromkeys(k for r in records for k in r))
        return cls(columns, [[r.get(c) for r in records] for c in columns])

    def __len__(self) -> int:
        return self._len

    def row(self, index: int) -> dict[str, Any]:
        return {c: v[index] for c, v in zip(self.columns, self._values, strict=True)}

    def column(self, name: str) -> Sequence[Any]:
        """One column's values, in row order (for sorting and filtering without a dict per row)."""
        return self._values[self.columns.index(name)]

    def values(self, index: int) -> list[Any]:
        """One row's values in column order (no dict: for exports and tables)."""
        return [v[index] for v in self._values]
