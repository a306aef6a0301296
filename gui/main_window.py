"""The main window: palette, pipeline, step form, run bar, results, row inspector.

It holds no business logic: sheets are read by core.table, pipelines are core Pipelines,
runs are core Jobs, exports are core.table.export_results. The window shows their state
and turns clicks into calls on them. Long work (reading a sheet, exporting) runs in a
thread; runs are asyncio tasks on the qasync loop.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from batchgrid.core import table
from batchgrid.core.pipeline.file import Pipeline, walk
from batchgrid.core.run import events as ev
from batchgrid.core.run.estimate import estimate_cost
from batchgrid.core.run.job import Job
from batchgrid.core.run.journal import Journal, default_data_dir
from batchgrid.core.table import Table
from batchgrid.core.util.errors import BatchgridError, PipelineError
from PySide6.QtCore import QByteArray, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QToolBar,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from .document import PipelineDocument
from .examples import Example, bundled_examples
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

SHEET_FILTER = "Spreadsheets (*.xlsx *.xlsm *.xlsb *.xls *.ods *.csv *.tsv *.txt *.parquet);;All files (*)"
PIPELINE_FILTER = "Batchgrid pipelines (*.json);;All files (*)"
EXPORT_FILTERS = {"Excel workbook (*.xlsx)": ".xlsx", "CSV (*.csv)": ".csv", "Parquet (*.parquet)": ".parquet"}
PIPELINE_SUFFIXES = (".json",)
PREVIEW_ROWS = 200  # rows shown at once while a big sheet is read
ESTIMATE_DELAY_MS = 400


def one_line(exc: BaseException) -> str:
    """A readable one-line message for any error that reaches the window."""
    if isinstance(exc, PipelineError):
        more = f" (and {len(exc.problems) - 1} more)" if len(exc.problems) > 1 else ""
        return (exc.messages()[0] if exc.problems else "the pipeline is invalid") + more
    if isinstance(exc, BatchgridError):
        return " ".join(str(exc).split())
    if isinstance(exc, MemoryError):
        return "not enough memory for this file"
    if isinstance(exc, OSError):
        return f"{exc.filename or ''}: {exc.strerror or exc}".strip(": ")
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}" if str(exc) else type(exc).__name__


def ask_user(parent: QWidget, title: str, text: str) -> bool:
    answer = QMessageBox.question(parent, title, text,
                                  QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                  QMessageBox.StandardButton.No)
    return answer == QMessageBox.StandardButton.Yes


class MessageBar(QFrame):
    """A message across the window (errors, offers) with optional buttons; never modal."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("messageBar")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 6, 6)
        self.icon = QLabel()
        self.text = QLabel()
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.buttons = QHBoxLayout()
        close = QToolButton()
        close.setText("✕")
        close.setAutoRaise(True)
        close.setToolTip("Dismiss")
        close.clicked.connect(self.hide)
        layout.addWidget(self.icon)
        layout.addWidget(self.text, 1)
        layout.addLayout(self.buttons)
        layout.addWidget(close)
        self.hide()

    def show_message(self, text: str, kind: str = "error",
                     actions: list[tuple[str, Callable[[], Any]]] | None = None) -> None:
        self.setProperty("kind", kind)
        self.style().unpolish(self)
        self.style().polish(self)
        self.icon.setPixmap(icon("status-error" if kind == "error" else "status-done" if kind == "ok"
                                 else "status-retrying").pixmap(18, 18))
        self.text.setText(text)
        while self.buttons.count():
            self.buttons.takeAt(0).widget().deleteLater()
        for label, callback in actions or []:
            button = QPushButton(label)
            button.clicked.connect(lambda _=False, cb=callback: (self.hide(), cb()))
            self.buttons.addWidget(button)
        self.show()


