"""Looking inside an xlsx (a zip of XML parts) for what calamine does not give us.

- `error_cells`: python-calamine turns error cells (#N/A, #DIV/0!) into blanks; Excel
  shows the error text, so we find those cells in the sheet's XML ourselves. The XML is
  streamed and only rows that contain an error cell are searched with a regex.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, BinaryIO
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


def inspect(source: Path | BinaryIO) -> Package:
    """The package's sheets, macro sheets and part sizes. Raises one of ZIP_ERRORS when damaged."""
    with zipfile.ZipFile(source) as z:
        main, rels = _workbook_rels(z)
        by_path = _members_by_path(z)
        members, macros = {}, set()
        for el in ElementTree.fromstring(z.read(by_path[main.lower()])).iter():
            if _local(el.tag) == "sheet":
                rid = next((v for k, v in el.attrib.items() if _local(k) == "id"), None)
                kind, path = rels.get(rid or "", ("", ""))
                if kind.endswith(_MACRO_TYPES):
                    macros.add(el.get("name", ""))
                elif path.lower() in by_path:
                    members[el.get("name", "")] = by_path[path.lower()]
        strings = by_path.get(next((p for t, p in rels.values() if t.endswith("/sharedStrings")), "").lower())
        utf16: set[str] = set()
        # A writer that uses UTF-16 does so for every part: the workbook, strings and first sheet tell.
        first_sheet = next(iter(members.values()), None)
        for member in {m for m in (first_sheet, strings, by_path[main.lower()]) if m}:
            with z.open(member) as f:
                if f.read(2) in (b"\xff\xfe", b"\xfe\xff"):
                    utf16.add(member)
        return Package(members, macros, {i.filename: i.file_size for i in z.infolist()}, strings, utf16)


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


# ---- error cells -----------------------------------------------------------------------

def error_cells(source: Path | BinaryIO | zipfile.ZipFile, member: str) -> dict[tuple[int, int], str]:
    """(row, column) 0-based -> the error text Excel shows, for every error cell of the sheet
    whose XML is zip member `member`.

    Best effort: a file calamine cannot read either gives {} and calamine's error is reported.
    """
    try:
        with opened(source) as z, z.open(member) as f:
            return _scan_errors(f)
    except ZIP_ERRORS:
        return {}


def _scan_errors(f: IO[bytes]) -> dict[tuple[int, int], str]:
    found: dict[tuple[int, int], str] = {}
    pending = b""
    while chunk := f.read(CHUNK):
        pending += chunk
        cut = pending.rfind(b"row>") + 4  # search whole rows: a cell never spans two rows
        if cut < 4:
            if len(pending) <= MAX_PENDING:
                continue
            cut = len(pending)  # an enormous row: search it in pieces
        _search_errors(pending[:cut], found)
        pending = pending[cut:]
    _search_errors(pending, found)
    return found


def _search_errors(xml: bytes, found: dict[tuple[int, int], str]) -> None:
    if b't="e"' not in xml and b"t='e'" not in xml:
        return
    for m in ERROR_CELL.finditer(xml):
        ref = CELL_REF.search(m.group(1) + b" " + m.group(2))
        value = VALUE.search(m.group(3))
        if ref is None or value is None:  # no r= attribute: the position is implicit; leave it blank
            continue
        letters, digits = ref.groups()
        found[(int(digits) - 1, _column_index(letters))] = value.group(1).decode("utf-8", "replace")


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
