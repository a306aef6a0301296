"""Problems located by data, not by text: which step (a path) and which parameter.

A `StepPath` names one step in a pipeline: `(2,)` is the third top-level step; `(0, "x", 1)`
is the second step of branch "x" of the first step. The window finds the step by its path;
the CLI prints `str(problem)`, which keeps the familiar line
`steps[0].branches.x[1].source: unknown column "reveiw"`.

It lives at the bottom layer so that every layer (and `PipelineError`) can hold one.
"""

from __future__ import annotations

from dataclasses import dataclass

StepPath = tuple[int | str, ...]


def format_path(path: StepPath, root: str = "steps") -> str:
    """`(0, "x", 1)` -> `steps[0].branches.x[1]`."""
    text = root
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".branches.{part}"
    return text


@dataclass(frozen=True)
class Problem:
    """Something that stops a pipeline from running, with where it is.

    `path` is the step it is about (None for the pipeline's own fields or its file); `param`
    the parameter of that step, possibly with a part of it ("paths.bad", "fields[1].type"),
    or for a pipeline field its dotted name ("settings.budget", "providers.local.rpm").
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
