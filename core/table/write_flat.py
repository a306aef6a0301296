"""CSV and parquet: the flat exports, written atomically like the workbook.

CSV is UTF-8 with a BOM (so Excel detects the encoding), comma-separated, formula-safe
by the OWASP convention (see `cells`). Parquet keeps each column's type when it has one
type; a column mixing kinds (text and numbers, lists) is stored as text.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from .atomic import ExportError, atomic_path
from .cells import as_text, csv_value, is_missing, plain
from .frame import unique_names

PROGRESS_EVERY = 1000


def write_csv(header: Sequence[str], rows: Iterable[Sequence[Any]], path: Path, total: int,
              on_progress: Callable[[int, int], None] | None = None, delimiter: str = ",") -> Path:
    with atomic_path(path) as temp:
        with open(temp, "w", encoding="utf-8-sig", newline="") as f:
            writer = csv.writer(f, delimiter=delimiter)
            writer.writerow([csv_value(name) for name in header])
            for i, values in enumerate(rows):
                writer.writerow([csv_value(v) for v in values])
                if on_progress and (i + 1) % PROGRESS_EVERY == 0:
                    on_progress(i + 1, total)
    if on_progress:
        on_progress(total, total)
    return path


def write_parquet(header: Sequence[str], rows: Iterable[Sequence[Any]], path: Path, total: int,
                  on_progress: Callable[[int, int], None] | None = None) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = list(zip(*rows, strict=True)) or [()] * len(header)
    arrays = {name: _one_type(values) for name, values in zip(unique_names(list(header)), columns, strict=True)}
    try:
        table = pa.table(arrays)
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise ExportError(f"cannot write {path.name} as parquet: {exc}") from None
    with atomic_path(path) as temp:
        pq.write_table(table, temp)
    if on_progress:
        on_progress(total, total)
    return path


def _one_type(values: Sequence[Any]) -> list[Any]:
    """Values of one Python type as they are (blanks as None); a mix, or lists and dicts, as text."""
    values = [None if is_missing(v) else plain(v) for v in values]
    kinds = {type(v) for v in values if v is not None}
    if kinds <= {int, float} or (len(kinds) == 1 and not kinds & {list, tuple, dict, set}):
        return values
    return [None if v is None else as_text(v) for v in values]
