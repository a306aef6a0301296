"""From a grid of cell values (rows of a sheet) to a DataFrame: header, names, column types.

Every reader (Excel family, CSV) produces a `Grid`; the rules of what a table is are here once:
- the header is the caller's `header_row` (the sheet's 1-based row number as Excel shows
  it; 0 means "no header row"), else the first non-empty row, unless the rows above the
  table are a title block (`title_rows`: a report's title, subtitle, date line over a
  wider table): then the first row as wide as the table, and a note says so;
- `attrs["header_row"]` is the header's sheet row (0: none), `attrs["first_row"]` the sheet
  row of the first data row (table row i is sheet row first_row + i);
- blank or repeated header cells get visible unique names (`column_3`, `name_2`);
- leading/trailing empty columns and trailing empty rows are dropped; empty rows inside
  the table are kept, so row numbers still match the sheet;
- blank cells become None (NaN/NaT in float and date columns); a column of whole numbers
  becomes int (int64 when it has no blanks, else Python ints in an object column so a
  blank stays None and 7 never turns into 7.0); dates become datetime64; booleans stay
  bool; text and mixed columns are object columns (the same on pandas 2 and 3).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import zip_longest
from typing import Any

import numpy as np
import pandas as pd

MAX_EXACT_FLOAT_INT = 2**53  # whole floats beyond this are not exactly integers any more


@dataclass
class Grid:
    """Cell values of one sheet: `rows[0]` is sheet row `top` (0-based)."""

    rows: list[list[Any]]
    top: int = 0
    complete: bool = True  # False when reading stopped at a row limit
    # One-line notes for the user about how the file was read ("line 12 is not valid UTF-8..."):
    # they travel on the DataFrame as attrs["notes"], then on the Table, to the window and the CLI.
    notes: list[str] = field(default_factory=list)


class EmptySheet(Exception):
    """The grid holds no value at all (the caller words the message: it knows the sheet)."""


class TooWide(Exception):
    """More columns than a sheet can have (Excel's 16,384): not a table (a one-line blob, say)."""

    def __init__(self, width: int):
        super().__init__(width)
        self.width = width


MAX_COLUMNS = 16_384


class HeaderBeyondData(Exception):
    def __init__(self, last_row: int):
        super().__init__(last_row)
        self.last_row = last_row


def frame_from_grid(grid: Grid, *, header_row: int | None = None, limit: int | None = None,
                    parse_text: bool = False) -> pd.DataFrame:
    """The table in `grid` as a DataFrame. `parse_text` turns CSV text into numbers, dates, bools."""
    rows = grid.rows
    first = next((i for i, row in enumerate(rows) if not _all_blank(row)), None)
    if first is None:
        raise EmptySheet()
    notes = list(grid.notes)
    if header_row is None:
        index = first + title_rows(rows, first)
        if index > first:
            notes.append(_title_note(rows, first, index, grid.top))
        header, data_start, header_at = rows[index], index + 1, grid.top + index + 1
    elif header_row == 0:
        header, data_start, header_at = [], first, 0
    else:
        header_at = header_row
        index = header_row - 1 - grid.top
        if index >= len(rows) and grid.complete:
            raise HeaderBeyondData(grid.top + len(rows))
        header = rows[index] if 0 <= index < len(rows) else []
        data_start = max(index + 1, 0)

    data = rows[data_start:]
    end = len(data)
    while end and _all_blank(data[end - 1]):
        end -= 1
    if limit is not None:
        end = min(end, max(limit, 0))
    data = data[:end]

    lengths = set(map(len, data))
    width = max(len(header), max(lengths, default=0))
    if width > MAX_COLUMNS:
        raise TooWide(width)
    if len(lengths) == 1:  # calamine's grids are rectangular: the fast transpose
        columns = list(zip(*data, strict=True))
    else:  # ragged CSV records
        columns = list(zip_longest(*data, fillvalue=None))
    columns += [(None,) * len(data) for _ in range(width - len(columns))]
    header = list(header) + [None] * (width - len(header))

    def used(i: int) -> bool:
        return not (_blank(header[i]) and _all_blank(columns[i]))

    left = next((i for i in range(width) if used(i)), width)
    right = next((i for i in reversed(range(left, width)) if used(i)), left - 1)
    keep = range(left, right + 1)
    names = unique_names([header_text(header[i]) for i in keep])
    convert = parse_text_column if parse_text else (lambda v: v)
    frame = pd.DataFrame({name: make_column(convert(columns[i])) for name, i in zip(names, keep, strict=True)},
                         columns=names)
    frame.attrs["notes"] = notes
    frame.attrs["header_row"] = header_at
    frame.attrs["first_row"] = grid.top + data_start + 1
    return frame


def notes_of(frame: pd.DataFrame) -> list[str]:
    """The reader's notes for the user about `frame` (see Grid.notes)."""
    return list(frame.attrs.get("notes", []))


# ---- a title block above the table ----------------------------------------------------

TITLE_SCAN = 60        # rows (non-empty) looked at to know how wide the table is
MAX_TITLE_ROWS = 10    # a title, a subtitle, a date line, notes... more is not a title block


def title_rows(rows: Sequence[Sequence[Any]], first: int) -> int:
    """How many rows from `first` (blank ones included) are a title block over the table, 0 if none.

    A title line names less than half of the table's columns: one cell (a title, "Notes:", a
    date; a merged title, which the readers repeat across its cells, counts as one), or two
    in a table of six or more ("Generated:" | a date). The header is the first row that names
    more than half of them, so a header with a few blank cells is still the header and a
    one-column sheet keeps its first row. The table's width is the most cells any of the
    first TITLE_SCAN non-empty rows fills.
    """
    filled = []
    for i in range(first, len(rows)):
        count = _filled(rows[i])
        if count:
            filled.append((i, count))
            if len(filled) == TITLE_SCAN:
                break
    width = max(count for _i, count in filled)
    merged = False
    for i, count in filled[:MAX_TITLE_ROWS + 1]:
        if count > 1 and _one_value(rows[i]):
            count, merged = 1, True  # a merged title, or a header repeating one name ("name", "name"...)
        if 2 * count > width:
            # Under what looks like a merged title there must be a header: distinct names.
            return i - first if not merged or _names(rows[i]) else 0
        if not (count == 1 or (count == 2 and 3 * count <= width)):
            return 0  # a row that is neither a title line nor the header: not a title block
    return 0


def _filled(row: Sequence[Any]) -> int:
    return sum(1 for v in row if not _blank(v))


def _names(row: Sequence[Any]) -> bool:
    """Distinct text that is not numbers (a CSV's cells are all text): a row of column names."""
    values = [v for v in row if not _blank(v)]
    return (all(isinstance(v, str) and not _NUMBER.fullmatch(v.strip()) for v in values)
            and len(set(values)) == len(values))


_NUMBER = re.compile(r"[-+]?[0-9][0-9,]*(\.[0-9]*)?")


def _one_value(row: Sequence[Any]) -> bool:
    values = [v for v in row if not _blank(v)]
    return all(type(v) is type(values[0]) and v == values[0] for v in values)


def _title_note(rows: Sequence[Sequence[Any]], first: int, header: int, top: int) -> str:
    title = next(header_text(v) for v in rows[first] if not _blank(v))
    title = title if len(title) <= 60 else title[:57] + "..."
    start, end = top + first + 1, top + header
    above = f"row {start} looks" if start == end else f"rows {start}-{end} look"
    return (f"the table's header is row {top + header + 1} ({above} like a title: \"{title}\"); to choose another, "
            "right-click a row ▸ Use as header (or --header-row N)")


def _blank(value: Any) -> bool:
    return value is None or value == ""


def _all_blank(values: Sequence[Any]) -> bool:
    return all(v is None or v == "" for v in values)


# ---- column names --------------------------------------------------------------------

_SPACES = re.compile(r"\s+")


def header_text(value: Any) -> str:
    """A header cell as the one-line text a user reads in Excel ('' when blank)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat(sep=" ")
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    return _SPACES.sub(" ", str(value)).strip()


def unique_names(names: Sequence[str]) -> list[str]:
    """Blank names become column_<position>; repeats become name_2, name_3 (never clashing)."""
    names = [name or f"column_{i}" for i, name in enumerate(names, 1)]
    taken = set(names)
    seen: set[str] = set()
    next_number: dict[str, int] = {}  # where the search for name_<n> goes on: linear, not quadratic
    result = []
    for name in names:
        if name in seen:
            n = next_number.get(name, 2)
            while f"{name}_{n}" in taken:
                n += 1
            next_number[name] = n + 1
            name = f"{name}_{n}"
            taken.add(name)
        seen.add(name)
        result.append(name)
    return result


# ---- column types --------------------------------------------------------------------

_NONE = type(None)
_DATES = {dt.date, dt.datetime, pd.Timestamp}


def make_column(values: Sequence[Any]):
    """A typed column for one column of Python cell values ('' counts as blank), or a
    datetime64 Series parse_text_column made already (kept as it is)."""
    if isinstance(values, pd.Series) and values.dtype.kind == "M":
        return values
    if "" in values:
        values = [None if v == "" else v for v in values]
    kinds = set(map(type, values))
    has_blank = _NONE in kinds
    kinds.discard(_NONE)
    if kinds and kinds <= {int, float}:
        return _numeric_column(values, has_blank)
    if kinds == {bool} and not has_blank:
        return np.array(values, dtype=bool)
    if kinds and kinds <= _DATES:
        try:
            return pd.to_datetime(pd.Series(values, dtype=object))
        except (ValueError, OverflowError):  # beyond what datetime64 holds: keep the Python dates
            pass
    if float in kinds or dt.date in kinds:  # mixed: each value as the other readers give it
        values = [_mixed_value(v) for v in values]
    return _objects(values)


def _objects(values: Sequence[Any]) -> pd.Series:
    """Text and mixed columns stay Python objects, blanks None (pandas 3 would make text "str", blanks NaN)."""
    return pd.Series(values, dtype=object)


def _mixed_value(value: Any) -> Any:
    """A whole float as an int (it shows as one); a date as a datetime (as in a date column)."""
    kind = type(value)
    if kind is float and value.is_integer() and abs(value) < MAX_EXACT_FLOAT_INT:
        return int(value)
    if kind is dt.date:
        return dt.datetime(value.year, value.month, value.day)
    return value


def _numeric_column(values: Sequence[Any], has_blank: bool):
    if not has_blank and all(type(v) is int for v in values):
        try:
            return np.array(values, dtype=np.int64)
        except OverflowError:  # beyond int64: Python ints keep every digit
            return _objects(values)
    numbers = np.array(values, dtype=float)  # None -> NaN
    finite = numbers[~np.isnan(numbers)]
    whole = bool(np.all(np.mod(finite, 1) == 0) and np.all(np.abs(finite) < MAX_EXACT_FLOAT_INT))
    if not whole:
        return numbers
    if not has_blank:
        return numbers.astype(np.int64)
    return _objects([None if v is None else int(v) for v in values])


# CSV cells are text. A column becomes numbers only when every value would be written back
# exactly as it reads ("7", "2.5"; not "007", "1.20", "1e5"), booleans or ISO dates when all agree.
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}([ T][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,9})?)?)?")
_BOOLS = {"TRUE": True, "FALSE": False, "True": True, "False": False, "true": True, "false": False}


def parse_text_column(values: Sequence[Any]) -> list[Any] | pd.Series:
    """Numbers, booleans and ISO dates out of text, when the whole column is of that kind.

    Numbers must be lossless: leading zeros (zip codes), trailing zeros ("1.20") and other
    spellings keep the column as text, so nothing the file shows is changed.
    """
    text = [v for v in values if v is not None and v != ""]
    if not text:
        return list(values)
    numbers = _lossless_numbers(text)
    if numbers is not None:
        found = iter(numbers)
        return [next(found) if v else None for v in values]
    if all(v in _BOOLS for v in text):
        return [_BOOLS[v] if v else None for v in values]
    if all(map(_ISO_DATE.fullmatch, text)):
        try:
            parsed = pd.to_datetime(pd.Series([v or None for v in values], dtype=object), format="ISO8601")
        except (ValueError, OverflowError):  # 2024-02-31 and friends: leave the text alone
            return list(values)
        return parsed  # datetime64, blanks NaT: what make_column would make of the dates, without the round trip
    return list(values)


def _lossless_numbers(text: Sequence[str]) -> list[int | float] | None:
    numbers: list[int | float] = []
    for t in text:
        first = t[:1]
        if not (first.isdigit() or (first == "-" and t[1:2].isdigit())):
            return None  # cheap exit for ordinary text
        try:
            number = int(t) if t.lstrip("-").isdigit() else float(t)
        except ValueError:
            return None
        if (str(number) if type(number) is int else repr(number)) != t:
            return None
        numbers.append(number)
    return numbers
