"""End to end through the window: example, palette, an LLM step on the local test server,
run, errors, stop, retry, export read back; and the window's other promises."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import openpyxl
import pandas as pd
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QLabel

from batchgrid.core.run import events as ev
from batchgrid.core.run.results import NOT_RUN
from batchgrid.gui.main_window import MainWindow
from batchgrid.gui.window_layout import save_layout

from conftest import EXAMPLES
from qt_async import next_signal, run, run_to_end
from test_pipeline_editor import palette_add

MARKER = "refund"  # reviews that mention it get a 400 from the test server, once


def statuses(window) -> dict[str, int]:
    counts: dict[str, int] = {}
    for s in window.model.status:
        counts[s] = counts.get(s, 0) + 1
    return counts


def column(window, name: str) -> list:
    c = window.model.headers.index(name)
    return [window.model.raw_value(i, c) for i in range(len(window.rows))]


def choose(combo, text: str) -> None:
    """Pick an entry of a combo box as a user does (activated, not just currentIndex)."""
    index = combo.findText(text)
    assert index >= 0, f"{text!r} is not offered"
    combo.setCurrentIndex(index)
    combo.activated.emit(index)


async def until(condition, timeout: float = 20.0) -> None:
    """Wait on the running qasync loop (no nested Qt loop) until `condition()` holds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


def llm_sheet(tmp_path, fake_openai, rows: int, concurrency: int, prefix: str = "q"):
    """A one-column sheet of questions and a pipeline with one LLM step on the test server."""
    sheet = tmp_path / "rows.csv"
    sheet.write_text("q\n" + "\n".join(f"{prefix}{i}" for i in range(rows)) + "\n")
    pipeline = tmp_path / "llm.json"
    pipeline.write_text(json.dumps({
        "version": 1, "settings": {"max_concurrency": concurrency, "use_cache": False},
        "providers": {"test": {"preset": "vllm", "base_url": fake_openai.base_url, "model": "m"}},
        "steps": [{"type": "llm", "prompt": "{q}", "output": "a"}]}))
    return sheet, pipeline


def open_llm_sheet(qloop, window, tmp_path, fake_openai, rows: int, concurrency: int, latency: float) -> None:
    """`llm_sheet`, opened in the window, with the test server answering after `latency` seconds."""
    sheet, pipeline = llm_sheet(tmp_path, fake_openai, rows, concurrency)
    fake_openai.configure(latency=latency)
    assert run(qloop, window.load_pipeline(pipeline))
    assert run(qloop, window.load_sheet(sheet))


