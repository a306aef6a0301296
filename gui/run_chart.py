"""The run, drawn: rows per second over time, a histogram of the rows' latencies, and the cost so
far against the cost projected for the whole run, as three small plots beside the run bar's
progress (sparklines: the numbers are in their captions and tooltips, so they fit at 1,024 px).

The numbers come from core/run/timeline.py, fed by the run's progress ticks and its row events;
the strip redraws at most twice a second, and not at all while hidden. pyqtgraph draws the
plots (made when the strip is first shown). `install_run_chart(window)` adds the strip and
View ▸ Run chart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from batchgrid.core.run.timeline import RunTimeline
from batchgrid.core.session import Session
from PySide6.QtCore import QEvent, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QPalette
from PySide6.QtWidgets import QBoxLayout, QHBoxLayout, QLabel, QSizePolicy, QVBoxLayout, QWidget

from .plot_style import bar_colour, restyle, small_plot
from .widgets import ElidedLabel

if TYPE_CHECKING:  # pragma: no cover
    from .main_window import MainWindow

REDRAW_MS = 500
CHART_HEIGHT = 84
PLOT_WIDTH = 96  # each plot's least width


def seconds_text(s: float) -> str:
    if s < 0.01:
        return f"{s * 1000:.1f} ms"
    return f"{s * 1000:.0f} ms" if s < 1 else f"{s:.1f} s"


class RunChart(QWidget):
    redrawn = Signal()  # new numbers were drawn (tests count these)

    def __init__(self, session: Session, parent=None):
        super().__init__(parent)
        self.setObjectName("runChart")
        self.session = session
        self.timeline = RunTimeline()
        self.has_run = False   # a run has been drawn since the sheet was opened
        self.redraws = 0
        self.plots: list = []
        self._due = False
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(REDRAW_MS)
        self._timer.timeout.connect(self.redraw)
        session.listeners.append(self.timeline.on_event)

        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self.setStyleSheet("QWidget#runChart { background: palette(base); border: 1px solid palette(mid);"
                           " border-radius: 6px; }")
        row = QHBoxLayout(self)
        row.setContentsMargins(8, 4, 8, 4)
        row.setSpacing(10)
        self.captions: list[QLabel] = []
        self.boxes: list[QVBoxLayout] = []
        for tip in ("Rows finished per second, over the run",
                    "How long rows took, from start to end (retries and waits included)",
                    "What the run has cost so far (solid) against the cost projected for every row (dashed)"):
            box = QVBoxLayout()
            box.setSpacing(0)
            caption = ElidedLabel()  # cut with "…" (whole in its tooltip), never clipped at both ends
            caption.setObjectName("help")
            caption.setToolTip(tip)
            caption.setAlignment(Qt.AlignmentFlag.AlignHCenter)
            caption.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
            box.addWidget(caption)
            row.addLayout(box, 1)
            self.captions.append(caption)
            self.boxes.append(box)
        self.setFixedHeight(CHART_HEIGHT)

    def sizeHint(self) -> QSize:
        return QSize(3 * 150, CHART_HEIGHT)

    def minimumSizeHint(self) -> QSize:
        return QSize(3 * PLOT_WIDTH + 36, CHART_HEIGHT)

    def _make_plots(self) -> None:
        import pyqtgraph as pg

        for box in self.boxes:
            plot = small_plot(self)
            plot.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
            plot.setMinimumSize(PLOT_WIDTH, 30)
            item = plot.getPlotItem()
            item.hideAxis("left")  # a sparkline: the caption says the numbers
            item.hideAxis("bottom")
            box.addWidget(plot, 1)
            self.plots.append(plot)
        self.rate_curve = self.plots[0].plot([], [])
        self.latency_bars = pg.BarGraphItem(x0=[], x1=[], height=[], pen=None)
        self.plots[1].addItem(self.latency_bars)
        self.cost_curve = self.plots[2].plot([], [])
        self.projection = self.plots[2].plot([], [])
        self._pens()

    def _pens(self) -> None:
        import pyqtgraph as pg

        palette = self.palette()
        line = palette.color(QPalette.ColorRole.Highlight)
        self.rate_curve.setPen(pg.mkPen(line, width=2))
        self.cost_curve.setPen(pg.mkPen(line, width=2))
        self.projection.setPen(pg.mkPen(palette.color(QPalette.ColorRole.PlaceholderText), width=1,
                                        style=Qt.PenStyle.DashLine))
        self.latency_bars.setOpts(brush=bar_colour(palette))

    # ---- the run's numbers ---------------------------------------------------------------------
    def run_started(self) -> None:
        progress = self.session.progress
        self.timeline.start(progress.selected if progress is not None else 0)
        self.has_run = True
        self.redraw()

    def progressed(self, progress, _paused: bool = False) -> None:
        self.timeline.sample(progress.elapsed, progress.finished, progress.cost)
        if not self._timer.isActive():
            self._timer.start()

    def sheet_changed(self) -> None:
        """Another sheet: the last run's pictures belong to the sheet it ran on."""
        self.has_run = False
        self.timeline.start(0)

    # ---- drawing ---------------------------------------------------------------------------------
    def redraw(self) -> None:
        if not self.isVisible():
            self._due = True
            return
        self._due = False
        if not self.plots:
            self._make_plots()
        self.redraws += 1
        t = self.timeline
        seconds, rates = t.rates()
        self.rate_curve.setData(seconds, rates)
        self.plots[0].setYRange(0, max(rates, default=1.0) * 1.1 or 1.0, padding=0)
        now = "—" if not rates else f"{rates[-1]:,.1f}" if rates[-1] < 10 else f"{rates[-1]:,.0f}"
        self.captions[0].setText(f"{now} rows/s")
        self.plots[0].setToolTip(f"Rows finished per second over the run: now {now}, at most "
                                 f"{max(rates, default=0):,.0f}, over {seconds[-1] if seconds else 0:,.0f} s")

        edges, counts = t.latency_histogram()
        self.latency_bars.setOpts(x0=edges[:-1], x1=edges[1:], height=counts)
        if edges:
            self.plots[1].setXRange(edges[0], edges[-1], padding=0.02)
            self.plots[1].setYRange(0, max(counts) * 1.05, padding=0)
        quantiles = t.latency_quantiles()
        if quantiles is not None:
            fastest, median, p95, slowest = quantiles
            self.captions[1].setText(f"{seconds_text(median)}, p95 {seconds_text(p95)}")
            self.plots[1].setToolTip(f"How long rows took (retries and waits included), {len(t.latencies):,} rows: "
                                     f"{seconds_text(fastest)} to {seconds_text(slowest)}, median "
                                     f"{seconds_text(median)}, 95% under {seconds_text(p95)}")
        else:
            self.captions[1].setText("latency")

        finished, costs = t.costs()
        projected = t.projected_cost()
        self.cost_curve.setData(finished, costs)
        self.plots[2].setXRange(0, max(1, t.selected), padding=0.02)
        if projected > 0:
            self.projection.setData([0, t.selected], [0, projected])
            self.plots[2].setYRange(0, projected * 1.05, padding=0)
            self.captions[2].setText(f"${costs[-1]:,.4f} of ${projected:,.4f}")
            self.plots[2].setToolTip(f"Cost so far (solid): ${costs[-1]:,.4f} for {finished[-1]:,} rows; "
                                     f"projected for all {t.selected:,} rows (dashed): ≈ ${projected:,.4f}")
        else:
            self.projection.setData([], [])
            self.plots[2].setYRange(0, 1, padding=0)
            self.captions[2].setText("no cost")
            self.plots[2].setToolTip("No priced model calls so far in this run")
        self.redrawn.emit()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if self._due or not self.plots:
            self.redraw()

    def changeEvent(self, event) -> None:
        if event.type() == QEvent.Type.PaletteChange and self.plots:
            for plot in self.plots:
                restyle(plot)
            self._pens()
        super().changeEvent(event)


