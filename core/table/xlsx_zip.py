"""Looking inside an xlsx (a zip of XML parts) for what calamine does not give us.

- `scan_sheet`: python-calamine turns error cells (#N/A, #DIV/0!) into blanks, reads a
  formula without a saved result as blank (or XlsxWriter's placeholder 0) and a cell's number
  as stored, not as its format shows it; we find those cells in the sheet's XML ourselves
  (`cell_formats` reads the number formats). The XML is streamed and each pattern runs only
  over rows that may hold its cells.
- `head_copy`: calamine always parses a whole sheet, so a preview of a million-row sheet
  would take seconds. A copy of the workbook whose big sheets are cut after their first
  rows (and without pictures and other parts calamine ignores) parses in milliseconds.
"""

from __future__ import annotations

import contextlib
import io
import posixpath
import re
import zipfile
import zlib
from array import array
from collections.abc import Set
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import pairwise
from pathlib import Path
from typing import BinaryIO
from xml.etree import ElementTree

CHUNK = 1 << 20
_NAME = rb"(?:[A-Za-z_][\w.-]*:)?"  # an optional namespace prefix (<x:row>)
ROW_END = re.compile(rb"</" + _NAME + rb"row>")
STRING_END = re.compile(rb"</" + _NAME + rb"si>")
SHARED_INDEX = re.compile(rb"<" + _NAME + rb"c\b[^>]*?\st=[\"']s[\"'][^>]*>\s*<" + _NAME + rb"v>\s*([0-9]+)")
ERROR_CELL = re.compile(
    rb"<" + _NAME + rb"c\b([^>]*?)\st=[\"']e[\"']([^>]*)(?<!/)>(.*?)</" + _NAME + rb"c>", re.S)
CELL_REF = re.compile(rb"\br=[\"']([A-Z]{1,3})([0-9]{1,7})[\"']")
VALUE = re.compile(rb"<" + _NAME + rb"v>([^<]*)</")
ROOT = re.compile(rb"<(" + _NAME + rb")(?:worksheet|sst)\b")
MAX_PENDING = 16 << 20  # a row longer than this is searched in pieces

# Folders of parts calamine never reads for values: left out of a head copy (pictures can be big).
_SKIPPED_FOLDERS = {"media", "drawings", "charts", "embeddings", "pivotcache", "pivottables", "printersettings",
                    "richdata", "externallinks", "customxml", "docprops", "activex", "ctrlprops", "diagrams"}
HEAD_MIN_SHEET_BYTES = 4 << 20  # smaller sheets are parsed whole: that is already fast
HEAD_MAX_BYTES = 256 << 20      # a head copy bigger than this is not worth it (or a zip bomb): ValueError


# What reading the zip and XML of a damaged package raises (ParseError is a SyntaxError;
# RuntimeError: a member flagged as zip-encrypted).
ZIP_ERRORS = (zipfile.BadZipFile, OSError, KeyError, EOFError, ValueError, zlib.error, ElementTree.ParseError,
              RuntimeError, NotImplementedError)
_MACRO_TYPES = ("/xlMacrosheet", "/xlIntlMacrosheet")  # Excel 4.0 macro sheets: calamine refuses the workbook


@dataclass
class Package:
    """What one look at an xlsx's zip and workbook part tells (read once per load)."""

    members: dict[str, str]                              # sheet name -> zip member of its XML
    macro_sheets: set[str] = field(default_factory=set)  # Excel 4.0 macro sheets (no table; calamine refuses them)
    sizes: dict[str, int] = field(default_factory=dict)  # member -> declared unzipped size
    shared_strings: str | None = None
    utf16_parts: set[str] = field(default_factory=set)   # XML parts in UTF-16, which calamine reads as empty
    styles: str | None = None                            # the styles part (number formats)
    date1904: bool = False                               # dates count from 1904 (old Mac Excel)
    recalc: bool = False  # calcPr fullCalcOnLoad: the writer left formulas for Excel to compute (openpyxl, XlsxWriter)


