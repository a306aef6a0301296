"""Error cells and number formats of an xls sheet, which calamine does not give.

calamine reads an xls error cell (#N/A, #DIV/0!) as a blank and gives numbers as stored, not as
their format shows them. xlrd (our reader of old BIFF versions) knows both, but reading a whole
sheet with it costs 6-8 times calamine's read (0.85 s against 0.12 s for 65,000 rows x 6,
measured). So xlrd reads only the workbook's globals (the OLE2 container, the XF and FORMAT
records, the date system, where each sheet's records start: milliseconds) and we walk the
sheet's records ourselves (0.06 s for the same sheet), decoding only the few cell records that
matter: BOOLERR and FORMULA results (errors), NUMBER, RK, MULRK and FORMULA results (numbers
with a format that matters). Layouts: [MS-XLS] 2.4; the same in BIFF5 and BIFF8.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Set
from pathlib import Path
from typing import Any

from .xlsx_zip import Marks

_BOF, _EOF = 0x0809, 0x000A
_NUMBER, _RK, _MULRK, _FORMULA, _BOOLERR = 0x0203, 0x027E, 0x00BD, 0x0006, 0x0205
_CELL = struct.Struct("<HHH")  # row, column, XF index: the head of every cell record
_DOUBLE = struct.Struct("<d")
# Error codes ([MS-XLS] 2.5.10 BErr), as xlrd's error_text_from_code.
ERROR_TEXT = {0x00: "#NULL!", 0x07: "#DIV/0!", 0x0F: "#VALUE!", 0x17: "#REF!", 0x1D: "#NAME?", 0x24: "#NUM!",
              0x2A: "#N/A", 0x2B: "#GETTING_DATA"}


def open_book(path: Path, data: bytes | None = None) -> Any | None:
    """xlrd's view of the workbook's globals (no sheet read yet); None when xlrd cannot read it
    (calamine did: the values stand as calamine gave them)."""
    import xlrd

    quiet = io.StringIO()  # xlrd writes its warnings to stdout otherwise
    try:
        book = xlrd.open_workbook(file_contents=data, filename=str(path), formatting_info=True, on_demand=True,
                                  logfile=quiet) if data else \
            xlrd.open_workbook(str(path), formatting_info=True, on_demand=True, logfile=quiet)
    except Exception:  # any failure only means no second look
        return None
    return book if book.biff_version >= 50 and getattr(book, "mem", None) else None


def cell_formats(book: Any) -> list[str]:
    """The number format code of each XF record (a cell's XF index indexes this list)."""
    from .numfmt import BUILTIN

    codes = []
    for xf in book.xf_list:
        found = book.format_map.get(xf.format_key)
        codes.append(found.format_str if found is not None else BUILTIN.get(xf.format_key, ""))
    return codes


def scan_sheet(book: Any, name: str, *, styles: Set[int] = frozenset(), raw_styles: Set[int] = frozenset(),
               date_styles: Set[int] = frozenset()) -> Marks:
    """The sheet's error cells and its numeric cells whose XF is in `styles`, `raw_styles` (with
    the stored number) or `date_styles` (only values below 1, with the number); as xlsx_zip.scan_sheet.
    Best effort: a damaged record ends the walk with what was found (calamine read the sheet)."""
    marks = Marks()
    styled = marks.styled
    styled.raw_styles = frozenset(raw_styles) | frozenset(date_styles)
    wanted = frozenset(styles) | styled.raw_styles
    try:
        index = book.sheet_names().index(name)
        mem, pos = book.mem, book._sh_abs_posn[index]  # xlrd: the workbook stream, where the sheet starts
    except (ValueError, IndexError, AttributeError):
        return marks
    end, depth = len(mem), 0
    unpack = struct.unpack_from

    def number(row: int, column: int, xf: int, value: float) -> None:
        if xf in date_styles and value >= 1:
            return
        styled.add(row + 1, column, xf, value)

    try:
        while pos + 4 <= end:
            kind, length = unpack("<HH", mem, pos)
            body = pos + 4
            pos = body + length
            if kind == _BOF:
                depth += 1
            elif kind == _EOF:
                depth -= 1
                if depth <= 0:
                    break
            elif depth != 1:
                continue  # a chart's records inside the sheet
            elif kind == _NUMBER or kind == _RK:
                row, column, xf = _CELL.unpack_from(mem, body)
                if xf in wanted:
                    value = _DOUBLE.unpack_from(mem, body + 6)[0] if kind == _NUMBER else _rk(unpack("<i", mem, body + 6)[0])
                    number(row, column, xf, value)
            elif kind == _MULRK:
                row, first = unpack("<HH", mem, body)
                for i in range((length - 6) // 6):
                    xf, rk = unpack("<Hi", mem, body + 4 + 6 * i)
                    if xf in wanted:
                        number(row, first + i, xf, _rk(rk))
            elif kind == _FORMULA:
                row, column, xf = _CELL.unpack_from(mem, body)
                result = mem[body + 6:body + 14]
                if result[6:8] == b"\xff\xff":
                    if result[0] == 2:
                        marks.errors[(row, column)] = ERROR_TEXT.get(result[2], "#N/A")
                elif xf in wanted:
                    number(row, column, xf, _DOUBLE.unpack(result)[0])
            elif kind == _BOOLERR:
                row, column, _, value, is_error = unpack("<HHHBB", mem, body)
                if is_error:
                    marks.errors[(row, column)] = ERROR_TEXT.get(value, "#N/A")
    except struct.error:
        pass
    return marks


def _rk(rk: int) -> float:
    """An RK number ([MS-XLS] 2.5.217): a 30-bit integer or the top of a double, maybe x 100."""
    if rk & 2:
        value = float(rk >> 2)
    else:
        value = _DOUBLE.unpack(struct.pack("<Q", (rk & 0xFFFFFFFC) << 32 & 0xFFFFFFFFFFFFFFFF))[0]
    return value / 100 if rk & 1 else value
