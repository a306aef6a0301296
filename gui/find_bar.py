"""Find in the results (Ctrl+F): a bar under the table with a text box, previous / next and
"3 of 17"; Enter / F3 next, Shift+Enter / Shift+F3 previous, Esc closes.

It searches the text the table shows (case-insensitive) in the rows shown (after the filters,
in the sort's order) and the columns shown, then selects the match and scrolls to it. The
search reads a snapshot of the store in a worker thread (200,000 rows × 10 columns take about
a second of Python; the window's thread keeps running meanwhile) and says when it is done with
a queued signal. A sort, a filter or new results make the matches stale: the next move
searches again first.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from batchgrid.core.util import gc_pause
from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QLineEdit, QToolButton, QWidget

from .icons import icon
from .results_model import ResultsModel, shown_texts

if TYPE_CHECKING:  # pragma: no cover
    from batchgrid.core.run.store import ResultStore

    from .results_view import ResultsView

TYPING_MS = 150  # a pause in typing before searching
CHUNK = 5000  # rows searched between two hand-overs of the GIL to the window's thread
RESEARCH_AFTER = 2.0  # seconds: cells changed since a search this old make the next move search again


def find_cells(store: ResultStore, order: list[int] | None, position: list[int] | None,
               columns: list[int], needle: str) -> list[tuple[int, int]]:
    """(row number, column) of every shown cell whose text contains `needle` (case-insensitive),
    in the table's order: by shown row, then by column as shown. Safe in a worker thread."""
    needle = needle.casefold()
    if not needle:
        return []
    hits: dict[int, list[int]] = {}
    for column in columns:  # by column: one list of texts at a time, a quick comprehension each
        texts = shown_texts(store, column)
        for start in range(0, len(texts), CHUNK):
            for row in [i for i in range(start, min(start + CHUNK, len(texts))) if needle in texts[i].casefold()]:
                hits.setdefault(row, []).append(column)
            time.sleep(0)  # hand the GIL to the window's thread now, not after Python's 5 ms switch interval
    if position is not None:
        rows = sorted((r for r in hits if position[r] >= 0), key=position.__getitem__)
    else:
        rows = sorted(hits)
    rank = {c: i for i, c in enumerate(columns)}
    return [(row, column) for row in rows for column in sorted(hits[row], key=rank.__getitem__)]


class Finder(QObject):
    """Searches in a worker thread; `found` arrives on the window's thread (queued)."""
    found = Signal(int, object)  # the search's number, its matches

    def __init__(self, parent=None):
        super().__init__(parent)
        self.generation = 0

    def search(self, model: ResultsModel, columns: list[int], needle: str) -> int:
        self.generation += 1
        generation = self.generation
        store = model.store.snapshot()  # the table as it is now, not as later events change it
        order = list(model.order) if model.order is not None else None
        position = list(model.position) if model.position is not None else None

        def work() -> None:
            try:
                matches = find_cells(store, order, position, columns, needle)
            except Exception:  # a failed search finds nothing; it must not leave "Searching…" up
                matches = []
            try:
                self.found.emit(generation, matches)
            except RuntimeError:  # the bar was closed with its window meanwhile
                gc_pause.resume()

        # A full garbage collection amid the search's allocations would stop the window for
        # hundreds of milliseconds (a big sheet is millions of objects): paused until the answer.
        gc_pause.pause()
        threading.Thread(target=work, name="batchgrid-find", daemon=True).start()
        return generation


