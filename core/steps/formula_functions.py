"""The Formula step's functions: a fixed table, looked up case-insensitively, nothing else callable.

Each function takes values (or, when `lazy`, thunks it calls only for the branch it needs: IF,
IFERROR) and returns a value or raises FormulaError with Excel's code and a reason in words.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_UP, ROUND_UP, Decimal, InvalidOperation
from typing import Any

from .formula_format import format_value
from .formula_values import (
    FormulaError,
    check_length,
    checked_text,
    day_of,
    finite,
    is_blank,
    is_date,
    is_number,
    quoted,
    serial,
    to_bool,
    to_date,
    to_int,
    to_number,
    to_text,
)
from .text import title_case

MAX_ARGS = 255  # Excel's limit


def today() -> dt.date:
    """TODAY()'s date (tests replace it)."""
    return dt.date.today()


@dataclass(frozen=True)
class Function:
    name: str
    usage: str                # how it is written, for help and the editor's menu
    minimum: int
    maximum: int
    impl: Callable[..., Any]
    lazy: bool = False        # gets thunks: evaluates only the arguments it needs

    def arity_problem(self, count: int) -> str:
        """"IF takes 2 or 3 arguments" when `count` does not fit, else ""."""
        if self.minimum <= count <= self.maximum:
            return ""
        n, m = self.minimum, self.maximum
        if n == m:
            words = "no arguments" if n == 0 else f"{n} argument{'s' if n > 1 else ''}"
        elif m == MAX_ARGS:
            words = f"at least {n} argument{'s' if n > 1 else ''}"
        elif m == n + 1:
            words = f"{n} or {m} arguments"
        else:
            words = f"{n} to {m} arguments"
        return f"{self.name} takes {words}: {self.usage}"


FUNCTIONS: dict[str, Function] = {}


def function(usage: str, minimum: int, maximum: int = -1, *, lazy: bool = False):
    name = usage.split("(")[0]

    def add(impl: Callable[..., Any]) -> Callable[..., Any]:
        FUNCTIONS[name] = Function(name, usage, minimum, minimum if maximum == -1 else maximum, impl, lazy)
        return impl
    return add


def spread(values: tuple[Any, ...]) -> list[Any]:
    """Arguments with lists (a Split step's output, say) opened up; blanks left out."""
    out: list[Any] = []
    for value in values:
        items = value if isinstance(value, (list, tuple)) else [value]
        out.extend(v for v in items if not is_blank(v))
    return out


# ---- logic -----------------------------------------------------------------------------
@function("IF(condition, value if true, [value if false])", 2, 3, lazy=True)
def _if(condition, yes, no=None):
    if to_bool(condition()):
        return yes()
    return no() if no is not None else False


@function("IFERROR(value, value if error)", 2, lazy=True)
def _iferror(value, fallback):
    try:
        return value()
    except FormulaError:
        return fallback()


@function("ISERROR(value)", 1, lazy=True)
def _iserror(value):
    try:
        value()
    except FormulaError:
        return True
    return False


@function("AND(condition, ...)", 1, MAX_ARGS)
def _and(*values):
    return all([to_bool(v) for v in values])  # every argument is read, as in Excel


@function("OR(condition, ...)", 1, MAX_ARGS)
def _or(*values):
    return any([to_bool(v) for v in values])


@function("NOT(condition)", 1)
def _not(value):
    return not to_bool(value)


@function("ISBLANK(value)", 1)
def _isblank(value):
    return is_blank(value)


@function("ISNUMBER(value)", 1)
def _isnumber(value):
    return is_number(value)


@function("ISTEXT(value)", 1)
def _istext(value):
    return isinstance(value, str) and value != ""


# ---- text ------------------------------------------------------------------------------
def _count(value: Any, what: str) -> int:
    n = to_int(value)
    if n < 0:
        raise FormulaError("#VALUE!", f"{what} cannot be negative ({n})")
    return n


@function("LEN(text)", 1)
def _len(value):
    return len(to_text(value))


@function("LEFT(text, [count])", 1, 2)
def _left(value, count=1):
    return to_text(value)[: _count(count, "LEFT's count")]


@function("RIGHT(text, [count])", 1, 2)
def _right(value, count=1):
    n = _count(count, "RIGHT's count")
    text = to_text(value)
    return text[len(text) - n:] if n else ""


