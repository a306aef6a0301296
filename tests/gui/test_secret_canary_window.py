"""The canary through the window: a key used in a header, a URL and as a provider key is in no
message the window shows (message bar, status line, run bar, table, inspector), in no file the run
writes, and not in the window's settings file."""

from __future__ import annotations

import json

import pandas as pd
from batchgrid.core.run import events as ev

from qt_async import run, run_to_end
from test_secret_canary import CANARY, CANARY_ENV, ROWS, canary_pipeline, files_holding


def test_the_window_shows_and_writes_no_canary(qtbot, qloop, window, app_settings, fake_openai, monkeypatch,
                                              tmp_path):
    monkeypatch.setenv(CANARY_ENV, CANARY)
    fake_openai.configure(api_key=CANARY, script={"provider-fails": [400]})
    sheet = tmp_path / "rows.csv"
    pd.DataFrame(ROWS).to_csv(sheet, index=False)
    pipeline = tmp_path / "canary.batchgrid.json"
    pipeline.write_text(json.dumps(canary_pipeline(fake_openai)))
    shown: list[str] = []
    window.messageShown.connect(shown.append)
    assert run(qloop, window.load_pipeline(pipeline))
    assert run(qloop, window.load_sheet(sheet))


    assert run(qloop, run_to_end(window))[0] == "finished"
    assert window.model.status.count(ev.ERROR) == 4
    assert run(qloop, window.export_to(tmp_path / "out.xlsx"))

    for row in range(len(ROWS)):  # what the inspector shows for each row, and each cell's tooltip
        window.view.setCurrentIndex(window.model.index(row, 0))
        shown.append(window.inspector.toPlainText())
        for column in range(window.model.columnCount()):
            shown.append(str(window.model.data(window.model.index(row, column))))
            shown.append(str(window.model.tooltip(row, column)))
    shown += [window.status_text.text(), window.run_bar.stats.text(), window.windowTitle(), window.last_message]
    assert [text for text in shown if CANARY in text] == []
    run(qloop, window.session.close())
    app_settings.q.sync()
    assert files_holding(tmp_path, CANARY) == []  # journal, cache, export, and the settings file
