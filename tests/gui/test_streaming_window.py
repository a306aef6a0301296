"""A streaming answer grows in its cell in the real window, also when the server ends its SSE body
by closing the connection (llama.cpp-style: "Connection: close", no length, no chunks)."""

from __future__ import annotations

import itertools
import json

import pytest
from PySide6.QtCore import Qt

from batchgrid.core.run import events as ev

from qt_async import next_signal, run

WORDS = "one two three four five six seven eight"


@pytest.mark.parametrize("close", [True, False], ids=["ended-by-close", "chunked"])
def test_a_streamed_answer_grows_in_its_cell_before_the_row_is_done(qloop, window, tmp_path, fake_openai, close):
    sheet = tmp_path / "rows.csv"
    sheet.write_text(f"q\n{WORDS}\n")
    pipeline = tmp_path / "stream.json"
    pipeline.write_text(json.dumps({
        "version": 1, "settings": {"use_cache": False},
        "providers": {"test": {"preset": "vllm", "base_url": fake_openai.base_url, "model": "m"}},
        "steps": [{"type": "llm", "prompt": "{q}", "output": "a", "stream": True}]}))
    fake_openai.configure(stream_close=close, stream_delay=0.1)
    assert run(qloop, window.load_pipeline(pipeline))
    assert run(qloop, window.load_sheet(sheet))
    model = window.model
    cell = model.index(0, model.headers.index("a"))
    seen: list[str] = []  # the cell's text each time the table repainted it before the row was done

    def repainted(top, bottom, *_roles) -> None:
        if top.row() <= 0 <= bottom.row() and model.status[0] != ev.DONE:
            text = model.data(cell, Qt.ItemDataRole.DisplayRole)
            if text and (not seen or seen[-1] != text):
                seen.append(text)

    model.dataChanged.connect(repainted)

    async def go():
        finished = next_signal(window.runFinished)
        window.act_run.trigger()
        return await finished

    assert run(qloop, go())[0] == "finished"
    final = f"echo: {WORDS}"
    assert model.data(cell, Qt.ItemDataRole.DisplayRole) == final
    assert len(seen) >= 3, seen  # pieces, not one answer at the end
    assert all(final.startswith(t) for t in seen)
    assert all(len(a) < len(b) for a, b in itertools.pairwise(seen))
