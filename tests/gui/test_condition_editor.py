"""The step form's "Run only when…" section: rules edited without code, the card's summary, undo."""

from __future__ import annotations

from batchgrid.core.steps import conditions, new_step
from batchgrid.gui.document import PipelineDocument
from batchgrid.gui.fields import FormContext
from batchgrid.gui.step_form import StepForm
from batchgrid.gui.step_list import ProblemRole, StepListModel, SummaryRole
from PySide6.QtCore import Qt


def pick(combo, text: str) -> None:
    """Type a column name into the rule's column box and leave it, as a user does."""
    combo.setCurrentText(text)
    combo.lineEdit().editingFinished.emit()


def _form(qtbot, columns=("review", "rating", "language")):
    doc = PipelineDocument()
    doc.set_columns(list(columns))
    step = new_step("trim", source="review")
    doc.pipeline.steps.append(step)
    form = StepForm(doc, step, FormContext(columns=list(columns)))
    qtbot.addWidget(form)
    model = StepListModel(doc, lambda: doc.pipeline.steps)
    return doc, step, form, model


def test_rules_typed_in_the_form_become_the_steps_condition_and_show_on_its_card(qtbot):
    doc, step, form, model = _form(qtbot)
    editor = form.condition
    assert step.when is None and not editor.rows
    qtbot.mouseClick(editor.add_button, Qt.MouseButton.LeftButton)
    row = editor.rows[0]
    pick(row.column, "rating")
    row.op.setCurrentText("<")
    row.value.setFocus()
    qtbot.keyClicks(row.value, "3")
    row.value.editingFinished.emit()
    assert step.when == {"all": [{"column": "rating", "op": "<", "value": 3}]}  # a number, as the file holds it
    assert model.data(model.index(0), SummaryRole).endswith("·  only when rating < 3")

    qtbot.mouseClick(editor.add_button, Qt.MouseButton.LeftButton)
    second = editor.rows[1]
    pick(second.column, "language")
    second.op.setCurrentText("is one of")
    qtbot.keyClicks(second.value, "de, fr")
    second.value.editingFinished.emit()
    editor.mode.setCurrentIndex(1)  # any of these holds
    assert step.when == {"any": [{"column": "rating", "op": "<", "value": 3},
                                 {"column": "language", "op": "is one of", "value": ["de", "fr"]}]}
    assert conditions.describe(step.when) == 'rating < 3 or language is one of "de", "fr"'
    assert doc.pipeline.to_dict()["steps"][0]["when"] == step.when

    second.op.setCurrentText("is empty")  # no value for it: the box goes
    assert not second.value.isVisibleTo(editor)
    assert step.when["any"][1] == {"column": "language", "op": "is empty"}
    assert second.op.itemData(second.op.findText("matches"), Qt.ItemDataRole.ToolTipRole).startswith(
        "the regular expression finds a match")


def test_a_condition_on_an_unknown_column_is_shown_on_the_form_and_the_card(qtbot):
    _, _, form, model = _form(qtbot)
    qtbot.mouseClick(form.condition.add_button, Qt.MouseButton.LeftButton)
    pick(form.condition.rows[0].column, "ratng")
    label = form.condition_problems
    assert label.isVisibleTo(form)
    assert label.text() == 'the condition tests an unknown column "ratng" (did you mean "rating"?); ' \
                           "columns are: review, rating, language"
    assert model.data(model.index(0), ProblemRole).startswith('the condition tests an unknown column "ratng"')
    assert not form.step_problems.isVisibleTo(form)  # shown under the rules, not at the top
    pick(form.condition.rows[0].column, "rating")
    assert not label.isVisibleTo(form)


def test_removing_the_last_rule_removes_the_condition_and_undo_brings_it_back(qtbot):
    doc, step, form, _ = _form(qtbot)
    editor = form.condition
    qtbot.mouseClick(editor.add_button, Qt.MouseButton.LeftButton)
    kept = step.when
    assert kept == {"all": [{"column": "review", "op": "is not empty"}]}
    editor.remove_rule(editor.rows[0])
    assert step.when is None and "when" not in doc.pipeline.to_dict()["steps"][0]
    doc.undo_stack.undo()
    assert step.when == kept
    assert [r.rule() for r in editor.rows] == kept["all"]  # the form follows the undo


def test_a_duplicated_step_keeps_its_condition():
    from batchgrid.core.steps import new_step
    from batchgrid.gui.document import clone_step

    step = new_step("template", template="{text}", output="copy")
    step.when = {"all": [{"column": "rating", "op": "<", "value": 3}]}
    clone = clone_step(step)
    assert clone.when == step.when and clone.when is not step.when
