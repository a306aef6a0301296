"""Cell values as Excel shows them, from the raw value and the cell's number format.

calamine gives each cell's stored number; Excel shows it through the cell's format. Where the
two differ in a way that matters to an analyst we give what Excel shows:

- zero-padded codes and ids ("00000", "000-00-0000"): text, "00042" (the zeros are the value);
- durations ("[h]:mm", "[mm]:ss"): text, "37:05" (a timedelta reads "1 day, 13:05:00");
- percentages ("0.0%"): a `ShownNumber`, see below;
- date formats on serials below 1 (calamine reads them as a time and drops the day) and
  1904-system dates: the date;
- whole numbers beyond 2**53 (floats that are no longer exact): the integer text Excel shows
  (15 significant digits), never 1.234567890123457e+17.

Why a float subclass for percentages: the value must stay a number for numeric steps and
sorting, yet read "25.6%" wherever it is shown as text. Every text path (templates, the
results table, CSV/xlsx text) goes through `util.display.display_text`, which formats a float
with a general ('g') format spec; `ShownNumber.__format__` answers a general spec (and `str()`)
with the text Excel shows, any other spec (".2f") and all arithmetic with the number. It is a
module-level class with `__reduce__`, so it pickles through the reader process, and pandas keeps
it as it is in an object column. A separate text column or a display-only side table would need
every consumer to learn about it; this needs none.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable
from enum import Enum
from functools import lru_cache
from typing import Any

MAX_EXACT_FLOAT_INT = 2**53
_BIG_LIMIT = 1e21  # beyond this Excel shows scientific notation even with "0": leave the float


class ShownNumber(float):
    """A number with the text Excel shows for it (0.256 as "25.6%")."""

    __slots__ = ("text",)
    text: str

    def __new__(cls, value: float, text: str) -> ShownNumber:
        self = super().__new__(cls, value)
        self.text = text
        return self

    def __reduce__(self):
        return ShownNumber, (float(self), self.text)

    def __str__(self) -> str:
        return self.text

    def __format__(self, spec: str) -> str:
        if spec == "" or spec.endswith("g"):  # "show the number": as Excel shows it
            return self.text
        return float.__format__(float(self), spec)

    def __repr__(self) -> str:
        return f"ShownNumber({float(self)!r}, {self.text!r})"


class Kind(Enum):
    PERCENT = "percent"
    PADDED = "padded"      # integer codes with leading zeros
    DURATION = "duration"  # elapsed time: [h]:mm
    DATE = "date"          # a date (with or without a time of day)


# Built-in format ids (ECMA-376 18.8.30) whose meaning matters here. 27-36 and 50-58 are the
# East Asian built-in date formats.
BUILTIN = {1: "0", 9: "0%", 10: "0.00%", 14: "mm-dd-yy", 15: "d-mmm-yy", 16: "d-mmm", 17: "mmm-yy",
           18: "h:mm AM/PM", 19: "h:mm:ss AM/PM", 20: "h:mm", 21: "h:mm:ss", 22: "m/d/yy h:mm", 45: "mm:ss",
           46: "[h]:mm:ss", 47: "mmss.0", 49: "@",
           **{i: "yyyy-mm-dd" for i in (*range(27, 37), *range(50, 59))}}

_LITERALS = re.compile(r'"[^"]*"|\\.|_.|\*.')
_BRACKETS = re.compile(r"\[(?!(?:h+|m+|s+)\])[^\]]*\]", re.I)  # [Red], [$-409], [>100]: not elapsed units
_ELAPSED = re.compile(r"\[(?:h+|m+|s+)\]", re.I)


def _first_section(code: str) -> str:
    """The format for positive numbers: the part before the first ';' outside quotes."""
    out, quoted, escaped = [], False, False
    for ch in code:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == ";" and not quoted:
            break
        out.append(ch)
    return "".join(out)


def classify(code: str) -> Kind | None:
    """What a number format makes of a number, where that differs from the number itself."""
    section = _first_section(code)
    bare = _BRACKETS.sub("", _LITERALS.sub("", section))
    if _ELAPSED.search(bare):
        return Kind.DURATION
    lower = bare.lower()
    if "%" in bare and not re.search(r"[yd]", lower):
        return Kind.PERCENT
    if re.search(r"[yd]", lower) or ("m" in lower and not re.search(r"[hs0#]", lower)):
        return Kind.DATE  # a date part; time-only formats calamine reads right
    if "e+" in lower or "e-" in lower or "." in bare or "/" in bare or "?" in bare:
        return None
    if bare.count("0") >= 2 and not re.search(r"[#,]", bare) and re.fullmatch(r"[0\s\-()+:]*", bare):
        return Kind.PADDED
    return None


@lru_cache(maxsize=256)
def _percent_decimals(code: str) -> int:
    bare = _LITERALS.sub("", _BRACKETS.sub("", _first_section(code)))
    return len(m.group(1)) if (m := re.search(r"\.([0#?]+)", bare)) else 0


def percent(value: float, code: str) -> ShownNumber:
    decimals = _percent_decimals(code)
    shown = _round_half_away(value * 100, decimals)
    return ShownNumber(value, f"{shown:.{decimals}f}%")


def padded(value: float, code: str) -> str:
    """An integer through a code format: "00000" 42 reads "00042", "000-00-0000" fills from the right."""
    number = int(_round_half_away(abs(value), 0))
    parts = _code_parts(code)
    slots = parts.count("\0")
    digits = str(number).rjust(slots, "0")
    extra, digits = digits[:len(digits) - slots], digits[len(digits) - slots:]
    if len(parts) == slots:  # only zeros ("00000"): the common case
        return ("-" if value < 0 and number else "") + extra + digits
    out, i, first = [], 0, True
    for part in parts:
        if part == "\0":
            out.append((extra if first else "") + digits[i])
            first, i = False, i + 1
        else:
            out.append(part)
    return ("-" if value < 0 and number else "") + "".join(out)


@lru_cache(maxsize=256)
def _code_parts(code: str) -> tuple[str, ...]:
    """A code format as literal text and "\\0" digit placeholders, in order."""
    pattern = _first_section(code)
    parts: list[str] = []
    for m in re.finditer(r'"([^"]*)"|\\(.)|(0)|\[[^\]]*\]|_.|\*.|(.)', pattern):
        quoted, escaped, zero, other = m.groups()
        if zero:
            parts.append("\0")
        elif quoted is not None or escaped is not None or other is not None:
            parts.append(quoted if quoted is not None else escaped if escaped is not None else other)
    return tuple(parts)


_DURATION_TOKENS = re.compile(r'\[(h+|m+|s+)\]|(h+)|(m+)|(s+)|\.(0+)|"([^"]*)"|\\(.)|(.)', re.I)


def duration(value: float, code: str) -> str:
    """Elapsed time as Excel shows it: 1.5451388 through "[h]:mm" reads "37:05"."""
    section = _BRACKETS.sub("", _first_section(code))
    decimals = len(m.group(1)) if (m := re.search(r"\.(0+)", section)) else 0
    scale = 10 ** decimals
    total = _round_half_away(abs(value) * 86400 * scale, 0)  # in 1/scale seconds
    seconds_whole, fraction = divmod(int(total), scale)
    out = []
    for m in _DURATION_TOKENS.finditer(section):
        elapsed, hours, minutes, seconds, frac, quoted, escaped, other = m.groups()
        if elapsed:
            unit = elapsed[0].lower()
            amount = seconds_whole // {"h": 3600, "m": 60, "s": 1}[unit]
            out.append(str(amount).rjust(len(elapsed), "0"))
        elif hours:
            out.append(str(seconds_whole // 3600 % 24).rjust(len(hours), "0"))
        elif minutes:
            out.append(str(seconds_whole // 60 % 60).rjust(min(len(minutes), 2), "0"))
        elif seconds:
            out.append(str(seconds_whole % 60).rjust(min(len(seconds), 2), "0"))
        elif frac:
            out.append("." + str(fraction).rjust(decimals, "0"))
        else:
            out.append(quoted if quoted is not None else escaped if escaped is not None else other)
    return ("-" if value < 0 and total else "") + "".join(out)


EPOCH_1904 = dt.datetime(1904, 1, 1)


def date(value: float, code: str, date1904: bool) -> dt.date | dt.datetime | str | float:
    """A date serial as the date it stands for. In the 1900 system serials in [0, 1) are Excel's
    "day 0" (it shows 1900-01-00); negative ones Excel cannot show (#####): the number stays."""
    has_time = bool(re.search(r"[hs]", _BRACKETS.sub("", _LITERALS.sub("", _first_section(code))).lower()))
    if date1904:
        moment = EPOCH_1904 + dt.timedelta(days=value)
        moment = moment.replace(microsecond=0) + dt.timedelta(seconds=round(moment.microsecond / 1e6))
        return moment if has_time or moment.time() != dt.time() else moment.date()
    if value >= 1:  # Excel's day 60 is 1900-02-29, which never was
        moment = dt.datetime(1899, 12, 31 if value < 60 else 30) + dt.timedelta(days=value)
        return moment if has_time or moment.time() != dt.time() else moment.date()
    if value < 0:
        return value
    seconds = round(value * 86400)
    clock = dt.time(seconds // 3600 % 24, seconds // 60 % 60, seconds % 60)
    return "1900-01-00" + (f" {clock.isoformat()}" if has_time or clock != dt.time() else "")


CACHE_MAX = 4096  # values remembered per format: a column of rates repeats a few hundred values


def converter(kind: Kind, code: str, date1904: bool = False) -> Callable[[float], Any]:
    """What Excel shows for a number through `code`, as one function per format, made once per
    cell style: a column of 100,000 formatted cells must not parse its format 100,000 times.
    Percentages and codes remember the values they have seen (columns repeat values)."""
    if kind is Kind.DATE:
        return lambda value: date(value, code, date1904)
    if kind is Kind.DURATION:
        return lambda value: duration(value, code)
    cache: dict[float, Any] = {}
    if kind is Kind.PERCENT:
        decimals = _percent_decimals(code)

        def shown_percent(value: float) -> Any:
            if (shown := cache.get(value)) is None:
                shown = ShownNumber(value, f"{_round_half_away(value * 100, decimals):.{decimals}f}%")
                if len(cache) < CACHE_MAX:
                    cache[value] = shown
            return shown
        return shown_percent
    if len(parts := _code_parts(code)) != parts.count("\0"):
        return lambda value: padded(value, code)
    width = len(parts)  # only zeros ("00000"): the common case

    def zero_padded(value: float) -> Any:
        if (shown := cache.get(value)) is None:
            number = int(abs(value) + 0.5 + 1e-9)  # half away from zero, as _round_half_away
            shown = ("-" if value < 0 and number else "") + str(number).rjust(width, "0")
            if len(cache) < CACHE_MAX:
                cache[value] = shown
        return shown
    return zero_padded


def big_integer(value: float) -> str | None:
    """A whole float beyond 2**53 as the integer text Excel shows (15 significant digits); None
    when the number needs no such care."""
    if not (MAX_EXACT_FLOAT_INT <= abs(value) < _BIG_LIMIT) or not value.is_integer():
        return None
    return str(int(float(f"{value:.15g}")))


def _round_half_away(value: float, decimals: int) -> float:
    """Excel rounds halves away from zero (Python's round() to even): 0.0125 as 0.0% reads 1.3%."""
    scale = 10 ** decimals
    shifted = abs(value) * scale
    rounded = math.floor(shifted + 0.5 + 1e-9)
    return math.copysign(rounded / scale, value)
