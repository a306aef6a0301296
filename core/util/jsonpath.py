"""JSON paths (`$.items[0].name`, `data.total`) over parsed JSON, via jsonpath-ng."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from jsonpath_ng.exceptions import JsonPathLexerError, JsonPathParserError
from jsonpath_ng.ext import parse as _parse

_MISSING = object()


@lru_cache(maxsize=512)
def compile_path(path: str):
    """Compile a path; a leading `$.` may be left out. Raises ValueError in words."""
    text = path.strip()
    if not text:
        raise ValueError("the JSON path is empty")
    if not text.startswith("$"):
        text = "$." + text if not text.startswith("[") else "$" + text
    try:
        return _parse(text)
    except (JsonPathLexerError, JsonPathParserError, Exception) as exc:  # jsonpath-ng raises plain Exception too
        raise ValueError(f"not a valid JSON path {path!r}: {str(exc).splitlines()[0]}") from None


def extract(data: Any, path: str, *, many: bool = False) -> Any:
    """The value at `path`: None if nothing matches, a list if several match (or `many`)."""
    matches = [m.value for m in compile_path(path).find(data)]
    if many:
        return matches
    if not matches:
        return None
    return matches[0] if len(matches) == 1 else matches
