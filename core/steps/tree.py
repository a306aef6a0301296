"""One walk of the step tree for everyone, and problems located by path instead of by text.

A `StepPath` names one step in a pipeline: `(2,)` is the third top-level step; `(0, "x", 1)`
is the second step of branch "x" of the first step. The window shows problems and traces
by path; the CLI prints `str(problem)`, which keeps the familiar text
`steps[0].branches.x[1].source: unknown column "reveiw"`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence, Union

from .base import Step, all_writes

StepPath = tuple[Union[int, str], ...]


def format_path(path: StepPath, root: str = "steps") -> str:
    """`(0, "x", 1)` -> `steps[0].branches.x[1]`."""
    text = root
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".branches.{part}"
    return text


@dataclass(frozen=True)
class Problem:
    """Something that stops a pipeline from running, located by data, not by text.

    `path` is the step it is about (None for the pipeline's own fields); `param` the
    parameter of that step, or for a pipeline field its dotted name ("settings.budget").
    """

    message: str
    path: StepPath | None = None
    param: str = ""

    def where(self) -> str:
        if self.path is None:
            return self.param
        base = format_path(self.path)
        return f"{base}.{self.param}" if self.param else base

    def __str__(self) -> str:
        where = self.where()
        return f"{where}: {self.message}" if where else self.message


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