class WelcomePage(QWidget):
    """What the empty window shows: open or drop a sheet, or try an example."""

    def __init__(self, window: MainWindow):
        super().__init__()
        self.setObjectName("welcome")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        outer = QVBoxLayout(self)
        outer.addStretch(1)
        box = QVBoxLayout()
        box.setSpacing(10)
        title = QLabel("Open a spreadsheet to start")
        title.setObjectName("welcomeTitle")
        text = QLabel("Batchgrid runs a pipeline of steps over every row of a sheet and fills in a results "
                      "table as rows finish.\nOpen a sheet (xlsx, xls, ods, csv, tsv, parquet) or drop one "
                      "anywhere on this window, then add steps from the palette on the left.")
        text.setObjectName("welcomeText")
        text.setWordWrap(True)
        for label in (title, text):
            label.setAlignment(Qt.AlignmentFlag.AlignCenter)
            box.addWidget(label)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        open_button = QPushButton(icon("open"), "Open a spreadsheet…")
        open_button.setObjectName("primaryButton")
        open_button.clicked.connect(window.choose_sheet)
        buttons.addWidget(open_button)
        self.example_buttons: list[QPushButton] = []
        for example in bundled_examples():
            button = QPushButton(icon("example"), f"Example: {example.title}")
            button.setToolTip(example.description or str(example.pipeline.name))
            button.clicked.connect(lambda _=False, e=example: window.open_example(e))
            buttons.addWidget(button)
            self.example_buttons.append(button)
        buttons.addStretch(1)
        box.addLayout(buttons)
        self.recent = QLabel()
        self.recent.setObjectName("welcomeText")
        self.recent.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.recent.linkActivated.connect(lambda path: window.open_path(path))
        box.addWidget(self.recent)
        outer.addLayout(box)
        outer.addStretch(2)

    def show_recent(self, paths: list[str]) -> None:
        links = [f'<a href="{p}">{Path(p).name}</a>' for p in paths[:5] if Path(p).exists()]
        self.recent.setText("Recent: " + " · ".join(links) if links else "")


def titled_panel(title: str, content: QWidget) -> QWidget:
    """A panel: a bold title above its content."""
    box = QWidget()
    column = QVBoxLayout(box)
    column.setContentsMargins(0, 0, 0, 0)
    label = QLabel(title)
    label.setObjectName("panelTitle")
    column.addWidget(label)
    column.addWidget(content, 1)
    return box


