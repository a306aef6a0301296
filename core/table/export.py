"""Writing results and tables out: xlsx (formatted report), csv or parquet, always atomically."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd
from batchgrid.core.util import secrets

from . import write_flat, write_xlsx
from .atomic import ExportError

FORMATS = {".xlsx": "xlsx", ".csv": "csv", ".tsv": "tsv", ".txt": "csv",
           ".parquet": "parquet", ".pq": "parquet"}

Progress = Callable[[int, int], None]


def export_results(result_set, path, *, fmt: str | None = None, on_progress: Progress | None = None,
                   rows: Sequence[int] | None = None) -> Path:
    """Write a run's results. fmt: "xlsx", "csv" or "parquet"; None picks it from the suffix.

    xlsx is the full report (Results, Errors and Run sheets; see `write_xlsx`); csv and parquet
    hold the Results table only. `rows`: the row numbers to write, in that order (what a window
    shows, sorted or filtered); None writes every row in input order.
    `on_progress(done, total)` is called every 1,000 rows and at the end
    (from the thread that exports: a window should hand it to its own thread).
    Text that looks like a formula never becomes one (see `cells`); the file appears
    whole or not at all (see `atomic`). Raises ExportError with a one-line message.
    """
    path = Path(path)
    fmt = _format(path, fmt)
    if fmt == "xlsx":
        return write_xlsx.write_results(result_set, path, on_progress, rows=rows)
    order = write_xlsx.row_order(rows, len(result_set))
    values = (result_set.row_values(i) for i in order)
    redacted = secrets.redact_rows(values)  # no remembered secret in any cell (core/util/secrets.py)
    if fmt == "parquet":
        return write_flat.write_parquet(result_set.header(), redacted, path, len(order), on_progress)
    return write_flat.write_csv(result_set.header(), redacted, path, len(order),
                                on_progress, delimiter="\t" if fmt == "tsv" else ",")


def write_table(frame: pd.DataFrame, path, *, fmt: str | None = None, sheet: str = "Data",
                on_progress: Progress | None = None) -> Path:
    """Write a plain DataFrame (no run columns) as a formatted one-sheet xlsx, csv or parquet."""
    path = Path(path)
    fmt = _format(path, fmt)
    header = [str(c) for c in frame.columns]

    def rows(part: pd.DataFrame):  # faster than itertuples: each column becomes Python values in one go
        return zip(*(part.iloc[:, i].tolist() for i in range(part.shape[1])), strict=True)

    if fmt == "parquet":
        return write_flat.write_parquet(header, rows(frame), path, len(frame), on_progress)
    if fmt == "xlsx":
        return write_xlsx.write_frame(header, rows(frame), rows(frame.head(write_xlsx.SAMPLE_ROWS)), path,
                                      len(frame), sheet=sheet, on_progress=on_progress)
    return write_flat.write_csv(header, rows(frame), path, len(frame), on_progress,
                                delimiter="\t" if fmt == "tsv" else ",")


def _format(path: Path, fmt: str | None) -> str:
    if fmt is not None:
        fmt = fmt.lower().lstrip(".")
        if fmt in ("xlsx", "csv", "tsv", "parquet"):
            return fmt
        raise ExportError(f"cannot export as {fmt!r}: choose xlsx, csv or parquet")
    suffix = path.suffix.lower()
    if suffix in FORMATS:
        return FORMATS[suffix]
    raise ExportError(f"cannot tell the format of {path.name!r} from its name: use .xlsx, .csv or .parquet")
