"""The Formula step's values: how a cell reads as a number, text, true/false or a date, as in Excel.

A blank cell (None, NaN, "") is 0 in arithmetic, "" in text and FALSE as a condition. Text that
reads as a number ("1,234.50", "$12", "12%") is that number wherever a number is needed; other
text there is Excel's #VALUE!. Dates are Python dates and datetimes (a date column reads as
datetimes); a date plus a number is a date, a date minus a date a number of days, and text
dates are read in ISO form (2024-01-31). Text produced by a formula is bounded (MAX_TEXT).
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from batchgrid.core.util.display import display_text
from batchgrid.core.util.errors import StepError

MAX_TEXT = 1_000_000  # characters a formula may produce in one value (REPT("x", 1e9) is refused)
EPOCH = dt.datetime(1899, 12, 30)  # Excel's day 0 (1900 system, after its leap-year bug)
_DATE_FORMATS = ("%Y/%m/%d", "%d %b %Y", "%d %B %Y", "%b %d, %Y", "%B %d, %Y")  # besides ISO


class FormulaError(Exception):
    """An Excel error value (#DIV/0!, #VALUE!, #NUM!, #N/A) with its reason in words; `where` is
    the part of the formula it came from, filled in by the evaluator."""

    def __init__(self, code: str, message: str, where: str = ""):
        super().__init__(code, message)
        self.code, self.message, self.where = code, message, where

    def __str__(self) -> str:
        return f"{self.code}: {self.message}" + (f" in {self.where}" if self.where else "")


def quoted(value: Any, limit: int = 40) -> str:
    text = display_text(value)
    return '"' + (text if len(text) <= limit else text[: limit - 1] + "…") + '"'


def is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value == "") or (isinstance(value, float) and value != value)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_date(value: Any) -> bool:
    return isinstance(value, dt.date)


def to_number(value: Any) -> float:
    if is_blank(value):
        return 0.0
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if is_number(value):
        return float(value)
    if is_date(value):
        return serial(value)
    if isinstance(value, str):
        from .data import parse_number  # the Parse number step's reading: "1,234.50", "$12", "12%"

        try:
            number = parse_number(value)
        except StepError:
            raise FormulaError("#VALUE!", f"cannot read {quoted(value)} as a number") from None
        return 0.0 if number is None else float(number)
    raise FormulaError("#VALUE!", f"cannot read {quoted(value)} ({type(value).__name__}) as a number")


def to_int(value: Any) -> int:
    number = to_number(value)
    if not math.isfinite(number) or abs(number) > 2**53:
        raise FormulaError("#NUM!", f"{quoted(value)} is too large here")
    return int(number)


def to_text(value: Any) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    return display_text(value)


def to_bool(value: Any) -> bool:
    if is_blank(value):
        return False
    if isinstance(value, bool):
        return value
    if is_number(value):
        return value != 0
    if isinstance(value, str):
        word = value.strip().upper()
        if word in ("TRUE", "FALSE"):
            return word == "TRUE"
        try:
            return to_number(value) != 0
        except FormulaError:
            raise FormulaError("#VALUE!", f"cannot read {quoted(value)} as TRUE or FALSE") from None
    raise FormulaError("#VALUE!", f"cannot read {quoted(value)} as TRUE or FALSE")


def check_length(length: int) -> None:
    """Before building text: refuse it if it would be too long."""
    if length > MAX_TEXT:
        raise FormulaError("#VALUE!", f"the text would be {length:,} characters long; at most {MAX_TEXT:,} "
                           "are allowed")


def checked_text(text: str) -> str:
    check_length(len(text))
    return text


def finite(number: float) -> float:
    if not math.isfinite(number):
        raise FormulaError("#NUM!", "the result is too large to be a number")
    return number


# ---- dates -----------------------------------------------------------------------------
def serial(value: dt.date) -> float:
    """Excel's day number of a date (what a date is in arithmetic other than + and -)."""
    moment = value if isinstance(value, dt.datetime) else dt.datetime(value.year, value.month, value.day)
    delta = moment.replace(tzinfo=None) - EPOCH
    return delta.days + delta.seconds / 86400


def from_serial(number: float) -> dt.date | dt.datetime:
    try:
        moment = EPOCH + dt.timedelta(days=number)
    except OverflowError:
        raise FormulaError("#NUM!", f"{number:g} is not a day a date can be") from None
    return moment.date() if moment.time() == dt.time() else moment


def to_date(value: Any) -> dt.date:
    """A date or datetime; text in ISO form (or "31 Jan 2024"); a number as Excel's day number."""
    if isinstance(value, dt.date):
        return value
    if is_blank(value):
        raise FormulaError("#VALUE!", "a blank cell is not a date")
    if is_number(value):
        return from_serial(float(value))
    if isinstance(value, str):
        text = value.strip()
        try:
            return dt.datetime.fromisoformat(text)
        except ValueError:
            pass
        for pattern in _DATE_FORMATS:
            try:
                return dt.datetime.strptime(text, pattern)
            except ValueError:
                continue
    raise FormulaError("#VALUE!", f"cannot read {quoted(value)} as a date; write dates as 2024-01-31")


def day_of(value: dt.date) -> dt.date:
    return value.date() if isinstance(value, dt.datetime) else value


def add_days(date: dt.date, days: float) -> dt.date:
    try:
        if isinstance(date, dt.datetime) or days != int(days):
            moment = date if isinstance(date, dt.datetime) else dt.datetime(date.year, date.month, date.day)
            return moment + dt.timedelta(days=days)
        return date + dt.timedelta(days=int(days))
    except OverflowError:
        raise FormulaError("#NUM!", "the date would be out of range") from None


# ---- operators -------------------------------------------------------------------------
def add(a: Any, b: Any, op: str) -> Any:
    """a + b or a - b, keeping dates: date ± days is a date, date - date a number of days."""
    if is_date(a) and isinstance(b, str) and op == "-":
        b = _date_or_text(b)
    elif is_date(b) and isinstance(a, str) and op == "-":
        a = _date_or_text(a)
    if is_date(a) and not is_date(b):
        return add_days(a, to_number(b) if op == "+" else -to_number(b))
    if is_date(b) and op == "+" and not is_date(a):
        return add_days(b, to_number(a))
    if is_date(a) and is_date(b) and op == "-":
        return serial(a) - serial(b)
    x, y = to_number(a), to_number(b)
    return finite(x + y if op == "+" else x - y)


def _date_or_text(text: str) -> Any:
    """Text beside a date: the date it reads as ("2024-01-31"), else the text itself."""
    try:
        return to_date(text)
    except FormulaError:
        return text


def _comparable(a: Any, b: Any) -> tuple[Any, Any]:
    """Both sides as one kind: numbers, text (case-insensitive, as in Excel), booleans or dates."""
    if is_blank(a) and is_blank(b):
        return 0, 0
    if is_blank(a):
        a = "" if isinstance(b, str) else (False if isinstance(b, bool) else 0)
        if is_date(b):
            b = serial(b)
    if is_blank(b):
        b = "" if isinstance(a, str) else (False if isinstance(a, bool) else 0)
        if is_date(a):
            a = serial(a)
    if isinstance(a, bool) or isinstance(b, bool):
        if isinstance(a, bool) and isinstance(b, bool):
            return a, b
        raise TypeError
    if is_date(a) or is_date(b):
        return serial(to_date(a)), serial(to_date(b))
    if isinstance(a, str) and isinstance(b, str):
        return a.casefold(), b.casefold()
    if is_number(a) and is_number(b):
        return a, b
    return to_number(a), to_number(b)  # text beside a number reads as a number ("12" = 12)


def compare(a: Any, b: Any, op: str) -> bool:
    try:
        x, y = _comparable(a, b)
    except (TypeError, FormulaError):
        if op in ("=", "<>"):
            return op == "<>"  # different kinds are simply not equal
        raise FormulaError("#VALUE!", f"cannot compare {quoted(a)} with {quoted(b)}") from None
    return {"=": x == y, "<>": x != y, "<": x < y, ">": x > y, "<=": x <= y, ">=": x >= y}[op]


def result(value: Any) -> Any:
    """A formula's value as the step writes it: a whole number as an int (shown 6, not 6.0)."""
    if isinstance(value, float) and not isinstance(value, bool) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value
