"""The CLI's live progress bar (rich): done, failed, in flight, rows/s, ETA, tokens and cost, and
the server the run waits for ("waiting for the server at ... (retrying in 8 s)"), and a step in batch mode's
batches ("batch submitted 2 h ago: 41,200 of 50,000 done at the provider")."""

from __future__ import annotations

import time

from batchgrid.core.run import events as ev
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn


class ProgressBar:
    def __init__(self, engine, console: Console | None = None):
        self.engine = engine
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=console or Console(stderr=True),
            refresh_per_second=8,
            transient=False,
        )
        self._task: TaskID | None = None

    def __enter__(self) -> ProgressBar:
        self._progress.start()
        p = self.engine.progress
        self._task = self._progress.add_task("running", total=p.selected, detail="")
        return self

    def __exit__(self, *exc) -> None:
        self._refresh()
        self._progress.stop()

    def on_event(self, event: object) -> None:
        if isinstance(event, (ev.RowFinished, ev.RunPaused, ev.RunResumed, ev.RunFinished, ev.RunWaiting,
                              ev.ServerBack, ev.BatchWaiting)):
            self._refresh()

    def _refresh(self) -> None:
        p = self.engine.progress
        eta = p.eta
        detail = (f"[green]{p.done} done[/] [red]{p.failed} failed[/] {p.running} in flight "
                  f"{p.rows_per_second:,.0f} rows/s" + (f" ETA {eta:,.0f} s" if eta is not None else ""))
        if p.tokens_in or p.tokens_out:
            detail += f" {p.tokens_in + p.tokens_out:,} tokens ${p.cost:.4f}"
        if p.waiting:  # a server that stopped answering: "waiting for the server at ... (retrying in 8 s)"
            detail += f" [yellow]{waiting_text(p)}[/]"
        if getattr(p, "batch", ""):  # batch mode: "batch submitted 2 h ago: 41,200 of 50,000 done at the provider"
            detail += f" [yellow]{p.batch}[/]"
        state = ("paused" if self.engine.paused else "waiting" if p.waiting
                 else "at the provider" if getattr(p, "batch", "") else "running")
        if self._task is None:
            return
        self._progress.update(self._task, completed=p.finished, detail=detail, description=state)


def waiting_text(p) -> str:
    """"waiting for the server at URL (retrying in 8 s)" from the run's progress."""
    left = max(0.0, p.waiting_until - time.perf_counter())
    return f"{p.waiting} (retrying in {left:.0f} s)"
