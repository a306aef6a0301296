"""A run's plan: its steps bound for the run, in order, each with where it is and its label.

The engine binds the pipeline's top-level steps with `bind_steps`; a parallel step binds
each of its branches the same way (branches are bound recursively). A plan knows paths and
labels relative to its owner: `(2,)` and "3. Summarise" at the top; `("a", 0)` and
"a › 1. Trim" in branch "a" of a parallel step, to which the engine adds the parallel
step's own path and label when the branch runs.

A step with a condition (`when`, core/steps/conditions.py) is planned as a `ConditionalCall`:
the engine calls it like any async step, and a row that does not meet the condition gets the
step's outputs blank (or as the row already has them) without the step running, its trace
saying "skipped: rating is not < 3" (through `ctx.note`, which the engine puts in the trace).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from batchgrid.core.util.patterns import NeedsWorkerThread

from . import conditions
from .base import BoundStep, Step, all_writes
from .tree import StepPath

if TYPE_CHECKING:  # pragma: no cover
    from .context import RunResources, StepContext


class PlannedStep(NamedTuple):
    """One bound step of a plan. A tuple, so the engine's per-row loop can unpack it cheaply."""

    path: StepPath
    label: str
    is_async: bool
    call: Callable[..., Any]  # `run(row, ctx)` (awaited) when is_async, else `apply(row)`
    bound: BoundStep


async def bind_steps(steps: Sequence[Step], resources: RunResources, *, branch: str = "") -> list[PlannedStep]:
    """Bind the enabled steps of `steps` for one run. A step's number is its place in the
    list (as the user sees it), disabled steps included; `branch` names the parallel
    step's branch these steps are."""
    plan: list[PlannedStep] = []
    for i, step in enumerate(steps):
        if not step.enabled:
            continue
        bound = await step.bind(resources)
        path: StepPath = (branch, i) if branch else (i,)
        label = f"{branch} › {i + 1}. {step.label}" if branch else f"{i + 1}. {step.label}"
        # A plain binding would only pass the call on to the declaration: call it directly.
        owner: Any = step if type(bound) is BoundStep else bound
        call = owner.run if bound.is_async else owner.apply
        condition = conditions.parse(step.when)
        if condition is not None:
            plan.append(PlannedStep(path, label, True, ConditionalCall(condition, call, bound.is_async, step), bound))
        else:
            plan.append(PlannedStep(path, label, bound.is_async, call, bound))
    return plan


class ConditionalCall:
    """A conditioned step's call: the step's own call on rows that meet the condition; on the
    others its outputs as they stand (blank, or the value the row already has) and a note.

    Always async, so the skip can say why in the row's trace (the engine keeps an async step's
    `ctx.note` details). A sync step's call runs as the engine would run it: on the loop, or in
    a worker thread when a pattern of the user's outran its slice of the loop.
    """

    __slots__ = ("condition", "inner", "inner_async", "outputs")

    def __init__(self, condition: conditions.Condition, inner: Callable[..., Any], inner_async: bool, step: Step):
        self.condition, self.inner, self.inner_async = condition, inner, inner_async
        self.outputs = all_writes(step)

    def skipped(self, row: dict[str, Any]) -> dict[str, Any]:
        return {c: row.get(c) for c in self.outputs}

    async def __call__(self, row: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        try:
            why = self.condition.unmet(row)
        except NeedsWorkerThread:
            why = await asyncio.to_thread(self.condition.unmet, row)
        if why is not None:
            ctx.note(skipped=why)
            return self.skipped(row)
        if self.inner_async:
            return await self.inner(row, ctx)
        try:
            return self.inner(row)
        except NeedsWorkerThread:
            return await asyncio.to_thread(self.inner, row)
