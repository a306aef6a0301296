"""The results model: Qt's model tester, coalesced updates, sorting and filtering on the data, copy."""

from __future__ import annotations

import asyncio

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHeaderView

from batchgrid.core.run import events as ev
from batchgrid.core.table import Table
from batchgrid.gui.results_model import RawRole, ResultsModel, sort_key, tsv_cell
from batchgrid.gui.results_view import ResultsView


def make_rows(n: int) -> Table:
    return Table(["id", "review", "score"],
                     [list(range(n)), [f"text {i}" if i % 7 else None for i in range(n)],
                      [float(n - i) if i % 5 else None for i in range(n)]])


def done(i: int, **outputs) -> ev.RowDone:
    return ev.RowDone(i, ev.RowResult(i, ev.DONE, outputs, latency=0.01))


def failed(i: int, message: str) -> ev.RowFailed:
    return ev.RowFailed(i, ev.RowResult(i, ev.ERROR, {}, message, "StepError", "1. Ask the model", 3, 0.2))


def cell(model: ResultsModel, view_row: int, header: str, role=Qt.ItemDataRole.DisplayRole):
    return model.data(model.index(view_row, model.headers.index(header)), role)


def test_model_passes_qt_model_tester_through_a_run_sort_and_filter(qtmodeltester):
    model = ResultsModel()
    qtmodeltester.check(model)  # empty
    model.set_table(make_rows(50), ["summary"])
    qtmodeltester.check(model)
    model.run_starting([None] * 50, range(50))
    for i in range(0, 50, 2):
        model.on_event(ev.RowStarted(i))
        model.on_event(done(i, summary=f"s{i}"))
    model.on_event(failed(3, "the model said no"))
    model.on_event(ev.RowPartial(5, "summary", "stream"))
    model.flush()
    qtmodeltester.check(model)
    model.sort(model.headers.index("score"), Qt.SortOrder.DescendingOrder)
    qtmodeltester.check(model)
    model.set_status_filter(ev.ERROR)
    qtmodeltester.check(model)
    assert model.rowCount() == 1


def test_events_are_coalesced_into_few_data_changed_signals_and_never_a_reset(qtbot):
    model = ResultsModel()
    model.set_table(make_rows(1000), ["out"])
    changed, resets = [], []
    model.dataChanged.connect(lambda a, b, *_: changed.append((a.row(), b.row(), a.column(), b.column())))
    model.modelReset.connect(lambda: resets.append(1))
    for i in range(1000):
        model.on_event(ev.RowStarted(i))
        if i not in (500, 501):
            model.on_event(done(i, out=i * 2))
    assert changed == []  # nothing until the timer fires
    with qtbot.waitSignal(model.dataChanged, timeout=2000):
        pass
    # rows 0..999 are all dirty: one contiguous run, whole width
    assert changed == [(0, 999, 0, model.columnCount() - 1)]
    changed.clear()
    model.on_event(done(10, out=1))
    model.on_event(done(11, out=1))
    model.on_event(done(40, out=1))
    model.flush()
    assert [(a, b) for a, b, _, _ in changed] == [(10, 11), (40, 40)]
    assert resets == []
    assert cell(model, 12, "out") == "24"
    assert cell(model, 500, "status") == ev.RUNNING
    assert cell(model, 12, "status") == ev.DONE


def test_error_rows_are_marked_and_their_tooltip_has_the_whole_message():
    model = ResultsModel()
    model.set_table(make_rows(10), ["answer"])
    long_message = "the server answered 400: " + "context length exceeded " * 20
    model.on_event(failed(4, long_message))
    model.flush()
    assert cell(model, 4, "status") == ev.ERROR
    assert cell(model, 4, "error").startswith("the server answered 400")
    tip = cell(model, 4, "review", Qt.ItemDataRole.ToolTipRole)
    assert "1. Ask the model" in tip and long_message in tip
    error_background = cell(model, 4, "id", Qt.ItemDataRole.BackgroundRole)
    assert error_background is not None and error_background.color().red() > 200
    assert cell(model, 3, "id", Qt.ItemDataRole.BackgroundRole) is None
    assert not cell(model, 4, "status", Qt.ItemDataRole.DecorationRole).isNull()