def test_example_three_palette_steps_llm_run_errors_stop_retry_export(qtbot, qloop, app_settings, window,
                                                                      fake_openai, tmp_path):
    w = window
    server = fake_openai
    app_settings.set_providers([{"name": "testserver", "preset": "vllm", "base_url": server.base_url,
                                 "model": "gpt-4o-mini"}])
    w.form_panel.app_providers = ["testserver"]
    export_path = tmp_path / "results.xlsx"
    w.ask_save_path = lambda: str(export_path)

    async def scenario():
        # ---- File ▸ Open example
        loaded = next_signal(w.sheetLoaded)
        action = next(a for a in w.examples_menu.actions() if "offline" in a.text().lower())
        action.trigger()
        await loaded
        assert w.lower.currentIndex() == 1 and len(w.rows) == 240
        assert w.doc.pipeline.path.name == "reviews-offline.batchgrid.json"
        example_steps = len(w.doc.pipeline.steps)
        w.doc.set_setting("use_cache", False)  # every run asks the server again

        # ---- three steps from the palette
        w.cards.select_step(w.doc.pipeline.steps[-1])
        palette_add(qtbot, w, "change_case")
        choose(w.form_panel.form.fields["source"].combo, "product")
        llm = palette_add(qtbot, w, "llm")
        form = w.form_panel.form
        choose(form.fields["provider"].combo, "testserver")
        assert w.doc.pipeline.providers["testserver"]["base_url"] == server.base_url  # copied, keyless
        form.fields["prompt"].edit.setFocus()
        qtbot.keyClicks(form.fields["prompt"].edit, "Summarise: {review_clean}")
        qtbot.keyClicks(form.fields["output"].edit, "gist")
        form.fields["stream"].check.setChecked(True)
        palette_add(qtbot, w, "length")
        choose(w.form_panel.form.fields["source"].combo, "gist")
        assert [s.type for s in w.doc.pipeline.steps[example_steps:]] == ["change_case", "llm", "length"]
        assert w.doc.problems == [] and w.run_bar.run_button.isEnabled()
        assert "gist" in w.model.headers and "product_upper" in w.model.headers
        await until(lambda: w.run_bar.estimate.text().startswith("Projected: about"))  # before any run

        # ---- concurrency, then Run
        w.run_bar.concurrency.setValue(4)
        server.configure(latency=0.02, script={MARKER: [400] * 240})
        finished = next_signal(w.runFinished)
        started = next_signal(w.runner.started)
        qtbot.mouseClick(w.run_bar.run_button, Qt.MouseButton.LeftButton)
        await started  # the session starts the run off the loop (the journal's run, the snapshot)
        assert w.runner.running and not w.run_bar.run_button.isEnabled() and w.run_bar.stop_button.isEnabled()
        assert (await finished) == ("finished", "")
        assert server.stats.peak_in_flight <= 4

        # the table filled; error rows show their errors
        counts = statuses(w)
        reviews = column(w, "review_clean")
        llm_failures = [i for i, r in enumerate(reviews) if r and MARKER in r.lower()]
        price_failures = [i for i, r in enumerate(w.model.results) if r.failed_step == "3. Read the price"]
        assert len(price_failures) == 3 and len(llm_failures) >= 5
        assert counts == {ev.DONE: 240 - counts[ev.ERROR], ev.ERROR: counts[ev.ERROR]}
        gists, products, uppers = column(w, "gist"), column(w, "product"), column(w, "product_upper")
        for i in range(240):
            if w.model.results[i].status == ev.DONE:
                assert gists[i] == f"echo: Summarise: {reviews[i]}"
                assert uppers[i] == (products[i] or "").upper()
        first_llm_error = next(i for i in llm_failures if i not in price_failures)
        error_text = column(w, "error")[first_llm_error]
        assert "400" in error_text
        assert w.model.results[first_llm_error].failed_step.endswith(llm.label)
        tip = w.model.data(w.model.index(first_llm_error, 0), Qt.ItemDataRole.ToolTipRole)
        assert "failed in step" in tip and "400" in tip
        assert w.run_bar.retry_button.isEnabled()
        assert f"{counts[ev.ERROR]}" in w.run_bar.retry_button.text()

        # the row inspector shows the model request, the raw reply, and no key
        first_done = w.model.status.index(ev.DONE)
        w.view.setCurrentIndex(w.model.index(first_done, 0))
        html = w.inspector.toPlainText()
        assert "request sent" in html and "Summarise:" in html and "raw reply" in html
        assert "Authorization" not in html

        # ---- Retry failed: only the failed rows run again (the server now answers)
        server.configure(script={})
        before = dict(server.stats.per_prompt)
        finished = next_signal(w.runFinished)
        qtbot.mouseClick(w.run_bar.retry_button, Qt.MouseButton.LeftButton)
        assert (await finished)[0] == "finished"
        asked_again = {p for p, n in server.stats.per_prompt.items() if n > before.get(p, 0)}
        assert asked_again == {f"Summarise: {reviews[i]}" for i in llm_failures if i not in price_failures}
        assert statuses(w) == {ev.DONE: 237, ev.ERROR: 3}  # the unreadable prices fail again, as they should

        # ---- Stop mid-run keeps finished rows (Run all again: every row has a result)
        server.configure(latency=0.4)
        finished = next_signal(w.runFinished)
        started = next_signal(w.runner.started)
        w.act_run_again.trigger()
        await started
        await until(lambda: statuses(w).get(ev.DONE, 0) >= 8)
        done_before_stop = {i for i, s in enumerate(w.model.status) if s == ev.DONE}
        t0 = asyncio.get_running_loop().time()
        qtbot.mouseClick(w.run_bar.stop_button, Qt.MouseButton.LeftButton)
        assert (await finished)[0] == "stopped"
        # in-flight calls were cancelled, not awaited (the rest would take ~20 s at 0.4 s a call)
        assert asyncio.get_running_loop().time() - t0 < 5.0
        after = statuses(w)
        assert done_before_stop <= {i for i, s in enumerate(w.model.status) if s == ev.DONE}
        assert after.get(ev.CANCELLED, 0) >= 1 and after.get(NOT_RUN, 0) > 100
        assert ev.QUEUED not in after and ev.RUNNING not in after
        kept = sorted(done_before_stop)[0]
        assert column(w, "gist")[kept] == f"echo: Summarise: {reviews[kept]}"
        assert "Stopped" in w.run_bar.stats.text()

        # ---- Export to xlsx and read it back
        exported = next_signal(w.exportFinished)
        w.act_export.trigger()
        assert (await exported) == (str(export_path),)
        return after

    after = run(qloop, scenario(), timeout=120)
    book = openpyxl.load_workbook(export_path, read_only=True)
    assert {"Results", "Errors", "Run"} <= set(book.sheetnames) or len(book.sheetnames) >= 1
    frame = pd.read_excel(export_path, sheet_name=0, engine="openpyxl")
    assert len(frame) == 240
    assert list(frame.columns[:9]) == list(w.rows.columns)
    assert frame["review_id"].tolist() == column(w, "review_id")  # input order
    statuses_read = frame["status"].tolist()
    assert statuses_read.count(ev.DONE) == after[ev.DONE]
    done_rows = [i for i, s in enumerate(w.model.status) if s == ev.DONE]
    assert [frame["gist"][i] for i in done_rows] == [column(w, "gist")[i] for i in done_rows]


