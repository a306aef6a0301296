"""Excel-family workbooks (xlsx, xlsm, xlsb, xls, ods) read through python-calamine.

calamine gives cached formula values, rich text as plain text, dates in both the 1900 and
1904 systems, and guards against allocation traps (a cell limit). On top of it we fill
merged ranges with their top-left value (what the eye sees in Excel) and, for xlsx, give
what Excel shows where python-calamine does not (`_look_again`): error text (#N/A...) where it
leaves a blank, a blank and a note for formulas without a saved result, zero-padded codes,
percentages, durations and day-0 dates through their number format (`numfmt`); in every
format, whole numbers beyond 2**53 as the integer text Excel shows.
"""

from __future__ import annotations

import contextlib
import io
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import python_calamine as pc
from batchgrid.core.util.errors import InputError

from . import biff, numfmt, ods_values, xls_cells, xlsx_zip
from .frame import Grid
from .sniff import ODS, XLS, XLSB, XLSX, password_protected

# Extensions calamine recognises for each kind; any other name is opened by content.
_SUFFIXES = {XLSX: {".xlsx", ".xlsm", ".xltx", ".xltm", ".xlam"}, XLSB: {".xlsb"}, XLS: {".xls", ".xla"},
             ODS: {".ods"}}
_NOT_TABLES = (pc.SheetTypeEnum.ChartSheet, pc.SheetTypeEnum.Vba, pc.SheetTypeEnum.DialogSheet)  # unhashable


SHARED_STRINGS_MAX = 256 << 20  # unzipped; more is a bomb (a million long unique strings is ~100 MB)
MAX_CELLS = 20_000_000           # a sheet's grid (its used range) beyond this cannot be held in memory


def list_sheets(path: Path, kind: str, data: bytes | None = None) -> list[str]:
    """`data`: the workbook's bytes when they are not the file's (a decrypted workbook)."""
    try:
        return _with_ods_fallback(path, kind, data, lambda data: _list_sheets(path, kind, data))
    except InputError as first:
        if kind != XLS or "damaged or not a valid" not in str(first):
            raise
        try:
            return biff.sheet_names(path, data)
        except InputError:
            raise first from None


def _with_ods_fallback(path: Path, kind: str, data: bytes | None, read):
    """An ODS calamine refuses is read again from a cleaned copy (xlsx_zip.ods_copy), as
    LibreOffice and pandas' odf reader open it; the first error stands if that fails too."""
    try:
        return read(data)
    except InputError as first:
        if kind != ODS:
            raise
        try:
            return read(xlsx_zip.ods_copy(io.BytesIO(data) if data else path))
        except (InputError, *xlsx_zip.ZIP_ERRORS):
            raise first from None


def _with_xlrd_fallback(path: Path, kind: str, sheet: str | int | None, max_rows: int | None, data: bytes | None,
                        read):
    """An xls calamine calls damaged is tried with xlrd (old BIFF versions, codepages calamine
    lacks, such as Mac Central European) before it is called damaged."""
    try:
        return read()
    except InputError as first:
        if kind != XLS or "damaged or not a valid" not in str(first):
            raise
        try:
            return biff.load(path, sheet, max_rows, data)
        except InputError:
            raise first from None


def _list_sheets(path: Path, kind: str, data: bytes | None) -> list[str]:
    package = _package(path, kind, data)
    with _open(path, kind, _head(path, kind, None, package, data)) as wb:
        return _table_sheets(wb)


def load(path: Path, kind: str, sheet: str | int | None, max_rows: int | None = None,
         data: bytes | None = None) -> tuple[list[str], str, Grid]:
    """(sheet names, chosen sheet, its grid). `max_rows` bounds the rows read from the top.
    `data`: the workbook's bytes when they are not the file's (a decrypted workbook)."""
    return _with_xlrd_fallback(path, kind, sheet, max_rows, data, lambda: _with_ods_fallback(
        path, kind, data, lambda data: _load(path, kind, sheet, max_rows, data)))


def _load(path: Path, kind: str, sheet: str | int | None, max_rows: int | None,
          data: bytes | None) -> tuple[list[str], str, Grid]:
    package = _package(path, kind, data)
    head = _head(path, kind, max_rows, package, data)
    head, stray_notes = _without_strays(path, package, head or data)
    with _open(path, kind, head) as wb, _zip(path, head, package) as z:
        names = _table_sheets(wb)
        formats = _formats(path, kind, z, package, data)
        with contextlib.closing(formats):
            names, name, grid = _chosen(path, kind, wb, names, sheet, max_rows, z, package, formats)
    if name in stray_notes:
        grid.notes.append(stray_notes[name])
    return names, name, grid


