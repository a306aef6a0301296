"""The run bar: Run / Pause / Stop, preview on a few rows, retry failed or stopped rows, rows at once,
the run settings' button, progress.

Its texts (why Run is disabled, the projected cost, the progress line) are cut to the room they
have, whole in their tooltips: none of them sets the window's width. A run of some rows (a retry,
a resume, a preview) shows the sheet's overall tally on the bar: "237 / 240 done"."""

from __future__ import annotations

import time

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from .icons import icon
from .widgets import ElidedLabel

EDITED_NOTE = "✎ Edited: your changes apply to the next run"
EDITED_TIP = "This run goes on with the pipeline as it was when it started; run again to use your edits."
NOT_RUN = "Not run yet."
RUN_TIP = "Run the rows that have no result of this pipeline yet (F5); Run ▸ Run all again runs every row"
# What a run of some rows is called on the progress line, by the window's run mode.
PART_RUNS = {"retry_failed": "Retry", "resume": "Run", "preview": "Preview", "up_to": "Run up to a step"}


def retry_label(failed: int, stopped: int) -> str:
    """The Retry button's text: what it will run again."""
    if not failed and not stopped:
        return "Retry failed"
    what = "failed/stopped" if failed and stopped else "failed" if failed else "stopped"
    return f"Retry {failed + stopped:,} {what}"

def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def progress_text(p, paused: bool = False) -> str:
    """done / failed / in flight / queued, rows per second, ETA (or the server the run waits for, or how far
    a step in batch mode's batch is at the provider), tokens and cost."""
    # Batch mode first (the line is cut at its end when room is short): "batch submitted 2 h ago: 41,200 of
    # 50,000 done at the provider", and the rows waiting at its step.
    batch = getattr(p, "batch", "")
    parts = [batch + (" (paused)" if paused else "")] if batch else []
    if getattr(p, "batched", 0):
        parts.append(f"{p.batched:,} waiting for the batch")
    parts += [f"{p.done:,} done", f"{p.failed:,} failed", f"{p.running:,} in flight", f"{p.queued:,} queued"]
    if p.cancelled:
        parts.append(f"{p.cancelled:,} stopped")
    rate = p.rows_per_second
    parts.append(f"{rate:,.1f} rows/s" if rate < 10 else f"{rate:,.0f} rows/s")
    if batch:
        pass  # no ETA: the provider decides (within 24 hours)
    elif paused:
        parts.append("paused")
    elif getattr(p, "waiting", ""):  # a server that stopped answering (a restart): its rows wait
        parts.append(f"{p.waiting} (retrying in {max(0.0, p.waiting_until - time.perf_counter()):.0f} s)")
    elif p.finished < p.selected:
        parts.append(f"ETA {duration(p.eta)}")
    tokens = p.tokens_in + p.tokens_out
    if tokens:
        parts.append(f"{tokens:,} tokens")
    if p.cost:
        parts.append(f"${p.cost:,.4f}")
        if 0 < p.finished < p.selected:  # the cost so far, scaled to every row of the run
            parts.append(f"≈ ${p.cost * p.selected / p.finished:,.4f} projected")
    return " · ".join(parts)


def tool_button(text: str, icon_name: str, tip: str) -> QPushButton:
    button = QPushButton(icon(icon_name), text)
    button.setToolTip(tip)
    return button