def test_empty_window_says_what_to_do_and_offers_the_examples(window):
    assert window.lower.currentWidget() is window.welcome
    text = " ".join(l.text() for l in window.welcome.findChildren(QLabel))
    assert "Open a spreadsheet" in text and "drop" in text
    assert any("offline" in b.text().lower() for b in window.welcome.example_buttons)
    assert not window.run_bar.run_button.isEnabled()
    assert window.run_blockers() == "Open a spreadsheet first."


def test_unreadable_files_and_bad_pipelines_give_one_line_in_the_window(qloop, window, tmp_path):
    broken = tmp_path / "broken.xlsx"
    broken.write_bytes(b"PK\x03\x04 this is not really a workbook")
    assert run(qloop, window.load_sheet(broken)) is False
    assert window.message_bar.isVisible() and window.last_message.startswith("Could not open broken.xlsx: ")
    assert "\n" not in window.last_message and "Traceback" not in window.last_message
    assert run(qloop, window.load_sheet(tmp_path / "missing.csv")) is False
    assert "missing.csv" in window.last_message

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"version": 1, "steps": [{"type": "trim", "source": "x", "outptu": "y"},
                                                        {"type": "nope"}]}))
    assert run(qloop, window.load_pipeline(bad)) is False
    assert "steps[0].outptu: unknown parameter" in window.last_message
    assert "steps[1].type: unknown step type 'nope'" in window.last_message
    assert not window.doc.pipeline.steps  # the old pipeline is kept