def inspect(source: Path | BinaryIO) -> Package:
    """The package's sheets, macro sheets and part sizes. Raises one of ZIP_ERRORS when damaged."""
    with zipfile.ZipFile(source) as z:
        main, rels = _workbook_rels(z)
        by_path = _members_by_path(z)
        members, macros = {}, set()
        date1904 = recalc = False
        for el in ElementTree.fromstring(z.read(by_path[main.lower()])).iter():
            tag = _local(el.tag)
            if tag == "sheet":
                rid = next((v for k, v in el.attrib.items() if _local(k) == "id"), None)
                kind, path = rels.get(rid or "", ("", ""))
                if kind.endswith(_MACRO_TYPES):
                    macros.add(el.get("name", ""))
                elif path.lower() in by_path:
                    members[el.get("name", "")] = by_path[path.lower()]
            elif tag == "workbookPr":
                date1904 = el.get("date1904", "").lower() in ("1", "true")
            elif tag == "calcPr":
                recalc = el.get("fullCalcOnLoad", "").lower() in ("1", "true")
        styles = by_path.get(next((p for t, p in rels.values() if t.endswith("/styles")), "").lower())
        strings = by_path.get(next((p for t, p in rels.values() if t.endswith("/sharedStrings")), "").lower())
        utf16: set[str] = set()
        # A writer that uses UTF-16 does so for every part: the workbook, strings and first sheet tell.
        first_sheet = next(iter(members.values()), None)
        for member in {m for m in (first_sheet, strings, by_path[main.lower()]) if m}:
            with z.open(member) as f:
                if f.read(2) in (b"\xff\xfe", b"\xfe\xff"):
                    utf16.add(member)
        return Package(members, macros, {i.filename: i.file_size for i in z.infolist()}, strings, utf16, styles,
                       date1904, recalc)


STYLES_MAX_BYTES = 64 << 20  # a styles part beyond this is not read for number formats


def cell_formats(source: Path | BinaryIO | zipfile.ZipFile, member: str) -> list[str]:
    """The number format code of each cell style (a cell's s= indexes this list): custom codes
    from <numFmts>, built-in ones by id ("" for those that need no care)."""
    from .numfmt import BUILTIN

    with opened(source) as z:
        if z.getinfo(member).file_size > STYLES_MAX_BYTES:
            return []
        root = ElementTree.fromstring(z.read(member))
    custom: dict[int, str] = {}
    formats: list[str] = []
    for el in root:
        tag = _local(el.tag)
        if tag == "numFmts":
            for fmt in el:
                with contextlib.suppress(ValueError):
                    custom[int(fmt.get("numFmtId", ""))] = fmt.get("formatCode", "")
        elif tag == "cellXfs":
            for xf in el:
                try:
                    number = int(xf.get("numFmtId", "0"))
                except ValueError:
                    number = 0
                formats.append(custom.get(number, BUILTIN.get(number, "")))
    return formats


def sheet_members(z: zipfile.ZipFile) -> dict[str, str]:
    """Sheet name -> zip member of its XML, following the package's relationships."""
    main, rels = _workbook_rels(z)
    by_path = _members_by_path(z)
    members = {}
    for el in ElementTree.fromstring(z.read(by_path[main.lower()])).iter():
        if _local(el.tag) == "sheet":
            rid = next((v for k, v in el.attrib.items() if _local(k) == "id"), None)
            kind, path = rels.get(rid or "", ("", ""))
            if path.lower() in by_path and not kind.endswith(_MACRO_TYPES):
                members[el.get("name", "")] = by_path[path.lower()]
    return members


# ---- the extent of a sheet ---------------------------------------------------------------

EXTENT_SCAN_BYTES = 4 << 20  # sheets up to this size are checked for a far-away stray cell first
_CELL_AT = re.compile(rb"<" + _NAME + rb"c\b[^>]*?\sr=[\"']([A-Z]{1,3})([0-9]{1,7})[\"']")


def opened(source: Path | BinaryIO | zipfile.ZipFile):
    """`source` as a zip to use in a `with` (an open ZipFile stays open: the caller's, shared)."""
    return contextlib.nullcontext(source) if isinstance(source, zipfile.ZipFile) else zipfile.ZipFile(source)


