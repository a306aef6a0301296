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

from batchgrid.core.pipeline import Pipeline
from batchgrid.core.run import events as ev
from batchgrid.core.session import Session, Sheet
from PySide6.QtCore import QByteArray, Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QProgressBar,
    QSplitter,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from .actions import build_actions
from .document import PipelineDocument
from .examples import Example
from .icons import icon
from .inspector import RowInspector
from .palette import StepPalette
from .results_model import ResultsModel
from .results_view import ResultsView, StatusFilter
from .run_bar import RunBar, duration
from .runner import RunController
from .settings import AppSettings, SettingsDialog
from .step_form import StepFormPanel
from .step_list import StepListModel, StepListView
from .style import STYLE_SHEET
from .widgets import MessageBar, WelcomePage, ask_user, one_line, titled_panel

SHEET_FILTER = "Spreadsheets (*.xlsx *.xlsm *.xlsb *.xls *.ods *.csv *.tsv *.txt *.parquet);;All files (*)"
PIPELINE_FILTER = "Batchgrid pipelines (*.json);;All files (*)"
EXPORT_FILTERS = {"Excel workbook (*.xlsx)": ".xlsx", "CSV (*.csv)": ".csv", "Parquet (*.parquet)": ".parquet"}
PIPELINE_SUFFIXES = (".json",)
ESTIMATE_DELAY_MS = 400