def test_dropping_a_sheet_and_a_pipeline_opens_both(qloop, window, tmp_path):
    sheet = tmp_path / "people.csv"
    sheet.write_text("name,city\nAnn,Oslo\nBob,Lima\n")
    pipeline = tmp_path / "p.json"
    pipeline.write_text(json.dumps({"version": 1, "steps": [{"type": "change_case", "source": "city",
                                                             "case": "upper"}]}))
    data = QMimeData()
    data.setUrls([QUrl.fromLocalFile(str(sheet)), QUrl.fromLocalFile(str(pipeline))])

    async def drop():
        loaded = next_signal(window.sheetLoaded)
        event = QDropEvent(QPointF(50, 50), Qt.DropAction.CopyAction, data, Qt.MouseButton.LeftButton,
                           Qt.KeyboardModifier.NoModifier)
        window.dropEvent(event)
        await loaded
        finished = next_signal(window.runFinished)
        window.act_run.trigger()
        await finished

    run(qloop, drop())
    assert window.doc.pipeline.path == pipeline.resolve()
    assert column(window, "city_upper") == ["OSLO", "LIMA"]
    assert window.settings.recent("sheets") == [str(sheet.resolve())]


def test_export_to_csv_and_parquet_and_a_clear_message_when_it_cannot_write(qloop, window, tmp_path):
    sheet = tmp_path / "people.csv"
    sheet.write_text("name,city\nAnn,Oslo\nBob,\n")
    pipeline = tmp_path / "p.json"
    pipeline.write_text(json.dumps({"version": 1, "steps": [{"type": "change_case", "source": "city",
                                                             "case": "upper"}]}))
    assert run(qloop, window.load_pipeline(pipeline))
    assert run(qloop, window.load_sheet(sheet))

    async def run_and_export(paths):
        finished = next_signal(window.runFinished)
        window.act_run.trigger()
        await finished
        written = []
        for path in paths:
            window.ask_save_path = lambda p=path: str(p)
            exported = next_signal(window.exportFinished)
            window.act_export.trigger()
            written.append((await exported)[0])
        return written

    csv_path, parquet_path, nowhere = tmp_path / "r.csv", tmp_path / "r.parquet", tmp_path / "no" / "dir" / "r.xlsx"
    written = run(qloop, run_and_export([csv_path, parquet_path, nowhere]))
    assert written == [str(csv_path), str(parquet_path), ""]
    for frame in (pd.read_csv(csv_path), pd.read_parquet(parquet_path)):
        assert frame["name"].tolist() == ["Ann", "Bob"] and frame["city_upper"].tolist()[0] == "OSLO"
        assert frame["status"].tolist() == [ev.DONE, ev.DONE]
    assert window.last_message.startswith("Could not export to r.xlsx: ") and "\n" not in window.last_message


def test_several_sheets_get_a_sheet_picker(qloop, window, tmp_path):
    path = tmp_path / "two.xlsx"
    with pd.ExcelWriter(path) as writer:
        pd.DataFrame({"a": [1, 2]}).to_excel(writer, sheet_name="First", index=False)
        pd.DataFrame({"b": ["x", "y", "z"]}).to_excel(writer, sheet_name="Second", index=False)
    assert run(qloop, window.load_sheet(path))
    assert window.sheet_picker.isVisibleTo(window)
    assert [window.sheet_picker.itemText(i) for i in range(window.sheet_picker.count())] == ["First", "Second"]
    assert window.rows.columns == ["a"]

    async def pick():
        loaded = next_signal(window.sheetLoaded)
        choose(window.sheet_picker, "Second")
        await loaded

    run(qloop, pick())
    assert window.rows.columns == ["b"] and len(window.rows) == 3 and window.session.sheet.name == "Second"


