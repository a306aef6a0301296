"""Review mode in the window, driven by keys only: 500 rows accepted, edited and rejected with
Enter / E / R, the decisions recorded through the session, the marks in the results table, the
rows of a filter, Run all again keeping edits unless asked, and the marks readable in both schemes."""

from __future__ import annotations

import json

from batchgrid.core.run.overrides import ACCEPTED, EDITED, REJECTED
from batchgrid.gui.results_model import EDITED_COLOURS, edited_brush
from batchgrid.gui.review import ReviewPanel
from batchgrid.gui.style import DARK, LIGHT, contrast
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QApplication
from qt_async import next_signal, run, run_to_end

ROWS = 500


def open_sheet(qloop, window, tmp_path, rows: int = ROWS) -> None:
    sheet = tmp_path / "rows.csv"
    sheet.write_text("text\n" + "".join(f"t{i}\n" for i in range(rows)))
    pipeline = tmp_path / "wrap.json"
    pipeline.write_text(json.dumps({"version": 1, "steps": [
        {"type": "template", "template": "<{text}>", "output": "wrapped"}]}))
    assert run(qloop, window.load_pipeline(pipeline))
    assert run(qloop, window.load_sheet(sheet))
    reason, _ = run(qloop, run_to_end(window))
    assert reason == "finished"


def press(qtbot, key, modifier=Qt.KeyboardModifier.NoModifier, text: str = "") -> None:
    """A key to whatever has the keyboard focus, as a user types it (shortcuts see it first)."""
    target = QApplication.focusWidget()
    assert target is not None, "nothing has the keyboard focus"
    if text:
        qtbot.keyClicks(target, text)
    else:
        qtbot.keyClick(target, key, modifier)


def enter_review(qtbot, window) -> ReviewPanel:
    window.activateWindow()
    window.view.setFocus()
    qtbot.keyClick(window.view, Qt.Key.Key_R, Qt.KeyboardModifier.ControlModifier)  # Run ▸ Review results
    panel = window.review_mode.panel
    assert window.review_mode.active and panel.isVisible()
    assert QApplication.focusWidget() is panel
    return panel


def test_500_rows_reviewed_by_keys_alone(qtbot, qloop, window, tmp_path):
    open_sheet(qloop, window, tmp_path)
    panel = enter_review(qtbot, window)
    wrapped = window.model.headers.index("wrapped")
    assert panel.row == 0 and panel.position.text().startswith("Row 1 · 1 of 500 rows shown")
    for i in range(ROWS):
        assert panel.row == i  # the next row is shown as soon as the last decision is made
        if i % 10 == 3:
            press(qtbot, Qt.Key.Key_E)
            assert QApplication.focusWidget() is panel.editors["wrapped"]
            press(qtbot, None, text=f"hand {i}")  # the value was selected: typing replaces it
            press(qtbot, Qt.Key.Key_Return)
        elif i % 10 == 7:
            press(qtbot, Qt.Key.Key_R)
        else:
            press(qtbot, Qt.Key.Key_Return)
    overrides = window.session.overrides
    assert overrides.counts() == {ACCEPTED: 400, EDITED: 50, REJECTED: 50}
    assert {r for r, v in overrides.rows.items() if v.decision == EDITED} == set(range(3, ROWS, 10))
    assert {r for r, v in overrides.rows.items() if v.decision == REJECTED} == set(range(7, ROWS, 10))
    assert overrides.get(13).edits == {"wrapped": "hand 13"}
    assert panel.row == ROWS - 1 and panel.summary.text() == "400 accepted, 50 edited, 50 rejected of 500 · last row shown"
    # The table says it: edited cells read as edited, tinted; reviewed rows carry a mark.
    model = window.model
    assert model.raw_value(13, wrapped) == "hand 13" and model.raw_value(12, wrapped) == "<t12>"
    assert model.data(model.index(13, wrapped), Qt.ItemDataRole.BackgroundRole) == edited_brush()
    assert "The step wrote: <t13>" in model.data(model.index(13, wrapped), Qt.ItemDataRole.ToolTipRole)
    assert [model.headerData(i, Qt.Orientation.Vertical) for i in (0, 3, 7)] == ["✓ 1", "✎ 4", "✗ 8"]
    # The inspector followed the row reviewed.
    assert "Row 500" in window.inspector.toPlainText()

    # Arrows move without deciding; Backspace forgets; Esc leaves (not Stop).
    press(qtbot, Qt.Key.Key_Up)
    press(qtbot, Qt.Key.Key_Up)
    assert panel.row == ROWS - 3
    press(qtbot, Qt.Key.Key_Backspace)
    assert ROWS - 3 not in overrides and panel.row == ROWS - 3
    press(qtbot, Qt.Key.Key_E)
    press(qtbot, Qt.Key.Key_Escape)  # cancels the edit, stays in review
    assert window.review_mode.active and not panel.editing and ROWS - 3 not in overrides
    press(qtbot, Qt.Key.Key_Escape)
    assert not window.review_mode.active and window.view.isVisible()
    assert window.view.currentIndex().row() == ROWS - 3  # the table is where the review was


