"""Control steps: parallel branches within a row."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from .base import BRANCHES, Param, Step, register


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

    async def run(self, row: Mapping[str, Any], ctx) -> dict[str, Any]:
        prefix = ctx.step
        branches = [(name, steps) for name, steps in self.children().items() if any(s.enabled for s in steps)]
        if len(branches) == 1:
            name, steps = branches[0]
            return await ctx.run_steps(steps, dict(row), f"{prefix} › {name} › ")
        # A TaskGroup cancels the other branches as soon as one fails: the row has failed,
        # and a sibling's call must not keep running (and billing) for nothing.
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(ctx.run_steps(steps, dict(row), f"{prefix} › {name} › "))
                         for name, steps in branches]
        except BaseExceptionGroup as failure:
            raise failure.exceptions[0] from None
        merged: dict[str, Any] = {}
        for task in tasks:
            merged.update(task.result())
        return merged
