"""One input widget per parameter kind. A step's form is built from these, never by hand.

Every field shows a value (`set_value`, which never echoes back) and reports the user's
edits through `edited(value, typing)`; `typing` says the edit came from a text box, so
the undo stack can merge keystrokes into one step.

Why one module of over 500 lines: it is a catalogue of small, parallel classes (one per
parameter kind, sharing a base and the same two signals); splitting them by size would
scatter that parallel reading without making any one of them simpler.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchgrid.core.steps import base as b
from batchgrid.core.util import template as tpl
from batchgrid.core.util.errors import StepError
from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtGui import QFontDatabase, QKeySequence
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from . import typing_undo
from .icons import icon

clock = time.monotonic  # when keystrokes come (tests move it by hand to make pauses)


@dataclass
class FormContext:
    """What a form needs to know beyond the step: pickable columns, a row to preview on."""

    columns: list[str] = field(default_factory=list)       # sheet columns + earlier outputs
    preview_row: dict[str, Any] | None = None               # the selected row's values
    preview_label: str = ""                                 # e.g. "row 3"
    providers: list[str] = field(default_factory=list)      # provider profile names
    profile_lookup: Callable[[str], dict[str, Any] | None] = lambda name: None  # app settings' profiles
    base_dir: Path | None = None                            # FILE paths are relative to this


class Field(QWidget):
    edited = Signal(object, bool)  # value, typing
    typingFinished = Signal()      # a pause, a new word, focus left: typing after this is a new undo step
    undoRequested = Signal(bool)   # Ctrl+Z (False) or Ctrl+Shift+Z (True) in a text box: the pipeline's undo

    def __init__(self, param: b.Param, ctx: FormContext, parent: QWidget | None = None):
        super().__init__(parent)
        self.param = param
        self.ctx = ctx
        self._quiet = False
        self.chunks = typing_undo.TypingChunks(lambda: clock())
        self.layout_ = QVBoxLayout(self)
        self.layout_.setContentsMargins(0, 0, 0, 0)
        self.layout_.setSpacing(4)

    # subclasses: build in __init__, implement _show(value) and value()
    def set_value(self, value: Any) -> None:
        self._quiet = True
        try:
            self._show(value)
        finally:
            self._quiet = False

    def _show(self, value: Any) -> None:
        raise NotImplementedError

    def value(self) -> Any:
        raise NotImplementedError

    def _emit(self, typing: bool = False) -> None:
        if not self._quiet:
            self.edited.emit(self.value(), typing)

    def set_preview_row(self, row: dict[str, Any] | None, label: str) -> None:
        """Fields with a preview redraw it; the rest ignore it."""

    def step_changed(self, what: str) -> None:
        """Another parameter of the step changed (`what`); fields that depend on it follow."""

    def _typed(self, text: str) -> None:
        """A keystroke changed the text: a new undo step when it starts one, then the edit."""
        if not self._quiet:
            if self.chunks.breaks(text):
                self.typingFinished.emit()
            self._emit(typing=True)

    def _shown_text(self, text: str) -> None:
        """The text box now shows `text` set from outside: typing after it is a new undo step."""
        self.chunks.reset(text)

    def text_widgets(self) -> list[QWidget]:
        """The widgets typed into (Ctrl+Z there is the pipeline's undo)."""
        widget = self.main_widget()
        if isinstance(widget, QComboBox) and widget.lineEdit() is not None:
            return [widget.lineEdit()]
        return [widget] if isinstance(widget, (QLineEdit, QPlainTextEdit)) else []

    def watch_focus(self) -> None:
        self.main_widget().installEventFilter(self)
        for widget in self.text_widgets():
            if widget is not self.main_widget():
                widget.installEventFilter(self)

    def eventFilter(self, watched, event) -> bool:
        kind = event.type()
        if kind == QEvent.Type.FocusOut:
            self.chunks.reset(self.chunks.text)
            self.typingFinished.emit()
        elif kind in (QEvent.Type.ShortcutOverride, QEvent.Type.KeyPress) and watched in self.text_widgets():
            # The widget's own undo would keep a second history (and undo a whole template at once):
            # Ctrl+Z here walks the pipeline's stack, one word or pause at a time.
            redo = event.matches(QKeySequence.StandardKey.Redo)
            if redo or event.matches(QKeySequence.StandardKey.Undo):
                event.accept()
                if kind == QEvent.Type.KeyPress:
                    self.undoRequested.emit(redo)
                return True
        return False

    def main_widget(self) -> QWidget:
        """The widget that turns red when the parameter has a problem."""
        return self


def text_height(lines: int, widget: QWidget) -> int:
    return widget.fontMetrics().lineSpacing() * lines + 14


def cursor_after(old: str, new: str) -> int:
    """Where the cursor goes when a text box's text is set from outside (an undo, a redo): at the
    end of what changed, as in a text editor, not at the start of the box."""
    where, _removed, inserted = typing_undo.changed_span(old, new)
    return where + len(inserted)


def set_plain_text(edit: QPlainTextEdit, text: str) -> None:
    old = edit.toPlainText()
    edit.setPlainText(text)
    cursor = edit.textCursor()
    cursor.setPosition(cursor_after(old, text))
    edit.setTextCursor(cursor)


class LineField(Field):
    def __init__(self, param, ctx, parent=None, placeholder: str = ""):
        super().__init__(param, ctx, parent)
        self.edit = QLineEdit()
        self.edit.setPlaceholderText(placeholder)
        self.edit.textEdited.connect(self._typed)
        self.layout_.addWidget(self.edit)

    def _show(self, value):
        if self.edit.text() != (value or ""):
            old = self.edit.text()
            self.edit.setText(value or "")
            self.edit.setCursorPosition(cursor_after(old, value or ""))
            self._shown_text(value or "")

    def value(self):
        return self.edit.text()

    def main_widget(self):
        return self.edit


class OutputField(LineField):
    """A new column's name; blank means the step's own default name."""

    def __init__(self, param, ctx, parent=None, default_name: str = ""):
        hint = f"blank: {default_name}" if default_name else "name of the new column"
        super().__init__(param, ctx, parent, placeholder=hint)


class TextBoxField(Field):
    """Several lines: prompts, lists (one item per line), JSON, code."""

    lines = 4

    def __init__(self, param, ctx, parent=None):
        super().__init__(param, ctx, parent)
        self.edit = QPlainTextEdit()
        self.edit.setTabChangesFocus(True)
        self.edit.setFixedHeight(text_height(self.lines, self.edit))
        self.edit.textChanged.connect(self._changed)
        self.layout_.addWidget(self.edit)

    def _changed(self):
        self._typed(self.edit.toPlainText())

    def _text_of(self, value) -> str:
        return value or ""

    def _show(self, value):
        text = self._text_of(value)
        if self.edit.toPlainText() != text:
            set_plain_text(self.edit, text)
            self._shown_text(text)

    def value(self):
        return self.edit.toPlainText()

    def main_widget(self):
        return self.edit

    def insert(self, text: str) -> None:
        """Put `text` at the cursor (an Insert column / Insert function menu's choice) and go on typing."""
        cursor = self.edit.textCursor()
        cursor.insertText(text)
        self.edit.setTextCursor(cursor)
        self.edit.setFocus()


class MultilineField(TextBoxField):
    lines = 5


class CodeField(TextBoxField):
    lines = 8

    def __init__(self, param, ctx, parent=None):
        super().__init__(param, ctx, parent)
        self.edit.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.edit.setTabChangesFocus(False)
        self.edit.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)


