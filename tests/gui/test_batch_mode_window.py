"""Batch mode in the window: the run bar says how far the batch is at the provider, the Run menu offers
Cancel batch while it waits, and a sheet reopened after a stop offers to collect it (issue 13, part 2)."""

from __future__ import annotations

import json

import pytest
from batchgrid.core.providers.batches import PollPolicy
from batchgrid.core.run import batch_mode
from batchgrid.core.run import events as ev
from models_support import KEY, KEY_ENV, profile
from PySide6.QtWidgets import QCheckBox
from qt_async import next_signal, run


@pytest.fixture
def server(fake_openai, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    monkeypatch.setattr(batch_mode, "POLL", PollPolicy(first=0.002, factor=2, cap=0.02))
    fake_openai.configure(api_key=KEY)
    return fake_openai


def test_the_run_bar_shows_the_batch_and_a_reopened_sheet_offers_to_collect_it(qloop, window, tmp_path, server):
    sheet = tmp_path / "rows.csv"
    sheet.write_text("text\n" + "\n".join(f"t{i}" for i in range(4)) + "\n")
    pipeline = tmp_path / "batch.json"
    pipeline.write_text(json.dumps({"version": 1, "providers": profile(server), "steps": [
        {"type": "llm", "prompt": "review {text}", "batch": True}]}))
    assert run(qloop, window.load_pipeline(pipeline))
    assert run(qloop, window.load_sheet(sheet))
    (option,) = [c for c in window.form_panel.findChildren(QCheckBox) if c.text() == "Batch mode (half price)"]
    assert option.isChecked()  # the option as the step form shows it
    option.parentWidget().grab().save(str(tmp_path / "batch_option.png"))

    async def until_the_batch_shows():
        while True:
            progress, _ = await next_signal(window.runner.progressed)
            if progress.batch:
                return progress

    async def start_and_wait():
        shown = until_the_batch_shows()
        window.act_run.trigger()
        return await shown

    progress = run(qloop, start_and_wait())
    line = window.run_bar.stats.text()
    assert "4 waiting for the batch" in line
    assert "batch submitted just now: 0 of 4 done at the provider" in line and "ETA" not in line
    window.run_bar.grab().save(str(tmp_path / "run_bar_batch.png"))
    assert window.batch_waiting() and progress.batched == 4
    (run_menu,) = [a.menu() for a in window.menuBar().actions() if a.text() == "&Run"]
    run_menu.aboutToShow.emit()  # the Run menu opens: Cancel batch is offered
    assert window.act_cancel_batch.isVisible()

    async def stop():
        finished = next_signal(window.runFinished)
        window.stop_run()
        return await finished

    assert run(qloop, stop())[0] == "stopped"
    said = window.run_bar.stats.text()
    assert said.startswith("The batch goes on at the provider (batch submitted just now: 0 of 4 done at the provider")
    assert "); Run collects it. Stopped: 0 done, 0 failed, 4 stopped" in said
    assert server.stats.batches_created == 1
    server.advance_batches()
    server.advance_batches(lines=1)

    assert run(qloop, window.load_sheet(sheet))  # opened again: the batch is still at the provider
    assert window.last_message == ("1. LLM: batch submitted just now: 1 of 4 done at the provider. "
                                   "Resume collects the results when they are ready (nothing is sent again).")
    assert window.batch_waiting()
    server.finish_batches()

    async def resume():
        finished = next_signal(window.runFinished)
        window.start_run("resume")
        return await finished

    assert run(qloop, resume())[0] == "finished"
    model = window.model
    column = model.headers.index("answer")
    assert [model.data(model.index(i, column)) for i in range(4)] == [f"echo: review t{i}" for i in range(4)]
    assert [r.status for r in window.session.store.results] == [ev.DONE] * 4
    assert server.stats.batches_created == 1 and not window.batch_waiting()
