"""Delimited text (csv, tsv, txt): encoding, delimiter and layout found from the content.

Encoding: `textencoding.py`. Delimiter: Excel's `sep=;` first line when there is one; else,
among , ; tab |, the one that splits the header, then the most lines, then the most lines
alike; none when the header is one field and most lines too (a list of sentences, say).
Leading `#` comment lines are skipped when a table follows them. Quotes are read strictly
first (all in C); a quote that never closes properly, which would swallow the lines after
it into one cell, is found then and its lines are read again as rows of their own.
A trailing Ctrl-Z (DOS end of file) is dropped. What the user should know goes to Grid.notes.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import IO

from batchgrid.core.util.errors import InputError

from . import textencoding
from .frame import Grid
from .textnotes import numbered

DELIMITERS = (",", ";", "\t", "|")
NO_DELIMITER = "\x1f"  # a one-column file: split on a character text never holds (ASCII unit separator)
SNIFF_LINES = 50
SNIFF_CHARS = 1 << 16
_FIELD_LIMIT = 2**31 - 1  # long cells (a model's answer) are normal; csv's default is 128 KiB
_SEP_LINE = re.compile(r'"?sep=(.)"?[,;\t|]*', re.IGNORECASE)  # Excel's delimiter hint, alone on line 1
_DOS_EOF = "\x1a"
_BATCH = 10_000  # records csv reads between checks for records that span lines


@dataclass
class Layout:
    """How the text is laid out: the delimiter, and how many lines above the table to skip."""

    delimiter: str
    skip: int = 0
    notes: list[str] = field(default_factory=list)


def read_grid(path: Path, max_rows: int | None = None) -> tuple[Grid, str, str]:
    """(grid of text cells, encoding, delimiter). Cells are strings; '' is blank."""
    encoding = textencoding.detect(path, max_bytes=None if max_rows is None else 4 << 20)
    csv.field_size_limit(_FIELD_LIMIT)

    def open_table() -> IO[str]:
        """The file, positioned on the table's first line."""
        f = open(path, encoding=encoding.name, errors="replace", newline="")
        for _ in range(layout.skip):
            f.readline()
        return f

    with open(path, encoding=encoding.name, errors="replace", newline="") as f:
        layout = sniff_layout(f.read(SNIFF_CHARS), path.suffix.lower())
    try:
        rows, quote_notes = _read_rows(open_table, layout, max_rows)
    except csv.Error as exc:  # only a delimiter or quote csv refuses (a NUL in the dialect, say)
        raise InputError(f"{path.name} cannot be read as delimited text ({exc})") from None
    except MemoryError:
        raise InputError(f"{path.name} is too large to load into memory") from None
    complete = max_rows is None or len(rows) < max_rows
    if rows and rows[-1] and rows[-1][-1].endswith(_DOS_EOF):  # DOS end of file
        rows[-1][-1] = rows[-1][-1].rstrip(_DOS_EOF)
        if rows[-1] == [""]:
            rows.pop()
    if layout.skip == 0 and rows and rows[0] and rows[0][0].startswith("\ufeff"):  # a BOM inside UTF-16 text
        rows[0][0] = rows[0][0][1:]
    notes = [*encoding.notes, *layout.notes, *quote_notes]
    return Grid(rows=rows, top=layout.skip, complete=complete, notes=notes), encoding.name, layout.delimiter


# ---- layout: delimiter, sep= line, comment lines -------------------------------------

def sniff_layout(sample: str, suffix: str) -> Layout:
    """The delimiter and the lines above the table, from the first SNIFF_CHARS characters."""
    lines = sample.splitlines(keepends=True)
    if len(lines) > 1 and len(sample) >= SNIFF_CHARS:
        lines = lines[:-1]  # the last line may be cut off
    first = lines[0].lstrip("\ufeff").rstrip("\r\n") if lines else ""
    hint = _SEP_LINE.fullmatch(first)
    skip = 1 if hint else 0
    comments = 0
    while skip + comments < len(lines) and lines[skip + comments].startswith("#"):
        comments += 1
    table = lines[skip + comments:]
    delimiter = hint.group(1) if hint else sniff_delimiter(table, suffix)
    if comments and (not table or delimiter == NO_DELIMITER):
        comments = 0  # no table under them: the '#' lines are the data (hashtags, say)
        delimiter = hint.group(1) if hint else sniff_delimiter(lines[skip:], suffix)
    if comments and _is_header(lines[skip + comments - 1], table, delimiter):
        comments -= 1  # "#CHROM<tab>POS...": a header that starts with '#'
    notes = []
    if comments:
        notes.append(f"skipped {comments} comment line{'s' if comments > 1 else ''} at the top")
    return Layout(delimiter, skip + comments, notes)


def _is_header(line: str, table: list[str], delimiter: str) -> bool:
    """The last '#' line heads the table: it splits like the next line, and that line is data."""
    below = next(csv.reader(table[:1], delimiter=delimiter), [])
    mine = next(csv.reader([line], delimiter=delimiter), [])
    return len(mine) == len(below) > 1 and any(cell.strip()[:1].isdigit() for cell in below)


