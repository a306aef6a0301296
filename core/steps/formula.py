"""The Formula step: a value computed from the row with an Excel-style formula, no code, no trust.

    IF([rating] < 3, "escalate", "ok")      [price] * [qty]      LEFT(TRIM([Customer name]), 20)

The language is read by our own parser (formula_parse.py says why no library was taken), into a
tree that `evaluate` walks: the only names are the row's columns and the function table in
formula_functions.py, so a formula cannot reach attributes, imports, builtins or the environment,
has no loops, and its text, nesting and every value it makes are bounded. Values behave as in
Excel (formula_values.py). A formula that cannot be read is a problem of the pipeline before any
row runs, saying where ("position 14: unknown column [reveiw]; did you mean [review]?"); an Excel
error on a row (#DIV/0!, #VALUE!, #NUM!) fails that row in one line, unless IFERROR catches it.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

from batchgrid.core.util.errors import StepError

from .base import FORMULA, OUTPUT, Param, Step, register
from .formula_functions import FUNCTIONS, NAMES
from .formula_parse import Call, Chain, Column, FormulaSyntaxError, Literal, Node, Percent, Prefix, parse, walk
from .formula_values import (
    FormulaError,
    add,
    check_length,
    compare,
    finite,
    result,
    to_number,
    to_text,
)

__all__ = ["Formula", "FormulaError", "FormulaSyntaxError", "check_formula", "columns_read", "evaluate"]

_CELL = re.compile(r"[A-Za-z]{1,3}\d+")  # A1, AB12: a cell address, which formulas here do not read
_LOOKUPS = {"VLOOKUP", "HLOOKUP", "XLOOKUP", "INDEX", "MATCH"}


# ---- checking --------------------------------------------------------------------------
def check_formula(text: str, columns: Sequence[str] | None = None) -> Node:
    """The formula's tree, its functions and their argument counts checked, and its columns too
    when `columns` is given. Raises FormulaSyntaxError saying where."""
    tree = parse(text)
    for node in walk(tree):
        if isinstance(node, Call):
            function = FUNCTIONS.get(node.name.upper())
            if function is None:
                raise FormulaSyntaxError(_unknown_function(node.name), node.start, node.start + len(node.name))
            problem = function.arity_problem(len(node.args))
            if problem:
                raise FormulaSyntaxError(problem, node.start, node.end)
        elif isinstance(node, Column) and columns is not None and node.name not in columns:
            raise FormulaSyntaxError(unknown_column(node.name, columns), node.start, node.end)
    return tree


def _unknown_function(name: str) -> str:
    upper = name.upper()
    if upper in _LOOKUPS:
        return f"{upper} is not a formula function here; a Lookup step looks values up in another sheet"
    match = difflib.get_close_matches(upper, NAMES, n=1, cutoff=0.6)
    return f"unknown function {name}" + (f"; did you mean {match[0]}?" if match else
                                          "; functions are: " + ", ".join(NAMES))


def unknown_column(name: str, columns: Sequence[str]) -> str:
    """"unknown column [reveiw]; did you mean [review]?" (or the columns there are)."""
    same_case = [c for c in columns if c.casefold() == name.casefold()]
    match = same_case or difflib.get_close_matches(name, list(columns), n=1, cutoff=0.6)
    if match:
        return f"unknown column [{name}]; did you mean [{match[0]}]?"
    hint = "; formulas read the row's columns by name, not cells" if _CELL.fullmatch(name) else ""
    shown = ", ".join(f"[{c}]" for c in columns[:20]) + (", …" if len(columns) > 20 else "")
    return f"unknown column [{name}]{hint}; columns are: {shown or '(none)'}"


def columns_read(tree: Node) -> list[str]:
    """The columns a formula reads, in order, once each."""
    return list(dict.fromkeys(node.name for node in walk(tree) if isinstance(node, Column)))


# ---- evaluating ------------------------------------------------------------------------
@lru_cache(maxsize=256)
def _checked(text: str) -> Node:
    return check_formula(text)  # once per formula, not once per row


def evaluate(text: str, row: Mapping[str, Any]) -> Any:
    """The formula's value on `row`, as the step writes it. Raises FormulaSyntaxError for a formula
    that cannot be read and FormulaError for an Excel error on this row."""
    tree = _checked(text)
    try:
        return result(_Evaluation(text, row).value(tree))
    except RecursionError:  # not expected within MAX_DEPTH; said in words all the same
        raise FormulaError("#VALUE!", "the formula nests too deeply for this row") from None


class _Evaluation:
    """One formula on one row: a walk of its tree."""

    def __init__(self, text: str, row: Mapping[str, Any]):
        self.text, self.row = text, row

    def snippet(self, start: int, end: int) -> str:
        part = " ".join(self.text[start:end].split())
        return part if len(part) <= 60 else part[:59] + "…"

    def value(self, node: Node) -> Any:
        if isinstance(node, Literal):
            return node.value
        if isinstance(node, Column):
            if node.name not in self.row:
                raise FormulaError("#REF!", f"there is no column [{node.name}] on this row")
            return self.row[node.name]
        try:
            return self._compound(node)
        except FormulaError as exc:
            if not exc.where:
                exc.where = self.snippet(node.start, node.end)
            raise

    def _compound(self, node: Node) -> Any:
        if isinstance(node, Chain):
            return self._chain(node)
        if isinstance(node, Prefix):
            value = self.value(node.operand)
            if "-" not in node.signs:
                return value  # +x leaves x as it is, as in Excel
            number = to_number(value)
            return -number if node.signs.count("-") % 2 else number
        if isinstance(node, Percent):
            return to_number(self.value(node.operand)) / 100 ** node.count
        if isinstance(node, Call):
            return self._call(node)
        raise TypeError(f"not a formula node: {type(node).__name__}")  # pragma: no cover

    def _call(self, node: Call) -> Any:
        function = FUNCTIONS[node.name.upper()]
        if function.lazy:
            args: list[Any] = [lambda arg=arg: self.value(arg) for arg in node.args]
        else:
            args = [self.value(arg) for arg in node.args]
        try:
            return function.impl(*args)
        except (OverflowError, ArithmeticError) as exc:
            raise FormulaError("#NUM!", f"{function.name} cannot work this out ({exc})") from None
        except (ValueError, TypeError) as exc:
            raise FormulaError("#VALUE!", f"{function.name} cannot work this out ({exc})") from None

    def _chain(self, node: Chain) -> Any:
        value = self.value(node.first)
        for op, _, right in node.rest:
            other = self.value(right)
            if node.level == 0:
                value = compare(value, other, op)
            elif op == "&":
                a, b = to_text(value), to_text(other)
                check_length(len(a) + len(b))
                value = a + b
            elif op in "+-":
                value = add(value, other, op)
            elif op == "*":
                value = finite(to_number(value) * to_number(other))
            elif op == "/":
                divisor = to_number(other)
                if divisor == 0:
                    raise FormulaError("#DIV/0!", "division by zero", self.snippet(node.start, right.end))
                value = finite(to_number(value) / divisor)
            else:
                value = _power(to_number(value), to_number(other))
        return value


def _power(base: float, exponent: float) -> float:
    if base == 0 and exponent <= 0:
        if exponent == 0:
            raise FormulaError("#NUM!", "0^0 has no value")
        raise FormulaError("#DIV/0!", "0 to a negative power divides by zero")
    if base < 0 and not exponent.is_integer():
        raise FormulaError("#NUM!", "a negative number to a fractional power has no value")
    try:
        return finite(base ** exponent)
    except OverflowError:
        raise FormulaError("#NUM!", "the result is too large to be a number") from None


# ---- the step --------------------------------------------------------------------------
FORMULA_HELP = (
    'An Excel-style formula over the row, e.g. IF([rating] < 3, "escalate", "ok") or [price] * [qty]. '
    "Columns: [Customer name] (plain review for simple names); text in double quotes (\"\" for a quote); "
    "operators + - * / ^ % & = <> < > <= >=. Functions: " + ", ".join(NAMES) + ". "
    "Blank cells are 0 in arithmetic and \"\" in text; an error such as #DIV/0! fails the row unless IFERROR "
    "catches it.")


@register
class Formula(Step):
    type = "formula"
    title = "Formula"
    group = "Data"
    description = 'Compute a value as in Excel: IF([rating] < 3, "escalate", "ok"). No code: safe in any pipeline.'
    params = (
        Param("formula", FORMULA, "", FORMULA_HELP, required=True),
        Param("output", OUTPUT, "", "Name of the new column.", label="Write to"),
    )

    def default_output(self, param_name: str) -> str:
        return "result"

    def tree(self) -> Node | None:
        text = self.config.get("formula")
        if not isinstance(text, str):
            return None
        try:
            return _checked(text)
        except FormulaSyntaxError:
            return None

    def column_refs(self) -> list[tuple[str, str]]:
        tree = self.tree()
        return [("formula", name) for name in columns_read(tree)] if tree is not None else []

    def unknown_column_message(self, param: str, name: str, available: Iterable[str]) -> str | None:
        tree = self.tree()
        node = next((n for n in walk(tree) if isinstance(n, Column) and n.name == name), None) if tree else None
        return None if node is None else f"position {node.start + 1}: {unknown_column(name, list(available))}"

    def check(self) -> list[tuple[str, str]]:
        text = self.config.get("formula") or ""
        if not isinstance(text, str):
            return [("formula", f"must be text, not {json.dumps(text)[:60]}")]
        if not text.strip():
            return []  # reported as "must not be empty"
        try:
            check_formula(text)
        except FormulaSyntaxError as exc:
            return [("formula", str(exc))]
        return []

    def apply(self, row: Mapping[str, Any]) -> dict[str, Any]:
        try:
            return {self.output_name(): evaluate(self.config["formula"], row)}
        except (FormulaError, FormulaSyntaxError) as exc:
            raise StepError(str(exc)) from None
