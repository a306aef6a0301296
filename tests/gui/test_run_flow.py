"""The run's flow through the real window, against the test server, counting what it is asked:
the pipeline's rows at once, Run continuing where the last run left off, Run all again,
Retry covering stopped rows, Run up to a step, and the run settings' stable home."""

from __future__ import annotations

import json

import openpyxl
from qt_async import next_signal, run
from test_window import llm_sheet


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
