"""Undo per edit (issue 12): typing is one undo step per word, pause or field, not per template;
Ctrl+Z inside a text field undoes that field's last edit through the pipeline's one undo stack."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence

from batchgrid.gui import fields as f
from batchgrid.gui.document import PipelineDocument
from batchgrid.gui.step_form import StepForm


class Clock:
    """The fields' clock, moved by hand: pauses without sleeping."""

    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(f, "clock", c, raising=False)
    return c


def template_form(qtbot, step_type="template", param="template"):
    doc = PipelineDocument()
    doc.set_columns(["name", "review"])
    step = doc.add_step(step_type)
    doc.undo_stack.clear()
    form = StepForm(doc, step, f.FormContext(columns=["name", "review"]))
    qtbot.addWidget(form)
    with qtbot.waitActive(form):  # focus events need an active window
        form.show()
        form.activateWindow()
    editor = form.fields[param].main_widget()
    editor.setFocus()
    return doc, step, form, editor


def press_undo(qtbot, editor, redo=False):
    keys = QKeySequence(QKeySequence.StandardKey.Redo if redo else QKeySequence.StandardKey.Undo)[0]
    qtbot.keyClick(editor, keys.key(), keys.keyboardModifiers())


def test_ctrl_z_in_a_template_undoes_the_last_word_not_the_whole_template(qtbot, clock):
    doc, step, form, editor = template_form(qtbot)
    qtbot.keyClicks(editor, "Summarise in one line: {review}")
    assert step.config["template"] == "Summarise in one line: {review}"
    press_undo(qtbot, editor)
    assert step.config["template"] == "Summarise in one line: "
    assert editor.toPlainText() == "Summarise in one line: "
    press_undo(qtbot, editor)
    assert step.config["template"] == "Summarise in one "
    press_undo(qtbot, editor, redo=True)
    assert step.config["template"] == "Summarise in one line: "
    assert editor.textCursor().position() == len("Summarise in one line: ")  # the cursor stays where the edit was
    qtbot.keyClicks(editor, "{name}")  # typing after an undo goes on from there
    assert step.config["template"] == "Summarise in one line: {name}"


def test_a_pause_starts_a_new_undo_step_and_quick_typing_of_one_word_is_one(qtbot, clock):
    doc, step, form, editor = template_form(qtbot)
    qtbot.keyClicks(editor, "abc")
    clock.now += 5  # a pause
    qtbot.keyClicks(editor, "def")
    assert doc.undo_stack.count() == 2
    press_undo(qtbot, editor)
    assert step.config["template"] == "abc"


def test_deleting_after_typing_is_its_own_undo_step(qtbot, clock):
    doc, step, form, editor = template_form(qtbot)
    qtbot.keyClicks(editor, "hello")
    qtbot.keyClick(editor, Qt.Key.Key_Backspace)
    qtbot.keyClick(editor, Qt.Key.Key_Backspace)
    assert step.config["template"] == "hel"
    press_undo(qtbot, editor)
    assert step.config["template"] == "hello"
    press_undo(qtbot, editor)
    assert step.config["template"] == ""


def test_leaving_the_field_ends_the_undo_step(qtbot, clock):
    doc, step, form, editor = template_form(qtbot)
    qtbot.keyClicks(editor, "ab")
    form.name_edit.setFocus()
    editor.setFocus()
    qtbot.keyClicks(editor, "cd")
    press_undo(qtbot, editor)
    assert step.config["template"] == "ab"


def test_one_line_fields_undo_per_word_too(qtbot, clock):
    doc, step, form, editor = template_form(qtbot, "find_replace", "find")
    qtbot.keyClicks(editor, "old text")
    press_undo(qtbot, editor)
    assert step.config["find"] == "old " and editor.text() == "old "


def test_ctrl_z_in_a_field_undoes_the_pipelines_edits_in_order(qtbot, clock):
    """One history: the window's Undo and Ctrl+Z in a field walk the same stack."""
    doc, step, form, editor = template_form(qtbot)
    qtbot.keyClicks(editor, "one two")
    doc.undo_stack.undo()  # the window's Edit ▸ Undo
    assert editor.toPlainText() == "one "
    press_undo(qtbot, editor)
    assert editor.toPlainText() == "" and step.config["template"] == ""


def test_typing_over_a_selection_undoes_to_the_text_it_replaced(qtbot, clock):
    doc, step, form, editor = template_form(qtbot)
    qtbot.keyClicks(editor, "Stars {ratng}")
    editor.selectAll()
    qtbot.keyClicks(editor, "Score")  # begins with the same letter as what it replaces
    press_undo(qtbot, editor)
    assert step.config["template"] == "Stars {ratng}"


def test_ctrl_z_in_the_windows_template_field_undoes_one_word_once(qtbot, window, clock):
    window.add_step("template")
    editor = window.form_panel.form.fields["template"].edit
    with qtbot.waitActive(window):
        window.activateWindow()
    editor.setFocus()
    qtbot.keyClicks(editor, "Dear {name}")
    press_undo(qtbot, editor)  # the field takes the key: the window's Undo does not also run
    assert window.doc.pipeline.steps[0].config["template"] == "Dear "
    assert [s.type for s in window.doc.pipeline.steps] == ["template"]
