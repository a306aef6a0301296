"""The column summary panel in a real window: counts after a real run of the offline example, a bar
clicked filters the table (and again shows every row), a header's right-click ▸ Summary, live and
coalesced updates during a run, a big table counted in steps."""

from __future__ import annotations

import json
from collections import Counter

from PySide6.QtCore import QPoint, Qt
from PySide6.QtTest import QTest

from batchgrid.core.run import events as ev
from batchgrid.core.util.display import display_text
from batchgrid.gui import column_summary
from batchgrid.gui.column_summary import PickRole, install_column_summaries

from qt_async import next_signal, run, run_to_end


def column_values(window, name: str) -> list:
    c = window.model.headers.index(name)
    return [window.model.raw_value(i, c) for i in range(len(window.rows))]


def shown_values(window, name: str) -> list:
    c = window.model.headers.index(name)
    return [window.model.raw_value(window.model.source_row(r), c) for r in range(window.model.rowCount())]


def click_bar(panel, row: int) -> None:
    index = panel.bars.items.index(row, 0)
    rect = panel.bars.visualRect(index)
    QTest.mouseClick(panel.bars.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())


def bar_labels(panel) -> list[tuple[str, str]]:
    items = panel.bars.items
    return [(items.item(r).text(), items.item(r).data(column_summary.CountRole)) for r in range(items.rowCount())]


CATEGORIES = ("Home", "Kitchen", "Kitchen", "Outdoor", "Home", "Kitchen", "Electronics")


def open_example(qloop, window, tmp_path) -> None:
    """240 reviews (id, category, price, review) and an offline pipeline: `label` (a classify
    step's kind of output: a few values), `price_num` (fails on 3 prices that are not numbers),
    `line` (free text)."""
    sheet = tmp_path / "reviews.csv"
    lines = ["id,category,price,review"]
    for i in range(240):
        price = "n/a" if i in (5, 50, 200) else f"{(i * 37) % 500 + 0.5}"
        lines.append(f"{1000 + i},{CATEGORIES[i % 7]},{price},{'very ' * (i % 9)}good item {i}")
    sheet.write_text("\n".join(lines) + "\n")
    pipeline = tmp_path / "reviews.json"
    pipeline.write_text(json.dumps({"version": 1, "settings": {"max_concurrency": 8}, "steps": [
        {"type": "change_case", "source": "category", "case": "lower", "output": "label"},
        {"type": "parse_number", "source": "price", "output": "price_num"},
        {"type": "template", "template": "{label}: {review}", "output": "line"}]}))
    assert run(qloop, window.load_pipeline(pipeline))
    assert run(qloop, window.load_sheet(sheet)), window.last_message


def test_a_bar_clicked_filters_the_table_and_again_shows_every_row(qloop, window, tmp_path):
    w = window
    panel = install_column_summaries(w)
    open_example(qloop, w, tmp_path)
    reason, _ = run(qloop, run_to_end(w))
    assert reason == "finished"
    assert "View" in [a.text().replace("&", "") for a in w.menuBar().actions()]
    w.act_column_summary.setChecked(True)
    assert panel.isVisible() and panel.width() >= panel.minimumWidth()
    panel.show_column(w.model.headers.index("label"))

    values = column_values(w, "label")
    expected = Counter(v for v in values if v)
    failed = w.model.status.count(ev.ERROR)
    facts = panel.facts
    assert dict(facts.top) == dict(expected) and failed == 3
    assert facts.values == sum(expected.values()) and facts.rows == 240
    labels = bar_labels(panel)
    top_value, top_count = expected.most_common(1)[0]
    assert labels[0] == (top_value, f"{top_count} ({100 * top_count / 240:.0f}%)")
    assert facts.errors == 0  # the label was made before the step that failed

    click_bar(panel, 0)  # the most frequent category
    assert w.row_filter.active and w.model.rowCount() == top_count
    assert set(shown_values(w, "label")) == {top_value}
    assert panel.filter_text.isVisible() and panel.filter_text.text() == (
        f"Showing {top_count} of 240 rows: label = {top_value}")
    w.model.sort(w.model.headers.index("id"), Qt.SortOrder.DescendingOrder)  # a sort keeps the filter
    ratings = shown_values(w, "id")
    assert len(ratings) == top_count and ratings == sorted(ratings, reverse=True)

    click_bar(panel, 0)  # the same bar again: every row
    assert not w.row_filter.active and w.model.rowCount() == 240

    panel.show_column(w.model.headers.index("price_num"))
    assert panel.facts.errors == 3 and panel.facts.histogram_of == "numbers"
    labels = bar_labels(panel)
    assert labels == [("(error)", "3 (1%)")]  # numbers get a histogram; the failed rows a bar
    click_bar(panel, 0)  # (error): the rows that failed
    assert w.model.rowCount() == 3
    assert {w.model.status[w.model.source_row(r)] for r in range(3)} == {ev.ERROR}
    panel.clear_button.click()
    assert w.model.rowCount() == 240 and not panel.clear_button.isVisible()


