"""Pipeline files: load, validate (every problem, with where it is), save. Never a secret.

A pipeline file is JSON:

    {"version": 1, "name": "...", "settings": {"max_concurrency": 8},
     "providers": {...}, "steps": [{"type": "trim", "source": "review"}, ...]}
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchgrid.core.providers.profiles import validate_providers
from batchgrid.core.steps import REGISTRY, Step
from batchgrid.core.steps import base as b
from batchgrid.core.steps.base import all_writes, walk
from batchgrid.core.util import template as tpl
from batchgrid.core.util.errors import PipelineError

from .model_checks import provider_problems

CURRENT_VERSION = 1

# Run settings, declared like step parameters so that files and forms are checked alike.
SETTINGS: tuple[b.Param, ...] = (
    b.Param("max_concurrency", b.INT, 8, "Rows in flight, and external calls at once, across all rows and branches.",
            minimum=1, maximum=1000),
    b.Param("max_attempts", b.INT, 4, "Attempts per call when it fails for a transient reason (429, 5xx, timeout).",
            minimum=1, maximum=20),
    b.Param("retry_base_delay", b.FLOAT, 1.0, "Seconds before the first retry; doubles each time, with jitter.",
            minimum=0.0, maximum=600.0),
    b.Param("retry_max_delay", b.FLOAT, 60.0, "The longest wait between two attempts, in seconds.",
            minimum=0.0, maximum=3600.0),
    b.Param("use_cache", b.BOOL, True, "Answer a model request made before from the response cache, at no cost "
            "(also for temperature > 0; turn off to ask again)."),
    b.Param("budget", b.FLOAT, None, "Pause the run when its projected cost would pass this many dollars.",
            minimum=0.0),
)

_SECRET_KEYS = re.compile(r"^(api[_-]?key|apikey|password|passwd|secret|client[_-]?secret|access[_-]?token|token)$", re.I)
_SECRET_VALUES = re.compile(r"\b(sk-[A-Za-z0-9_\-]{16,}|Bearer\s+(?!\$\{)[A-Za-z0-9._\-]{16,}|AKIA[0-9A-Z]{16}|xox[bap]-[A-Za-z0-9-]{10,}|gh[pousr]_[A-Za-z0-9]{20,})")


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
            raise PipelineError([f"{path}: no such pipeline file"]) from None
        except IsADirectoryError:
            raise PipelineError([f"{path}: is a folder, not a pipeline file"]) from None
        except UnicodeDecodeError:
            raise PipelineError([f"{path}: not a text file (a pipeline file is JSON)"]) from None
        except OSError as exc:
            raise PipelineError([f"{path}: cannot be read ({exc.strerror or exc})"]) from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PipelineError([f"{path.name}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"]) from None
        pipeline = cls.from_dict(data)
        pipeline.path = path.resolve()
        return pipeline

    @classmethod
    def from_dict(cls, data: Any) -> Pipeline:
        """Build a pipeline from parsed JSON, or raise PipelineError listing every problem."""
        problems: list[str] = []
        if not isinstance(data, dict):
            raise PipelineError(["the pipeline must be a JSON object with \"version\" and \"steps\""])
        problems += find_secrets(data)
        version = data.get("version")
        if version is None:
            problems.append('version: missing; add "version": 1')
        elif version != CURRENT_VERSION:
            problems.append(f"version: {version!r} is not supported; this Batchgrid reads version {CURRENT_VERSION}")
        known = {"version", "name", "description", "settings", "providers", "steps"}
        for key in data:
            if key not in known:
                problems.append(f"{key}: unknown top-level field{_suggest(key, known)}")
        settings = data.get("settings", {})
        if not isinstance(settings, dict):
            problems.append("settings: must be an object")
            settings = {}
        problems += check_values(SETTINGS, settings, "settings")
        providers = data.get("providers", {})
        provider_errors = validate_providers(providers)
        problems += provider_errors
        if provider_errors:
            providers = {}
        raw_steps = data.get("steps")
        if raw_steps is None:
            problems.append("steps: missing; a pipeline needs a list of steps")
            raw_steps = []
        steps = build_steps(raw_steps, "steps", problems)
        if problems:
            raise PipelineError(problems)
        return cls(steps=steps, settings=dict(settings), providers=copy.deepcopy(providers),
                   name=str(data.get("name", "")), description=str(data.get("description", "")))

    # ---- checking ----------------------------------------------------------------
    def check(self) -> list[str]:
        """Problems of the pipeline on its own, as loading its file would find them: values of
        the wrong type or range, step-specific checks, secrets. (For a pipeline being edited.)"""
        problems = find_secrets(self.to_dict())
        problems += check_values(SETTINGS, self.settings, "settings")
        problems += check_configs(self.steps, "steps")
        return problems

    def problems(self, columns: Iterable[str] | None = None) -> list[str]:
        """Every problem running this pipeline over a table with `columns` would hit
        (without columns: those of the pipeline on its own)."""
        problems = self.check()
        if columns is not None:
            problems += check_steps(self.steps, "steps", list(columns), set(columns), {})
        problems += provider_problems(self.steps, self.providers)
        return list(dict.fromkeys(problems))

    def validate(self, columns: Iterable[str]) -> None:
        problems = self.problems(columns)
        if problems:
            raise PipelineError(problems)

    @property
    def runs_code(self) -> bool:
        return any(s.runs_code for s in walk(self.steps) if s.enabled)

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
        secrets = find_secrets(self.to_dict())
        if secrets:
            raise PipelineError(secrets)
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.to_json(), encoding="utf-8")
        os.replace(tmp, path)
        self.path = path.resolve()

    def fingerprint(self) -> str:
        """A hash of what decides the outputs: steps and providers (not concurrency)."""
        body = json.dumps({"steps": self.to_dict()["steps"], "providers": self.providers}, sort_keys=True)
        return hashlib.sha256(body.encode()).hexdigest()[:16]


def build_step(raw: Any, where: str, problems: list[str]) -> Step | None:
    if not isinstance(raw, dict):
        problems.append(f"{where}: a step must be an object with a \"type\"")
        return None
    kind = raw.get("type")
    if not isinstance(kind, str) or kind not in REGISTRY:
        known = sorted(REGISTRY)
        if kind is None:
            problems.append(f"{where}.type: missing; step types are: {', '.join(known)}")
        else:
            problems.append(f"{where}.type: unknown step type {kind!r}{_suggest(str(kind), known)}")
        return None
    cls = REGISTRY[kind]
    names = {p.name for p in cls.params}
    config: dict[str, Any] = {}
    for key, value in raw.items():
        if key in ("type", "name", "enabled"):
            continue
        if key not in names:
            problems.append(f"{where}.{key}: unknown parameter for a {kind} step{_suggest(key, names)}; "
                            f"parameters are: {', '.join(p.name for p in cls.params)}")
            continue
        config[key] = value
    before = len(problems)
    problems += check_values(cls.params, config, where)
    name = raw.get("name", "")
    if not isinstance(name, str):
        problems.append(f"{where}.name: must be text")
        name = ""
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        problems.append(f"{where}.enabled: must be true or false")
        enabled = True
    branches = {}
    for p in cls.params:
        if p.kind == b.BRANCHES and isinstance(config.get(p.name), dict):
            for bname, bsteps in config[p.name].items():
                branches[bname] = build_steps(bsteps, f"{where}.{p.name}.{bname}", problems)
            config[p.name] = branches
    if len(problems) > before:
        return None
    step = cls(config, name=name, enabled=enabled)
    for param, message in step.check():
        problems.append(f"{where}.{param}: {message}" if param else f"{where}: {message}")
    return step


def build_steps(raw_steps: Any, where: str, problems: list[str]) -> list[Step]:
    if not isinstance(raw_steps, list):
        problems.append(f"{where}: must be a list of steps")
        return []
    steps = []
    for i, raw in enumerate(raw_steps):
        step = build_step(raw, f"{where}[{i}]", problems)
        if step is not None:
            steps.append(step)
    return steps


_TYPES = {
    b.TEXT: str, b.MULTILINE: str, b.TEMPLATE: str, b.SOURCE: str, b.COLUMN: str, b.OUTPUT: str,
    b.FILE: str, b.CODE: str, b.CHOICE: str, b.PROVIDER: str, b.BOOL: bool, b.INT: int,
    b.FLOAT: (int, float), b.COLUMNS: list, b.STRINGS: list, b.MAPPING: dict, b.BRANCHES: dict,
}
_TYPE_WORDS = {str: "text", bool: "true or false", int: "a whole number", (int, float): "a number",
               list: "a list", dict: "an object"}


def check_values(params: Iterable[b.Param], config: dict[str, Any], where: str) -> list[str]:
    """Type, range and choice checks for declared parameters."""
    problems = []
    for p in params:
        at = f"{where}.{p.name}"
        if p.name not in config:
            if p.required:
                problems.append(f"{at}: missing; {p.help or 'this parameter is required'}")
            continue
        value = config[p.name]
        if value is None and not p.required:
            continue
        expected = _TYPES.get(p.kind)
        if expected is not None:
            ok = isinstance(value, expected) and not (expected in (int, (int, float)) and isinstance(value, bool))
            if not ok:
                problems.append(f"{at}: must be {_TYPE_WORDS[expected]}, not {json.dumps(value)[:60]}")
                continue
        if p.required and value in ("", [], {}):
            problems.append(f"{at}: must not be empty")
        if p.kind in (b.COLUMNS, b.STRINGS) and not all(isinstance(v, str) for v in value):
            problems.append(f"{at}: must be a list of text")
        if p.kind == b.MAPPING and not all(isinstance(v, str) for v in value.values()):
            problems.append(f"{at}: every value must be text")
        if p.kind == b.CHOICE and value not in p.choices:
            problems.append(f"{at}: {value!r} is not one of: {', '.join(p.choices)}")
        if p.kind in (b.INT, b.FLOAT):
            if p.minimum is not None and value < p.minimum:
                problems.append(f"{at}: must be at least {p.minimum:g}")
            if p.maximum is not None and value > p.maximum:
                problems.append(f"{at}: must be at most {p.maximum:g}")
        if p.kind == b.TEMPLATE or (p.kind == b.SOURCE and b.is_template(value)):
            try:
                tpl.parse(value)
            except tpl.TemplateSyntaxError as exc:
                problems.append(f"{at}: {exc}")
    return problems


def check_configs(steps: list[Step], where: str) -> list[str]:
    """Each step's values against its declarations, and its own checks, with where they are."""
    problems: list[str] = []
    for i, step in enumerate(steps):
        at = f"{where}[{i}]"
        config = {p.name: step.config[p.name] for p in step.params
                  if p.name in step.config and (step.config[p.name] is not None or p.required)}
        problems += check_values(step.params, config, at)
        problems += [f"{at}.{param}: {message}" if param else f"{at}: {message}" for param, message in step.check()]
        for bname, bsteps in step.children().items():
            problems += check_configs(bsteps, f"{at}.branches.{bname}")
    return problems