def test_review_walks_the_rows_of_the_current_filter(qtbot, qloop, window, tmp_path):
    open_sheet(qloop, window, tmp_path, rows=40)
    model = window.model
    model.set_column_filter(model.headers.index("text"), "3")  # t3, t13, t23, t30..t39
    shown = [model.source_row(v) for v in range(model.rowCount())]
    assert shown == [3, 13, 23, *range(30, 40)]
    panel = enter_review(qtbot, window)
    assert panel.row == 3 and "(filtered)" in panel.position.text()
    for _ in shown:
        press(qtbot, Qt.Key.Key_Return)
    assert sorted(window.session.overrides.rows) == shown
    assert panel.row == 39


def test_run_all_again_keeps_review_edits_unless_asked(qtbot, qloop, window, tmp_path):
    open_sheet(qloop, window, tmp_path, rows=6)
    window.session.review(2, EDITED, {"wrapped": "mine"})
    window.session.review(4, ACCEPTED)
    wrapped = window.model.headers.index("wrapped")
    window.ask = lambda title, text: (window.questions.append(title), title != "Replace your review edits?")[1]
    assert run(qloop, run_all_again(window)) == "finished"  # the user keeps the default (No): edits stay
    assert "Replace your review edits?" in window.questions
    assert window.model.raw_value(2, wrapped) == "mine"

    window.ask = lambda title, text: True  # this time: replace them
    assert run(qloop, run_all_again(window)) == "finished"
    assert window.model.raw_value(2, wrapped) == "<t2>"
    assert 2 not in window.session.overrides and 4 in window.session.overrides  # accepted rows stay reviewed


async def run_all_again(window) -> str:
    """Run ▸ Run all again, and its run to the end."""
    finished = next_signal(window.runFinished)
    window.run_all_again()
    return (await finished)[0]


def test_the_edited_tint_reads_in_light_and_dark():
    for scheme, tint in ((LIGHT, EDITED_COLOURS[0]), (DARK, EDITED_COLOURS[1])):
        assert contrast(QColor(scheme["text"]), QColor(tint)) >= 4.5
    # and it differs from the table's base (white / #181b1f) enough to see
    assert contrast(QColor("#ffffff"), QColor(EDITED_COLOURS[0])) > 1.1
    assert contrast(QColor("#181b1f"), QColor(EDITED_COLOURS[1])) > 1.3


def test_reviews_come_back_when_the_sheet_is_opened_again(qtbot, qloop, window, tmp_path):
    open_sheet(qloop, window, tmp_path, rows=5)
    panel = enter_review(qtbot, window)
    press(qtbot, Qt.Key.Key_R)
    press(qtbot, Qt.Key.Key_E)
    press(qtbot, None, text="by hand")
    press(qtbot, Qt.Key.Key_Return)
    assert panel.row == 2
    press(qtbot, Qt.Key.Key_Escape)
    assert run(qloop, window.load_sheet(tmp_path / "rows.csv"))  # read again, reviews from the journal
    model = window.model
    assert [model.headerData(i, Qt.Orientation.Vertical) for i in range(3)] == ["✗ 1", "✎ 2", "3"]
    assert model.raw_value(1, model.headers.index("wrapped")) == "by hand"


def test_a_column_a_step_writes_over_stays_in_its_place_and_is_reviewed_there(qtbot, qloop, window, tmp_path):
    """A conditioned step writes `summary` only where it is empty: the table shows one `summary`
    column (the sheet's value where the step skipped), and the review edits it where it stands."""
    sheet = tmp_path / "tickets.csv"
    sheet.write_text("text,summary\none,\ntwo,by hand\n")
    pipeline = tmp_path / "fill.json"
    pipeline.write_text(json.dumps({"version": 1, "steps": [
        {"type": "template", "template": "about {text}", "output": "summary",
         "when": {"all": [{"column": "summary", "op": "is empty"}]}}]}))
    assert run(qloop, window.load_pipeline(pipeline))
    assert run(qloop, window.load_sheet(sheet))
    assert run(qloop, run_to_end(window))[0] == "finished"
    model = window.model
    assert model.headers[:3] == ["text", "summary", "status"]
    assert [model.data(model.index(r, 1)) for r in (0, 1)] == ["about one", "by hand"]
    assert "written over by a step" in model.headerData(1, Qt.Orientation.Horizontal, Qt.ItemDataRole.ToolTipRole)
    panel = enter_review(qtbot, window)
    assert list(panel.editors) == ["summary"] and panel.editors["summary"].toPlainText() == "about one"
    press(qtbot, Qt.Key.Key_E)
    press(qtbot, None, text="about the first one")
    press(qtbot, Qt.Key.Key_Return)
    assert window.session.overrides.get(0).edits == {"summary": "about the first one"}
    assert model.data(model.index(0, 1)) == "about the first one"
    assert model.data(model.index(0, 1), Qt.ItemDataRole.BackgroundRole) == edited_brush()
    assert model.data(model.index(0, 0), Qt.ItemDataRole.BackgroundRole) != edited_brush()
    assert panel.row == 1 and panel.editors["summary"].toPlainText() == "by hand"
