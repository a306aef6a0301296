"""Issue 12 item 10: with a filter on, the inspector never shows a row the filter hid, and
does not go stale during a run (it showed "done" for a row that had become an error)."""

from __future__ import annotations

from batchgrid.core.run import events as ev
from batchgrid.gui.results_pane import install_table_conventions
from qt_async import run


def done(i: int, text: str, attempts: int = 1) -> ev.RowDone:
    return ev.RowDone(i, ev.RowResult(i, ev.DONE, {"out": text}, attempts=attempts))


def failed(i: int, message: str) -> ev.RowFailed:
    return ev.RowFailed(i, ev.RowResult(i, ev.ERROR, {}, message, "StepError", "1. Ask", 1, 0.1))


def open_sheet(qloop, window, tmp_path, rows: int = 10):
    sheet = tmp_path / "people.csv"
    sheet.write_text("name\n" + "\n".join(f"person {i}" for i in range(rows)) + "\n")
    assert run(qloop, window.load_sheet(sheet))
    if not hasattr(window, "results_pane"):  # the window installs it; a window without it gets it here
        install_table_conventions(window)
    model = window.model
    model.set_table(model.rows, ["out"])
    model.run_starting([None] * rows, range(rows))
    return model


def flush(model) -> None:
    model._last_refilter = 0.0  # refilter now, not after the half-second pause
    model.flush()


def inspector_text(window) -> str:
    return window.inspector.toPlainText()


def test_a_row_the_filter_hides_is_not_shown_as_it_was(qloop, window, tmp_path):
    model = open_sheet(qloop, window, tmp_path)
    for i in range(5):
        model.on_event(done(i, f"answer {i}"))
    flush(model)
    window.status_filter.setCurrentIndex(window.status_filter.findData(ev.DONE))
    assert model.rowCount() == 5
    window.view.setCurrentIndex(model.index(2, 0))  # row 3
    assert "Row 3 · done" in inspector_text(window)

    model.on_event(failed(2, "the model said no"))  # during the run, row 3 fails: the filter hides it
    flush(model)
    assert model.view_row(2) == -1
    text = inspector_text(window)
    assert "done" not in text and "Row 3 is hidden by the filter" in text

    model.on_event(done(2, "answer 2 again", attempts=2))  # retried: done again, shown again, inspected again
    flush(model)
    assert model.view_row(2) >= 0 and window.view.currentIndex().row() == model.view_row(2)
    assert "Row 3 · done" in inspector_text(window) and "2 attempts" in inspector_text(window)


def test_the_inspected_row_refreshes_when_it_changes_while_other_rows_leave_the_filter(qloop, window, tmp_path):
    model = open_sheet(qloop, window, tmp_path)
    for i in range(5):
        model.on_event(done(i, f"answer {i}"))
    flush(model)
    window.status_filter.setCurrentIndex(window.status_filter.findData(ev.DONE))
    window.view.setCurrentIndex(model.index(1, 0))  # row 2
    assert "1 attempt," in inspector_text(window)
    # in one flush: row 2 gets a new answer (it stays done) and row 4 leaves the filter
    model.on_event(done(1, "a newer answer", attempts=3))
    model.on_event(failed(3, "no"))
    flush(model)
    assert "3 attempts" in inspector_text(window)


def test_without_a_filter_the_inspector_still_follows_its_row(qloop, window, tmp_path):
    model = open_sheet(qloop, window, tmp_path)
    window.view.setCurrentIndex(model.index(4, 0))
    model.on_event(ev.RowStarted(4))
    flush(model)
    assert "Row 5 · running" in inspector_text(window)
    model.on_event(failed(4, "timed out"))
    flush(model)
    assert "Row 5 · error" in inspector_text(window) and "timed out" in inspector_text(window)
