"""Old Excel files calamine cannot read, through xlrd (pandas' reader of .xls for years).

- Excel 2.x/3.0/4.0 worksheets (BIFF2-4: a bare record stream, no OLE2 container);
- .xls files calamine refuses (a BIFF5 file in a codepage it does not know, such as Mac
  Central European), tried here before the file is called damaged.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

from batchgrid.core.util.errors import InputError

from .frame import Grid


def sheet_names(path: Path, data: bytes | None = None) -> list[str]:
    return _open(path, data).sheet_names()


def _open(path: Path, data: bytes | None):
    import io

    import xlrd

    quiet = io.StringIO()  # xlrd writes its warnings to stdout otherwise
    try:
        if data:
            return xlrd.open_workbook(file_contents=data, logfile=quiet)
        return xlrd.open_workbook(str(path), logfile=quiet)
    except (xlrd.XLRDError, ValueError, KeyError, IndexError, AssertionError, EOFError, UnicodeError,
            LookupError, OSError, struct.error) as exc:
        reason = " ".join(str(exc).split())
        if "4W" in reason or ("workbook" in reason.lower() and "not supported" in reason.lower()):
            raise InputError(f"{path.name} is an Excel 4.0 workbook, which Batchgrid cannot read; "
                             "open it in Excel and save it as .xlsx") from None
        raise InputError(f"{path.name} cannot be read: the file is damaged or not a valid xls workbook") from None


def load(path: Path, sheet: str | int | None, max_rows: int | None, data: bytes | None = None,
         ) -> tuple[list[str], str, Grid]:
    """(sheet names, chosen sheet, its grid). InputError when xlrd cannot read it either."""
    book = _open(path, data)
    names = book.sheet_names()
    if not names:
        raise InputError(f"{path.name} has no data: it holds no sheet")
    if sheet is None:
        order = names
    elif isinstance(sheet, int) and not isinstance(sheet, bool):
        if not 0 <= sheet < len(names):
            raise InputError(f"{path.name} has no sheet number {sheet} (counting from 0); sheets are: "
                             + ", ".join(repr(n) for n in names))
        order = [names[sheet]]
    else:
        folded = [n for n in names if n == sheet or n.casefold() == str(sheet).strip().casefold()]
        if not folded:
            raise InputError(f"sheet {str(sheet)!r} not found in {path.name}; sheets are: "
                             + ", ".join(repr(n) for n in names))
        order = folded[:1]
    for name in order:
        grid = _grid(book, book.sheet_by_name(name), max_rows)
        if sheet is not None or any(v != "" for row in grid.rows for v in row):
            return names, name, grid
    raise InputError(f"{path.name} has no data: every sheet is empty")


def _grid(book, sheet, max_rows: int | None) -> Grid:
    import xlrd

    count = sheet.nrows if max_rows is None else min(sheet.nrows, max_rows)
    rows = []
    for r in range(count):
        row: list[Any] = []
        for cell in sheet.row(r):
            kind, value = cell.ctype, cell.value
            if kind == xlrd.XL_CELL_DATE:
                try:
                    value = xlrd.xldate_as_datetime(value, book.datemode)
                except (ValueError, OverflowError, xlrd.xldate.XLDateError):
                    pass
            elif kind == xlrd.XL_CELL_BOOLEAN:
                value = bool(value)
            elif kind == xlrd.XL_CELL_ERROR:
                value = xlrd.error_text_from_code.get(value, "#ERR")
            elif kind in (xlrd.XL_CELL_EMPTY, xlrd.XL_CELL_BLANK):
                value = ""
            row.append(value)
        rows.append(row)
    return Grid(rows=rows, top=0, complete=count == sheet.nrows)
