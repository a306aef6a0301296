"""Looking inside an xlsx (a zip of XML parts) for what calamine does not give us.

- `error_cells`: python-calamine turns error cells (#N/A, #DIV/0!) into blanks; Excel
  shows the error text, so we find those cells in the sheet's XML ourselves. The XML is
  streamed and only rows that contain an error cell are searched with a regex.
- `head_copy`: calamine always parses a whole sheet, so a preview of a million-row sheet
  would take seconds. A copy of the workbook whose big sheets are cut after their first
  rows (and without pictures and other parts calamine ignores) parses in milliseconds.
"""

from __future__ import annotations

import io
import posixpath
import re
import zipfile
import zlib
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


def sheet_members(z: zipfile.ZipFile) -> dict[str, str]:
    """Sheet name -> zip member of its XML, following the package's relationships."""
    main, rels = _workbook_rels(z)
    by_path = _members_by_path(z)
    members = {}
    for el in ElementTree.fromstring(z.read(by_path[main.lower()])).iter():
        if _local(el.tag) == "sheet":
            rid = next((v for k, v in el.attrib.items() if _local(k) == "id"), None)
            path = rels.get(rid or "", ("", ""))[1]
            if path.lower() in by_path:
                members[el.get("name", "")] = by_path[path.lower()]
    return members


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

def error_cells(source: Path | BinaryIO, sheet: str) -> dict[tuple[int, int], str]:
    """(row, column) 0-based -> the error text Excel shows, for every error cell of `sheet`.

    Best effort: a file calamine cannot read either gives {} and calamine's error is reported.
    """
    try:
        with zipfile.ZipFile(source) as z:
            member = sheet_members(z).get(sheet)
            if member is None:
                return {}
            with z.open(member) as f:
                return _scan_errors(f)
    except (zipfile.BadZipFile, OSError, KeyError, EOFError, ValueError, zlib.error, ElementTree.ParseError):
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

def head_copy(path: Path, max_rows: int) -> io.BytesIO | None:
    """An in-memory xlsx with each big sheet cut after `max_rows` rows; None if no sheet is big.

    A big shared-strings table is cut too, after the last string those rows use (tables
    written by Excel list strings in order of first use, so that is near the start).
    ValueError when the copy would be huge anyway (the caller then reads the whole file).
    """
    with zipfile.ZipFile(path) as z:
        sheets = set(sheet_members(z).values())
        big = {m for m in sheets if z.getinfo(m).file_size > HEAD_MIN_SHEET_BYTES}
        if not big:
            return None
        parts = {m: _head(z, m, ROW_END, max_rows, (b"sheetData", b"worksheet")) if m in big else z.read(m)
                 for m in sheets}
        strings = shared_strings_member(z)
        if strings and z.getinfo(strings).file_size > HEAD_MIN_SHEET_BYTES:
            used = max((int(i) for xml in parts.values() for i in SHARED_INDEX.findall(xml)), default=0)
            parts[strings] = _head(z, strings, STRING_END, used + 1, (b"sst",))
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


def _head(z: zipfile.ZipFile, member: str, end_tag: re.Pattern, count: int, close: tuple[bytes, ...]) -> bytes:
    """The part's XML up to its `count`-th `end_tag`, with `close` elements closed so it parses."""
    data = bytearray()
    found, pos = 0, 0
    with z.open(member) as f:
        while chunk := f.read(CHUNK):
            data += chunk
            for m in end_tag.finditer(data, pos):
                found += 1
                pos = m.end()
                if found >= count:
                    root = ROOT.search(data)
                    prefix = root.group(1) if root else b""
                    return bytes(data[:pos]) + b"".join(b"</" + prefix + name + b">" for name in close)
            pos = max(pos, len(data) - 16)  # a tag may straddle two chunks
            if len(data) > HEAD_MAX_BYTES:
                raise ValueError(f"{member}: no end of {count} elements in {HEAD_MAX_BYTES:,} bytes")
    return bytes(data)  # fewer than `count`: the whole part
