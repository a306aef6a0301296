"""Data steps: numbers, JSON, and lookups against another sheet or CSV."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batchgrid.core.util import template as tpl
from batchgrid.core.util.errors import InputError, StepError
from batchgrid.core.util.jsonpath import compile_path, extract

from .base import BOOL, CHOICE, COLUMN, FILE, MAPPING, STRINGS, TEXT, BoundStep, Param, Step, register
from .text import TextStep, output_param, shown, source_param

if TYPE_CHECKING:  # pragma: no cover
    from .context import RunResources

# ---- numbers ------------------------------------------------------------------------

_CURRENCY = r"(?:[$€£¥₹₩₽¢]|[A-Z]{3})"  # a symbol or an ISO code such as USD
# Signs, brackets, currency and a percent sign around the digits: "($1,234.50)", "-12,5 %", "12 EUR".
_DECORATED = re.compile(
    rf"^(?P<open>\()?\s*(?P<sign>[-+])?\s*{_CURRENCY}?\s*(?P<sign2>[-+])?\s*"
    r"(?P<digits>[\d.,'’\s]*\d[\d.,'’\s]*)(?P<exponent>[eE][-+]?\d+)?"
    rf"\s*(?P<percent>%)?\s*{_CURRENCY}?\s*(?P<trailing>-)?\s*(?P<close>\))?$"
)
_GROUP_SPACES = re.compile(r"[\s'’]")  # thousands written as spaces or apostrophes: 1 234,50 or 1'234.50


def _digits_pattern(thousands: str, decimal: str) -> re.Pattern:
    t, d = re.escape(thousands), re.escape(decimal)
    # Thousands groups must be groups of three, so "1,23" is not silently read as 123.
    return re.compile(rf"^(?:\d{{1,3}}(?:{t}\d{{3}})+|\d+)?(?:{d}\d*)?$")


_DIGITS = {False: (",", ".", _digits_pattern(",", ".")), True: (".", ",", _digits_pattern(".", ","))}


def parse_number(value: Any, *, decimal_comma: bool = False, percent_as_fraction: bool = True) -> int | float | None:
    """A number from a cell: "1,234.50", "1.234,50" (decimal comma), "$12", "12%", "(5)".

    Blank is None. Whole numbers written without a decimal mark come back as int.
    Raises StepError naming the value when it is not a number.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise StepError(f"cannot read {shown(value)} as a number (it is true/false)")
    if isinstance(value, (int, float)):
        return None if value != value else value  # NaN is a blank cell
    text = tpl.as_text(value).strip().replace("\u2212", "-")  # the typographic minus sign
    if not text:
        return None
    number = _read_number(text, decimal_comma, percent_as_fraction)
    if number is None:
        hint = ""
        if not decimal_comma and re.search(r"\d,\d{1,2}(?!\d)", text):
            hint = "; if it is written like 1.234,50, tick 'Decimal comma'"
        raise StepError(f"cannot read {shown(value)} as a number{hint}")
    return number


def _read_number(text: str, decimal_comma: bool, percent_as_fraction: bool) -> int | float | None:
    m = _DECORATED.match(text)
    if not m or bool(m["open"]) != bool(m["close"]):
        return None
    signs = [s for s in (m["sign"], m["sign2"], m["trailing"]) if s]
    if len(signs) > 1:
        return None
    thousands, decimal, pattern = _DIGITS[decimal_comma]
    digits = _GROUP_SPACES.sub(thousands, m["digits"].strip())
    if not pattern.match(digits):
        return None
    plain = digits.replace(thousands, "").replace(decimal, ".")
    exponent = m["exponent"] or ""
    number: int | float = float(plain + exponent) if ("." in plain or exponent) else int(plain)
    if m["percent"] and percent_as_fraction:
        number = number / 100
    negative = bool(m["open"]) or signs == ["-"]
    return -number if negative else number


