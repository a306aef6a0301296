"""Export what is shown (issue 11): with a sort or a status filter on the results table, File
offers "Export rows as shown (sorted/filtered)", which writes those rows in that order."""

from __future__ import annotations

import json

import openpyxl
from PySide6.QtCore import Qt

from batchgrid.core.run import events as ev
from qt_async import next_signal, run, run_to_end


def test_export_rows_as_shown_follows_the_sort_and_the_filter(qloop, window, tmp_path):
    sheet = tmp_path / "people.csv"
    sheet.write_text("name,score\nAnn,3\nBob,9\nCid,1\nDee,7\nEve,5\n")
    pipeline = tmp_path / "p.json"
    pipeline.write_text(json.dumps({"version": 1, "steps": [{"type": "change_case", "source": "name",
                                                             "case": "upper"}]}))
    assert run(qloop, window.load_pipeline(pipeline))
    assert run(qloop, window.load_sheet(sheet))
    assert run(qloop, run_to_end(window))[0] == "finished"
    menu = [a.text() for a in window.menuBar().actions()[0].menu().actions()]
    assert "Export rows as shown (sorted/filtered)…" in menu
    assert not window.act_export_shown.isEnabled()  # nothing sorted or filtered: one export is enough

    window.view.sortByColumn(window.model.headers.index("score"), Qt.SortOrder.DescendingOrder)
    assert window.act_export_shown.isEnabled()
    shown = [window.model.raw_value(window.model.source_row(r), 0) for r in range(window.model.rowCount())]
    assert shown == ["Bob", "Dee", "Eve", "Ann", "Cid"]

    async def export(action, path):
        window.ask_save_path = lambda: str(path)
        exported = next_signal(window.exportFinished)
        action.trigger()
        return (await exported)[0]

    sorted_path, all_path = tmp_path / "sorted.xlsx", tmp_path / "all.xlsx"
    assert run(qloop, export(window.act_export_shown, sorted_path)) == str(sorted_path)
    assert window.last_message.startswith("Exported 5 rows as shown to ")
    assert run(qloop, export(window.act_export, all_path)) == str(all_path)
    names = lambda path: [r[0] for r in openpyxl.load_workbook(path)["Results"].iter_rows(min_row=2, values_only=True)]
    assert names(sorted_path) == ["Bob", "Dee", "Eve", "Ann", "Cid"]
    assert names(all_path) == ["Ann", "Bob", "Cid", "Dee", "Eve"]  # plain export: input order

    window.model.set_status_filter(ev.ERROR)  # a filter that shows no row: nothing to export
    assert window.model.rowCount() == 0 and window.act_export_shown.isEnabled()
    window.model.set_status_filter(ev.DONE)
    filtered_path = tmp_path / "filtered.csv"
    assert run(qloop, export(window.act_export_shown, filtered_path)) == str(filtered_path)
    assert filtered_path.read_text(encoding="utf-8-sig").splitlines()[1].startswith("Bob,9,")