class RunBar(QWidget):
    runClicked = Signal()
    pauseClicked = Signal()      # pause or resume, depending on the state
    stopClicked = Signal()
    previewClicked = Signal(int)
    retryClicked = Signal()
    settingsClicked = Signal()   # the run settings (retries, cache, budget)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("runBar")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(10, 8, 10, 8)
        outer.setSpacing(6)
        row = QHBoxLayout()
        row.setSpacing(8)

        self.run_button = tool_button("Run", "run", RUN_TIP)
        self.run_button.setObjectName("runButton")
        self.pause_button = tool_button("Pause", "pause", "Let rows in flight finish; start no new ones")
        self.stop_button = tool_button("Stop", "stop", "Stop now; finished rows are kept (Esc)")
        for button in (self.run_button, self.pause_button, self.stop_button):
            row.addWidget(button)
        row.addSpacing(12)

        self.preview_button = tool_button("Preview on", "preview",
                                          "Run on the selected rows, or on the first N rows when none are selected")
        self.preview_rows = QSpinBox()
        self.preview_rows.setRange(1, 10_000)
        self.preview_rows.setValue(10)
        self.preview_rows.setSuffix(" rows")
        row.addWidget(self.preview_button)
        row.addWidget(self.preview_rows)
        self.retry_button = tool_button("Retry failed", "retry", "Run again only the rows that failed or were stopped")
        row.addWidget(self.retry_button)
        row.addSpacing(8)
        # Why Run is disabled (or that the run keeps its own copy), and the projected cost: shown
        # one at a time in practice, in the room left of the buttons' line.
        self.blocker = ElidedLabel()
        self.blocker.setObjectName("blocker")
        row.addWidget(self.blocker, 1)
        self.estimate = ElidedLabel()
        self.estimate.setObjectName("help")
        self.estimate.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.estimate.setToolTip("What a run of every row will probably cost, from the first rows' requests "
                                 "(nothing is sent to work it out)")
        self.estimate.hide()
        row.addWidget(self.estimate, 1)
        row.addStretch(0)  # the buttons keep their size when both labels are hidden
        outer.addLayout(row)

        # Rows at once goes on the progress line: the buttons' line is what sets the bar's width.
        line = QHBoxLayout()
        line.setSpacing(8)
        line.addWidget(QLabel("Rows at once"))
        self.concurrency = QSpinBox()
        self.concurrency.setRange(1, 1000)
        self.concurrency.setValue(8)
        self.concurrency.setToolTip("Max concurrency: rows in flight, and calls to models or web APIs at once.")
        line.addWidget(self.concurrency)
        # On this line, an icon: the buttons' line keeps the width it had (the window must fit 1,000 px).
        self.settings_button = QToolButton()
        self.settings_button.setObjectName("runSettingsButton")
        self.settings_button.setIcon(icon("settings"))
        self.settings_button.setAutoRaise(True)
        self.settings_button.setToolTip("Run settings: retries, response cache, budget (Run ▸ Run settings…)")
        line.addWidget(self.settings_button)

        line.addSpacing(12)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setTextVisible(True)
        self.progress.setFormat("%v / %m")
        self.progress.setMinimumWidth(120)
        self.progress.setMaximumWidth(260)
        self.progress.hide()  # until a run gives it numbers
        self.stats = ElidedLabel(NOT_RUN)
        self.stats.setObjectName("runStats")
        line.addWidget(self.progress, 1)
        line.addWidget(self.stats, 3)
        outer.addLayout(line)
        self.part_run = ""  # "Retry of 3 rows" while a run covers some rows of the sheet
        self.where = ""  # where the rows run when not on this computer: "Dask cluster local:2"
        self.batch_left = ""  # how far the batch was at the provider when the run ended without it

        self.run_button.clicked.connect(self.runClicked)
        self.pause_button.clicked.connect(self.pauseClicked)
        self.stop_button.clicked.connect(self.stopClicked)
        self.preview_button.clicked.connect(lambda: self.previewClicked.emit(self.preview_rows.value()))
        self.retry_button.clicked.connect(self.retryClicked)
        self.settings_button.clicked.connect(self.settingsClicked)
        self.edited_during_run = False
        self.set_state(running=False, can_run=False, failed_rows=0)

    def set_state(self, *, running: bool, can_run: bool, failed_rows: int, paused: bool = False,
                  why_not: str = "", stopped_rows: int = 0) -> None:
        """Enable what makes sense now; `why_not` explains a disabled Run in its tooltip. Retry
        runs the failed and the stopped rows again."""
        self.run_button.setEnabled(can_run and not running)
        self.preview_button.setEnabled(can_run and not running)
        self.retry_button.setEnabled(can_run and not running and failed_rows + stopped_rows > 0)
        self.retry_button.setText(retry_label(failed_rows, stopped_rows))
        self.pause_button.setEnabled(running)
        self.stop_button.setEnabled(running)
        self.pause_button.setText("Resume" if paused else "Pause")
        self.pause_button.setIcon(icon("run" if paused else "pause"))
        self.concurrency.setEnabled(not running)
        self.run_button.setToolTip(RUN_TIP if can_run or not why_not else why_not)
        first = why_not.splitlines()[0] if why_not else ""
        if running:
            self._show_blocker(EDITED_NOTE if self.edited_during_run else "",
                               EDITED_TIP if self.edited_during_run else "")
        else:
            self.edited_during_run = False
            self._show_blocker(f"⚠ {first}" if first else "", why_not)

    def _show_blocker(self, text: str, tip: str) -> None:
        self.blocker.setText(text)
        self.blocker.setToolTip(tip)
        self.blocker.setVisible(bool(text))  # an empty label would still take its share of the line

    def note_edit_during_run(self) -> None:
        """The pipeline was edited while a run goes on: say that the run keeps its own copy."""
        self.edited_during_run = True
        self._show_blocker(EDITED_NOTE, EDITED_TIP)

    def run_started(self, mode: str, selected: int, total: int, where: str = "") -> None:
        """A run starts: of every row, or of some (`mode` retry_failed, resume, preview, up_to); `where`:
        its rows run elsewhere than this computer ("Dask cluster local:2")."""
        part = selected < total and mode in PART_RUNS
        self.batch_left = ""
        self.where = where
        self.part_run = f"{PART_RUNS[mode]} of {selected:,} row{'s' if selected != 1 else ''}" if part else ""

    def show_progress(self, p, paused: bool = False, done_overall: int | None = None) -> None:
        """The run's numbers; a run of some rows shows the sheet's overall tally on the bar
        (`done_overall` of `p.total` done) and says what it runs on the line, and where when not here."""
        self.progress.show()
        self.batch_left = getattr(p, "batch", "") if p.finished_at else ""  # a run ended with its batch waiting
        line = progress_text(p, paused)
        if self.part_run and done_overall is not None:
            self.progress.setRange(0, max(1, p.total))
            self.progress.setValue(min(done_overall, p.total))
            self.progress.setFormat("%v / %m done")
            self.stats.setText(f"{self.part_run}{f' on {self.where}' if self.where else ''}: {line}")
        else:
            self.progress.setRange(0, max(1, p.selected))
            self.progress.setValue(p.finished)
            self.progress.setFormat("%v / %m")
            self.stats.setText(f"On {self.where}: {line}" if self.where else line)

    def show_message(self, text: str) -> None:
        """A line about the run (stopped, ...) beside its numbers; a run stopped while its batch waits at
        the provider says so first (the batch goes on there)."""
        if self.batch_left:
            text = f"The batch goes on at the provider ({self.batch_left}); Run collects it. {text}"
        self.stats.setText(text)

    def reset(self) -> None:
        """Another sheet: no run's numbers to show."""
        self.part_run = self.where = ""
        self.progress.hide()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.stats.setText(NOT_RUN)

    def show_estimate(self, text: str) -> None:
        self.estimate.setText(f"Projected: {text}" if text else "")
        self.estimate.setVisible(bool(text))
