"""Error cells and number formats of an ODS sheet, which calamine does not give.

calamine reads a LibreOffice error cell (#DIV/0!, saved as an empty string with
calcext:value-type="error") as a blank, a duration over 24 hours ("[HH]:MM", office:time-value
PT37H05M00S) as that ISO text and shorter ones as a time of day, and numbers as stored: a
"00000" code loses its zeros and a percentage reads 0.256. We read the cell styles' data styles
(number:percentage-style, number:number-style with number:min-integer-digits, number:time-style
with number:truncate-on-overflow="false"), write each as the Excel format code it stands for so
`numfmt` does the rest, and find the cells in content.xml with lxml's iterparse, streaming and
bounded in memory (each row is dropped once read). Only done when the part names an error or
one of those styles: the parse costs several times calamine's read.
"""

from __future__ import annotations

import bisect
import re
import zipfile
from collections.abc import Iterator, Set
from pathlib import Path
from typing import BinaryIO

from .xlsx_zip import CHUNK, ZIP_ERRORS, Marks

TABLE = "urn:oasis:names:tc:opendocument:xmlns:table:1.0"
OFFICE = "urn:oasis:names:tc:opendocument:xmlns:office:1.0"
STYLE = "urn:oasis:names:tc:opendocument:xmlns:style:1.0"
NUMBER = "urn:oasis:names:tc:opendocument:xmlns:datastyle:1.0"
CALCEXT = "urn:org:documentfoundation:names:experimental:calc:xmlns:calcext:1.0"
TEXT = "urn:oasis:names:tc:opendocument:xmlns:text:1.0"
MAX_REPEAT = 1 << 20  # a repeated row or cell counts at most this often (calamine caps the grid anyway)
STYLES_MAX_BYTES = 64 << 20


def _q(ns: str, name: str) -> str:
    return f"{{{ns}}}{name}"


def cell_formats(z: zipfile.ZipFile) -> tuple[list[str], dict[str, int]]:
    """(format codes, cell style name -> index into them) for the cell styles whose data style
    makes LibreOffice show something else than the stored number."""
    from lxml import etree

    data_styles: dict[str, str] = {}
    cell_styles: dict[str, tuple[str | None, str | None]] = {}  # name -> (data style, parent)
    for member in ("styles.xml", "content.xml"):
        if member not in z.namelist() or (member == "styles.xml" and z.getinfo(member).file_size > STYLES_MAX_BYTES):
            continue
        with z.open(member) as f:
            for event, el in etree.iterparse(f, events=("start", "end"), huge_tree=False):
                if event == "start":
                    if el.tag == _q(OFFICE, "body"):
                        break  # the styles come first: the sheets are not read here
                    continue
                if el.getparent() is None or el.getparent().tag not in (_q(OFFICE, "styles"),
                                                                        _q(OFFICE, "automatic-styles")):
                    continue
                name = el.get(_q(STYLE, "name"))
                if name is None:
                    continue
                if el.tag == _q(STYLE, "style") and el.get(_q(STYLE, "family")) == "table-cell":
                    cell_styles[name] = (el.get(_q(STYLE, "data-style-name")), el.get(_q(STYLE, "parent-style-name")))
                elif el.tag.startswith(f"{{{NUMBER}}}") and (code := _code(el)):
                    data_styles[name] = code
                el.clear()
    codes: list[str] = []
    index: dict[str, int] = {}
    for name in cell_styles:
        data, parent, seen = *cell_styles[name], 0
        while data is None and parent in cell_styles and seen < 8:  # inherited from the parent style
            data, parent = cell_styles[parent]
            seen += 1
        if data in data_styles:
            index[name] = len(codes)
            codes.append(data_styles[data])
    return codes, index


def _code(style) -> str | None:
    """The Excel format code a data style stands for, for the kinds numfmt treats."""
    kind = style.tag.rsplit("}", 1)[-1]
    parts = [(child.tag.rsplit("}", 1)[-1], child) for child in style]
    if kind == "percentage-style":
        number = next((el for tag, el in parts if tag == "number"), None)
        decimals = int(number.get(_q(NUMBER, "decimal-places"), "0") or 0) if number is not None else 0
        return "0" + ("." + "0" * decimals if decimals else "") + "%"
    if kind == "number-style" and [tag for tag, _ in parts] == ["number"]:
        number = parts[0][1]
        digits = int(number.get(_q(NUMBER, "min-integer-digits"), "1") or 1)
        if digits >= 2 and number.get(_q(NUMBER, "decimal-places"), "0") in ("0", "") and \
                number.get(_q(NUMBER, "grouping")) != "true" and len(number) == 0:
            return "0" * digits
        return None
    if kind == "time-style" and style.get(_q(NUMBER, "truncate-on-overflow")) == "false":
        code, first = "", True
        for tag, el in parts:
            long = el.get(_q(NUMBER, "style")) == "long"
            if tag in ("hours", "minutes", "seconds"):
                unit = {"hours": "h", "minutes": "m", "seconds": "s"}[tag] * (2 if long else 1)
                code += f"[{unit}]" if first else unit
                first = False
                if tag == "seconds" and (decimals := int(el.get(_q(NUMBER, "decimal-places"), "0") or 0)):
                    code += "." + "0" * decimals
            elif tag == "text":
                code += '"' + (el.text or "").replace('"', "") + '"'
        return None if first else code
    return None


