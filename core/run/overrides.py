"""A review pass over the results: each row's decision (accepted, edited, rejected) and the cells the
user edited, which override what the steps wrote.

Reviews belong to the sheet (its file and sheet name), not to a run: a rerun, Run all again or an
edited pipeline never overwrites an edited cell (the result store reads the override first). Each
review is keyed by row number and carries the hash of the row's input, so it follows its row: a
row whose input changed since is found by that hash elsewhere in the sheet (a row inserted above
it) or, when it cannot be found, its review is dropped with a note. Every change is written to the
journal's `overrides` table at once (one autocommitted statement: a SIGKILL keeps it).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from batchgrid.core.table import Table

    from .journal import Journal

ACCEPTED, EDITED, REJECTED = "accepted", "edited", "rejected"
DECISIONS = (ACCEPTED, EDITED, REJECTED)
# The export's "review" column: an accepted row reads "reviewed"; blank when not reviewed.
EXPORT_WORDS = {ACCEPTED: "reviewed", EDITED: "edited", REJECTED: "rejected"}
REVIEW_COLUMN = "review"


@dataclass(frozen=True)
class Review:
    decision: str
    input_hash: str
    edits: dict[str, Any] = field(default_factory=dict)  # output column -> the value the user typed
    at: float = 0.0


def review_key(path: Any, sheet: str | None) -> str:
    """Which sheet reviews belong to: its file and its sheet's name."""
    return hashlib.sha256(f"{path or ''}|{sheet or ''}".encode()).hexdigest()[:16]


def coerce(text: str, like: Any) -> Any:
    """A value the user typed, as the kind of value the step wrote: a number stays a number, a list
    or a dict stays JSON; anything that does not read so stays text ('' for a blank non-text: None)."""
    if isinstance(like, str) or like is None:
        return text
    stripped = text.strip()
    if not stripped:
        return None
    if isinstance(like, bool):
        lowered = stripped.lower()
        return {"true": True, "false": False}.get(lowered, text)
    if isinstance(like, (int, float)):
        try:
            number = float(stripped.replace(",", ""))
        except ValueError:
            return text
        return int(number) if isinstance(like, int) and number.is_integer() else number
    if isinstance(like, (dict, list)):
        try:
            return json.loads(stripped)
        except ValueError:
            return text
    return text


class Overrides:
    """The reviews of one sheet's rows, by row number; written through to `journal` (if any)."""

    def __init__(self, journal: Journal | None = None, key: str = ""):
        self.journal = journal
        self.key = key
        self.rows: dict[int, Review] = {}
        self.notes: list[str] = []  # what loading said (reviews dropped or moved), one line each

    def __len__(self) -> int:
        return len(self.rows)

    def __contains__(self, row: object) -> bool:
        return row in self.rows

    def get(self, row: int) -> Review | None:
        return self.rows.get(row)

    def copy(self) -> Overrides:
        """A copy later reviews do not change (for work in another thread)."""
        copy = Overrides()
        copy.rows = dict(self.rows)
        return copy

    # ---- changes (each written to the journal before it is kept) -------------------------------
    def decide(self, row: int, decision: str, input_hash: str, edits: Mapping[str, Any] | None = None) -> Review:
        """Record `decision` on `row` with these edits (the whole set: it replaces the row's)."""
        if decision not in DECISIONS:
            raise ValueError(f"unknown review decision {decision!r}")
        review = Review(decision, input_hash, dict(edits or {}), time.time())
        if self.journal is not None:
            self.journal.save_override(self.key, row, review.input_hash, review.decision, review.edits)
        self.rows[row] = review
        return review

    def forget(self, rows: Iterable[int] | None = None) -> list[int]:
        """Forget the reviews of `rows` (every row's when None); the rows that had one."""
        gone = list(self.rows) if rows is None else [r for r in rows if r in self.rows]
        if gone and self.journal is not None:
            self.journal.delete_overrides(self.key, gone)
        for row in gone:
            del self.rows[row]
        return gone

    # ---- reading -------------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(DECISIONS, 0)
        for review in self.rows.values():
            counts[review.decision] += 1
        return counts

    def summary(self, total: int) -> str:
        """'412 accepted, 23 edited, 9 rejected of 500' ('' when no row is reviewed)."""
        if not self.rows:
            return ""
        counts = self.counts()
        return ", ".join(f"{counts[d]:,} {d}" for d in DECISIONS) + f" of {total:,}"

    def word(self, row: int) -> str | None:
        """The export's review column for a row: reviewed / edited / rejected, None if not reviewed."""
        review = self.rows.get(row)
        return EXPORT_WORDS[review.decision] if review is not None else None

    def edited_rows(self) -> list[int]:
        return sorted(r for r, review in self.rows.items() if review.edits)


def load(journal: Journal | None, key: str, table: Table, input_hash: Callable[[Mapping[str, Any]], str]) -> Overrides:
    """The reviews the journal kept for this sheet, matched to `table`'s rows by their inputs' hash
    (in a worker thread: it may hash the whole sheet). A review whose row's input changed moves to
    the one row that now has its input, or is dropped; either is said in `notes` and written back.
    Rows beyond the table (a sheet read with a row limit) keep their reviews, unapplied."""
    found = Overrides(journal, key)
    if journal is None:
        return found
    stored = journal.load_overrides(key)
    n = len(table)
    changed: dict[int, Review] = {}
    for row, review in stored.items():
        if row >= n:
            continue
        if input_hash(table.row(row)) == review.input_hash:
            found.rows[row] = review
        else:
            changed[row] = review
    if not changed:
        return found
    where: dict[str, list[int]] = {}
    wanted = {r.input_hash for r in changed.values()}
    for row in range(n):
        h = input_hash(table.row(row))
        if h in wanted:
            where.setdefault(h, []).append(row)
    moved, dropped = [], []
    for old, review in sorted(changed.items()):
        places = where.get(review.input_hash, [])
        if len(places) == 1 and places[0] not in found.rows:
            found.rows[places[0]] = review
            moved.append((old, places[0]))
        else:
            dropped.append(old)
    journal.delete_overrides(key, list(changed))  # then the moved ones at their new rows
    for _, row in moved:
        review = found.rows[row]
        journal.save_override(key, row, review.input_hash, review.decision, review.edits, review.at)
    if moved:
        found.notes.append(f"{_count(len(moved))} followed {'its row' if len(moved) == 1 else 'their rows'} to a new "
                           f"place in the sheet: {_pairs(moved)}")
    if dropped:
        found.notes.append(f"{_count(len(dropped))} dropped: the input of {_rows(dropped)} changed since")
    return found


def _count(n: int) -> str:
    return f"{n:,} review{'s' if n != 1 else ''}"


def _rows(rows: list[int], limit: int = 8) -> str:
    shown = ", ".join(str(r + 1) for r in rows[:limit]) + (f" and {len(rows) - limit:,} more" if len(rows) > limit else "")
    return f"row{'s' if len(rows) != 1 else ''} {shown}"


def _pairs(pairs: list[tuple[int, int]], limit: int = 8) -> str:
    shown = ", ".join(f"row {a + 1} → {b + 1}" for a, b in pairs[:limit])
    return shown + (f" and {len(pairs) - limit:,} more" if len(pairs) > limit else "")
