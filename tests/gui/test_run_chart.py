"""The run chart in a real window: hidden until a run, beside the run bar during and after it, fed by
the run's progress and row events, redrawn a few times (not per row), View ▸ Run chart."""

from __future__ import annotations

import json

import pytest

from batchgrid.core.run import events as ev
from batchgrid.gui.run_chart import install_run_chart

from qt_async import run, run_to_end
from test_window import open_llm_sheet


def test_the_run_is_drawn_beside_the_run_bar(qloop, window, tmp_path):
    w = window
    chart = install_run_chart(w)
    rows = 3000
    sheet = tmp_path / "words.csv"
    sheet.write_text("n,word\n" + "\n".join(f"{i},{('good', 'bad', 'x')[i % 3]}" for i in range(rows)) + "\n")
    pipeline = tmp_path / "p.json"
    pipeline.write_text(json.dumps({"version": 1, "settings": {"max_concurrency": 8}, "steps": [
        {"type": "change_case", "source": "word", "case": "upper", "output": "shout"},
        {"type": "parse_number", "source": "word", "output": "number", "on_error": "error"}]}))
    assert run(qloop, w.load_pipeline(pipeline))
    assert run(qloop, w.load_sheet(sheet)), w.last_message
    assert not chart.isVisible()  # nothing to draw before a run
    assert chart.parentWidget() is w.run_bar.parentWidget()  # beside the run bar
    assert "Run chart" in [a.text() for a in w.act_run_chart.parent().findChildren(type(w.act_run_chart))]

    reason, _ = run(qloop, run_to_end(w))
    assert reason == "finished"
    assert chart.isVisible() and chart.redraws >= 2  # when the run started and when it ended
    progress = w.session.progress
    assert progress.failed == rows  # "GOOD" is not a number: every row fails, in the number step
    assert len(chart.timeline.latencies) == rows
    assert chart.redraws < rows / 100  # coalesced: a few redraws, never one per row
    assert sum(chart.latency_bars.opts["height"]) == rows
    finished, costs = chart.timeline.costs()
    assert finished[-1] == rows and costs[-1] == 0 and chart.captions[2].text() == "no cost"
    assert chart.captions[0].text().endswith("rows/s") and "p95" in chart.captions[1].text()

    w.act_run_chart.setChecked(False)
    assert not chart.isVisible()
    w.act_run_chart.setChecked(True)
    assert chart.isVisible()
    assert run(qloop, w.load_sheet(sheet))  # another sheet: the last run's pictures go
    assert not chart.isVisible()
    assert w.minimumSizeHint().width() <= 1024


def test_retried_rows_start_a_new_timeline(qloop, window, tmp_path):
    w = window
    chart = install_run_chart(w)
    sheet = tmp_path / "n.csv"
    sheet.write_text("n\n" + "\n".join(str(i) if i % 10 else f"bad{i}" for i in range(200)) + "\n")
    pipeline = tmp_path / "p.json"
    pipeline.write_text(json.dumps({"version": 1, "steps": [
        {"type": "parse_number", "source": "n", "output": "number"}]}))
    assert run(qloop, w.load_pipeline(pipeline))
    assert run(qloop, w.load_sheet(sheet)), w.last_message
    run(qloop, run_to_end(w))
    assert len(chart.timeline.latencies) == 200 and w.model.status.count(ev.ERROR) == 20
    run(qloop, run_to_end(w, "retry_failed"))
    assert len(chart.timeline.latencies) == 20 and chart.timeline.selected == 20


def test_the_cost_is_drawn_against_its_projection(qloop, window, tmp_path, fake_openai):
    (tmp_path / "prices.json").write_text(json.dumps({"m": {"input": 1000.0, "output": 2000.0}}))  # beside the journal
    chart = install_run_chart(window)
    open_llm_sheet(qloop, window, tmp_path, fake_openai, rows=40, concurrency=4, latency=0.01)
    reason, _ = run(qloop, run_to_end(window))
    assert reason == "finished"
    finished, costs = chart.timeline.costs()
    cost = window.session.progress.cost
    assert cost > 0 and costs[-1] == pytest.approx(cost) and finished[-1] == 40
    assert costs == sorted(costs)  # the cost so far only grows
    assert chart.timeline.projected_cost() == pytest.approx(cost)  # every row finished: the projection is the cost
    assert chart.captions[2].text() == f"${cost:,.4f} of ${cost:,.4f}"
    xs, ys = chart.projection.getData()
    assert list(xs) == [0, 40] and ys[-1] == pytest.approx(cost)