def test_streamed_text_grows_in_its_cell_until_the_row_finishes():
    model = ResultsModel()
    model.set_table(make_rows(3), ["answer"])
    model.on_event(ev.RowStarted(1))
    model.on_event(ev.RowPartial(1, "answer", "Once"))
    model.flush()
    assert cell(model, 1, "answer") == "Once"
    model.on_event(ev.RowPartial(1, "answer", "Once upon a time"))
    model.flush()
    assert cell(model, 1, "answer") == "Once upon a time"
    model.on_event(done(1, answer="Once upon a time."))
    model.flush()
    assert cell(model, 1, "answer") == "Once upon a time."
    assert model.partial == {}


def test_retrying_rows_say_when_they_retry():
    model = ResultsModel()
    model.set_table(make_rows(3), ["answer"])
    model.on_event(ev.RowRetrying(2, "1. Ask", 2, 4, 3.0, "429 too many requests"))
    model.flush()
    assert cell(model, 2, "status") == ev.RETRYING
    assert cell(model, 2, "error") == "retrying (2/4) in 3 s: 429 too many requests"


def test_sorting_works_on_the_data_with_blanks_last_either_way_and_mixed_types():
    model = ResultsModel()
    rows = Table(["v"], [[3, None, "b", 1.5, "A", 10]])
    model.set_table(rows, [])
    model.sort(0, Qt.SortOrder.AscendingOrder)
    assert [model.data(model.index(r, 0), RawRole) for r in range(6)] == [1.5, 3, 10, "A", "b", None]
    # the vertical header keeps each row's number in the sheet
    assert [model.headerData(r, Qt.Orientation.Vertical) for r in range(6)] == ["4", "1", "6", "5", "3", "2"]
    model.sort(0, Qt.SortOrder.DescendingOrder)
    assert [model.data(model.index(r, 0), RawRole) for r in range(6)] == ["b", "A", 10, 3, 1.5, None]
    model.sort(-1)
    assert [model.data(model.index(r, 0), RawRole) for r in range(6)] == [3, None, "b", 1.5, "A", 10]
    assert sort_key(True) < sort_key("a")


def test_status_filter_follows_rows_as_they_change():
    model = ResultsModel()
    model.set_table(make_rows(20), ["out"])
    model.set_status_filter(ev.ERROR)
    assert model.rowCount() == 0
    model.on_event(failed(7, "bad"))
    model._last_refilter = 0.0
    model.flush()
    assert model.rowCount() == 1 and model.source_row(0) == 7
    model.on_event(failed(2, "bad too"))
    model._last_refilter = 0.0
    model.flush()
    assert [model.source_row(r) for r in range(model.rowCount())] == [2, 7]
    model.set_status_filter("")
    assert model.rowCount() == 20


def test_copy_gives_headers_and_tab_separated_cells_that_excel_pastes():
    model = ResultsModel()
    rows = Table(["name", "note"], [["Ann", "Bob"], ['say "hi"', "two\nlines"]])
    model.set_table(rows, ["out"])
    model.on_event(done(0, out=3.0))
    model.flush()
    indexes = [model.index(r, c) for r in range(2) for c in (0, 1, 2)]
    text = model.copy_text(indexes)
    assert text == 'name\tnote\tout\r\nAnn\t"say ""hi"""\t3\r\nBob\t"two\nlines"\t\r\n'
    assert tsv_cell(None) == "" and tsv_cell(2.5) == "2.5"