@register
class ParseNumber(TextStep):
    type = "parse_number"
    title = "Parse number"
    group = "Data"
    description = "Read numbers written as text: 1,234.50 · 1.234,50 · $12 · 12% · (5)."
    suffix = "number"
    params = (
        source_param(),
        Param("decimal_comma", BOOL, False, "The decimal mark is a comma and thousands use dots: 1.234,50 reads 1234.5."),
        Param("percent_as_fraction", BOOL, True, "12% reads 0.12, as in a spreadsheet; untick to read it as 12.",
              label="Read 12% as 0.12"),
        Param("on_error", CHOICE, "error", "error: the row fails, naming the value; blank: write a blank and go on.",
              choices=("error", "blank"), label="When a value is not a number"),
        output_param(),
    )

    def apply(self, row: Mapping[str, Any]) -> dict[str, Any]:
        try:
            number = parse_number(self.source_value(row), decimal_comma=self.config["decimal_comma"],
                                  percent_as_fraction=self.config["percent_as_fraction"])
        except StepError:
            if self.config["on_error"] == "error":
                raise
            number = None
        return {self.output_name(): number}


# ---- JSON ---------------------------------------------------------------------------

def load_json(value: Any) -> Any:
    """A cell as parsed JSON: text is parsed, parsed values pass through, blank is None."""
    if not isinstance(value, str):
        return None if isinstance(value, float) and value != value else value
    text = value.strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise StepError(f"cannot read {shown(text)} as JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}",
                        raw=text) from None


@register
class ParseJson(TextStep):
    type = "parse_json"
    title = "Parse JSON"
    group = "Data"
    description = "Turn JSON text into an object or list that later steps can pick values from."
    suffix = "json"
    params = (source_param(), output_param())

    def apply(self, row: Mapping[str, Any]) -> dict[str, Any]:
        return {self.output_name(): load_json(self.source_value(row))}


@register
class JsonPathExtract(Step):
    type = "json_path"
    title = "JSON path extract"
    group = "Data"
    description = "Pick values out of JSON into columns: price ← $.data.price."
    params = (
        source_param("A column holding JSON text or an already parsed value, or a template."),
        Param("paths", MAPPING, {}, "New column to JSON path, e.g. price: $.data.price or first_tag: tags[0].",
              required=True, label="Columns and paths"),
        Param("all_matches", BOOL, False, "Always write the list of every match; otherwise a single match is "
              "written as it is and several as a list."),
        Param("when_missing", CHOICE, "blank", "blank: a path that finds nothing gives a blank; error: the row fails.",
              choices=("blank", "error")),
    )

    def writes(self) -> list[str]:
        return list(self.config["paths"])

    def check(self) -> list[tuple[str, str]]:
        problems = []
        for column, path in self.config["paths"].items():
            try:
                compile_path(path)
            except ValueError as exc:
                problems.append((f"paths.{column}", str(exc)))
        return problems

    def apply(self, row: Mapping[str, Any]) -> dict[str, Any]:
        data = load_json(self.source_value(row))
        out: dict[str, Any] = {}
        for column, path in self.config["paths"].items():
            matches = extract(data, path, many=True) if data is not None else []
            if not matches and data is not None and self.config["when_missing"] == "error":
                raise StepError(f"nothing at {path} in {shown(data)}")
            if self.config["all_matches"]:
                out[column] = matches
            else:
                out[column] = None if not matches else matches[0] if len(matches) == 1 else matches
        return out


# ---- lookup -------------------------------------------------------------------------

def _match_key(value: Any, loose: bool) -> str | None:
    """How a key is compared: as text (so 3, 3.0 and "3" match); loose also ignores case and spaces."""
    text = tpl.as_text(value)
    if loose:
        text = text.strip().casefold()
    return text or None


def _plain(value: Any) -> Any:
    """A cell from pandas as a plain value: NaN, NaT and NA become None."""
    import pandas as pd

    return None if pd.api.types.is_scalar(value) and pd.isna(value) else value