def _without_strays(path: Path, package: xlsx_zip.Package | None,
                    head: bytes | None) -> tuple[bytes | None, dict[str, str]]:
    """A stray cell far from the data (XFD1048576 beside A1:B3) would make calamine allocate the
    whole range between them. Such a sheet is read without its strays, with a note saying so
    (sheet name -> note); a sheet whose range is too big for other reasons is refused later."""
    if package is None:
        return head, {}
    parts: dict[str, bytes] = {}
    notes: dict[str, str] = {}
    try:
        with zipfile.ZipFile(io.BytesIO(head) if head else path) as z:
            for name, member in package.members.items():
                found = xlsx_zip.extent(z, member)
                if found is None or _cells(found[:4]) <= MAX_CELLS:
                    continue
                strays = xlsx_zip.without_strays(z, member)
                if strays is None or _cells(strays.table) > MAX_CELLS:
                    continue
                parts[member] = strays.xml
                far = ", ".join(strays.cells[:3]) + (f" and {len(strays.cells) - 3:,} more" if len(strays.cells) > 3 else "")
                notes[name] = (f"sheet {name!r} claims {_cells(found[:4]):,} cells ({_range(found[:4])}); only "
                               f"{_range(strays.table)} holds the table: {len(strays.cells):,} stray "
                               f"cell{'s' if len(strays.cells) > 1 else ''} far from it left out ({far})")
            if not parts:
                return head, {}
            return xlsx_zip.replaced(z, parts), notes
    except xlsx_zip.ZIP_ERRORS:
        return head, {}  # calamine says what is wrong


def _cells(box: tuple[int, int, int, int]) -> int:
    top, left, bottom, right = box
    return (bottom - top + 1) * (right - left + 1)


def _range(box: tuple[int, int, int, int]) -> str:
    top, left, bottom, right = box
    return f"{xlsx_zip.cell_name(top, left)}:{xlsx_zip.cell_name(bottom, right)}"


def _chosen(path: Path, kind: str, wb: pc.CalamineWorkbook, names: list[str], sheet: str | int | None,
            max_rows: int | None, z: zipfile.ZipFile | None, package: xlsx_zip.Package | None,
            formats: _Formats) -> tuple[list[str], str, Grid]:
    """(sheet names, the sheet asked for or the first with data, its grid)."""
    if sheet is None:
        for name in _default_order(wb, names):
            grid = _grid(path, kind, wb, name, max_rows, z, package, formats)
            if any(v != "" for row in grid.rows for v in row):
                return names, name, grid
        raise InputError(f"{path.name} has no data: every sheet is empty")
    name = _resolve(path, names, sheet)
    return names, name, _grid(path, kind, wb, name, max_rows, z, package, formats)


def _zip(path: Path, head: bytes | None, package: xlsx_zip.Package | None):
    """The xlsx calamine reads, opened once for every sheet's checks (a workbook of 1,024 sheets
    must not parse its zip directory 1,024 times); None when not an xlsx."""
    if package is None:
        return contextlib.nullcontext(None)
    try:
        return zipfile.ZipFile(io.BytesIO(head) if head else path)
    except xlsx_zip.ZIP_ERRORS:
        return contextlib.nullcontext(None)


def _package(path: Path, kind: str, data: bytes | None = None) -> xlsx_zip.Package | None:
    """An xlsx's sheets and part sizes, checked for bombs before calamine sees them (calamine
    aborts the process when an allocation fails). None when not an xlsx or too damaged to tell."""
    if kind != XLSX:
        return None
    try:
        package = xlsx_zip.inspect(io.BytesIO(data) if data else path)
    except xlsx_zip.ZIP_ERRORS:
        return None  # calamine says what is wrong
    size = package.sizes.get(package.shared_strings or "", 0)
    if size > SHARED_STRINGS_MAX:
        raise InputError(f"{path.name} cannot be read: its shared strings unzip to {size / 2**30:.1f} GB, far more "
                         f"than a workbook holds (the file is damaged or made to exhaust memory)")
    return package


