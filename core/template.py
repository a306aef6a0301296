"""`{column}` templates: "Summarise: {review}".

Column names may contain spaces or punctuation (`{Customer name}`); `{{` and `}}` are
literal braces. Parsed once per step, rendered per row with no regex work.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Mapping

from .errors import StepError


class TemplateSyntaxError(ValueError):
    pass


@lru_cache(maxsize=1024)
def parse(template: str) -> tuple[tuple[str, bool], ...]:
    """Split a template into (text, is_placeholder) parts."""
    parts: list[tuple[str, bool]] = []
    literal: list[str] = []
    i, n = 0, len(template)
    while i < n:
        ch = template[i]
        if ch == "{":
            if i + 1 < n and template[i + 1] == "{":
                literal.append("{")
                i += 2
                continue
            end = template.find("}", i + 1)
            if end == -1:
                raise TemplateSyntaxError(f"unclosed '{{' at position {i + 1}; write '{{{{' for a literal brace")
            name = template[i + 1 : end].strip()
            if not name or "{" in name:
                raise TemplateSyntaxError(f"empty or broken placeholder at position {i + 1}")
            if literal:
                parts.append(("".join(literal), False))
                literal = []
            parts.append((name, True))
            i = end + 1
        elif ch == "}":
            if i + 1 < n and template[i + 1] == "}":
                literal.append("}")
                i += 2
                continue
            raise TemplateSyntaxError(f"single '}}' at position {i + 1}; write '}}}}' for a literal brace")
        else:
            literal.append(ch)
            i += 1
    if literal:
        parts.append(("".join(literal), False))
    return tuple(parts)


def placeholders(template: str) -> list[str]:
    """Column names a template reads, in order, without repeats."""
    seen: dict[str, None] = {}
    for text, is_name in parse(template):
        if is_name:
            seen.setdefault(text, None)
    return list(seen)


def as_text(value: Any) -> str:
    """How a cell reads inside a template: blanks are empty, 3.0 reads 3."""
    if value is None:
        return ""
    if isinstance(value, float):
        if value != value:  # NaN: a blank cell from pandas
            return ""
        if value.is_integer():
            return str(int(value))
    if isinstance(value, (list, dict)):
        import json

        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def render(template: str, row: Mapping[str, Any]) -> str:
    out = []
    for text, is_name in parse(template):
        if is_name:
            if text not in row:
                raise StepError(f'unknown column "{text}" in template')
            out.append(as_text(row[text]))
        else:
            out.append(text)
    return "".join(out)
