"""Editable lists where a step's parameter is a list of things: Classify's labels and Structured
output's fields (rows to add, remove, reorder and edit in place, instead of raw JSON), and the
Lookup step's sheet and key column, picked from the lookup file's own names.

The pipeline file does not change: a list writes the same JSON the JSON box did (a labels
dict stays a dict, a list of strings stays one, a field keeps the keys it had).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from batchgrid.core.steps import Step
from batchgrid.core.steps import base as b
from batchgrid.core.steps.models import FIELD_TYPES
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
)

from . import background
from .fields import EditableComboField, Field, FormContext, text_height
from .icons import icon

OriginRole = Qt.ItemDataRole.UserRole + 1  # on a row's first cell: the item as the file had it


class ListEditor(Field):
    """A table of rows with Add, Remove, Move up and Move down; cells are edited in place. A row
    whose first cell is blank is not written (a row just added, not filled in yet)."""

    headers: tuple[str, ...] = ()
    noun = "row"

    def __init__(self, param, ctx, parent=None):
        super().__init__(param, ctx, parent)
        self.table = QTableWidget(0, len(self.headers))
        self.table.setHorizontalHeaderLabels(list(self.headers))
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Stretch)  # the columns share the form's width
        header.setMinimumSectionSize(60)
        self.table.verticalHeader().hide()
        self.table.setWordWrap(False)  # one line a row: the list shows as many rows as it can
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.DoubleClicked
                                   | QAbstractItemView.EditTrigger.EditKeyPressed
                                   | QAbstractItemView.EditTrigger.AnyKeyPressed)
        self.table.setFixedHeight(text_height(6, self.table))
        self.table.setMinimumWidth(120)  # never widens the form
        self.table.itemChanged.connect(lambda _item: self._emit())
        buttons = QHBoxLayout()
        self.buttons: dict[str, QToolButton] = {}
        for name, text, tip, slot in (("add", "Add", f"Add a {self.noun}", self.add_row),
                                      ("remove", "", f"Remove the selected {self.noun}", self.remove_row),
                                      ("up", "", f"Move the selected {self.noun} up", lambda: self.move_row(-1)),
                                      ("down", "", f"Move the selected {self.noun} down", lambda: self.move_row(1))):
            button = QToolButton()
            button.setIcon(icon("delete" if name == "remove" else name))
            button.setToolTip(tip)
            if text:
                button.setText(text)
                button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
            button.clicked.connect(slot)
            buttons.addWidget(button)
            self.buttons[name] = button
        buttons.addStretch(1)
        self.layout_.addWidget(self.table)
        self.layout_.addLayout(buttons)

    # ---- rows ------------------------------------------------------------------------------
    def _set_row(self, row: int, cells: list[str], origin: Any = None) -> None:
        for column, text in enumerate(cells):
            item = QTableWidgetItem(text)
            if column == 0:
                item.setData(OriginRole, origin)
            self.table.setItem(row, column, item)

    def _cells(self, row: int) -> list[str]:
        return [(self.table.item(row, c).text() if self.table.item(row, c) else "") for c in range(len(self.headers))]

    def _origin(self, row: int) -> Any:
        item = self.table.item(row, 0)
        return item.data(OriginRole) if item is not None else None

    def _fill(self, rows: list[tuple[list[str], Any]]) -> None:
        self.table.blockSignals(True)
        self.table.setRowCount(len(rows))
        for r, (cells, origin) in enumerate(rows):
            self._set_row(r, cells, origin)
        self.table.blockSignals(False)

    def add_row(self) -> None:
        row = self.table.rowCount()
        self.table.blockSignals(True)
        self.table.insertRow(row)
        self._set_row(row, [""] * len(self.headers))
        self.table.blockSignals(False)
        self.table.setCurrentCell(row, 0)
        self.table.setFocus()
        self.table.editItem(self.table.item(row, 0))

    def remove_row(self) -> None:
        row = self.table.currentRow()
        if row >= 0:
            self.table.removeRow(row)
            self._emit()

    def move_row(self, delta: int) -> None:
        row = self.table.currentRow()
        target = row + delta
        if row < 0 or not 0 <= target < self.table.rowCount():
            return
        this, other = (self._cells(row), self._origin(row)), (self._cells(target), self._origin(target))
        self.table.blockSignals(True)
        self._set_row(row, *other)
        self._set_row(target, *this)
        self.table.blockSignals(False)
        self.table.setCurrentCell(target, self.table.currentColumn())
        self._emit()

    def _show(self, value):
        if value != self.value() or self.table.rowCount() == 0:
            self._fill(self.rows_of(value))

    # subclasses: rows_of(value) -> [(cells, origin)], value() from the rows
    def rows_of(self, value: Any) -> list[tuple[list[str], Any]]:
        raise NotImplementedError

    def filled_rows(self) -> list[tuple[list[str], Any]]:
        rows = [(self._cells(r), self._origin(r)) for r in range(self.table.rowCount())]
        return [(cells, origin) for cells, origin in rows if cells[0].strip()]

    def main_widget(self):
        return self.table


class LabelsEditor(ListEditor):
    """Classify's labels: a label and what it means, one a row."""

    headers = ("Label", "Description")
    noun = "label"

    def rows_of(self, value):
        if isinstance(value, dict):
            return [([str(k), str(v or "")], None) for k, v in value.items()]
        rows = []
        for item in value if isinstance(value, list) else []:
            if isinstance(item, dict):
                rows.append(([str(item.get("label", "")), str(item.get("description") or "")], item))
            else:
                rows.append(([str(item), ""], item))
        return rows

    def value(self):
        rows = self.filled_rows()
        labels = [cells[0].strip() for cells, _ in rows]
        if self._dict_shaped and len(set(labels)) == len(labels):
            return {label: cells[1] for label, (cells, _) in zip(labels, rows, strict=True)}
        out: list[Any] = []
        for label, (cells, origin) in zip(labels, rows, strict=True):
            if isinstance(origin, dict) or cells[1]:
                item = dict(origin) if isinstance(origin, dict) else {}
                item["label"] = label
                if cells[1] or "description" in item:
                    item["description"] = cells[1]
                out.append(item)
            else:
                out.append(label)
        return out

    def _show(self, value):
        self._dict_shaped = isinstance(value, dict)  # written back as the file had it
        super()._show(value)

    _dict_shaped = False


