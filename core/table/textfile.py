"""Delimited text (csv, tsv, txt): encoding and delimiter found from the content.

Encoding: a BOM wins (UTF-8, UTF-16, UTF-32); else UTF-32 or UTF-16 recognised by where its NUL bytes fall;
else UTF-8 if every byte decodes; else Windows-1252 (what Excel writes on Western
Windows), or Latin-1 when a byte is undefined in 1252. Delimiter: among , ; tab |, the
one that splits the header and the first rows into the same number of fields; none when
most lines are a single field (a list of sentences, say).
"""

from __future__ import annotations

import codecs
import csv
from itertools import islice
from pathlib import Path

from batchgrid.core.util.errors import InputError

from .frame import Grid
from .sniff import wide_text_encoding

DELIMITERS = (",", ";", "\t", "|")
NO_DELIMITER = "\x1f"  # a one-column file: split on a character text never holds (ASCII unit separator)
SNIFF_LINES = 50
SNIFF_CHARS = 1 << 16
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
_CP1252_UNDEFINED = bytes([0x81, 0x8D, 0x8F, 0x90, 0x9D])
_FIELD_LIMIT = 2**31 - 1  # long cells (a model's answer) are normal; csv's default is 128 KiB


def detect_encoding(path: Path, max_bytes: int | None = None) -> str:
    """The text encoding of `path`, judged from all of it (or its first `max_bytes`)."""
    with open(path, "rb") as f:
        head = f.read(4096)
        for bom, name in _BOMS:
            if head.startswith(bom):
                return name
        wide = wide_text_encoding(head)
        if wide:
            return wide
        f.seek(0)
        decoder = codecs.getincrementaldecoder("utf-8")()
        seen = 0
        undefined_1252 = False
        utf8 = True
        while max_bytes is None or seen < max_bytes:
            chunk = f.read(1 << 20)
            if not chunk:
                break
            seen += len(chunk)
            undefined_1252 = undefined_1252 or any(b in chunk for b in _CP1252_UNDEFINED)
            if utf8:
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError:
                    utf8 = False
        if utf8:
            try:
                decoder.decode(b"", final=max_bytes is None or seen < max_bytes)
                return "utf-8"
            except UnicodeDecodeError:
                pass
        return "latin-1" if undefined_1252 else "cp1252"


def sniff_delimiter(sample: str, suffix: str) -> str:
    """The delimiter that gives the header and the rows under it one consistent field count."""
    lines = sample.splitlines(keepends=True)
    if len(lines) > 1 and len(sample) >= SNIFF_CHARS:
        lines = lines[:-1]  # the last line may be cut off
    lines = lines[:SNIFF_LINES]
    preferred = ("\t",) if suffix == ".tsv" else ()
    best, best_score = NO_DELIMITER, None
    for delimiter in (*preferred, *DELIMITERS):
        counts = [len(r) for r in csv.reader(lines, delimiter=delimiter) if r]
        mode = max(set(counts), key=counts.count) if counts else 1
        if mode < 2:  # most lines are one field: a comma in a sentence does not make a table
            continue
        score = (counts[0] == mode, counts.count(mode) / len(counts), mode)
        if best_score is None or score > best_score:
            best, best_score = delimiter, score
    return best


def read_grid(path: Path, max_rows: int | None = None) -> tuple[Grid, str, str]:
    """(grid of text cells, encoding, delimiter). Cells are strings; '' is blank."""
    encoding = detect_encoding(path, max_bytes=None if max_rows is None else 4 << 20)
    csv.field_size_limit(_FIELD_LIMIT)
    reader = None
    try:
        with open(path, encoding=encoding, errors="replace", newline="") as f:
            delimiter = sniff_delimiter(f.read(SNIFF_CHARS), path.suffix.lower())
            f.seek(0)
            reader = csv.reader(f, delimiter=delimiter)
            rows = list(islice(reader, max_rows)) if max_rows is not None else list(reader)
            complete = max_rows is None or len(rows) < max_rows
    except csv.Error as exc:
        line = f"line {reader.line_num}" if reader else "the start"
        raise InputError(f"{path.name}: {line} cannot be read as delimited text ({exc})") from None
    except MemoryError:
        raise InputError(f"{path.name} is too large to load into memory") from None
    if rows and rows[0] and rows[0][0].startswith("\ufeff"):  # a BOM inside UTF-16 text
        rows[0][0] = rows[0][0][1:]
    return Grid(rows=rows, top=0, complete=complete), encoding, delimiter
