"""Notes for the user about a table read from text: rows wider than the header, numbers kept as text.

Notes are one line each, in an analyst's words, at most one of each kind per file (see Grid.notes).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import pandas as pd

from .frame import Grid

_SHOWN = 2  # numbers or names shown before "and N others"
_SAMPLE = 1000  # values per column looked at for numbers written as text


def numbered(numbers: Sequence[int], word: str, *, more: bool = False) -> str:
    """'line 50,001', 'lines 12 and 40', 'lines 12, 40 and 318 others' (`more`: and others not counted)."""
    shown = [f"{n:,}" for n in numbers[:_SHOWN]]
    rest = len(numbers) - len(shown)
    if rest > 0 or (more and len(numbers) > 1):
        others = "others" if more else f"{rest:,} other{'s' if rest > 1 else ''}"
        return f"{word}s {', '.join(shown)} and {others}"
    if more:
        return f"{word} {shown[0]} and others"
    if len(shown) == 2:
        return f"{word}s {shown[0]} and {shown[1]}"
    return f"{word} {shown[0]}"


def names(items: Sequence[str]) -> str:
    """'price', 'price and total', 'price, total and 4 others'."""
    if len(items) <= _SHOWN + 1:
        return " and ".join([", ".join(items[:-1]), items[-1]]) if len(items) > 1 else items[0]
    return f"{', '.join(items[:_SHOWN])} and {len(items) - _SHOWN:,} others"


def table_notes(grid: Grid, frame: pd.DataFrame, header_row: int | None) -> list[str]:
    """Notes about the table as read: data rows wider than the header; numbers written as text."""
    notes = []
    wide = _wider_than_header(grid, frame, header_row)
    if wide:
        notes.append(wide)
    text_numbers = _numbers_as_text(frame)
    if text_numbers:
        notes.append(text_numbers)
    return notes


def _wider_than_header(grid: Grid, frame: pd.DataFrame, header_row: int | None) -> str | None:
    rows = grid.rows
    header_row = frame.attrs.get("header_row", header_row)  # where the reader found it, when it says
    if header_row == 0 or not rows or max(map(len, rows)) <= 1:
        return None
    if header_row is None:
        index = next((i for i, row in enumerate(rows) if any(row)), None)
    else:
        index = header_row - 1 - grid.top
    if index is None or not 0 <= index < len(rows):
        return None
    width = len(rows[index])
    while width and not rows[index][width - 1]:
        width -= 1  # a header's trailing blank cells are no header
    if max(map(len, rows[index + 1:]), default=0) <= width:
        return None
    wider = [(grid.top + i + 1, len(row)) for i, row in enumerate(rows[index + 1:], index + 1)
             if len(row) > width and any(row[width:])]
    if not wider or width == 0:
        return None
    most = max(n for _, n in wider)
    extra = [str(c) for c in frame.columns[width:most]]
    verb = "has" if len(wider) == 1 else "have"
    where = f"; extra fields are in {names(extra)}" if extra else ""
    return (f"{numbered([n for n, _ in wider], 'row')} {verb} more fields than the header "
            f"({most} vs {width}){where}")


# A number as people write it for reading: thousands separators, a decimal comma, a currency
# or percent sign. Plain 12 or 2.5 the reader already made numbers; 007 and 1.20 stay text on purpose.
_CURRENCY = "$€£¥₹"
_FORMATTED = re.compile(
    rf"[(-]?[{_CURRENCY}]?\s?[-+]?"
    r"(?:\d{1,3}(?:([.,'\u00a0\u202f ])\d{3})+(?:(?!\1)[.,]\d+)?|\d+,\d+|\d+(?:\.\d+)?)"
    rf"\s?(?:%|[{_CURRENCY}]|[A-Z]{{3}})?\)?")
_DECIMAL_COMMA = re.compile(r"\d,\d{1,2}(?!\d)|\d\.\d{3},\d")  # 3,50 or 1.234,5: Parse number's Decimal comma
_MARKS = re.compile(rf"[%{_CURRENCY}]|\d[.,'\u00a0\u202f ]\d{{3}}(?!\d)|\d,\d|[A-Z]{{3}}\)?$")


def _numbers_as_text(frame: pd.DataFrame) -> str | None:
    found: list[tuple[str, str]] = []
    for name in frame.columns:
        column = frame[name]
        if column.dtype != object:
            continue
        values = [v.strip() for v in column.head(_SAMPLE * 4) if isinstance(v, str) and v.strip()][:_SAMPLE]
        if not values:
            continue
        formatted = [v for v in values if _FORMATTED.fullmatch(v)]
        marked = [v for v in formatted if _MARKS.search(v)]
        if len(formatted) * 10 >= len(values) * 8 and marked:
            found.append((str(name), marked[0]))
    if not found:
        return None
    which = names([n for n, _ in found])
    example = found[0][1]
    plural = "s" if len(found) > 1 else ""
    option = " (tick Decimal comma)" if _DECIMAL_COMMA.search(example) else ""
    return (f"column{plural} {which} look{'' if plural else 's'} like numbers written as text ({example}): "
            f"add a Parse number step{option} to use them as numbers")