def _check_extent(path: Path, name: str, member: str, z: zipfile.ZipFile) -> None:
    """A stray cell far from the data (XFD1048576 beside A1:B3) makes calamine allocate the whole
    range between them: refuse a small sheet whose range claims more cells than memory holds."""
    try:
        found = xlsx_zip.extent(z, member)
    except xlsx_zip.ZIP_ERRORS:
        return
    if found is None:
        return
    top, left, bottom, right, count = found
    cells = (bottom - top + 1) * (right - left + 1)
    if cells > MAX_CELLS:
        raise InputError(f"sheet {name!r} of {path.name} claims {cells:,} cells "
                         f"({xlsx_zip.cell_name(top, left)}:{xlsx_zip.cell_name(bottom, right)}) but holds {count:,}; "
                         "a stray cell lies far from the data: delete it in Excel and save again")


def _head(path: Path, kind: str, max_rows: int | None, package: xlsx_zip.Package | None = None,
          data: bytes | None = None) -> bytes | None:
    """The bytes calamine reads instead of the file (None: the file). For a bounded read of a big
    xlsx: the workbook cut after the rows we need; for any read, without Excel 4.0 macro sheets
    (which calamine refuses); else `data`, a decrypted workbook."""
    if kind != XLSX or package is None or (max_rows is None and not package.macro_sheets and not package.utf16_parts):
        return data
    try:
        copy = xlsx_zip.head_copy(io.BytesIO(data) if data else path, max_rows, package)
    except xlsx_zip.ZIP_ERRORS:
        return data  # let the full read report what is wrong
    return copy.getvalue() if copy else data


def _open(path: Path, kind: str, head: bytes | None = None) -> pc.CalamineWorkbook:
    try:
        if head is not None:
            return pc.CalamineWorkbook.from_filelike(io.BytesIO(head))
        if path.suffix.lower() in _SUFFIXES[kind]:
            return pc.CalamineWorkbook.from_path(str(path))
        with open(path, "rb") as f:  # a misnamed file: calamine picks the format by content
            return pc.CalamineWorkbook.from_filelike(f)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # BaseException: a Rust panic arrives as pyo3's PanicException
        raise _input_error(path, kind, exc) from None


def _table_sheets(wb: pc.CalamineWorkbook) -> list[str]:
    return [m.name for m in wb.sheets_metadata if m.typ not in _NOT_TABLES]


def _default_order(wb: pc.CalamineWorkbook, names: list[str]) -> list[str]:
    """Visible sheets first: the default is the first non-empty sheet a user can see."""
    visible = {m.name for m in wb.sheets_metadata if m.visible == pc.SheetVisibleEnum.Visible}
    return [n for n in names if n in visible] + [n for n in names if n not in visible]


def _resolve(path: Path, names: list[str], sheet: str | int) -> str:
    listing = ", ".join(repr(n) for n in names) or "none"
    if isinstance(sheet, int) and not isinstance(sheet, bool):
        if 0 <= sheet < len(names):
            return names[sheet]
        raise InputError(f"{path.name} has no sheet number {sheet} (counting from 0); sheets are: {listing}")
    if sheet in names:
        return sheet
    folded = [n for n in names if n.casefold() == str(sheet).strip().casefold()]
    if len(folded) == 1:
        return folded[0]
    raise InputError(f"sheet {str(sheet)!r} not found in {path.name}; sheets are: {listing}")


@dataclass
class _Formats:
    """A workbook's number formats that make Excel show something else than the stored number."""

    codes: list[str]                   # by cell style index (xlsx: a cell's s=; xls: its XF)
    kinds: dict[int, numfmt.Kind]      # style index -> what its format does, for those that matter
    date1904: bool = False
    book: Any = None                   # xls: xlrd's view of the workbook's globals
    ods: Any = None                    # ods: the package, and each cell style's index (by name)

    def styles(self, *kinds: numfmt.Kind) -> set[int]:
        return {s for s, k in self.kinds.items() if k in kinds}

    def close(self) -> None:
        if self.ods is not None:
            self.ods[0].close()
        if self.book is not None:
            self.book.release_resources()


