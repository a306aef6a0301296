"""Code steps: Python from the pipeline file, run only when the user trusts the pipeline.

This is not a sandbox. The code gets a short list of builtins and the math, re, json and
datetime modules, which keeps everyday expressions tidy, but Python cannot be confined
that way: code from a pipeline file can do anything the user can (`import` works, since
the standard library itself imports lazily, e.g. `date.strftime`). The protection is
trust: a pipeline with a code step runs only when the user says they trust it
(`--trust` on the command line, a confirmation in the window), and `bind` refuses
otherwise, whoever runs the engine.
"""

from __future__ import annotations

import ast
import asyncio
import builtins
import datetime
import json
import keyword
import math
import re
import traceback
from collections.abc import Mapping
from types import CodeType
from typing import TYPE_CHECKING, Any

from batchgrid.core.util.errors import StepError, UntrustedCodeError

from .base import BOOL, CODE, OUTPUT, STRINGS, BoundStep, Param, Step, register
from .text import shown

if TYPE_CHECKING:  # pragma: no cover
    from .context import RunResources, StepContext

FILENAME = "<python step>"


def _import(name, globals=None, locals=None, fromlist=(), level=0):
    # The standard library imports lazily (datetime's strftime imports time), so the code
    # needs __import__. It must be this function, not builtins.__import__ itself: once
    # PySide6 is loaded, that is shiboken's hook, which looks up "__orig_import__" in the
    # caller's builtins and aborts the whole process when it finds our short list there.
    return builtins.__import__(name, globals, locals, fromlist, level)


SAFE_BUILTINS = {"__import__": _import, **{name: getattr(builtins, name) for name in (
    "abs", "all", "any", "bool", "chr", "dict", "divmod", "enumerate", "filter", "float", "format",
    "frozenset", "hex", "int", "isinstance", "len", "list", "map", "max", "min", "next", "ord", "pow",
    "range", "repr", "reversed", "round", "set", "slice", "sorted", "str", "sum", "tuple", "zip",
    "ArithmeticError", "Exception", "IndexError", "KeyError", "TypeError", "ValueError", "ZeroDivisionError",
)}}
MODULES = {"math": math, "re": re, "json": json, "datetime": datetime}
# Names the code always sees as documented; a column with one of these names is reached through row[...].
RESERVED = {"row", "result", *MODULES}


class RowView(dict):
    """The row as the code sees it: a copy (changes stay in the code); a missing column is named."""

    def __missing__(self, key: Any):
        columns = ", ".join(str(k) for k in self)
        raise StepError(f"the code reads row[{key!r}], but there is no such column; columns are: {columns}")


def compile_code(code: str) -> tuple[CodeType, bool]:
    """(compiled code, is an expression). A syntax error becomes a ValueError with its line."""
    try:
        return compile(code, FILENAME, "eval"), True
    except SyntaxError:
        pass  # not an expression: try it as a block of statements
    try:
        return compile(code, FILENAME, "exec"), False
    except SyntaxError as exc:
        lines = code.splitlines()
        where = f"line {exc.lineno}" if exc.lineno else "the code"
        text = lines[exc.lineno - 1].strip() if exc.lineno and 0 < exc.lineno <= len(lines) else ""
        raise ValueError(f"{where}: {exc.msg}" + (f": {text}" if text else "")) from None


def sets_result(code: str) -> bool:
    """Whether a block of statements assigns `result` somewhere."""
    return any(isinstance(node, ast.Name) and node.id == "result" and isinstance(node.ctx, ast.Store)
               for node in ast.walk(ast.parse(code)))


