"""Column summaries and the run's timeline as numbers (core/run/summary.py, core/run/timeline.py):
counts, bins, blanks and errors, kept up to date row by row from a real ResultStore's events."""

from __future__ import annotations

import math

import numpy
import pytest
from batchgrid.core.run import events as ev
from batchgrid.core.run.results import NOT_RUN
from batchgrid.core.run.store import ResultStore
from batchgrid.core.run.summary import ColumnSummary, Pick, as_number, histogram, nice_edges
from batchgrid.core.run.timeline import RunTimeline
from batchgrid.core.table import Table


def make_store(n: int = 10) -> ResultStore:
    store = ResultStore()
    cities = ["Oslo", "Lima", "Oslo", None, "Pune", "Oslo", "  ", "Lima", "Oslo", "Accra"][:n]
    amounts = [1.5, 2.0, None, 7.25, 3.0, 12.0, 5.5, float("nan"), 9.0, 0.5][:n]
    store.reset(Table(["city", "amount"], [cities, amounts]), ["label"])
    return store


def finish(store: ResultStore, i: int, label, status: str = ev.DONE, latency: float = 0.1) -> ev.RowResult:
    result = ev.RowResult(i, status, {"label": label} if status == ev.DONE else {}, error="boom" if status == ev.ERROR else "",
                          latency=latency)
    kind = ev.RowDone if status == ev.DONE else ev.RowFailed
    store.on_event(kind(i, result))
    return result


def test_an_input_column_counts_its_values_and_blanks():
    store = make_store()
    facts = ColumnSummary(store, 0).rebuild().facts()
    assert facts.name == "city" and facts.rows == 10
    assert facts.top == [("Oslo", 4), ("Lima", 2), ("Accra", 1), ("Pune", 1)]
    assert (facts.values, facts.distinct, facts.blanks, facts.errors, facts.pending) == (8, 4, 2, 0, 0)
    assert facts.bars and not facts.numeric and facts.histogram_of == ""


def test_a_numeric_column_gets_a_histogram_on_round_edges():
    store = ResultStore()
    store.reset(Table(["x"], [[i * 0.37 for i in range(100)] + [None]]), [])
    facts = ColumnSummary(store, 0).rebuild().facts()
    assert facts.numeric and not facts.bars and facts.histogram_of == "numbers"
    assert facts.edges[0] == 0 and facts.edges[-1] > 99 * 0.37
    steps = {round(b - a, 9) for a, b in zip(facts.edges, facts.edges[1:], strict=False)}
    assert steps == {2.0}
    assert sum(facts.counts) == 100 and facts.blanks == 1
    assert facts.counts[0] == 6  # 0, 0.37 ... 1.85 are below 2


def test_few_distinct_numbers_are_bars_and_number_texts_are_numbers():
    store = ResultStore()
    store.reset(Table(["stars", "score"], [[5, 4, 5, 1, 5, 4], ["4.5", "3", "x", "4.5", "", "3"]]), [])
    stars = ColumnSummary(store, 0).rebuild().facts()
    assert stars.numeric and stars.bars and stars.top == [("5", 3), ("4", 2), ("1", 1)]
    score = ColumnSummary(store, 1).rebuild().facts()
    assert not score.numeric and score.top[0] == ("3", 2) and score.blanks == 1
    assert as_number("4.5") == 4.5 and math.isnan(as_number("nan")) and math.isnan(as_number(True))


def test_long_texts_get_a_histogram_of_their_lengths():
    store = ResultStore()
    texts = ["word " * k for k in range(1, 41)]  # 40 distinct texts, 5 to 200 characters
    store.reset(Table(["t"], [texts]), [])
    facts = ColumnSummary(store, 0).rebuild().facts()
    assert facts.histogram_of == "lengths" and sum(facts.counts) == 40
    assert facts.edges[0] <= 5 and facts.edges[-1] > 200
    assert facts.top[0][1] == 1 and facts.other == 40 - len(facts.top)


def test_an_output_column_follows_the_run_row_by_row():
    store = make_store()
    store.run_starting([None] * 10, range(10))
    summary = ColumnSummary(store, 2).rebuild()
    assert summary.facts().pending == 10
    finish(store, 0, "positive")
    finish(store, 1, "negative")
    finish(store, 2, "positive")
    store.on_event(ev.RowStarted(3))
    store.on_event(ev.RowPartial(3, "label", "posi"))  # streamed text is not the row's value yet
    finish(store, 4, None, ev.ERROR)
    finish(store, 5, "")
    changed = summary.update([0, 1, 2, 3, 4, 5])
    assert changed == [0, 1, 2, 4, 5]
    facts = summary.facts()
    assert facts.top == [("positive", 2), ("negative", 1)]
    assert (facts.values, facts.blanks, facts.errors, facts.pending) == (3, 1, 1, 5)
    # a retried row changes its value: counts move, nothing is counted twice
    finish(store, 1, "positive")
    summary.update([1])
    assert summary.facts().top == [("positive", 3)]
    assert summary.facts().values == 3


