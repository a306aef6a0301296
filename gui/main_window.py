"""The main window: palette, pipeline, step form, run bar, results, row inspector.

A view over core's Session (core/session.py), which does all the work: opening sheets,
checking and saving pipelines, estimating cost, finding resumable runs, running, exporting,
every file and database operation off the event loop. The window shows the session's state
and turns clicks into calls on it; runs are asyncio tasks on the qasync loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from batchgrid.core.run import events as ev
from batchgrid.core.run.cluster import ClusterError
from batchgrid.core.session import Session
from batchgrid.core.util import secrets
from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (
    QMainWindow,
)

from .actions import build_actions
from .column_summary import install_column_summaries
from .document import PipelineDocument
from .icons import icon
from .results_model import ResultsModel
from .results_pane import install_table_conventions
from .review import ask_about_review_edits, install_review
from .run_bar import duration
from .run_chart import install_run_chart
from .runner import RunController
from .settings import AppSettings, SettingsDialog
from .style import style_sheet
from .widgets import ask_user, install_wheel_guard, one_line
from .window_files import FileActions
from .window_layout import build_layout, connect_signals, restore_layout, save_layout

ESTIMATE_DELAY_MS = 400
TRUST_LIST_LIMIT = 12  # permissions listed in the trust question


class MainWindow(FileActions, QMainWindow):
    sheetLoaded = Signal()           # a sheet is shown (or failed to load: see last_message)
    runFinished = Signal(str, str)   # reason, message
    exportFinished = Signal(str)     # the path written, or "" when it failed
    messageShown = Signal(str)       # every message the window shows the user
    closed = Signal()                # the session was closed (the run stopped, the journal closed)

    def __init__(self, settings: AppSettings | None = None, journal_path: Path | None = None):
        super().__init__()
        self.settings = settings or AppSettings()
        self.session = Session(journal_path=journal_path)
        self.doc = PipelineDocument(self)
        self.last_message = ""
        self.ask: Callable[[str, str], bool] = lambda title, text: ask_user(self, title, text)
        self.ask_save_path: Callable[[], str] = self._ask_export_path
        self._tasks: set[asyncio.Task] = set()
        self._pipeline_saved = True
        self.loading = False            # a sheet is being read
        self._shown_row: tuple = ()     # what the inspector shows: (row, result, status)
        self._fitted = False            # output columns sized during this run
        self._estimate_generation = 0
        self._closing = False
        self._up_to = ""                # what a run up to a step runs ("steps 1–2 (Trim, LLM)"), while it runs

        self.model = ResultsModel(self.session.store, self)
        self.runner = RunController(self.session, self.model, self)
        self._estimate_timer = QTimer(self)  # edits come in bursts: estimate once they pause
        self._estimate_timer.setSingleShot(True)
        self._estimate_timer.setInterval(ESTIMATE_DELAY_MS)
        self._estimate_timer.timeout.connect(self.update_estimate)
        self.setWindowIcon(icon("app"))
        self.setAcceptDrops(True)
        self._styled_for = ""
        self.restyle()
        install_wheel_guard()  # the wheel scrolls the forms, never a value the user is not editing
        build_layout(self)
        self.form_panel.app_settings = self.settings  # the run settings' Run on (this computer's choice)
        build_actions(self)
        connect_signals(self)
        install_table_conventions(self)  # the table's filter line, find bar and menus (results_pane.py)
        install_column_summaries(self)   # View ▸ Column summary; a header's right-click ▸ Summary
        install_run_chart(self)          # beside the run bar; View ▸ Run chart
        install_review(self)             # Run ▸ Review results (Ctrl+R): the review panel in the table's place
        # An opened pipeline's rows at once wins over the box (the box sends it to every run).
        self.doc.pipelineReplaced.connect(self._settings_changed)
        self.run_bar.settingsClicked.connect(self.show_run_settings)
        self.cards.viewport().installEventFilter(self)  # a click on empty space shows the run settings
        self._use_pipeline(self._new_pipeline())
        restore_layout(self)
        self.update_state()

    # ================================================================ state shown

    def update_title(self) -> None:
        parts = ["Batchgrid"]
        sheet = self.session.sheet
        if sheet is not None:
            parts.append(sheet.path.name + (f" [{sheet.name}]" if len(sheet.names) > 1 else ""))
        pipeline = self.doc.pipeline
        name = pipeline.path.name if pipeline.path else "unsaved pipeline"
        parts.append(name + ("" if self._pipeline_saved else " *"))
        self.setWindowTitle(" — ".join(parts))

    def restyle(self) -> None:
        """The style sheet for the application's palette, light or dark (again when it changes)."""
        sheet = style_sheet()
        if sheet != self._styled_for:
            self._styled_for = sheet
            self.setStyleSheet(sheet)
            if hasattr(self, "cards"):
                self.cards.viewport().update()  # the cards paint their own colours
                self.show_row(self._shown_row[0] if self._shown_row else -1)  # the inspector's HTML too

    def changeEvent(self, event: QEvent) -> None:
        if event.type() in (QEvent.Type.ApplicationPaletteChange, QEvent.Type.PaletteChange):
            self.restyle()  # the system's palette changed (a scheme switch calls restyle itself)
        super().changeEvent(event)

    def _clean_changed(self, clean: bool) -> None:
        self._pipeline_saved = clean
        self.update_title()

    def run_blockers(self) -> str:
        """Why Run is disabled, in words; '' when it can run."""
        if self.loading:
            return "Still reading the sheet…"
        if self.rows is None:
            return "Open a spreadsheet first."
        if not any(s.enabled for s in self.doc.pipeline.steps):
            return "Add a step to the pipeline first."
        if self.doc.problems:
            n = len(self.doc.problems)
            head = f"{n} problem{'s' if n != 1 else ''} to fix before running (in red on the steps)"
            return "\n".join([head] + [p.text for p in self.doc.problems[:10]])
        return ""

    def update_state(self) -> None:
        blockers = self.run_blockers()
        running = self.runner.running
        failed, stopped = self.model.status.count(ev.ERROR), self.model.status.count(ev.CANCELLED)
        self.run_bar.set_state(running=running, can_run=not blockers, failed_rows=failed, stopped_rows=stopped,
                               paused=self.runner.paused, why_not=blockers)
        for action in (self.act_run, self.act_run_again, self.act_preview):
            action.setEnabled(not blockers and not running)
        self.act_run_up_to.setEnabled(not blockers and not running and self._selected_top_step() is not None)
        self.act_retry.setEnabled(not blockers and not running and failed + stopped > 0)
        self.act_stop.setEnabled(running)
        self.act_pause.setEnabled(running)
        self.act_export.setEnabled(self.rows is not None and not running)
        self._update_card_buttons()
        self.update_title()

    def _update_card_buttons(self) -> None:
        step = self.cards.current_step()
        for button in self.card_buttons.values():
            button.setEnabled(step is not None)
        self.act_run_up_to.setEnabled(self.act_run.isEnabled() and self._selected_top_step() is not None)

    def show_message(self, text: str, kind: str = "error", actions=None) -> None:
        text = secrets.redact(text)  # every message the window shows passes the one secret policy
        self.last_message = text
        self.message_bar.show_message(text, kind, actions)
        self.status_text.setText(text.splitlines()[0] if text else "")
        self.messageShown.emit(text)

    def _set_busy(self, text: str, busy: bool, maximum: int = 0) -> None:
        self.status_text.setText(text)
        self.busy.setRange(0, maximum)
        self.busy.setVisible(busy)

    @property
    def rows(self):
        """The sheet's table (None before one is open)."""
        return self.session.table

    @property
    def sheet_path(self) -> Path | None:
        return self.session.sheet.path if self.session.sheet else None

    # ================================================================ tasks

    def spawn(self, coro) -> asyncio.Task:
        """Run a coroutine on the window's loop, keeping a reference until it ends."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ================================================================ editing

    def add_step(self, step_type: str) -> None:
        """From the palette: after the selected top-level step, or at the end."""
        current = self.cards.current_step()
        steps = self.doc.pipeline.steps
        index = steps.index(current) + 1 if current in steps else len(steps)
        step = self.doc.add_step(step_type, steps, index)
        self.cards.select_step(step)

    def _move_current(self, delta: int) -> None:
        step = self.cards.current_step()
        if step is not None:
            self.doc.move_step(step, self.doc.pipeline.steps.index(step) + delta)

    def duplicate_step(self) -> None:
        step = self.cards.current_step()
        if step is not None:
            self.cards.select_step(self.doc.duplicate_step(step))

    def delete_step(self) -> None:
        step = self.cards.current_step()
        if step is not None:
            self.doc.remove_step(step)

    def _pipeline_shape_changed(self) -> None:
        if self.runner.running:  # the run keeps its own snapshot: say when edits take effect
            self.run_bar.note_edit_during_run()
        else:
            self._show_pipeline_columns()
        self.update_state()

    def _show_pipeline_columns(self) -> None:
        """The table's output columns follow the pipeline as edited (between runs)."""
        header = list(self.model.headers)
        self.session.pipeline_edited()
        if self.model.headers != header:
            self.model.store_reset()

    def _settings_changed(self) -> None:
        value = int(self.doc.pipeline.settings.get("max_concurrency") or 8)
        if self.run_bar.concurrency.value() != value:
            self.run_bar.concurrency.blockSignals(True)
            self.run_bar.concurrency.setValue(value)
            self.run_bar.concurrency.blockSignals(False)

    # ================================================================ running

    async def offer_resume(self) -> None:
        """Reopening the same sheet and pipeline: show what the journal kept, and offer to finish
        (or retry) the last run."""
        if self.doc.problems:
            return
        info = await self.session.previous_run()
        if self.session.journal_problem:
            self.show_message(self.session.journal_problem[0].upper() + self.session.journal_problem[1:] + ".",
                              "warning")
        if info is None:
            return
        self.model.store_reset()  # what the journal kept, shown before any click
        if info.unfinished <= 0 and info.failed <= 0:
            return
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(info.started_at))
        text = (f"A run of this pipeline on this sheet ({when}) finished {info.done + info.failed:,} of "
                f"{info.total:,} rows" + (f", {info.failed:,} with errors" if info.failed else "") + ".")
        actions = []
        if info.unfinished > 0:
            actions.append((f"Resume ({info.unfinished:,} rows left)", lambda: self.start_run("resume")))
        if info.failed > 0:
            actions.append((f"Retry {info.failed:,} failed", lambda: self.start_run("retry_failed")))
        self.show_message(text, "info", actions)

    def run_all(self) -> None:
        """Run (F5): the rows without a result of this pipeline as it is now (not run, stopped,
        run up to a step, or made before an edit); finished work is never redone."""
        if self.session.rows_left() == 0:
            self.show_message("Every row has a result of this pipeline. Run all again to run them anew, "
                              "or edit the pipeline.", "info", [("Run all again", self.run_all_again)])
            return
        self.start_run("resume")

    def run_all_again(self) -> None:
        """Run ▸ Run all again: every row afresh; asks first when that sends paid or web calls again."""
        repeats = self.session.rerun_repeats()
        if repeats and not self.ask("Run every row again?", f"{repeats}\n\nRun all {len(self.rows or []):,} rows "
                                    "again?"):
            return
        ask_about_review_edits(self)  # edited cells stay the user's unless they ask (gui/review.py)
        self.start_run("all")

    def preview_run(self, n: int | None = None) -> None:
        """The selected rows, or the first N."""
        self.start_run("all", self._chosen_rows(n))

    def _chosen_rows(self, n: int | None = None) -> list[int]:
        """The selected rows, or the first N (the preview box's number)."""
        rows = self.view.selected_rows()
        if not rows:
            count = n if n is not None else self.run_bar.preview_rows.value()
            rows = list(range(min(count, len(self.rows or []))))
        return rows

    def retry_failed(self) -> None:
        """The failed and the stopped rows."""
        self.start_run("retry_failed")

    def _selected_top_step(self) -> int | None:
        """The index of the selected card's step (the cards are the top-level steps): where Run up to stops."""
        step = self.cards.current_step()
        steps = self.doc.pipeline.steps
        return steps.index(step) if step in steps else None

    def run_up_to_selected(self) -> asyncio.Task | None:
        index = self._selected_top_step()
        if index is None:
            self.show_message("Select the step to run up to first.", "info")
            return None
        return self.run_up_to(index)

    def run_up_to(self, step_index: int) -> asyncio.Task | None:
        """Run the steps up to and including top-level step `step_index` on the selected rows (or
        the first N), as KNIME's "execute to here": later steps' outputs stay blank, and those
        rows are left to the next Run. The step card's menu calls this."""
        if not 0 <= step_index < len(self.doc.pipeline.steps):
            return None
        return self.start_run("all", self._chosen_rows(), up_to=step_index)

    def _steps_up_to(self, step_index: int) -> str:
        """The steps a run up to `step_index` runs, in words: "steps 1–2 (Trim, LLM)"."""
        ran = [(i, s) for i, s in enumerate(self.doc.pipeline.steps[:step_index + 1]) if s.enabled]
        if not ran:
            return "no step"
        numbers = f"{ran[0][0] + 1}–{ran[-1][0] + 1}" if len(ran) > 1 else f"{ran[0][0] + 1}"
        return f"step{'s' if len(ran) > 1 else ''} {numbers} ({', '.join(s.label for _, s in ran)})"

    def start_run(self, mode: str, rows: list[int] | None = None, up_to: int | None = None) -> asyncio.Task:
        return self.spawn(self.begin_run(mode, rows, up_to))

    async def begin_run(self, mode: str, rows: list[int] | None = None, up_to: int | None = None) -> bool:
        """Start a run; False (with the reason in the message bar) if it cannot start."""
        blockers = self.run_blockers()
        if blockers:
            self.show_message(blockers)
            return False
        if self.runner.running:
            return False
        if not self.confirm_trust():
            return False
        self._up_to = self._steps_up_to(up_to) if up_to is not None else ""
        cluster = self.settings.cluster()  # Run on (the run settings): None for this computer
        where = f"Dask cluster {cluster}" if cluster is not None else ""
        if where:
            self.status_text.setText(f"Starting the run on {where}…")  # a local cluster takes a few seconds
        try:
            await self.runner.start(mode, rows=rows, max_concurrency=self.run_bar.concurrency.value(), up_to=up_to,
                                    cluster=cluster)
        except Exception as exc:
            self._up_to = ""
            actions = ([("Run settings…", self.show_run_settings)] if isinstance(exc, ClusterError) else
                       [("Settings…", self.open_settings)] if self.session.uses_models() else None)
            self.show_message(f"Cannot run: {one_line(exc)}", actions=actions)
            self.update_state()  # Stop, offered while it was starting, goes again
            return False
        self.message_bar.hide()
        self._fitted = False
        p = self.session.progress
        if p is not None:
            shown = "up_to" if up_to is not None else "preview" if rows is not None else mode
            self.run_bar.run_started(shown, p.selected, p.total, where)
            self._progressed(p, False)  # this run's numbers at once, not the last run's line
            what = f"{p.selected:,} of {p.total:,} rows" if p.selected < p.total else f"{p.total:,} rows"
            what += f" on {where}" if where else ""
            self.status_text.setText(f"Running {self._up_to} on {what}…" if self._up_to else f"Running {what}…")
        return True

    def confirm_trust(self) -> bool:
        """Once per pipeline file, before its first run: ask the user to trust what it wants beyond
        an untrusted pipeline's rights (like an installer's permission list). False: not trusted."""
        wanted = self.session.needs_trust()
        if not wanted:
            return True
        path = self.doc.pipeline.path
        listing = "\n".join(f"• {p.describe()}" for p in wanted[:TRUST_LIST_LIMIT])
        if len(wanted) > TRUST_LIST_LIMIT:
            listing += f"\n• … and {len(wanted) - TRUST_LIST_LIMIT} more"
        if not self.ask("Trust this pipeline?",
                        f"{path.name if path else 'This pipeline'} wants to:\n\n{listing}\n\n"
                        "A pipeline can use these to read your files and keys and send them elsewhere. "
                        "Trust it only if you trust where it came from.\n\nTrust it and run?"):
            self.show_message("Not run: the pipeline was not trusted.", "warning")
            return False
        self.session.trust()
        return True

    def update_estimate(self) -> None:
        """The projected cost of running every row, for pipelines with model steps (the session
        works it out off the loop from the first rows' requests; nothing is sent)."""
        self._estimate_generation += 1
        if self.rows is None or self.loading or self.doc.problems or not self.session.uses_models():
            self.run_bar.show_estimate("")
            return
        self.spawn(self._estimate(self._estimate_generation))

    async def _estimate(self, generation: int) -> None:
        try:
            estimate = await self.session.estimate()
        except Exception as exc:  # an estimate must never get in the way of editing
            if generation == self._estimate_generation:
                self.run_bar.show_estimate("")
                self.run_bar.estimate.setToolTip(f"No estimate: {one_line(exc)}")
            return
        if generation == self._estimate_generation:  # no newer edit asked for another
            self.run_bar.show_estimate(estimate.describe() if estimate else "")

    def _show_table(self, sheet) -> None:
        super()._show_table(sheet)
        self.run_bar.reset()  # the last run's numbers belong to the sheet it ran on

    def _first_output_column(self) -> int:
        return len(self.model.input_columns)

    def stop_run(self) -> None:
        self.runner.stop()

    def toggle_pause(self) -> None:
        self.runner.toggle_pause()

    def _progressed(self, progress, paused: bool) -> None:
        if not self._fitted and progress.finished >= min(20, progress.selected):
            self._fitted = True  # the output columns get widths from their first values, once a run
            self.view.fit_columns(first=self._first_output_column())
        self.run_bar.show_progress(progress, paused, self.session.store.count(ev.DONE))
        self.run_bar.set_state(running=self.runner.running, can_run=not self.run_blockers(),
                               failed_rows=progress.failed, stopped_rows=progress.cancelled, paused=paused)

    def _run_finished(self, reason: str, message: str) -> None:
        self._show_pipeline_columns()  # edits made during the run show now
        self.view.fit_columns(first=self._first_output_column())
        p = self.session.progress
        self.update_state()
        if p is not None:
            summary = (f"{p.done:,} done, {p.failed:,} failed" + (f", {p.cancelled:,} stopped" if p.cancelled else "")
                       + f" in {duration(p.elapsed)}")
        else:
            summary = ""
        up_to, self._up_to = self._up_to, ""
        if reason == "failed":
            self.show_message(f"The run could not go on: {message or 'unknown error'}")
        elif reason == "stopped":
            self.status_text.setText(f"Stopped: {summary}. Finished rows are kept.")
            self.run_bar.show_message(f"Stopped: {summary}. Finished rows are kept; Run goes on with the rest, "
                                      "Retry runs the stopped and failed rows.")
        elif up_to:
            self.status_text.setText(f"Ran {up_to}: {summary}. Later steps did not run; Run finishes these rows.")
        else:
            self.status_text.setText(f"Finished: {summary}")
        self.show_row(self.view.results_model().source_row(self.view.currentIndex().row())
                      if self.view.currentIndex().isValid() else -1)
        self.runFinished.emit(reason, message)

    # ================================================================ row inspector

    def _rows_changed(self, top, bottom, *_roles) -> None:
        """The selected row changed while shown (a run reached it): show it afresh."""
        current = self.view.currentIndex()
        if current.isValid() and top.row() <= current.row() <= bottom.row():
            number = self.model.source_row(current.row())
            if self._shown_row != (number, self.model.results[number], self.model.status[number]):
                self.show_row(number)

    def show_row(self, number: int) -> None:
        if number < 0 or self.rows is None or number >= len(self.rows):
            self.inspector.clear_row()
            self._shown_row = ()
            # with no row selected, templates preview on the first row
            has_rows = self.rows is not None and len(self.rows) > 0
            self.form_panel.set_preview_row(self.rows.row(0) if has_rows else None, "row 1" if has_rows else "")
            return
        inputs = self.rows.row(number)
        result = self.model.results[number]
        self._shown_row = (number, result, self.model.status[number])
        self.inspector.show_row(number, inputs, result, self.model.status[number], self.doc.pipeline.steps,
                                self.model.notes.get(number, ""))
        values = {**inputs, **(result.outputs if result else {})}
        self.form_panel.set_preview_row(values, f"row {number + 1}")

    # ================================================================ settings

    def show_run_settings(self) -> None:
        """The pipeline's run settings (retries, cache, budget) in the step settings area: no
        card selected (Run ▸ Run settings…, the run bar's button, a click on empty space)."""
        self.cards.select_step(None)
        self.form_panel.show_step(None)
        if self.form_panel.settings_form is not None:  # from its title (and Run on), below the hint
            self.form_panel.lay_out_now()
            self.form_panel.verticalScrollBar().setValue(self.form_panel.settings_form.y())

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if (event.type() == QEvent.Type.MouseButtonPress and watched is self.cards.viewport()
                and event.button() == Qt.MouseButton.LeftButton  # type: ignore[attr-defined]
                and not self.cards.indexAt(event.position().toPoint()).isValid()):  # type: ignore[attr-defined]
            self.show_run_settings()
        return super().eventFilter(watched, event)

    def open_settings(self) -> None:
        dialog = SettingsDialog(self.settings, self.session.data_dir, self, session=self.session)
        if dialog.exec():
            self.form_panel.app_providers = [p["name"] for p in self.settings.providers()]
            self.form_panel.rebuild()

    # ================================================================ window

    def closeEvent(self, event: QCloseEvent) -> None:
        if self._closing:  # the session has been closed: go
            event.accept()
            return
        if self.runner.running:
            if not self.ask("Stop the run?", "A run is in progress. Stop it and quit?\n\nRows finished so far "
                            "are saved; open this sheet and pipeline again to resume."):
                event.ignore()
                return
        elif not self._may_discard():
            event.ignore()
            return
        save_layout(self)
        if not self.runner.running and self.session.journal is None:  # nothing left to close
            self._closing = True
            self.closed.emit()
            event.accept()
            return
        # Stop the run, wait for its end (its last rows reach the journal), close the journal; then close.
        event.ignore()
        self.spawn(self._close_session())

    async def _close_session(self) -> None:
        self.status_text.setText("Stopping…")
        await self.session.close()
        await self.runner.wait()
        self._closing = True
        self.closed.emit()
        self.close()
