"""How the main window is laid out and wired: panels, splitters, signals, saved layout, and its
place on the screen (it opens within the screen's available area, a saved size clamped to it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QByteArray, QRect, QSize, Qt
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QSplitter,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from .icons import icon
from .inspector import RowInspector
from .palette import StepPalette
from .results_view import ResultsView, StatusFilter
from .run_bar import RunBar
from .step_form import StepFormPanel
from .step_list import StepListModel, StepListView
from .widgets import ElidedLabel, MessageBar, WelcomePage, titled_panel

if TYPE_CHECKING:  # pragma: no cover
    from .main_window import MainWindow

DEFAULT_SIZE = QSize(1400, 900)  # a first window, if the screen has room
FRAME_ROOM = QSize(8, 40)  # a title bar and borders, before the window manager says what they are


def build_layout(self: MainWindow) -> None:
    """The panels: palette | pipeline cards | step form above; run bar, results | inspector below."""
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
    # sized for about 20 characters, not for the longest sheet name
    self.sheet_picker.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    self.sheet_picker.setMinimumContentsLength(20)
    self.sheet_picker.hide()
    self.sheet_picker_label = QLabel("Sheet")
    self.sheet_picker_label.hide()
    self.table_info = ElidedLabel()  # "240 rows × 9 columns from <a long file name>"
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
    self.status_text = ElidedLabel()  # file names and messages of any length
    self.statusBar().addWidget(self.status_text, 1)
    self.statusBar().addPermanentWidget(self.busy)


def connect_signals(self: MainWindow) -> None:
    """What each widget's signal does."""
    self.palette.stepChosen.connect(self.add_step)
    self.cards.stepSelected.connect(self.form_panel.show_step)
    self.cards.stepSelected.connect(lambda _s: self._update_card_buttons())
    self.card_buttons["up"].clicked.connect(lambda: self._move_current(-1))
    self.card_buttons["down"].clicked.connect(lambda: self._move_current(+1))
    self.card_buttons["duplicate"].clicked.connect(self.duplicate_step)
    self.card_buttons["delete"].clicked.connect(self.delete_step)
    run_up_to = getattr(self, "run_up_to", None)  # right-click a card ▸ Run up to here (main_window.py)
    if run_up_to is not None:
        self.cards.runUpToRequested.connect(run_up_to)
        self.cards.can_run_up_to = self.act_run.isEnabled
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
    self.runner.starting.connect(self.update_state)
    self.runner.started.connect(self.update_state)
    self.runner.progressed.connect(self._progressed)
    self.runner.finished.connect(self._run_finished)
    self.runner.pausedBy.connect(lambda text, resume: self.show_message(  # runner.pause_offer
        text, "warning", [(resume, self.toggle_pause), ("Stop", self.stop_run)]))
    self.view.rowSelected.connect(self.show_row)
    self.view.can_choose_header = self.can_choose_header  # right-click ▸ Use as header (window_files.py)
    self.view.useAsHeader.connect(self.use_as_header)
    self.view.noHeaderRow.connect(lambda: self.use_as_header(None))
    self.doc.settingsChanged.connect(self.follow_header_setting)
    self.model.dataChanged.connect(self._rows_changed)
    self.model.sorting.connect(lambda busy: self._set_busy("Sorting…" if busy else "", busy))
    self.sheet_picker.activated.connect(lambda _i: self.open_sheet(self.sheet_path, self.sheet_picker.currentText()))

def restore_layout(self: MainWindow) -> None:
    """The window's size, toolbars and splitters as the user left them, within this screen."""
    q = self.settings.q
    geometry = q.value("window/geometry")
    if not (isinstance(geometry, (QByteArray, bytes)) and self.restoreGeometry(geometry)):
        self.resize(DEFAULT_SIZE)
    for key, restore in (("window/state", self.restoreState),
                         ("window/main_split", self.main_split.restoreState),
                         ("window/top_split", self.top_split.restoreState),
                         ("window/bottom_split", self.bottom_split.restoreState)):
        value = q.value(key)
        if isinstance(value, (QByteArray, bytes)):
            restore(value)
    screen = self.screen()
    if screen is not None:
        fit_to_screen(self, screen.availableGeometry())


def fit_to_screen(self: MainWindow, available: QRect) -> None:
    """Shrink the window to the screen's available area (less its frame) and move it onto it:
    a size saved on a bigger monitor, or at another scale, must not open off screen."""
    if self.isMaximized() or self.isFullScreen():
        return
    frame = self.frameGeometry()
    extra = QSize(frame.width() - self.width(), frame.height() - self.height())
    if not self.isVisible():  # no frame yet: leave room for one
        extra = extra.expandedTo(FRAME_ROOM)
    size = self.size().boundedTo(available.size() - extra)
    self.resize(size)
    x = min(max(frame.x(), available.left()), available.right() + 1 - size.width() - extra.width())
    y = min(max(frame.y(), available.top()), available.bottom() + 1 - size.height() - extra.height())
    self.move(max(x, available.left()), max(y, available.top()))


def save_layout(self: MainWindow) -> None:
    q = self.settings.q
    q.setValue("window/geometry", self.saveGeometry())
    q.setValue("window/state", self.saveState())
    q.setValue("window/main_split", self.main_split.saveState())
    q.setValue("window/top_split", self.top_split.saveState())
    q.setValue("window/bottom_split", self.bottom_split.saveState())
    q.sync()
