"""The Formula step's formula box: monospace text, Insert column / Insert function menus, and the
spot a problem is about underlined as it is typed.

The problem's words come from core's check, shown under the field by the step form as for every
parameter ("position 14: unknown column [reveiw]; did you mean [review]?"), and the value on the
selected row from the form's output preview ("Writes on row 3: ..."); this field adds where in
the formula: the same check (`check_formula` with the columns before the step) gives the span.
"""

from __future__ import annotations

from batchgrid.core.steps.formula import FormulaSyntaxError, check_formula
from batchgrid.core.steps.formula_functions import FUNCTIONS, NAMES
from PySide6.QtGui import QColor, QFontDatabase, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import QHBoxLayout, QPlainTextEdit, QTextEdit, QToolButton

from .fields import TextBoxField, insert_column_button, insert_menu_button
from .style import colors


class FormulaField(TextBoxField):
    lines = 3

    def __init__(self, param, ctx, parent=None):
        super().__init__(param, ctx, parent)
        self.edit.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.edit.setPlaceholderText('e.g. IF([rating] < 3, "escalate", "ok")')
        self.edit.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        self.error: FormulaSyntaxError | None = None
        row = QHBoxLayout()
        row.addWidget(insert_column_button(ctx.columns, self.insert, lambda c: f"[{c}]"))
        row.addWidget(self._functions_button())
        row.addStretch(1)
        self.layout_.addLayout(row)

    def _functions_button(self) -> QToolButton:
        button, menu = insert_menu_button("Insert function")
        for name in NAMES:
            action = menu.addAction(FUNCTIONS[name].usage, lambda n=name: self.insert(f"{n}("))
            action.setData(name)
        button.setMenu(menu)
        return button

    def _changed(self):
        super()._changed()
        self.mark_error()

    def _show(self, value):
        super()._show(value)
        self.mark_error()

    def set_preview_row(self, row, label):
        self.ctx.preview_row, self.ctx.preview_label = row, label
        self.mark_error()

    def mark_error(self) -> None:
        """Underline the part of the formula its problem is about (none while it reads well)."""
        text = self.edit.toPlainText()
        self.error = None
        if text.strip():
            try:
                # Columns are checked once a sheet is open (a row to preview on), as the pipeline's check does.
                check_formula(text, self.ctx.columns if self.ctx.preview_row is not None else None)
            except FormulaSyntaxError as exc:
                self.error = exc
        marks = []
        if self.error is not None:
            start = min(self.error.start, max(len(text) - 1, 0))
            mark = QTextEdit.ExtraSelection()
            mark.cursor = QTextCursor(self.edit.document())
            mark.cursor.setPosition(start)
            mark.cursor.setPosition(min(max(self.error.end, start + 1), len(text)), QTextCursor.MoveMode.KeepAnchor)
            fmt = QTextCharFormat()
            fmt.setUnderlineStyle(QTextCharFormat.UnderlineStyle.WaveUnderline)
            fmt.setUnderlineColor(QColor(colors()["problem_border"]))
            mark.format = fmt
            marks.append(mark)
        self.edit.setExtraSelections(marks)
        self.edit.setToolTip(str(self.error) if self.error is not None else self.param.help)
