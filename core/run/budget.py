"""The budget cap: pause the run when its projected cost would pass the pipeline's `budget`.

The projection is live: what finished rows cost on average, times the rows still to
run, plus what has been spent. It pauses once when the projection first passes the
budget (after a few rows, so one odd row does not decide), and once more if the money
actually spent passes it. Pausing lets rows in flight finish; the user decides to resume
or stop.
"""

from __future__ import annotations

from batchgrid.core.providers.prices import money

from . import events as ev

MIN_ROWS = 5  # finished rows before a projection is trusted


class BudgetGuard:
    def __init__(self, engine, budget: float):
        self.engine = engine
        self.budget = float(budget)
        self.finished_cost = 0.0
        self.finished_rows = 0
        self._warned_projection = False
        self._warned_spent = False

    def on_event(self, event: object) -> None:
        if isinstance(event, (ev.RowDone, ev.RowFailed)):
            self.finished_cost += event.result.cost
            self.finished_rows += 1
            self.check(self.engine)

    def projected(self) -> float:
        p = self.engine.progress
        if self.finished_rows == 0:
            return p.cost
        average = self.finished_cost / self.finished_rows
        return max(p.cost, self.finished_cost + average * max(0, p.selected - self.finished_rows))

    def check(self, engine) -> None:
        """A usage hook: called whenever a call's cost is added."""
        p = engine.progress
        if not self._warned_spent and p.cost > self.budget:
            self._warned_spent = self._warned_projection = True
            engine.pause(f"the run has spent {money(p.cost)}, more than its budget of {money(self.budget)}")
            return
        if self._warned_projection or self.finished_rows < min(MIN_ROWS, p.selected):
            return
        projected = self.projected()
        if projected > self.budget:
            self._warned_projection = True
            engine.pause(f"the projected cost {money(projected)} would pass the budget of {money(self.budget)} "
                         f"({money(p.cost)} spent on {self.finished_rows:,} of {p.selected:,} rows)")


def install_budget(engine) -> BudgetGuard | None:
    """Watch the run's cost if the pipeline sets a budget (settings.budget, in dollars)."""
    budget = (engine.resources.settings or {}).get("budget")
    if budget is None:
        return None
    guard = BudgetGuard(engine, budget)
    engine.usage_hooks.append(guard.check)
    engine.subscribe(guard.on_event)
    return guard
