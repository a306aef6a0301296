"""Run conditions: a step runs on a row only when the row meets its `when` ("only if").

A condition is data in the pipeline file, on the step beside `name` and `enabled`:

    "when": {"all": [{"column": "rating", "op": "<", "value": 3},
                     {"column": "summary", "op": "is empty"}]}

`all` (every rule holds) or `any` (at least one holds), each a list of rules. Rows that do not
meet it skip the step (core/steps/plan.py): its outputs stay blank (or keep a value the row
already has), and the row's trace says why ("skipped: rating is not < 3").

How values compare, the way an analyst reads the sheet:
- numbers as numbers when both sides read as numbers (the Parse number step's reading:
  "1,234.50", "$12", "12%"); dates as dates when both read as dates (2024-01-31);
- otherwise as text, case-insensitively and ignoring surrounding spaces (equals, contains,
  is one of); `matches` is a regular expression, as written (add (?i) to ignore case), run
  with the time limit of every user pattern (core/util/patterns.py);
- `>`, `<`, `>=`, `<=` need numbers or dates: a cell that is neither (blank, "n/a") does not
  meet them; "is empty" is blank or only spaces.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from batchgrid.core.util.display import display_text
from batchgrid.core.util.errors import StepError
from batchgrid.core.util.patterns import Pattern, compile_pattern

from .formula_values import FormulaError, is_blank, serial, to_date

IS_EMPTY, NOT_EMPTY = "is empty", "is not empty"
EQUALS, NOT_EQUALS = "equals", "does not equal"
CONTAINS, MATCHES, ONE_OF = "contains", "matches", "is one of"
ORDER = (">", "<", ">=", "<=")
OPS = (IS_EMPTY, NOT_EMPTY, EQUALS, NOT_EQUALS, CONTAINS, MATCHES, *ORDER, ONE_OF)
NO_VALUE = (IS_EMPTY, NOT_EMPTY)
MODES = ("all", "any")  # every rule holds / at least one holds

# What each op means, for the step reference (README) and the form's tooltips.
OP_HELP = {
    IS_EMPTY: "the cell is blank or only spaces (no value needed)",
    NOT_EMPTY: "the cell holds something (no value needed)",
    EQUALS: "the same number or date, else the same text ignoring case and surrounding spaces",
    NOT_EQUALS: "not what `equals` means",
    CONTAINS: "the text holds the value, ignoring case",
    MATCHES: "the regular expression finds a match, as written (`(?i)` to ignore case; time-limited)",
    ">": "a greater number or a later date; a cell that is neither does not meet it",
    "<": "a smaller number or an earlier date; a cell that is neither does not meet it",
    ">=": "greater or equal (numbers, dates)",
    "<=": "smaller or equal (numbers, dates)",
    ONE_OF: 'equals one of a list of values: `"value": ["en", "de"]`',
}

# How a rule reads when it holds, and when it does not ("rating is not < 3").
_NOT = {IS_EMPTY: NOT_EMPTY, NOT_EMPTY: IS_EMPTY, EQUALS: NOT_EQUALS, NOT_EQUALS: EQUALS,
        CONTAINS: "does not contain", MATCHES: "does not match", ONE_OF: "is not one of",
        **{op: f"is not {op}" for op in ORDER}}
_ALIASES = {"lt": "<", "gt": ">", "le": "<=", "ge": ">=", "lte": "<=", "gte": ">=", "=": "equals", "==": "equals",
            "eq": "equals", "!=": "does not equal", "<>": "does not equal", "ne": "does not equal", "in": "is one of",
            "empty": "is empty", "not empty": "is not empty", "regex": "matches"}
SHAPE = ('a condition is {"all": [rules]} or {"any": [rules]}, each rule like '
         '{"column": "rating", "op": "<", "value": 3}')


@dataclass(frozen=True)
class Rule:
    column: str
    op: str
    value: Any = None

    def words(self, holds: bool = True) -> str:
        op = self.op if holds else _NOT[self.op]
        if self.op in NO_VALUE:
            return f"{self.column} {op}"
        if self.op == ONE_OF:
            shown = ", ".join(_shown(v) for v in self.value)
        else:
            shown = _shown(self.value)
        return f"{self.column} {op} {shown}"


def _shown(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return display_text(value)
    text = display_text(value)
    return f'"{text if len(text) <= 40 else text[:39] + "…"}"'


# ---- reading and checking the file's value ----------------------------------------------------
def problems(when: Any) -> list[str]:
    """What is wrong with a step's `when`, one line each (the file's columns are checked elsewhere:
    `columns`)."""
    if when is None:
        return []
    if not isinstance(when, dict) or len(when) != 1 or next(iter(when)) not in MODES:
        return [SHAPE]
    mode, rules = next(iter(when.items()))
    if not isinstance(rules, list) or not rules:
        return [f'"{mode}" must be a list of at least one rule; {SHAPE}']
    found: list[str] = []
    for i, rule in enumerate(rules, 1):
        found += [f"rule {i}: {line}" for line in _rule_problems(rule)]
    return found


def _rule_problems(rule: Any) -> list[str]:
    if not isinstance(rule, dict):
        return ['must be an object like {"column": "rating", "op": "<", "value": 3}']
    unknown = [k for k in rule if k not in ("column", "op", "value")]
    if unknown:
        return [f'unknown field "{unknown[0]}"; a rule has "column", "op" and "value"']
    column, op = rule.get("column"), rule.get("op")
    if not isinstance(column, str) or not column.strip():
        return ['"column" is missing: name the column to test']
    if op not in OPS:
        if not isinstance(op, str):
            return [f'"op" is missing; ops are: {", ".join(OPS)}']
        match = [_ALIASES[op.lower()]] if op.lower() in _ALIASES else difflib.get_close_matches(op, OPS, n=1, cutoff=0.5)
        hint = f' (did you mean "{match[0]}"?)' if match else ""
        return [f'unknown op "{op}"{hint}; ops are: {", ".join(OPS)}']
    if op in NO_VALUE:
        return []
    if "value" not in rule or rule["value"] is None or rule["value"] == "":
        return [f'"{column} {op}" needs a value']
    value = rule["value"]
    if op == ONE_OF:
        if not isinstance(value, list) or not value or not all(_scalar(v) for v in value):
            return [f'"{column} is one of" needs a list of values, like ["en", "de"]']
        return []
    if not _scalar(value):
        return [f"the value must be text or a number, not {json.dumps(value)[:60]}"]
    if op in ORDER and _number(value) is None and _date(value) is None:
        return [f'"{op}" compares numbers or dates; {_shown(value)} is neither']
    if op == MATCHES:
        try:
            compile_pattern(str(value))
        except StepError as exc:
            return [str(exc)]
    return []


def _scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float)) and not isinstance(value, bool)


def parse(when: Any) -> Condition | None:
    """The condition of a step's `when` (None: no condition). Raises StepError when it is not
    valid (the pipeline check says so first)."""
    if when is None:
        return None
    found = problems(when)
    if found:
        raise StepError(f"the step's condition: {found[0]}")
    mode, rules = next(iter(when.items()))
    return Condition(mode, tuple(Rule(r["column"], r["op"], r.get("value")) for r in rules))


def columns(when: Any) -> list[str]:
    """The columns a `when` tests, as far as it can be read (for the column check and the inspector)."""
    if not isinstance(when, dict) or len(when) != 1:
        return []
    rules = next(iter(when.values()))
    if not isinstance(rules, list):
        return []
    names = [r.get("column") for r in rules if isinstance(r, dict)]
    return list(dict.fromkeys(n for n in names if isinstance(n, str) and n))


def describe(when: Any) -> str:
    """'rating < 3 and language does not equal "en"', for the step's card; '' when none or broken."""
    try:
        condition = parse(when)
    except StepError:
        return ""
    return condition.words() if condition is not None else ""


