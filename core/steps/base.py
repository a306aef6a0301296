"""What a step is: a small class that declares its parameters and turns a row into outputs.

The declarations are the single source of truth: the pipeline file is validated from
them, the GUI builds each step's form from them, and the README's step reference is
generated from them. A new step is one class with `@register`; nothing else changes.

A `Step` is a declaration only: what the pipeline file says. A run binds each step
(`await step.bind(resources)`) to a `BoundStep`, which holds whatever that run needs
(a loaded lookup table, compiled code, knowledge vectors) and is what the engine calls
for every row. Nothing of a run is ever stored on the declaration, so the user can edit
the pipeline while it runs and an estimate never sees a finished run's state.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from batchgrid.core.util import template as tpl

from . import conditions

if TYPE_CHECKING:  # pragma: no cover
    from .context import RunResources, StepContext


# Parameter kinds. The GUI maps each to a widget; validation knows how to check each.
TEXT = "text"            # one line of text
MULTILINE = "multiline"  # several lines of text (a prompt, say)
TEMPLATE = "template"    # text with {column} placeholders
SOURCE = "source"        # a column name, or a template if it contains {...}
COLUMN = "column"        # one existing column
COLUMNS = "columns"      # several existing columns
OUTPUT = "output"        # the name of a new column this step writes
INT = "int"
FLOAT = "float"
BOOL = "bool"
CHOICE = "choice"        # one of `choices`
STRINGS = "strings"      # a list of strings
MAPPING = "mapping"      # str -> str (headers, output column -> JSON path...)
FILE = "file"            # a path, relative to the pipeline file
CODE = "code"            # Python source
BRANCHES = "branches"    # name -> list of steps (the parallel step)
JSON = "json"            # any JSON value (field lists, label lists...)
PROVIDER = "provider"    # the name of a provider profile
FORMULA = "formula"      # an Excel-style formula over the row's columns (the Formula step)

PARAM_KINDS = (TEXT, MULTILINE, TEMPLATE, SOURCE, COLUMN, COLUMNS, OUTPUT, INT, FLOAT, BOOL,
               CHOICE, STRINGS, MAPPING, FILE, CODE, BRANCHES, JSON, PROVIDER, FORMULA)


@dataclass(frozen=True)
class Param:
    name: str
    kind: str
    default: Any = None
    help: str = ""
    required: bool = False
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    label: str = ""
    # Its values may read `${NAME}` without the user's trust: a place where secrets belong (HTTP
    # header values). Anywhere else `${NAME}` needs trust (core/pipeline/trust.py).
    allow_env: bool = False

    def __post_init__(self):
        if self.kind not in PARAM_KINDS:
            raise ValueError(f"unknown parameter kind {self.kind!r}")

    @property
    def title(self) -> str:
        return self.label or self.name.replace("_", " ").capitalize()

    def default_value(self) -> Any:
        # Fresh copies, so two steps never share one default list or dict.
        if isinstance(self.default, (list, dict)):
            import copy

            return copy.deepcopy(self.default)
        return self.default


class Step:
    """One step of a pipeline. Subclasses declare the class attributes and `apply` or `run`."""

    type: ClassVar[str] = ""
    title: ClassVar[str] = ""
    group: ClassVar[str] = "Text"        # palette group: Text, Data, Models, Web, Control, Code
    description: ClassVar[str] = ""      # one line, shown in the palette
    icon: ClassVar[str] = ""             # a resource name; the GUI falls back to a group icon
    params: ClassVar[tuple[Param, ...]] = ()
    # Each call this step makes goes outside the process (HTTP, a model): it takes one of
    # the run's concurrency slots per call. Cheap in-process steps take none.
    external: ClassVar[bool] = False
    # `apply` may block or burn CPU: the engine runs it in a worker thread.
    blocking: ClassVar[bool] = False
    # The step runs code from the pipeline file: it needs the user's trust.
    runs_code: ClassVar[bool] = False

    def __init__(self, config: Mapping[str, Any] | None = None, *, name: str = "", enabled: bool = True,
                 when: dict[str, Any] | None = None):
        self.config: dict[str, Any] = {p.name: p.default_value() for p in self.params}
        if config:
            self.config.update(config)
        self.name = name
        self.enabled = enabled
        # Run only on rows that meet this condition (core/steps/conditions.py); None: every row.
        self.when = when

    # ---- description -------------------------------------------------------------
    @property
    def label(self) -> str:
        return self.name or self.title

    @classmethod
    def param(cls, name: str) -> Param:
        for p in cls.params:
            if p.name == name:
                return p
        raise KeyError(name)

    def column_refs(self) -> list[tuple[str, str]]:
        """(parameter, column) for every column this step reads, from its column, columns,
        template and source parameters. Steps that read columns elsewhere extend it."""
        refs: list[tuple[str, str]] = []
        for p in self.params:
            value = self.config.get(p.name)
            if value in (None, "", []):
                continue
            if p.kind == COLUMN or (p.kind == SOURCE and not is_template(value)):
                refs.append((p.name, value))
            elif p.kind == COLUMNS:
                refs.extend((p.name, v) for v in value)
            elif p.kind in (TEMPLATE, SOURCE):
                refs.extend((p.name, v) for v in safe_placeholders(value))
        return refs

    def unknown_column_message(self, param: str, name: str, available: Iterable[str]) -> str | None:
        """This step's own words for a column it reads that is not there (a formula says where in
        the formula); None: the pipeline check's usual message."""
        return None

    def reads(self) -> list[str]:
        """Columns this step reads, in order, without repeats (its condition's columns last)."""
        return list(dict.fromkeys([*(name for _, name in self.column_refs()), *conditions.columns(self.when)]))

    def writes(self) -> list[str]:
        """Output columns, in order. Steps whose outputs depend on their settings override it."""
        names = []
        for p in self.params:
            if p.kind == OUTPUT:
                value = self.config.get(p.name) or self.default_output(p.name)
                if value:
                    names.append(value)
        return names

    def default_output(self, param_name: str) -> str:
        """The output name used when the user leaves it blank."""
        return ""

    def check(self) -> list[tuple[str, str]]:
        """Step-specific problems as (parameter name, message), beyond the generic checks."""
        return []

    def children(self) -> dict[str, list[Step]]:
        """Nested steps by branch name (only the parallel step has any)."""
        return {}

    # ---- running -----------------------------------------------------------------
    async def bind(self, resources: RunResources) -> BoundStep:
        """Once per run, before any row: this step made ready for the run. Steps with per-run
        state (files to load, code to compile, vectors to embed) return their own BoundStep;
        the others are bound as they are and the engine calls their `apply` or `run`."""
        return BoundStep(self)

    def apply(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """Turn a row into this step's outputs. Cheap steps implement only this."""
        raise NotImplementedError

    async def run(self, row: Mapping[str, Any], ctx: StepContext) -> dict[str, Any]:
        """Async steps (HTTP, models) override this; it gets the row's context."""
        if self.blocking:
            return await asyncio.to_thread(self.apply, row)
        return self.apply(row)

    @classmethod
    def is_async(cls) -> bool:
        return cls.run is not Step.run or cls.blocking

    # ---- helpers for subclasses --------------------------------------------------
    def source_text(self, row: Mapping[str, Any], param_name: str = "source") -> str:
        return tpl.as_text(self.source_value(row, param_name))

    def source_value(self, row: Mapping[str, Any], param_name: str = "source") -> Any:
        value = self.config[param_name]
        if is_template(value):
            return tpl.render(value, row)
        return row.get(value)

    def output_name(self, param_name: str = "output") -> str:
        return self.config.get(param_name) or self.default_output(param_name)

    def to_dict(self) -> dict[str, Any]:
        """The step as it is saved in a pipeline file: type, name, enabled, non-default params."""
        out: dict[str, Any] = {"type": self.type}
        if self.name:
            out["name"] = self.name
        if not self.enabled:
            out["enabled"] = False
        for p in self.params:
            value = self.config.get(p.name)
            if p.kind == BRANCHES:
                value = {b: [s.to_dict() for s in steps] for b, steps in self.children().items()}
                out[p.name] = value
            elif value != p.default or p.required:  # a required value is always written, default or not
                out[p.name] = value
        if self.when is not None:
            out["when"] = self.when
        return out


class BoundStep:
    """One step made ready for one run: what the engine calls for every row.

    The engine awaits `run(row, ctx)` when `is_async`, else calls `apply(row)` in the loop.
    This base class binds a step that needs nothing per run: it calls the declaration's own
    `apply` / `run`. Steps with per-run state subclass it and keep that state here.
    """

    def __init__(self, step: Step, *, is_async: bool | None = None):
        self.step = step
        self.is_async = type(step).is_async() if is_async is None else is_async

    def apply(self, row: Mapping[str, Any]) -> dict[str, Any]:
        return self.step.apply(row)

    async def run(self, row: Mapping[str, Any], ctx: StepContext) -> dict[str, Any]:
        return await self.step.run(row, ctx)


def is_template(value: Any) -> bool:
    return isinstance(value, str) and "{" in value


def safe_placeholders(text: str, lenient: bool = False) -> list[str]:
    """Placeholders of a template, or none if it is broken (that is reported when loading)."""
    try:
        return tpl.placeholders(text, lenient)
    except tpl.TemplateSyntaxError:
        return []


def walk(steps: Iterable[Step]) -> Iterable[Step]:
    for s in steps:
        yield s
        for branch in s.children().values():
            yield from walk(branch)


def all_writes(step: Step) -> list[str]:
    """Every column a step writes, its branches' included."""
    names = list(step.writes())
    for branch in step.children().values():
        for child in branch:
            if child.enabled:
                names.extend(all_writes(child))
    return list(dict.fromkeys(names))


REGISTRY: dict[str, type[Step]] = {}
GROUPS = ("Text", "Data", "Models", "Web", "Control", "Code")


def register(cls: type[Step]) -> type[Step]:
    if not cls.type or cls.type in REGISTRY:
        raise ValueError(f"step type {cls.type!r} is empty or registered twice")
    if cls.group not in GROUPS:
        raise ValueError(f"step {cls.type!r}: unknown group {cls.group!r}")
    REGISTRY[cls.type] = cls
    return cls