class StringsField(TextBoxField):
    """A list of text, one item per line."""

    lines = 4

    def __init__(self, param, ctx, parent=None):
        super().__init__(param, ctx, parent)
        self.edit.setPlaceholderText("one per line")

    def _text_of(self, value):
        return "\n".join(str(v) for v in (value or []))

    def value(self):
        return [line.strip() for line in self.edit.toPlainText().splitlines() if line.strip()]


class JsonField(TextBoxField):
    """Any JSON value. Text that does not parse is not applied; the field says why."""

    lines = 5

    def __init__(self, param, ctx, parent=None):
        super().__init__(param, ctx, parent)
        self.edit.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.error = QLabel()
        self.error.setObjectName("fieldProblem")
        self.error.setWordWrap(True)
        self.error.hide()
        self.layout_.addWidget(self.error)

    def _text_of(self, value):
        return "" if value is None else json.dumps(value, indent=2, ensure_ascii=False)

    def _show(self, value):
        try:
            same = self._parse() == value
        except ValueError:
            same = False
        if not same:
            set_plain_text(self.edit, self._text_of(value))
            self._shown_text(self.edit.toPlainText())
        self.error.hide()

    def _parse(self):
        text = self.edit.toPlainText().strip()
        return None if not text else json.loads(text)

    def _changed(self):
        try:
            self._parse()
        except ValueError as exc:
            self.error.setText(f"Not valid JSON yet ({exc}); the last valid value is kept.")
            self.error.show()
            self.chunks.text = self.edit.toPlainText()  # followed, even while it does not parse
            return
        self.error.hide()
        self._typed(self.edit.toPlainText())

    def value(self):
        return self._parse()