# ---- testing a row ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Condition:
    mode: str  # "all" or "any"
    rules: tuple[Rule, ...]

    def words(self) -> str:
        return f" {'and' if self.mode == 'all' else 'or'} ".join(r.words() for r in self.rules)

    def unmet(self, row: Mapping[str, Any]) -> str | None:
        """None when the row meets the condition, else why not: "rating is not < 3". A pattern
        past its slice of the event loop raises NeedsWorkerThread (run it again in a thread)."""
        if self.mode == "all":
            for rule in self.rules:
                if not holds(rule, row.get(rule.column)):
                    return rule.words(holds=False)
            return None
        if any(holds(rule, row.get(rule.column)) for rule in self.rules):
            return None
        return " and ".join(rule.words(holds=False) for rule in self.rules)


def holds(rule: Rule, cell: Any) -> bool:
    op = rule.op
    if op in NO_VALUE:
        empty = _empty(cell)
        return empty if op == IS_EMPTY else not empty
    if op == EQUALS:
        return _equal(cell, rule.value)
    if op == NOT_EQUALS:
        return not _equal(cell, rule.value)
    if op == ONE_OF:
        return any(_equal(cell, v) for v in rule.value)
    if op == CONTAINS:
        return _text(rule.value) in _text(cell)
    if op == MATCHES:
        pattern: Pattern = compile_pattern(str(rule.value))
        return pattern.search(display_text(cell) if not is_blank(cell) else "") is not None
    pair = _ordered(cell, rule.value)
    if pair is None:
        return False  # neither a number nor a date: it does not meet an order
    a, b = pair
    return {">": a > b, "<": a < b, ">=": a >= b, "<=": a <= b}[op]


def _empty(cell: Any) -> bool:
    return is_blank(cell) or (isinstance(cell, str) and not cell.strip())


def _text(value: Any) -> str:
    return "" if is_blank(value) else display_text(value).strip().casefold()


def _number(value: Any) -> float | None:
    """The number a cell reads as (the Parse number step's reading), or None."""
    if isinstance(value, bool) or is_blank(value) or isinstance(value, dt.date):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    from .data import parse_number  # data imports the step base; this module must not be imported by it first

    try:
        number = parse_number(value)
    except StepError:
        return None
    return None if number is None else float(number)


def _date(value: Any) -> float | None:
    """The day (Excel's serial, so dates and datetimes compare) a cell reads as, or None."""
    if isinstance(value, dt.date):
        try:
            return serial(value)
        except (TypeError, ValueError, OverflowError):  # pandas' NaT, a date out of range
            return None
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return serial(to_date(value))
    except (FormulaError, ValueError, OverflowError):
        return None


def _ordered(a: Any, b: Any) -> tuple[float, float] | None:
    x, y = _number(a), _number(b)
    if x is not None and y is not None:
        return x, y
    x, y = _date(a), _date(b)
    if x is not None and y is not None:
        return x, y
    return None


def _equal(cell: Any, value: Any) -> bool:
    pair = _ordered(cell, value)
    if pair is not None:
        return pair[0] == pair[1]
    return _text(cell) == _text(value)
