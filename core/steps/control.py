"""Control steps: parallel branches within a row."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .base import BRANCHES, BoundStep, Param, Step, register
from .plan import PlannedStep, bind_steps

if TYPE_CHECKING:  # pragma: no cover
    from .context import RunResources, StepContext


@register
class Parallel(Step):
    type = "parallel"
    title = "Parallel branches"
    group = "Control"
    description = "Run several lists of steps side by side on the same row; keep all their outputs."
    params = (
        Param("branches", BRANCHES, {}, "Branch name to a list of steps. Every branch sees the row as it is "
              "before this step; their outputs are merged.", required=True),
    )

    def children(self) -> dict[str, list[Step]]:
        return self.config["branches"]

    def writes(self) -> list[str]:
        return []  # the engine collects the branches' outputs

    def check(self) -> list[tuple[str, str]]:
        if not self.children():
            return [("branches", "add at least one branch")]
        return []

    @classmethod
    def is_async(cls) -> bool:
        return True

    async def bind(self, resources: RunResources) -> Branches:
        plans = [await bind_steps(steps, resources, branch=name) for name, steps in self.children().items()]
        return Branches(self, [plan for plan in plans if plan])  # a branch with no enabled step does nothing


class Branches(BoundStep):
    """A parallel step bound to one run: each branch's steps, bound."""

    def __init__(self, step: Parallel, plans: list[list[PlannedStep]]):
        super().__init__(step, is_async=True)
        self.plans = plans

    async def run(self, row: Mapping[str, Any], ctx: StepContext) -> dict[str, Any]:
        if len(self.plans) == 1:
            return await ctx.run_steps(self.plans[0], dict(row))
        # A TaskGroup cancels the other branches as soon as one fails: the row has failed,
        # and a sibling's call must not keep running (and billing) for nothing.
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(ctx.run_steps(plan, dict(row))) for plan in self.plans]
        except BaseExceptionGroup as failure:
            raise failure.exceptions[0] from None
        merged: dict[str, Any] = {}
        for task in tasks:
            merged.update(task.result())
        return merged
