"""The Excel report: Results, Errors and Run sheets, written with openpyxl's write-only mode.

Write-only mode streams rows to disk, so memory stays flat for any number of rows; its
price is that column widths must be known before the first row, so they are measured on
the first rows (SAMPLE_ROWS). Cells are converted by `cells.excel_value`: numbers stay
numbers, dates stay dates, lists and dicts become JSON text, text never becomes a formula.
No secret is written (core/util/secrets.py): cells hold no remembered one, errors and the Run
sheet's settings are redacted.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import zipfile
from collections.abc import Callable, Iterable, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

from batchgrid.core.util import secrets
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.writer.excel import ExcelWriter

from .atomic import ExportError, atomic_path
from .cells import ForcedText, excel_value

SAMPLE_ROWS = 1000           # rows measured for column widths
MIN_WIDTH, MAX_WIDTH = 6, 60  # column widths, in characters
EXCEL_MAX_ROWS = 1_048_576
EXCEL_MAX_COLUMNS = 16_384
PROGRESS_EVERY = 1000        # rows between two on_progress calls
ERROR_INPUT_COLUMNS = 8      # input columns repeated on the Errors sheet, to recognise the row

HEADER_FONT = Font(bold=True)
HEADER_FILL = PatternFill("solid", fgColor="D9E1F2")
ERROR_FONT = Font(color="9C0006")
ERROR_FILL = PatternFill("solid", fgColor="FFC7CE")  # Excel's own "light red fill" for bad values

Progress = Callable[[int, int], None]


class TableSheet:
    """One worksheet holding a table: bold frozen filterable header, widths from content."""

    def __init__(self, wb: Workbook, title: str, header: Sequence[str], sample: Iterable[Sequence[Any]]):
        if len(header) > EXCEL_MAX_COLUMNS:
            raise ExportError(f"{len(header):,} columns do not fit in an Excel sheet (at most {EXCEL_MAX_COLUMNS:,})")
        self.ws = wb.create_sheet(title)
        self.width = len(header)
        self.rows = 0
        for i, width in enumerate(_widths(header, sample), 1):
            self.ws.column_dimensions[get_column_letter(i)].width = width
        self.ws.freeze_panes = "A2"
        self.ws.append([self._cell(name, font=HEADER_FONT, fill=HEADER_FILL) for name in header])

    @staticmethod
    def check_fits(rows: int) -> None:
        if rows + 1 > EXCEL_MAX_ROWS:  # +1: the header
            raise ExportError(f"{rows:,} rows do not fit in an Excel sheet (at most {EXCEL_MAX_ROWS - 1:,}); "
                              "export to .csv or .parquet instead")

    def append(self, values: Sequence[Any], *, highlight: bool = False) -> None:
        if highlight:
            row = [self._cell(v, font=ERROR_FONT, fill=ERROR_FILL) for v in values]
        else:
            row = [v if type(v) is not ForcedText else self._text_cell(v) for v in map(excel_value, values)]
        self.ws.append(row)
        self.rows += 1

    def finish(self) -> None:
        if self.width:
            self.ws.auto_filter.ref = f"A1:{get_column_letter(self.width)}{self.rows + 1}"

    def _cell(self, value: Any, *, font: Font, fill: PatternFill) -> WriteOnlyCell:
        value = excel_value(value)
        cell = self._text_cell(value) if type(value) is ForcedText else WriteOnlyCell(self.ws, value)
        cell.font = font
        cell.fill = fill
        return cell

    def _text_cell(self, text: str) -> WriteOnlyCell:
        """A string cell even when the text looks like a formula or an error value."""
        cell = WriteOnlyCell(self.ws, str(text))
        cell.data_type = "s"
        cell.quotePrefix = True  # Excel keeps it text even after the user edits the cell
        return cell


def write_results(result_set, path: Path, on_progress: Progress | None = None) -> Path:
    """The full report for a run: Results, Errors and Run sheets, written atomically."""
    total = len(result_set)
    TableSheet.check_fits(total)
    errors = set(result_set.error_indexes())
    wb = Workbook(write_only=True)
    try:
        results = TableSheet(wb, "Results", result_set.header(), islice(result_set.iter_rows(), SAMPLE_ROWS))
        _append_all(results, secrets.redact_rows(result_set.iter_rows()), total, on_progress, errors)
        _errors_sheet(wb, result_set, sorted(errors))
        _run_sheet(wb, result_set)
        _save(wb, path)
    finally:
        _discard_row_buffers(wb)
    if on_progress:
        on_progress(total, total)
    return path


def write_frame(header: Sequence[str], rows: Iterable[Sequence[Any]], sample: Iterable[Sequence[Any]],
                path: Path, total: int, sheet: str = "Data", on_progress: Progress | None = None) -> Path:
    """A plain table on one formatted sheet."""
    TableSheet.check_fits(total)
    wb = Workbook(write_only=True)
    try:
        _append_all(TableSheet(wb, sheet, header, sample), rows, total, on_progress)
        _save(wb, path)
    finally:
        _discard_row_buffers(wb)
    if on_progress:
        on_progress(total, total)
    return path


def _append_all(sheet: TableSheet, rows: Iterable[Sequence[Any]], total: int, on_progress: Progress | None,
                highlight: set[int] | frozenset[int] = frozenset()) -> None:
    for i, values in enumerate(rows):
        sheet.append(values, highlight=i in highlight)
        if on_progress and (i + 1) % PROGRESS_EVERY == 0:
            on_progress(i + 1, total)
    sheet.finish()


def _save(wb: Workbook, path: Path) -> None:
    """Workbook.save, with the zip archive ours so that it is closed even when saving fails."""
    with atomic_path(path) as temp, zipfile.ZipFile(temp, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
        ExcelWriter(wb, zf).write_data()


def _discard_row_buffers(wb: Workbook) -> None:
    """Write-only sheets buffer their rows in temporary files, which a failed save leaves behind."""
    for ws in wb.worksheets:
        writer = getattr(ws, "_writer", None)
        if writer is None:
            continue
        with contextlib.suppress(Exception):  # an already saved sheet refuses to close again
            ws.close()
        with contextlib.suppress(OSError):
            os.remove(writer.out)


def _errors_sheet(wb: Workbook, result_set, indexes: list[int]) -> None:
    """Only the failed rows: where, which input, which step, what went wrong."""
    inputs = list(result_set.input_columns)[:ERROR_INPUT_COLUMNS]
    header = ["row", *inputs, "failed step", "error type", "error"]

    def rows():
        for i in indexes:
            result, row = result_set.results[i], result_set.rows.row(i)
            yield [i + 1, *(row.get(c) for c in inputs), result.failed_step, result.error_type,
                   secrets.redact(result.error)]

    _append_all(TableSheet(wb, "Errors", header, islice(rows(), SAMPLE_ROWS)), secrets.redact_rows(rows()),
                len(indexes), None)


def _run_sheet(wb: Workbook, result_set) -> None:
    """What was run, on what, how, and what it came to: the run's description plus totals."""
    items = list(_flatten(secrets.redact_value(result_set.run_info)))
    finished = [r for r in result_set.results if r is not None]
    items += [("rows", len(result_set))]
    items += [(f"rows {status}", count) for status, count in sorted(result_set.counts().items())]
    items += [("tokens in", sum(r.tokens_in for r in finished)),
              ("tokens out", sum(r.tokens_out for r in finished)),
              ("cost", round(sum(r.cost for r in finished), 6)),
              ("calls answered from cache", sum(r.cached for r in finished)),
              ("exported at", dt.datetime.now().replace(microsecond=0))]
    _append_all(TableSheet(wb, "Run", ["item", "value"], items), items, len(items), None)


def _flatten(info: Any, prefix: str = "") -> Iterable[tuple[str, Any]]:
    """Nested settings as ("pipeline.steps[2].template", value) rows; secrets masked."""
    if isinstance(info, dict):
        for key, value in info.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            yield from _flatten(value, name)
    elif isinstance(info, (list, tuple)) and any(isinstance(v, (dict, list, tuple)) for v in info):
        for n, value in enumerate(info, 1):
            yield from _flatten(value, f"{prefix}[{n}]")
    else:
        yield prefix, info


def _widths(header: Sequence[str], sample: Iterable[Sequence[Any]]) -> list[float]:
    widest = [len(str(name)) + 3 for name in header]  # room for the filter button
    for values in sample:
        for i, value in enumerate(values[: len(widest)]):
            widest[i] = max(widest[i], _display_width(excel_value(value)))
    return [min(max(w + 1, MIN_WIDTH), MAX_WIDTH) for w in widest]


def _display_width(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, str):
        return max(map(len, value.split("\n"))) if "\n" in value else len(value)
    if isinstance(value, dt.datetime):
        return 19
    if isinstance(value, dt.date):
        return 10
    if isinstance(value, float):
        return len(f"{value:.10g}")
    return len(str(value))
