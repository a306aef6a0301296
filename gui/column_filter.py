"""The filter line above the results table: one box per filtered column ("review contains
[good] ✕", "city = Paris ✕"), "Showing 12 of 240 rows" and Clear filters.

A column's filter comes from its header's right-click ▸ Filter… (a box, filtering as you type)
or a cell's right-click ▸ Filter by this value. Filters combine with each other and with the
status filter; the model applies them off the loop for big tables. The line hides itself when
every row is shown.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QLineEdit, QPushButton, QScrollArea, QToolButton, QWidget

from .icons import icon
from .results_model import ResultsModel, status_word
from .widgets import ElidedLabel

TYPING_MS = 200  # a pause in typing before the table filters again


class FilterChip(QWidget):
    """One column's filter: its name, the text (editable for "contains"), a ✕."""

    def __init__(self, bar: FilterBar, column: int):
        super().__init__(bar)
        self.bar, self.column = bar, column
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(3)
        self.label = QLabel()
        self.edit = QLineEdit()
        self.edit.setPlaceholderText("contains…")
        self.edit.setClearButtonEnabled(False)
        self.edit.setFixedWidth(140)
        self.close = QToolButton()
        self.close.setText("✕")
        self.close.setAutoRaise(True)
        self.close.setToolTip("Remove this filter")
        for w in (self.label, self.edit, self.close):
            row.addWidget(w)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(TYPING_MS)
        self._timer.timeout.connect(self._apply)
        self.edit.textEdited.connect(lambda _t: self._timer.start())
        self.edit.returnPressed.connect(self._apply)
        self.close.clicked.connect(lambda: bar.remove(column))

    def show_filter(self) -> None:
        model = self.bar.model
        f = model.column_filters.get(self.column)
        header = model.headers[self.column]
        if f is not None and f.kind == "equals":
            self.label.setText(f"{header} = “{f.text}”" if f.text else f"{header} is blank")
            self.edit.hide()
        else:
            self.label.setText(f"{header} contains")
            self.edit.show()
            if f is not None and not self.edit.hasFocus():
                self.edit.setText(f.text)

    def _apply(self) -> None:
        self._timer.stop()
        self.bar.model.set_column_filter(self.column, self.edit.text(), "contains")


class FilterBar(QWidget):
    clearRequested = Signal()  # Clear filters: the model's filters are cleared; other filters may listen

    def __init__(self, model: ResultsModel, parent=None):
        super().__init__(parent)
        self.model = model
        self.chips: dict[int, FilterChip] = {}
        self.editing: set[int] = set()  # columns with an open box and no text yet
        row = self.row = QHBoxLayout(self)
        row.setContentsMargins(8, 3, 8, 3)
        row.setSpacing(10)
        filter_icon = QLabel()
        filter_icon.setPixmap(icon("filter").pixmap(16, 16))
        row.addWidget(filter_icon)
        # the boxes scroll sideways rather than widen the window (no minimum width from them)
        chips = QWidget()
        self.chip_row = QHBoxLayout(chips)
        self.chip_row.setContentsMargins(0, 0, 0, 0)
        self.chip_row.setSpacing(12)
        self.chip_row.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidget(chips)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setFixedHeight(QLineEdit().sizeHint().height() + 4)
        scroll.setMinimumWidth(60)
        scroll.viewport().setAutoFillBackground(False)  # the line's own background shows through
        chips.setAutoFillBackground(False)
        self.scroll = scroll
        row.addWidget(scroll, 1)
        self.count = ElidedLabel()
        self.count.setObjectName("help")
        row.addWidget(self.count)
        self.clear_button = QPushButton("Clear filters")
        self.clear_button.setToolTip("Show every row again")
        self.clear_button.clicked.connect(self.clear_all)
        row.addWidget(self.clear_button)
        model.filtersChanged.connect(self.refresh)
        model.layoutChanged.connect(self.refresh_count)
        model.modelReset.connect(self._reset)
        self.refresh()

    def edit_column(self, column: int) -> None:
        """Open (or focus) the column's "contains" box."""
        if column not in self.model.column_filters or self.model.column_filters[column].kind != "contains":
            self.model.column_filters.pop(column, None)
            self.editing.add(column)
        self.refresh()
        chip = self.chips.get(column)
        if chip is not None:
            chip.edit.setFocus()
            chip.edit.selectAll()
            self.scroll.ensureWidgetVisible(chip)

    def remove(self, column: int) -> None:
        self.editing.discard(column)
        if column in self.model.column_filters:
            self.model.set_column_filter(column, "")
        else:
            self.refresh()

    def clear_all(self) -> None:
        self.editing.clear()
        self.model.clear_filters()
        self.clearRequested.emit()

    def _reset(self) -> None:
        self.editing.clear()
        self.refresh()

    def refresh(self) -> None:
        model = self.model
        self.editing &= set(range(model.columnCount()))
        wanted = sorted(set(model.column_filters) | self.editing)
        for column in list(self.chips):
            if column not in wanted:
                self.chips.pop(column).deleteLater()
        for column in wanted:
            if column in model.column_filters:
                self.editing.discard(column)
            chip = self.chips.get(column)
            if chip is None:
                chip = self.chips[column] = FilterChip(self, column)
                self.chip_row.insertWidget(self.chip_row.count() - 1, chip)
            chip.show_filter()
        self.refresh_count()

    def refresh_count(self) -> None:
        """'Showing 12 of 240 rows', and the line itself while any filter is on."""
        model = self.model
        shown, total = model.rowCount(), len(model.store)
        filtered = shown < total or model.filtering() or bool(self.chips)
        status = f" · status {status_word(model.status_filter)}" if model.status_filter else ""
        self.count.setText(f"Showing {shown:,} of {total:,} rows{status}")
        self.clear_button.setEnabled(model.filtering() or shown < total or bool(self.chips))
        self.setVisible(filtered)