class FindBar(QWidget):
    def __init__(self, view: ResultsView, parent=None):
        super().__init__(parent)
        self.view = view
        self.model: ResultsModel = view.results_model()
        self.matches: list[tuple[int, int]] = []  # (row number, column)
        self.current = -1
        self.stale = True
        self.searching = False
        self._step_after_search = 0  # +1 / -1: move once the search lands; 0: go to the nearest match
        self._searched_at = 0.0
        self.finder = Finder(self)
        self.finder.found.connect(self._found)
        row = QHBoxLayout(self)
        row.setContentsMargins(8, 3, 8, 3)
        row.setSpacing(4)
        row.addWidget(QLabel("Find"))
        self.edit = QLineEdit()
        self.edit.setPlaceholderText("text in the cells shown")
        self.edit.setClearButtonEnabled(True)
        self.edit.setMinimumWidth(120)
        self.edit.setMaximumWidth(320)
        row.addWidget(self.edit, 1)
        self.previous_button = self._button("up", "Previous match (Shift+Enter, Shift+F3)", lambda: self.step(-1))
        self.next_button = self._button("down", "Next match (Enter, F3)", lambda: self.step(+1))
        row.addWidget(self.previous_button)
        row.addWidget(self.next_button)
        self.count = QLabel()
        self.count.setObjectName("help")
        row.addWidget(self.count)
        row.addStretch(1)
        close = QToolButton()
        close.setText("✕")
        close.setAutoRaise(True)
        close.setToolTip("Close (Esc)")
        close.clicked.connect(self.close_bar)
        row.addWidget(close)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(TYPING_MS)
        self._timer.timeout.connect(lambda: self.search(0))
        self.edit.textChanged.connect(lambda _t: self._typed())
        self.edit.installEventFilter(self)
        for signal in (self.model.layoutChanged, self.model.modelReset):
            signal.connect(self._mark_stale)
        view.horizontalHeader().sectionResized.connect(self._mark_stale)  # a column hidden or shown
        self.model.dataChanged.connect(self._data_changed)
        self.hide()

    def _button(self, name: str, tip: str, slot) -> QToolButton:
        button = QToolButton()
        button.setIcon(icon(name))
        button.setToolTip(tip)
        button.setAutoRaise(True)
        button.clicked.connect(slot)
        return button

    # ---- opening and closing --------------------------------------------------------------
    def open_bar(self) -> None:
        """Ctrl+F: show the bar, the box focused with its text selected (the selection's
        text when a single cell is selected and the box is empty)."""
        self.show()
        if not self.edit.text():
            index = self.view.currentIndex()
            if index.isValid() and len(self.view.selectionModel().selectedIndexes()) == 1:
                text = self.model.data(index) or ""
                if text and len(text) <= 60:
                    self.edit.setText(text)
        self.edit.setFocus()
        self.edit.selectAll()

    def close_bar(self) -> None:
        self.hide()
        self.view.setFocus()

    def eventFilter(self, watched, event) -> bool:
        if watched is self.edit:
            kind = event.type()
            if kind == QEvent.Type.ShortcutOverride and event.key() == Qt.Key.Key_Escape:
                event.accept()  # Esc closes the bar here, it does not stop the run
                return True
            if kind == QEvent.Type.KeyPress:
                if event.key() == Qt.Key.Key_Escape:
                    self.close_bar()
                    return True
                if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
                    self.step(-1 if event.modifiers() & Qt.KeyboardModifier.ShiftModifier else +1)
                    return True
        return super().eventFilter(watched, event)

    # ---- searching ---------------------------------------------------------------------------
    def _typed(self) -> None:
        self.stale = True
        self.finder.generation += 1  # an answer for the old text is not wanted
        self.searching = False
        if self.edit.text():
            self._timer.start()
        else:
            self._timer.stop()
            self.matches, self.current = [], -1
            self._show_count()

    def _mark_stale(self, *_args) -> None:
        self.stale = True

    def _data_changed(self, *_args) -> None:
        # During a run cells change many times a second: search again on the next move only
        # if the last search is a while old (a new answer may match), not on every change.
        if time.monotonic() - self._searched_at > RESEARCH_AFTER:
            self.stale = True

    def columns(self) -> list[int]:
        return self.view.visible_columns()

    def search(self, step: int) -> None:
        """Search now, then go to the nearest match (step 0) or move by `step` from the current one."""
        self._timer.stop()
        needle = self.edit.text()
        if not needle:
            return
        self.searching = True
        self._searched_at = time.monotonic()
        self._step_after_search = step
        self.stale = False
        self.count.setText("Searching…")
        self.finder.search(self.model, self.columns(), needle)

    def _found(self, generation: int, matches: list[tuple[int, int]]) -> None:
        gc_pause.resume()  # one answer for each search started, wanted or not
        if generation != self.finder.generation:
            return  # an older search: the text, the table or the order changed since
        self.searching = False
        self.matches = matches
        self.current = -1
        if matches:
            self._go(self._nearest(self._step_after_search))
        self._show_count()

    def _nearest(self, step: int) -> int:
        """The match at or after the selected cell (before it, going back), in the table's order."""
        index = self.view.currentIndex()
        if not index.isValid():
            return 0 if step >= 0 else len(self.matches) - 1
        here = (index.row(), self.view.visible_columns().index(index.column())
                if index.column() in self.view.visible_columns() else 0)
        rank = {c: i for i, c in enumerate(self.view.visible_columns())}
        keys = [(self.model.view_row(r), rank.get(c, 0)) for r, c in self.matches]
        if step > 0:
            later = [i for i, k in enumerate(keys) if k > here]
            return later[0] if later else 0
        if step < 0:
            earlier = [i for i, k in enumerate(keys) if k < here]
            return earlier[-1] if earlier else len(keys) - 1
        at = [i for i, k in enumerate(keys) if k >= here]
        return at[0] if at else 0

    def step(self, step: int) -> None:
        """Next (+1) or previous (-1) match, wrapping around; searches first when stale."""
        if not self.edit.text():
            return
        if self.stale or self.searching:
            self.search(step)
            return
        if not self.matches:
            return
        self._go((self.current + step) % len(self.matches) if self.current >= 0 else self._nearest(step))
        self._show_count()

    def _go(self, i: int) -> None:
        row, column = self.matches[i]
        view_row = self.model.view_row(row)
        if view_row < 0:  # filtered out since: search again
            self.search(1)
            return
        self.current = i
        index = self.model.index(view_row, column)
        self.view.setCurrentIndex(index)  # selects the cell; the inspector follows
        self.view.scrollTo(index)

    def _show_count(self) -> None:
        if not self.edit.text():
            self.count.setText("")
        elif not self.matches:
            self.count.setText("No matches")
        else:
            self.count.setText(f"{self.current + 1:,} of {len(self.matches):,}" if self.current >= 0
                               else f"{len(self.matches):,} matches")
