"""Settings shows what is kept on disk (the response cache, the run journal) with a Clear button
each; the sizes are read and the files cleared by the session, off the GUI thread."""

from __future__ import annotations

import sqlite3

from qt_async import next_signal, run

from batchgrid.core.providers.cache import ResponseCache
from batchgrid.core.run import events as ev
from batchgrid.core.run.journal import Journal
from batchgrid.gui.inspector import RowInspector
from batchgrid.gui.settings import SettingsDialog, human_size


def test_sizes_on_disk_and_clear_buttons(window, qloop, app_settings, tmp_path):
    cache = ResponseCache(tmp_path / "cache.sqlite")
    for i in range(200):
        cache.put(f"k{i}", {"text": "an answer " * 50})
    cache.close()
    journal = Journal(tmp_path / "journal.sqlite")
    run_id = journal.new_run("job", "p", None, None, 500)
    journal.write_rows(run_id, [("h", ev.RowResult(i, ev.DONE, {"o": "x" * 200})) for i in range(500)])
    journal.close()

    async def scenario():
        dialog = SettingsDialog(app_settings, tmp_path, window, session=window.session)
        shown = next_signal(dialog.storageShown)
        await shown
        cache_text, journal_text = dialog.cache_size.text(), dialog.journal_size.text()
        assert cache_text.endswith("KB") and journal_text.endswith("KB")
        assert dialog.cache_size.toolTip() == str(tmp_path / "cache.sqlite")

        shown = next_signal(dialog.storageShown)
        dialog.clear_cache_button.click()
        await shown
        again = ResponseCache(tmp_path / "cache.sqlite")
        assert again.get("k0") is None and again.size == 0
        again.close()
        assert dialog.cache_size.text() != cache_text and dialog.journal_size.text() == journal_text

        shown = next_signal(dialog.storageShown)
        dialog.clear_journal_button.click()
        await shown
        with sqlite3.connect(tmp_path / "journal.sqlite") as con:
            assert con.execute("SELECT COUNT(*) FROM rows").fetchone()[0] == 0
            assert con.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0
        assert dialog.journal_size.text() != journal_text
        assert dialog.error.isHidden()
        dialog.close()

    run(qloop, scenario())


def test_human_sizes():
    assert [human_size(n) for n in (0, 1023, 1536, 5 * 1024 ** 2, 3 * 1024 ** 3)] == \
        ["0 bytes", "1,023 bytes", "1.5 KB", "5.0 MB", "3.0 GB"]


def test_a_done_row_whose_trace_was_not_kept_says_so(qtbot):
    widget = RowInspector()
    qtbot.addWidget(widget)
    widget.show_row(500, {"text": "a"}, ev.RowResult(500, ev.DONE, {"o": "b"}), ev.DONE, [])
    assert "Trace not kept for this row: traces are kept for failed rows and a sample of done rows" \
        in widget.toPlainText()