def extent(source: Path | BinaryIO | zipfile.ZipFile, member: str) -> tuple[int, int, int, int, int] | None:
    """(first row, first column, last row, last column, cells) 0-based of a small sheet's cells
    with a position; None for a big sheet (not scanned) or a sheet without such cells."""
    with opened(source) as z:
        if z.getinfo(member).file_size > EXTENT_SCAN_BYTES:
            return None
        with z.open(member) as f:
            xml = f.read(EXTENT_SCAN_BYTES + 1)
    refs = _CELL_AT.findall(xml)
    if not refs:
        return None
    rows = [int(r) - 1 for _, r in refs]
    columns = [_column_index(c) for c, _ in refs]
    return min(rows), min(columns), max(rows), max(columns), len(refs)


# A stray cell: far below or right of the table (Excel users type in XFD1048576 by accident).
STRAY_ROW_GAP = 1_000    # rows with no cell between the table and a stray cell
STRAY_COLUMN_GAP = 100   # columns likewise
STRAY_MOST = 100         # more cells than this out there are a second table, not strays
_CELL_ELEMENT = re.compile(rb"<(" + _NAME + rb")c\b([^>]*?)(?:/>|>.*?</\1c>)", re.S)
_DIMENSION = re.compile(rb"<" + _NAME + rb"dimension\b[^>]*/>")


@dataclass
class Strays:
    """The cells far from a sheet's table, and the sheet's XML without them."""

    table: tuple[int, int, int, int]  # first row, first column, last row, last column (0-based) of what is kept
    cells: list[str]                  # the strays' names ("XFD1048576")
    xml: bytes


def without_strays(source: Path | BinaryIO | zipfile.ZipFile, member: str) -> Strays | None:
    """A small sheet's table without the few cells that lie far below or right of it; None when
    the sheet has no such cells (or too many to be strays, or is too big to scan)."""
    with opened(source) as z:
        if z.getinfo(member).file_size > EXTENT_SCAN_BYTES:
            return None
        xml = z.read(member)
    cells = [(m, ref) for m in _CELL_ELEMENT.finditer(xml) if (ref := CELL_REF.search(m.group(2)))]
    if not cells:
        return None
    rows = sorted({int(ref.group(2)) - 1 for _, ref in cells})
    columns = sorted({_column_index(ref.group(1)) for _, ref in cells})
    last_row = next((a for a, b in pairwise(rows) if b - a > STRAY_ROW_GAP), rows[-1])
    last_column = next((a for a, b in pairwise(columns) if b - a > STRAY_COLUMN_GAP), columns[-1])
    far = [(m, ref) for m, ref in cells
           if int(ref.group(2)) - 1 > last_row or _column_index(ref.group(1)) > last_column]
    if not far or len(far) > STRAY_MOST:
        return None
    kept = [ref for _, ref in cells if int(ref.group(2)) - 1 <= last_row and _column_index(ref.group(1)) <= last_column]
    box = (min(int(r.group(2)) - 1 for r in kept), min(_column_index(r.group(1)) for r in kept),
           max(int(r.group(2)) - 1 for r in kept), max(_column_index(r.group(1)) for r in kept))
    pieces, at = [], 0
    for m, _ in far:
        pieces += [xml[at:m.start()]]
        at = m.end()
    dimension = f'<dimension ref="{cell_name(box[0], box[1])}:{cell_name(box[2], box[3])}"/>'.encode()
    cleaned = _DIMENSION.sub(dimension, b"".join([*pieces, xml[at:]]), count=1)
    return Strays(box, [(ref.group(1) + ref.group(2)).decode() for _, ref in far], cleaned)


def replaced(source: Path | BinaryIO | zipfile.ZipFile, parts: dict[str, bytes]) -> bytes:
    """The xlsx's bytes with `parts` (member -> new content) in place of its own."""
    out = io.BytesIO()
    with opened(source) as z, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as w:
        for info in z.infolist():
            w.writestr(info, parts[info.filename] if info.filename in parts else z.read(info.filename))
    return out.getvalue()


def cell_name(row: int, column: int) -> str:
    letters = ""
    column += 1
    while column:
        column, rest = divmod(column - 1, 26)
        letters = chr(65 + rest) + letters
    return f"{letters}{row + 1}"


def shared_strings_member(z: zipfile.ZipFile) -> str | None:
    path = next((p for t, p in _workbook_rels(z)[1].values() if t.endswith("/sharedStrings")), "")
    return _members_by_path(z).get(path.lower())


def _members_by_path(z: zipfile.ZipFile) -> dict[str, str]:
    """Normalised lower-case path -> member name (some writers use backslashes or odd case)."""
    return {n.replace("\\", "/").lower(): n for n in z.namelist()}