@register
class Lookup(Step):
    type = "lookup"
    title = "Lookup"
    group = "Data"
    description = "Bring in columns from another sheet or CSV whose key matches this row (like VLOOKUP)."
    params = (
        Param("file", FILE, "", "The workbook or CSV to look in; a relative path starts at the pipeline file's folder.",
              required=True),
        Param("sheet", TEXT, "", "The sheet to read in a workbook; blank reads the first sheet (CSV files have none)."),
        Param("file_key", TEXT, "", "The column of that file holding the keys.", required=True,
              label="Key column in the file"),
        Param("key", COLUMN, "", "The column of this table whose value is looked for.", required=True,
              label="Match this column"),
        Param("columns", STRINGS, [], "Columns of the file to bring back.", required=True, label="Bring back"),
        Param("prefix", TEXT, "", "Put this before each brought-back column's name, e.g. price_ (avoids clashes)."),
        Param("match", CHOICE, "exact", "exact: the keys must be the same text; loose: ignore upper/lower case and "
              "spaces around the keys.", choices=("exact", "loose")),
        Param("not_found", CHOICE, "blank", "blank: a key that is not in the file gives blanks; error: the row fails.",
              choices=("blank", "error"), label="When the key is not found"),
    )

    def writes(self) -> list[str]:
        return [self.config["prefix"] + c for c in self.config["columns"]]

    async def bind(self, resources: RunResources) -> LookupTable:
        path = resources.resolve(self.config["file"])
        # pandas reads the whole file at once: in a worker thread, so the loop (a window) stays
        # free, and a stop does not wait for it.
        table = await asyncio.to_thread(self.load, path)
        return LookupTable(self, table, path.name)

    def load(self, path: Path) -> dict[str, tuple]:
        """The file as key -> values of `columns` (the first row with a key wins, as in VLOOKUP)."""
        from batchgrid.core.table.worker import read_table  # a reader process: no file can crash the run

        if not path.is_file():
            raise InputError(f"lookup file {path} does not exist")
        try:
            frame = read_table(path, sheet=self.config["sheet"] or None)
        except InputError as exc:
            raise InputError(f"lookup file: {exc}") from None
        frame.columns = [str(c) for c in frame.columns]
        wanted = [self.config["file_key"], *self.config["columns"]]
        missing = [c for c in wanted if c not in frame.columns]
        if missing:
            names = ", ".join(f'"{c}"' for c in missing)
            raise InputError(f"lookup file {path.name} has no column {names}; "
                             f"its columns are: {', '.join(frame.columns) or '(none)'}")
        loose = self.config["match"] == "loose"
        keys = frame[self.config["file_key"]].tolist()
        values = zip(*(frame[c].tolist() for c in self.config["columns"]), strict=True)
        table: dict[str, tuple] = {}
        for key, found in zip(keys, values, strict=True):
            k = _match_key(_plain(key), loose)
            if k is not None and k not in table:
                table[k] = tuple(_plain(v) for v in found)
        return table


class LookupTable(BoundStep):
    """A lookup bound to one run: the file, loaded once, as a dict."""

    def __init__(self, step: Lookup, table: dict[str, tuple], file_name: str):
        super().__init__(step, is_async=False)
        self.table = table
        self.file_name = file_name
        self.names = step.writes()
        self.key_column = step.config["key"]
        self.loose = step.config["match"] == "loose"
        self.fail_when_missing = step.config["not_found"] == "error"
        self.file_key = step.config["file_key"]

    def apply(self, row: Mapping[str, Any]) -> dict[str, Any]:
        key = _match_key(row.get(self.key_column), self.loose)
        found = self.table.get(key) if key is not None else None
        if found is None:
            if key is not None and self.fail_when_missing:
                raise StepError(f'{shown(row.get(self.key_column))} is not in the "{self.file_key}" '
                                f"column of {self.file_name}")
            return dict.fromkeys(self.names)
        return dict(zip(self.names, found, strict=True))
