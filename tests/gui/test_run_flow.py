"""The run's flow through the real window, against the test server, counting what it is asked:
the pipeline's rows at once, Run continuing where the last run left off, Run all again,
Retry covering stopped rows, Run up to a step, and the run settings' stable home."""

from __future__ import annotations

import json

import openpyxl
from PySide6.QtCore import QPoint, Qt

from batchgrid.core.run import events as ev
from batchgrid.core.run.results import NOT_RUN

from qt_async import next_signal, run
from test_window import column, llm_sheet, statuses, until


def asked(server) -> int:
    """Chat requests the test server has answered so far."""
    return sum(server.stats.per_prompt.values())


async def run_to_end(trigger, window) -> tuple[str, str]:
    finished = next_signal(window.runFinished)
    trigger()
    return await finished


# ---- item 2: "Rows at once" saved in a pipeline -------------------------------------------------
def test_the_pipelines_rows_at_once_wins_in_the_box_the_run_and_the_export(qloop, window, tmp_path, fake_openai):
    sheet, pipeline = llm_sheet(tmp_path, fake_openai, rows=24, concurrency=4)
    assert json.loads(pipeline.read_text())["settings"]["max_concurrency"] == 4
    assert window.run_bar.concurrency.value() == 8  # a new window's pipeline: the default
    assert run(qloop, window.load_pipeline(pipeline))
    assert window.run_bar.concurrency.value() == 4
    assert run(qloop, window.load_sheet(sheet))
    fake_openai.configure(latency=0.05)
    assert run(qloop, run_to_end(window.act_run.trigger, window))[0] == "finished"
    assert fake_openai.stats.peak_in_flight == 4

    out = tmp_path / "out.xlsx"
    window.ask_save_path = lambda: str(out)

    async def export():
        done = next_signal(window.exportFinished)
        window.act_export.trigger()
        return await done

    assert run(qloop, export()) == (str(out),)
    items = {r[0]: r[1] for r in openpyxl.load_workbook(out, read_only=True)["Run"].iter_rows(values_only=True)}
    assert items["max concurrency"] == 4


def test_a_new_pipeline_after_one_with_its_own_rows_at_once_shows_the_default_again(qloop, window, tmp_path,
                                                                                  fake_openai):
    _sheet, pipeline = llm_sheet(tmp_path, fake_openai, rows=3, concurrency=3)
    assert run(qloop, window.load_pipeline(pipeline))
    assert window.run_bar.concurrency.value() == 3
    window.new_pipeline()
    assert window.run_bar.concurrency.value() == window.settings.default_concurrency() == 8


# ---- item 4: Run continues; Run all again; Retry covers stopped rows ---------------------------
def open_llm(qloop, window, tmp_path, server, rows: int = 30, concurrency: int = 3, latency: float = 0.0):
    sheet, pipeline = llm_sheet(tmp_path, server, rows=rows, concurrency=concurrency)
    server.configure(latency=latency)
    assert run(qloop, window.load_pipeline(pipeline))
    assert run(qloop, window.load_sheet(sheet))


async def stop_after(window, done: int) -> None:
    finished = next_signal(window.runFinished)
    window.act_run.trigger()
    await until(lambda: statuses(window).get(ev.DONE, 0) >= done)
    window.stop_run()
    assert (await finished)[0] == "stopped"


def test_run_after_a_stop_asks_the_server_only_for_the_rest(qloop, window, tmp_path, fake_openai):
    open_llm(qloop, window, tmp_path, fake_openai, latency=0.05)
    run(qloop, stop_after(window, 6))
    done = {i for i, s in enumerate(window.model.status) if s == ev.DONE}
    stopped = {i for i, s in enumerate(window.model.status) if s == ev.CANCELLED}
    assert done and stopped
    assert "Run goes on with the rest" in window.run_bar.stats.text()
    before = asked(fake_openai)
    fake_openai.configure(latency=0.0)
    assert run(qloop, run_to_end(window.act_run.trigger, window))[0] == "finished"  # F5
    assert asked(fake_openai) - before == 30 - len(done)
    assert all(n == 1 for p, n in fake_openai.stats.per_prompt.items() if int(p[1:]) in done)
    assert statuses(window) == {ev.DONE: 30}


def test_a_previews_rows_are_kept_by_the_next_run(qloop, window, tmp_path, fake_openai):
    open_llm(qloop, window, tmp_path, fake_openai)
    window.run_bar.preview_rows.setValue(10)
    assert run(qloop, run_to_end(window.run_bar.preview_button.click, window))[0] == "finished"
    assert asked(fake_openai) == 10
    assert run(qloop, run_to_end(window.run_bar.run_button.click, window))[0] == "finished"
    assert dict(fake_openai.stats.per_prompt) == {f"q{i}": 1 for i in range(30)}  # the preview's 10 not again


def test_an_edited_prompt_runs_every_row_again_and_a_finished_sheet_says_so(qloop, window, tmp_path, fake_openai):
    open_llm(qloop, window, tmp_path, fake_openai, rows=12)
    assert run(qloop, run_to_end(window.act_run.trigger, window))[0] == "finished"
    assert asked(fake_openai) == 12
    window.act_run.trigger()  # nothing left: no run, a word and a way to run everything again
    assert not window.runner.running and asked(fake_openai) == 12
    assert window.last_message.startswith("Every row has a result of this pipeline")
    window.doc.set_param(window.doc.pipeline.steps[0], "prompt", "Shout: {q}")
    assert run(qloop, run_to_end(window.act_run.trigger, window))[0] == "finished"
    assert {p for p in fake_openai.stats.per_prompt if p.startswith("Shout")} == {f"Shout: q{i}" for i in range(12)}
    assert column(window, "a")[0] == "echo: Shout: q0"