class PreviewLabel(QLabel):
    """Shows what a template or source gives on the selected row."""

    def __init__(self):
        super().__init__()
        self.setObjectName("preview")
        self.setWordWrap(True)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.setTextFormat(Qt.TextFormat.PlainText)

    def show_result(self, text: str | None, error: str | None, label: str):
        if error:
            self.setProperty("bad", True)
            self.setText(f"{label}: {error}" if label else error)
        elif text is None:
            self.setProperty("bad", False)
            self.setText("Open a sheet to see a preview here.")
        else:
            self.setProperty("bad", False)
            shown = text if len(text) <= 400 else text[:400] + " …"
            self.setText(f"{label}: {shown}" if label else shown)
        self.style().unpolish(self)
        self.style().polish(self)


def preview(template: str, row: dict[str, Any] | None, columns: list[str]) -> tuple[str | None, str | None]:
    """(text, error) of rendering `template` on `row`. Columns that earlier steps write but have
    no value yet show as ‹name›."""
    if row is None:
        return None, None
    values = dict(row)
    for c in columns:
        values.setdefault(c, f"‹{c}›")
    try:
        return tpl.render(template, values), None
    except (tpl.TemplateSyntaxError, StepError) as exc:
        return None, str(exc)


def insert_menu_button(text: str) -> tuple[QToolButton, QMenu]:
    """An "Insert …" button that opens its menu at once (the menu is set on it by the caller)."""
    button = QToolButton()
    button.setText(text)
    button.setIcon(icon("insert"))
    button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
    button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
    return button, QMenu(button)


def insert_column_button(columns: list[str], insert, written=lambda c: "{" + c + "}") -> QToolButton:
    button, menu = insert_menu_button("Insert column")
    for c in columns:
        menu.addAction(c, lambda c=c: insert(written(c)))
    if not columns:
        menu.addAction("(no columns yet: open a sheet)").setEnabled(False)
    button.setMenu(menu)
    return button


class TemplateField(TextBoxField):
    lines = 3

    def __init__(self, param, ctx, parent=None):
        super().__init__(param, ctx, parent)
        self.edit.setPlaceholderText("Text with {column} placeholders")
        row = QHBoxLayout()
        self.insert_button = insert_column_button(ctx.columns, self.insert)
        row.addWidget(self.insert_button)
        row.addStretch(1)
        self.layout_.addLayout(row)
        self.preview = PreviewLabel()
        self.layout_.addWidget(self.preview)
        self.set_preview_row(ctx.preview_row, ctx.preview_label)

    def _changed(self):
        super()._changed()
        self.set_preview_row(self.ctx.preview_row, self.ctx.preview_label)

    def _show(self, value):
        super()._show(value)
        self.set_preview_row(self.ctx.preview_row, self.ctx.preview_label)

    def set_preview_row(self, row, label):
        self.ctx.preview_row, self.ctx.preview_label = row, label
        text, error = preview(self.value(), row, self.ctx.columns)
        self.preview.show_result(text, error, f"Preview on {label}" if label else "Preview")


class SourceField(Field):
    """A column, or a template when it contains {...}: an editable list of columns."""

    def __init__(self, param, ctx, parent=None):
        super().__init__(param, ctx, parent)
        self.combo = QComboBox()
        self.combo.setEditable(True)
        self.combo.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.combo.addItems(ctx.columns)
        self.combo.lineEdit().setPlaceholderText("a column, or a template like {title} {body}")
        self.combo.lineEdit().textEdited.connect(lambda _t: self._changed(typing=True))
        self.combo.activated.connect(lambda _i: self._changed(typing=False))
        self.layout_.addWidget(self.combo)
        self.preview = PreviewLabel()
        self.layout_.addWidget(self.preview)

    def _changed(self, typing: bool):
        if typing:
            self._typed(self.combo.currentText())
        else:
            self._shown_text(self.combo.currentText())
            self._emit()
        self.set_preview_row(self.ctx.preview_row, self.ctx.preview_label)

    def _show(self, value):
        if self.combo.currentText() != (value or ""):
            self.combo.setEditText(value or "")
            self._shown_text(value or "")
        self.set_preview_row(self.ctx.preview_row, self.ctx.preview_label)

    def value(self):
        return self.combo.currentText()

    def set_preview_row(self, row, label):
        self.ctx.preview_row, self.ctx.preview_label = row, label
        value = self.value()
        if not value:
            self.preview.hide()
            return
        self.preview.show()
        template = value if b.is_template(value) else "{" + value + "}"
        text, error = preview(template, row, self.ctx.columns)
        self.preview.show_result(text, error, f"Preview on {label}" if label else "Preview")

    def main_widget(self):
        return self.combo