class MainWindow(QMainWindow):
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

        self.model = ResultsModel(self.session.store, self)
        self.runner = RunController(self.session, self.model, self)
        self._estimate_timer = QTimer(self)  # edits come in bursts: estimate once they pause
        self._estimate_timer.setSingleShot(True)
        self._estimate_timer.setInterval(ESTIMATE_DELAY_MS)
        self._estimate_timer.timeout.connect(self.update_estimate)
        self.setWindowIcon(icon("app"))
        self.setAcceptDrops(True)
        self.setStyleSheet(STYLE_SHEET)
        self._build()
        build_actions(self)
        self._connect()
        self._use_pipeline(self._new_pipeline())
        self.restore_layout()
        self.update_state()

    # ================================================================ building
    def _build(self) -> None:
        self.palette = StepPalette()
        self.step_model = StepListModel(self.doc, lambda: self.doc.pipeline.steps, self)
        self.cards = StepListView(self.step_model)
        self.cards.setObjectName("pipelineCards")
        self.form_panel = StepFormPanel(self.doc)
        self.form_panel.app_providers = [p["name"] for p in self.settings.providers()]
        self.form_panel.profile_lookup = self.settings.pipeline_profile

        pipeline_box = QWidget()
        column = QVBoxLayout(pipeline_box)
        column.setContentsMargins(0, 0, 0, 0)
        head = QHBoxLayout()
        self.pipeline_title = QLabel("Pipeline")
        self.pipeline_title.setObjectName("panelTitle")
        head.addWidget(self.pipeline_title, 1)
        self.card_buttons: dict[str, QToolButton] = {}
        for name, tip in (("up", "Move the step up"), ("down", "Move the step down"),
                          ("duplicate", "Duplicate the step"), ("delete", "Delete the step (Del)")):
            button = QToolButton()
            button.setIcon(icon(name))
            button.setToolTip(tip)
            button.setAutoRaise(True)
            head.addWidget(button)
            self.card_buttons[name] = button
        column.addLayout(head)
        column.addWidget(self.cards, 1)
        self.cards.empty_text = "No steps yet.\n\nDouble-click a step in the palette, or drag it here."

        palette_box = titled_panel("Steps", self.palette)
        form_box = titled_panel("Step settings", self.form_panel)

        self.top_split = QSplitter(Qt.Orientation.Horizontal)
        self.top_split.setObjectName("topSplit")
        for w in (palette_box, pipeline_box, form_box):
            w.setObjectName("panel")
            self.top_split.addWidget(w)
        self.top_split.setSizes([260, 380, 560])
        self.top_split.setChildrenCollapsible(False)

        # results area: run bar, filter line, table | inspector
        self.run_bar = RunBar()
        self.view = ResultsView(self.model)
        self.inspector = RowInspector()
        self.status_filter = StatusFilter(self.model)
        self.sheet_picker = QComboBox()
        self.sheet_picker.setToolTip("This workbook has several sheets: choose the one to use")
        self.sheet_picker.hide()
        self.sheet_picker_label = QLabel("Sheet")
        self.sheet_picker_label.hide()
        self.table_info = QLabel()
        self.table_info.setObjectName("help")

        results = QWidget()
        rcol = QVBoxLayout(results)
        rcol.setContentsMargins(0, 0, 0, 0)
        rcol.setSpacing(0)
        rcol.addWidget(self.run_bar)
        filter_line = QHBoxLayout()
        filter_line.setContentsMargins(10, 4, 10, 4)
        rtitle = QLabel("Results")
        rtitle.setObjectName("panelTitle")
        filter_line.addWidget(rtitle)
        filter_line.addSpacing(10)
        filter_line.setSpacing(6)
        filter_line.addWidget(self.sheet_picker_label)
        filter_line.addWidget(self.sheet_picker)
        filter_line.addSpacing(12)
        filter_line.addWidget(QLabel("Show"))
        filter_line.addWidget(self.status_filter)
        filter_line.addSpacing(12)
        filter_line.addWidget(self.table_info, 1)
        rcol.addLayout(filter_line)
        self.bottom_split = QSplitter(Qt.Orientation.Horizontal)
        self.bottom_split.addWidget(self.view)
        self.bottom_split.addWidget(self.inspector)
        self.bottom_split.setSizes([900, 340])
        self.bottom_split.setChildrenCollapsible(False)
        rcol.addWidget(self.bottom_split, 1)

        self.welcome = WelcomePage(self)
        self.lower = QStackedWidget()
        self.lower.addWidget(self.welcome)
        self.lower.addWidget(results)

        self.main_split = QSplitter(Qt.Orientation.Vertical)
        self.main_split.addWidget(self.top_split)
        self.main_split.addWidget(self.lower)
        self.main_split.setSizes([390, 510])
        self.main_split.setChildrenCollapsible(False)

        self.message_bar = MessageBar()
        central = QWidget()
        ccol = QVBoxLayout(central)
        ccol.setContentsMargins(6, 6, 6, 0)
        ccol.setSpacing(6)
        ccol.addWidget(self.message_bar)
        ccol.addWidget(self.main_split, 1)
        self.setCentralWidget(central)

        self.busy = QProgressBar()
        self.busy.setFixedWidth(180)
        self.busy.setTextVisible(False)
        self.busy.hide()
        self.status_text = QLabel()
        self.statusBar().addWidget(self.status_text, 1)
        self.statusBar().addPermanentWidget(self.busy)
        self.resize(1400, 900)

    def _connect(self) -> None:
        self.palette.stepChosen.connect(self.add_step)
        self.cards.stepSelected.connect(self.form_panel.show_step)
        self.cards.stepSelected.connect(lambda _s: self._update_card_buttons())
        self.card_buttons["up"].clicked.connect(lambda: self._move_current(-1))
        self.card_buttons["down"].clicked.connect(lambda: self._move_current(+1))
        self.card_buttons["duplicate"].clicked.connect(self.duplicate_step)
        self.card_buttons["delete"].clicked.connect(self.delete_step)
        self.doc.problemsChanged.connect(self.update_state)
        self.doc.problemsChanged.connect(self._estimate_timer.start)  # any edit: estimate again, soon
        self.doc.structureChanged.connect(lambda _c: self._pipeline_shape_changed())
        self.doc.stepChanged.connect(lambda _s, _w: self._pipeline_shape_changed())
        self.doc.pipelineReplaced.connect(self._pipeline_shape_changed)
        self.doc.settingsChanged.connect(self._settings_changed)
        self.doc.undo_stack.cleanChanged.connect(self._clean_changed)
        self.run_bar.concurrency.valueChanged.connect(lambda v: self.doc.set_setting("max_concurrency", v))
        self.run_bar.runClicked.connect(self.run_all)
        self.run_bar.pauseClicked.connect(self.toggle_pause)
        self.run_bar.stopClicked.connect(self.stop_run)
        self.run_bar.previewClicked.connect(lambda n: self.preview_run(n))
        self.run_bar.retryClicked.connect(self.retry_failed)
        self.runner.started.connect(self.update_state)
        self.runner.progressed.connect(self._progressed)
        self.runner.finished.connect(self._run_finished)
        self.runner.pausedBy.connect(lambda reason: self.show_message(
            f"Paused: {reason}. Resume to go on anyway, or Stop; finished rows are kept.", "warning",
            [("Resume", self.toggle_pause), ("Stop", self.stop_run)]))
        self.view.rowSelected.connect(self.show_row)
        self.model.dataChanged.connect(self._rows_changed)
        self.model.sorting.connect(lambda busy: self._set_busy("Sorting…" if busy else "", busy))
        self.sheet_picker.activated.connect(lambda _i: self.open_sheet(self.sheet_path, self.sheet_picker.currentText()))

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
        failed = self.model.status.count(ev.ERROR)
        self.run_bar.set_state(running=running, can_run=not blockers, failed_rows=failed,
                               paused=self.runner.paused, why_not=blockers)
        self.act_run.setEnabled(not blockers and not running)
        self.act_preview.setEnabled(not blockers and not running)
        self.act_retry.setEnabled(not blockers and not running and failed > 0)
        self.act_stop.setEnabled(running)
        self.act_pause.setEnabled(running)
        self.act_export.setEnabled(self.rows is not None and not running)
        self._update_card_buttons()
        self.update_title()

    def _update_card_buttons(self) -> None:
        step = self.cards.current_step()
        for button in self.card_buttons.values():
            button.setEnabled(step is not None)

    def show_message(self, text: str, kind: str = "error", actions=None) -> None:
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

    # ================================================================ sheets
    def choose_sheet(self) -> None:
        start = str(self.sheet_path.parent) if self.sheet_path else ""
        path, _ = QFileDialog.getOpenFileName(self, "Open a spreadsheet", start, SHEET_FILTER)
        if path:
            self.open_sheet(path)

    def open_path(self, path: str) -> None:
        """A dropped or recent file: a pipeline if it is one, else a sheet."""
        if Path(path).suffix.lower() in PIPELINE_SUFFIXES:
            self.open_pipeline(path)
        else:
            self.open_sheet(path)

    def open_sheet(self, path, sheet: str | None = None) -> asyncio.Task:
        return self.spawn(self.load_sheet(Path(path), sheet))

    async def load_sheet(self, path: Path, sheet: str | None = None) -> bool:
        """Show a sheet: its first rows at once, then all of it, read by the session off the
        loop so the window stays live. False (and a message in the window) if it cannot be read."""
        if self.runner.running:
            self.show_message("Stop the run before opening another sheet.")
            self.sheetLoaded.emit()
            return False
        path = Path(path)
        self.loading = True
        self._set_busy(f"Reading {path.name}…", True)
        t0 = time.perf_counter()
        try:
            sheet_read = await self.session.open_sheet(path, sheet, on_preview=self._show_preview)
        except Exception as exc:  # any unreadable file: one line in the window, never a traceback
            self.loading = False
            self._set_busy("", False)
            self.show_message(f"Could not open {path.name}: {one_line(exc)}")
            self.update_state()
            self.sheetLoaded.emit()
            return False
        if sheet_read is None:
            return False  # another sheet was opened meanwhile
        self.loading = False
        self._show_table(sheet_read)
        rows = sheet_read.table
        self._set_busy(f"Read {path.name}: {len(rows):,} rows × {len(rows.columns)} columns in "
                       f"{time.perf_counter() - t0:.1f} s", False)
        self.settings.add_recent("sheets", str(sheet_read.path))
        self.refresh_recent()
        self.update_state()
        self.update_estimate()
        await self.offer_resume()
        self.sheetLoaded.emit()
        return True

    def _show_preview(self, sheet: Sheet) -> None:
        self._show_table(sheet)
        self.status_text.setText(f"Reading all of {sheet.path.name}; the first {len(sheet.table):,} rows are shown…")

    def _show_table(self, sheet: Sheet) -> None:
        self.doc.set_columns(sheet.table.columns)
        self.model.store_reset()
        self._show_sheet_picker()
        self.lower.setCurrentIndex(1)
        self.show_row(-1)
        more = "" if sheet.complete else " so far"
        self.table_info.setText(f"{len(sheet.table):,} rows{more} × {len(sheet.table.columns)} columns from {sheet.path.name}")
        self.run_bar.show_message("Not run yet.")
        self.message_bar.hide()
        self.update_state()

    def _show_sheet_picker(self) -> None:
        sheet = self.session.sheet
        names = sheet.names if sheet else []
        self.sheet_picker.blockSignals(True)
        self.sheet_picker.clear()
        self.sheet_picker.addItems(names)
        if sheet is not None and sheet.name in names:
            self.sheet_picker.setCurrentText(sheet.name)
        self.sheet_picker.blockSignals(False)
        many = len(names) > 1
        self.sheet_picker.setVisible(many)
        self.sheet_picker_label.setVisible(many)

    def refresh_recent(self) -> None:
        self.recent_menu.clear()
        paths = self.settings.recent("sheets") + self.settings.recent("pipelines")
        for path in paths:
            self.recent_menu.addAction(path, lambda p=path: self.open_path(p))
        if not paths:
            self.recent_menu.addAction("(nothing yet)").setEnabled(False)
        self.welcome.show_recent(self.settings.recent("sheets"))

    # ================================================================ pipelines
    def _new_pipeline(self) -> Pipeline:
        return Pipeline(settings={"max_concurrency": self.settings.default_concurrency()})

    def _may_discard(self) -> bool:
        if self.doc.undo_stack.isClean() or not self.doc.pipeline.steps:
            return True
        return self.ask("Discard changes?", "The pipeline has unsaved changes. Discard them?")

    def new_pipeline(self) -> None:
        if self._may_discard():
            self._use_pipeline(self._new_pipeline())

    def _use_pipeline(self, pipeline: Pipeline) -> None:
        self.doc.replace(pipeline)
        self.session.set_pipeline(self.doc.pipeline)

    def choose_pipeline(self) -> None:
        start = str(self.doc.pipeline.path.parent) if self.doc.pipeline.path else ""
        path, _ = QFileDialog.getOpenFileName(self, "Open a pipeline", start, PIPELINE_FILTER)
        if path:
            self.open_pipeline(path)

    def open_pipeline(self, path) -> asyncio.Task:
        return self.spawn(self.load_pipeline(path))

    async def load_pipeline(self, path) -> bool:
        """Read and check a pipeline file (off the loop); False and a message if it cannot be used."""
        if not self._may_discard():
            return False
        try:
            pipeline = await asyncio.to_thread(Pipeline.load, path)
        except Exception as exc:
            problems = getattr(exc, "problems", [])
            detail = "\n".join(str(p) for p in problems[:8]) if len(problems) > 1 else one_line(exc)
            self.show_message(f"Could not open {Path(path).name}: {detail}")
            return False
        self._use_pipeline(pipeline)
        self.settings.add_recent("pipelines", str(pipeline.path))
        self.refresh_recent()
        if pipeline.steps:
            self.cards.select_step(pipeline.steps[0])
        self.message_bar.hide()
        await self.offer_resume()
        return True

    def save_pipeline(self) -> bool:
        if self.doc.pipeline.path is None:
            return self.save_pipeline_as()
        return self._save_to(self.doc.pipeline.path)

    def save_pipeline_as(self) -> bool:
        start = str(self.doc.pipeline.path or (self.sheet_path.with_suffix(".batchgrid.json") if self.sheet_path else ""))
        path, _ = QFileDialog.getSaveFileName(self, "Save the pipeline", start, PIPELINE_FILTER)
        return bool(path) and self._save_to(Path(path))

    def _save_to(self, path: Path) -> bool:
        try:
            self.doc.pipeline.save(path)  # a small JSON file, written atomically
        except Exception as exc:
            self.show_message(f"Could not save {path.name}: {one_line(exc)}")
            return False
        self.doc.undo_stack.setClean()
        self.settings.add_recent("pipelines", str(path))
        self.refresh_recent()
        self.status_text.setText(f"Saved {path}")
        self.update_title()
        return True

    def open_example(self, example: Example) -> asyncio.Task:
        async def both() -> bool:
            return await self.load_pipeline(example.pipeline) and await self.load_sheet(example.sheet)

        return self.spawn(both())

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
            self.run_bar.show_message("Running the pipeline as it was when the run started; "
                                      "your edits apply to the next run.")
        else:
            header = list(self.model.headers)
            self.session.pipeline_edited()
            if self.model.headers != header:
                self.model.store_reset()
        self.update_state()

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
        self.start_run("all")

    def preview_run(self, n: int | None = None) -> None:
        """The selected rows, or the first N."""
        rows = self.view.selected_rows()
        if not rows:
            count = n if n is not None else self.run_bar.preview_rows.value()
            rows = list(range(min(count, len(self.rows or []))))
        self.start_run("all", rows)

    def retry_failed(self) -> None:
        self.start_run("retry_failed")

    def start_run(self, mode: str, rows: list[int] | None = None) -> asyncio.Task:
        return self.spawn(self.begin_run(mode, rows))

    async def begin_run(self, mode: str, rows: list[int] | None = None) -> bool:
        """Start a run; False (with the reason in the message bar) if it cannot start."""
        blockers = self.run_blockers()
        if blockers:
            self.show_message(blockers)
            return False
        if self.runner.running:
            return False
        if self.doc.pipeline.runs_code and not self.session.trusted:
            if not self.ask("Run Python code?",
                            "This pipeline runs Python code written in the pipeline file. Run it only if "
                            "you trust where the file came from.\n\nRun it?"):
                self.show_message("Not run: the pipeline's Python code was not trusted.", "warning")
                return False
            self.session.trusted = True
        try:
            await self.runner.start(mode, rows=rows, max_concurrency=self.run_bar.concurrency.value())
        except Exception as exc:
            actions = [("Settings…", self.open_settings)] if self.session.uses_models() else None
            self.show_message(f"Cannot run: {one_line(exc)}", actions=actions)
            return False
        self.message_bar.hide()
        self._fitted = False
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
        self.run_bar.show_progress(progress, paused)
        self.run_bar.set_state(running=self.runner.running, can_run=not self.run_blockers(),
                               failed_rows=progress.failed, paused=paused)

    def _run_finished(self, reason: str, message: str) -> None:
        self.view.fit_columns(first=self._first_output_column())
        p = self.session.progress
        self.update_state()
        if p is not None:
            summary = (f"{p.done:,} done, {p.failed:,} failed" + (f", {p.cancelled:,} stopped" if p.cancelled else "")
                       + f" in {duration(p.elapsed)}")
        else:
            summary = ""
        if reason == "failed":
            self.show_message(f"The run could not go on: {message or 'unknown error'}")
        elif reason == "stopped":
            self.status_text.setText(f"Stopped: {summary}. Finished rows are kept.")
            self.run_bar.show_message(f"Stopped: {summary}. Finished rows are kept; Run again or Retry failed.")
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

    # ================================================================ export
    def _ask_export_path(self) -> str:
        start = self.sheet_path.with_name(f"{self.sheet_path.stem}-results.xlsx") if self.sheet_path else Path("results.xlsx")
        path, chosen = QFileDialog.getSaveFileName(self, "Export results", str(start), ";;".join(EXPORT_FILTERS))
        if path and not Path(path).suffix:
            path += EXPORT_FILTERS.get(chosen, ".xlsx")
        return path

    def export_results(self) -> asyncio.Task | None:
        if self.rows is None:
            self.show_message("Open a spreadsheet and run a pipeline before exporting.")
            return None
        path = self.ask_save_path()
        return self.spawn(self.export_to(Path(path))) if path else None

    async def export_to(self, path: Path) -> bool:
        """Write the results off the UI thread, with progress in the status bar."""
        loop = asyncio.get_running_loop()
        self._set_busy(f"Exporting to {path.name}…", True, 100)

        def on_progress(done, total) -> None:  # called in the export thread
            percent = int(100 * done / total) if total else 0
            loop.call_soon_threadsafe(self.busy.setValue, percent)

        try:
            written = await self.session.export(path, on_progress=on_progress)
        except Exception as exc:
            self._set_busy("", False)
            self.show_message(f"Could not export to {path.name}: {one_line(exc)}")
            self.exportFinished.emit("")
            return False
        self._set_busy(f"Exported {written:,} rows to {path}", False)
        self.show_message(f"Exported {written:,} rows to {path}", "ok")
        self.exportFinished.emit(str(path))
        return True

    # ================================================================ settings
    def open_settings(self) -> None:
        dialog = SettingsDialog(self.settings, self.session.data_dir, self)
        if dialog.exec():
            self.form_panel.app_providers = [p["name"] for p in self.settings.providers()]
            self.form_panel.rebuild()

    # ================================================================ window
    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        files = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if files:
            event.acceptProposedAction()
            for path in sorted(files, key=lambda p: not p.lower().endswith(PIPELINE_SUFFIXES)):
                self.open_path(path)

    def restore_layout(self) -> None:
        q = self.settings.q
        for key, restore in (("window/geometry", self.restoreGeometry), ("window/state", self.restoreState),
                             ("window/main_split", self.main_split.restoreState),
                             ("window/top_split", self.top_split.restoreState),
                             ("window/bottom_split", self.bottom_split.restoreState)):
            value = q.value(key)
            if isinstance(value, (QByteArray, bytes)):
                restore(value)

    def save_layout(self) -> None:
        q = self.settings.q
        q.setValue("window/geometry", self.saveGeometry())
        q.setValue("window/state", self.saveState())
        q.setValue("window/main_split", self.main_split.saveState())
        q.setValue("window/top_split", self.top_split.saveState())
        q.setValue("window/bottom_split", self.bottom_split.saveState())
        q.sync()

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
        self.save_layout()
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
