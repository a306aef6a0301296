"""Run settings ▸ Run on: this computer or a Dask cluster, from the window.

The choice is this computer's (the app's settings, never the pipeline file, which people share); an
address is checked as it is typed; a run on `local:1` fills the table, the journal and an export as
a run here does; no scheduler at the address, or no Dask, is one line and the window goes on. One
cluster start for the file (the `local:1` run: a few seconds, as in tests/test_cluster.py)."""

from __future__ import annotations

import csv
import json
import sqlite3
import sys

import pytest
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication

from batchgrid.core.run import cluster as dask_run
from batchgrid.core.run import events as ev
from batchgrid.gui.settings import AppSettings

from qt_async import next_signal, run, run_to_end
from test_window import statuses

ROWS = 12


def open_text_pipeline(qloop, window, tmp_path) -> None:
    """A sheet of padded text and a pipeline of two text steps (no model, no trust), opened in the window."""
    sheet = tmp_path / "rows.csv"
    sheet.write_text("text\n" + "\n".join(f"  row  {i} " for i in range(ROWS)) + "\n")
    pipeline = tmp_path / "text.batchgrid.json"
    pipeline.write_text(json.dumps({"version": 1, "steps": [
        {"type": "trim", "source": "text", "output": "trimmed"},
        {"type": "change_case", "source": "trimmed", "case": "upper", "output": "upper"}]}))
    assert run(qloop, window.load_pipeline(pipeline))
    assert run(qloop, window.load_sheet(sheet))


def run_on_field(window):
    window.show_run_settings()
    field = window.form_panel.settings_form.run_on
    assert field is not None
    return field


def table(window) -> list[list]:
    """The results table's cells, but for each row's latency (the only cell that may differ between runs)."""
    model = window.model
    shown = [c for c, name in enumerate(model.headers) if "latency" not in name]
    return [[model.raw_value(r, c) for c in shown] for r in range(len(window.rows))]


async def export(window, path) -> list[dict[str, str]]:
    window.ask_save_path = lambda: str(path)
    done = next_signal(window.exportFinished)
    window.act_export.trigger()
    assert await done == (str(path),)
    with path.open(newline="", encoding="utf-8-sig") as f:
        return [{k: v for k, v in row.items() if "latency" not in k} for row in csv.DictReader(f)]


def test_run_on_is_kept_in_the_apps_settings_never_in_the_pipeline_file(qloop, window, tmp_path):
    open_text_pipeline(qloop, window, tmp_path)
    field = run_on_field(window)
    assert field.choice.currentText() == "This computer"
    assert field.address.text() == "local:2" and field.address.placeholderText() == "local:2 or tcp://scheduler:8786"
    assert field.address.isHidden() and window.settings.cluster() is None

    field.choice.setCurrentIndex(field.choice.findText("Dask cluster"))
    assert not field.address.isHidden() and not field.help.isHidden()
    assert "partitions" in field.help.text() and "keys" in field.help.text()
    field.address.setText("tcp://scheduler:8786")
    assert window.settings.cluster() == "tcp://scheduler:8786"

    assert window.doc.undo_stack.isClean()  # not an edit of the pipeline
    assert window.save_pipeline()
    saved = window.doc.pipeline.path.read_text()
    assert "scheduler" not in saved and "cluster" not in saved.lower()

    window.settings.q.sync()  # the next start of the app reads it back
    again = AppSettings(QSettings(window.settings.q.fileName(), QSettings.Format.IniFormat), use_keyring=False)
    assert again.runs_on_cluster() and again.cluster() == "tcp://scheduler:8786"
    window.new_pipeline()  # another pipeline: the run settings are built again, Run on as it was
    field = run_on_field(window)
    assert (field.choice.currentText(), field.address.text()) == ("Dask cluster", "tcp://scheduler:8786")


def test_an_address_is_checked_as_it_is_typed(qloop, window, tmp_path):
    open_text_pipeline(qloop, window, tmp_path)
    field = run_on_field(window)
    field.choice.setCurrentIndex(field.choice.findText("Dask cluster"))
    bad = {
        "": "give a scheduler's address (tcp://scheduler:8786), or local:N for N worker processes on this computer",
        "local:0": "local:N needs at least 1 worker",
        "local:two": "local:two: local:N takes a number of worker processes (local:2)",
        "tcp://scheduler": "tcp://scheduler: give the scheduler's host and port (tcp://scheduler:8786)",
        "scheduler": "scheduler: give the scheduler's host and port (tcp://scheduler:8786)",
        "http://scheduler:8786": "http://scheduler:8786: a scheduler's address starts with tcp:// or tls:// "
                                 "(or is host:port)",
        "scheduler:99999": "scheduler:99999: the port is a number from 1 to 65535",
    }
    for text, problem in bad.items():
        field.address.setText(text)
        assert field.problem.text() == problem
        assert not field.problem.isHidden() and field.address.property("problem")
    for text in ("local", "local:2", " tcp://10.0.0.5:8786 ", "tls://scheduler.example.org:8786", "scheduler:8786",
                 "[::1]:8786"):
        field.address.setText(text)
        assert field.problem.isHidden() and not field.address.property("problem"), text
    field.address.setText("local:0")
    field.choice.setCurrentIndex(field.choice.findText("This computer"))
    assert field.problem.isHidden()  # runs go nowhere else: nothing to check