def test_preview_runs_only_the_first_rows_or_the_selected_ones(qtbot, qloop, window):
    assert run(qloop, window.load_sheet(EXAMPLES / "reviews.xlsx"))
    step = palette_add(qtbot, window, "trim")
    choose(window.form_panel.form.fields["source"].combo, "review")
    window.run_bar.preview_rows.setValue(5)

    async def preview(click):
        finished = next_signal(window.runFinished)
        click()
        await finished

    run(qloop, preview(lambda: window.run_bar.preview_button.click()))
    assert [i for i, s in enumerate(window.model.status) if s == ev.DONE] == [0, 1, 2, 3, 4]
    window.view.selectRow(10)
    window.view.selectionModel().select(window.model.index(20, 0), window.view.selectionModel().SelectionFlag.Select)
    run(qloop, preview(lambda: window.run_bar.preview_button.click()))
    assert [i for i, s in enumerate(window.model.status) if s == ev.DONE] == [0, 1, 2, 3, 4, 10, 20]
    assert step.output_name() in window.model.headers


def test_python_step_asks_for_trust_and_does_not_run_without_it(qloop, window, tmp_path):
    sheet = tmp_path / "n.csv"
    sheet.write_text("n\n1\n2\n")
    pipeline = tmp_path / "code.json"
    pipeline.write_text(json.dumps({"version": 1, "steps": [{"type": "python", "code": "n * 10", "output": "m"}]}))
    assert run(qloop, window.load_pipeline(pipeline))
    assert run(qloop, window.load_sheet(sheet))
    window.ask = lambda title, text: (window.questions.append(title), False)[1]
    assert run(qloop, window.begin_run("all")) is False
    assert window.questions == ["Trust this pipeline?"] and "not trusted" in window.last_message
    assert set(window.model.status) == {NOT_RUN}

    window.ask = lambda title, text: (window.questions.append(title), True)[1]


    run(qloop, run_to_end(window))
    assert column(window, "m") == [10, 20]


def test_model_step_without_a_provider_says_what_it_needs(qtbot, qloop, window, monkeypatch, tmp_path):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    sheet = tmp_path / "q.csv"
    sheet.write_text("q\nhello\nworld\n")
    assert run(qloop, window.load_sheet(sheet))
    llm = palette_add(qtbot, window, "llm")
    window.doc.set_param(llm, "prompt", "Answer: {q}")

    async def attempt():
        finished = next_signal(window.runFinished)
        if not await window.begin_run("all"):
            return "refused"  # it did not start: the message says why
        return (await finished)[0]

    outcome = run(qloop, attempt())
    assert outcome in ("refused", "failed")  # not a run where every row fails
    shown = window.last_message
    assert window.message_bar.isVisible()
    assert "OPENAI_API_KEY" in shown and "OPENAI_BASE_URL" in shown and "Ollama" in shown
    assert "Traceback" not in shown and set(window.model.status) == {NOT_RUN}


def test_closing_during_a_run_asks_and_reopening_offers_to_resume(qtbot, qloop, app_settings, window, tmp_path,
                                                                 fake_openai):
    sheet, pipeline = llm_sheet(tmp_path, fake_openai, rows=40, concurrency=2, prefix="question ")
    fake_openai.configure(latency=0.1)
    assert run(qloop, window.load_pipeline(pipeline))
    assert run(qloop, window.load_sheet(sheet))

    async def run_then_close():
        finished = next_signal(window.runFinished)
        window.act_run.trigger()
        await until(lambda: statuses(window).get(ev.DONE, 0) >= 6)
        closed = next_signal(window.closed)
        window.close()
        await finished
        await closed  # the run ended and the journal was closed before the window went

    run(qloop, run_then_close())
    assert window.questions[-1] == "Stop the run?"
    assert not window.isVisible() and window.session.journal is None and not window.session.running
    done_first = statuses(window)[ev.DONE]

    second = MainWindow(app_settings, journal_path=tmp_path / "journal.sqlite")
    qtbot.addWidget(second)
    second.ask = lambda title, text: True
    second.show()
    assert run(qloop, second.load_pipeline(pipeline))
    assert run(qloop, second.load_sheet(sheet))
    assert second.message_bar.isVisible() and "finished" in second.last_message
    resume = next(b for b in second.message_bar.findChildren(type(second.run_bar.run_button))
                  if b.text().startswith("Resume"))
    fake_openai.configure(latency=0.0)
    before = sum(fake_openai.stats.per_prompt.values())

    async def click_resume():
        finished = next_signal(second.runFinished)
        resume.click()
        await finished

    run(qloop, click_resume())
    assert statuses(second) == {ev.DONE: 40}
    asked = sum(fake_openai.stats.per_prompt.values()) - before
    assert asked <= 40 - done_first  # finished rows were not asked again


