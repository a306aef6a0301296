"""Where one undo step of typing ends, as in a word processor: at a pause, at the start of a new
word, when typing turns into deleting (or back), when the cursor jumps, and when the field loses
focus. The document merges a field's keystrokes into one undo step until a field says so
(`PipelineDocument.end_typing`); this decides when to say it."""

from __future__ import annotations

import time
from collections.abc import Callable

PAUSE_SECONDS = 1.0  # no key for this long: the next keystroke starts a new undo step


def changed_span(old: str, new: str) -> tuple[int, str, str]:
    """(where, removed, inserted): the one region where `old` and `new` differ."""
    start = 0
    limit = min(len(old), len(new))
    while start < limit and old[start] == new[start]:
        start += 1
    end = 0
    while end < limit - start and old[len(old) - 1 - end] == new[len(new) - 1 - end]:
        end += 1
    return start, old[start:len(old) - end], new[start:len(new) - end]


class TypingChunks:
    """Follows one text box's text; `breaks(new_text)` says the edit begins a new undo step."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.text = ""
        self.kind = ""     # "insert" or "delete": what the current step does; "": no step yet
        self.cursor = -1   # where the current step's edits end
        self.at = 0.0      # when the last edit came

    def reset(self, text: str) -> None:
        """The text was set from outside (a step shown, an undo): the next edit starts a new step."""
        self.text, self.kind = text, ""

    def breaks(self, new: str) -> bool:
        where, removed, inserted = changed_span(self.text, new)
        now = self.clock()
        kind = "insert" if inserted else "delete"
        if inserted and removed:  # typed over a selection, or pasted: always its own step
            new_step = True
        elif kind == "insert":
            new_step = (self.kind != "insert" or where != self.cursor
                        or (not inserted[0].isspace() and where > 0 and new[where - 1].isspace()))  # a new word
        else:  # Backspace ends where it started; Delete stays where it is
            new_step = self.kind != "delete" or (where + len(removed) != self.cursor and where != self.cursor)
        if now - self.at > PAUSE_SECONDS:
            new_step = True
        if len(removed) > 1:
            # A selection removed (or typed over: "S" over "Stars" reads as "tars" deleted). What is
            # typed there next belongs to the same step, as a replacement does.
            kind = "insert"
        self.text, self.kind, self.at = new, kind, now
        self.cursor = where + len(inserted)
        return new_step
