"""The row inspector: each trace against the step that made it (by path), never a wrong one
after an edit; usage figures shown, secrets masked; a long request stays inside the panel."""

from __future__ import annotations

import pytest
from batchgrid.core.run import events as ev
from batchgrid.gui.document import PipelineDocument
from batchgrid.gui.inspector import RowInspector
from conftest import EXAMPLES
from PySide6.QtCore import Qt
from qt_async import next_signal, run

INPUTS = {"review": "good", "product": "pen"}


@pytest.fixture
def inspector(qtbot):
    widget = RowInspector()
    qtbot.addWidget(widget)
    widget.resize(420, 700)
    widget.show()
    return widget


@pytest.fixture
def doc(qtbot):
    """A template step, then a parallel step whose branch "x" changes a column's case."""
    doc = PipelineDocument()
    doc.set_columns(list(INPUTS))
    template = doc.add_step("template")
    doc.set_param(template, "template", "{review}!")
    doc.set_param(template, "output", "loud")
    parallel = doc.add_step("parallel")
    doc.set_param(parallel, "branches", {"x": []})
    upper = doc.add_step("change_case", parallel.children()["x"])
    doc.set_param(upper, "source", "product")
    assert doc.problems == []
    return doc


def traced_row(doc: PipelineDocument) -> ev.RowResult:
    """What the engine records for one row of `doc`'s pipeline: a trace per step, with its path."""
    template, parallel = doc.pipeline.steps
    upper = parallel.children()["x"][0]
    trace = [ev.StepTrace(f"1. {template.label}", 0.001, path=(0,)),
             ev.StepTrace(f"2. {parallel.label}", 0.002, path=(1,)),
             ev.StepTrace(f"2. {parallel.label} › x › 1. {upper.label}", 0.001, path=(1, "x", 0))]
    return ev.RowResult(0, ev.DONE, {"loud": "good!", "product_upper": "PEN"}, trace=trace)


def sections(inspector: RowInspector) -> dict[str, str]:
    """The inspector's text, cut at each step's heading: {heading: what is shown under it}."""
    text = inspector.toPlainText()
    out: dict[str, str] = {}
    heading = ""
    for line in text.splitlines():
        if line.endswith(" ms)") and "(" in line:  # a step heading: "1. Template (1.0 ms)"
            heading = line.rpartition(" (")[0]
            out[heading] = ""
        elif heading:
            out[heading] += line + "\n"
    return out


def test_each_trace_is_shown_against_its_step_found_by_path(inspector, doc):
    template, parallel = doc.pipeline.steps
    upper = parallel.children()["x"][0]
    inspector.show_row(0, INPUTS, traced_row(doc), ev.DONE, doc.pipeline.steps)
    shown = sections(inspector)
    assert list(shown) == [f"1. {template.label}", f"2. {parallel.label}", f"2. {parallel.label} › x › 1. {upper.label}"]
    assert "review\ngood" in shown[f"1. {template.label}"] and "loud\ngood!" in shown[f"1. {template.label}"]
    # a step inside a branch is found too (by position, only top-level steps could be)
    nested = shown[f"2. {parallel.label} › x › 1. {upper.label}"]
    assert "product\npen" in nested and "product_upper\nPEN" in nested


def test_after_a_step_is_inserted_before_a_trace_is_never_shown_against_the_wrong_step(inspector, doc):
    result = traced_row(doc)
    template = doc.pipeline.steps[0]
    length = doc.add_step("length", index=0)  # the user edits after the run
    doc.set_param(length, "source", "product")
    inspector.show_row(0, INPUTS, result, ev.DONE, doc.pipeline.steps)
    shown = sections(inspector)
    assert next(iter(shown)) == f"1. {template.label}"  # under the label it ran as
    first = shown[f"1. {template.label}"]
    assert "product" not in first  # not the inserted step's reads
    assert "review\ngood" not in first  # nor guessed: the step it names has changed
    assert "changed since" in first
    assert all("product_length" not in text for text in shown.values())
    # a step added after the traced ones leaves every trace on its own step
    doc.undo_stack.undo()
    doc.undo_stack.undo()
    doc.add_step("trim")
    inspector.show_row(0, INPUTS, result, ev.DONE, doc.pipeline.steps)
    assert "review\ngood" in sections(inspector)[f"1. {template.label}"]