def worth_scanning(z: zipfile.ZipFile, style_names: Set[str]) -> bool:
    """Whether content.xml holds an error cell or a cell with one of `style_names` (a byte scan,
    about a tenth of a parse)."""
    needles = [b'value-type="error"'] + [f'style-name="{name}"'.encode() for name in style_names]
    tail = b""
    try:
        with z.open("content.xml") as f:
            while chunk := f.read(CHUNK):
                text = tail + chunk
                if any(needle in text for needle in needles):
                    return True
                tail = text[-64:]
    except ZIP_ERRORS:
        return False
    return False


_DURATION = re.compile(r"(-)?P(?:([0-9]+)D)?(?:T(?:([0-9]+)H)?(?:([0-9]+)M)?(?:([0-9.]+)S)?)?")


def duration_days(text: str) -> float | None:
    """An ISO 8601 duration (office:time-value, PT37H05M00S) in days."""
    m = _DURATION.fullmatch(text.strip())
    if m is None:
        return None
    sign, days, hours, minutes, seconds = m.groups()
    total = int(days or 0) + (int(hours or 0) + int(minutes or 0) / 60 + float(seconds or 0) / 3600) / 24
    return -total if sign else total


def scan_sheet(source: Path | BinaryIO | zipfile.ZipFile, sheet: str, style_index: dict[str, int], *,
               styles: Set[int] = frozenset(), raw_styles: Set[int] = frozenset()) -> Marks:
    """The error cells of sheet `sheet` and its cells whose style's index is in `styles` (with
    calamine's value) or `raw_styles` (with the stored number: durations); as xlsx_zip.scan_sheet."""
    from lxml import etree

    from .xlsx_zip import opened

    marks = Marks()
    marks.styled.raw_styles = frozenset(raw_styles)
    wanted = {name: i for name, i in style_index.items() if i in styles or i in raw_styles}
    try:
        with opened(source) as z, z.open("content.xml") as f:
            events = etree.iterparse(f, events=("start", "end"), huge_tree=True)
            for table in _tables(events, sheet):
                _scan_table(events, table, wanted, marks)
                break
    except (*ZIP_ERRORS, etree.LxmlError):
        pass  # best effort: calamine read the sheet
    return marks


def _tables(events, sheet: str) -> Iterator:
    for event, el in events:
        if event == "start" and el.tag == _q(TABLE, "table") and el.get(_q(TABLE, "name")) == sheet:
            yield el
            return


def _repeat(el, attribute: str) -> int:
    try:
        return max(1, min(int(el.get(_q(TABLE, attribute), "1")), MAX_REPEAT))
    except ValueError:
        return 1


def _scan_table(events, table, wanted: dict[str, int], marks: Marks) -> None:
    styled = marks.styled
    column_ends: list[int] = []        # the columns' default cell styles, as runs
    column_styles: list[str | None] = []
    row = column = 0
    found: list[tuple[int, str | int, float | None]] = []  # this row's: (column, error text or style, raw)
    cell_tags = (_q(TABLE, "table-cell"), _q(TABLE, "covered-table-cell"))
    for event, el in events:
        tag = el.tag
        if event == "start":
            if tag == _q(TABLE, "table-row"):
                column, found = 0, []
            continue
        if tag in cell_tags:
            repeat = _repeat(el, "number-columns-repeated")
            if el.get(_q(CALCEXT, "value-type")) == "error":
                text = "".join(el.itertext()).strip() or "#N/A"
                found.extend((column + i, text, None) for i in range(min(repeat, 1024)))
            else:
                name = el.get(_q(TABLE, "style-name"))
                if name is None and column_ends:
                    at = bisect.bisect_right(column_ends, column)
                    name = column_styles[at] if at < len(column_styles) else None
                if name in wanted and el.get(_q(OFFICE, "value-type")) is not None:
                    style = wanted[name]
                    raw = None
                    if style in styled.raw_styles:
                        raw = duration_days(el.get(_q(OFFICE, "time-value"), "")) if el.get(_q(OFFICE, "time-value")) \
                            else _float(el.get(_q(OFFICE, "value")))
                    found.extend((column + i, style, raw) for i in range(min(repeat, 1024)))
            column += repeat
            el.clear()
        elif tag == _q(TABLE, "table-row"):
            for r in range(_repeat(el, "number-rows-repeated") if found else 1):
                for c, what, raw in found:
                    if isinstance(what, str):
                        marks.errors[(row + r, c)] = what
                    else:
                        styled.add(row + r + 1, c, what, raw)
            row += _repeat(el, "number-rows-repeated")
            el.clear()
            parent = el.getparent()
            while parent is not None and el.getprevious() is not None:
                del parent[0]
        elif tag == _q(TABLE, "table-column"):
            repeat = _repeat(el, "number-columns-repeated")
            column_ends.append((column_ends[-1] if column_ends else 0) + repeat)
            column_styles.append(el.get(_q(TABLE, "default-cell-style-name")))
        elif tag == _q(TABLE, "table"):
            return


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None
