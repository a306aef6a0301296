"""The window and trust (issue 9): asked once per pipeline file, with what it wants listed;
a pipeline the user builds is theirs; Settings refuse a key where a variable's name goes."""

from __future__ import annotations

import json
import os
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLineEdit

from batchgrid.core.run import events as ev
from batchgrid.core.run.results import NOT_RUN
from batchgrid.gui.settings import SettingsDialog

from qt_async import run, run_to_end
from test_pipeline_editor import palette_add

KEY = "sk-proj-Zx81Qa77Lm42Pw09Ty55Rb13"


def column(window, name: str) -> list:
    c = window.model.headers.index(name)
    return [window.model.raw_value(i, c) for i in range(len(window.rows))]


def answering(window, answer: bool) -> list:
    """Answer every question with `answer`; the (title, text) asked are returned as they come."""
    asked: list = []
    window.ask = lambda title, text: (asked.append((title, text)), answer)[1]
    return asked


def test_a_loaded_pipeline_is_run_only_once_trusted_and_asked_once(qloop, window, tmp_path, monkeypatch):
    monkeypatch.setenv("SCORE_TOKEN", "t0k")
    (tmp_path / "prices.csv").write_text("sku,price\nA,1\nB,2\n")
    folder = tmp_path / "shared"
    folder.mkdir()
    pipeline = folder / "stranger.json"
    pipeline.write_text(json.dumps({"version": 1, "steps": [
        {"type": "template", "template": "{sku}-${SCORE_TOKEN}", "output": "tagged"},
        {"type": "lookup", "file": "../prices.csv", "file_key": "sku", "key": "sku", "columns": ["price"]}]}))
    sheet = tmp_path / "s.csv"
    sheet.write_text("sku\nA\nB\n")
    assert run(qloop, window.load_pipeline(pipeline))
    assert run(qloop, window.load_sheet(sheet))

    asked = answering(window, False)
    assert run(qloop, window.begin_run("all")) is False
    (title, text), = asked
    assert title == "Trust this pipeline?"
    assert text.startswith("stranger.json wants to:")
    assert "• uses $SCORE_TOKEN in a template (step 1, template)" in text.splitlines()
    assert f"• reads {os.path.realpath(tmp_path / 'prices.csv')} (step 2, file)" in text.splitlines()
    assert "not trusted" in window.last_message and set(window.model.status) == {NOT_RUN}

    asked = answering(window, True)


    run(qloop, run_to_end(window))
    assert [t for t, _ in asked] == ["Trust this pipeline?"]
    assert column(window, "price") == [1, 2] and set(window.model.status) == {ev.DONE}
    run(qloop, run_to_end(window))  # once per pipeline file: the second run asks nothing
    assert len(asked) == 1
    assert run(qloop, window.load_pipeline(pipeline))  # nor does the same file opened again
    run(qloop, run_to_end(window))
    assert len(asked) == 1


def test_a_pipeline_the_user_builds_is_theirs(qtbot, qloop, window, tmp_path):
    sheet = tmp_path / "n.csv"
    sheet.write_text("n\n1\n2\n")
    assert run(qloop, window.load_sheet(sheet))
    step = palette_add(qtbot, window, "python")
    window.doc.set_param(step, "code", "n * 10")
    window.doc.set_param(step, "output", "m")
    asked = answering(window, False)


    run(qloop, run_to_end(window))
    assert asked == [] and column(window, "m") == [10, 20]


def test_a_pipeline_that_wants_nothing_asks_nothing(qloop, window, tmp_path):
    pipeline = tmp_path / "plain.json"
    pipeline.write_text(json.dumps({"version": 1, "steps": [{"type": "trim", "source": "a", "output": "b"}]}))
    sheet = tmp_path / "s.csv"
    sheet.write_text("a\n x \n")
    assert run(qloop, window.load_pipeline(pipeline))
    assert run(qloop, window.load_sheet(sheet))
    asked = answering(window, False)


    run(qloop, run_to_end(window))
    assert asked == [] and column(window, "b") == ["x"]


# ---- Settings: a key is never kept where a variable's name goes ---------------------------------
def paste(qtbot, table, row: int, col: int, text: str) -> None:
    """Paste into a cell as a user does: open its editor, replace its text as a paste does (the
    offscreen platform has no clipboard), press Enter."""
    table.setCurrentCell(row, col)
    table.editItem(table.item(row, col))
    (editor,) = [e for e in table.viewport().findChildren(QLineEdit) if e.isVisible()]  # not a closed one
    editor.selectAll()
    editor.insert(text)
    with qtbot.waitSignal(table.itemChanged):  # the view commits the edit on its next turn
        qtbot.keyClick(editor, Qt.Key.Key_Return)


def test_settings_refuse_a_key_pasted_as_the_key_variable(qtbot, app_settings, tmp_path):
    dialog = SettingsDialog(app_settings, tmp_path)
    qtbot.addWidget(dialog)
    dialog.show()
    dialog._add_row({"name": "work", "preset": "openai"})
    key_column = 4
    assert dialog.table.horizontalHeaderItem(key_column).text() == "Key variable"
    paste(qtbot, dialog.table, 0, key_column, KEY)
    assert dialog.table.item(0, key_column).text() == ""  # refused at once, not kept
    assert dialog.error.isVisible()
    message = dialog.error.text()
    assert "looks like an API key" in message and "OPENAI_API_KEY" in message and "\n" not in message
    assert "environment variable" in message  # where the key goes (no keyring in tests)

    paste(qtbot, dialog.table, 0, key_column, "WORK_API_KEY")  # a variable's name is what belongs here
    assert dialog.table.item(0, key_column).text() == "WORK_API_KEY" and not dialog.error.isVisible()
    dialog.accept()
    assert app_settings.providers() == [{"name": "work", "preset": "openai", "api_key_env": "WORK_API_KEY"}]
    app_settings.q.sync()
    assert KEY not in Path(app_settings.q.fileName()).read_text()


def test_settings_never_save_a_key_as_a_variable_name(app_settings):
    app_settings.set_providers([{"name": "work", "api_key_env": KEY}, {"name": "hex", "api_key_env":
                                "9f8e7d6c5b4a39281706f5e4d3c2b1a0"}, {"name": "ok", "api_key_env": "MY_KEY"}])
    assert app_settings.providers() == [{"name": "work"}, {"name": "hex"}, {"name": "ok", "api_key_env": "MY_KEY"}]
    app_settings.q.sync()
    text = Path(app_settings.q.fileName()).read_text()
    assert KEY not in text and "9f8e7d6c5b4a39281706f5e4d3c2b1a0" not in text
