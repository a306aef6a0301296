"""Small widgets of the main window: the message bar, the welcome page, titled panels, labels
that never widen the window, how any error reads in one line, and the wheel guard of the forms."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batchgrid.core.util.errors import BatchgridError, PipelineError
from PySide6.QtCore import QEvent, QObject, QSize, Qt
from PySide6.QtGui import QPainter
from PySide6.QtWidgets import (
    QAbstractScrollArea,
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QToolButton,
    QToolTip,
    QVBoxLayout,
    QWidget,
)

from .examples import bundled_examples
from .icons import icon

if TYPE_CHECKING:  # pragma: no cover
    from .main_window import MainWindow


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


class ElidedLabel(QLabel):
    """One line of text that never sets the window's minimum width: with less room than the text
    needs it ends in "…", and its tooltip has the whole text. `text()` is always the whole text."""

    def minimumSizeHint(self) -> QSize:
        metrics = self.fontMetrics()
        room = min(metrics.horizontalAdvance("Wwww…"), metrics.horizontalAdvance(self.text()))
        margins = self.contentsMargins()
        return QSize(room + margins.left() + margins.right(), super().minimumSizeHint().height())

    def shown_text(self) -> str:
        """What fits: the text on one line, cut with "…" to the label's width."""
        line = " ".join(self.text().split())
        return self.fontMetrics().elidedText(line, Qt.TextElideMode.ElideRight, self.contentsRect().width())

    def full_tip(self) -> str:
        """The tooltip: the whole text when it is cut, then the label's own tooltip."""
        tip = self.toolTip()
        whole = self.text() if self.shown_text() != " ".join(self.text().split()) and self.text() not in tip else ""
        return "\n\n".join(part for part in (whole, tip) if part)

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        self.style().drawItemText(painter, self.contentsRect(), self.alignment(), self.palette(), self.isEnabled(),
                                  self.shown_text(), self.foregroundRole())

    def event(self, event) -> bool:
        if event.type() == QEvent.Type.ToolTip:
            tip = self.full_tip()
            if tip:
                QToolTip.showText(event.globalPos(), tip, self)
            else:
                QToolTip.hideText()
            return True
        return super().event(event)


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
        # A wrapped label is as wide as its longest word (a long path): let it clip instead, the
        # whole message in its tooltip, so no message widens the window.
        self.text.setMinimumWidth(160)
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
        for widget in (self, self.icon, self.text):  # the text's colour goes with the bar's kind
            widget.style().unpolish(widget)
            widget.style().polish(widget)
        self.icon.setPixmap(icon("status-error" if kind == "error" else "status-done" if kind == "ok"
                                 else "status-retrying").pixmap(18, 18))
        self.text.setText(text)
        self.text.setToolTip(text if any(len(word) > 50 for word in text.split()) else "")
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
        # One button a line: a row of long example titles would set the window's minimum width.
        buttons = QVBoxLayout()
        buttons.setSpacing(6)
        open_button = QPushButton(icon("open"), "Open a spreadsheet…")
        open_button.setObjectName("primaryButton")
        open_button.clicked.connect(window.choose_sheet)
        buttons.addWidget(open_button, 0, Qt.AlignmentFlag.AlignHCenter)
        self.example_buttons: list[QPushButton] = []
        for example in bundled_examples():
            button = QPushButton(icon("example"), f"Example: {example.title}")
            button.setToolTip(example.description or str(example.pipeline.name))
            button.clicked.connect(lambda _=False, e=example: window.open_example(e))
            buttons.addWidget(button, 0, Qt.AlignmentFlag.AlignHCenter)
            self.example_buttons.append(button)
        box.addLayout(buttons)
        self.recent = QLabel()
        self.recent.setObjectName("welcomeText")
        self.recent.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.recent.setWordWrap(True)
        self.recent.setMinimumWidth(200)  # long file names wrap or clip; they never widen the window
        self.recent.linkActivated.connect(lambda path: window.open_path(path))
        box.addWidget(self.recent)
        outer.addLayout(box)
        outer.addStretch(2)

    def show_recent(self, paths: list[str]) -> None:
        links = [f'<a href="{p}">{Path(p).name}</a>' for p in paths[:5] if Path(p).exists()]
        self.recent.setText("Recent: " + " · ".join(links) if links else "")


class WheelGuard(QObject):
    """The mouse wheel over a number box or a list the user is not editing scrolls the form around it
    instead of changing the value (Qt's default changes every value that passes under the pointer).
    Installed once on the application; a box with the keyboard focus takes the wheel as usual. The
    boxes take the focus by click or Tab only (Qt gives it to them on the wheel first, by default)."""

    def eventFilter(self, watched, event) -> bool:
        kind = event.type()
        if kind == QEvent.Type.Polish and isinstance(watched, (QAbstractSpinBox, QComboBox)):
            if watched.focusPolicy() == Qt.FocusPolicy.WheelFocus:
                watched.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
            return False
        if kind != QEvent.Type.Wheel or not isinstance(watched, (QAbstractSpinBox, QComboBox)):
            return False
        if watched.hasFocus() or (isinstance(watched, QComboBox) and watched.view().isVisible()):
            return False
        area = watched.parentWidget()
        while area is not None and not isinstance(area, QAbstractScrollArea):
            area = area.parentWidget()
        if area is not None:
            QApplication.sendEvent(area.viewport(), event)
        return True  # never the value's: the form scrolled, or nothing did


def install_wheel_guard() -> None:
    app = QApplication.instance()
    if app is not None and not app.property("batchgridWheelGuard"):
        app.setProperty("batchgridWheelGuard", True)
        guard = WheelGuard(app)
        app.installEventFilter(guard)


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
