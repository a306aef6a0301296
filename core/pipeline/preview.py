"""What a step writes on one row, worked out without a run, for the editor's output preview.

Only cheap steps are run: text and data steps that need no model, no web, no trusted code and
no file (their `apply` on the row's values). Earlier steps run first, in order, as a run would;
an earlier step that is not cheap contributes the values its columns already have on the row (a
finished run's), or the preview says it needs a run. A step whose condition (`when`) the row does
not meet is skipped, as in a run: an earlier one leaves the values as they are, the target says why.
Nothing here calls out of the process.

`plan` copies what it needs on the caller's thread (the editor goes on editing the steps);
`OutputPlan.outputs` may then run in a worker thread.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from batchgrid.core.steps import conditions
from batchgrid.core.steps.base import Step, all_writes

NEEDS_RUN = "runs when you press Run (or Run up to here)"


def is_cheap(step: Step) -> bool:
    """The step runs in-process on the row alone: no model, web, code, file or branches."""
    cls = type(step)
    return (not cls.external and not cls.runs_code and cls.bind is Step.bind and cls.run is Step.run
            and not step.children())


@dataclass(frozen=True)
class OutputPreview:
    outputs: dict[str, Any] | None  # what the step writes on the row; None: not worked out (see note)
    note: str = ""                  # why not, or the row's error, in words


@dataclass(frozen=True)
class Earlier:
    """An enabled step that runs before the target: a copy to run when it is cheap, else what it writes."""

    step: Step | None            # a copy of a cheap step; None for one that needs a run
    label: str
    writes: tuple[str, ...]
    when: Any = None             # its condition, as the file has it


@dataclass(frozen=True)
class OutputPlan:
    earlier: tuple[Earlier, ...]
    target: Step | None          # a copy of a cheap target; None when the target needs a run
    enabled: bool = True
    when: Any = None             # the target's condition

    def outputs(self, row: Mapping[str, Any]) -> OutputPreview:
        if not self.enabled:
            return OutputPreview(None, "This step is off: it writes nothing.")
        values = dict(row)
        if self.target is None:
            why = _unmet(self.when, values)  # on the row as it stands (with a finished run's values)
            return OutputPreview(None, f"Skipped on this row: {why}." if why else f"It {NEEDS_RUN}.")
        for step in self.earlier:
            if _unmet(step.when, values):
                continue  # skipped on this row, as a run skips it: the values stay as they are
            if step.step is not None:
                try:
                    values.update(step.step.apply(values))
                except Exception as exc:
                    return OutputPreview(None, f"{step.label}, earlier, fails on this row: {_words(exc)}")
            elif any(name not in values for name in step.writes):
                return OutputPreview(None, f"It needs what {step.label} writes, which {NEEDS_RUN}.")
        why = _unmet(self.when, values)
        if why:
            return OutputPreview(None, f"Skipped on this row: {why}.")
        try:
            return OutputPreview(self.target.apply(values))
        except Exception as exc:
            return OutputPreview(None, f"Fails on this row: {_words(exc)}")


def plan(steps: Sequence[Step], target: Step) -> OutputPlan | None:
    """What runs before `target` (in its branch too), copied on this thread; None if it is not in `steps`."""
    chain = _chain(steps, target)
    if chain is None:
        return None
    earlier = tuple(Earlier(_copy(s), s.label, tuple(all_writes(s)), copy.deepcopy(s.when)) for s in chain)
    return OutputPlan(earlier, _copy(target), target.enabled, copy.deepcopy(target.when))


def _chain(steps: Sequence[Step], target: Step) -> list[Step] | None:
    for i, step in enumerate(steps):
        before = [s for s in steps[:i] if s.enabled]
        if step is target:
            return before
        for branch in step.children().values():
            inner = _chain(branch, target)
            if inner is not None:  # a branch sees what existed before its parallel step
                return before + inner
    return None


def _copy(step: Step) -> Step | None:
    """A copy of a cheap step to run in another thread; None for a step that needs a run."""
    if not is_cheap(step):
        return None
    return type(step)(copy.deepcopy(step.config), name=step.name, enabled=step.enabled, when=copy.deepcopy(step.when))


def _unmet(when: Any, values: Mapping[str, Any]) -> str:
    """Why the row does not meet `when` ('' when it does, has none, or it cannot be tested here:
    the step's problem says that)."""
    if not when:
        return ""
    try:
        condition = conditions.parse(when)
        return (condition.unmet(values) or "") if condition is not None else ""
    except Exception:
        return ""


def _words(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
