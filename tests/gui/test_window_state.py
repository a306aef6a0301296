"""The window keeps its state straight (issue 12, items 7 and 8): the selection follows a moved
step, and the run bar and the status bar never show an earlier run's numbers as the current ones."""

from __future__ import annotations

from batchgrid.core.run import events as ev
from conftest import EXAMPLES
from qt_async import next_signal, run, run_to_end
from test_pipeline_editor import card_count
from test_window import open_llm_sheet, statuses, until


def test_the_arrow_buttons_move_the_step_and_the_selection_follows_it(qloop, window):
    assert run(qloop, window.load_sheet(EXAMPLES / "reviews.xlsx"))
    for kind in ("trim", "change_case", "length"):
        window.add_step(kind)
    steps = list(window.doc.pipeline.steps)
    moved = steps[2]
    window.cards.select_step(moved)

    window.card_buttons["up"].click()
    assert window.doc.pipeline.steps.index(moved) == 1
    assert window.cards.current_step() is moved and window.cards.currentIndex().row() == 1
    assert window.form_panel.step is moved  # the form shows the step that moved, not its neighbour
    window.card_buttons["up"].click()
    assert window.cards.current_step() is moved and window.form_panel.step is moved
    window.card_buttons["down"].click()
    window.card_buttons["down"].click()
    assert window.doc.pipeline.steps.index(moved) == 2 == window.cards.currentIndex().row()
    assert window.form_panel.step is moved and card_count(window) == 3
    window.act_undo.trigger()  # undoing a move keeps the moved step selected too
    assert window.cards.current_step() is moved and window.form_panel.step is moved


def test_opening_another_sheet_clears_the_last_runs_progress(qloop, window, tmp_path):
    assert run(qloop, window.load_pipeline(EXAMPLES / "reviews-offline.batchgrid.json"))
    assert run(qloop, window.load_sheet(EXAMPLES / "reviews.xlsx"))
    run(qloop, run_to_end(window))
    assert window.run_bar.progress.isVisible() and "240" in window.run_bar.progress.text()
    other = tmp_path / "other.csv"
    other.write_text("review\nfine\n")
    assert run(qloop, window.load_sheet(other))
    assert window.run_bar.stats.text() == "Not run yet."
    assert not window.run_bar.progress.isVisible()


def test_a_new_run_does_not_keep_the_last_runs_stopped_line(qloop, window, tmp_path, fake_openai):
    open_llm_sheet(qloop, window, tmp_path, fake_openai, rows=40, concurrency=2, latency=0.05)

    async def stop_then_run_again():
        finished = next_signal(window.runFinished)
        window.act_run.trigger()
        await until(lambda: statuses(window).get(ev.DONE, 0) >= 2)
        window.stop_run()
        await finished
        assert window.status_text.text().startswith("Stopped")
        finished = next_signal(window.runFinished)
        started = next_signal(window.runner.started)
        window.act_run.trigger()
        await started
        during = window.status_text.text(), window.run_bar.stats.text()
        await finished
        return during

    status, stats = run(qloop, stop_then_run_again())
    assert "Stopped" not in status and status.startswith("Running")
    assert "Stopped" not in stats


def test_retry_failed_shows_the_overall_tally(qloop, window):
    assert run(qloop, window.load_pipeline(EXAMPLES / "reviews-offline.batchgrid.json"))
    assert run(qloop, window.load_sheet(EXAMPLES / "reviews.xlsx"))
    run(qloop, run_to_end(window))
    assert statuses(window) == {ev.DONE: 237, ev.ERROR: 3}
    seen = []
    window.runner.progressed.connect(lambda p, _paused: seen.append(window.run_bar.progress.text()))
    run(qloop, run_to_end(window, "retry_failed"))
    bar = window.run_bar.progress
    assert (bar.value(), bar.maximum()) == (237, 240)
    assert bar.text() == "237 / 240 done"
    assert seen and all(text.endswith("/ 240 done") for text in seen)
    assert window.run_bar.stats.text().startswith("Retry of 3 rows: 0 done · 3 failed")