def test_pause_holds_new_rows_and_resume_finishes(qtbot, qloop, window, tmp_path, fake_openai):
    open_llm_sheet(qloop, window, tmp_path, fake_openai, rows=30, concurrency=3, latency=0.05)

    async def scenario():
        finished = next_signal(window.runFinished)
        window.act_run.trigger()
        await until(lambda: statuses(window).get(ev.DONE, 0) >= 3)
        qtbot.mouseClick(window.run_bar.pause_button, Qt.MouseButton.LeftButton)
        assert window.run_bar.pause_button.text() == "Resume"
        assert window.top_split.isEnabled()  # the pipeline stays editable: edits apply to the next run
        await until(lambda: window.session.engine.progress.running == 0)
        held = statuses(window)[ev.DONE]
        await asyncio.sleep(0.3)
        assert statuses(window)[ev.DONE] == held  # nothing new started while paused
        qtbot.mouseClick(window.run_bar.pause_button, Qt.MouseButton.LeftButton)
        await finished

    run(qloop, scenario())
    assert statuses(window) == {ev.DONE: 30}
    assert "30 done" in window.run_bar.stats.text()


def test_save_and_reopen_a_pipeline_round_trips(qtbot, qloop, window, tmp_path):
    assert run(qloop, window.load_sheet(EXAMPLES / "reviews.xlsx"))
    trim = palette_add(qtbot, window, "trim")
    choose(window.form_panel.form.fields["source"].combo, "review")
    window.doc.set_name(trim, "Tidy")
    path = tmp_path / "mine.json"
    assert window._save_to(path)
    assert "*" not in window.windowTitle() and "mine.json" in window.windowTitle()
    data = json.loads(path.read_text())
    assert data["steps"] == [{"type": "trim", "name": "Tidy", "source": "review"}]
    window.new_pipeline()
    assert window.doc.pipeline.steps == []
    assert run(qloop, window.load_pipeline(path))
    assert window.doc.pipeline.to_dict() == data


def test_settings_dialog_keeps_providers_prices_and_concurrency(qtbot, app_settings, tmp_path):
    from batchgrid.gui.settings import SettingsDialog

    dialog = SettingsDialog(app_settings, tmp_path)
    qtbot.addWidget(dialog)
    dialog._add_row({"name": "local", "preset": "ollama"})
    dialog.table.item(0, 3).setText("llama3.1")
    dialog.key_edit.setText("sk-secret-never-stored-in-a-file")
    dialog.table.setCurrentCell(0, 0)
    dialog.save_key()
    assert "not stored" in dialog.key_note.text()  # no keyring here: the user is told to use a variable
    dialog._add_price("my-model", 1.5, 3.0)
    dialog.concurrency.setValue(12)
    dialog.accept()
    assert app_settings.providers() == [{"name": "local", "preset": "ollama", "model": "llama3.1"}]
    assert app_settings.default_concurrency() == 12
    assert json.loads((tmp_path / "prices.json").read_text()) == {"my-model": {"input": 1.5, "output": 3.0}}
    assert app_settings.pipeline_profile("local") == {"preset": "ollama", "model": "llama3.1"}
    app_settings.q.sync()
    assert "sk-secret" not in Path(app_settings.q.fileName()).read_text()


