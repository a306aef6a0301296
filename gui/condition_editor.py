"""A step's "Run only when…" section: rules of [column] [op] [value], combined with all/any.

It edits the step's `when` (core/steps/conditions.py) as one undoable edit per change, writing the
same JSON the pipeline file holds; no rules: no condition (`when` is None, the step runs on every row).
"""

from __future__ import annotations

import json
import math
from typing import Any

from batchgrid.core.steps import Step, conditions
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from .document import PipelineDocument, SetAttribute

MODE_WORDS = {"all": "all of these hold", "any": "any of these holds"}


def _value_text(op: str, value: Any) -> str:
    """A rule's value as typed in its box: "is one of" as comma-separated values."""
    if value is None:
        return ""
    if op == conditions.ONE_OF and isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def _typed_value(op: str, text: str) -> Any:
    """The value as the file holds it: a number when the box holds one, a list for "is one of"."""
    if op in conditions.NO_VALUE:
        return None
    if op == conditions.ONE_OF:
        return [_number_or_text(part.strip()) for part in text.split(",") if part.strip()]
    return _number_or_text(text.strip())


def _number_or_text(text: str) -> Any:
    try:
        number = json.loads(text)
    except ValueError:
        return text
    # NaN and Infinity are no JSON numbers: they stay text (and the check says so for an order).
    ok = isinstance(number, (int, float)) and not isinstance(number, bool) and math.isfinite(number)
    return number if ok else text


class RuleRow(QWidget):
    """One rule: [column] [op] [value] [remove]."""

    def __init__(self, editor: ConditionEditor, rule: dict[str, Any]):
        super().__init__()
        self.editor = editor
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        self.column = QComboBox()
        self.column.setEditable(True)  # a column an earlier step is yet to write can be typed
        self.column.addItems(editor.columns)
        self.column.setCurrentText(str(rule.get("column") or ""))
        self.op = QComboBox()
        self.op.addItems(conditions.OPS)
        for i, name in enumerate(conditions.OPS):
            self.op.setItemData(i, conditions.OP_HELP[name], Qt.ItemDataRole.ToolTipRole)
        op = rule.get("op")
        self.op.setCurrentText(op if op in conditions.OPS else conditions.EQUALS)
        self.value = QLineEdit(_value_text(self.op.currentText(), rule.get("value")))
        self.value.setPlaceholderText("value")
        remove = QToolButton()
        remove.setText("✕")
        remove.setToolTip("Remove this rule")
        remove.clicked.connect(lambda: editor.remove_rule(self))
        row.addWidget(self.column, 2)
        row.addWidget(self.op, 1)
        row.addWidget(self.value, 2)
        row.addWidget(remove)
        self._show_value()
        self.column.activated.connect(lambda _i: editor.write())  # picked from the list
        self.column.lineEdit().editingFinished.connect(editor.write)  # typed: one edit, not one per key
        self.op.currentTextChanged.connect(self._op_changed)
        self.value.editingFinished.connect(editor.write)

    def _op_changed(self, _op: str) -> None:
        self._show_value()
        self.editor.write()

    def _show_value(self) -> None:
        op = self.op.currentText()
        self.value.setVisible(op not in conditions.NO_VALUE)
        self.value.setPlaceholderText("values, separated by commas" if op == conditions.ONE_OF else "value")

    def rule(self) -> dict[str, Any]:
        op = self.op.currentText()
        out: dict[str, Any] = {"column": self.column.currentText().strip(), "op": op}
        if op not in conditions.NO_VALUE:
            out["value"] = _typed_value(op, self.value.text())
        return out


class ConditionEditor(QWidget):
    """The form's "Run only when…" section for one step."""

    def __init__(self, doc: PipelineDocument, step: Step, columns: list[str], parent=None):
        super().__init__(parent)
        self.doc, self.step, self.columns = doc, step, list(columns)
        self.rows: list[RuleRow] = []
        self._writing = False
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        head = QHBoxLayout()
        title = QLabel("Run only when…")
        title.setObjectName("sectionTitle")
        self.mode = QComboBox()
        self.mode.addItems(list(MODE_WORDS.values()))
        self.mode.currentIndexChanged.connect(lambda _i: self.write())
        head.addWidget(title)
        head.addWidget(self.mode)
        head.addStretch(1)
        layout.addLayout(head)
        self.rules_box = QVBoxLayout()
        self.rules_box.setSpacing(4)
        layout.addLayout(self.rules_box)
        self.add_button = QPushButton("Add rule")
        self.add_button.clicked.connect(self.add_rule)
        layout.addWidget(self.add_button, 0, Qt.AlignmentFlag.AlignLeft)
        self.help = QLabel("Rows that do not meet it skip this step: its outputs stay blank. Text compares "
                           "without regard to case; numbers and dates as numbers and dates.")
        self.help.setObjectName("help")
        self.help.setWordWrap(True)
        layout.addWidget(self.help)
        self.refresh()

    # ---- the step's value in the widgets ---------------------------------------------------------
    def refresh(self) -> None:
        """Show the step's `when` (after an undo, or when the form opens)."""
        if self._writing:
            return
        when = self.step.when if isinstance(self.step.when, dict) else {}
        mode, rules = next(iter(when.items())) if len(when) == 1 else ("all", [])
        self.mode.blockSignals(True)
        self.mode.setCurrentIndex(1 if mode == "any" else 0)
        self.mode.blockSignals(False)
        for row in self.rows:
            row.setParent(None)
            row.deleteLater()
        self.rows = []
        for rule in rules if isinstance(rules, list) else []:
            self._add_row(rule if isinstance(rule, dict) else {})
        self.mode.setEnabled(len(self.rows) > 1)

    def _add_row(self, rule: dict[str, Any]) -> RuleRow:
        row = RuleRow(self, rule)
        self.rules_box.addWidget(row)
        self.rows.append(row)
        return row

    # ---- edits -------------------------------------------------------------------------------------
    def add_rule(self) -> None:
        column = self.columns[0] if self.columns else ""
        row = self._add_row({"column": column, "op": conditions.NOT_EMPTY})
        self.write()
        row.column.setFocus()

    def remove_rule(self, row: RuleRow) -> None:
        self.rows.remove(row)
        row.setParent(None)
        row.deleteLater()
        self.write()

    def value(self) -> dict[str, Any] | None:
        if not self.rows:
            return None
        mode = "any" if self.mode.currentIndex() == 1 else "all"
        return {mode: [row.rule() for row in self.rows]}

    def write(self) -> None:
        """The widgets' condition into the step, as one undoable edit."""
        self.mode.setEnabled(len(self.rows) > 1)
        value = self.value()
        if value == self.step.when:
            return
        self._writing = True
        try:
            self.doc.push(SetAttribute(self.doc, self.step, "when", value, f"Edit when {self.step.label} runs"))
        finally:
            self._writing = False