def check_steps(steps: list[Step], where: str, columns: list[str], inputs: set[str],
                written: dict[str, str], ordered: bool = True) -> list[str]:
    """Column checks: each step reads only what exists before it; no output is written twice."""
    problems: list[str] = []
    available = list(columns)
    for i, step in enumerate(steps):
        at = f"{where}[{i}]"
        if not step.enabled:
            continue
        problems += _check_reads(step, at, available)
        children = step.children()
        if children:
            branch_outputs: list[str] = []
            for bname, bsteps in children.items():
                # Branches run side by side: each sees what exists before the parallel step.
                problems += check_steps(bsteps, f"{at}.branches.{bname}", list(available), inputs, written)
                branch_outputs += [c for s in bsteps if s.enabled for c in all_writes(s)]
            new = branch_outputs
        else:
            new = step.writes()
            for out in new:
                if out in inputs:
                    problems.append(f'{at}: output "{out}" would overwrite an input column; choose another name')
                elif out in written:
                    problems.append(f'{at}: output "{out}" is already written by {written[out]}; choose another name')
                elif not out.strip():
                    problems.append(f"{at}: an output column name is empty")
                else:
                    written[out] = at
        available += [c for c in new if c not in available]
    return problems


def _check_reads(step: Step, at: str, available: list[str]) -> list[str]:
    problems = []
    have = set(available)
    shown = ", ".join(available) if len(available) <= 30 else ", ".join(available[:30]) + ", …"
    for param, name in step.column_refs():
        if name not in have:
            problems.append(f'{at}.{param}: unknown column "{name}"{_suggest(name, available)}'
                            f"; columns are: {shown or '(none)'}")
    return problems


def _suggest(word: str, options: Iterable[str], prefix: str = " (did you mean") -> str:
    match = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f'{prefix} "{match[0]}"?)' if match else ""


def find_secrets(data: Any, where: str = "") -> list[str]:
    """Places in a pipeline that hold what looks like a key or password."""
    found = []
    if isinstance(data, dict):
        for key, value in data.items():
            at = f"{where}.{key}" if where else str(key)
            if isinstance(key, str) and _SECRET_KEYS.match(key) and isinstance(value, str) and value.strip():
                found.append(f"{at}: pipeline files never hold keys or passwords; name the environment "
                             f"variable instead (for example \"api_key_env\": \"OPENAI_API_KEY\")")
            else:
                found += find_secrets(value, at)
    elif isinstance(data, list):
        for i, value in enumerate(data):
            found += find_secrets(value, f"{where}[{i}]")
    elif isinstance(data, str) and _SECRET_VALUES.search(data):
        found.append(f"{where}: looks like an API key or token; pipeline files never hold secrets; "
                     "write ${ENV_VAR} and set that environment variable instead")
    return found
