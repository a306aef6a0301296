"""Excel's TEXT(value, format) for the Formula step: numbers through "0.00", "#,##0", "0%",
"00000" or "$0.00"; dates through "yyyy-mm-dd", "d mmm yyyy", "dddd", "h:mm AM/PM". Only the first
section of a format is used; text that is neither a number nor a date comes back as it is.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from .formula_values import FormulaError, checked_text, is_date, is_number, to_date, to_number, to_text

_DATE_TOKEN = re.compile(r'"[^"]*"|\\.|yyyy|yy|mmmm|mmm|mm|m|dddd|ddd|dd|d|hh|h|ss|s|am/pm|a/p|.', re.I | re.S)
_DATE_LETTERS = re.compile(r'"[^"]*"|\\.|([ydhms])', re.I)  # outside quotes: a date code (numbers have none)


def format_value(value: Any, code: str) -> str:
    """Excel's TEXT: a number or date through a format such as "0.00", "#,##0", "0%", "yyyy-mm-dd"."""
    if code == "@" or code.strip().lower() == "general":
        return to_text(value)
    if any(m.group(1) for m in _DATE_LETTERS.finditer(code)):
        if is_date(value) or is_number(value) or isinstance(value, str):
            try:
                return _format_date(to_date(value), code)
            except FormulaError:
                return to_text(value)  # text that is not a date comes back as it is, as in Excel
    try:
        number = to_number(value)
    except FormulaError:
        return to_text(value)
    return _format_number(number, code)


def _format_date(value: dt.date, code: str) -> str:
    moment = value if isinstance(value, dt.datetime) else dt.datetime(value.year, value.month, value.day)
    twelve = re.search(r"am/pm|a/p", code, re.I) is not None
    parts = [m.group(0) for m in _DATE_TOKEN.finditer(code)]
    out = []
    for i, part in enumerate(parts):
        low = part.lower()
        if low in ("mm", "m"):  # minutes after an hour or before seconds, else the month
            before = next((p.lower() for p in reversed(parts[:i]) if p.strip(" :")), "")
            after = next((p.lower() for p in parts[i + 1:] if p.strip(" :")), "")
            if before.startswith("h") or after.startswith("s"):
                out.append(f"{moment.minute:02d}" if low == "mm" else str(moment.minute))
                continue
        hour = (moment.hour % 12 or 12) if twelve else moment.hour
        shown = {"yyyy": f"{moment.year:04d}", "yy": f"{moment.year % 100:02d}", "mmmm": moment.strftime("%B"),
                 "mmm": moment.strftime("%b"), "mm": f"{moment.month:02d}", "m": str(moment.month),
                 "dddd": moment.strftime("%A"), "ddd": moment.strftime("%a"), "dd": f"{moment.day:02d}",
                 "d": str(moment.day), "hh": f"{hour:02d}", "h": str(hour), "ss": f"{moment.second:02d}",
                 "s": str(moment.second), "am/pm": "AM" if moment.hour < 12 else "PM",
                 "a/p": "A" if moment.hour < 12 else "P"}.get(low)
        if shown is not None:
            out.append(shown)
        elif part.startswith('"'):
            out.append(part[1:-1])
        elif part.startswith("\\"):
            out.append(part[1:])
        else:
            out.append(part)
    return "".join(out)


def _format_number(number: float, code: str) -> str:
    section = code.split(";")[0]
    pieces: list[tuple[bool, str]] = []  # (is a placeholder, text)
    for m in re.finditer(r'"[^"]*"|\\.|[0#?,.]|.', section, re.S):
        text = m.group(0)
        if text.startswith('"'):
            pieces.append((False, text[1:-1]))
        elif text.startswith("\\"):
            pieces.append((False, text[1:]))
        else:
            pieces.append((text in ("0", "#", "?", ",", "."), text))
    marks = [i for i, (placeholder, _) in enumerate(pieces) if placeholder]
    if not marks:
        return "".join(text for _, text in pieces)
    first, last = marks[0], marks[-1]
    body = "".join(text for _, text in pieces[first:last + 1])
    prefix = "".join(text for _, text in pieces[:first])
    suffix = "".join(text for _, text in pieces[last + 1:])
    number *= 100 ** (prefix + suffix).count("%")
    whole, _, fraction = body.partition(".")
    most = sum(fraction.count(c) for c in "0#?")
    least = fraction.count("0")
    rounded = Decimal(repr(abs(number))).quantize(Decimal(1).scaleb(-most), rounding=ROUND_HALF_UP)
    digits = f"{rounded:f}"
    int_part, _, dec_part = digits.partition(".")
    while len(dec_part) > least and dec_part.endswith("0"):
        dec_part = dec_part[:-1]
    int_part = int_part.lstrip("0").rjust(whole.count("0"), "0")
    if "," in whole and int_part:
        int_part = f"{int(int_part):,}"
    text = int_part + ("." + dec_part if dec_part else "")
    sign = "-" if number < 0 and rounded != 0 else ""
    return checked_text(sign + prefix + text + suffix)