def test_a_numeric_column_filters_by_a_histogram_bin_and_a_text_column_by_length(qloop, window, tmp_path):
    w = window
    panel = install_column_summaries(w)
    open_example(qloop, w, tmp_path)
    run(qloop, run_to_end(w))
    w.act_column_summary.setChecked(True)
    panel.show_column(w.model.headers.index("id"))  # 240 distinct whole numbers
    assert panel.histogram.isVisible() and panel.facts.histogram_of == "numbers"
    assert sum(panel.facts.counts) == 240
    i = max(range(len(panel.histogram.counts)), key=panel.histogram.counts.__getitem__)
    pick = panel.histogram.bin_pick(i)
    panel.toggle_pick(pick)
    shown = shown_values(w, "id")
    assert len(shown) == panel.histogram.counts[i] and all(pick.lo <= v < pick.hi for v in shown)

    panel.show_column(w.model.headers.index("line"))  # free text: a histogram of its lengths
    assert panel.facts.histogram_of == "lengths"
    lengths = [len(display_text(v)) for v in column_values(w, "line") if v]
    assert sum(panel.facts.counts) == len(lengths)
    j = max(range(len(panel.histogram.counts)), key=panel.histogram.counts.__getitem__)
    panel.toggle_pick(panel.histogram.bin_pick(j))
    pick = panel.pick
    assert w.model.rowCount() == sum(pick.lo <= n < pick.hi for n in lengths)
    assert "length of line" in panel.filter_text.text()


def test_a_header_right_click_offers_the_summary(qloop, window, tmp_path):
    w = window
    panel = install_column_summaries(w)
    open_example(qloop, w, tmp_path)
    header = w.view.horizontalHeader()
    section = w.model.headers.index("category")
    header.customContextMenuRequested.emit(QPoint(header.sectionViewportPosition(section) + 5, 5))
    menu = getattr(w.view, "header_menu", None) or w.header_menu  # the table's own header menu, or this one
    summary = [a for a in menu.actions() if a.text().startswith("Summary")]
    assert len(summary) == 1
    summary[0].trigger()
    assert panel.isVisible() and w.act_column_summary.isChecked()
    assert panel.column == section and panel.chooser.currentText() == "category"
    assert panel.facts.rows == 240 and panel.facts.pending == 0  # an input column is there before any run
    w.act_column_summary.setChecked(False)
    assert not panel.isVisible()


def test_updates_during_a_run_are_coalesced_and_end_exact(qloop, window, tmp_path, monkeypatch):
    monkeypatch.setattr(column_summary, "STEP_ROWS", 500)  # this sheet is counted in steps
    w = window
    panel = install_column_summaries(w)
    rows = 4000
    sheet = tmp_path / "words.csv"
    sheet.write_text("n,word\n" + "\n".join(f"{i},{('good', 'bad', 'fine', '')[i % 4]}" for i in range(rows)) + "\n")
    pipeline = tmp_path / "upper.json"
    pipeline.write_text(json.dumps({"version": 1, "settings": {"max_concurrency": 8}, "steps": [
        {"type": "change_case", "source": "word", "case": "upper", "output": "shout"}]}))
    assert run(qloop, w.load_pipeline(pipeline))
    assert run(qloop, w.load_sheet(sheet))
    w.act_column_summary.setChecked(True)
    panel.show_column(w.model.headers.index("shout"))

    async def counted():
        if panel.building is not None and not panel.building.done():
            await panel.building
    run(qloop, counted())
    assert panel.facts.pending == rows

    changes = []
    previous = w.session.store.on_change
    w.session.store.on_change = lambda row: (changes.append(row), previous(row))
    before = panel.refreshes

    async def scenario():
        reason, _ = await run_to_end(w)
        assert reason == "finished"
        await counted()  # the end of a run counts the column again (in steps here)
        if panel.facts.pending:
            await next_signal(panel.refreshed)
    run(qloop, scenario())
    assert len(changes) >= 2 * rows  # each row started and finished
    assert panel.refreshes - before < len(changes) / 100  # a few redraws, never one per row
    facts = panel.facts
    assert dict(facts.top) == {"GOOD": 1000, "BAD": 1000, "FINE": 1000}
    assert (facts.blanks, facts.pending, facts.errors) == (1000, 0, 0)


def test_a_filter_on_a_status_follows_the_run(qloop, window, tmp_path):
    w = window
    panel = install_column_summaries(w)
    open_example(qloop, w, tmp_path)
    w.act_column_summary.setChecked(True)
    panel.show_column(w.model.status_column())
    assert bar_labels(panel)[0][0] == "not run"
    click_bar(panel, 0)
    assert w.model.rowCount() == 240
    reason, _ = run(qloop, run_to_end(w))
    assert reason == "finished"
    # every row ran: none is "not run" any more, and the panel counted the status column again
    assert "not run" not in [label for label, _ in bar_labels(panel)]
    assert dict(panel.facts.top) == {"done": 237, "error": 3}
    assert panel.pick is not None and panel.bars.items.item(0).data(PickRole) != panel.pick
    assert w.model.rowCount() == 0 and panel.filter_text.text() == "Showing 0 of 240 rows: status = not run"


def test_installing_twice_installs_once(qloop, window):
    panel = install_column_summaries(window)
    assert install_column_summaries(window) is panel
    assert [a.text() for a in window.menuBar().actions()].count("&View") == 1
    view = next(a.menu() for a in window.menuBar().actions() if a.text() == "&View")
    assert [a.text() for a in view.actions()].count("Column summary") == 1
    assert len(window.findChildren(type(panel))) == 1


def test_the_panel_never_widens_the_window(qloop, window, tmp_path):
    w = window
    install_column_summaries(w)
    open_example(qloop, w, tmp_path)
    w.act_column_summary.setChecked(True)
    assert w.column_summary.minimumSizeHint().width() <= 260
    w.column_summary.show_column(w.model.headers.index("review"))
    assert w.minimumSizeHint().width() <= 1024