def test_after_a_step_is_deleted_its_trace_keeps_its_label(inspector, doc):
    result = traced_row(doc)
    template = doc.pipeline.steps[0]
    doc.remove_step(template)
    inspector.show_row(0, INPUTS, result, ev.DONE, doc.pipeline.steps)
    shown = sections(inspector)
    assert list(shown) == [t.step for t in result.trace]
    assert all("changed since" in text for text in shown.values())
    assert all("product\npen" not in text for text in shown.values())


def test_token_counts_are_shown_and_only_real_secrets_are_masked(inspector, doc):
    result = traced_row(doc)
    result.trace[0].details = {
        "provider": "local", "tokens_in": 1234, "tokens_out": 56, "max_tokens": 99, "cost": 0.5,
        "request": {"model": "m", "max_tokens": 99,
                    "headers": {"Authorization": "Bearer abcdefghijklmnopqrstuvwxyz", "X-Api-Key": "k-9876",
                                "X-Auth-Token": "tok-5555", "X-Trace": "visible-1"}},
        "api_key": "sk-zzzzzzzzzzzzzzzzzzzzzzzz",
    }
    inspector.show_row(0, INPUTS, result, ev.DONE, doc.pipeline.steps)
    text = inspector.toPlainText()
    assert "tokens_in\n1234" in text and "tokens_out\n56" in text and "max_tokens\n99" in text
    assert '"max_tokens": 99' in text and "visible-1" in text
    for secret in ("abcdefghijklmnopqrstuvwxyz", "k-9876", "tok-5555", "sk-zzz"):
        assert secret not in text


def test_a_long_request_stays_inside_the_panel(inspector, doc):
    result = traced_row(doc)
    result.trace[0].details = {"request": {"model": "m", "messages": [
        {"role": "user", "content": "lorem ipsum " * 170},  # 2,000 characters with spaces
        {"role": "user", "content": "x" * 2000},  # and without
    ]}}
    inspector.show_row(0, INPUTS, result, ev.DONE, doc.pipeline.steps)
    document_width = inspector.document().size().width()
    assert 0 < document_width <= inspector.viewport().width()
    assert inspector.horizontalScrollBar().maximum() == 0
    assert inspector.sizeHint().width() <= inspector.width()
    assert "x" * 200 in inspector.toPlainText().replace("\n", "")  # wrapped, not cut


def test_after_a_run_and_an_edit_the_window_inspector_keeps_traces_on_their_steps(qtbot, window, qloop):
    """Through the window: run a real pipeline, select a row, insert a step before, look again."""
    w = window
    assert run(qloop, w.load_sheet(EXAMPLES / "reviews.xlsx"))
    case = w.doc.add_step("change_case")
    w.doc.set_param(case, "source", "sku")
    assert w.doc.problems == []

    async def run_all():
        finished = next_signal(w.runFinished)
        qtbot.mouseClick(w.run_bar.run_button, Qt.MouseButton.LeftButton)
        return await finished

    assert run(qloop, run_all())[0] == "finished"
    result = next(r for r in w.model.results if r is not None and r.status == ev.DONE)
    assert all(t.path for t in result.trace), "the engine records each trace's step path"
    w.view.setCurrentIndex(w.model.index(result.index, 0))
    label = f"1. {case.label}"
    assert "sku_upper" in sections(w.inspector)[label]  # what it wrote, against its step
    length = w.doc.add_step("length", index=0)  # an edit after the run
    w.doc.set_param(length, "source", "review")
    w.view.clearSelection()
    w.view.setCurrentIndex(w.model.index(result.index, 0))
    shown = sections(w.inspector)[label]
    assert "changed since" in shown and "review_length" not in shown and "sku_upper" not in shown
