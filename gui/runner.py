"""Runs the session's runs on the qasync loop and relays what happens as Qt signals.

The session owns the run and its results (core/session.py); the engine's events update the
session's result store, which tells the results model which rows to repaint. This object
polls the progress numbers a few times a second and says when a run starts, pauses and ends.
"""

from __future__ import annotations

import asyncio
import gc

from batchgrid.core.run import events as ev
from batchgrid.core.session import Session
from batchgrid.core.util import gc_pause
from PySide6.QtCore import QObject, QTimer, Signal

from .results_model import ResultsModel

PROGRESS_MS = 200
QTIMER_MAX_SECONDS = (2**31 - 1) / 1000  # a QTimer's interval: an int of milliseconds (24.8 days)

# During a run the garbage collector is paused (gc_pause) and the young generations are
# collected on each progress tick instead. When a run ends after an earlier one, one full collection frees what
# earlier runs left in reference cycles (clients, futures), then what survives (the results,
# mostly) is frozen, so later full collections do not scan it again. The next run unfreezes
# it first, so its end can free this run's garbage in turn.


# What a run that paused itself offers, by why it paused (events.RunPaused.kind).
_RESUME_HINTS = {
    "failures": ("Resume anyway to go on, or Stop", "Resume anyway"),
    "server": ("Resume when it is back, or Stop", "Resume"),
    "wait": ("Resume to try again, or Stop", "Resume"),
}


def pause_offer(event: ev.RunPaused) -> tuple[str, str]:
    """The message bar's line for a run that paused itself, and its Resume button's label."""
    hint, label = _RESUME_HINTS.get(event.kind, ("Resume to go on anyway, or Stop", "Resume"))
    return f"Paused: {event.reason}. {hint}; finished rows are kept.", label


def allow_endless_timers(loop: asyncio.AbstractEventLoop) -> None:
    """qasync hands each timer to a QTimer, whose interval is an int of milliseconds: an endless one, as
    Dask's `asyncio.timeout(math.inf)` around every connection, raises OverflowError there. On the
    window's loop, a timer past a QTimer's range gets a handle that is never scheduled: it would not fire
    in this session anyway, and it cancels as any other."""
    import qasync  # here: it binds to the Qt imported first (PySide6, by then)

    if not isinstance(loop, qasync.QEventLoop) or getattr(loop, "endless_timers", False):
        return
    call_later = loop.call_later

    def within_range(delay, callback, *args, context=None):
        if delay > QTIMER_MAX_SECONDS:
            return asyncio.Handle(callback, args, loop, context=context)
        return call_later(delay, callback, *args, context=context)

    loop.call_later = within_range  # type: ignore[method-assign]  # qasync's call_at calls it too
    loop.endless_timers = True  # type: ignore[attr-defined]


class RunController(QObject):
    starting = Signal()                  # a run is being set up (a cluster connecting): Stop is offered already
    started = Signal()
    progressed = Signal(object, bool)    # the run's progress, paused
    finished = Signal(str, str)          # reason ("finished", "stopped", "failed"), message
    pausedBy = Signal(str, str)          # the engine paused itself: the message to show, the Resume button's label

    def __init__(self, session: Session, model: ResultsModel, parent=None):
        super().__init__(parent)
        self.session = session
        self.model = model
        self.task: asyncio.Task | None = None
        self._active = False
        self._earlier_run_frozen = False
        self._timer = QTimer(self)
        self._timer.setInterval(PROGRESS_MS)
        self._timer.timeout.connect(self._tick)
        session.listeners.append(self._on_event)

    @property
    def running(self) -> bool:
        return self._active

    @property
    def paused(self) -> bool:
        return self.session.paused

    async def start(self, mode: str = "all", rows: list[int] | None = None,
                    max_concurrency: int | None = None, up_to: int | None = None, cluster: str | None = None) -> None:
        """Start a run (its rows on the Dask cluster at `cluster`, when given). Raises core's errors (invalid
        pipeline, untrusted code, no key, no cluster there) before any row runs."""
        if self._active:
            raise RuntimeError("a run is already in progress")
        self._active = True
        self.starting.emit()
        header = list(self.model.headers)
        try:
            # The last run's survivors may be collected now (else every run leaks what it left in cycles).
            self._earlier_run_frozen = gc.get_freeze_count() > 0
            gc.unfreeze()
            if cluster is not None:
                allow_endless_timers(asyncio.get_running_loop())
            await self.session.start(mode, rows=rows, max_concurrency=max_concurrency, up_to=up_to, cluster=cluster)
        except BaseException:
            self._active = False
            raise
        if self.model.headers != header:  # the pipeline's outputs changed since the table was shown
            self.model.store_reset()
        self.model.run_started()
        gc_pause.pause()
        self.task = asyncio.ensure_future(self._watch())
        self._timer.start()
        self.started.emit()

    async def _watch(self) -> None:
        reason, message = "failed", ""
        try:
            reason, message = await self.session.wait()
        finally:
            self._active = False
            self._timer.stop()
            if self._earlier_run_frozen:  # a full collection (0.3 s at 200,000 rows) only when there is
                gc.collect()              # an earlier run's garbage to free, never after the first run
            else:
                gc_pause.collect_young()
            gc_pause.keep_long_lived()
            gc_pause.resume()
            self.model.run_ended()
            if self.session.progress is not None:
                self.progressed.emit(self.session.progress, False)
            self.finished.emit(reason, message)

    def _on_event(self, event: object) -> None:
        if isinstance(event, (ev.RunPaused, ev.RunResumed, ev.RunWaiting, ev.ServerBack, ev.BatchWaiting)):
            self._tick()  # "waiting for the server at ..." (or a batch's progress) shows (and goes) at once
            if isinstance(event, ev.RunPaused) and event.reason:
                self.pausedBy.emit(*pause_offer(event))

    def _tick(self) -> None:
        if self._active:
            gc_pause.collect_young()
        if self.session.progress is not None:
            self.progressed.emit(self.session.progress, self.session.paused)

    def stop(self) -> None:
        self.session.stop()

    def toggle_pause(self) -> None:
        if self.session.paused:
            self.session.resume()
        else:
            self.session.pause()

    async def wait(self) -> None:
        """Until the current run has ended (closing the window waits for a stop)."""
        if self.task is not None:
            await asyncio.gather(self.task, return_exceptions=True)
