"""What a pipeline may do without the user's trust, and what it wants beyond that.

Pipelines are shared like spreadsheets, so a pipeline file is a stranger's until the user says
they trust it. Without trust a pipeline may read the open sheet and the files in its own folder
(and below), call the hosts it names, and read `${NAME}` only where secrets belong: HTTP header
values and provider profiles (parameters declared with `allow_env`). Everything else needs
trust, and each such wish is a `Permission`, located like a `Problem`:

- running Python code;
- `${NAME}` anywhere else (a template, a URL, a prompt, a body...);
- a file outside the pipeline's folder (an absolute path, `..`, a link out);
- a `file:` URL.

`Job.check_ready` refuses an untrusted pipeline that wants any of them; the window asks once
per pipeline file, listing them; the CLI needs --trust. The run enforces it again: `${NAME}`
expands outside header values only in a trusted run (core/util/template.py), and
`RunResources.resolve` refuses a file outside the folder (core/steps/context.py).
A pipeline the user builds in the window (never loaded from a file) is theirs: trusted.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchgrid.core.steps import base as b
from batchgrid.core.steps.base import Step
from batchgrid.core.steps.context import within
from batchgrid.core.steps.tree import StepPath, format_path, iter_steps
from batchgrid.core.util import template as tpl
from batchgrid.core.util.errors import UntrustedError

CODE, ENV, FILE, FILE_URL = "code", "env", "file", "file_url"

HOW_TO_TRUST = ("this pipeline needs your trust to run; run it only if you trust where it came from "
                "(CLI: add --trust; window: answer Yes when asked)")

# Where a `${NAME}` is, in the user's words, by parameter.
_PLACES = {"url": "a URL", "prompt": "a prompt", "system": "a prompt", "instructions": "a prompt",
           "body": "a request body", "template": "a template"}


@dataclass(frozen=True)
class Permission:
    """One thing a pipeline wants that needs the user's trust, and where it is."""

    kind: str                    # CODE, ENV, FILE or FILE_URL
    text: str                    # in words: "reads /etc/passwd", "uses $TOKEN in a URL"
    path: StepPath | None = None  # the step (None: the pipeline's own fields)
    param: str = ""              # the parameter, possibly with a part ("headers.X-Key")

    def where(self) -> str:
        if self.path is None:
            return self.param
        return f"{format_path(self.path)}.{self.param}" if self.param else format_path(self.path)

    def __str__(self) -> str:
        """The CLI's line: `steps[1].reference_file: reads /etc/passwd`."""
        where = self.where()
        return f"{where}: {self.text}" if where else self.text

    def describe(self) -> str:
        """The window's line: `reads /etc/passwd (step 2, reference_file)`."""
        if self.path is None:
            return f"{self.text} ({self.param})" if self.param else self.text
        steps = ", ".join(f"step {part + 1}" if isinstance(part, int) else f"branch {part}" for part in self.path)
        return f"{self.text} ({steps}{', ' + self.param if self.param else ''})"


def permissions(steps: Sequence[Step], folder: Path) -> list[Permission]:
    """What the enabled steps want that needs trust, in step order; `folder` is the pipeline's
    (relative paths start there)."""
    found: list[Permission] = []
    for visit in iter_steps(steps, enabled_only=True):
        found += _step_permissions(visit.step, visit.path, folder)
    return list(dict.fromkeys(found))


def untrusted_error(wanted: Sequence[Permission]) -> UntrustedError:
    """The refusal of an untrusted run: what the pipeline wants, a line each."""
    lines = [str(p) for p in wanted]
    message = f"{lines[0]}; {HOW_TO_TRUST}" if len(lines) == 1 else f"{HOW_TO_TRUST}: " + "; ".join(lines)
    return UntrustedError(message, lines)


def _step_permissions(step: Step, path: StepPath, folder: Path) -> Iterator[Permission]:
    if step.runs_code:
        code = next((p.name for p in step.params if p.kind == b.CODE), "")
        yield Permission(CODE, "runs Python code", path, code)
    for p in step.params:
        value = step.config.get(p.name)
        if p.kind in (b.BRANCHES, b.CODE) or value in (None, "", [], {}):
            continue
        if p.kind == b.FILE and isinstance(value, str):
            full = Path(value).expanduser()
            full = full if full.is_absolute() else folder / full
            if not within(full, folder):
                yield Permission(FILE, f"reads {os.path.realpath(full)}", path, p.name)
        if p.name == "url" and isinstance(value, str) and value.strip().lower().startswith("file:"):
            yield Permission(FILE_URL, "reads local files through a file: URL", path, p.name)
        if not p.allow_env:
            place = _PLACES.get(p.name, "a template" if p.kind == b.SOURCE else f'"{p.title}"')
            for where, text in _strings(value, p.name):
                for name in tpl.env_names(text):
                    yield Permission(ENV, f"uses ${name} in {place}", path, where)


def _strings(value: Any, where: str) -> Iterable[tuple[str, str]]:
    """Every text in a parameter's value, with where it is (`headers.X`, `stop[1]`)."""
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _strings(item, f"{where}[{i}]")
