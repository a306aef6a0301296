"""The budget cap: pause the run when its projected cost would pass the pipeline's `budget`.

The projection is live: what finished rows cost on average, times the rows still to
run, plus what has been spent (work shared by every row, a knowledge base, included once).
It pauses once when the projection first passes the budget (after a few rows, so one odd
row does not decide), and once more if the money actually spent passes it. Pausing lets
rows in flight finish; the user decides to resume or stop.

The engine owns its guard and tells it of every cost (`check`) and every finished row
(`row_finished`); nothing else drives it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from batchgrid.core.providers.prices import money

if TYPE_CHECKING:  # pragma: no cover
    from .engine import Progress

MIN_ROWS = 5  # finished rows before a projection is trusted


class BudgetGuard:
    def __init__(self, budget: float, progress: Progress, pause: Callable[[str], None]):
        self.budget = float(budget)
        self.progress = progress
        self.pause = pause
        self.finished_cost = 0.0
        self.finished_rows = 0
        self._warned_projection = False
        self._warned_spent = False

    def row_finished(self, cost: float) -> None:
        """A row is done or failed (a cancelled row is no evidence of what rows cost)."""
        self.finished_cost += cost
        self.finished_rows += 1
        self.check()

    def projected(self) -> float:
        p = self.progress
        if self.finished_rows == 0:
            return p.cost
        average = self.finished_cost / self.finished_rows
        rows_left = max(0, p.selected - self.finished_rows)
        return max(p.cost, p.shared_cost + self.finished_cost + average * rows_left)

    def check(self) -> None:
        """Called whenever a cost is added, and when a row finishes."""
        p = self.progress
        if not self._warned_spent and p.cost > self.budget:
            self._warned_spent = self._warned_projection = True
            self.pause(f"the run has spent {money(p.cost)}, more than its budget of {money(self.budget)}")
            return
        if self._warned_projection or self.finished_rows < min(MIN_ROWS, p.selected):
            return
        projected = self.projected()
        if projected > self.budget:
            self._warned_projection = True
            self.pause(f"the projected cost {money(projected)} would pass the budget of {money(self.budget)} "
                       f"({money(p.cost)} spent on {self.finished_rows:,} of {p.selected:,} rows)")
