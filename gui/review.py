"""Review mode: the results one row at a time, by keyboard, to accept, edit or reject what the
steps wrote before the results go to anyone.

Run ▸ Review results (Ctrl+R) puts the review panel where the results table was: the row's inputs
beside its outputs, the row inspector (what each step did) still on the right. Enter accepts,
E edits the outputs (Enter saves, Shift+Enter a new line, Esc cancels), R rejects, Backspace
forgets the row's review; ↑/↓ (or ←/→, Home/End) move; Esc leaves. A decision moves to the next
row. The rows are the table's rows as shown: its filters and sort (review only the failed rows,
or one label's). Decisions go through `Session.review` (core/run/overrides.py: in the journal at
once; an edited cell is a manual override no run writes over).
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from batchgrid.core.run import events as ev
from batchgrid.core.run.overrides import ACCEPTED, EDITED, REJECTED, coerce
from batchgrid.core.run.results import status_word
from batchgrid.core.util.display import display_text
from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtGui import QAction, QKeyEvent, QKeySequence
from PySide6.QtWidgets import (
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSplitter,
    QTableView,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from .inspector import pairs_table
from .results_model import EDITED_COLOURS, ResultsModel
from .style import colors, inspector_css, is_dark
from .widgets import ElidedLabel, one_line, titled_panel

if TYPE_CHECKING:  # pragma: no cover
    from batchgrid.core.session import Session

    from .main_window import MainWindow

K = Qt.Key
ENTER_KEYS = (K.Key_Return, K.Key_Enter)
PREVIOUS_KEYS, NEXT_KEYS = (K.Key_Up, K.Key_Left, K.Key_PageUp), (K.Key_Down, K.Key_Right, K.Key_PageDown)
PANEL_KEYS = {*ENTER_KEYS, *PREVIOUS_KEYS, *NEXT_KEYS, K.Key_E, K.Key_R, K.Key_Escape, K.Key_Backspace,
              K.Key_Delete, K.Key_Home, K.Key_End}
DECISION_WORDS = {ACCEPTED: "✓ Accepted", EDITED: "✎ Edited", REJECTED: "✗ Rejected", "": "Not reviewed"}
KEYS_HINT = "Enter accept · E edit · R reject · ↑/↓ move · Esc leave · Backspace undo"
MAX_LINES = 8  # an output's box grows to this many lines, then scrolls
EDIT_HINT = "Editing: Enter saves and moves on · Shift+Enter new line · Tab next field · Esc cancels"


class OutputEditor(QPlainTextEdit):
    """One output's value: read-only while reviewing, editable after E. Enter saves, Esc cancels."""

    def __init__(self, panel: ReviewPanel):
        super().__init__()
        self.panel = panel
        self.setTabChangesFocus(True)
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.setReadOnly(True)

    def fit_height(self, text: str) -> None:
        """As tall as the text's wrapped lines (1 to MAX_LINES): short values take one line."""
        metrics = self.fontMetrics()
        width = max(self.viewport().width() - 8, 80)
        lines = 0
        for paragraph in text[:4000].split("\n"):
            lines += max(1, -(-metrics.horizontalAdvance(paragraph) // width))
            if lines >= MAX_LINES:
                break
        margins = self.contentsMargins()
        self.setFixedHeight(min(lines, MAX_LINES) * metrics.lineSpacing() + 2 * int(self.document().documentMargin())
                            + margins.top() + margins.bottom() + 2)

    def event(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.ShortcutOverride and isinstance(event, QKeyEvent) \
                and event.key() in (*ENTER_KEYS, K.Key_Escape):
            event.accept()  # ours while editing, not the window's (Esc is Stop)
            return True
        return super().event(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if not self.isReadOnly():
            if event.key() in ENTER_KEYS and not event.modifiers() & Qt.KeyboardModifier.ShiftModifier:
                self.panel.save_edit()
                return
            if event.key() == K.Key_Escape:
                self.panel.cancel_edit()
                return
        super().keyPressEvent(event)


class ReviewPanel(QWidget):
    """The row being reviewed: where it is, its decision, its inputs beside its outputs, the keys."""

    left = Signal()  # Esc: leave review mode

    def __init__(self, session: Session, model: ResultsModel, parent=None):
        super().__init__(parent)
        self.setObjectName("reviewPanel")
        self.session = session
        self.model = model
        self.row = -1
        self.editing = False
        self.select_row = lambda row: None  # the window selects the row in its table (the inspector follows)
        self.view: QTableView | None = None  # the results table (E edits its current column's output first)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)

        self.title = QLabel("Review")
        self.title.setObjectName("panelTitle")
        self.position = ElidedLabel()
        self.decision = QLabel()
        self.decision.setObjectName("reviewDecision")
        self.summary = ElidedLabel()
        self.summary.setObjectName("help")
        head = QHBoxLayout()
        head.addWidget(self.title)
        head.addWidget(self.decision)
        head.addWidget(self.position, 1)
        head.addWidget(self.summary, 1)

        self.inputs = QTextBrowser()
        self.inputs.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.outputs_box = QWidget()
        self.outputs_grid = QGridLayout(self.outputs_box)
        self.outputs_grid.setContentsMargins(6, 6, 6, 6)
        self.outputs_grid.setColumnStretch(0, 1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        scroll.setWidget(self.outputs_box)
        self.body = QSplitter(Qt.Orientation.Horizontal)
        for title, widget in (("Inputs", self.inputs), ("Outputs (E to edit)", scroll)):
            self.body.addWidget(titled_panel(title, widget))
        self.body.setChildrenCollapsible(False)
        self.body.setStretchFactor(0, 2)
        self.body.setStretchFactor(1, 3)  # the outputs are what is reviewed: more room
        self.editors: dict[str, OutputEditor] = {}
        self.labels: dict[str, QLabel] = {}

        self.hint = ElidedLabel(KEYS_HINT)
        self.hint.setObjectName("help")
        self.buttons: dict[str, QPushButton] = {}
        keys = QHBoxLayout()
        keys.addWidget(self.hint, 1)
        for name, text, tip, slot in (
                ("accept", "Accept", "Accept the row as it is and go to the next (Enter)", lambda: self.decide(ACCEPTED)),
                ("edit", "Edit", "Edit the outputs (E); Enter saves them", self.start_edit),
                ("reject", "Reject", "Reject the row and go to the next (R)", lambda: self.decide(REJECTED)),
                ("leave", "Leave", "Back to the results table (Esc)", self.leave)):
            button = QPushButton(text)
            button.setToolTip(tip)
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # the keys stay with the panel
            button.clicked.connect(slot)
            keys.addWidget(button)
            self.buttons[name] = button

        column = QVBoxLayout(self)
        column.setContentsMargins(10, 6, 10, 6)
        column.addLayout(head)
        column.addWidget(self.body, 1)
        column.addLayout(keys)
        self.restyle()

    # ---- the rows, in the table's order (its filters and sort) -------------------------------------
    def view_count(self) -> int:
        return self.model.rowCount()

    def start(self, row: int = -1) -> None:
        """Review from `row` (a row number in the sheet), else the first row shown not yet reviewed."""
        if not 0 <= row < len(self.model.store) or self.model.view_row(row) < 0:
            reviewed = self.session.overrides.rows
            row = next((self.model.source_row(v) for v in range(self.view_count())
                        if self.model.source_row(v) not in reviewed), -1)
            if row < 0 and self.view_count():
                row = self.model.source_row(0)
        self.show_row(row)
        self.setFocus()

    def move(self, delta: int) -> bool:
        """To the row `delta` rows below (above) in the table's order; False at either end."""
        if self.editing:
            return False
        view_row = self.model.view_row(self.row) if self.row >= 0 else -1
        target = view_row + delta
        if view_row < 0 or not 0 <= target < self.view_count():
            if view_row < 0 and self.view_count():  # the row left the filter: back to the first row shown
                self.show_row(self.model.source_row(0))
            return False
        self.show_row(self.model.source_row(target))
        return True

    def move_to_end(self, last: bool) -> None:
        if self.view_count() and not self.editing:
            self.show_row(self.model.source_row(self.view_count() - 1 if last else 0))

    # ---- decisions ---------------------------------------------------------------------------------
    def decide(self, decision: str | None, edits: dict[str, Any] | None = None) -> None:
        """Record a decision on the row shown (None forgets its review), then go on to the next row."""
        if self.row < 0:
            return
        row = self.row
        try:
            self.session.review(row, decision, edits)
        except Exception as exc:  # the journal cannot be written: say so, keep the row
            self.summary.setText(f"Not recorded: {one_line(exc)}")
            return
        self.model.review_changed(row)
        if decision is None or not self.move(+1):
            self.show_row(row)  # the last row (or an undo): stay, and show the new decision
            if decision is not None:
                self.summary.setText(self._counts() + " · last row shown")

    def start_edit(self) -> None:
        if self.row < 0 or not self.editors:
            return
        self.editing = True
        for editor in self.editors.values():
            editor.setReadOnly(False)
            editor.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        first = self._editor_for_current_column() or next(iter(self.editors.values()))
        first.setFocus()
        first.selectAll()
        self.hint.setText(EDIT_HINT)
        for name in ("accept", "reject"):
            self.buttons[name].setEnabled(False)
        self.buttons["edit"].setText("Save")

    def save_edit(self) -> None:
        """The outputs as typed: the ones changed become edits (each as the kind of value the step wrote)."""
        if not self.editing:
            return
        edits = {}
        for name, editor in self.editors.items():
            text = editor.toPlainText()
            if text != editor.property("shown"):
                edits[name] = coerce(text, self.model.store.step_value(self.row, name))
        self._end_edit()
        self.decide(EDITED, edits)

    def cancel_edit(self) -> None:
        self._end_edit()
        self.show_row(self.row)

    def _end_edit(self) -> None:
        self.editing = False
        for editor in self.editors.values():
            editor.setReadOnly(True)
            editor.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.hint.setText(KEYS_HINT)
        for name in ("accept", "reject"):
            self.buttons[name].setEnabled(True)
        self.buttons["edit"].setText("Edit")
        self.setFocus()

    def leave(self) -> None:
        if self.editing:
            self._end_edit()
        self.left.emit()

    def _editor_for_current_column(self) -> OutputEditor | None:
        view = self.view
        if view is None or not view.currentIndex().isValid():
            return None
        name = self.model.store.step_column_at(view.currentIndex().column())
        return self.editors.get(name) if name is not None else None

    # ---- keys ----------------------------------------------------------------------------------------
    def event(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.ShortcutOverride and isinstance(event, QKeyEvent) \
                and event.key() in PANEL_KEYS and not event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier:
            event.accept()  # the panel's keys win over the window's shortcuts (Esc is Stop)
            return True
        return super().event(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key = event.key()
        if event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier:
            super().keyPressEvent(event)
        elif key in ENTER_KEYS:
            self.decide(ACCEPTED)
        elif key == K.Key_E:
            self.start_edit()
        elif key == K.Key_R:
            self.decide(REJECTED)
        elif key in (K.Key_Backspace, K.Key_Delete):
            self.decide(None)
        elif key in PREVIOUS_KEYS:
            self.move(-1)
        elif key in NEXT_KEYS:
            self.move(+1)
        elif key in (K.Key_Home, K.Key_End):
            self.move_to_end(key == K.Key_End)
        elif key == K.Key_Escape:
            self.leave()
        else:
            super().keyPressEvent(event)

    # ---- what is shown ---------------------------------------------------------------------------------
    def show_row(self, row: int) -> None:
        """Show row `row` (its number in the sheet): where it is, its decision, inputs and outputs."""
        store = self.model.store
        if self.editing:
            self._end_edit()
        self._sync_outputs()
        if not 0 <= row < len(store):
            self.row = -1
            self.position.setText("No rows to review: the filters show none." if len(store) else "No rows.")
            self.decision.setText("")
            self.inputs.setHtml("")
            for editor in self.editors.values():
                editor.setPlainText("")
            self.summary.setText(self._counts())
            return
        self.row = row
        view_row = self.model.view_row(row)
        shown = self.view_count()
        filtered = " (filtered)" if shown < len(store) else ""
        status = store.status[row]
        where = f"{view_row + 1:,} of {shown:,} rows shown{filtered}" if view_row >= 0 else "hidden by the filter"
        self.position.setText(f"Row {row + 1} · {where} · {status_word(status)}")
        review = self.session.overrides.get(row)
        kind = review.decision if review is not None else ""
        self.decision.setText(DECISION_WORDS[kind])
        _set_styled(self.decision, "kind", kind or "none")
        inputs = store.table.row(row)
        self.inputs.setHtml(inspector_css() + pairs_table(list(inputs.items())) + self._failure(row))
        edited = review.edits if review is not None else {}
        for name in store.step_columns:
            editor = self.editors[name]
            text = display_text(store.value(row, store.column_position(name)))
            editor.setProperty("shown", text)
            editor.setPlainText(text)
            editor.fit_height(text)
            mark = name in edited
            _set_styled(editor, "edited", mark)
            editor.setToolTip(f"Edited in review. The step wrote: {display_text(store.step_value(row, name))[:1000]}"
                              if mark else "")
            self.labels[name].setText(f"{html.escape(name)} <i>(edited)</i>" if mark else html.escape(name))
        self.summary.setText(self._counts())
        self.select_row(row)

    def _failure(self, row: int) -> str:
        result = self.model.store.results[row]
        if result is None or result.status != ev.ERROR:
            return ""
        where = f" in step {html.escape(result.failed_step)}" if result.failed_step else ""
        return f"<p class='error'>Failed{where}: {html.escape(result.error[:500])}</p>"

    def _counts(self) -> str:
        return self.session.overrides.summary(len(self.model.store)) or "No row reviewed yet"

    def _sync_outputs(self) -> None:
        """One label and editor per output column (again when the pipeline's outputs change)."""
        names = list(self.model.store.step_columns)  # the steps' outputs, new or written over an input
        if names == list(self.editors):
            return
        for widget in [*self.editors.values(), *self.labels.values()]:
            widget.deleteLater()
        self.editors, self.labels = {}, {}
        for i, name in enumerate(names):
            label = QLabel(html.escape(name))
            label.setTextFormat(Qt.TextFormat.RichText)
            editor = OutputEditor(self)
            self.outputs_grid.addWidget(label, 2 * i, 0)
            self.outputs_grid.addWidget(editor, 2 * i + 1, 0)
            label.show()  # at once, not on the next turn of the loop (a key may come first)
            editor.show()
            self.labels[name], self.editors[name] = label, editor
        self.outputs_grid.setRowStretch(2 * len(names), 1)

    def refresh(self) -> None:
        """The table changed under the panel (a run, another sheet): show the row as it is now."""
        if not self.editing:
            self.show_row(self.row)

    def restyle(self) -> None:
        c = colors()
        tint = EDITED_COLOURS[int(is_dark(self.palette()))]
        sheet = f"""
QLabel#reviewDecision {{ padding: 1px 8px; border-radius: 9px; border: 1px solid {c["border"]}; color: {c["muted"]}; }}
QLabel#reviewDecision[kind="accepted"] {{ background: {c["ok_bg"]}; border-color: {c["ok_border"]}; color: {c["ok_text"]}; }}
QLabel#reviewDecision[kind="edited"] {{ background: {tint}; border-color: {c["border"]}; color: {c["text"]}; }}
QLabel#reviewDecision[kind="rejected"] {{ background: {c["error_bg"]}; border-color: {c["error_border"]};
                                          color: {c["error_text"]}; }}
QPlainTextEdit[edited="true"] {{ background: {tint}; color: {c["text"]}; font-style: italic; }}
QPlainTextEdit[readOnly="false"] {{ border: 1px solid {c["accent"]}; }}
"""
        if sheet != self.styleSheet():  # a style sheet set makes palette events of its own
            self.setStyleSheet(sheet)

    def changeEvent(self, event: QEvent) -> None:
        if event.type() in (QEvent.Type.PaletteChange, QEvent.Type.ApplicationPaletteChange):
            self.restyle()
            if self.row >= 0 and not self.editing:
                self.inputs.setHtml(inspector_css() + pairs_table(list(self.model.store.table.row(self.row).items()))
                                    + self._failure(self.row))
        super().changeEvent(event)


def _set_styled(widget: QWidget, name: str, value: Any) -> None:
    """A property the style sheet reads; the widget restyled only when it changes (quick rows)."""
    if widget.property(name) != value:
        widget.setProperty(name, value)
        widget.style().unpolish(widget)
        widget.style().polish(widget)


class ReviewMode(QObject):
    """Review mode in the window: the panel in the table's place, the table's selection following
    the reviewed row (the inspector shows its steps), the pipeline area made small while it lasts."""

    changed = Signal(bool)  # entered (True) or left (False)

    def __init__(self, window: MainWindow):
        super().__init__(window)
        self.window = window
        self.panel = ReviewPanel(window.session, window.model)
        self.panel.view = window.view
        self.panel.select_row = self._select
        self.panel.left.connect(self.leave)
        # Beside the results pane in the splitter, shown in its place while reviewing.
        split = window.bottom_split
        self.pane = getattr(window, "results_pane", None) or window.view
        sizes = split.sizes()
        split.insertWidget(split.indexOf(self.pane) + 1, self.panel)
        self.panel.hide()
        split.setSizes([*sizes[:1], 0, *sizes[1:]])
        split.setCollapsible(split.indexOf(self.panel), False)
        self._main_sizes: list[int] = []
        window.model.modelReset.connect(self._table_reset)
        window.model.dataChanged.connect(self._rows_changed)
        window.sheetLoaded.connect(self._say_notes)

    @property
    def active(self) -> bool:
        return not self.panel.isHidden()

    def toggle(self) -> None:
        self.leave() if self.active else self.enter()

    def enter(self) -> None:
        window = self.window
        if window.rows is None or not len(window.rows):
            window.show_message("Open a spreadsheet and run the pipeline first: then review its results.", "info")
            return
        if self.active:
            self.panel.setFocus()
            return
        current = window.view.currentIndex()
        row = window.model.source_row(current.row()) if current.isValid() else -1
        self._swap(self.pane, self.panel)
        self._main_sizes = window.main_split.sizes()
        total = sum(self._main_sizes)
        window.main_split.setSizes([total // 5, total - total // 5])  # room for the row: the pipeline waits
        self.panel.start(row)
        self.changed.emit(True)

    def leave(self) -> None:
        if not self.active:
            return
        window = self.window
        self._swap(self.panel, self.pane)
        if self._main_sizes:
            window.main_split.setSizes(self._main_sizes)
        window.view.setFocus()
        self.changed.emit(False)

    def _swap(self, shown, shows) -> None:
        """`shows` takes the place (and the width) of `shown` in the splitter."""
        split = self.window.bottom_split
        sizes = split.sizes()
        a, b = split.indexOf(shown), split.indexOf(shows)
        sizes[b], sizes[a] = sizes[a], 0
        shows.show()
        shown.hide()
        split.setSizes(sizes)

    def _select(self, row: int) -> None:
        """The table's current row follows the reviewed one (so the inspector shows it)."""
        view, model = self.window.view, self.window.model
        view_row = model.view_row(row)
        if view_row < 0:
            return
        column = max(0, view.currentIndex().column())
        index = model.index(view_row, column)
        if view.currentIndex() != index:
            view.setCurrentIndex(index)
        view.scrollTo(index)

    def _table_reset(self) -> None:
        if self.active:
            self.panel.refresh()

    def _rows_changed(self, top, bottom, *_roles) -> None:
        row = self.panel.row
        if self.active and row >= 0 and top.row() <= self.window.model.view_row(row) <= bottom.row():
            self.panel.refresh()  # a run reached the row shown

    def _say_notes(self) -> None:
        notes = self.window.session.overrides.notes
        if notes:
            self.window.show_message("Reviews: " + "; ".join(notes) + ".", "info")


def install_review(window: MainWindow) -> ReviewMode:
    """Review mode in the window, and Run ▸ Review results (Ctrl+R). Call it after the results pane."""
    mode = getattr(window, "review_mode", None)
    if isinstance(mode, ReviewMode):
        return mode
    mode = ReviewMode(window)
    action = QAction("Review results", window)
    action.setShortcut(QKeySequence("Ctrl+R"))
    action.setToolTip("Review the rows shown one at a time: Enter accept, E edit, R reject, Esc leave (Ctrl+R)")
    action.setStatusTip(action.toolTip())
    action.triggered.connect(lambda _checked=False: mode.toggle())
    run_menu = next((a.menu() for a in window.menuBar().actions()
                     if a.menu() is not None and a.text().replace("&", "") == "Run"), None)
    if run_menu is not None:
        before = getattr(window, "act_run_settings", None)
        if before is not None and before in run_menu.actions():
            run_menu.insertAction(before, action)
            run_menu.insertSeparator(before)
        else:
            run_menu.addAction(action)
    window.addAction(action)
    window.act_review = action
    window.review_mode = mode
    return mode


def ask_about_review_edits(window: MainWindow) -> None:
    """Before Run all again: rows with cells edited in review keep them (the default), unless the
    user asks for the new run's values there."""
    store = window.session.store
    edited = store.overrides.edited_rows()
    if edited and window.ask("Replace your review edits?",
                             f"{len(edited):,} row{'s' if len(edited) != 1 else ''} "
                             f"{'have' if len(edited) != 1 else 'has'} cells you edited in review. Running every "
                             "row again keeps your edits.\n\nReplace them with the new run's values (and forget "
                             "those rows' reviews)?"):
        for row in store.forget_reviews(edited):
            window.model.review_changed(row)