def _workbook_rels(z: zipfile.ZipFile) -> tuple[str, dict[str, tuple[str, str]]]:
    """(path of the workbook part, its relationships: id -> (type, member path))."""
    def targets(rels_path: str, folder: str) -> dict[str, tuple[str, str]]:
        member = _members_by_path(z)[rels_path.lower()]
        found = {}
        for el in ElementTree.fromstring(z.read(member)).iter():
            if _local(el.tag) == "Relationship":
                target = el.get("Target", "").replace("\\", "/")
                path = target.lstrip("/") if target.startswith("/") else posixpath.normpath(posixpath.join(folder, target))
                found[el.get("Id", "")] = (el.get("Type", ""), path)
        return found

    main = next((p for t, p in targets("_rels/.rels", "").values() if t.endswith("/officeDocument")), "xl/workbook.xml")
    folder, base = posixpath.split(main)
    return main, targets(posixpath.join(folder, "_rels", base + ".rels"), folder)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


# ---- what the sheet's XML says that calamine does not ----------------------------------

Position = tuple[int, int]  # (row, column), 0-based


@dataclass
class Marks:
    """Cells of one sheet that calamine reads differently from what Excel shows."""

    errors: dict[Position, str] = field(default_factory=dict)   # error cells: their text (#N/A)
    no_result: list[Position] = field(default_factory=list)     # formulas without a saved result
    styled: Styled = field(default_factory=lambda: Styled())    # numbers with a format that matters
    big: dict[Position, str] = field(default_factory=dict)      # raw text of numbers beyond 2**53


@dataclass
class Styled:
    """Numeric cells whose number format matters, as parallel arrays (12 bytes a cell: a million
    formatted cells stay small, and the scan adds a chunk's cells without a Python loop)."""

    row_numbers: array = field(default_factory=lambda: array("l"))  # 1-based, as Excel numbers rows
    columns: array = field(default_factory=lambda: array("l"))      # 0-based
    styles: array = field(default_factory=lambda: array("l"))       # the cell's style (xlsx s=, xls XF)
    raw: dict[int, float] = field(default_factory=dict)  # cell's index -> its stored number, for the styles
    raw_styles: frozenset[int] = frozenset()  # whose value calamine turns into something else (dates, durations)

    def add(self, row_number: int, column: int, style: int, raw: float | None = None) -> None:
        if style in self.raw_styles:
            if raw is None:
                return
            self.raw[len(self.styles)] = raw
        self.row_numbers.append(row_number)
        self.columns.append(column)
        self.styles.append(style)

    def __len__(self) -> int:
        return len(self.styles)


_ROW_OPEN = re.compile(rb"<" + _NAME + rb"row\b([^>]*)>")
_ROW_CLOSE = re.compile(rb"</" + _NAME + rb"row>")
_ANY_CELL_OPEN = re.compile(rb"<" + _NAME + rb"c\b([^>]*)>")
_ROW_NUMBER = re.compile(rb"\br=[\"']([0-9]{1,7})[\"']")
_TYPE = re.compile(rb"\st=[\"']([A-Za-z]*)[\"']")
_FORMULA = rb"<" + _NAME + rb"f\b[^>]*?(?:/>|>[^<]*</" + _NAME + rb"f>)"
# A formula cell whose value is missing or empty (openpyxl, pandas), or 0 (XlsxWriter's placeholder).
NO_RESULT = re.compile(rb"<" + _NAME + rb"c\b([^>]*?)(?<!/)>\s*" + _FORMULA + rb"\s*(?:<" + _NAME + rb"v\s*/>|<"
                       + _NAME + rb"v>\s*(0?)\s*</" + _NAME + rb"v>)?\s*</" + _NAME + rb"c>")
BIG_VALUE = re.compile(rb"<" + _NAME + rb"v>\s*(-?(?:[0-9]{16,}(?:\.0*)?|[0-9](?:\.[0-9]*)?[eE]\+?(?:1[5-9]|2[01])))\s*</")
_NUMERIC = (None, b"n")


_Patterns = tuple[re.Pattern, re.Pattern, tuple[bytes, ...]]