class FieldsEditor(ListEditor):
    """Structured output's fields: a name, a type from the allowed types, a description."""

    headers = ("Name", "Type", "Description")
    noun = "field"

    def __init__(self, param, ctx, parent=None):
        super().__init__(param, ctx, parent)
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)

    def _set_row(self, row, cells, origin=None):
        super()._set_row(row, cells, origin)
        combo = QComboBox()  # the type is chosen, never typed
        combo.addItems(list(FIELD_TYPES))
        if cells[1] not in FIELD_TYPES:
            combo.addItem(cells[1])  # as the file says: its problem shows under the field
        combo.setCurrentText(cells[1])
        combo.currentTextChanged.connect(lambda text, item=self.table.item(row, 1): item.setText(text))
        self.table.setCellWidget(row, 1, combo)

    def type_box(self, row: int) -> QComboBox:
        return self.table.cellWidget(row, 1)

    def rows_of(self, value):
        rows = []
        for item in value if isinstance(value, list) else []:
            if isinstance(item, dict):
                rows.append(([str(item.get("name", "")), str(item.get("type", "string")),
                              str(item.get("description") or "")], item))
        return rows

    def add_row(self) -> None:
        super().add_row()
        self.table.item(self.table.rowCount() - 1, 1).setText("string")

    def value(self):
        out = []
        for (name, kind, description), origin in self.filled_rows():
            item = dict(origin) if isinstance(origin, dict) else {}
            item["name"] = name.strip()
            if kind != "string" or "type" in item:
                item["type"] = kind
            if description or "description" in item:
                item["description"] = description
            out.append(item)  # keys in the file's order; a new field's: name, type, description
        return out


