"""The Formula step's form: a typo's problem shows live with where it is (and is underlined in the
box); a formula that reads well shows what it writes on the selected row."""

from __future__ import annotations

from batchgrid.gui import fields as f
from PySide6.QtWidgets import QToolButton
from batchgrid.gui.document import PipelineDocument
from batchgrid.gui.formula_field import FormulaField
from batchgrid.gui.step_form import StepForm

ROW = {"review": "Great product", "rating": 2, "Customer name": "ada"}


def formula_form(qtbot, monkeypatch):
    monkeypatch.setattr(f, "clock", lambda: 0.0)  # no pause between keys, however slow the machine
    doc = PipelineDocument()
    doc.set_columns(list(ROW))
    step = doc.add_step("formula")
    form = StepForm(doc, step, f.FormContext(columns=list(ROW), preview_row=dict(ROW), preview_label="row 1"))
    qtbot.addWidget(form)
    form.show()
    return doc, step, form


def test_a_typo_shows_live_with_its_position_and_a_correct_formula_shows_its_result(qtbot, monkeypatch):
    doc, step, form = formula_form(qtbot, monkeypatch)
    field = form.fields["formula"]
    assert isinstance(field, FormulaField)
    editor = field.edit
    label = form.problem_labels["formula"]
    editor.setFocus()

    qtbot.keyClicks(editor, 'IF(LEN([reveiw]) > 10, "long", "short")')
    assert step.config["formula"] == 'IF(LEN([reveiw]) > 10, "long", "short")'
    assert label.isVisibleTo(form)
    assert label.text() == "position 8: unknown column [reveiw]; did you mean [review]?"
    assert editor.property("problem") is True
    (mark,) = editor.extraSelections()  # the typo is underlined where it is
    assert mark.cursor.selectedText() == "[reveiw]"
    with qtbot.waitSignal(form.output_preview.shown, timeout=30_000):
        pass
    assert form.output_preview.text() == "Writes on row 1: nothing until the problem shown here is fixed."

    editor.selectAll()
    with qtbot.waitSignal(form.output_preview.shown, timeout=30_000):
        qtbot.keyClicks(editor, 'IF(LEN([review]) > 10, "long", "short") & " (" & rating * 2 & ")"')
    assert not label.isVisibleTo(form) and not editor.property("problem")
    assert editor.extraSelections() == []
    assert form.output_preview.text() == "Writes on row 1:\nresult: long (4)"

    # a syntax error is live too, without any sheet's columns
    editor.selectAll()
    qtbot.keyClicks(editor, 'LEFT("abc, 2)')
    assert label.text() == 'position 6: unclosed "'
    (mark,) = editor.extraSelections()
    assert mark.cursor.selectionStart() == 5


def test_a_row_error_is_said_in_excel_s_words_on_the_selected_row(qtbot, monkeypatch):
    doc, step, form = formula_form(qtbot, monkeypatch)
    with qtbot.waitSignal(form.output_preview.shown, timeout=30_000):
        doc.set_param(step, "formula", "rating / (rating - 2)")
    assert form.output_preview.text() == (
        "Writes on row 1: fails on this row: #DIV/0!: division by zero in rating / (rating - 2)")
    with qtbot.waitSignal(form.output_preview.shown, timeout=30_000):
        doc.set_param(step, "formula", 'IFERROR(rating / (rating - 2), "n/a")')
    assert form.output_preview.text() == "Writes on row 1:\nresult: n/a"


def test_the_menus_insert_a_bracketed_column_and_a_function(qtbot, monkeypatch):
    doc, step, form = formula_form(qtbot, monkeypatch)
    field = form.fields["formula"]
    menus = {b.text(): b.menu() for b in field.findChildren(QToolButton)}
    column = next(a for a in menus["Insert column"].actions() if a.text() == "Customer name")
    column.trigger()
    function = next(a for a in menus["Insert function"].actions() if a.data() == "UPPER")
    assert function.text() == "UPPER(text)"
    function.trigger()
    assert step.config["formula"] == "[Customer name]UPPER("