def _styled_pattern(styles: Set[int], value: bool = True) -> _Patterns | None:
    """(the style attribute of cells with one of `styles` (s="3"); such cells as Excel, openpyxl
    and XlsxWriter write them, r= then s=, matched at C speed: with their plain value (`value`),
    else only their position and style (the value is calamine's); the ids)."""
    if not styles:
        return None
    ids = tuple(str(s).encode() for s in sorted(styles))
    either = b"|".join(ids)
    cell = rb'<c r="([A-Z]{1,3})([0-9]{1,7})" s="(' + either + rb')"'
    return (re.compile(rb"\ss=[\"'](?:" + either + rb")[\"']"),
            re.compile(cell + rb'(?: t="n")?>(?:<f>[^<]*</f>)?<v>([^<]*)</v>' if value else cell), ids)


def _count(xml: bytes, ids: tuple[bytes, ...]) -> int:
    """At least the number of s="id" attributes (bytes.count is several times faster than a regex;
    a few other attributes may end in s="1" too: then the slow path looks closer)."""
    found = sum(xml.count(b's="' + i + b'"') for i in ids)
    if b"s='" in xml:
        found += sum(xml.count(b"s='" + i + b"'") for i in ids)
    return found


# Each check below is a pass over the chunk at memory speed, but one that holds the GIL while
# calamine builds its rows: few passes per chunk; the regexes run only over chunks that may hold
# their cells. Most checks look at the chunk translated: digits as 0, E as e, ' as ", + dropped.
_HINTS = bytes.maketrans(b"0123456789E'", b"0000000000e\"")


def _may_hold_big(hinted: bytes) -> bool:
    """A number of 16 digits or more, or written with an exponent (1.2e+17, 1.2E17)."""
    return b"0e0" in hinted or b"0" * 16 in hinted


def scan_sheet(source: Path | BinaryIO | zipfile.ZipFile, member: str, *, styles: Set[int] = frozenset(),
               raw_styles: Set[int] = frozenset(), date_styles: Set[int] = frozenset(),
               recalc: bool = False) -> Marks:
    """The marks of the sheet whose XML is zip member `member`: error cells, formulas without a
    result (`recalc`: the workbook asks to be recalculated on opening, so a cached 0 is XlsxWriter's
    placeholder), cells with a number format in `styles` or `raw_styles` (with their stored number:
    calamine turns them into something else), or in `date_styles` (values below 1, with their
    number) and numbers beyond 2**53.

    Streamed by whole rows; each pattern runs (at C speed) only over rows that may hold its cells.
    Best effort: a part that cannot be read gives what was found so far (calamine reports the damage).
    """
    scan = _Scanner(_styled_pattern(styles, value=False), _styled_pattern(raw_styles), _styled_pattern(date_styles), recalc)
    scan.marks.styled.raw_styles = frozenset(raw_styles) | frozenset(date_styles)
    try:
        with opened(source) as z, z.open(member) as f:
            pending, first = b"", True
            while chunk := f.read(CHUNK):
                if first and (root := ROOT.search(chunk)) is not None:
                    scan.formula_tag = b"<" + root.group(1) + b"f"
                pending, first = pending + chunk, False
                cut = _after_last_row(pending)
                if cut < 0:
                    if len(pending) <= MAX_PENDING:
                        continue
                    cut = len(pending)  # an enormous row: search it in pieces
                scan.search(pending[:cut])
                pending = pending[cut:]
            scan.search(pending)
    except ZIP_ERRORS:
        pass
    return scan.marks


def error_cells(source: Path | BinaryIO | zipfile.ZipFile, member: str) -> dict[Position, str]:
    """(row, column) 0-based -> the error text Excel shows (#N/A), for every error cell of the sheet."""
    return scan_sheet(source, member).errors


def _after_last_row(xml: bytes) -> int:
    """The offset just after the last closing row tag (-1: none): cells never span two rows."""
    end = len(xml)
    while (at := xml.rfind(b"row>", 0, end)) >= 0:
        start = xml.rfind(b"<", 0, at)
        if start >= 0 and _ROW_CLOSE.match(xml, start):
            return at + 4
        end = at
    return -1