def test_without_dask_the_caption_and_the_start_say_how_to_install_it(qloop, window, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    open_text_pipeline(qloop, window, tmp_path)
    field = run_on_field(window)
    field.choice.setCurrentIndex(field.choice.findText("Dask cluster"))  # still offered
    assert field.help.text().startswith(dask_run.INSTALL)
    assert not run(qloop, window.begin_run("all"))
    assert window.last_message == f"Cannot run: {dask_run.INSTALL}"
    assert not window.runner.running and window.act_run.isEnabled()


def test_a_run_on_a_local_cluster_fills_the_table_as_a_run_here(qloop, window, tmp_path):
    pytest.importorskip("distributed")
    open_text_pipeline(qloop, window, tmp_path)
    assert run(qloop, run_to_end(window)) == ("finished", "")
    here = table(window)
    assert statuses(window) == {ev.DONE: ROWS}
    exported_here = run(qloop, export(window, tmp_path / "here.csv"))

    field = run_on_field(window)
    field.choice.setCurrentIndex(field.choice.findText("Dask cluster"))
    field.address.setText("local:1")

    async def on_the_cluster() -> tuple[str, str]:
        finished = next_signal(window.runFinished)
        assert await window.begin_run("all")  # the cluster started: the rows go to its worker
        assert window.run_bar.stats.text().startswith("On Dask cluster local:1: ")
        assert window.status_text.text() == f"Running {ROWS} rows on Dask cluster local:1…"
        return await finished

    assert run(qloop, on_the_cluster(), timeout=150) == ("finished", "")
    engine = window.session.engine
    assert isinstance(engine, dask_run.ClusterEngine) and engine.partitions_run >= 1
    assert table(window) == here
    assert window.run_bar.stats.text().startswith(f"On Dask cluster local:1: {ROWS} done")
    with sqlite3.connect(window.session.journal_path) as db:  # the cluster's rows are journalled as here
        journalled = [n for (n,) in db.execute("SELECT row_number FROM rows WHERE run_id = ? ORDER BY row_number",
                                               (window.session.job.run_id,))]
    assert journalled == list(range(ROWS))
    assert run(qloop, export(window, tmp_path / "cluster.csv")) == exported_here
    assert exported_here[3]["upper"] == "ROW 3"


def test_no_scheduler_at_the_address_is_one_line_and_nothing_is_lost(qloop, window, tmp_path):
    pytest.importorskip("distributed")
    open_text_pipeline(qloop, window, tmp_path)
    assert run(qloop, run_to_end(window)) == ("finished", "")
    here = table(window)
    field = run_on_field(window)
    field.choice.setCurrentIndex(field.choice.findText("Dask cluster"))

    field.address.setText("local:0")  # said before anything is started or asked
    assert not run(qloop, window.begin_run("all"))
    assert window.last_message == "Cannot run: local:N needs at least 1 worker"

    field.address.setText("tcp://127.0.0.1:1")  # nothing listens there
    stop_offered = []  # while the run is being set up (connecting), Stop is offered already
    window.runner.starting.connect(lambda: stop_offered.append(window.act_stop.isEnabled()))
    assert not run(qloop, window.begin_run("all"))
    assert stop_offered == [True] and not window.act_stop.isEnabled()
    message = window.last_message
    assert message.startswith("Cannot run: no Dask scheduler answers at tcp://127.0.0.1:1: ") and "\n" not in message
    assert window.status_text.text() == message
    assert not window.runner.running and window.act_run.isEnabled()
    assert table(window) == here  # the last run's results stay

    field.choice.setCurrentIndex(field.choice.findText("This computer"))
    assert run(qloop, run_to_end(window)) == ("finished", "")
    assert not window.run_bar.stats.text().startswith("On ")
    assert table(window) == here


def test_choosing_the_cluster_makes_room_for_its_caption(qtbot, window):
    """Found in a real window at 1,024 x 700: the caption shown on choosing Dask cluster was drawn over
    the row above it (the form kept the row's old height)."""
    window.resize(1024, 700)
    window.show()
    field = run_on_field(window)
    field.choice.setCurrentIndex(field.choice.findText("This computer"))
    QApplication.processEvents()
    field.choice.setCurrentIndex(field.choice.findText("Dask cluster"))
    QApplication.processEvents()
    QApplication.processEvents()
    help_label = field.help
    assert help_label.isVisible()
    assert help_label.height() >= help_label.heightForWidth(help_label.width())  # not squeezed
    assert help_label.geometry().top() >= field.address.geometry().bottom()  # below the address, not on it
    assert field.geometry().bottom() < window.form_panel.settings_form.fields["max_attempts"].parentWidget().geometry().top()
