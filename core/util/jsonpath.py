"""JSON paths (`$.items[0].name`, `data.total`) over parsed JSON, via jsonpath-ng.

A path may hold regular expressions (a `=~` filter, a `sub(/pattern/, repl)`); jsonpath-ng runs
them through `re`, with no time limit. Here they run through core/util/patterns.py instead, so
a pattern cannot hang a run: `sub()` nodes get a limited pattern when the path is compiled,
and the library's one `=~` operator is replaced by a limited search.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from jsonpath_ng import JSONPath
from jsonpath_ng.exceptions import JsonPathLexerError, JsonPathParserError
from jsonpath_ng.ext import filter as _filter
from jsonpath_ng.ext import parse as _parse
from jsonpath_ng.ext.string import Sub

from .errors import StepError
from .patterns import compile_pattern

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
        compiled = _parse(text)
    except (JsonPathLexerError, JsonPathParserError, Exception) as exc:  # jsonpath-ng raises plain Exception too
        raise ValueError(f"not a valid JSON path {path!r}: {str(exc).splitlines()[0]}") from None
    try:
        _limit_patterns(compiled)
    except StepError as exc:
        raise ValueError(f"{exc} in the JSON path {path!r}") from None
    return compiled


def _limit_patterns(node: Any) -> None:
    """Give every `sub()` in a parsed path a time-limited pattern, and check every `=~` pattern."""
    if isinstance(node, Sub):
        node.regex = compile_pattern(node.expr)  # type: ignore[assignment]  # Sub only calls .sub(repl, text)
    elif isinstance(node, _filter.Expression) and node.op == "=~" and isinstance(node.value, str):
        compile_pattern(node.value)
    for value in vars(node).values():
        for child in value if isinstance(value, (list, tuple)) else (value,):
            if isinstance(child, JSONPath):
                _limit_patterns(child)


def _limited_search(text: Any, pattern: Any) -> bool:
    return isinstance(text, str) and compile_pattern(pattern).search(text) is not None


_filter.OPERATOR_MAP["=~"] = _limited_search  # the library's own runs `re.search`, unlimited


def extract(data: Any, path: str, *, many: bool = False) -> Any:
    """The value at `path`: None if nothing matches, a list if several match (or `many`)."""
    matches = [m.value for m in compile_path(path).find(data)]
    if many:
        return matches
    if not matches:
        return None
    return matches[0] if len(matches) == 1 else matches