class _Scanner:
    def __init__(self, styled: _Patterns | None, raw: _Patterns | None, dated: _Patterns | None, recalc: bool):
        self.styled, self.raw, self.dated, self.recalc = styled, raw, dated, recalc
        self.marks = Marks()
        self.formula_tag = b"<f"  # with the part's namespace prefix, once known (<x:f)
        self.next_row = 0  # the index of the row after the last one searched (rows without r=)
        self._xml = b""
        self._rows: list[tuple[int, int, int]] | None = None  # this chunk's (start, end of tag, index)

    def search(self, xml: bytes) -> None:
        self._xml, self._rows = xml, None
        marks = self.marks
        hinted = xml.translate(_HINTS, b"+")
        if b't="e"' in hinted:
            for m in ERROR_CELL.finditer(xml):
                value = VALUE.search(m.group(3))
                where = self._position(m.start(), m.group(1) + b" " + m.group(2))
                if value is not None and where is not None:
                    marks.errors[where] = value.group(1).decode("utf-8", "replace")
        if self.formula_tag in xml:
            for m in NO_RESULT.finditer(xml):
                attrs, zero = m.group(1), m.group(2)
                kind = _cell_type(attrs)
                if zero and not (self.recalc and kind in _NUMERIC):
                    continue  # a real 0
                if zero is not None and not zero and kind not in _NUMERIC:
                    continue  # an empty text result ("" from IF): a real value
                if (where := self._position(m.start(), attrs)) is not None:
                    marks.no_result.append(where)
        self._styled(xml, self.styled)
        self._styled(xml, self.raw, raw=True)
        if self.dated is not None and (b"v>0" in xml or b"v>-" in xml):
            self._styled(xml, self.dated, raw=True, small=True)
        if _may_hold_big(hinted):
            for m in BIG_VALUE.finditer(xml):
                cell = _cell_before(xml, m.start())
                if cell is not None and _cell_type(cell.group(1)) in _NUMERIC:
                    if (where := self._position(cell.start(), cell.group(1))) is not None:
                        marks.big[where] = m.group(1).decode("ascii")
        self._advance(xml)

    def _styled(self, xml: bytes, patterns: _Patterns | None, raw: bool = False, small: bool = False) -> None:
        """Cells whose style is in `patterns` (`raw`: with their stored number; `small`: only values
        below 1). Cells in the common form (nearly all) are added a chunk at a time, in C, when
        their stored number is not needed (calamine's value is that number)."""
        if patterns is None:
            return
        attribute, cell_pattern, ids = patterns
        styled = self.marks.styled
        found = cell_pattern.findall(xml)
        common = len(found)
        if small:
            found = [cell for cell in found if _below_one(cell[3])]
        if found and not raw:
            letters, digits, style_ids = zip(*found, strict=True)
            styled.row_numbers.extend(map(int, digits))
            styled.columns.extend(map(_column_index, letters))
            styled.styles.extend(map(int, style_ids))
        else:
            for letters, digits, style, number in found:
                with contextlib.suppress(ValueError):
                    styled.add(int(digits), _column_index(letters), int(style), float(number))
        if _count(xml, ids) == common:
            return  # every such cell was in the common form
        seen = {(int(cell[1]), _column_index(cell[0])) for cell in cell_pattern.findall(xml)}
        for m in attribute.finditer(xml):
            cell = _cell_before(xml, m.start())
            if cell is None or cell.group(1).endswith(b"/") or _cell_type(cell.group(1)) not in _NUMERIC:
                continue
            close = xml.find(b"c>", cell.end())
            value = VALUE.search(xml, cell.end(), close if close >= 0 else len(xml))
            if value is None:
                continue
            text = value.group(1).strip()
            if small and not _below_one(text):
                continue
            style = _STYLE.search(cell.group(1))
            where = self._position(cell.start(), cell.group(1))
            if text and style and where is not None and (where[0] + 1, where[1]) not in seen:
                with contextlib.suppress(ValueError):
                    styled.add(where[0] + 1, where[1], int(style.group(1)), float(text) if raw else None)

    def _position(self, cell_start: int, attrs: bytes) -> Position | None:
        ref = CELL_REF.search(attrs)
        if ref is not None:
            letters, digits = ref.groups()
            return int(digits) - 1, _column_index(letters)
        # No r= (some writers leave positions implicit): count the rows and the cells before it.
        rows = self._row_starts()
        row = next((r for r in reversed(rows) if r[0] < cell_start), None)
        if row is None:
            return None
        column = -1
        for cell in _ANY_CELL_OPEN.finditer(self._xml, row[1], cell_start):  # the cells before it
            ref = CELL_REF.search(cell.group(1))
            column = _column_index(ref.group(1)) if ref else column + 1
        return row[2], column + 1

    def _row_starts(self) -> list[tuple[int, int, int]]:
        if self._rows is None:
            index, self._rows = self.next_row - 1, []
            for m in _ROW_OPEN.finditer(self._xml):
                number = _ROW_NUMBER.search(m.group(1))
                index = int(number.group(1)) - 1 if number else index + 1
                self._rows.append((m.start(), m.end(), index))
        return self._rows

    def _advance(self, xml: bytes) -> None:
        """The row index after this chunk: the last row's number, else the rows counted."""
        end = len(xml)
        while (at := xml.rfind(b"row", 0, end)) >= 0:
            start = xml.rfind(b"<", 0, at)
            if start >= 0 and (last := _ROW_OPEN.match(xml, start)) is not None and last.end() > at:
                if number := _ROW_NUMBER.search(last.group(1)):
                    self.next_row = int(number.group(1))
                else:
                    self.next_row = self._row_starts()[-1][2] + 1
                return
            end = start if start >= 0 else at