class ColumnField(Field):
    def __init__(self, param, ctx, parent=None):
        super().__init__(param, ctx, parent)
        self.combo = QComboBox()
        self.combo.activated.connect(lambda _i: self._emit())
        self.layout_.addWidget(self.combo)

    def _show(self, value):
        self.combo.clear()
        self.combo.addItem("(choose a column)", "")
        for c in self.ctx.columns:
            self.combo.addItem(c, c)
        if value and value not in self.ctx.columns:
            self.combo.addItem(f"{value} (not found)", value)
        self.combo.setCurrentIndex(max(0, self.combo.findData(value or "")))

    def value(self):
        return self.combo.currentData() or ""

    def main_widget(self):
        return self.combo


class ColumnsField(Field):
    """Several columns: tick the ones to use."""

    def __init__(self, param, ctx, parent=None):
        super().__init__(param, ctx, parent)
        self.list = QListWidget()
        self.list.setFixedHeight(text_height(5, self.list))
        self.list.itemChanged.connect(lambda _i: self._emit())
        self.layout_.addWidget(self.list)

    def _show(self, value):
        chosen = list(value or [])
        self.list.clear()
        for c in self.ctx.columns + [c for c in chosen if c not in self.ctx.columns]:
            item = QListWidgetItem(c if c in self.ctx.columns else f"{c} (not found)")
            item.setData(Qt.ItemDataRole.UserRole, c)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if c in chosen else Qt.CheckState.Unchecked)
            self.list.addItem(item)

    def value(self):
        return [self.list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.list.count())
                if self.list.item(i).checkState() == Qt.CheckState.Checked]

    def main_widget(self):
        return self.list


class NumberField(Field):
    """INT or FLOAT. A parameter whose default is None offers "not set" below its minimum."""

    def __init__(self, param, ctx, parent=None):
        super().__init__(param, ctx, parent)
        is_int = param.kind == b.INT
        self.spin = QSpinBox() if is_int else QDoubleSpinBox()
        if not is_int:
            self.spin.setDecimals(3)
            self.spin.setSingleStep(0.1)
        low = param.minimum if param.minimum is not None else (0 if is_int else 0.0)
        high = param.maximum if param.maximum is not None else (10**9 if is_int else 1e9)
        self.optional = param.default is None
        if self.optional:
            low = low - 1
            self.spin.setSpecialValueText("not set")
        self.low = int(low) if is_int else low
        self.spin.setRange(self.low, int(high) if is_int else high)
        self.spin.setMaximumWidth(160)
        self.spin.valueChanged.connect(lambda _v: self._emit())
        self.layout_.addWidget(self.spin)

    def _show(self, value):
        self.spin.setValue(self.low if value is None else value)

    def value(self):
        v = self.spin.value()
        if self.optional and v == self.low:
            return None
        return v

    def main_widget(self):
        return self.spin


class BoolField(Field):
    def __init__(self, param, ctx, parent=None):
        super().__init__(param, ctx, parent)
        self.check = QCheckBox(param.title)
        self.check.toggled.connect(lambda _v: self._emit())
        self.layout_.addWidget(self.check)

    def _show(self, value):
        self.check.setChecked(bool(value))

    def value(self):
        return self.check.isChecked()

    def main_widget(self):
        return self.check


class ChoiceField(Field):
    def __init__(self, param, ctx, parent=None):
        super().__init__(param, ctx, parent)
        self.combo = QComboBox()
        self.combo.addItems(list(param.choices))
        self.combo.activated.connect(lambda _i: self._emit())
        self.layout_.addWidget(self.combo)

    def _show(self, value):
        index = self.combo.findText(str(value))
        if index < 0 and value is not None:
            self.combo.addItem(str(value))
            index = self.combo.count() - 1
        self.combo.setCurrentIndex(index)

    def value(self):
        return self.combo.currentText()

    def main_widget(self):
        return self.combo


class EditableComboField(Field):
    """A name picked from a list or typed (the list may not know every name)."""

    def __init__(self, param, ctx, parent=None):
        super().__init__(param, ctx, parent)
        self.combo = QComboBox()
        self.combo.setEditable(True)
        self.combo.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.combo.lineEdit().textEdited.connect(self._typed)
        self.combo.activated.connect(lambda _i: self._emit())

    def _show(self, value):
        if self.combo.currentText() != (value or ""):
            self.combo.setEditText(value or "")
            self._shown_text(value or "")

    def value(self):
        return self.combo.currentText().strip()

    def main_widget(self):
        return self.combo