# ---- the Lookup step: its sheet and key column from the lookup file -----------------------------
def read_names(path: Path, sheet: str) -> tuple[list[str], list[str]]:
    """(sheet names, column names of `sheet` or the first sheet) of a lookup file, read by the
    reader process (core/table/worker.py: an untrusted file cannot take the window down)."""
    from batchgrid.core.table import worker

    found = worker.preview(path, sheet=sheet or None, rows=1)
    return list(found.sheets), list(found.columns)


class FileNamesPicker(EditableComboField):
    """An editable list filled from the lookup file (its sheets, or its columns); typing a name
    still works when the file cannot be read (it is named in a line below)."""

    what = "sheets"

    def __init__(self, param, ctx, step: Step, parent=None):
        super().__init__(param, ctx, parent)
        self.step = step
        self.note = QLabel()
        self.note.setObjectName("help")
        self.note.setWordWrap(True)
        self.layout_.addWidget(self.combo)
        self.layout_.addWidget(self.note)
        self._read_for: tuple = ()
        self.names: list[str] = []  # what the file offers (sheets or columns), once read
        self.reload()

    def file_path(self) -> Path | None:
        name = str(self.step.config.get("file") or "").strip()
        if not name:
            return None
        path = Path(name).expanduser()
        return path if path.is_absolute() else (self.ctx.base_dir or Path.cwd()) / path

    def step_changed(self, what: str) -> None:
        if what in ("file", "sheet"):
            self.reload()

    def reload(self) -> None:
        """Read the file's names again, off the event loop, when the file or the sheet changed."""
        path = self.file_path()
        sheet = str(self.step.config.get("sheet") or "") if self.what == "columns" else ""
        key = (path, sheet)
        if key == self._read_for:
            return
        self._read_for = key
        if path is None:
            self._offer([], "Choose the lookup file first: its names are listed here.")
            return
        if not path.is_file():
            self._offer([], f"{path.name} is not there: type the name, or choose the file again.")
            return
        self.note.setText(f"Reading {path.name}…")
        background.submit(self, lambda: read_names(path, sheet), lambda result, error: self._read(key, result, error))

    def _read(self, key: tuple, result, error) -> None:
        if key != self._read_for:
            return  # another file was chosen meanwhile
        if error is not None:
            from .widgets import one_line

            self._offer([], f"Could not read {key[0].name}: {one_line(error)}")
            return
        sheets, columns = result
        names = sheets if self.what == "sheets" else columns
        self._offer(names, "")

    def _offer(self, names: list[str], note: str) -> None:
        current = self.combo.currentText()
        self.combo.blockSignals(True)
        self.combo.clear()
        self.combo.addItems(([""] if self.what == "sheets" else []) + names)
        self.combo.setEditText(current)
        self.combo.blockSignals(False)
        self.names = names
        if not note and current and current not in names:
            note = f"{current!r} is not in the file's {self.what}."
        self.note.setText(note)
        self.note.setVisible(bool(note))


class SheetPicker(FileNamesPicker):
    what = "sheets"

    def __init__(self, param, ctx, step, parent=None):
        super().__init__(param, ctx, step, parent)
        self.combo.lineEdit().setPlaceholderText("blank: the first sheet")


class FileColumnPicker(FileNamesPicker):
    what = "columns"


def field_for(step: Step, param: b.Param, ctx: FormContext) -> Field | None:
    """The list editor or picker for this step's parameter, or None for the generic field."""
    kind = (step.type, param.name)
    if kind == ("classify", "labels") and isinstance(step.config.get(param.name), (list, dict)):
        return LabelsEditor(param, ctx)
    if kind == ("structured", "fields") and isinstance(step.config.get(param.name), list) \
            and all(isinstance(f, dict) for f in step.config[param.name]):
        return FieldsEditor(param, ctx)
    if kind == ("lookup", "sheet"):
        return SheetPicker(param, ctx, step)
    if kind == ("lookup", "file_key"):
        return FileColumnPicker(param, ctx, step)
    return None
