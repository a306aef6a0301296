"""The Excel report as a finished document (issue 11): one font, formats per column type, widths
from content, print setup, the Run sheet's totals once and the pipeline one step per row, and
"export what is shown" (rows in the window's order). Read back with openpyxl.
"""

from __future__ import annotations

import datetime as dt
import json
import re

import openpyxl
import pytest

from batchgrid.core.table import export_results
from table_fixtures import make_result_set

PIPELINE = {
    "version": 1, "name": "Classify and answer product reviews",
    "settings": {"max_concurrency": 8},
    "steps": [
        {"type": "trim", "name": "Clean review text", "source": "review", "output": "review_clean"},
        {"type": "classify", "name": "Sentiment", "prompt": "Review ({rating}/5 stars): {review_clean}",
         "labels": {"positive": "happy", "negative": "unhappy"}, "temperature": 0, "output": "sentiment"},
        {"type": "llm", "name": "Draft a reply", "system": "You write short, warm replies.",
         "prompt": "Customer {customer} wrote ({rating}/5): {review_clean}\nWrite our reply.",
         "temperature": 0.3, "max_tokens": 120, "output": "reply", "enabled": False},
    ],
}
REVIEWS = ["Arrived two days late and the box was crushed, but the kettle itself works fine.",
           "Great value.", "Stopped working after a week; I want a refund or a replacement, whichever is faster.",
           "The lid does not close properly."]


