"""Reading any table an analyst brings: one entry point, one kind of error.

Every failure is an InputError with one line a user can act on ("the workbook is
password-protected", "sheet 'Data' not found; sheets are: ..."), never a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from batchgrid.core.util.errors import InputError

from . import biff, excel, markup, sniff, textfile, textnotes
from . import password as passwords
from .frame import (
    MAX_COLUMNS,
    EmptySheet,
    HeaderBeyondData,
    TooWide,
    frame_from_grid,
    header_text,
    notes_of,
    unique_names,
)

HEADER_MARGIN = 100  # extra rows read under a row limit, for blank rows above the header


@dataclass
class Preview:
    """The first rows of a table, for showing before anything runs."""

    sheets: list[str]      # every sheet that can hold a table (one name for csv/parquet)
    sheet: str             # the sheet shown
    columns: list[str]
    frame: pd.DataFrame    # the first rows
    complete: bool         # True when `frame` is the whole table
    kind: str              # "xlsx", "xlsb", "xls", "ods", "csv", "parquet", "xml2003" (Excel 2003 XML) or "html"
    notes: list[str]       # one-line notes on how the file was read (Grid.notes)
    header_row: int | None = None  # the header's sheet row (0: no header row; None: a parquet file's names)
    first_row: int | None = None   # the sheet row of the first data row (frame row i is sheet row first_row + i)


def read_table(path, *, sheet: str | int | None = None, header_row: int | None = None,
               limit: int | None = None, password: str | None = None) -> pd.DataFrame:
    """A sheet as a DataFrame with unique string column names; blank cells are None/NaN.

    sheet: a name, a 0-based index into `list_sheets(path)`, or None for the first
    non-empty visible sheet. header_row: the header's row number as Excel shows it
    (1-based; for text files the record number), 0 for "no header row" (columns are
    named column_1, column_2...), None for the first non-empty row below any title block
    (frame.title_rows). The frame's attrs say where it was: "header_row" (0 for none) and
    "first_row" (the sheet row of its first data row). limit: at most this
    many data rows. Raises InputError with a one-line message for any unusable file.
    """
    return _read(Path(path), sheet, header_row, limit, password)[2]


def list_sheets(path, *, password: str | None = None) -> list[str]:
    """Names of the sheets that can hold a table (a text or parquet file has one: its name)."""
    path = Path(path)
    kind, data = _unlock(path, _kind(path), password)
    if kind in sniff.EXCEL_KINDS:
        return _guard(path, lambda: excel.list_sheets(path, kind, data))
    if kind in sniff.MARKUP_KINDS:
        return _guard(path, lambda: _load_markup(path, kind, None, None))[0]
    if kind == sniff.XLS_OLD:
        return _guard(path, lambda: biff.sheet_names(path))
    return [path.stem]


def preview(path, *, sheet: str | int | None = None, header_row: int | None = None, rows: int = 200,
            password: str | None = None) -> Preview:
    """Sheet names, columns and the first `rows` rows, quickly whatever the file's size."""
    path = Path(path)
    sheets, chosen, frame, kind = _read(path, sheet, header_row, rows + 1, password)
    return Preview(sheets=sheets, sheet=chosen, columns=[str(c) for c in frame.columns],
                   frame=frame.head(rows), complete=len(frame) <= rows, kind=kind, notes=notes_of(frame),
                   header_row=frame.attrs.get("header_row"), first_row=frame.attrs.get("first_row"))