def _formats(path: Path, kind: str, z: zipfile.ZipFile | None, package: xlsx_zip.Package | None,
             data: bytes | None) -> _Formats:
    """The workbook's number formats that matter, read once for all its sheets."""
    if kind == XLS:
        if (book := xls_cells.open_book(path, data)) is None:
            return _Formats([], {})
        return _classified(xls_cells.cell_formats(book), book.datemode == 1, book=book)
    if kind == ODS:
        try:
            source = zipfile.ZipFile(io.BytesIO(data) if data else path)
            codes, index = ods_values.cell_formats(source)
        except (*xlsx_zip.ZIP_ERRORS, SyntaxError):
            return _Formats([], {})
        return _classified(codes, False, ods=(source, index))
    if z is None or package is None or not package.styles:
        return _Formats([], {})
    try:
        codes = xlsx_zip.cell_formats(z, package.styles)
    except xlsx_zip.ZIP_ERRORS:
        codes = []
    return _classified(codes, package.date1904)


def _classified(codes: list[str], date1904: bool, **source: Any) -> _Formats:
    kinds = {i: kind for i, code in enumerate(codes) if code and (kind := numfmt.classify(code))}
    return _Formats(codes, kinds, date1904, **source)


def _second_look(kind: str, name: str, rows: list[list[Any]], formats: _Formats) -> xlsx_zip.Marks | None:
    """xls and ods: the sheet's error cells and formatted numbers, when it may hold any (errors
    read as blanks: a sheet without a blank has none)."""
    blanks = any("" in row for row in rows)
    if kind == XLS and formats.book is not None and (blanks or formats.kinds):
        return xls_cells.scan_sheet(formats.book, name, styles=formats.styles(*_BY_VALUE),
                                    raw_styles=formats.styles(numfmt.Kind.DURATION),
                                    date_styles=formats.styles(numfmt.Kind.DATE))
    if kind == ODS and formats.ods is not None:
        source, index = formats.ods
        wanted = {n for n, i in index.items() if i in formats.kinds}
        if (blanks or wanted) and ods_values.worth_scanning(source, wanted):
            return ods_values.scan_sheet(source, name, index, styles=formats.styles(*_BY_VALUE),
                                         raw_styles=formats.styles(numfmt.Kind.DURATION))
    return None


def _grid(path: Path, kind: str, wb: pc.CalamineWorkbook, name: str, max_rows: int | None,
          z: zipfile.ZipFile | None, package: xlsx_zip.Package | None = None,
          formats: _Formats | None = None) -> Grid:
    member = package.members.get(name) if package and z else None
    if z is not None and member is not None:
        _check_extent(path, name, member, z)
    formats = formats or _Formats([], {})
    with ThreadPoolExecutor(max_workers=1) as pool:
        # Runs while calamine parses (calamine and zlib work without holding the GIL): no time added.
        marks = pool.submit(xlsx_zip.scan_sheet, z, member,
                            styles=formats.styles(*_BY_VALUE), raw_styles=formats.styles(numfmt.Kind.DURATION),
                            date_styles=formats.styles(numfmt.Kind.DATE),
                            recalc=bool(package and package.recalc)) if z is not None and member else None
        try:
            sheet = wb.get_sheet_by_name(name)
            start = sheet.start
            rows = sheet.to_python(skip_empty_area=True, nrows=max_rows) if start else []
            merged = sheet.merged_cell_ranges or []
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            raise _input_error(path, kind, exc, sheet=name) from None
        found = marks.result() if marks else None
    if found is None and kind in (XLS, ODS) and start:
        found = _second_look(kind, name, rows, formats)
    top, left = start or (0, 0)
    complete = max_rows is None or len(rows) < max_rows
    notes: list[str] = []
    if found is not None:
        notes = _look_again(rows, top, left, found, formats, complete)
    if kind != XLSX or found is None:
        _big_numbers(rows)
    _fill_merged(rows, top, left, merged)
    return Grid(rows=rows, top=top, complete=complete, notes=notes)


def _fill_merged(rows: list[list[Any]], top: int, left: int, merged) -> None:
    """Every cell of a merged range shows the top-left value, as it looks in Excel."""
    height = len(rows)
    for (r0, c0), (r1, c1) in merged:
        r0, r1, c0, c1 = r0 - top, r1 - top, c0 - left, c1 - left
        if not (0 <= r0 < height and 0 <= c0 < len(rows[r0])):
            continue
        value = rows[r0][c0]
        if value == "":
            continue
        for r in range(r0, min(r1, height - 1) + 1):
            row = rows[r]
            for c in range(max(c0, 0), min(c1, len(row) - 1) + 1):
                if row[c] == "":
                    row[c] = value


