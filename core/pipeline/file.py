"""Pipeline files: load, validate (every problem, with where it is), save. Never a secret.

A pipeline file is JSON:

    {"version": 1, "name": "...", "settings": {"max_concurrency": 8, "header_row": 3},
     "providers": {...}, "steps": [{"type": "trim", "source": "review"}, ...]}
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchgrid.core.providers.profiles import validate_providers
from batchgrid.core.steps import REGISTRY, Step, conditions
from batchgrid.core.steps import base as b
from batchgrid.core.steps.base import all_writes, walk  # noqa: F401  (walk: re-exported for gui/main_window)
from batchgrid.core.steps.tree import Problem, StepPath, format_path, iter_steps
from batchgrid.core.table.atomic import atomic_path
from batchgrid.core.util import secrets
from batchgrid.core.util import template as tpl
from batchgrid.core.util.errors import PipelineError

from . import trust
from .model_checks import provider_problems
from .trust import Permission

CURRENT_VERSION = 1
MAX_STEP_NESTING = 20    # parallel steps within parallel steps: deeper files are refused
MAX_JSON_NESTING = 100   # any value in a file: deeper ones are refused before anything walks them

# Run settings, declared like step parameters so that files and forms are checked alike.
SETTINGS: tuple[b.Param, ...] = (
    b.Param("max_concurrency", b.INT, 8, "Rows in flight, and external calls at once, across all rows and branches.",
            minimum=1, maximum=1000),
    b.Param("max_attempts", b.INT, 4, "Attempts per call when it fails for a transient reason (5xx, timeout); "
            "a rate limit (429) spends none.",
            minimum=1, maximum=20),
    b.Param("retry_base_delay", b.FLOAT, 1.0, "Seconds before the first retry; doubles each time, with jitter.",
            minimum=0.0, maximum=600.0),
    b.Param("retry_max_delay", b.FLOAT, 60.0, "The longest wait between two attempts, in seconds.",
            minimum=0.0, maximum=3600.0),
    b.Param("use_cache", b.BOOL, True, "Answer a model request made before from the response cache, at no cost "
            "(also for temperature > 0; turn off to ask again)."),
    b.Param("pause_after_failures", b.INT, 20, "Pause the run when this many rows in a row fail with the same "
            "error (0: never).", minimum=0, maximum=1_000_000),
    b.Param("server_patience", b.FLOAT, 300.0, "Seconds a run waits for a server that stopped answering (a "
            "restart) before it pauses.", minimum=1.0, maximum=86_400.0),
    b.Param("budget", b.FLOAT, None, "Pause the run when its projected cost would pass this many dollars.",
            minimum=0.0),
    # How the sheet is read: the window's right-click ▸ Use as header sets it; the CLI's --header-row wins over it.
    b.Param("header_row", b.INT, None, "The sheet's row (as Excel numbers it) that holds the column names; 0: no "
            "header row (columns column_1, column_2...); unset: the first row below any title.", minimum=0),
)

_SECRET_KEYS = re.compile(r"^(api[_-]?key|apikey|password|passwd|secret|client[_-]?secret|access[_-]?token|token)$", re.I)
# An Authorization value written out, whatever the key's format ("Token" with a digit: not a word).
_SCHEME_VALUES = re.compile(r"\b(?:[Bb]earer\s+(?!\$\{)[A-Za-z0-9._~+/\-]{16,}"
                            r"|[Tt]oken\s+(?=\S*\d)[A-Za-z0-9._~+/\-]{16,})")


@dataclass
class Pipeline:
    steps: list[Step] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    providers: dict[str, dict[str, Any]] = field(default_factory=dict)
    name: str = ""
    description: str = ""
    path: Path | None = None

    def __post_init__(self):
        for p in SETTINGS:
            self.settings.setdefault(p.name, p.default_value())

    # ---- reading -----------------------------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike) -> Pipeline:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8-sig")
        except FileNotFoundError:
            raise PipelineError([Problem(f"{path}: no such pipeline file")]) from None
        except IsADirectoryError:
            raise PipelineError([Problem(f"{path}: is a folder, not a pipeline file")]) from None
        except UnicodeDecodeError:
            raise PipelineError([Problem(f"{path}: not a text file (a pipeline file is JSON)")]) from None
        except OSError as exc:
            raise PipelineError([Problem(f"{path}: cannot be read ({exc.strerror or exc})")]) from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PipelineError([Problem(f"{path.name}: not valid JSON at line {exc.lineno}, column {exc.colno}: "
                                         f"{exc.msg}")]) from None
        except RecursionError:  # thousands of brackets deep: Python's parser gives up
            raise PipelineError([Problem(f"{path.name}: nested too deep to read; steps nested more than "
                                         f"{MAX_STEP_NESTING} deep are refused")]) from None
        pipeline = cls.from_dict(data)
        pipeline.path = path.resolve()
        return pipeline

    @classmethod
    def from_dict(cls, data: Any) -> Pipeline:
        """Build a pipeline from parsed JSON, or raise PipelineError listing every problem."""
        problems: list[Problem] = []
        if not isinstance(data, dict):
            raise PipelineError([Problem('the pipeline must be a JSON object with "version" and "steps"')])
        too_deep = nesting_problem(data)
        if too_deep is not None:  # refused before anything below walks it (recursively)
            raise PipelineError([too_deep])
        problems += find_secrets(data)
        version = data.get("version")
        if version is None:
            problems.append(Problem('missing; add "version": 1', None, "version"))
        elif version != CURRENT_VERSION:
            problems.append(Problem(f"{version!r} is not supported; this Batchgrid reads version {CURRENT_VERSION}",
                                    None, "version"))
        known = {"version", "name", "description", "settings", "providers", "steps"}
        for key in data:
            if key not in known:
                problems.append(Problem(f"unknown top-level field{_suggest(key, known)}", None, str(key)))
        settings = data.get("settings", {})
        if not isinstance(settings, dict):
            problems.append(Problem("must be an object", None, "settings"))
            settings = {}
        problems += check_values(SETTINGS, settings, None, "settings.")
        providers = data.get("providers", {})
        provider_errors = [_provider_problem(text) for text in validate_providers(providers)]
        problems += provider_errors
        if provider_errors:
            providers = {}
        raw_steps = data.get("steps")
        if raw_steps is None:
            problems.append(Problem("missing; a pipeline needs a list of steps", None, "steps"))
            raw_steps = []
        steps = build_steps(raw_steps, problems)
        if problems:
            raise PipelineError(problems)
        return cls(steps=steps, settings=dict(settings), providers=copy.deepcopy(providers),
                   name=str(data.get("name", "")), description=str(data.get("description", "")))

    # ---- checking ----------------------------------------------------------------
    def check(self) -> list[Problem]:
        """Problems of the pipeline on its own, as loading its file would find them: values of
        the wrong type or range, step-specific checks, secrets. (For a pipeline being edited.)"""
        problems = find_secrets(self.to_dict())
        problems += check_values(SETTINGS, self.settings, None, "settings.")
        problems += check_configs(self.steps)
        return problems

    def problems(self, columns: Iterable[str] | None = None) -> list[Problem]:
        """Every problem running this pipeline over a table with `columns` would hit
        (without columns: those of the pipeline on its own)."""
        problems = self.check()
        if columns is not None:
            problems += check_columns(self.steps, list(columns))
        problems += provider_problems(self.steps, self.providers)
        return list(dict.fromkeys(problems))

    def validate(self, columns: Iterable[str]) -> None:
        problems = self.problems(columns)
        if problems:
            raise PipelineError(problems)

    @property
    def runs_code(self) -> bool:
        return any(v.step.runs_code for v in iter_steps(self.steps, enabled_only=True))

    @property
    def folder(self) -> Path:
        """Where its relative paths start, and the files it may read untrusted: its file's folder
        (an unsaved pipeline: the working folder)."""
        return self.path.parent if self.path else Path.cwd()

    def permissions(self) -> list[Permission]:
        """What it wants that needs the user's trust (code, `${NAME}` outside header values, files
        outside its folder), each located by step and parameter (core/pipeline/trust.py)."""
        return trust.permissions(self.steps, self.folder)

    def output_columns(self) -> list[str]:
        return list(dict.fromkeys(c for s in self.steps if s.enabled for c in all_writes(s)))

    # ---- writing -----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"version": CURRENT_VERSION}
        if self.name:
            out["name"] = self.name
        if self.description:
            out["description"] = self.description
        settings = {p.name: self.settings[p.name] for p in SETTINGS if self.settings.get(p.name) != p.default}
        settings.update({k: v for k, v in self.settings.items() if k not in {p.name for p in SETTINGS}})
        if settings:
            out["settings"] = settings
        if self.providers:
            out["providers"] = copy.deepcopy(self.providers)
        out["steps"] = [s.to_dict() for s in self.steps]
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    def save(self, path: str | os.PathLike) -> None:
        found = find_secrets(self.to_dict())
        if found:
            raise PipelineError(found)
        path = Path(path)
        text = self.to_json()
        with atomic_path(path) as temp:  # a failed save keeps the old file and leaves no temporary one
            temp.write_text(text, encoding="utf-8")
        self.path = path.resolve()

    def fingerprint(self) -> str:
        """A hash of what decides the outputs: steps and providers (not concurrency)."""
        body = json.dumps({"steps": self.to_dict()["steps"], "providers": self.providers}, sort_keys=True)
        return hashlib.sha256(body.encode()).hexdigest()[:16]


def build_step(raw: Any, path: StepPath, problems: list[Problem]) -> Step | None:
    if not isinstance(raw, dict):
        problems.append(Problem('a step must be an object with a "type"', path))
        return None
    kind = raw.get("type")
    if not isinstance(kind, str) or kind not in REGISTRY:
        known = sorted(REGISTRY)
        if kind is None:
            problems.append(Problem(f"missing; step types are: {', '.join(known)}", path, "type"))
        else:
            problems.append(Problem(f"unknown step type {kind!r}{_suggest(str(kind), known)}", path, "type"))
        return None
    cls = REGISTRY[kind]
    names = {p.name for p in cls.params}
    config: dict[str, Any] = {}
    for key, value in raw.items():
        if key in ("type", "name", "enabled", "when"):
            continue
        if key not in names:
            article = "an" if kind[:1] in "aeiou" else "a"
            problems.append(Problem(f"unknown parameter for {article} {kind} step{_suggest(key, names)}; "
                                    f"parameters are: {', '.join(p.name for p in cls.params)}", path, key))
            continue
        config[key] = value
    before = len(problems)
    problems += check_values(cls.params, config, path)
    name = raw.get("name", "")
    if not isinstance(name, str):
        problems.append(Problem("must be text", path, "name"))
        name = ""
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        problems.append(Problem("must be true or false", path, "enabled"))
        enabled = True
    when = raw.get("when")
    problems += [Problem(message, path, "when") for message in conditions.problems(when)]
    branches = {}
    for p in cls.params:
        if p.kind == b.BRANCHES and isinstance(config.get(p.name), dict):
            for bname, bsteps in config[p.name].items():
                branches[bname] = build_steps(bsteps, problems, (*path, bname), (path, f"{p.name}.{bname}"))
            config[p.name] = branches
    if len(problems) > before:
        return None
    step = cls(config, name=name, enabled=enabled, when=copy.deepcopy(when))
    problems += [Problem(message, path, param) for param, message in step.check()]
    return step


def build_steps(raw_steps: Any, problems: list[Problem], prefix: StepPath = (),
                where: tuple[StepPath | None, str] = (None, "steps")) -> list[Step]:
    """Steps from a file's list; `prefix` is the path of the list's steps (a branch's: the
    parallel step's path and the branch name), `where` the list itself, for its own problems."""
    if not isinstance(raw_steps, list):
        problems.append(Problem("must be a list of steps", *where))
        return []
    steps = []
    for i, raw in enumerate(raw_steps):
        step = build_step(raw, (*prefix, i), problems)
        if step is not None:
            steps.append(step)
    return steps


_TYPES: dict[str, type | tuple[type, ...]] = {
    b.TEXT: str, b.MULTILINE: str, b.TEMPLATE: str, b.SOURCE: str, b.COLUMN: str, b.OUTPUT: str,
    b.FILE: str, b.CODE: str, b.CHOICE: str, b.PROVIDER: str, b.BOOL: bool, b.INT: int,
    b.FLOAT: (int, float), b.COLUMNS: list, b.STRINGS: list, b.MAPPING: dict, b.BRANCHES: dict,
}
_TYPE_WORDS: dict[type | tuple[type, ...], str] = {str: "text", bool: "true or false", int: "a whole number", (int, float): "a number",
               list: "a list", dict: "an object"}


def check_values(params: Iterable[b.Param], config: dict[str, Any], path: StepPath | None,
                 prefix: str = "") -> list[Problem]:
    """Type, range and choice checks for declared parameters: a step's (at `path`), or the
    pipeline's settings (path None, `prefix` "settings.")."""
    problems = []
    for p in params:
        def problem(message: str, p: b.Param = p) -> Problem:
            return Problem(message, path, prefix + p.name)

        if p.name not in config:
            if p.required:
                problems.append(problem(f"missing; {p.help or 'this parameter is required'}"))
            continue
        value = config[p.name]
        if value is None and not p.required:
            continue
        expected = _TYPES.get(p.kind)
        if expected is not None:
            ok = isinstance(value, expected) and not (expected in (int, (int, float)) and isinstance(value, bool))
            if not ok:
                problems.append(problem(f"must be {_TYPE_WORDS[expected]}, not {json.dumps(value)[:60]}"))
                continue
        if p.required and value in ("", [], {}):
            problems.append(problem("must not be empty"))
        if p.kind in (b.COLUMNS, b.STRINGS) and not all(isinstance(v, str) for v in value):
            problems.append(problem("must be a list of text"))
        if p.kind == b.MAPPING and not all(isinstance(v, str) for v in value.values()):
            problems.append(problem("every value must be text"))
        if p.kind == b.CHOICE and value not in p.choices:
            problems.append(problem(f"{value!r} is not one of: {', '.join(p.choices)}"))
        if p.kind in (b.INT, b.FLOAT):
            if isinstance(value, float) and not math.isfinite(value):
                # NaN passes every comparison and Infinity every minimum: neither is a setting.
                problems.append(problem(f"must be a number, not {json.dumps(value)}"))
                continue
            if p.minimum is not None and value < p.minimum:
                problems.append(problem(f"must be at least {p.minimum:g}"))
            if p.maximum is not None and value > p.maximum:
                problems.append(problem(f"must be at most {p.maximum:g}"))
        if p.kind == b.JSON and _has_non_finite(value):
            problems.append(problem("must not hold NaN or Infinity (they are not JSON numbers)"))
        if p.kind == b.TEMPLATE or (p.kind == b.SOURCE and b.is_template(value)):
            try:
                tpl.parse(value)
            except tpl.TemplateSyntaxError as exc:
                problems.append(problem(str(exc)))
    return problems


def _has_non_finite(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return True
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def nesting_problem(data: dict[str, Any]) -> Problem | None:
    """Steps nested more than MAX_STEP_NESTING deep (parallel steps within parallel steps), or
    any value nested more than MAX_JSON_NESTING deep: one problem, found without recursion."""
    lists: list[tuple[Any, int]] = [(data.get("steps"), 1)]
    while lists:
        raw_steps, depth = lists.pop()
        if not isinstance(raw_steps, list):
            continue
        for raw in raw_steps:
            kind = raw.get("type") if isinstance(raw, dict) else None
            cls = REGISTRY.get(kind) if isinstance(kind, str) else None
            if cls is None:
                continue
            for p in cls.params:
                branches = raw.get(p.name) if p.kind == b.BRANCHES else None
                if isinstance(branches, dict):
                    if depth >= MAX_STEP_NESTING and any(isinstance(v, list) and v for v in branches.values()):
                        return Problem(f"nested more than {MAX_STEP_NESTING} deep (parallel steps within "
                                       "parallel steps); flatten the pipeline", None, "steps")
                    lists.extend((branch, depth + 1) for branch in branches.values())
    values: list[tuple[Any, int]] = [(data, 1)]
    while values:
        value, depth = values.pop()
        if isinstance(value, (dict, list)):
            if depth > MAX_JSON_NESTING:
                return Problem(f"values are nested more than {MAX_JSON_NESTING} deep; a pipeline file is refused "
                               f"past that (and steps nested more than {MAX_STEP_NESTING} deep)")
            values.extend((v, depth + 1) for v in (value.values() if isinstance(value, dict) else value))
    return None


def check_configs(steps: list[Step]) -> list[Problem]:
    """Each step's values against its declarations, and its own checks, with where they are."""
    problems: list[Problem] = []
    for visit in iter_steps(steps):
        step = visit.step
        config = {p.name: step.config[p.name] for p in step.params
                  if p.name in step.config and (step.config[p.name] is not None or p.required)}
        problems += check_values(step.params, config, visit.path)
        problems += [Problem(message, visit.path, param) for param, message in step.check()]
        problems += [Problem(message, visit.path, "when") for message in conditions.problems(step.when)]
        if len(visit.path) > 1 and step.config.get("batch") is True:  # batch mode waits for every row: not in a branch
            problems.append(Problem("batch mode works on top-level steps only: move this step out of the parallel "
                                    "step, or turn batch mode off", visit.path, "batch"))
    return problems


def check_columns(steps: list[Step], columns: list[str]) -> list[Problem]:
    """Column checks: each step reads only what exists before it; no output is written twice.
    (Branches run side by side: each sees what existed before its parallel step.) A step may write
    over an input column: the column keeps its place, and rows the step does not write keep the
    sheet's value (core/run/results.py)."""
    problems: list[Problem] = []
    written: dict[str, StepPath] = {}
    for visit in iter_steps(steps, columns, enabled_only=True):
        step, path = visit.step, visit.path
        problems += _check_reads(step, path, visit.available)
        if step.children():
            continue  # a parallel step's outputs are its branches' steps' outputs, checked there
        for out in step.writes():
            if out in written:
                problems.append(Problem(f'output "{out}" is already written by {format_path(written[out])}; '
                                        "choose another name", path))
            elif not out.strip():
                problems.append(Problem("an output column name is empty", path))
            else:
                written[out] = path
    return problems


def _check_reads(step: Step, path: StepPath, available: tuple[str, ...]) -> list[Problem]:
    problems = []
    have = set(available)
    shown = ", ".join(available) if len(available) <= 30 else ", ".join(available[:30]) + ", …"
    for param, name in step.column_refs():
        if name not in have:
            message = step.unknown_column_message(param, name, available)
            problems.append(Problem(message or f'unknown column "{name}"{_suggest(name, available)}'
                                    f"; columns are: {shown or '(none)'}", path, param))
    for name in conditions.columns(step.when):  # what its condition tests ("run only when ...")
        if name not in have:
            problems.append(Problem(f'the condition tests an unknown column "{name}"{_suggest(name, available)}'
                                    f"; columns are: {shown or '(none)'}", path, "when"))
    return problems


def _suggest(word: str, options: Iterable[str], prefix: str = " (did you mean") -> str:
    match = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f'{prefix} "{match[0]}"?)' if match else ""


def _provider_problem(text: str) -> Problem:
    """Providers are a leaf that knows no `Problem`; their lines start with the field they are
    about ("providers.local.rpm: ..."), which becomes the problem's `param` (same line back)."""
    where, sep, message = text.partition(": ")
    return Problem(message, None, where) if sep else Problem(text)


_KEY_IN_FILE = ('pipeline files never hold keys or passwords; name the environment variable instead '
                '(for example "api_key_env": "OPENAI_API_KEY")')
_HEADER_IN_FILE = ("this header carries a credential, and its value is written in the file; pipeline files "
                   'never hold secrets: write ${ENV_VAR} (for example "Bearer ${MY_TOKEN}") and set that '
                   "environment variable instead")
_VALUE_IN_FILE = ("looks like an API key or token; pipeline files never hold secrets; "
                  "write ${ENV_VAR} and set that environment variable instead")


def find_secrets(data: Any) -> list[Problem]:
    """Places in a pipeline (its parsed file) that hold what looks like a key or password:
    in a step, located by its path; elsewhere by the field's dotted name."""
    if not isinstance(data, dict):
        return _secrets_in(data, None, "")
    found = []
    for key, value in data.items():
        if key == "steps" and isinstance(value, list):
            found += _step_secrets(value, ())
        else:
            found += _secrets_in({key: value}, None, "")
    return found


def _step_secrets(raw_steps: list[Any], prefix: StepPath) -> list[Problem]:
    found = []
    for i, raw in enumerate(raw_steps):
        path = (*prefix, i)
        if not isinstance(raw, dict):
            found += _secrets_in(raw, path, "")
            continue
        kind = raw.get("type")
        cls = REGISTRY.get(kind) if isinstance(kind, str) else None
        branch_params = {p.name for p in cls.params if p.kind == b.BRANCHES} if cls else set()
        for key, value in raw.items():
            if key in branch_params and isinstance(value, dict):
                for bname, bsteps in value.items():
                    if isinstance(bsteps, list):
                        found += _step_secrets(bsteps, (*path, bname))
                    else:
                        found += _secrets_in(bsteps, path, f"{key}.{bname}")
            else:
                found += _secrets_in({key: value}, path, "")
    return found


def looks_like_key(text: str) -> bool:
    """The text holds what looks like an API key or token: a known key format (sk-..., ghp_...,
    AKIA...: the secret policy's, core/util/secrets.py) or "Bearer/Token <long value>"."""
    return bool(secrets.KEY_FORMATS.search(text) or _SCHEME_VALUES.search(text))


def _header_secrets(headers: dict, path: StepPath | None, where: str) -> list[Problem]:
    """Headers named like a credential (Authorization, X-Api-Key, Cookie, *token*, *secret*...: the
    secret policy's names) take their value from `${NAME}` or a column, never from the file."""
    found = []
    for name, value in headers.items():
        at = f"{where}.{name}"
        if not isinstance(value, str):
            found += _secrets_in(value, path, at)
        elif looks_like_key(value):
            found.append(Problem(_VALUE_IN_FILE, path, at))
        elif secrets.is_secret_name(str(name)) and value.strip() and _is_literal(value):
            found.append(Problem(_HEADER_IN_FILE, path, at))
    return found


def _is_literal(value: str) -> bool:
    """Plain text: no `${NAME}` and no `{column}` in it."""
    return all(kind == tpl.LITERAL for _, kind in tpl.parse(value, lenient=True))


def _secrets_in(data: Any, path: StepPath | None, where: str) -> list[Problem]:
    found = []
    if isinstance(data, dict):
        for key, value in data.items():
            at = f"{where}.{key}" if where else str(key)
            if key == "headers" and isinstance(value, dict):
                found += _header_secrets(value, path, at)
            elif isinstance(key, str) and _SECRET_KEYS.match(key) and isinstance(value, str) and value.strip():
                found.append(Problem(_KEY_IN_FILE, path, at))
            else:
                found += _secrets_in(value, path, at)
    elif isinstance(data, list):
        for i, value in enumerate(data):
            found += _secrets_in(value, path, f"{where}[{i}]")
    elif isinstance(data, str) and looks_like_key(data):
        found.append(Problem(_VALUE_IN_FILE, path, where))
    return found
