"""List editors (issue 12): Classify's labels and Structured output's fields are edited as lists
(add, remove, reorder, edit in place) writing the same JSON as before; the Lookup step's sheet and
key column are picked from the lookup file, read off the event loop by the reader process."""

from __future__ import annotations

import json

import openpyxl
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QAbstractItemView, QApplication

from batchgrid.core.pipeline import Pipeline
from batchgrid.gui import background
from batchgrid.gui import fields as f
from batchgrid.gui.document import PipelineDocument
from batchgrid.gui.list_editors import FieldsEditor, FileColumnPicker, LabelsEditor, SheetPicker
from batchgrid.gui.step_form import StepForm


def form_for(qtbot, step_type, config=None, base_dir=None):
    doc = PipelineDocument()
    doc.set_columns(["review"])
    step = doc.add_step(step_type)
    step.config.update(config or {})
    doc.undo_stack.clear()
    form = StepForm(doc, step, f.FormContext(columns=["review"], base_dir=base_dir))
    qtbot.addWidget(form)
    with qtbot.waitActive(form):
        form.show()
        form.activateWindow()
    return doc, step, form


def type_into_cell(qtbot, table, row, column, text):
    """Edit a cell in place as a user does: start editing, type, Enter."""
    table.setCurrentCell(row, column)
    table.editItem(table.item(row, column))
    editor = QApplication.focusWidget()
    editor.selectAll()
    qtbot.keyClicks(editor, text)
    qtbot.keyClick(editor, Qt.Key.Key_Return)
    committed(qtbot, table)


def committed(qtbot, table):
    """Enter commits a cell a moment later (Qt queues it): wait for the editor to close."""
    qtbot.waitUntil(lambda: table.state() != QAbstractItemView.State.EditingState)


def add_row(qtbot, editor, text):
    """Add, type the first cell, Enter."""
    qtbot.mouseClick(editor.buttons["add"], Qt.MouseButton.LeftButton)
    cell_editor = QApplication.focusWidget()
    qtbot.keyClicks(cell_editor, text)
    qtbot.keyClick(cell_editor, Qt.Key.Key_Return)
    committed(qtbot, editor.table)


def test_classify_labels_are_a_list_to_add_edit_reorder_and_remove(qtbot):
    doc, step, form = form_for(qtbot, "classify")
    labels = form.fields["labels"]
    assert isinstance(labels, LabelsEditor)
    add_row(qtbot, labels, "positive")
    add_row(qtbot, labels, "negative")
    assert step.config["labels"] == ["positive", "negative"]  # as the JSON box wrote it
    assert not doc.problems_for(step, "labels")

    type_into_cell(qtbot, labels.table, 1, 1, "unhappy")  # a description, edited in place
    assert step.config["labels"] == ["positive", {"label": "negative", "description": "unhappy"}]
    labels.table.setCurrentCell(1, 0)
    qtbot.mouseClick(labels.buttons["up"], Qt.MouseButton.LeftButton)
    assert step.config["labels"] == [{"label": "negative", "description": "unhappy"}, "positive"]
    assert labels.table.currentRow() == 0  # the selection moves with the row
    add_row(qtbot, labels, "positive")
    assert "two labels are the same" in doc.problems_for(step, "labels")[0].message
    qtbot.mouseClick(labels.buttons["remove"], Qt.MouseButton.LeftButton)
    assert step.config["labels"] == [{"label": "negative", "description": "unhappy"}, "positive"]

    doc.undo_stack.undo()  # each edit is one undo step, and the list shows it
    doc.undo_stack.undo()
    assert step.config["labels"] == [{"label": "negative", "description": "unhappy"}, "positive"]
    doc.undo_stack.undo()
    assert step.config["labels"] == ["positive", {"label": "negative", "description": "unhappy"}]
    assert [labels.table.item(r, 0).text() for r in range(labels.table.rowCount())] == ["positive", "negative"]


def test_labels_written_as_a_dict_stay_a_dict_and_the_file_format_does_not_change(qtbot, tmp_path):
    doc, step, form = form_for(qtbot, "classify", {"labels": {"bug": "something is broken", "idea": ""},
                                                   "prompt": "{review}"})
    labels = form.fields["labels"]
    assert [labels.table.item(r, 1).text() for r in range(2)] == ["something is broken", ""]
    type_into_cell(qtbot, labels.table, 1, 1, "a wish")
    assert step.config["labels"] == {"bug": "something is broken", "idea": "a wish"}
    doc.pipeline.save(tmp_path / "p.json")
    saved = json.loads((tmp_path / "p.json").read_text())["steps"][0]["labels"]
    assert saved == {"bug": "something is broken", "idea": "a wish"}
    assert Pipeline.load(tmp_path / "p.json").steps[0].labels() == {"bug": "something is broken", "idea": "a wish"}


