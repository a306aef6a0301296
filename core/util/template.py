"""`{column}` templates: "Summarise: {review}".

Column names may contain spaces or punctuation (`{Customer name}`); `{{` and `}}` are
literal braces; `${NAME}` is the environment variable NAME (how secrets such as tokens
reach a header without being written into the pipeline file).

`${NAME}` expands only where secrets belong (`render(..., allow_env=True)`: HTTP header values,
provider profile headers), or anywhere during a run the user trusts (`env_trusted`, which the
engine enters for the run): a stranger's pipeline must not copy a key into a URL, a prompt or a
result (README, "Sharing pipelines safely").

Lenient templates (request bodies, which are JSON full of braces) treat only `{name}`
with a plausible column name inside as a placeholder and leave every other brace alone,
so `{"q": "{query}"}` needs no escaping.

Parsed once per template (cached), rendered per row with no regex work.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache
from typing import Any

from . import secrets
from .display import display_text
from .errors import StepError

LITERAL, COLUMN, ENV = 0, 1, 2
_NAME_IN_LENIENT = re.compile(r"[^{}\"':\n]+")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class TemplateSyntaxError(ValueError):
    pass


@lru_cache(maxsize=2048)
def parse(template: str, lenient: bool = False) -> tuple[tuple[str, int], ...]:
    """Split a template into (text, kind) parts: LITERAL text, a COLUMN name or an ENV name."""
    parts: list[tuple[str, int]] = []
    literal: list[str] = []

    def flush():
        if literal:
            parts.append(("".join(literal), LITERAL))
            literal.clear()

    i, n = 0, len(template)
    while i < n:
        ch = template[i]
        if ch == "$" and template.startswith("{", i + 1):
            end = template.find("}", i + 2)
            name = template[i + 2:end] if end != -1 else ""
            if end != -1 and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                flush()
                parts.append((name, ENV))
                i = end + 1
                continue
            if not lenient:
                raise TemplateSyntaxError(f"broken environment variable at position {i + 1}; write ${{NAME}}")
        if ch == "{":
            if template.startswith("{", i + 1) and not lenient:
                literal.append("{")
                i += 2
                continue
            end = template.find("}", i + 1)
            name = template[i + 1:end] if end != -1 else ""
            if lenient:
                if end != -1 and _NAME_IN_LENIENT.fullmatch(name) and name.strip():
                    flush()
                    parts.append((name.strip(), COLUMN))
                    i = end + 1
                else:
                    literal.append(ch)
                    i += 1
                continue
            if end == -1:
                raise TemplateSyntaxError(f"unclosed '{{' at position {i + 1}; write '{{{{' for a literal brace")
            if not name.strip() or "{" in name:
                raise TemplateSyntaxError(f"empty or broken placeholder at position {i + 1}")
            flush()
            parts.append((name.strip(), COLUMN))
            i = end + 1
        elif ch == "}" and not lenient:
            if template.startswith("}", i + 1):
                literal.append("}")
                i += 2
                continue
            raise TemplateSyntaxError(f"single '}}' at position {i + 1}; write '}}}}' for a literal brace")
        else:
            literal.append(ch)
            i += 1
    flush()
    return tuple(parts)


def placeholders(template: str, lenient: bool = False) -> list[str]:
    """Column names a template reads, in order, without repeats."""
    return list(dict.fromkeys(text for text, kind in parse(template, lenient) if kind == COLUMN))


# How a cell reads inside a template: the one rule every front end and export uses.
as_text = display_text


# True while a run the user trusts is going on (the tasks and worker threads it starts inherit it).
_ENV_TRUSTED: ContextVar[bool] = ContextVar("batchgrid_env_trusted", default=False)


@contextmanager
def env_trusted(trusted: bool) -> Iterator[None]:
    """Within: `${NAME}` expands anywhere if `trusted`, else only where `allow_env` says so."""
    token = _ENV_TRUSTED.set(trusted)
    try:
        yield
    finally:
        _ENV_TRUSTED.reset(token)


def env_names(text: str) -> list[str]:
    """The `${NAME}`s a text reads, in order, without repeats (whatever else it holds)."""
    return list(dict.fromkeys(_ENV_REF.findall(text)))


def env_value(name: str, allowed: bool = True) -> str:
    if not allowed and not _ENV_TRUSTED.get():
        raise StepError(f"${{{name}}} is not read here: a pipeline reads environment variables only in header "
                        "values, unless you trust it (CLI: --trust; window: answer Yes when asked)")
    if name not in os.environ:
        raise StepError(f"environment variable {name} is not set (the pipeline reads it as ${{{name}}})")
    return secrets.remembered(os.environ[name])  # hidden wherever it turns up (core/util/secrets.py)


def render(template: str, row: Mapping[str, Any], *, lenient: bool = False,
           escape: Callable[[str], str] | None = None, allow_env: bool = False) -> str:
    """Fill a template from a row. `escape` is applied to column values (not to literals).
    `allow_env`: this is a place for secrets (a header value), where `${NAME}` always expands."""
    out = []
    for text, kind in parse(template, lenient):
        if kind == LITERAL:
            out.append(text)
        elif kind == COLUMN:
            if text not in row:
                raise StepError(f'unknown column "{text}" in template')
            value = as_text(row[text])
            out.append(escape(value) if escape else value)
        else:
            out.append(env_value(text, allow_env))
    return "".join(out)
