"""One value on its way out to a cell: what Excel and CSV readers will see.

Formula safety (OWASP "CSV injection"): text that starts with =, +, -, @, tab or carriage
return must never run as a formula in someone's spreadsheet, whatever a model or a web
page put in it.
- xlsx: such text is written as a string cell (type "s", never a formula) with Excel's
  quote-prefix flag, so editing the cell in Excel keeps it text too.
- csv: text a spreadsheet would evaluate gets a leading single quote ('=1+1), the OWASP
  convention; Excel then shows it as text. That is text starting with = or @, with tab or
  carriage return, with spaces or line breaks before any of these, and text starting with
  + or - unless it is data no spreadsheet evaluates: a number (-5, -5.5, +1e3, -12%), a lone
  sign or a run of one (-, ---), a phone number written with spaces (+44 20 7946 0958).
  Anything else after the sign (-2+3, +A1, -SUM(1), +1-555-123-4567) is quoted: a number
  stays a number, a formula stays text.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from decimal import Decimal
from typing import Any

import pandas as pd
from batchgrid.core.util.display import display_text

EXCEL_MAX_CHARS = 32_767           # Excel's limit for one cell; longer text corrupts the file
EXCEL_MAX_EXACT_INT = 10**15       # Excel keeps 15 significant digits: longer ints become text
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
# Text openpyxl would otherwise write as an error value rather than as text.
EXCEL_ERROR_TEXTS = frozenset({"#NULL!", "#DIV/0!", "#VALUE!", "#REF!", "#NAME?", "#NUM!", "#N/A"})
_CHECK_FIRST = frozenset("=+-@\t\r#")  # first characters that need a closer look
_CSV_CHECK_FIRST = frozenset("=+-@\t\r \n")  # in a CSV
_JSON = json.JSONEncoder(ensure_ascii=False, default=str)  # made once: json.dumps(**options) builds one per call
_ILLEGAL_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")  # control characters XML cannot hold


# Lists and dicts as readable JSON, dates as dates: the one rule (core/util/display.py).
as_text = display_text


def cut_to_excel_limit(text: str) -> str:
    """Text that fits in one Excel cell, ending with a visible marker when it was cut."""
    if len(text) <= EXCEL_MAX_CHARS:
        return text
    marker = f" … [cut: the full text has {len(text):,} characters]"
    return text[: EXCEL_MAX_CHARS - len(marker)] + marker


def is_missing(value: Any) -> bool:
    """None, NaN and NaT: an empty cell."""
    if value is None:
        return True
    if isinstance(value, float):
        return value != value
    if value is pd.NaT:
        return True
    return type(value).__module__.startswith("numpy") and not hasattr(value, "__len__") and bool(pd.isna(value))


def plain(value: Any) -> Any:
    """numpy and pandas scalars as the Python values they stand for; tz-aware times made local."""
    if hasattr(value, "item") and type(value).__module__.startswith("numpy"):
        value = value.item()
    if hasattr(value, "to_pydatetime"):  # pandas Timestamp
        value = value.to_pydatetime(warn=False)
    elif hasattr(value, "to_pytimedelta"):  # pandas Timedelta
        value = value.to_pytimedelta()
    if isinstance(value, (dt.datetime, dt.time)) and value.tzinfo is not None:
        value = value.replace(tzinfo=None)  # Excel has no time zones: keep the wall-clock time
    return value


class ForcedText(str):
    """Text that must be written as a string cell: it looks like a formula or an error value."""


def excel_value(value: Any) -> Any:
    """The value openpyxl should write; text that must stay text comes back as ForcedText.

    Forced text is formula-looking text (see the module's docstring) and text such as
    "#N/A" that openpyxl would otherwise turn into an error value: text always stays text.
    """
    kind = type(value)
    if kind is str:  # the common case first, and cheaply: most text needs no change
        if value.isprintable() and len(value) <= EXCEL_MAX_CHARS and value[:1] not in _CHECK_FIRST:
            return value
        return _excel_text(value)
    if kind is int:
        return value if -EXCEL_MAX_EXACT_INT < value < EXCEL_MAX_EXACT_INT else str(value)
    if kind is float:
        if math.isfinite(value):
            return value
        return None if value != value else str(value)
    if value is None or kind is bool:
        return value
    if ((kind is dt.datetime and value.tzinfo is None) or kind is dt.date) and value.year >= 1900:
        return value
    if kind is pd.Timestamp and value.tzinfo is None and value.year >= 1900:  # read_table's date columns
        return value.to_pydatetime(warn=False)
    if kind is list or kind is dict:
        return _excel_text(_JSON.encode(value))
    if is_missing(value):
        return None
    value = plain(value)
    if isinstance(value, (bool, int, float)) and type(value) is not kind:
        return excel_value(value)
    if isinstance(value, dt.date) and value.year < 1900:  # before Excel's calendar: keep it readable
        return value.isoformat()
    if isinstance(value, (dt.date, dt.time, dt.timedelta, Decimal)):
        return value
    return _excel_text(as_text(value))


def _excel_text(text: str) -> str:
    if _ILLEGAL_XML.search(text):
        text = _ILLEGAL_XML.sub("", text)
    if len(text) > EXCEL_MAX_CHARS:
        text = cut_to_excel_limit(text)
    if text.startswith(FORMULA_TRIGGERS) or text in EXCEL_ERROR_TEXTS:
        return ForcedText(text)
    return text


# Text after a leading + or - that no spreadsheet evaluates as a formula (see the module's docstring).
_SIGNED_DATA = re.compile(r"[+-](?:(?:\d[\d,]*(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?%?|\d+(?: \d+)+)|-+|\++")


def csv_needs_quote(text: str) -> bool:
    """True if a spreadsheet opening the CSV would evaluate `text` as a formula."""
    first = text[:1]
    if first in ("=", "@", "\t", "\r"):
        return True
    if first in ("+", "-"):
        return _SIGNED_DATA.fullmatch(text) is None
    if first in (" ", "\n"):  # some importers trim spaces and line breaks first
        rest = text.lstrip(" \t\r\n")
        return rest != text and rest[:1] in ("=", "@", "+", "-") and csv_needs_quote(rest)
    return False


def csv_value(value: Any) -> Any:
    """A value for csv.writer: numbers as numbers, text a spreadsheet would evaluate behind a quote."""
    kind = type(value)
    if kind is str:
        return "'" + value if value[:1] in _CSV_CHECK_FIRST and csv_needs_quote(value) else value
    if kind is int or (kind is float and math.isfinite(value)):
        return value
    if value is None or is_missing(value):
        return ""
    value = plain(value)
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, float, Decimal)):
        return value
    if isinstance(value, dt.datetime):  # a date without a time reads as one
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat(sep=" ")
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    return csv_value(as_text(value))