def sniff_delimiter(lines: list[str], suffix: str) -> str:
    """The delimiter that splits the header, then the most lines, then the most lines alike.

    A ragged file (rows shorter or longer than the header) is still a table when its header
    splits and a third of its lines do; a list of sentences (a one-field header) is not.
    """
    lines = lines[:SNIFF_LINES]
    preferred = ("\t",) if suffix == ".tsv" else ()
    best, best_score = NO_DELIMITER, None
    for delimiter in (*preferred, *DELIMITERS):
        counts = [len(r) for r in csv.reader(lines, delimiter=delimiter) if r]
        if not counts:
            continue
        mode, alike = Counter(counts).most_common(1)[0]
        split = sum(n > 1 for n in counts) / len(counts)
        if not (mode > 1 or (counts[0] > 1 and split >= 1 / 3 and len(counts) > 1)):
            continue  # most lines are one field: a comma in a sentence does not make a table
        score = (counts[0] > 1, counts[0] == mode, round(split, 1), alike / len(counts), mode)
        if best_score is None or score > best_score:
            best, best_score = delimiter, score
    return best


# ---- records, and quotes that never close ----------------------------------------------

def _read_rows(open_table: Callable[[], IO[str]], layout: Layout,
               max_rows: int | None) -> tuple[list[list[str]], list[str]]:
    """Every record, read by csv in C; a stray quote sends the whole file to the careful reader."""
    delimiter = layout.delimiter
    rows: list[list[str]] = []
    several_lines = []  # (start, end) of batches of records where some record spans lines
    with open_table() as f:
        reader = csv.reader(f, delimiter=delimiter, strict=True)
        try:
            while max_rows is None or len(rows) < max_rows:
                start, lines_before = len(rows), reader.line_num
                wanted = _BATCH if max_rows is None else min(_BATCH, max_rows - start)
                rows.extend(islice(reader, wanted))
                if len(rows) == start:
                    break
                if reader.line_num - lines_before > len(rows) - start:
                    several_lines.append((start, len(rows)))
        except csv.Error:
            pass  # a quote closed in the wrong place: see where, line by line
        else:
            width = next((len(r) for r in rows if r), 0)
            if not any(_swallowed(row, width, delimiter) for start, end in several_lines for row in rows[start:end]):
                return rows, []
    rows.clear()  # read again below: not twice in memory
    with open_table() as f:
        return _careful_rows(f, delimiter, max_rows, layout.skip)


def _careful_rows(f: IO[str], delimiter: str, max_rows: int | None,
                  skip: int) -> tuple[list[list[str]], list[str]]:
    """Records one at a time; a quote that runs over several lines and does not close where a
    field ends (or swallows lines that look like rows) is taken for a stray: its line is read
    with quotes as plain characters and the lines after it are read again."""
    lines = _Lines(f)
    reader = csv.reader(lines, delimiter=delimiter, strict=True)
    rows: list[list[str]] = []
    strays: list[tuple[int, int]] = []  # (first line, last line) swallowed
    width = 0
    while max_rows is None or len(rows) < max_rows:
        lines.taken = []
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error:
            if len(lines.taken) <= 1:  # '"b"c' inside one line: read as Excel does ("bc")
                rows.append(next(csv.reader(lines.taken, delimiter=delimiter), []))
                reader = csv.reader(lines, delimiter=delimiter, strict=True)
                continue
        else:
            if len(lines.taken) <= 1 or not _swallowed(row, width, delimiter):
                rows.append(row)
                width = width or len(row)
                continue
        taken = lines.taken
        first = skip + lines.count - len(taken) + 1
        strays.append((first, first + len(taken) - 1))
        row = next(csv.reader(taken[:1], delimiter=delimiter, quoting=csv.QUOTE_NONE), [])
        rows.append(row)
        width = width or len(row)
        lines.unread(taken[1:])
        reader = csv.reader(lines, delimiter=delimiter, strict=True)
    return rows, _stray_notes(strays)


class _Lines:
    """The file's lines for csv.reader, remembering those of the record being read; lines can be read again."""

    def __init__(self, f: IO[str]):
        self._f = f
        self._again: list[str] = []  # lines to read again, last first
        self.taken: list[str] = []
        self.count = 0  # lines handed out

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        line = self._again.pop() if self._again else next(self._f)
        self.taken.append(line)
        self.count += 1
        return line

    def unread(self, lines: list[str]) -> None:
        self._again.extend(reversed(lines))
        self.count -= len(lines)


def _swallowed(row: list[str], width: int, delimiter: str) -> bool:
    """A cell whose inner lines (not its first or last) are nearly all split like the header.
    Two columns need many such lines: an address or a letter has a comma on most of its lines."""
    if width < 2:
        return False  # a one-column file: nothing tells its rows from a cell's lines
    fewest = 2 if width > 2 else 10
    for cell in row:
        if cell.count("\n") + cell.count("\r") <= fewest:
            continue
        inner = cell.splitlines()[1:-1]
        alike = sum(line.count(delimiter) == width - 1 for line in inner)
        if len(inner) >= fewest and alike * 10 >= len(inner) * 9:
            return True
    return False


def _stray_notes(strays: list[tuple[int, int]]) -> list[str]:
    if not strays:
        return []
    if len(strays) == 1:
        first, last = strays[0]
        return [f"line {first:,} opens a quote that does not close (it ran to line {last:,}); "
                f"its lines were read as rows of their own: check the quotes on line {first:,}"]
    return [f"{numbered([first for first, _ in strays], 'line')} open quotes that do not close; "
            "their lines were read as rows of their own: check the quotes there"]