def _read(path: Path, sheet, header_row, limit, password: str | None = None) -> tuple[list[str], str, pd.DataFrame, str]:
    if header_row is not None and header_row < 0:
        raise ValueError("header_row must be >= 0")
    if limit is not None and limit < 0:
        raise ValueError("limit must be >= 0")
    kind, data = _unlock(path, _kind(path), password)
    sheet = None if sheet == "" else sheet  # a form's empty sheet field means "the default"
    max_rows = None if limit is None else (header_row or 1) + limit + HEADER_MARGIN
    if kind == sniff.PARQUET:
        frame = _guard(path, lambda: _read_parquet(path, sheet, limit))
        if header_row is not None:  # said, not silently dropped: a pipeline's header row may meet a parquet file
            frame.attrs["notes"] = [f"header row {header_row} does not apply to {path.name}: a parquet file's "
                                    "columns have their names"]
        return [path.stem], path.stem, frame, kind
    if kind == sniff.CSV:
        _only_sheet(path, sheet)
        sheets, chosen = [path.stem], path.stem
        grid = _guard(path, lambda: textfile.read_grid(path, max_rows)[0])
    elif kind in sniff.MARKUP_KINDS:
        sheets, chosen, grid = _guard(path, lambda: _load_markup(path, kind, sheet, max_rows))
    elif kind == sniff.XLS_OLD:
        sheets, chosen, grid = _guard(path, lambda: biff.load(path, sheet, max_rows))
    else:
        sheets, chosen, grid = _guard(path, lambda: excel.load(path, kind, sheet, max_rows, data))
    try:
        frame = frame_from_grid(grid, header_row=header_row, limit=limit, parse_text=kind in (sniff.CSV, sniff.HTML))
    except EmptySheet:
        where = path.name if kind == sniff.CSV else f"sheet {chosen!r} of {path.name}"
        raise InputError(f"{where} is empty") from None
    except TooWide as exc:
        raise InputError(f"{path.name} is not a table Batchgrid can read: a row has {exc.width:,} columns, "
                         f"more than a sheet can hold ({MAX_COLUMNS:,})") from None
    except HeaderBeyondData as exc:
        raise InputError(f"header row {header_row} is below the last row with data "
                         f"(row {exc.last_row}) in {path.name}") from None
    if kind == sniff.CSV:
        frame.attrs["notes"] += textnotes.table_notes(grid, frame, header_row)
    return sheets, chosen, frame, kind


def _load_markup(path: Path, kind: str, sheet, max_rows):
    return (markup.load_xml if kind == sniff.XML2003 else markup.load_html)(path, sheet, max_rows)


def _unlock(path: Path, kind: str, password: str | None) -> tuple[str, bytes | None]:
    """(the kind to read, the decrypted workbook's bytes or None to read the file itself)."""
    if kind == sniff.ENCRYPTED or (kind == sniff.XLS and passwords.is_encrypted_xls(path)):
        data = _guard(path, lambda: passwords.decrypt(path, password))
        return sniff.decrypted_kind(data), data
    return kind, None


def _kind(path: Path) -> str:
    if not path.exists():
        raise InputError(f"{path.name}: no such file (looked in {path.parent})")
    return sniff.detect(path)


def _only_sheet(path: Path, sheet) -> None:
    if sheet in (None, 0, path.stem):
        return
    raise InputError(f"sheet {str(sheet)!r} not found: {path.name} is a text file with one table, {path.stem!r}")


def _guard(path: Path, read):
    try:
        return read()
    except MemoryError:
        raise InputError(f"{path.name} is too large to load into memory") from None
    except OSError as exc:
        raise InputError(f"{path.name} cannot be read: {exc.strerror or exc}") from None


def _read_parquet(path: Path, sheet, limit: int | None) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    _only_sheet(path, sheet)
    try:
        source = pq.ParquetFile(path)
        if limit is None:
            table = source.read()
        else:  # only the first batch is read from disk
            first = next(source.iter_batches(batch_size=max(limit, 1)), None)
            table = pa.Table.from_batches([first]) if first is not None else source.schema_arrow.empty_table()
        # No pandas metadata: nullable dtypes would turn blanks into pd.NA, which steps do not expect.
        frame = table.to_pandas(integer_object_nulls=True, ignore_metadata=True)
    except (pa.ArrowException, ValueError, OSError) as exc:
        reason = " ".join(str(exc).split())[:160]
        raise InputError(f"{path.name} cannot be read: the file is damaged or not a valid parquet file ({reason})") from None
    frame = frame.head(limit) if limit is not None else frame
    frame.columns = unique_names([header_text(c) for c in frame.columns])
    return frame.reset_index(drop=True)
