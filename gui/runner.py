"""Runs a core Job on the qasync loop and relays what happens as Qt signals.

The engine's events go straight to the results model (which coalesces them); this
object only owns the asyncio task, polls the progress numbers a few times a second
and says when a run starts, pauses and ends.
"""

from __future__ import annotations

import asyncio
import gc

from batchgrid.core.run import events as ev
from batchgrid.core.run.engine import Engine
from batchgrid.core.run.job import Job
from PySide6.QtCore import QObject, QTimer, Signal

from . import gc_pause
from .results_model import ResultsModel

PROGRESS_MS = 200

# During a run the garbage collector is paused (gc_pause) and the young generations are
# collected on each progress tick instead. When the run ends, what survived (the results,
# mostly) is frozen, so later full collections do not scan it again (the window unfreezes
# it when it lets go of the sheet).


class RunController(QObject):
    started = Signal()
    progressed = Signal(object, bool)    # engine.progress, paused
    finished = Signal(str, str)          # reason ("finished", "stopped", "failed"), message
    pausedBy = Signal(str)               # the engine paused itself, saying why (a budget, say)

    def __init__(self, model: ResultsModel, parent=None):
        super().__init__(parent)
        self.model = model
        self.job: Job | None = None
        self.engine: Engine | None = None
        self.task: asyncio.Task | None = None
        self.last_reason = ""
        self.last_message = ""
        self._active = False
        self._timer = QTimer(self)
        self._timer.setInterval(PROGRESS_MS)
        self._timer.timeout.connect(self._tick)

    @property
    def running(self) -> bool:
        return self._active

    @property
    def paused(self) -> bool:
        return self.engine is not None and self.engine.paused

    def start(self, job: Job, mode: str = "all", rows: list[int] | None = None,
              max_concurrency: int | None = None) -> None:
        """Start a run. Raises core's errors (invalid pipeline, untrusted code) before any row runs."""
        if self.running:
            raise RuntimeError("a run is already in progress")
        engine = job.start(mode, rows=rows, max_concurrency=max_concurrency)
        self.job, self.engine = job, engine
        self.last_reason = self.last_message = ""
        self.model.run_starting(engine.results, engine.selection)
        engine.subscribe(self.model.on_event)
        engine.subscribe(self._on_event)
        self._active = True
        gc_pause.pause()
        self.task = asyncio.ensure_future(self._run(engine))
        self._timer.start()
        self.started.emit()

    async def _run(self, engine: Engine) -> None:
        reason, message = "failed", ""
        try:
            await engine.run()
            reason, message = self.last_reason or "finished", self.last_message
        except asyncio.CancelledError:
            reason = "stopped"
        except Exception as exc:  # the engine reports row failures itself; this is a broken run
            message = str(exc) or type(exc).__name__
        finally:
            self._active = False
            self._timer.stop()
            gc_pause.collect_young()
            gc.freeze()
            gc_pause.resume()
            self.model.run_ended()
            self.progressed.emit(engine.progress, False)
            self.finished.emit(reason, message)

    def _on_event(self, event: object) -> None:
        if isinstance(event, ev.RunFinished):
            self.last_reason = event.reason
            self.last_message = event.message
        elif isinstance(event, (ev.RunPaused, ev.RunResumed)):
            self._tick()
            if isinstance(event, ev.RunPaused) and event.reason:
                self.pausedBy.emit(event.reason)

    def _tick(self) -> None:
        if self._active:
            gc_pause.collect_young()
        if self.engine is not None:
            self.progressed.emit(self.engine.progress, self.engine.paused)

    def stop(self) -> None:
        if self.engine is not None and self.running:
            self.engine.stop()

    def toggle_pause(self) -> None:
        if self.engine is None or not self.running:
            return
        if self.engine.paused:
            self.engine.resume()
        else:
            self.engine.pause()

    async def wait(self) -> None:
        """Until the current run has ended (closing the window waits for a stop)."""
        if self.task is not None:
            await asyncio.gather(self.task, return_exceptions=True)