def test_the_status_column_counts_live_statuses():
    store = make_store()
    store.run_starting([None] * 10, range(5))
    status = len(store.header) - 8  # the first run column
    summary = ColumnSummary(store, status).rebuild()
    assert dict(summary.facts().top) == {"queued": 5, NOT_RUN: 5}
    finish(store, 0, "a")
    finish(store, 1, None, ev.ERROR)
    store.on_event(ev.RowStarted(2))
    summary.update([0, 1, 2])
    assert dict(summary.facts().top) == {"queued": 2, NOT_RUN: 5, "done": 1, "error": 1, "running": 1}


def test_which_rows_a_bar_stands_for():
    store = make_store()
    summary = ColumnSummary(store, 0).rebuild()
    assert numpy.flatnonzero(summary.mask(Pick("value", "Oslo"))).tolist() == [0, 2, 5, 8]
    assert numpy.flatnonzero(summary.mask(Pick("blank"))).tolist() == [3, 6]
    other = Pick("other", exclude=("Oslo", "Lima"))
    assert numpy.flatnonzero(summary.mask(other)).tolist() == [4, 9]
    assert summary.matches(4, other) and not summary.matches(0, other)
    amounts = ColumnSummary(store, 1).rebuild()
    in_range = Pick("range", lo=2.0, hi=8.0)
    assert numpy.flatnonzero(amounts.mask(in_range)).tolist() == [1, 3, 4, 6]
    assert amounts.matches(3, in_range) and not amounts.matches(7, in_range)
    lengths = Pick("range", lo=4, hi=5, of="lengths")
    assert numpy.flatnonzero(summary.mask(lengths)).tolist() == [0, 1, 2, 4, 5, 7, 8]
    assert Pick("value", "Oslo").describe("city") == "city = Oslo"
    assert in_range.describe("amount") == "2 ≤ amount < 8"


def test_a_summary_counted_in_steps_catches_up_with_the_store():
    store = make_store()
    store.run_starting([None] * 10, range(10))
    summary = ColumnSummary(store, 2)
    steps = summary.rebuild_in_steps(chunk=4)
    assert next(steps) == 4
    finish(store, 0, "early")  # counted already: the store's on_change tells it to update
    finish(store, 8, "late")   # not counted yet: read as it is when its chunk comes
    assert list(steps) == [8, 10]
    assert summary.facts().top == [("late", 1)] and summary.facts().pending == 9
    summary.update([0])
    facts = summary.facts()
    assert facts.top == [("early", 1), ("late", 1)] and facts.pending == 8
    assert summary.kind_counts == ColumnSummary(store, 2).rebuild().kind_counts


@pytest.mark.parametrize(("lo", "hi", "integers", "expected"), [
    (0, 10, True, [float(i) for i in range(12)]),
    (0.0, 1.0, False, [round(i * 0.05, 2) for i in range(22)]),
    (3, 3, True, [3.0, 4.0]),
])
def test_nice_edges(lo, hi, integers, expected):
    edges = nice_edges(lo, hi, integers=integers)
    assert [round(e, 9) for e in edges] == [round(e, 9) for e in expected]
    assert edges[0] <= lo and edges[-1] > hi


def test_histogram_puts_the_maximum_in_a_bin_of_its_own():
    edges, counts = histogram(numpy.array([0.0, 1.0, 1.0]), integers=True)
    assert edges == [0.0, 1.0, 2.0] and counts == [1, 2]


def test_the_timeline_measures_rows_per_second_latencies_and_cost():
    timeline = RunTimeline()
    timeline.start(100)
    for k in range(1, 11):  # 20 rows a second, 0.001 $ a row
        timeline.sample(k * 0.5, k * 10, k * 10 * 0.001)
    seconds, rates = timeline.rates()
    assert seconds[0] == 0.5 and rates[-1] == pytest.approx(20.0)
    for i in range(50):
        result = ev.RowResult(i, ev.DONE, {}, latency=0.1 + (i % 5) * 0.1)
        timeline.on_event(ev.RowDone(i, result))
    timeline.on_event(ev.RowCancelled(99, ev.RowResult(99, ev.CANCELLED, {}, latency=9.0)))
    edges, counts = timeline.latency_histogram()
    assert sum(counts) == 50 and edges[-1] <= 1.0
    fastest, median, p95, slowest = timeline.latency_quantiles()
    assert (fastest, median, slowest) == pytest.approx((0.1, 0.3, 0.5)) and 0.4 <= p95 <= 0.5
    finished, costs = timeline.costs()
    assert finished[-1] == 100 and costs[-1] == pytest.approx(0.1)
    assert timeline.projected_cost() == pytest.approx(0.1)
    timeline.start(10)
    assert timeline.costs() == ([0], [0.0]) and timeline.projected_cost() == 0.0
    assert timeline.latency_quantiles() is None
