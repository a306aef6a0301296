"""A run's plan: its steps bound for the run, in order, each with where it is and its label.

The engine binds the pipeline's top-level steps with `bind_steps`; a parallel step binds
each of its branches the same way (branches are bound recursively). A plan knows paths and
labels relative to its owner: `(2,)` and "3. Summarise" at the top; `("a", 0)` and
"a › 1. Trim" in branch "a" of a parallel step, to which the engine adds the parallel
step's own path and label when the branch runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from .base import BoundStep, Step
from .tree import StepPath

if TYPE_CHECKING:  # pragma: no cover
    from .context import RunResources


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
        plan.append(PlannedStep(path, label, bound.is_async, call, bound))
    return plan