def test_view_has_fixed_row_heights_and_copies_the_selection_to_the_clipboard(qtbot, qapp):
    model = ResultsModel()
    model.set_table(make_rows(100), ["out"])
    view = ResultsView(model)
    qtbot.addWidget(view)
    assert view.verticalHeader().sectionResizeMode(0) == QHeaderView.ResizeMode.Fixed
    view.selectionModel().select(model.index(1, 0), view.selectionModel().SelectionFlag.Select)
    view.selectionModel().select(model.index(1, 1), view.selectionModel().SelectionFlag.Select)
    qtbot.keyClick(view, Qt.Key.Key_C, Qt.KeyboardModifier.ControlModifier)  # the cells, as Excel copies
    assert qapp.clipboard().text() == "1\ttext 1\r\n"
    qtbot.keyClick(view, Qt.Key.Key_C, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert qapp.clipboard().text() == "id\treview\r\n1\ttext 1\r\n"  # with the column names


def test_a_run_column_named_like_an_input_column_is_renamed_as_in_the_export():
    model = ResultsModel()
    model.set_table(Table(["status", "x"], [["open", "closed"], [1, 2]]), ["y"])
    assert model.headers[:4] == ["status", "x", "y", "run status"]
    assert cell(model, 0, "status") == "open"
    assert cell(model, 0, "run status") == "not run"


def test_a_big_sort_runs_in_a_worker_thread_and_lands_when_ready(qloop, monkeypatch):
    import batchgrid.gui.results_model as results_model
    from qt_async import next_signal, run

    monkeypatch.setattr(results_model, "BACKGROUND_SORT_ROWS", 100)
    model = ResultsModel()
    model.set_table(make_rows(1000), [])
    score = model.headers.index("score")

    async def scenario():
        done = next_signal(model.sorting)
        model.sort(score, Qt.SortOrder.AscendingOrder)
        assert model.order is None  # not yet: the thread is working, the window is not waiting
        assert (await done) == (True,)
        finished = next_signal(model.sorting)
        assert (await finished) == (False,)

    run(qloop, scenario())
    values = [model.data(model.index(r, score), RawRole) for r in range(1000)]
    filled = [v for v in values if v is not None]
    assert filled == sorted(filled) and values[len(filled):] == [None] * (1000 - len(filled))


def test_a_big_sort_that_fails_still_says_it_ended(qloop, monkeypatch):
    import batchgrid.gui.results_model as results_model
    from qt_async import next_signal, run

    monkeypatch.setattr(results_model, "BACKGROUND_SORT_ROWS", 100)
    model = ResultsModel()
    model.set_table(make_rows(1000), [])

    def broken_sort_key(value):
        raise MemoryError("no room for the sort keys")

    monkeypatch.setattr(results_model, "sort_key", broken_sort_key)

    async def scenario():
        started = next_signal(model.sorting)
        model.sort(model.headers.index("score"), Qt.SortOrder.AscendingOrder)
        assert (await started) == (True,)
        ended = next_signal(model.sorting)
        assert (await ended) == (False,)  # "Sorting…" does not stay up for good
        await asyncio.gather(model._sort_task, return_exceptions=True)

    run(qloop, scenario())
    assert model.order is None  # the table is shown as it was


def test_a_big_sort_reads_the_table_it_started_on(qloop, monkeypatch):
    """A new sheet shown while a sort runs in a thread: the sort reads the old one whole."""
    import batchgrid.gui.results_model as results_model
    from qt_async import next_signal, run

    monkeypatch.setattr(results_model, "BACKGROUND_SORT_ROWS", 100)
    model = ResultsModel()
    model.set_table(make_rows(1000), [])
    seen_lengths = []
    real_key = results_model.sort_key

    def key_that_swaps_the_table(value):
        if not seen_lengths:  # in the worker thread, mid-sort: the window shows a smaller sheet
            seen_lengths.append(len(model.rows))
            model.store.reset(make_rows(10), [])
        return real_key(value)

    monkeypatch.setattr(results_model, "sort_key", key_that_swaps_the_table)

    async def scenario():
        started = next_signal(model.sorting)
        model.sort(model.headers.index("score"), Qt.SortOrder.AscendingOrder)
        await started
        ended = next_signal(model.sorting)
        await ended
        await asyncio.gather(model._sort_task, return_exceptions=True)
        assert model._sort_task.exception() is None

    run(qloop, scenario())