def _look_again(rows: list[list[Any]], top: int, left: int, marks: xlsx_zip.Marks, formats: _Formats,
                complete: bool) -> list[str]:
    """Put what Excel shows where calamine's value differs (see the module's docstring); the notes
    for the user: one per column of formulas without a saved result."""
    height = len(rows)

    def put(position: tuple[int, int], value: Any, only_over: tuple[Any, ...] | None = None) -> None:
        r, c = position[0] - top, position[1] - left
        if 0 <= r < height and 0 <= c < len(rows[r]) and (only_over is None or rows[r][c] in only_over):
            rows[r][c] = value

    for position, text in marks.errors.items():
        put(position, text, ("",))
    for position, raw in marks.big.items():
        with contextlib.suppress(ValueError):
            if (digits := numfmt.big_integer(float(raw))) is not None:
                put(position, digits)
    _apply_formats(rows, top, left, marks.styled, formats)
    per_column: dict[int, int] = {}
    for position in marks.no_result:
        r = position[0] - top
        if complete or r < height:
            put(position, "", (0, 0.0, ""))  # XlsxWriter's placeholder 0 is not the formula's value
            per_column[position[1]] = per_column.get(position[1], 0) + 1
    return [_no_result_note(rows, left, column, count) for column, count in sorted(per_column.items())]


_BY_VALUE = (numfmt.Kind.PERCENT, numfmt.Kind.PADDED)  # calamine's value is the stored number


def _apply_formats(rows: list[list[Any]], top: int, left: int, styled: xlsx_zip.Styled, formats: _Formats) -> None:
    """Each formatted number as its format shows it; one converter per style, made once."""
    if not len(styled):
        return
    plans = {style: (numfmt.converter(kind, formats.codes[style], formats.date1904), kind in _BY_VALUE, kind)
             for style, kind in formats.kinds.items()}
    height, first, raw, limit = len(rows), top + 1, styled.raw, numfmt.MAX_EXACT_FLOAT_INT
    for i, (number, column, style) in enumerate(zip(styled.row_numbers, styled.columns, styled.styles, strict=True)):
        r, c = number - first, column - left
        if not (0 <= r < height and 0 <= c < len(row := rows[r])) or (plan := plans.get(style)) is None:
            continue
        convert, by_value, kind = plan
        if by_value:
            value = row[c]
            if (type(value) is float or type(value) is int) and (kind is numfmt.Kind.PERCENT or abs(value) < limit):
                row[c] = convert(value)
        elif (value := raw.get(i)) is not None and (kind is not numfmt.Kind.DATE or value < 1):
            row[c] = convert(value)


def _no_result_note(rows: list[list[Any]], left: int, column: int, count: int) -> str:
    """'column total: 12 formulas have no saved result; ...', named by the header a reader
    would see (the first non-blank row), else by the column's letter."""
    first = next((row for row in rows if any(v != "" for v in row)), [])
    c = column - left
    header = first[c] if 0 <= c < len(first) else ""
    name = " ".join(header.split()) if isinstance(header, str) and header.strip() else xlsx_zip.cell_name(0, column)[:-1]
    formulas = "1 formula has" if count == 1 else f"{count:,} formulas have"
    return (f"column {name}: {formulas} no saved result; open and save the file in Excel so they are computed")


def _big_numbers(rows: list[list[Any]]) -> None:
    """Whole numbers beyond 2**53 as the integer text Excel shows (formats without an XML scan)."""
    limit = numfmt.MAX_EXACT_FLOAT_INT
    for row in rows:
        for i, value in enumerate(row):
            if type(value) is float and abs(value) >= limit and (text := numfmt.big_integer(value)) is not None:
                row[i] = text


def _input_error(path: Path, kind: str, exc: BaseException, sheet: str | None = None) -> InputError:
    """calamine's exception as one line a user understands."""
    if isinstance(exc, pc.PasswordError):
        return password_protected(path)
    if isinstance(exc, MemoryError):
        return InputError(f"{path.name} is too large to load into memory")
    reason = " ".join(str(exc).split())[:160] or type(exc).__name__
    where = f"sheet {sheet!r} of {path.name}" if sheet else path.name
    if "limit exceeded" in reason.lower():
        return InputError(f"{where} cannot be read: it claims far more cells than a sheet can hold "
                          f"(the file is damaged or made to exhaust memory)")
    if isinstance(exc, pc.WorksheetNotFound):
        return InputError(f"{where} cannot be read: the sheet is missing from the file")
    return InputError(f"{where} cannot be read: the file is damaged or not a valid {kind} workbook ({reason})")