@register
class PythonCode(Step):
    type = "python"
    title = "Python expression"
    group = "Code"
    description = "Compute a value with Python, e.g. len(review) > 100. Runs only in pipelines you trust."
    runs_code = True
    params = (
        Param("code", CODE, "", "An expression over the row, e.g. len(review) > 100, or several lines that set "
              "result. Columns whose names are valid Python names are variables; every column is also "
              "row[\"Customer name\"]. Blank cells are None. math, re, json and datetime are ready to use.",
              required=True),
        Param("output", OUTPUT, "", "Name of the new column for the result.", label="Write to"),
        Param("outputs", STRINGS, [], "Several columns instead: the result must be a dict, and each of these "
              "keys goes to its own column.", label="Write a dict's keys to"),
        Param("run_in_thread", BOOL, False, "Tick for slow code, so that it runs in a worker thread and the "
              "window stays responsive.", label="Slow code (run in a thread)"),
    )

    def default_output(self, param_name: str) -> str:
        return "result"

    def writes(self) -> list[str]:
        return list(self.config["outputs"]) or [self.output_name()]

    def check(self) -> list[tuple[str, str]]:
        code = self.config["code"]
        if not code.strip():
            return []  # reported as "must not be empty"
        try:
            _, is_expression = compile_code(code)
        except ValueError as exc:
            return [("code", str(exc))]
        if not is_expression and not sets_result(code):
            return [("code", "these lines never set result; write result = ... (or give a single expression)")]
        return []

    async def bind(self, resources: RunResources) -> CompiledCode:
        if not resources.trusted:
            raise UntrustedCodeError(
                f'the step "{self.label}" runs Python code from the pipeline file, which can do anything you can; '
                "run it only if you trust where the file came from: add --trust on the command line, "
                "or confirm the trust question in the window")
        try:
            code, is_expression = compile_code(self.config["code"])
        except ValueError as exc:
            raise StepError(f'the step "{self.label}" has a syntax error at {exc}') from None
        return CompiledCode(self, code, is_expression)

    def apply(self, row: Mapping[str, Any]) -> dict[str, Any]:
        raise UntrustedCodeError("a Python step runs only once bound for a run the user trusts")


class CompiledCode(BoundStep):
    """A Python step bound to one run: its code compiled once, for a pipeline the user trusts."""

    def __init__(self, step: PythonCode, code: CodeType, is_expression: bool):
        # Chosen per step by the user, not per class: in-process is faster for quick expressions.
        super().__init__(step, is_async=bool(step.config["run_in_thread"]))
        self.code = code
        self.is_expression = is_expression
        self.names: list[str] = list(step.config["outputs"])
        self.output = step.output_name()

    async def run(self, row: Mapping[str, Any], ctx: StepContext) -> dict[str, Any]:
        if self.is_async:  # slow code, by the user's choice: in a worker thread
            return await asyncio.to_thread(self.apply, row)
        return self.apply(row)

    def apply(self, row: Mapping[str, Any]) -> dict[str, Any]:
        view = RowView(row)
        namespace: dict[str, Any] = {"__builtins__": SAFE_BUILTINS}
        namespace.update((k, v) for k, v in view.items()
                         if isinstance(k, str) and k.isidentifier() and not keyword.iskeyword(k) and k not in RESERVED)
        namespace.update(MODULES)
        namespace["row"] = view
        try:
            if self.is_expression:
                result = eval(self.code, namespace)
            else:
                exec(self.code, namespace)
                result = namespace.get("result")
        except StepError:
            raise
        except (Exception, SystemExit) as exc:  # sys.exit() in the code must not end the run
            what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise StepError(f"the code failed{_code_line(exc)}: {what}") from None
        return self._outputs(result)

    def _outputs(self, result: Any) -> dict[str, Any]:
        names = self.names
        if not names:
            return {self.output: result}
        if result is None:
            return dict.fromkeys(names)
        if not isinstance(result, Mapping):
            raise StepError(f"the code must give a dict with the keys {', '.join(names)}; "
                            f"it gave {shown(result)} ({type(result).__name__})")
        missing = [n for n in names if n not in result]
        if missing:
            raise StepError(f"the code's result has no key {', '.join(missing)}; "
                            f"its keys are: {', '.join(map(str, result)) or '(none)'}")
        return {n: result[n] for n in names}


def _code_line(exc: BaseException) -> str:
    """ " at line N" for the innermost line of the user's code in the traceback."""
    lines = [f.lineno for f in traceback.extract_tb(exc.__traceback__) if f.filename == FILENAME]
    return f" at line {lines[-1]}" if lines else ""