def test_structured_fields_have_a_name_a_type_from_the_allowed_ones_and_a_description(qtbot):
    existing = [{"name": "total", "type": "number", "description": "the amount due"}, {"name": "vendor"}]
    doc, step, form = form_for(qtbot, "structured", {"fields": existing, "prompt": "{review}"})
    fields = form.fields["fields"]
    assert isinstance(fields, FieldsEditor)
    box = fields.type_box(1)
    assert [box.itemText(i) for i in range(box.count())] == ["string", "number", "integer", "boolean", "list"]
    assert box.currentText() == "string"  # no type in the file: string, and none is written

    add_row(qtbot, fields, "paid")
    fields.type_box(2).setCurrentText("boolean")
    assert step.config["fields"] == [*existing, {"name": "paid", "type": "boolean"}]
    type_into_cell(qtbot, fields.table, 1, 2, "who sent it")
    assert step.config["fields"][1] == {"name": "vendor", "description": "who sent it"}
    type_into_cell(qtbot, fields.table, 0, 0, "amount")  # renamed in place; its other keys stay
    assert step.config["fields"][0] == {"name": "amount", "type": "number", "description": "the amount due"}
    fields.table.setCurrentCell(2, 0)
    qtbot.mouseClick(fields.buttons["up"], Qt.MouseButton.LeftButton)
    assert [x["name"] for x in step.config["fields"]] == ["amount", "paid", "vendor"]
    assert fields.type_box(1).currentText() == "boolean"  # the type moved with its row
    assert step.writes() == ["amount", "paid", "vendor"]
    doc.undo_stack.undo()
    assert [x["name"] for x in step.config["fields"]] == ["amount", "vendor", "paid"]


def test_a_field_list_the_editor_cannot_show_stays_a_json_box(qtbot):
    doc, step, form = form_for(qtbot, "structured", {"fields": ["total"]})
    assert isinstance(form.fields["fields"], f.JsonField)


def write_prices(path):
    book = openpyxl.Workbook()
    book.active.title = "Prices"
    book.active.append(["sku", "price", "currency"])
    book.active.append(["A1", 2.5, "EUR"])
    stock = book.create_sheet("Stock")
    stock.append(["code", "on_hand"])
    book.save(path)
    return path


@pytest.mark.timeout(120)
def test_lookup_sheet_and_key_column_are_picked_from_the_lookup_file(qtbot, tmp_path):
    write_prices(tmp_path / "prices.xlsx")
    doc, step, form = form_for(qtbot, "lookup", base_dir=tmp_path)
    sheet, key = form.fields["sheet"], form.fields["file_key"]
    assert isinstance(sheet, SheetPicker) and isinstance(key, FileColumnPicker)
    assert "Choose the lookup file first" in key.note.text()

    doc.set_param(step, "file", "prices.xlsx")  # as Browse… sets it
    qtbot.waitUntil(lambda: background.pending() == 0 and bool(key.names), timeout=60_000)
    assert sheet.names == ["Prices", "Stock"]
    assert [sheet.combo.itemText(i) for i in range(sheet.combo.count())] == ["", "Prices", "Stock"]
    assert key.names == ["sku", "price", "currency"]  # blank sheet: the first one's columns
    key.combo.setCurrentIndex(0)
    key.combo.activated.emit(0)
    assert step.config["file_key"] == "sku"

    sheet.combo.setCurrentIndex(2)
    sheet.combo.activated.emit(2)
    assert step.config["sheet"] == "Stock"
    qtbot.waitUntil(lambda: background.pending() == 0 and key.names == ["code", "on_hand"], timeout=60_000)
    assert "'sku' is not in the file's columns" in key.note.text()

    doc.set_param(step, "file", "missing.csv")
    assert "missing.csv is not there" in key.note.text()


def test_an_unreadable_lookup_file_is_said_in_one_line(qtbot, tmp_path):
    (tmp_path / "broken.xlsx").write_bytes(b"PK\x03\x04 not really a workbook")
    doc, step, form = form_for(qtbot, "lookup", {"file": "broken.xlsx"}, base_dir=tmp_path)
    key = form.fields["file_key"]
    qtbot.waitUntil(lambda: background.pending() == 0 and "Could not read" in key.note.text(), timeout=60_000)
    assert "broken.xlsx" in key.note.text() and "\n" not in key.note.text()