def install_run_chart(window: MainWindow) -> RunChart:
    """Add the run chart under the run bar (shown once a run starts, while View ▸ Run chart is
    ticked), and View ▸ Run chart. Call it after build_actions."""
    from .column_summary import view_menu

    if isinstance(getattr(window, "run_chart", None), RunChart):
        return window.run_chart  # installed already (once is enough)
    chart = RunChart(window.session)
    chart.hide()
    # Beside the run bar: the bar and the chart share the bar's place in its column.
    column = window.run_bar.parentWidget().layout()
    holder = QWidget()
    row = QHBoxLayout(holder)
    row.setContentsMargins(0, 0, 0, 0)
    row.setSpacing(6)
    if isinstance(column, QBoxLayout):
        index = column.indexOf(window.run_bar)
        column.removeWidget(window.run_bar)
        column.insertWidget(index, holder)
    row.addWidget(window.run_bar, 5)
    row.addWidget(chart, 3)
    chart.setMaximumWidth(520)

    action = QAction("Run chart", window)
    action.setCheckable(True)
    action.setChecked(True)
    action.setToolTip("Rows per second, latencies and cost of the run, drawn under the run bar")
    action.setStatusTip(action.toolTip())
    view_menu(window).addAction(action)

    def follow() -> None:
        chart.setVisible(action.isChecked() and chart.has_run)

    def started() -> None:
        chart.run_started()
        follow()

    def sheet_loaded() -> None:
        chart.sheet_changed()
        follow()

    action.toggled.connect(lambda _on: follow())
    window.runner.started.connect(started)
    window.runner.progressed.connect(chart.progressed)
    window.runner.finished.connect(lambda _reason, _message: chart.redraw())
    window.sheetLoaded.connect(sheet_loaded)
    window.run_chart = chart
    window.act_run_chart = action
    return chart