@function("MID(text, start, count)", 3)
def _mid(value, start, count):
    begin = to_int(start)
    if begin < 1:
        raise FormulaError("#VALUE!", f"MID's start must be 1 or more, not {begin}")
    return to_text(value)[begin - 1: begin - 1 + _count(count, "MID's count")]


@function("UPPER(text)", 1)
def _upper(value):
    return to_text(value).upper()


@function("LOWER(text)", 1)
def _lower(value):
    return to_text(value).lower()


@function("PROPER(text)", 1)
def _proper(value):
    return title_case(to_text(value).lower())


@function("TRIM(text)", 1)
def _trim(value):
    return " ".join(to_text(value).split())  # as the Trim step: ends cut, runs of spaces made one


@function("CONCAT(text, ...)", 1, MAX_ARGS)
def _concat(*values):
    parts = [to_text(v) for v in spread(values)]
    check_length(sum(map(len, parts)))
    return "".join(parts)


FUNCTIONS["CONCATENATE"] = Function("CONCATENATE", "CONCATENATE(text, ...)", 1, MAX_ARGS, _concat)


@function("TEXTJOIN(delimiter, ignore blanks, text, ...)", 3, MAX_ARGS)
def _textjoin(delimiter, ignore_blank, *values):
    items: list[Any] = []
    for value in values:
        items.extend(value if isinstance(value, (list, tuple)) else [value])
    parts = [to_text(v) for v in items if not (to_bool(ignore_blank) and is_blank(v))]
    sep = to_text(delimiter)
    check_length(sum(map(len, parts)) + len(sep) * max(len(parts) - 1, 0))
    return sep.join(parts)


@function("CONTAINS(text, part)", 2)
def _contains(value, part):
    return to_text(part).casefold() in to_text(value).casefold()  # upper and lower case alike


@function("SUBSTITUTE(text, old, new, [which])", 3, 4)
def _substitute(value, old, new, which=None):
    text, old_text, new_text = to_text(value), to_text(old), to_text(new)
    if not old_text:
        return text
    if which is None:
        check_length(len(text) + text.count(old_text) * (len(new_text) - len(old_text)))
        return text.replace(old_text, new_text)
    n = to_int(which)
    if n < 1:
        raise FormulaError("#VALUE!", f"SUBSTITUTE's which must be 1 or more, not {n}")
    at = -1
    for _ in range(n):
        at = text.find(old_text, at + 1)
        if at < 0:
            return text
    return checked_text(text[:at] + new_text + text[at + len(old_text):])


def _find(part, value, start, fold: bool, name: str):
    needle, text = to_text(part), to_text(value)
    begin = to_int(start)
    if begin < 1 or begin > len(text) + 1:
        raise FormulaError("#VALUE!", f"{name}'s start must be between 1 and {len(text) + 1}, not {begin}")
    at = (text.casefold().find(needle.casefold(), begin - 1) if fold else text.find(needle, begin - 1))
    if at < 0:
        raise FormulaError("#VALUE!", f"{quoted(needle)} is not in {quoted(text)}")
    return at + 1


@function("FIND(part, text, [start])", 2, 3)
def _find_exact(part, value, start=1):
    return _find(part, value, start, False, "FIND")


@function("SEARCH(part, text, [start])", 2, 3)
def _search(part, value, start=1):
    return _find(part, value, start, True, "SEARCH")


@function("REPT(text, times)", 2)
def _rept(value, times):
    text, n = to_text(value), _count(times, "REPT's times")
    check_length(len(text) * n)
    return text * n


@function("VALUE(text)", 1)
def _value(value):
    if is_date(value):
        return serial(value)
    if isinstance(value, str) and not value.strip():
        raise FormulaError("#VALUE!", "cannot read blank text as a number")
    return to_number(value)


@function("TEXT(value, format)", 2)
def _text(value, code):
    return format_value(value, to_text(code))  # formula_format.py


# ---- numbers ---------------------------------------------------------------------------
def _round(value, digits, mode) -> float:
    number, places = to_number(value), to_int(digits)
    if places > 15:
        return number
    if places < -308:
        return 0.0
    try:  # Excel rounds halves away from zero, in decimal: ROUND(2.675, 2) is 2.68
        return float(Decimal(repr(number)).quantize(Decimal(1).scaleb(-places), rounding=mode))
    except InvalidOperation:
        return number