def test_window_layout_is_restored(qtbot, app_settings, window):
    window.resize(800, 560)  # within the offscreen screen (restoreGeometry keeps windows on screen)
    window.main_split.setSizes([200, 500])
    save_layout(window)
    again = MainWindow(app_settings)
    qtbot.addWidget(again)
    assert again.size().height() == 560
    assert abs(again.main_split.sizes()[0] - window.main_split.sizes()[0]) <= 2  # pixel rounding


def test_standard_shortcuts(window):
    shortcuts = {a.text(): a.shortcut().toString() for a in
                 (window.act_open_sheet, window.act_save, window.act_export, window.act_run, window.act_stop,
                  window.act_undo, window.act_redo)}
    assert shortcuts == {"Open spreadsheet…": "Ctrl+O", "Save pipeline": "Ctrl+S", "Export results…": "Ctrl+E",
                         "Run": "F5", "Stop": "Esc", "Undo": "Ctrl+Z", "Redo": "Ctrl+Shift+Z"}


def test_batchgrid_run_goes_to_the_cli_without_importing_qt(tmp_path):
    sheet = tmp_path / "s.csv"
    sheet.write_text("a\n x \n")
    pipeline = tmp_path / "p.json"
    pipeline.write_text(json.dumps({"version": 1, "steps": [{"type": "trim", "source": "a", "output": "b"}]}))
    out = tmp_path / "out.csv"
    code = ("import sys; from batchgrid.gui.app import main; rc = main(['run', sys.argv[1], sys.argv[2], '-o', "
            "sys.argv[3], '--journal', sys.argv[4], '--quiet']); "
            "assert not any(m.startswith(('PySide6', 'qasync', 'shiboken6')) for m in sys.modules), 'Qt imported'; "
            "sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", code, str(pipeline), str(sheet), str(out), str(tmp_path / "j.db")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert pd.read_csv(out)["b"].tolist() == ["x"]
    missing = subprocess.run([sys.executable, "-c", "import sys; from batchgrid.gui.app import main; "
                              "sys.exit(main(['no-such-file.xlsx']))"], capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "no-such-file.xlsx: no such file" in missing.stderr


def test_batchgrid_example_opens_the_window_on_the_offline_example_and_quits_cleanly(tmp_path):
    """`batchgrid --example` through main(): the qasync loop, the example, a clean exit."""
    code = """
import sys
from PySide6.QtCore import QTimer
import batchgrid.gui.main_window as mw
show = mw.MainWindow.show
def show_and_check(self):
    show(self)
    def loaded():
        print("ROWS", len(self.rows), "STEPS", len(self.doc.pipeline.steps), flush=True)
        self.ask = lambda title, text: True
        QTimer.singleShot(0, self.close)  # closing the last window ends the app
    self.sheetLoaded.connect(loaded)
mw.MainWindow.show = show_and_check
from batchgrid.gui.app import main
sys.exit(main(["--example"]))
"""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "HOME": str(tmp_path),
           "XDG_CONFIG_HOME": str(tmp_path / "config"), "XDG_DATA_HOME": str(tmp_path / "data")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=90, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "ROWS 240 STEPS 8" in done.stdout
    assert "Traceback" not in done.stderr


def test_progress_line_says_counts_speed_eta_tokens_cost_and_the_projected_cost():
    from batchgrid.core.run.engine import Progress
    from batchgrid.gui.run_bar import progress_text

    p = Progress(total=200, selected=100, done=8, failed=2, running=4, clock_start=10.0, clock_end=12.0,
                 tokens_in=900, tokens_out=300, cost=0.25)
    text = progress_text(p)
    assert text.startswith("8 done · 2 failed · 4 in flight · 86 queued · 5.0 rows/s · ETA 18 s")
    assert "1,200 tokens" in text and "$0.2500" in text and "≈ $2.5000 projected" in text
    assert "paused" in progress_text(p, paused=True)


def test_a_run_that_pauses_itself_says_why_and_offers_resume(qloop, window, tmp_path, fake_openai):
    open_llm_sheet(qloop, window, tmp_path, fake_openai, rows=12, concurrency=2, latency=0.05)

    async def scenario():
        finished = next_signal(window.runFinished)
        shown = next_signal(window.messageShown)
        window.act_run.trigger()
        await until(lambda: statuses(window).get(ev.DONE, 0) >= 2)
        window.session.engine.pause("the budget of $0.01 is spent")  # what core's budget does
        (text,) = await shown
        assert text.startswith("Paused: the budget of $0.01 is spent.")
        resume = next(b for b in window.message_bar.findChildren(type(window.run_bar.run_button))
                      if b.text() == "Resume")
        resume.click()
        await finished

    run(qloop, scenario())
    assert statuses(window) == {ev.DONE: 12}


class _CyclicListener:
    """Stands for what a run leaves in reference cycles (SDK clients, futures, exceptions with
    their frames): freed only by the cycle collector, never by reference counts."""

    def __init__(self):
        self.me = self

    def __call__(self, event):
        pass


def test_running_again_on_the_same_sheet_lets_the_last_run_go(qloop, window, tmp_path):
    """The window froze each run's survivors out of the collector's reach (gc.freeze) and let
    them go only when another sheet was opened: every run again on one sheet leaked the last."""
    import gc
    import weakref

    sheet = tmp_path / "n.csv"
    sheet.write_text("n\n" + "\n".join(str(i) for i in range(20)) + "\n")
    pipeline = tmp_path / "p.json"
    pipeline.write_text(json.dumps({"version": 1, "steps": [{"type": "trim", "source": "n", "output": "t"}]}))
    assert run(qloop, window.load_pipeline(pipeline))
    assert run(qloop, window.load_sheet(sheet))
    left_behind = []

    async def one_run():
        finished = next_signal(window.runFinished)
        assert await window.begin_run("all")
        cyclic = _CyclicListener()
        window.session.engine.subscribe(cyclic)  # reachable from this run only
        left_behind.append(weakref.ref(cyclic))
        del cyclic
        await finished

    run(qloop, one_run())
    run(qloop, one_run())
    gc.collect()
    assert left_behind[0]() is None  # the first run's garbage went once the second run started


def test_the_pipeline_can_be_edited_during_a_run_and_the_edits_reach_the_next_run(qtbot, qloop, window, tmp_path,
                                                                                  fake_openai):
    open_llm_sheet(qloop, window, tmp_path, fake_openai, rows=30, concurrency=2, latency=0.05)

    async def scenario():
        finished = next_signal(window.runFinished)
        window.act_run.trigger()
        await until(lambda: statuses(window).get(ev.DONE, 0) >= 3)
        # mid-run, as a user would: a new step from the palette, and the prompt changed
        assert window.top_split.isEnabled()
        case = palette_add(qtbot, window, "change_case")
        window.doc.set_param(case, "source", "q")
        window.doc.set_param(window.doc.pipeline.steps[0], "prompt", "Shout: {q}")
        assert window.run_bar.blocker.text().startswith("✎ Edited")
        assert "q_upper" not in window.model.headers  # the run's table keeps the run's columns
        return await finished

    assert run(qloop, scenario())[0] == "finished"
    assert statuses(window) == {ev.DONE: 30}
    answers = column(window, "a")
    assert all(not a.startswith("echo: Shout:") for a in answers)  # every row ran the prompt as it was
    assert "q_upper" in window.model.headers and window.run_bar.blocker.text() == ""

    async def again():
        finished = next_signal(window.runFinished)
        window.act_run.trigger()
        return await finished

    assert run(qloop, again())[0] == "finished"
    assert column(window, "q_upper")[:2] == ["Q0", "Q1"]