_STYLE = re.compile(rb"\ss=[\"']([0-9]+)[\"']")


def _below_one(raw: bytes) -> bool:
    return raw[:1] == b"-" or raw[:2] in (b"0", b"0.") or b"e-" in raw.lower()


def _cell_type(attrs: bytes) -> bytes | None:
    found = _TYPE.search(attrs)
    return found.group(1) if found else None


def _value(inner: bytes) -> bytes | None:
    found = VALUE.search(inner)
    return found.group(1) if found else None


def _cell_before(xml: bytes, pos: int) -> re.Match | None:
    """The opening tag of the cell that holds offset `pos` (a few tags back at most)."""
    end = pos
    for _ in range(8):
        start = xml.rfind(b"<", 0, end)
        if start < 0:
            return None
        if cell := _ANY_CELL_OPEN.match(xml, start):
            return cell
        if _ROW_OPEN.match(xml, start):
            return None
        end = start
    return None


@lru_cache(maxsize=4096)
def _column_index(letters: bytes) -> int:
    index = 0
    for ch in letters:
        index = index * 26 + (ch - 64)
    return index - 1


# ---- head copy --------------------------------------------------------------------------

def head_copy(path: Path | BinaryIO, max_rows: int | None, package: Package | None = None) -> io.BytesIO | None:
    """An in-memory xlsx with each big sheet cut after `max_rows` rows that hold a value (None:
    no cut) and without Excel 4.0 macro sheets (calamine refuses a workbook that has one);
    None when there is nothing to cut or leave out.

    A big shared-strings table is cut too, after the last string those rows use (tables
    written by Excel list strings in order of first use, so that is near the start).
    ValueError when the copy would be huge anyway (the caller then reads the whole file).
    """
    with zipfile.ZipFile(path) as z:
        package = package or inspect(path)
        sheets = set(package.members.values())
        big = {m for m in sheets if max_rows is not None and z.getinfo(m).file_size > HEAD_MIN_SHEET_BYTES}
        if not big and not package.macro_sheets and not package.utf16_parts:
            return None
        parts = {m: _head(z, m, ROW_END, max_rows or 0, (b"sheetData", b"worksheet"), _holds_value)
                 if m in big else z.read(m) for m in sheets}
        strings = shared_strings_member(z)
        if big and strings and z.getinfo(strings).file_size > HEAD_MIN_SHEET_BYTES:
            used = max((int(i) for xml in parts.values() for i in SHARED_INDEX.findall(xml)), default=0)
            parts[strings] = _head(z, strings, STRING_END, used + 1, (b"sst",))
        if package.utf16_parts:  # then every XML part may be UTF-16: convert them all
            package.utf16_parts |= {n for n in z.namelist() if n.lower().endswith((".xml", ".rels"))}
        for member in package.utf16_parts:
            parts[member] = _as_utf8(parts[member] if member in parts else z.read(member))
        if package.macro_sheets:
            main = _workbook_rels(z)[0]
            member = _members_by_path(z)[main.lower()]
            parts[member] = _without_sheets(parts.get(member) or z.read(member), package.macro_sheets)
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as w:
            for info in z.infolist():
                name = info.filename
                if name in parts:
                    w.writestr(name, parts[name])
                elif not _SKIPPED_FOLDERS.intersection(name.replace("\\", "/").lower().split("/")[:-1]):
                    if info.file_size > HEAD_MAX_BYTES:
                        raise ValueError(f"{name} is too big for a head copy")
                    w.writestr(name, z.read(name))
        out.seek(0)
        return out