@function("ROUND(number, [digits])", 1, 2)
def _round_half(value, digits=0):
    return _round(value, digits, ROUND_HALF_UP)


@function("ROUNDUP(number, digits)", 2)
def _roundup(value, digits):
    return _round(value, digits, ROUND_UP)


@function("ROUNDDOWN(number, digits)", 2)
def _rounddown(value, digits):
    return _round(value, digits, ROUND_DOWN)


@function("INT(number)", 1)
def _int(value):
    return float(math.floor(to_number(value)))


@function("MOD(number, divisor)", 2)
def _mod(value, divisor):
    d = to_number(divisor)
    if d == 0:
        raise FormulaError("#DIV/0!", "MOD by zero")
    return to_number(value) % d  # the sign of the divisor, as in Excel


@function("ABS(number)", 1)
def _abs(value):
    return abs(to_number(value))


@function("SUM(number, ...)", 1, MAX_ARGS)
def _sum(*values):
    return finite(sum(to_number(v) for v in spread(values)))


@function("AVERAGE(number, ...)", 1, MAX_ARGS)
def _average(*values):
    numbers = [to_number(v) for v in spread(values)]
    if not numbers:
        raise FormulaError("#DIV/0!", "AVERAGE of nothing (every value is blank)")
    return finite(sum(numbers) / len(numbers))


@function("MIN(number, ...)", 1, MAX_ARGS)
def _min(*values):
    numbers = [to_number(v) for v in spread(values)]
    return min(numbers) if numbers else 0.0


@function("MAX(number, ...)", 1, MAX_ARGS)
def _max(*values):
    numbers = [to_number(v) for v in spread(values)]
    return max(numbers) if numbers else 0.0


# ---- dates -----------------------------------------------------------------------------
@function("TODAY()", 0)
def _today():
    return today()


@function("NOW()", 0)
def _now():
    return dt.datetime.now().replace(microsecond=0)


@function("DATE(year, month, day)", 3)
def _date(year, month, day):
    y, m, d = to_int(year), to_int(month), to_int(day)
    y, m = y + (m - 1) // 12, (m - 1) % 12 + 1  # DATE(2024, 13, 1) is 2025-01-01, as in Excel
    if not 1 <= y <= 9999:
        raise FormulaError("#NUM!", f"the year {y} is out of range")
    try:
        return dt.date(y, m, 1) + dt.timedelta(days=d - 1)
    except OverflowError:
        raise FormulaError("#NUM!", "the date would be out of range") from None


@function("YEAR(date)", 1)
def _year(value):
    return to_date(value).year


@function("MONTH(date)", 1)
def _month(value):
    return to_date(value).month


@function("DAY(date)", 1)
def _day(value):
    return to_date(value).day


def _months_between(start: dt.date, end: dt.date) -> int:
    months = (end.year - start.year) * 12 + end.month - start.month
    return months - 1 if end.day < start.day else months


def _shift_months(date: dt.date, months: int) -> dt.date:
    y, m = divmod(date.month - 1 + months, 12)
    year, month = date.year + y, m + 1
    for day in range(date.day, 27, -1):  # the 31st of a 30-day month is its last day
        try:
            return dt.date(year, month, day)
        except ValueError:
            continue
    return dt.date(year, month, min(date.day, 28))


@function('DATEDIF(start, end, unit)', 3)
def _datedif(start, end, unit):
    a, b = day_of(to_date(start)), day_of(to_date(end))
    kind = to_text(unit).strip().lower()
    if a > b:
        raise FormulaError("#NUM!", f"the start date {a.isoformat()} is after the end date {b.isoformat()}")
    months = _months_between(a, b)
    if kind == "d":
        return (b - a).days
    if kind == "m":
        return months
    if kind == "y":
        return months // 12
    if kind == "ym":
        return months % 12
    if kind == "md":
        return (b - _shift_months(a, months)).days
    if kind == "yd":
        return (b - _shift_months(a, months // 12 * 12)).days
    raise FormulaError("#NUM!", f'DATEDIF\'s unit is "d", "m", "y", "ym", "md" or "yd", not {quoted(unit)}')


NAMES = sorted(FUNCTIONS)
