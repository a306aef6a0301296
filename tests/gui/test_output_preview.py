"""Step output preview (issue 12): the step form says what the step *writes* on the selected row,
working out the cheap steps up to it off the event loop; model and web steps are never called."""

from __future__ import annotations

from batchgrid.core.pipeline import preview
from batchgrid.core.steps import new_step
from batchgrid.gui import fields as f
from batchgrid.gui.document import PipelineDocument
from batchgrid.gui.step_form import StepForm
from conftest import EXAMPLES
from qt_async import next_signal, run


def steps(*specs):
    out = []
    for step_type, config in specs:
        step = new_step(step_type)
        step.config.update(config)
        out.append(step)
    return out


def test_cheap_steps_before_the_target_run_on_the_row_first():
    trim, case = steps(("trim", {"source": "name"}), ("change_case", {"source": "name_trimmed", "case": "upper"}))
    result = preview.plan([trim, case], case).outputs({"name": "  ann lee "})
    assert result.outputs == {"name_trimmed_upper": "ANN LEE"}


def test_a_model_step_is_never_called_and_a_later_step_needs_its_values():
    llm, case = steps(("llm", {"prompt": "Summarise {name}"}), ("change_case", {"source": "answer", "case": "upper"}))
    assert preview.plan([llm, case], llm).outputs({"name": "x"}) == preview.OutputPreview(
        None, "It runs when you press Run (or Run up to here).")
    needs = preview.plan([llm, case], case).outputs({"name": "x"})
    assert needs.outputs is None and "needs what" in needs.note and "Run up to here" in needs.note
    # with the answer a finished run left on the row, the later step is worked out
    assert list(preview.plan([llm, case], case).outputs({"name": "x", "answer": "short"}).outputs.values()) == ["SHORT"]


def test_a_condition_the_row_does_not_meet_is_said_and_skips_earlier_steps_too():
    when = {"all": [{"column": "summary", "op": "is empty"}]}
    fill, = steps(("template", {"template": "About {ticket}", "output": "summary"}))
    fill.when = when
    assert preview.plan([fill], fill).outputs({"ticket": "t", "summary": ""}).outputs == {"summary": "About t"}
    skipped = preview.plan([fill], fill).outputs({"ticket": "t", "summary": "by hand"})
    assert skipped == preview.OutputPreview(None, "Skipped on this row: summary is not empty.")
    case, = steps(("change_case", {"source": "summary", "case": "upper"}))  # after it: sees the sheet's value
    assert list(preview.plan([fill, case], case).outputs({"ticket": "t", "summary": "by hand"}).outputs.values()) == [
        "BY HAND"]
    llm, = steps(("llm", {"prompt": "{ticket}"}))  # a model step: skipped without a run, too
    llm.when = when
    assert preview.plan([llm], llm).outputs({"ticket": "t", "summary": "x"}).note == (
        "Skipped on this row: summary is not empty.")


def test_an_error_on_the_row_is_said_in_words():
    split, = steps(("regex_extract", {"source": "name", "pattern": "(unclosed"}))
    result = preview.plan([split], split).outputs({"name": "x"})
    assert result.outputs is None and result.note.startswith("Fails on this row")


def test_the_plan_copies_the_steps_so_later_edits_do_not_reach_a_preview_in_flight():
    case, = steps(("change_case", {"source": "name", "case": "upper"}))
    plan = preview.plan([case], case)
    case.config["case"] = "lower"
    assert list(plan.outputs({"name": "Ann"}).outputs.values()) == ["ANN"]


def test_the_form_shows_what_the_step_writes_and_follows_edits(qtbot):
    doc = PipelineDocument()
    doc.set_columns(["name"])
    trim = doc.add_step("trim")
    doc.set_param(trim, "source", "name")
    case = doc.add_step("change_case")
    doc.set_param(case, "source", "name_trimmed")
    form = StepForm(doc, case, f.FormContext(columns=["name", "name_trimmed"]))
    qtbot.addWidget(form)
    form.show()
    out = form.output_preview
    with qtbot.waitSignal(out.shown, timeout=30_000):
        form.set_preview_row({"name": "  ann lee "}, "row 2")
    assert out.text() == "Writes on row 2:\nname_trimmed_upper: ANN LEE"  # trimmed first, then upper case
    with qtbot.waitSignal(out.shown, timeout=30_000):
        doc.set_param(case, "case", "title")  # an edit: worked out again
    assert out.text() == "Writes on row 2:\nname_trimmed_title: Ann Lee"
    with qtbot.waitSignal(out.shown, timeout=30_000):
        doc.set_enabled(trim, False)  # an earlier step's change counts too: its column is gone
    assert out.text() == "Writes on row 2: nothing until the problem shown here is fixed."


def test_an_output_over_a_sheet_column_says_so(qtbot):
    doc = PipelineDocument()
    doc.set_columns(["name"])
    trim = doc.add_step("trim")
    doc.set_param(trim, "source", "name")
    doc.set_param(trim, "output", "name")  # written over the sheet's own column
    form = StepForm(doc, trim, f.FormContext(columns=["name"]))
    qtbot.addWidget(form)
    form.show()
    with qtbot.waitSignal(form.output_preview.shown, timeout=30_000):
        form.set_preview_row({"name": "  ann lee "}, "row 2")
    assert form.output_preview.text() == "Writes on row 2:\nname (over the sheet's column): ann lee"


def test_the_window_previews_the_selected_row_and_says_a_model_step_runs_on_run(qloop, window):
    assert run(qloop, window.load_sheet(EXAMPLES / "reviews.xlsx"))
    window.add_step("trim")
    trim = window.doc.pipeline.steps[0]

    async def shown(act):
        out = window.form_panel.form.output_preview
        text = next_signal(out.shown)
        act()
        return (await text)[0]

    text = run(qloop, shown(lambda: window.doc.set_param(trim, "source", "customer")))
    first = str(window.rows.row(0)["customer"]).strip()
    assert text == f"Writes on row 1:\ncustomer_trimmed: {first}"
    third = str(window.rows.row(2)["customer"]).strip()
    text = run(qloop, shown(lambda: window.view.setCurrentIndex(window.model.index(2, 0))))
    assert text == f"Writes on row 3:\ncustomer_trimmed: {third}"

    window.add_step("classify")
    text = run(qloop, shown(lambda: window.form_panel.form.output_preview.schedule()))
    assert text == "Writes on row 3: it runs when you press Run (or Run up to here)."