_SHEET_ENTRY = re.compile(rb"<" + _NAME + rb"sheet\b[^>]*?\sname=[\"']([^\"']*)[\"'][^>]*>(?:\s*</" + _NAME + rb"sheet>)?")


def _without_sheets(workbook_xml: bytes, names: set[str]) -> bytes:
    """The workbook part without the <sheet> entries of `names` (names as XML escapes them)."""
    from xml.sax.saxutils import escape

    escaped = {escape(n, {'"': "&quot;", "'": "&apos;"}).encode() for n in names} | {n.encode() for n in names}
    return _SHEET_ENTRY.sub(lambda m: b"" if m.group(1) in escaped else m.group(0), workbook_xml)


_DECLARED_ENCODING = re.compile(rb"""(<\?xml[^>]*?encoding=)["'][^"']*["']""")


def _as_utf8(xml: bytes) -> bytes:
    """A UTF-16 XML part (BOM first) as UTF-8, its declaration changed to match."""
    if not xml.startswith((b"\xff\xfe", b"\xfe\xff")):
        return xml  # already converted (a cut part)
    text = xml.decode("utf-16", "replace").encode("utf-8")
    return _DECLARED_ENCODING.sub(rb'\1"UTF-8"', text, count=1)


# ODS written by other tools: whitespace between cells (calamine expects none; it is not
# content: text sits in <text:p>) and a missing `mimetype` member (calamine requires one).
_ODS_SPACE = re.compile(rb">\s+(?=</?(?:[\w.-]+:)?(?:table|table-row|table-cell|covered-table-cell|table-column|"
                        rb"table-rows|table-columns|table-header-rows|table-header-columns|table-row-group|"
                        rb"table-column-group)[\s/>])")


def ods_copy(source: Path | BinaryIO) -> bytes:
    """An in-memory ODS calamine reads: a `mimetype` member, no whitespace between table elements."""
    out = io.BytesIO()
    with zipfile.ZipFile(source) as z, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as w:
        names = z.namelist()
        if "mimetype" not in names:
            w.writestr(zipfile.ZipInfo("mimetype"), "application/vnd.oasis.opendocument.spreadsheet",
                       compress_type=zipfile.ZIP_STORED)
        for name in names:
            data = z.read(name)
            if name == "content.xml":
                data = _ODS_SPACE.sub(b">", data)
            w.writestr(z.getinfo(name), data)
    return out.getvalue()


def _holds_value(row_xml: bytes) -> bool:
    """A row with a value (<v> or an inline string), not only formatting."""
    return b"<v>" in row_xml or b"<is>" in row_xml or b":v>" in row_xml or b":is>" in row_xml


def _head(z: zipfile.ZipFile, member: str, end_tag: re.Pattern, count: int, close: tuple[bytes, ...],
          counts=None) -> bytes:
    """The part's XML up to its `count`-th `end_tag` (of those whose element `counts`), with
    `close` elements closed so it parses."""
    data = bytearray()
    found, pos = 0, 0
    with z.open(member) as f:
        while chunk := f.read(CHUNK):
            data += chunk
            for m in end_tag.finditer(data, pos):
                element, pos = data[pos:m.end()], m.end()
                if counts is None or counts(element):
                    found += 1
                if found >= count:
                    root = ROOT.search(data)
                    prefix = root.group(1) if root else b""
                    return bytes(data[:pos]) + b"".join(b"</" + prefix + name + b">" for name in close)
            pos = max(pos, len(data) - 16)  # a tag may straddle two chunks
            if len(data) > HEAD_MAX_BYTES:
                raise ValueError(f"{member}: no end of {count} elements in {HEAD_MAX_BYTES:,} bytes")
    return bytes(data)  # fewer than `count`: the whole part