def test_run_all_again_asks_before_paid_calls_and_runs_every_row(qloop, window, tmp_path, fake_openai):
    open_llm(qloop, window, tmp_path, fake_openai, rows=12)
    assert run(qloop, run_to_end(window.act_run.trigger, window))[0] == "finished"
    run_menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&Run")
    assert window.act_run_again in run_menu.actions()

    window.ask = lambda title, text: window.questions.append((title, text)) or False  # "No"
    window.act_run_again.trigger()
    assert window.questions[-1][0] == "Run every row again?"
    assert "12 rows already have a result of this pipeline" in window.questions[-1][1]
    assert not window.runner.running and asked(fake_openai) == 12

    window.ask = lambda title, text: window.questions.append((title, text)) or True
    assert run(qloop, run_to_end(window.act_run_again.trigger, window))[0] == "finished"
    assert dict(fake_openai.stats.per_prompt) == {f"q{i}": 2 for i in range(12)}


def test_retry_takes_the_stopped_rows_too_and_says_so(qloop, window, tmp_path, fake_openai):
    fake_openai.configure(script={"q1": [400]})  # q1 and q10..q19 fail once
    open_llm(qloop, window, tmp_path, fake_openai, latency=0.05)
    run(qloop, stop_after(window, 12))
    failed = {i for i, s in enumerate(window.model.status) if s == ev.ERROR}
    stopped = {i for i, s in enumerate(window.model.status) if s == ev.CANCELLED}
    assert failed and stopped
    retry = window.run_bar.retry_button
    assert retry.isEnabled() and window.act_retry.isEnabled()
    assert retry.text() == f"Retry {len(failed) + len(stopped)} failed/stopped"
    before = dict(fake_openai.stats.per_prompt)
    never_run = window.model.status.count(NOT_RUN)
    assert run(qloop, run_to_end(retry.click, window))[0] == "finished"
    again = {p for p, n in fake_openai.stats.per_prompt.items() if n > before.get(p, 0)}
    # a row stopped while it waited for its turn never reached the server: the retry asks it first
    assert again == {f"q{i}" for i in failed | stopped}
    assert window.model.status.count(NOT_RUN) == never_run > 0  # rows never run stay for Run


# ---- item 5: the run settings' stable home --------------------------------------------------------
def test_run_settings_are_reachable_from_the_menu_the_run_bar_and_empty_space(qtbot, qloop, window, tmp_path,
                                                                           fake_openai):
    open_llm(qloop, window, tmp_path, fake_openai, rows=3)
    step = window.doc.pipeline.steps[0]
    panel = window.form_panel

    def shows_settings() -> bool:
        return panel.form is None and panel.settings_form is not None and window.cards.current_step() is None

    run_menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&Run")
    assert window.act_run_settings in run_menu.actions()
    for open_settings in (window.act_run_settings.trigger, window.run_bar.settings_button.click):
        window.cards.select_step(step)
        assert panel.form is not None and not shows_settings()
        open_settings()
        assert shows_settings()
    window.cards.select_step(step)
    viewport = window.cards.viewport()
    below = QPoint(viewport.width() // 2, viewport.height() - 5)
    assert not window.cards.indexAt(below).isValid()
    qtbot.mouseClick(viewport, Qt.MouseButton.LeftButton, pos=below)
    assert shows_settings()
    panel.settings_form.fields["max_attempts"].set_value(2)
    panel.settings_form.fields["max_attempts"].edited.emit(2, False)
    assert window.doc.pipeline.settings["max_attempts"] == 2


# ---- Run up to this step ----------------------------------------------------------------------------
def test_run_up_to_a_step_runs_the_first_steps_on_the_selected_rows(qloop, window, tmp_path, fake_openai):
    open_llm(qloop, window, tmp_path, fake_openai, rows=8)
    window.doc.add_step("llm")
    second = window.doc.pipeline.steps[1]
    window.doc.set_param(second, "prompt", "again: {a}")
    window.doc.set_param(second, "output", "b")
    assert window.doc.problems == []
    window.view.selectRow(2)
    window.view.selectionModel().select(window.model.index(5, 0), window.view.selectionModel().SelectionFlag.Select)
    window.cards.select_step(window.doc.pipeline.steps[0])
    assert window.act_run_up_to.isEnabled()
    run_menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&Run")
    assert window.act_run_up_to in run_menu.actions()
    assert run(qloop, run_to_end(window.act_run_up_to.trigger, window))[0] == "finished"
    assert dict(fake_openai.stats.per_prompt) == {"q2": 1, "q5": 1}  # only the first step, only those rows
    first = window.doc.pipeline.steps[0]
    assert window.status_text.text().startswith(f"Ran step 1 ({first.label}): 2 done")
    assert column(window, "a")[2] == "echo: q2" and column(window, "b")[2] is None

    assert run(qloop, run_to_end(lambda: window.run_up_to(1), window))[0] == "finished"  # the card's menu
    assert window.status_text.text().startswith("Ran steps 1–2")
    assert column(window, "b")[2] == "echo: again: echo: q2"

    window.view.clearSelection()
    assert run(qloop, run_to_end(window.act_run.trigger, window))[0] == "finished"  # Run finishes every row
    assert statuses(window) == {ev.DONE: 8}
    assert column(window, "b") == [f"echo: again: echo: q{i}" for i in range(8)]