class MainWindow(QMainWindow):
    sheetLoaded = Signal()           # a sheet is shown (or failed to load: see last_message)
    runFinished = Signal(str, str)   # reason, message
    exportFinished = Signal(str)     # the path written, or "" when it failed
    messageShown = Signal(str)       # every message the window shows the user

    def __init__(self, settings: AppSettings | None = None, journal_path: Path | None = None):
        super().__init__()
        self.settings = settings or AppSettings()
        self.journal_path = journal_path
        self.journal: Journal | None = None
        self.doc = PipelineDocument(self)
        self.sheet_path: Path | None = None
        self.sheet_name: str | None = None
        self.sheet_names: list[str] = []
        self.rows: Table | None = None
        self.job: Job | None = None
        self.last_message = ""
        self.ask: Callable[[str, str], bool] = lambda title, text: ask_user(self, title, text)
        self.ask_save_path: Callable[[], str] = self._ask_export_path
        self._tasks: set[asyncio.Task] = set()
        self._pipeline_saved = True
        self.loading = False            # a sheet is being read
        self._shown_row: tuple = ()     # what the inspector shows: (row, result, status)
        self._fitted = False            # output columns sized during this run
        self._load_generation = 0

        self.model = ResultsModel(self)
        self.runner = RunController(self.model, self)
        self._estimate_timer = QTimer(self)  # edits come in bursts: estimate once they pause
        self._estimate_timer.setSingleShot(True)
        self._estimate_timer.setInterval(ESTIMATE_DELAY_MS)
        self._estimate_timer.timeout.connect(self.update_estimate)
        self.setWindowIcon(icon("app"))
        self.setAcceptDrops(True)
        self.setStyleSheet(STYLE_SHEET)
        self._build()
        self._build_actions()
        self._connect()
        self.doc.replace(self._new_pipeline())
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

    def _action(self, text: str, slot, shortcut=None, icon_name: str = "", tip: str = "") -> QAction:
        action = QAction(icon(icon_name) if icon_name else icon(""), text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        if tip:
            action.setToolTip(tip)
            action.setStatusTip(tip)
        action.triggered.connect(lambda _checked=False: slot())
        return action

    def _build_actions(self) -> None:
        K = QKeySequence.StandardKey
        self.act_open_sheet = self._action("Open spreadsheet…", self.choose_sheet, K.Open, "open",
                                           "Open a spreadsheet (Ctrl+O)")
        self.act_new_pipeline = self._action("New pipeline", self.new_pipeline, K.New, "new")
        self.act_open_pipeline = self._action("Open pipeline…", self.choose_pipeline, "Ctrl+Shift+O", "open")
        self.act_save = self._action("Save pipeline", self.save_pipeline, K.Save, "save", "Save the pipeline (Ctrl+S)")
        self.act_save_as = self._action("Save pipeline as…", self.save_pipeline_as, K.SaveAs, "save")
        self.act_export = self._action("Export results…", self.export_results, "Ctrl+E", "export",
                                       "Export the results to Excel, CSV or Parquet (Ctrl+E)")
        self.act_settings = self._action("Settings…", self.open_settings, K.Preferences, "settings")
        self.act_quit = self._action("Quit", self.close, K.Quit)
        stack = self.doc.undo_stack
        self.act_undo = self._action("Undo", lambda: self.runner.running or stack.undo(), K.Undo, "undo")
        self.act_redo = self._action("Redo", lambda: self.runner.running or stack.redo(), "Ctrl+Shift+Z", "redo")
        self.act_redo.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence(K.Redo)])
        self.act_undo.setEnabled(False)
        self.act_redo.setEnabled(False)
        stack.canUndoChanged.connect(self.act_undo.setEnabled)
        stack.canRedoChanged.connect(self.act_redo.setEnabled)
        stack.undoTextChanged.connect(lambda text: self.act_undo.setToolTip(f"Undo {text} (Ctrl+Z)"))
        stack.redoTextChanged.connect(lambda text: self.act_redo.setToolTip(f"Redo {text} (Ctrl+Shift+Z)"))
        self.act_run = self._action("Run", self.run_all, "F5", "run")
        self.act_stop = self._action("Stop", self.stop_run, "Esc", "stop")
        self.act_pause = self._action("Pause / resume", self.toggle_pause, None, "pause")
        self.act_preview = self._action("Preview on a few rows", self.preview_run, "Shift+F5", "preview")
        self.act_retry = self._action("Retry failed rows", self.retry_failed, None, "retry")
        self.act_delete_step = self._action("Delete step", self.delete_step, K.Delete, "delete")
        self.act_delete_step.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self.cards.addAction(self.act_delete_step)

        menu = self.menuBar().addMenu("&File")
        menu.addAction(self.act_open_sheet)
        self.recent_menu = menu.addMenu("Open recent")
        self.examples_menu = menu.addMenu(icon("example"), "Open example")
        for example in bundled_examples():
            action = self.examples_menu.addAction(f"{example.title}  ({example.sheet.name})")
            action.setToolTip(example.description)
            action.triggered.connect(lambda _=False, e=example: self.open_example(e))
        if self.examples_menu.isEmpty():
            self.examples_menu.addAction("(no examples installed)").setEnabled(False)
        menu.addSeparator()
        for action in (self.act_new_pipeline, self.act_open_pipeline, self.act_save, self.act_save_as):
            menu.addAction(action)
        menu.addSeparator()
        menu.addAction(self.act_export)
        menu.addSeparator()
        menu.addAction(self.act_quit)
        edit = self.menuBar().addMenu("&Edit")
        edit.addAction(self.act_undo)
        edit.addAction(self.act_redo)
        edit.addSeparator()
        edit.addAction(self.act_settings)
        run = self.menuBar().addMenu("&Run")
        for action in (self.act_run, self.act_preview, self.act_pause, self.act_stop, self.act_retry):
            run.addAction(action)

        bar = QToolBar("Main")
        bar.setObjectName("mainToolbar")
        bar.setMovable(False)
        bar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        for action in (self.act_open_sheet, self.act_open_pipeline, self.act_save):
            bar.addAction(action)
        example_button = QToolButton()
        example_button.setText("Examples")
        example_button.setIcon(icon("example"))
        example_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        example_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        example_button.setMenu(self.examples_menu)
        bar.addWidget(example_button)
        bar.addSeparator()
        bar.addAction(self.act_undo)
        bar.addAction(self.act_redo)
        bar.addSeparator()
        bar.addAction(self.act_export)
        bar.addAction(self.act_settings)
        self.addToolBar(bar)
        self.refresh_recent()

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
        if self.sheet_path is not None:
            parts.append(self.sheet_path.name + (f" [{self.sheet_name}]" if self.sheet_name and len(self.sheet_names) > 1 else ""))
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
        # the engine runs these very steps: the pipeline is read-only until the run ends
        self.top_split.setEnabled(not running)
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
        """Show a sheet: its first rows at once, then all of it, both read in a thread so the
        window stays live. False (and a message in the window) if it cannot be read."""
        if self.runner.running:
            self.show_message("Stop the run before opening another sheet.")
            self.sheetLoaded.emit()
            return False
        self._load_generation += 1
        generation = self._load_generation
        self.loading = True
        self._set_busy(f"Reading {path.name}…", True)
        t0 = time.perf_counter()
        try:
            first = await asyncio.to_thread(table.preview, path, sheet=sheet, rows=PREVIEW_ROWS)
            if generation != self._load_generation:
                return False  # another sheet was opened meanwhile
            self._show_table(path, first.sheets, first.sheet, Table.from_frame(first.frame), complete=first.complete)
            if not first.complete:
                self.status_text.setText(f"Reading all of {path.name}; the first {PREVIEW_ROWS} rows are shown…")
                frame = await asyncio.to_thread(table.read_table, path, sheet=first.sheet)
                rows = await asyncio.to_thread(Table.from_frame, frame)
                if generation != self._load_generation:
                    return False
                self._show_table(path, first.sheets, first.sheet, rows, complete=True)
        except Exception as exc:  # any unreadable file: one line in the window, never a traceback
            if generation == self._load_generation:
                self.loading = False
                self._set_busy("", False)
                self.show_message(f"Could not open {path.name}: {one_line(exc)}")
                self.update_state()
                self.sheetLoaded.emit()
            return False
        self.loading = False
        rows = self.rows
        self._set_busy(f"Read {path.name}: {len(rows):,} rows × {len(rows.columns)} columns in "
                       f"{time.perf_counter() - t0:.1f} s", False)
        self.settings.add_recent("sheets", str(self.sheet_path))
        self.refresh_recent()
        self.update_state()
        self.update_estimate()
        self.offer_resume()
        self.sheetLoaded.emit()
        return True

    def _show_table(self, path: Path, sheets: list[str], sheet: str, rows: Table, complete: bool) -> None:
        gc.unfreeze()  # the last run's results (frozen by the runner) may go now, with the old sheet
        self.sheet_path, self.sheet_names, self.sheet_name = path.resolve(), list(sheets), sheet
        self.rows = rows
        self.job = None
        self._show_sheet_picker()
        self.doc.set_columns(rows.columns)
        self.model.set_table(rows, self.doc.pipeline.output_columns())
        self.lower.setCurrentIndex(1)
        self.show_row(-1)
        more = "" if complete else " so far"
        self.table_info.setText(f"{len(rows):,} rows{more} × {len(rows.columns)} columns from {path.name}")
        self.run_bar.show_message("Not run yet.")
        self.message_bar.hide()
        self.update_state()

    def _show_sheet_picker(self) -> None:
        many = len(self.sheet_names) > 1
        self.sheet_picker.blockSignals(True)
        self.sheet_picker.clear()
        self.sheet_picker.addItems(self.sheet_names)
        if self.sheet_name in self.sheet_names:
            self.sheet_picker.setCurrentText(self.sheet_name)
        self.sheet_picker.blockSignals(False)
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
        if not self.runner.running and self._may_discard():
            self.doc.replace(self._new_pipeline())
            self.job = None

    def choose_pipeline(self) -> None:
        start = str(self.doc.pipeline.path.parent) if self.doc.pipeline.path else ""
        path, _ = QFileDialog.getOpenFileName(self, "Open a pipeline", start, PIPELINE_FILTER)
        if path:
            self.open_pipeline(path)

    def open_pipeline(self, path) -> bool:
        if self.runner.running:
            self.show_message("Stop the run before opening another pipeline.")
            return False
        if not self._may_discard():
            return False
        try:
            pipeline = Pipeline.load(path)
        except PipelineError as exc:
            n = len(exc.problems)
            self.show_message(f"Could not open {Path(path).name}: " + ("\n".join(exc.messages()[:8]) if n > 1
                                                                       else one_line(exc)))
            return False
        except Exception as exc:
            self.show_message(f"Could not open {Path(path).name}: {one_line(exc)}")
            return False
        self.doc.replace(pipeline)
        self.job = None
        self.settings.add_recent("pipelines", str(pipeline.path))
        self.refresh_recent()
        if pipeline.steps:
            self.cards.select_step(pipeline.steps[0])
        self.message_bar.hide()
        self.offer_resume()
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
            self.doc.pipeline.save(path)
        except Exception as exc:
            self.show_message(f"Could not save {path.name}: {one_line(exc)}")
            return False
        self.doc.undo_stack.setClean()
        self.settings.add_recent("pipelines", str(path))
        self.refresh_recent()
        self.status_text.setText(f"Saved {path}")
        self.update_title()
        return True

    def open_example(self, example: Example) -> asyncio.Task | None:
        if self.open_pipeline(example.pipeline):
            return self.open_sheet(example.sheet)
        return None

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
        if self.rows is not None and not self.runner.running:
            self.model.set_output_columns(self.doc.pipeline.output_columns())
        self.update_state()

    def _settings_changed(self) -> None:
        value = int(self.doc.pipeline.settings.get("max_concurrency") or 8)
        if self.run_bar.concurrency.value() != value:
            self.run_bar.concurrency.blockSignals(True)
            self.run_bar.concurrency.setValue(value)
            self.run_bar.concurrency.blockSignals(False)

    # ================================================================ running
    def current_job(self) -> Job:
        """The job for this sheet and this pipeline (kept across runs, for retry and resume)."""
        if self.job is None or self.job.pipeline is not self.doc.pipeline or self.job.rows is not self.rows:
            if self.journal is None:
                try:
                    self.journal = Journal(self.journal_path) if self.journal_path else Journal()
                except Exception as exc:  # runs still work, they just cannot be resumed
                    self.show_message(f"The run journal cannot be opened ({one_line(exc)}); "
                                      "runs will not be resumable.", "warning")
            self.job = Job(self.doc.pipeline, self.rows, input_path=self.sheet_path, sheet=self.sheet_name,
                           journal=self.journal)
        return self.job

    def data_dir(self) -> Path:
        """Where the journal, the response cache and the price table live."""
        return Path(self.journal_path).parent if self.journal_path else default_data_dir()

    def offer_resume(self) -> None:
        """Reopening the same sheet and pipeline: offer to finish (or retry) the last run."""
        if self.rows is None or not self.doc.pipeline.steps or self.doc.problems:
            return
        job = self.current_job()
        info = job.resume_info()
        if info is None:
            return
        if job.load_previous():  # show what the journal kept, before any click
            self.model.set_table(self.rows, self.doc.pipeline.output_columns(), job.results)
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

    def start_run(self, mode: str, rows: list[int] | None = None) -> bool:
        blockers = self.run_blockers()
        if blockers:
            self.show_message(blockers)
            return False
        if self.runner.running:
            return False
        job = self.current_job()
        if self.doc.pipeline.runs_code and not job.trusted:
            if not self.ask("Run Python code?",
                            "This pipeline runs Python code written in the pipeline file. Run it only if "
                            "you trust where the file came from.\n\nRun it?"):
                self.show_message("Not run: the pipeline's Python code was not trusted.", "warning")
                return False
            job.trusted = True
        self.model.set_output_columns(self.doc.pipeline.output_columns())
        try:
            self.runner.start(job, mode, rows=rows, max_concurrency=self.run_bar.concurrency.value())
        except Exception as exc:
            actions = [("Settings…", self.open_settings)] if self._uses_models() else None
            self.show_message(f"Cannot run: {one_line(exc)}", actions=actions)
            return False
        self.message_bar.hide()
        self._fitted = False
        return True

    def _uses_models(self) -> bool:
        return any(type(s).group == "Models" for s in walk(self.doc.pipeline.steps) if s.enabled)

    def update_estimate(self) -> None:
        """The projected cost of running every row, for pipelines with model steps (core works it
        out from the first rows' requests; nothing is sent)."""
        if self.rows is None or self.loading or self.doc.problems or not self._uses_models():
            self.run_bar.show_estimate("")
            return
        try:
            estimate = estimate_cost(self.doc.pipeline, self.rows, data_dir=self.data_dir())
        except Exception as exc:  # an estimate must never get in the way of editing
            self.run_bar.show_estimate("")
            self.run_bar.estimate.setToolTip(f"No estimate: {one_line(exc)}")
            return
        self.run_bar.show_estimate(estimate.describe())

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
        p = self.runner.engine.progress if self.runner.engine else None
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
        if path.suffix.lower() not in (".xlsx", ".csv", ".parquet"):
            self.show_message(f"{path.name}: export to a .xlsx, .csv or .parquet file")
            self.exportFinished.emit("")
            return False
        result_set = self.current_job().result_set()
        loop = asyncio.get_running_loop()
        self._set_busy(f"Exporting to {path.name}…", True, 100)

        def on_progress(*args) -> None:  # called in the export thread
            done, total = (args[0], args[1]) if len(args) >= 2 else (args[0] * 100 if args else 0, 100)
            percent = int(100 * done / total) if total else 0
            loop.call_soon_threadsafe(self.busy.setValue, percent)

        try:
            try:
                await asyncio.to_thread(table.export_results, result_set, path, on_progress=on_progress)
            except TypeError as exc:
                if "on_progress" not in str(exc):
                    raise
                await asyncio.to_thread(table.export_results, result_set, path)
        except Exception as exc:
            self._set_busy("", False)
            self.show_message(f"Could not export to {path.name}: {one_line(exc)}")
            self.exportFinished.emit("")
            return False
        self._set_busy(f"Exported {len(result_set):,} rows to {path}", False)
        self.show_message(f"Exported {len(result_set):,} rows to {path}", "ok")
        self.exportFinished.emit(str(path))
        return True

    # ================================================================ settings
    def open_settings(self) -> None:
        dialog = SettingsDialog(self.settings, self.data_dir(), self)
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
        if self.runner.running:
            if not self.ask("Stop the run?", "A run is in progress. Stop it and quit?\n\nRows finished so far "
                            "are saved; open this sheet and pipeline again to resume."):
                event.ignore()
                return
            self.runner.stop()
        elif not self._may_discard():
            event.ignore()
            return
        self.save_layout()
        if self.journal is not None and not self.runner.running:
            self.journal.close()
            self.journal = None
        event.accept()
