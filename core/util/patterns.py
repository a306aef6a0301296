"""Regular expressions from pipelines, run with a time limit so no pattern can hang a run.

A pipeline from a stranger may hold a pattern that backtracks for minutes on some text
(`(a|aa)+$` on forty "a" and a "!"). Python's `re` cannot be stopped once it runs and holds
the GIL throughout; the `regex` package takes a `timeout` on every search and releases the
GIL while it matches. So every user pattern is compiled by both: `re` checks it (its error
messages, and the syntax users know), `regex` runs it.

Two limits:
- TIME_LIMIT for one pattern on one value, anywhere: past it the row fails with TOO_SLOW.
- LOOP_SLICE on the event loop's thread (cheap steps run there): past it the pattern raises
  `NeedsWorkerThread`, and the engine runs that step again for the row in a worker thread,
  where the full limit applies. So nothing a user wrote holds the loop (the window, Stop,
  Ctrl-C) for more than a few milliseconds.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import regex

from .errors import StepError

TIME_LIMIT = 1.0    # seconds one pattern may spend on one value
LOOP_SLICE = 0.005  # seconds it may spend on the event loop's thread before moving off it
TOO_SLOW = "the pattern took too long on this text (catastrophic backtracking?)"
PatternError = regex.error  # what a bad replacement raises

__all__ = ["LOOP_SLICE", "TIME_LIMIT", "TOO_SLOW", "NeedsWorkerThread", "Pattern", "PatternError",
           "PatternTooSlow", "compile_pattern"]


class PatternTooSlow(StepError):
    """A pattern ran past its time limit on a value: that row fails, the run goes on."""

    def __init__(self, message: str = TOO_SLOW):
        super().__init__(message)


class NeedsWorkerThread(PatternTooSlow):
    """On the event loop's thread a pattern needed more than LOOP_SLICE: run the step again in a
    worker thread. (A caller that cannot do that sees a PatternTooSlow: the row fails in words.)"""


def _on_loop_thread() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class Pattern:
    """A compiled user pattern whose every search runs under the time limit."""

    __slots__ = ("_compiled",)

    def __init__(self, compiled: Any):
        self._compiled = compiled

    @property
    def pattern(self) -> str:
        return self._compiled.pattern

    @property
    def flags(self) -> int:
        return self._compiled.flags

    @property
    def groups(self) -> int:
        return self._compiled.groups

    @property
    def groupindex(self) -> dict[str, int]:
        return dict(self._compiled.groupindex)

    def search(self, text: str) -> Any:
        return _limited(self._compiled.search, text)

    def finditer(self, text: str) -> list[Any]:
        """Every match, as a list: the limit covers finding all of them."""
        return _limited(lambda text, timeout: list(self._compiled.finditer(text, timeout=timeout)), text)

    def sub(self, repl: str | Callable[[Any], str], text: str, count: int = 0) -> str:
        """Raises PatternError for a replacement that names a group the pattern lacks."""
        return _limited(lambda text, timeout: self._compiled.sub(repl, text, count=count, timeout=timeout), text)

    def split(self, text: str, maxsplit: int = 0) -> list[str | None]:
        return _limited(lambda text, timeout: self._compiled.split(text, maxsplit=maxsplit, timeout=timeout), text)


def _limited(method: Callable[..., Any], text: str) -> Any:
    on_loop = _on_loop_thread()
    try:
        return method(text, timeout=LOOP_SLICE if on_loop else TIME_LIMIT)
    except TimeoutError:
        raise (NeedsWorkerThread if on_loop else PatternTooSlow)() from None


@lru_cache(maxsize=256)
def compile_pattern(pattern: str, ignore_case: bool = False) -> Pattern:
    """The pattern compiled to run under the time limit, or a StepError saying in words what is
    wrong with it (in `re`'s words: the syntax users know)."""
    flags = re.IGNORECASE if ignore_case else 0
    try:
        re.compile(pattern, flags)
    except re.error as exc:
        raise StepError(f"not a valid regular expression: {exc}") from None
    try:
        return Pattern(regex.compile(pattern, regex.IGNORECASE if ignore_case else 0))
    except regex.error as exc:  # pragma: no cover - re accepted it; regex almost always does too
        raise StepError(f"not a valid regular expression: {exc}") from None
