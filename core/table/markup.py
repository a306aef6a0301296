"""Spreadsheets that are markup: Excel 2003 XML (SpreadsheetML) and HTML tables saved as .xls.

Enterprise systems still export SpreadsheetML 2003 as `.xls`, and web apps' "Excel export"
is usually an HTML table with an `.xls` name; Excel opens both. Why our own code:
- SpreadsheetML 2003: no maintained library reads it (calamine, openpyxl and pandas do not);
  it is plain XML with typed cells, streamed here with ElementTree's iterparse (expat:
  no external entities, entity expansion bounded).
- HTML: lxml's HTML parser (which pandas' read_html also uses) finds the tables; the cells
  are taken as text and typed by the same lossless rules as CSV (`frame.parse_text_column`),
  where pandas' reader would turn "007" into 7.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from batchgrid.core.util.errors import InputError

from .frame import Grid

SS = "{urn:schemas-microsoft-com:office:spreadsheet}"
MAX_SPAN = 16_384  # a cell's ss:Index / colspan beyond a sheet's width is damage, not data


# ---- SpreadsheetML 2003 -------------------------------------------------------------------

def load_xml(path: Path, sheet: str | int | None, max_rows: int | None) -> tuple[list[str], str, Grid]:
    """(sheet names, chosen sheet, its grid) of an Excel 2003 XML workbook."""
    try:
        sheets = _xml_sheets(path, max_rows)
    except ElementTree.ParseError as exc:
        line = exc.position[0] if getattr(exc, "position", None) else "?"
        raise InputError(f"{path.name} cannot be read: the Excel 2003 XML spreadsheet is damaged "
                         f"(it is not well-formed XML at line {line})") from None
    return _choose(path, sheets, sheet)


def _xml_sheets(path: Path, max_rows: int | None) -> dict[str, Grid]:
    sheets: dict[str, Grid] = {}
    rows: list[list[Any]] = []
    row: list[Any] = []
    full = False
    for event, el in ElementTree.iterparse(path, events=("start", "end")):
        tag = el.tag
        if event == "start":
            if tag == SS + "Worksheet":
                rows, full = [], False
            elif tag == SS + "Row" and not full:
                index = _index(el)
                while index is not None and len(rows) < index - 1:
                    rows.append([])
                row = []
            continue
        if tag == SS + "Cell" and not full:
            index = _index(el)
            if index is not None:
                row.extend([""] * (index - 1 - len(row)))
            data = el.find(SS + "Data")
            value = _xml_value(data) if data is not None else ""
            span = min(int(el.get(SS + "MergeAcross", "0") or 0), MAX_SPAN)
            row.extend([value] * (span + 1))  # a merged range shows its value across, as the xlsx reader fills it
            el.clear()
        elif tag == SS + "Row" and not full:
            rows.append(row)
            full = max_rows is not None and len(rows) >= max_rows
            el.clear()
        elif tag == SS + "Worksheet":
            name = el.get(SS + "Name") or f"Sheet{len(sheets) + 1}"
            sheets[name] = Grid(rows=rows, top=0, complete=not full)
            el.clear()
    return sheets


def _index(el) -> int | None:
    text = el.get(SS + "Index")
    if not text:
        return None
    try:
        index = int(text)
    except ValueError:
        return None
    return index if 0 < index <= 1_048_576 else None


def _xml_value(data) -> Any:
    kind = data.get(SS + "Type", "String")
    text = "".join(data.itertext())
    try:
        if kind == "Number":
            number = float(text)
            return int(number) if number.is_integer() and abs(number) < 2**53 else number
        if kind == "Boolean":
            return text.strip() in ("1", "true", "TRUE")
        if kind == "DateTime":
            moment = dt.datetime.fromisoformat(text.strip()[:19])
            return moment
    except ValueError:
        return text
    return text


# ---- HTML tables --------------------------------------------------------------------------

_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([\w-]+)""", re.I)


def load_html(path: Path, sheet: str | int | None, max_rows: int | None) -> tuple[list[str], str, Grid]:
    """(table names, chosen table, its grid): each <table> of the page (without tables inside it) is a sheet."""
    import lxml.html

    raw = path.read_bytes()
    document = lxml.html.document_fromstring(_decode(raw))
    sheets: dict[str, Grid] = {}
    for table in document.iter("table"):
        if table.find(".//table") is not None:
            continue  # a layout table: its inner tables are the data
        rows = _html_rows(table, max_rows)
        if rows:
            sheets[f"Table {len(sheets) + 1}"] = Grid(rows=rows, top=0,
                                                      complete=max_rows is None or len(rows) < max_rows)
    if not sheets:
        raise InputError(f"{path.name} is a web page (HTML) with no table in it, not a spreadsheet")
    if sheet is None:  # the page's biggest table is its data
        biggest = max(sheets, key=lambda n: sum(len(r) for r in sheets[n].rows))
        return list(sheets), biggest, sheets[biggest]
    return _choose(path, sheets, sheet)


def _decode(raw: bytes) -> str:
    for bom, encoding in ((b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16")):
        if raw.startswith(bom):
            return raw.decode(encoding, "replace")
    declared = _META_CHARSET.search(raw[:4096])
    if declared:
        try:
            return raw.decode(declared.group(1).decode("ascii"), "replace")
        except LookupError:
            pass
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252", "replace")


def _html_rows(table, max_rows: int | None) -> list[list[Any]]:
    rows: list[list[Any]] = []
    pending: dict[int, tuple[int, str]] = {}  # column -> (rows still spanned, text) from a rowspan above
    for tr in table.iter("tr"):
        if max_rows is not None and len(rows) >= max_rows:
            break
        row: list[Any] = []
        for cell in tr:
            if cell.tag not in ("td", "th"):
                continue
            while len(row) in pending:
                row.append(_take(pending, len(row)))
            text = " ".join(cell.text_content().split())
            span = min(_int(cell.get("colspan")), MAX_SPAN)
            down = min(_int(cell.get("rowspan")), 1_048_576)
            for _ in range(span):
                if down > 1:
                    pending[len(row)] = (down - 1, text)
                row.append(text)
        while len(row) in pending:
            row.append(_take(pending, len(row)))
        rows.append(row)
    return rows


def _take(pending: dict[int, tuple[int, str]], column: int) -> str:
    left, text = pending.pop(column)
    if left > 1:
        pending[column] = (left - 1, text)
    return text


def _int(text: str | None) -> int:
    try:
        return max(1, int(text or 1))
    except ValueError:
        return 1


# ---- both ---------------------------------------------------------------------------------

def _choose(path: Path, sheets: dict[str, Grid], sheet: str | int | None) -> tuple[list[str], str, Grid]:
    names = list(sheets)
    if not names:
        raise InputError(f"{path.name} has no data: it holds no sheet")
    if sheet is None:
        name = next((n for n in names if any(v != "" for r in sheets[n].rows for v in r)), names[0])
        return names, name, sheets[name]
    listing = ", ".join(repr(n) for n in names)
    if isinstance(sheet, int) and not isinstance(sheet, bool):
        if 0 <= sheet < len(names):
            return names, names[sheet], sheets[names[sheet]]
        raise InputError(f"{path.name} has no sheet number {sheet} (counting from 0); sheets are: {listing}")
    folded = [n for n in names if n.casefold() == str(sheet).strip().casefold()]
    if sheet in sheets or len(folded) == 1:
        name = sheet if sheet in sheets else folded[0]
        return names, str(name), sheets[str(name)]
    raise InputError(f"sheet {str(sheet)!r} not found in {path.name}; sheets are: {listing}")
