"""One walk of the step tree for everyone: `iter_steps` yields each step with its path and the
columns it can read; `step_at` finds the step a path names. Problems and paths themselves
are plain data in core/util/problems.py (re-exported here).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from batchgrid.core.util.problems import Problem, StepPath, format_path

from .base import Step, all_writes

__all__ = ["Problem", "StepPath", "StepVisit", "format_path", "iter_steps", "step_at"]


@dataclass(frozen=True)
class StepVisit:
    """One step met by `iter_steps`: where it is, what it is, and the columns it can read."""

    path: StepPath
    step: Step
    available: tuple[str, ...]  # columns that exist before this step runs (inputs + earlier outputs)


def iter_steps(steps: Sequence[Step], columns: Iterable[str] = (), *, enabled_only: bool = False,
               _prefix: StepPath = ()) -> Iterator[StepVisit]:
    """Every step in order, depth first, with its path and the columns available before it.

    Branches of a parallel step run side by side: each sees what existed before the
    parallel step, and the parallel step's outputs are all its branches' outputs. A
    disabled step is visited (unless `enabled_only`) but adds no columns.
    """
    available = list(dict.fromkeys(columns))
    for i, step in enumerate(steps):
        if enabled_only and not step.enabled:
            continue
        path = (*_prefix, i)
        yield StepVisit(path, step, tuple(available))
        for name, branch in step.children().items():
            yield from iter_steps(branch, available, enabled_only=enabled_only, _prefix=(*path, name))
        if step.enabled:
            available += [c for c in all_writes(step) if c not in available]


def step_at(steps: Sequence[Step], path: StepPath) -> Step | None:
    """The step a path names, or None if the pipeline no longer has it."""
    current: Sequence[Step] = steps
    step: Step | None = None
    for part in path:
        if isinstance(part, int):
            if not 0 <= part < len(current):
                return None
            step = current[part]
        else:
            if step is None or part not in step.children():
                return None
            current = step.children()[part]
    return step