def realistic_run(n: int = 300, *, failures: int = 7):
    """A run as the session exports it: a date-only column, long texts, errors, and a run_info like
    `Job.run_info()` (totals already in it, the pipeline as its JSON text)."""
    records = [{"id": i + 1, "customer": f"Customer {i + 1:03d}", "review": REVIEWS[i % len(REVIEWS)],
                "rating": i % 5 + 1, "ordered": dt.datetime(2026, 4, 25) - dt.timedelta(days=i % 40)}
               for i in range(n)]
    outputs = [{"review_clean": REVIEWS[i % len(REVIEWS)], "sentiment": ("positive", "negative")[i % 2],
                "reply": f"Thank you for your review, Customer {i + 1:03d}. We are sorry to hear about it "
                         "and will send a replacement today."} for i in range(n)]
    failed = {i: ("Sentiment", "StepError", "HTTP 400: the prompt is too long for the model's context window")
              for i in range(3, n, max(1, n // failures))}
    rs = make_result_set(records, outputs, failures=failed)
    done = [r for r in rs.results if r is not None]
    rs.run_info = {"pipeline": PIPELINE["name"], "pipeline file": "/home/ana/reviews.batchgrid.json",
                   "input file": "/home/ana/reviews.xlsx", "sheet": "Reviews", "rows": n, "max concurrency": 8,
                   **{f"rows {k}": v for k, v in sorted(rs.counts().items())},
                   "started": "2026-04-25 09:00:00", "finished": "2026-04-25 09:03:30", "elapsed (s)": 210.5,
                   "tokens in": sum(r.tokens_in for r in done), "tokens out": sum(r.tokens_out for r in done),
                   "cost": round(sum(r.cost for r in done), 6), "retries": 2,
                   "steps": json.dumps(PIPELINE, indent=2) + "\n"}
    return rs


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    path = export_results(realistic_run(), tmp_path_factory.mktemp("report") / "report.xlsx")
    return openpyxl.load_workbook(path)


def column(sheet, name: str) -> list:
    header = [c.value for c in sheet[1]]
    return [row[header.index(name)] for row in sheet.iter_rows(min_row=2)]


def test_one_named_sized_font_everywhere(report):
    fonts = set()
    for sheet in report.worksheets:
        for row in sheet.iter_rows():
            for cell in row:
                assert cell.font.name and cell.font.sz, (sheet.title, cell.coordinate, cell.font)
                fonts.add((cell.font.name, float(cell.font.sz)))
    assert len(fonts) == 1, fonts


def test_a_date_only_column_has_a_date_format_without_time(report):
    cells = column(report["Results"], "ordered")
    assert cells[0].value == dt.datetime(2026, 4, 25)
    formats = {c.number_format for c in cells}
    assert len(formats) == 1
    (fmt,) = formats
    assert "yy" in fmt and "d" in fmt and "h" not in fmt.lower() and "s" not in fmt.lower()


def test_a_column_with_times_shows_them(tmp_path):
    rs = make_result_set([{"at": dt.datetime(2026, 4, 25, 9, 30)}, {"at": dt.datetime(2026, 4, 26)}], [{"o": 1}] * 2)
    sheet = openpyxl.load_workbook(export_results(rs, tmp_path / "t.xlsx"))["Results"]
    assert {c.number_format.removesuffix("_)") for c in column(sheet, "at")} == {"yyyy-mm-dd hh:mm"}


def test_cost_is_currency_with_four_decimals_and_latency_seconds_with_three(report):
    sheet = report["Results"]
    costs = [c for c in column(sheet, "cost") if c.value is not None]
    latencies = [c for c in column(sheet, "latency (s)") if c.value is not None]
    assert costs and latencies
    for cell in costs:
        assert re.fullmatch(r'(\[\$\$-409\]|"\$")#,##0\.0000', cell.number_format), cell.number_format
    assert {c.number_format for c in latencies} == {"0.000"}
    run = {row[0].value: row[1] for row in report["Run"].iter_rows(min_row=2) if row[0].value}
    assert run["cost"].number_format == costs[0].number_format


def test_the_run_sheet_has_its_totals_once(report):
    items = [row[0].value for row in report["Run"].iter_rows(min_row=2)]
    for name in ("rows", "rows done", "rows error", "tokens in", "tokens out", "cost"):
        assert items.count(name) == 1, (name, items)


def test_the_pipeline_is_one_readable_row_per_step(report):
    rows = [(r[0].value, r[1].value) for r in report["Run"].iter_rows(min_row=2)]
    heading = rows.index(("Pipeline", None))
    steps = rows[heading + 1: heading + 4]
    assert [item for item, _ in steps] == ["step 1", "step 2", "step 3"]
    first, second, third = (text for _, text in steps)
    assert first.startswith("Clean review text (trim)") and "output: review_clean" in first
    assert "prompt: Review ({rating}/5 stars): {review_clean}" in second
    assert "labels: positive = happy, negative = unhappy" in second
    assert third.startswith("Draft a reply (llm, disabled)")
    for _, value in rows:  # no JSON blob anywhere: no cell is a brace, none holds the whole file
        assert value not in ("{", "}") and not (isinstance(value, str) and value.lstrip().startswith("{"))


def test_every_sheet_prints_landscape_fit_to_width_with_the_header_on_each_page(report):
    for sheet in report.worksheets:
        setup = sheet.page_setup
        assert setup.orientation == "landscape", sheet.title
        assert sheet.sheet_properties.pageSetUpPr.fitToPage
        assert (setup.fitToWidth or 1, setup.fitToHeight) == (1, 0)  # fitToWidth left out means 1 (ECMA-376)
        assert sheet.print_title_rows.replace("$", "") == "1:1"


def test_column_widths_come_from_the_content_and_are_bounded(report):
    sheet = report["Results"]
    header = [c.value for c in sheet[1]]
    width = {name: sheet.column_dimensions[openpyxl.utils.get_column_letter(i + 1)].width
             for i, name in enumerate(header)}
    assert all(6 <= w <= 60 for w in width.values()), width
    assert 10 <= width["ordered"] <= 14           # "2026-04-25", not a date and a time
    assert width["rating"] <= 13 and width["id"] <= 9  # the header, bold, and its filter button
    assert width["review"] > width["sentiment"] > width["rating"]
    assert 8 <= width["cost"] <= 12               # "$0.0015"


def test_long_text_wraps_in_a_bounded_column(report):
    sheet = report["Results"]
    reviews = column(sheet, "review")
    assert all(c.alignment.wrap_text for c in reviews)
    assert not any(c.alignment.wrap_text for c in column(sheet, "rating"))
    assert all(c.alignment.vertical == "top" for c in reviews)


# ---- export what is shown -----------------------------------------------------------------------

def test_rows_are_written_in_the_order_given(tmp_path):
    rs = realistic_run(20, failures=3)
    shown = [12, 3, 0, 9]  # e.g. sorted by a column, filtered to a few rows
    book = openpyxl.load_workbook(export_results(rs, tmp_path / "shown.xlsx", rows=shown))
    assert [c.value for c in column(book["Results"], "id")] == [13, 4, 1, 10]
    errors = [[c.value for c in row] for row in book["Errors"].iter_rows(min_row=2)]
    assert [row[0] for row in errors] == [4, 10]  # only the shown failed rows, by their sheet row number
    items = {r[0].value: r[1].value for r in book["Run"].iter_rows(min_row=2)}
    assert items["rows exported"] == "4 of 20, in the order shown"


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_flat_exports_take_the_order_too(tmp_path, fmt):
    import pandas as pd

    from batchgrid.core.table import read_table

    rs = realistic_run(10, failures=2)
    back = read_table(export_results(rs, tmp_path / f"shown.{fmt}", rows=[5, 2]))
    assert isinstance(back, pd.DataFrame) and back["id"].tolist() == [6, 3]


def test_a_percentage_read_from_a_workbook_is_exported_as_a_number_shown_as_a_percentage(tmp_path):
    from batchgrid.core.table.numfmt import percent

    rates = [percent(0.256, "0.0%"), percent(0.5, "0%")]
    rs = make_result_set([{"rate": r} for r in rates], [{"out": "a"}, {"out": "b"}])
    sheet = openpyxl.load_workbook(export_results(rs, tmp_path / "pct.xlsx"))["Results"]
    cells = [sheet.cell(row=i, column=1) for i in (2, 3)]
    assert [c.value for c in cells] == [0.256, 0.5]
    assert [c.data_type for c in cells] == ["n", "n"]
    assert [c.number_format for c in cells] == ["0.0%", "0%"]
