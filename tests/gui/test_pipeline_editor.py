"""Palette, pipeline cards, generated forms, inline problems and undo — through the widgets."""

from __future__ import annotations

from typing import ClassVar

import pytest
from PySide6.QtCore import Qt

from batchgrid.core.steps import REGISTRY, Step
from batchgrid.core.steps import base as b
from batchgrid.gui import fields as f
from batchgrid.gui.document import PipelineDocument
from batchgrid.gui.palette import DescriptionRole, TypeRole
from batchgrid.gui.step_form import BranchesEditor, StepForm
from batchgrid.gui.step_list import ProblemRole, StepCardDelegate

from conftest import EXAMPLES
from qt_async import run


@pytest.fixture
def loaded(window, qloop):
    """The window with the example sheet open and an empty pipeline."""
    assert run(qloop, window.load_sheet(EXAMPLES / "reviews.xlsx"))
    return window


def palette_add(qtbot, window, step_type: str):
    """Double-click a step type in the palette, as a user does."""
    item = window.palette.item_for(step_type)
    tree = window.palette.tree
    tree.scrollToItem(item)
    rect = tree.visualItemRect(item)
    # a press selects the item first, as a real double-click's first click does
    qtbot.mouseClick(tree.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.mouseDClick(tree.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    return window.doc.pipeline.steps[window.cards.currentIndex().row()]


def card_count(window) -> int:
    return window.step_model.rowCount()


def test_palette_lists_every_step_type_grouped_with_icons_and_search(window):
    palette = window.palette
    types = [i.data(0, TypeRole) for i in palette.items()]
    assert sorted(types) == sorted(REGISTRY)
    groups = [palette.tree.topLevelItem(i).text(0) for i in range(palette.tree.topLevelItemCount())]
    assert groups[:2] == ["Text", "Data"] and "Control" in groups
    assert all(not i.icon(0).isNull() for i in palette.items())
    assert all(i.data(0, DescriptionRole) == REGISTRY[i.data(0, TypeRole)].description for i in palette.items())
    palette.search.setText("regular expr")
    shown = [i.data(0, TypeRole) for i in palette.items() if not i.isHidden()]
    assert "regex_extract" in shown and "trim" not in shown
    palette.search.setText("zzz-nothing")
    assert all(palette.tree.topLevelItem(i).isHidden() for i in range(palette.tree.topLevelItemCount()))
    palette.search.clear()
    assert not any(i.isHidden() for i in palette.items())


def test_double_click_adds_steps_and_undo_redo_takes_them_back(qtbot, loaded):
    w = loaded
    trim = palette_add(qtbot, w, "trim")
    assert trim.type == "trim" and card_count(w) == 1
    template = palette_add(qtbot, w, "template")
    assert [s.type for s in w.doc.pipeline.steps] == ["trim", "template"]
    assert w.form_panel.form.step is template  # the new step's form is shown
    w.act_undo.trigger()
    assert [s.type for s in w.doc.pipeline.steps] == ["trim"] and card_count(w) == 1
    w.act_redo.trigger()
    assert [s.type for s in w.doc.pipeline.steps] == ["trim", "template"]


def test_reorder_by_drag_duplicate_delete_and_disable_with_the_card_checkbox(qtbot, loaded):
    w = loaded
    for t in ("trim", "change_case", "length"):
        palette_add(qtbot, w, t)
    model = w.step_model
    # drag card 0 below card 2: the model's own mime data, dropped where the view would drop it
    data = model.mimeData([model.index(0)])
    model.dropMimeData(data, Qt.DropAction.MoveAction, 3, 0, model.index(-1))
    assert [s.type for s in w.doc.pipeline.steps] == ["change_case", "length", "trim"]
    w.act_undo.trigger()
    assert [s.type for s in w.doc.pipeline.steps] == ["trim", "change_case", "length"]
    # a step type dragged from the palette lands where it is dropped
    palette_data = w.palette.tree.mimeData([w.palette.item_for("split")])
    model.dropMimeData(palette_data, Qt.DropAction.CopyAction, 1, 0, model.index(-1))
    assert [s.type for s in w.doc.pipeline.steps] == ["trim", "split", "change_case", "length"]

    w.cards.select_step(w.doc.pipeline.steps[0])
    w.card_buttons["duplicate"].click()
    assert [s.type for s in w.doc.pipeline.steps][:2] == ["trim", "trim"]
    assert w.doc.pipeline.steps[0] is not w.doc.pipeline.steps[1]
    w.card_buttons["delete"].click()
    assert [s.type for s in w.doc.pipeline.steps] == ["trim", "split", "change_case", "length"]
    w.cards.select_step(w.doc.pipeline.steps[2])
    w.card_buttons["up"].click()
    assert [s.type for s in w.doc.pipeline.steps] == ["trim", "change_case", "split", "length"]

    # click the check box drawn on the first card: the step turns off, undo turns it on
    rect = w.cards.visualRect(model.index(0)).adjusted(2, 2, -2, -2)
    box = StepCardDelegate(None)._check_rect(rect).center()
    qtbot.mouseClick(w.cards.viewport(), Qt.MouseButton.LeftButton, pos=box)
    assert w.doc.pipeline.steps[0].enabled is False
    w.act_undo.trigger()
    assert w.doc.pipeline.steps[0].enabled is True


def test_unknown_column_is_red_on_its_card_and_field_and_run_waits_until_it_is_fixed(qtbot, loaded, monkeypatch):
    w = loaded
    monkeypatch.setattr(f, "clock", lambda: 0.0)  # no pause between keys, however slow the machine
    template = palette_add(qtbot, w, "template")
    form = w.form_panel.form
    editor = form.fields["template"].edit
    editor.setFocus()
    qtbot.keyClicks(editor, "Stars: {ratng}")
    assert template.config["template"] == "Stars: {ratng}"
    problem = w.step_model.data(w.step_model.index(0), ProblemRole)
    assert 'unknown column "ratng"' in problem and "rating" in problem  # with a suggestion
    label = form.problem_labels["template"]
    assert label.isVisibleTo(form) and 'unknown column "ratng"' in label.text()
    assert editor.property("problem") is True
    assert not w.run_bar.run_button.isEnabled()
    assert "problem" in w.run_bar.blocker.text()
    assert 'steps[0].template: unknown column "ratng"' in w.run_bar.run_button.toolTip()

    form.name_edit.setFocus()  # leave the field: the next typing is a new undo step
    editor.setFocus()
    editor.selectAll()
    qtbot.keyClicks(editor, "Stars: {rating}")
    assert not label.isVisibleTo(form) and not editor.property("problem")
    assert w.run_bar.run_button.isEnabled()
    # typing is one undo step per word (and per visit to the field), not one per key or per template
    w.act_undo.trigger()
    assert template.config["template"] == "Stars: "
    w.act_undo.trigger()
    assert template.config["template"] == "Stars: {ratng}"
    w.act_undo.trigger()
    assert template.config["template"] == "Stars: "


def test_column_pickers_list_sheet_columns_and_earlier_outputs_only(qtbot, loaded):
    w = loaded
    trim = palette_add(qtbot, w, "trim")
    source = w.form_panel.form.fields["source"].combo
    source.setCurrentText("review")
    source.activated.emit(source.currentIndex())
    assert trim.config["source"] == "review"
    sheet_columns = list(w.rows.columns)
    assert [source.itemText(i) for i in range(source.count())] == sheet_columns
    palette_add(qtbot, w, "length")
    choices = [w.form_panel.form.fields["source"].combo.itemText(i)
               for i in range(w.form_panel.form.fields["source"].combo.count())]
    assert choices == sheet_columns + ["review_trimmed"]
    # the first step's picker does not offer the second step's outputs
    w.cards.select_step(trim)
    first = w.form_panel.form.fields["source"].combo
    assert [first.itemText(i) for i in range(first.count())] == sheet_columns


def test_template_field_inserts_columns_and_previews_on_the_selected_row(qtbot, loaded):
    w = loaded
    palette_add(qtbot, w, "trim").config  # writes review_trimmed
    w.doc.set_param(w.doc.pipeline.steps[0], "source", "review")
    palette_add(qtbot, w, "template")
    field = w.form_panel.form.fields["template"]
    menu = field.insert_button.menu()
    titles = [a.text() for a in menu.actions()]
    assert "customer" in titles and "review_trimmed" in titles
    next(a for a in menu.actions() if a.text() == "customer").trigger()
    assert w.doc.pipeline.steps[1].config["template"] == "{customer}"
    w.view.setCurrentIndex(w.model.index(2, 0))  # select row 3 of the sheet
    customer = w.rows.row(2)["customer"]
    assert field.preview.text() == f"Preview on row 3: {customer}"
    field.edit.moveCursor(field.edit.textCursor().MoveOperation.End)
    qtbot.keyClicks(field.edit, " said {review_trimmed}")
    # an earlier step's output with no value yet shows as a placeholder
    assert field.preview.text() == f"Preview on row 3: {customer} said ‹review_trimmed›"
    qtbot.keyClicks(field.edit, " {")
    assert field.preview.property("bad") is True and "unclosed" in field.preview.text()


class EveryKind(Step):
    """A step declaring one parameter of every kind (not registered: it is only built into a form)."""

    type = "every_kind"
    title = "Every kind"
    params: ClassVar = (
        b.Param("text", b.TEXT, ""), b.Param("multiline", b.MULTILINE, ""), b.Param("template", b.TEMPLATE, ""),
        b.Param("source", b.SOURCE, ""), b.Param("column", b.COLUMN, ""), b.Param("columns", b.COLUMNS, []),
        b.Param("output", b.OUTPUT, ""), b.Param("int", b.INT, 3, minimum=1, maximum=10),
        b.Param("optional_int", b.INT, None, minimum=1), b.Param("float", b.FLOAT, 0.5),
        b.Param("bool", b.BOOL, False), b.Param("choice", b.CHOICE, "a", choices=("a", "b")),
        b.Param("strings", b.STRINGS, []), b.Param("mapping", b.MAPPING, {}), b.Param("file", b.FILE, ""),
        b.Param("code", b.CODE, ""), b.Param("json", b.JSON, None), b.Param("provider", b.PROVIDER, ""),
        b.Param("branches", b.BRANCHES, {}),
    )

    def children(self):
        return self.config["branches"]


def test_every_parameter_kind_gets_its_widget_and_edits_reach_the_step(qtbot):
    doc = PipelineDocument()
    doc.set_columns(["a", "b"])
    step = EveryKind()
    doc.pipeline.steps.append(step)
    ctx = f.FormContext(columns=["a", "b"], preview_row={"a": "x", "b": "y"}, preview_label="row 1",
                        providers=["local"])
    form = StepForm(doc, step, ctx)
    qtbot.addWidget(form)
    kinds = {p.name: type(form.fields[p.name]) for p in EveryKind.params if p.kind != b.BRANCHES}
    assert kinds == {"text": f.LineField, "multiline": f.MultilineField, "template": f.TemplateField,
                     "source": f.SourceField, "column": f.ColumnField, "columns": f.ColumnsField,
                     "output": f.OutputField, "int": f.NumberField, "optional_int": f.NumberField,
                     "float": f.NumberField, "bool": f.BoolField, "choice": f.ChoiceField,
                     "strings": f.StringsField, "mapping": f.MappingField, "file": f.FileField,
                     "code": f.CodeField, "json": f.JsonField, "provider": f.ProviderField}
    assert isinstance(form.branches, BranchesEditor)
    fld = form.fields
    qtbot.keyClicks(fld["text"].edit, "hello")
    fld["multiline"].edit.setPlainText("line 1\nline 2")
    fld["template"].edit.setPlainText("{a}-{b}")
    assert fld["template"].preview.text() == "Preview on row 1: x-y"
    fld["source"].combo.setCurrentIndex(1)
    fld["source"].combo.activated.emit(1)
    fld["column"].combo.setCurrentIndex(fld["column"].combo.findData("b"))
    fld["column"].combo.activated.emit(fld["column"].combo.currentIndex())
    fld["columns"].list.item(0).setCheckState(Qt.CheckState.Checked)
    qtbot.keyClicks(fld["output"].edit, "new_col")
    fld["int"].spin.setValue(7)
    fld["optional_int"].spin.setValue(5)
    fld["float"].spin.setValue(1.25)
    fld["bool"].check.setChecked(True)
    fld["choice"].combo.setCurrentIndex(1)
    fld["choice"].combo.activated.emit(1)
    fld["strings"].edit.setPlainText("one\n\ntwo ")
    table = fld["mapping"].table
    table.item(0, 0).setText("price")
    table.item(0, 1).setText("$.price")
    qtbot.keyClicks(fld["file"].edit, "lookup.csv")
    fld["code"].edit.setPlainText("len(review)")
    fld["json"].edit.setPlainText('{"labels": ["good", "bad"]}')
    fld["provider"].combo.setCurrentIndex(1)
    fld["provider"].combo.activated.emit(1)
    assert step.config == {
        "text": "hello", "multiline": "line 1\nline 2", "template": "{a}-{b}", "source": "b", "column": "b",
        "columns": ["a"], "output": "new_col", "int": 7, "optional_int": 5, "float": 1.25, "bool": True,
        "choice": "b", "strings": ["one", "two"], "mapping": {"price": "$.price"}, "file": "lookup.csv",
        "code": "len(review)", "json": {"labels": ["good", "bad"]}, "provider": "local", "branches": {},
    }
    # invalid JSON is not applied; the field says so
    fld["json"].edit.setPlainText('{"labels": [')
    assert step.config["json"] == {"labels": ["good", "bad"]}
    assert fld["json"].error.isVisibleTo(form) and "Not valid JSON" in fld["json"].error.text()
    # "not set" below the minimum gives None back
    fld["optional_int"].spin.setValue(fld["optional_int"].spin.minimum())
    assert step.config["optional_int"] is None
    # undo brings a value back into its widget
    doc.undo_stack.undo()
    assert step.config["optional_int"] == 5 and fld["optional_int"].spin.value() == 5


def test_parallel_branches_are_edited_as_nested_lists(qtbot, loaded):
    w = loaded
    parallel = palette_add(qtbot, w, "parallel")
    editor = w.form_panel.form.branches
    assert editor is not None and editor.names.count() == 0
    assert "must not be empty" in w.form_panel.form.problem_labels["branches"].text()
    editor.add_branch()
    editor.add_branch()
    assert list(parallel.children()) == ["branch_1", "branch_2"]
    editor.names.setCurrentRow(0)
    editor.add_step("trim")
    editor.names.setCurrentRow(1)
    editor.add_step("length")
    assert [s.type for s in parallel.children()["branch_1"]] == ["trim"]
    assert [s.type for s in parallel.children()["branch_2"]] == ["length"]
    assert editor.cards.model().rowCount() == 1
    # open the nested step's form, edit it, and come back
    nested = parallel.children()["branch_2"][0]
    editor.openStep.emit(nested)
    form = w.form_panel.form
    assert form.step is nested
    combo = form.fields["source"].combo
    combo.setCurrentText("review")
    combo.activated.emit(combo.currentIndex())
    assert nested.config["source"] == "review"
    # a problem inside a branch is shown on the parallel step's card
    trim = parallel.children()["branch_1"][0]
    w.doc.set_param(trim, "source", "nope")
    assert 'unknown column "nope"' in w.step_model.data(w.step_model.index(0), ProblemRole)
    w.form_panel.show_step(parallel)
    assert w.form_panel.form.step is parallel
    w.act_undo.trigger()  # the bad source
    w.act_undo.trigger()  # the nested source
    w.act_undo.trigger()  # the nested step
    assert parallel.children()["branch_2"] == []
    assert w.doc.pipeline.to_dict()["steps"][0]["branches"]["branch_1"][0]["type"] == "trim"


def test_located_problems_find_their_step_and_parameter():
    doc = PipelineDocument()
    doc.set_columns(["a"])
    outer = doc.add_step("parallel")
    doc.set_param(outer, "branches", {"x": []})
    inner = doc.add_step("trim", outer.children()["x"])
    doc.set_param(inner, "source", "q")
    (problem,) = doc.problems
    assert problem.step is inner and problem.param == "source" and problem.message.startswith('unknown column "q"')
    assert problem.text.startswith('steps[0].branches.x[0].source: unknown column "q"')
    assert doc.problems_within(outer) == [problem] and doc.problems_for(inner, "source") == [problem]
    doc.pipeline.settings["budget"] = -1
    doc.refresh_problems()
    top = next(p for p in doc.problems if p.step is None)
    assert top.text == "settings.budget: must be at least 0"


def test_a_problem_in_a_branch_named_with_dots_and_brackets_lands_on_its_step_and_field(qtbot, loaded):
    """Located by path, not by reading "steps[0].branches.a.b[0][0].source" back."""
    w = loaded
    parallel = palette_add(qtbot, w, "parallel")
    w.doc.set_param(parallel, "branches", {"a.b[0]": [], "other": []})
    w.form_panel.show_step(parallel)
    editor = w.form_panel.form.branches
    assert editor.current_branch() == "a.b[0]"
    editor.add_step("length")
    editor.add_step("trim")
    length, trim = parallel.children()["a.b[0]"]
    w.doc.set_param(length, "source", "review")
    w.doc.set_param(trim, "source", "nope")
    # the branch's card for that step says so, and only that card
    cards = editor.cards.model()
    assert 'unknown column "nope"' in cards.data(cards.index(1), ProblemRole)
    assert cards.data(cards.index(0), ProblemRole) == ""
    # the parallel step's own form shows nothing against its "branches" field
    assert not w.form_panel.form.problem_labels["branches"].isVisibleTo(w.form_panel.form)
    # the step's form shows it on its "source" field
    editor.openStep.emit(trim)
    form = w.form_panel.form
    assert form.step is trim
    assert 'unknown column "nope"' in form.problem_labels["source"].text()
    assert form.problem_labels["source"].isVisibleTo(form)
    assert form.fields["source"].main_widget().property("problem") is True
    assert not form.step_problems.isVisibleTo(form)


def test_concurrency_spin_box_is_the_pipelines_setting_and_undoable(loaded):
    w = loaded
    w.run_bar.concurrency.setValue(3)
    assert w.doc.pipeline.settings["max_concurrency"] == 3
    w.act_undo.trigger()
    assert w.doc.pipeline.settings["max_concurrency"] == 8
    assert w.run_bar.concurrency.value() == 8


def test_a_problem_inside_a_parameter_is_shown_on_that_parameter():
    doc = PipelineDocument()
    doc.set_columns(["order"])
    step = doc.add_step("json_path")
    doc.set_param(step, "source", "order")
    doc.set_param(step, "paths", {"ok": "$.a", "bad": "$.items[?"})
    (problem,) = doc.problems
    assert problem.text.startswith("steps[0].paths.bad: not a valid JSON path")  # about one entry ...
    assert problem.step is step and problem.param == "paths"  # ... shown on the parameter


def test_delete_key_on_the_cards_deletes_the_selected_step(qtbot, loaded):
    w = loaded
    palette_add(qtbot, w, "trim")
    palette_add(qtbot, w, "length")
    w.cards.select_step(w.doc.pipeline.steps[0])
    w.activateWindow()
    w.cards.setFocus()
    qtbot.keyClick(w.cards, Qt.Key.Key_Delete)
    assert [s.type for s in w.doc.pipeline.steps] == ["length"]