class ProviderField(EditableComboField):
    """A provider profile's name; blank uses the default provider."""

    def __init__(self, param, ctx, parent=None):
        super().__init__(param, ctx, parent)
        self.combo.addItems([""] + [p for p in ctx.providers if p])
        self.combo.lineEdit().setPlaceholderText("default provider")
        self.layout_.addWidget(self.combo)


class FileField(LineField):
    """A line edit (as LineField) with a Browse… button beside it."""

    def __init__(self, param, ctx, parent=None):
        Field.__init__(self, param, ctx, parent)
        row = QHBoxLayout()
        self.edit = QLineEdit()
        self.edit.setPlaceholderText("a file, relative to the pipeline file")
        self.edit.textEdited.connect(self._typed)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self.browse)
        row.addWidget(self.edit, 1)
        row.addWidget(browse)
        self.layout_.addLayout(row)

    def browse(self):
        start = str(self.ctx.base_dir or Path.home())
        path, _ = QFileDialog.getOpenFileName(self, self.param.title, start)
        if path:
            chosen = Path(path)
            if self.ctx.base_dir is not None:
                try:
                    chosen = chosen.relative_to(self.ctx.base_dir)
                except ValueError:
                    pass
            self.edit.setText(chosen.as_posix())
            self._emit()


class MappingField(Field):
    """Name → value pairs (headers, column → JSON path). A blank last line adds a pair."""

    def __init__(self, param, ctx, parent=None):
        super().__init__(param, ctx, parent)
        self.table = QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["Name", "Value"])
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().hide()
        self.table.setFixedHeight(text_height(5, self.table))
        self.table.itemChanged.connect(self._changed)
        row = QHBoxLayout()
        remove = QToolButton()
        remove.setIcon(icon("delete"))
        remove.setToolTip("Remove the selected pair")
        remove.clicked.connect(self.remove_selected)
        row.addStretch(1)
        row.addWidget(remove)
        self.layout_.addWidget(self.table)
        self.layout_.addLayout(row)

    def _fill(self, pairs: list[tuple[str, str]]):
        self.table.blockSignals(True)
        self.table.setRowCount(len(pairs) + 1)
        for r, (k, v) in enumerate([*pairs, ("", "")]):
            self.table.setItem(r, 0, QTableWidgetItem(k))
            self.table.setItem(r, 1, QTableWidgetItem(v))
        self.table.blockSignals(False)

    def _show(self, value):
        if value != self.value() or self.table.rowCount() == 0:
            self._fill([(str(k), str(v)) for k, v in (value or {}).items()])

    def _pairs(self) -> list[tuple[str, str]]:
        pairs = []
        for r in range(self.table.rowCount()):
            k, v = self.table.item(r, 0), self.table.item(r, 1)
            key = k.text().strip() if k else ""
            if key:
                pairs.append((key, v.text() if v else ""))
        return pairs

    def _changed(self, _item):
        last = self.table.rowCount() - 1
        k = self.table.item(last, 0)
        if k is not None and k.text().strip():  # keep one blank line for the next pair
            self._fill(self._pairs())
        self._emit()

    def remove_selected(self):
        rows = sorted({i.row() for i in self.table.selectedIndexes()}, reverse=True)
        for r in rows:
            if r < self.table.rowCount() - 1:
                self.table.removeRow(r)
        self._emit()

    def value(self):
        return dict(self._pairs())

    def main_widget(self):
        return self.table


FIELD_TYPES: dict[str, type[Field]] = {
    b.TEXT: LineField,
    b.MULTILINE: MultilineField,
    b.TEMPLATE: TemplateField,
    b.SOURCE: SourceField,
    b.COLUMN: ColumnField,
    b.COLUMNS: ColumnsField,
    b.OUTPUT: OutputField,
    b.INT: NumberField,
    b.FLOAT: NumberField,
    b.BOOL: BoolField,
    b.CHOICE: ChoiceField,
    b.STRINGS: StringsField,
    b.MAPPING: MappingField,
    b.FILE: FileField,
    b.CODE: CodeField,
    b.JSON: JsonField,
    b.PROVIDER: ProviderField,
    # b.BRANCHES is built by the step form (it edits nested steps, not a value)
}


def make_field(param: b.Param, ctx: FormContext, default_output: str = "") -> Field:
    if param.kind == b.OUTPUT:
        return OutputField(param, ctx, default_name=default_output)
    if param.kind == b.FORMULA:
        from .formula_field import FormulaField  # it builds on this module's fields

        return FormulaField(param, ctx)
    return FIELD_TYPES[param.kind](param, ctx)
