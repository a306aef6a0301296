"""Exports: the formatted workbook, formula safety, csv and parquet, atomic writes, round trips."""

from __future__ import annotations

import csv
import datetime as dt
import zipfile
from decimal import Decimal

import numpy as np
import openpyxl
import pandas as pd
import pytest

from batchgrid.core.table import ExportError, export_results, read_table, write_table
from batchgrid.core.table.cells import EXCEL_MAX_CHARS
from batchgrid.core.table.write_xlsx import TableSheet
from table_fixtures import assert_same_values, make_result_set, result_set_from_frame, sample_records, write_workbook

HYPERLINK = '=HYPERLINK("http://x","click")'
RUN_INFO = {"pipeline": {"version": 1, "name": "review triage",
                         "steps": [{"type": "template", "template": "Summarise: {name}", "output": "summary"}],
                         "providers": {"openai": {"base_url": "http://127.0.0.1:1", "api_key": "sk-not-for-excel"}}},
            "input file": "reviews.xlsx", "max_concurrency": 8,
            "started": dt.datetime(2024, 5, 1, 9, 0, 0), "finished": dt.datetime(2024, 5, 1, 9, 3, 30)}


@pytest.fixture
def results():
    """Five rows: done, done with a formula-looking output, failed, done with a dict, not run."""
    records = sample_records(5)
    outputs = [{"summary": "fine", "tags": ["a", "b"]},
               {"summary": HYPERLINK, "tags": []},
               None,
               {"summary": "-1 but text", "tags": {"k": 1}},
               None]
    outputs[2] = {"summary": None}
    return make_result_set(records, outputs, failures={2: ("summarise", "StepError", "HTTP 400: the prompt is too long")},
                           run_info=RUN_INFO)


def cells_of(sheet):
    return [[c.value for c in row] for row in sheet.iter_rows()]


# ---- the workbook ------------------------------------------------------------------------------

def test_the_workbook_has_results_errors_and_run_sheets(tmp_path, results):
    path = export_results(results, tmp_path / "out.xlsx")
    book = openpyxl.load_workbook(path)
    assert book.sheetnames == ["Results", "Errors", "Run"]
    sheet = book["Results"]
    header = [c.value for c in sheet[1]]
    assert header == ["id", "name", "score", "joined", "vip", "note", "summary", "tags",
                      "status", "error", "run note", "failed step", "attempts", "latency (s)", "tokens", "cost"]
    assert all(c.font.b for c in sheet[1])
    assert sheet.freeze_panes == "A2"
    assert sheet.auto_filter.ref == "A1:P6"
    assert sheet.max_row == 6


def test_results_keep_types_and_highlight_error_rows(tmp_path, results):
    sheet = openpyxl.load_workbook(export_results(results, tmp_path / "out.xlsx"))["Results"]
    row2 = [c for c in sheet[3]]   # the second data row (done)
    failed = [c for c in sheet[4]]  # the third data row (error)
    assert row2[0].value == 1 and row2[0].data_type == "n"
    assert row2[2].value == pytest.approx(1 * 0.37 + 0.01) and row2[2].data_type == "n"
    assert row2[3].value == dt.datetime(2024, 2, 1, 9, 31) and row2[3].is_date
    assert row2[4].value is False and row2[4].data_type == "b"
    assert row2[7].value == "[]"
    assert sheet["H2"].value == '["a", "b"]' and sheet["H5"].value == '{"k": 1}'  # lists and dicts as JSON
    assert failed[8].value == "error" and failed[9].value == "HTTP 400: the prompt is too long"
    assert failed[11].value == "summarise"
    for cell in failed:  # every cell of a failed row, blank or not, is filled
        assert cell.fill.fgColor.rgb.endswith("FFC7CE")
    assert not row2[0].fill.fgColor.rgb.endswith("FFC7CE")
    assert sheet["I6"].value == "not run"


def test_column_widths_follow_content_and_are_capped(tmp_path):
    rs = make_result_set([{"id": 1, "essay": "w" * 5000, "tiny": "x"}], [{"out": "ok"}])
    sheet = openpyxl.load_workbook(export_results(rs, tmp_path / "w.xlsx"))["Results"]
    widths = {k: v.width for k, v in sheet.column_dimensions.items()}
    assert 30 <= widths["B"] < 33             # long text wraps in a column of WRAP_WIDTH characters
    assert sheet["B2"].alignment.wrap_text
    assert 6 <= widths["A"] < 10 and 6 <= widths["C"] < 10


@pytest.mark.parametrize("text", [HYPERLINK, "=1+1", "+SUM(A1:A9)", "-2+3", "@cmd", "\tx", "\r=1", "#N/A"])
def test_formula_looking_text_stays_text_in_the_workbook(tmp_path, text):
    rs = make_result_set([{"id": 1, "input": text}], [{"output": text}])
    book = openpyxl.load_workbook(export_results(rs, tmp_path / "f.xlsx"))
    for cell in (book["Results"]["B2"], book["Results"]["C2"]):
        assert cell.data_type == "s" and cell.quotePrefix
    # The exact text, a carriage return too (written as _x000D_, which openpyxl leaves undecoded)
    assert read_table(tmp_path / "f.xlsx")[["input", "output"]].values.tolist() == [[text, text]]
    xml = zipfile.ZipFile(tmp_path / "f.xlsx").read("xl/worksheets/sheet1.xml").decode()
    assert "<f>" not in xml  # no formula anywhere


def test_numbers_stay_numbers_even_negative_ones(tmp_path):
    rs = make_result_set([{"n": -5, "f": -0.5, "big": 12345678901234567890, "d": Decimal("2.5")}], [{"o": 1}])
    sheet = openpyxl.load_workbook(export_results(rs, tmp_path / "n.xlsx"))["Results"]
    assert [sheet[c].value for c in ("A2", "B2", "D2")] == [-5, -0.5, 2.5]
    assert sheet["A2"].data_type == "n"
    assert sheet["C2"].value == "12345678901234567890"  # more digits than Excel keeps: text, exact


def test_awkward_values_are_written_not_crashed_on(tmp_path):
    tz = dt.timezone(dt.timedelta(hours=2))
    rs = make_result_set([{"a": float("nan"), "b": float("inf"), "c": pd.NaT, "d": dt.datetime(2024, 1, 1, 12, tzinfo=tz),
                           "e": np.int64(7), "f": np.float32(0.5), "g": "bell\x07 and nul\x00", "h": b"bytes",
                           "i": {1, 2}, "j": dt.date(1850, 1, 1), "k": pd.Timestamp("2024-03-01 08:00")}],
                         [{"o": object.__new__(object)}])
    sheet = openpyxl.load_workbook(export_results(rs, tmp_path / "a.xlsx"))["Results"]
    values = [c.value for c in sheet[2]][:12]
    assert values[:3] == [None, "inf", None]
    assert values[3] == dt.datetime(2024, 1, 1, 12)   # the wall-clock time; Excel has no time zones
    assert values[4:6] == [7, 0.5]
    assert values[6] == "bell and nul"                 # characters XML cannot hold are dropped
    assert values[7:10] == ["bytes", "[1, 2]", "1850-01-01"]
    assert values[10] == dt.datetime(2024, 3, 1, 8)
    assert values[11].startswith("<object object at")


def test_text_longer_than_excel_allows_is_cut_with_a_marker(tmp_path):
    rs = make_result_set([{"id": 1}], [{"answer": "é" * 40_000}])
    value = openpyxl.load_workbook(export_results(rs, tmp_path / "l.xlsx"))["Results"]["B2"].value
    assert len(value) == EXCEL_MAX_CHARS
    assert value.startswith("é" * 1000) and value.endswith("… [cut: the full text has 40,000 characters]")


def test_the_errors_sheet_lists_only_failed_rows(tmp_path, results):
    rows = cells_of(openpyxl.load_workbook(export_results(results, tmp_path / "e.xlsx"))["Errors"])
    assert rows[0] == ["row", "id", "name", "score", "joined", "vip", "note", "failed step", "error type", "error"]
    assert len(rows) == 2
    assert rows[1][0] == 3 and rows[1][1:3] == [2, "customer 2"]
    assert rows[1][-3:] == ["summarise", "StepError", "HTTP 400: the prompt is too long"]


def test_the_run_sheet_describes_the_run_without_secrets(tmp_path, results):
    path = export_results(results, tmp_path / "r.xlsx")
    items = dict(cells_of(openpyxl.load_workbook(path)["Run"])[1:])
    assert items["pipeline"] == "review triage"
    assert items["step 1"] == "template\ntemplate: Summarise: {name}\noutput: summary"
    assert items["provider openai"] == "base_url: http://127.0.0.1:1\napi_key: •••"
    assert items["input file"] == "reviews.xlsx" and items["max_concurrency"] == 8
    assert items["started"] == dt.datetime(2024, 5, 1, 9) and items["finished"] == dt.datetime(2024, 5, 1, 9, 3, 30)
    assert items["rows"] == 5 and items["rows done"] == 3 and items["rows error"] == 1 and items["rows not run"] == 1
    assert items["tokens in"] == 30 and items["tokens out"] == 5 + 6 + 8
    assert items["cost"] == pytest.approx(0.0045)
    assert b"sk-not-for-excel" not in b"".join(zipfile.ZipFile(path).read(n) for n in zipfile.ZipFile(path).namelist())


def test_progress_is_reported_up_to_the_total(tmp_path):
    rs = make_result_set([{"i": i} for i in range(2500)], [{"o": i} for i in range(2500)])
    seen = []
    export_results(rs, tmp_path / "p.xlsx", on_progress=lambda done, total: seen.append((done, total)))
    assert seen == [(1000, 2500), (2000, 2500), (2500, 2500)]
    seen.clear()
    export_results(rs, tmp_path / "p.csv", on_progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (2500, 2500)


def test_an_empty_run_exports_headers_only(tmp_path):
    rs = make_result_set([], [])
    book = openpyxl.load_workbook(export_results(rs, tmp_path / "empty.xlsx"))
    assert [c.value for c in book["Results"][1]][0] == "status" and book["Results"].max_row == 1
    assert read_table(export_results(rs, tmp_path / "empty.csv")).shape == (0, 8)


def test_too_many_rows_for_excel_is_a_clear_error():
    with pytest.raises(ExportError, match=r"2,000,000 rows do not fit in an Excel sheet .* export to .csv or .parquet"):
        TableSheet.check_fits(2_000_000)
    TableSheet.check_fits(1_048_575)


def test_bad_destinations_are_one_line_errors(tmp_path, results):
    with pytest.raises(ExportError, match="the folder .* does not exist"):
        export_results(results, tmp_path / "missing" / "out.xlsx")
    with pytest.raises(ExportError, match=r"cannot tell the format of 'out.docx'"):
        export_results(results, tmp_path / "out.docx")
    with pytest.raises(ExportError, match="choose xlsx, csv or parquet"):
        export_results(results, tmp_path / "out.xlsx", fmt="pdf")
    assert export_results(results, tmp_path / "noext", fmt="csv").read_bytes().startswith(b"\xef\xbb\xbfid,")


# ---- csv and parquet ----------------------------------------------------------------------------

def test_csv_prefixes_formula_looking_text_with_a_quote(tmp_path, results):
    path = export_results(results, tmp_path / "out.csv")
    with open(path, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0][:3] == ["id", "name", "score"]
    assert rows[2][6] == "'" + HYPERLINK
    assert rows[4][6] == "'-1 but text"
    assert rows[1][4] == "TRUE" and rows[1][3] == "2024-01-31 09:30:00"
    assert rows[1][7] == '["a", "b"]'
    rs = make_result_set([{"n": -5, "t": "-5", "at": "@x", "tab": "\tx"}], [{"o": 1}])
    with open(export_results(rs, tmp_path / "n.csv"), encoding="utf-8-sig", newline="") as f:
        assert list(csv.reader(f))[1][:4] == ["-5", "-5", "'@x", "'\tx"]  # numbers stay numbers, as text too


def test_parquet_keeps_types_and_makes_mixed_columns_text(tmp_path, results):
    frame = pd.read_parquet(export_results(results, tmp_path / "out.parquet"))
    assert frame["id"].tolist() == [0, 1, 2, 3, 4]
    assert frame["joined"].dtype.kind == "M"
    assert [None if pd.isna(v) else v for v in frame["tags"]] == ['["a", "b"]', "[]", None, '{"k": 1}', None]
    assert frame["attempts"].tolist()[:4] == [1, 1, 2, 1]
    assert frame["status"].tolist() == ["done", "done", "error", "done", "not run"]


# ---- atomic writes --------------------------------------------------------------------------------

def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


@pytest.fixture
def openpyxl_buffers(tmp_path, monkeypatch):
    """The folder where openpyxl's write-only sheets buffer their rows during this test."""
    import tempfile

    folder = tmp_path / "system-temp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def test_a_failure_while_saving_the_workbook_leaves_the_old_file_intact(tmp_path, results, monkeypatch,
                                                                       openpyxl_buffers):
    path = export_results(results, tmp_path / "report.xlsx")
    good = path.read_bytes()
    written = []

    def write_then_fail(self, filename, arcname=None, *args, **kwargs):
        if written:  # the first part is written, then the disk is full
            raise OSError(28, "No space left on device")
        written.append(arcname)
        return real_write(self, filename, arcname, *args, **kwargs)

    real_write = zipfile.ZipFile.write
    monkeypatch.setattr(zipfile.ZipFile, "write", write_then_fail)
    bigger = make_result_set(sample_records(50), [{"summary": "new"}] * 50)
    with pytest.raises(ExportError, match=r"^cannot write report.xlsx: No space left on device$"):
        export_results(bigger, path)
    assert written  # the failure happened in the middle of writing the zip
    assert path.read_bytes() == good
    assert leftovers(tmp_path) == [] and list(openpyxl_buffers.iterdir()) == []
    monkeypatch.undo()
    assert len(read_table(path)) == 5


@pytest.mark.parametrize("suffix", ["csv", "xlsx", "parquet"])
def test_a_value_that_fails_mid_write_leaves_the_old_file_intact(tmp_path, openpyxl_buffers, suffix):
    class Unprintable:
        def __str__(self):
            raise RuntimeError("cannot print this")

    path = tmp_path / f"out.{suffix}"
    path.write_bytes(b"the old file")
    outputs = [{"o": i, "t": "x"} for i in range(3000)]
    outputs[2500] = {"o": 1, "t": Unprintable()}
    with pytest.raises(RuntimeError):
        export_results(make_result_set([{"i": i} for i in range(3000)], outputs), path)
    assert path.read_bytes() == b"the old file"
    assert leftovers(tmp_path) == [] and list(openpyxl_buffers.iterdir()) == []


def test_the_new_file_has_ordinary_permissions(tmp_path, results):
    import os
    import stat

    path = export_results(results, tmp_path / "perm.xlsx")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


# ---- round trips ------------------------------------------------------------------------------------

@pytest.fixture
def input_workbook(tmp_path):
    records = sample_records(40)
    rows = [list(records[0])] + [list(r.values()) for r in records]
    return write_workbook(tmp_path / "input.xlsx", {"Reviews": rows})


@pytest.mark.parametrize("fmt", ["xlsx", "csv", "parquet"])
def test_read_export_read_gives_the_same_table(tmp_path, input_workbook, fmt):
    original = read_table(input_workbook)
    assert original["id"].dtype == np.int64 and original["joined"].dtype.kind == "M"
    outputs = [{"summary": "=" * (i % 2) + f"row {i}", "n": i * 1.5} for i in range(len(original))]
    rs = result_set_from_frame(original, outputs, failures={3: ("s", "StepError", "boom")})
    back = read_table(export_results(rs, tmp_path / f"out.{fmt}"))
    inputs = back[list(original.columns)]
    for name in original.columns:
        assert_same_values(original[name], inputs[name])
    assert back["summary"].tolist()[:2] == ["row 0", ("'=" if fmt == "csv" else "=") + "row 1"]  # csv: OWASP quote
    assert back["n"].tolist()[:3] == [0, 1.5, 3]
    assert back["status"].tolist()[2:5] == ["done", "error", "done"]


@pytest.mark.parametrize("fmt", ["xlsx", "csv", "parquet"])
def test_write_table_round_trips_a_plain_frame(tmp_path, input_workbook, fmt):
    original = read_table(input_workbook)
    back = read_table(write_table(original, tmp_path / f"plain.{fmt}"))
    assert list(back.columns) == list(original.columns)
    for name in original.columns:
        assert_same_values(original[name], back[name])
    if fmt == "xlsx":
        assert openpyxl.load_workbook(tmp_path / "plain.xlsx").sheetnames == ["Data"]


def test_a_stopped_row_is_called_stopped_in_the_export_as_in_the_window(tmp_path):
    from batchgrid.core.run import events as ev
    from batchgrid.core.run.results import ResultSet
    from batchgrid.core.table import Table

    results = [ev.RowResult(0, ev.DONE, {"o": "x"}), ev.RowResult(1, ev.CANCELLED, {}, error="stopped before this row finished")]
    rs = ResultSet(Table.from_records([{"a": 1}, {"a": 2}]), ["o"], results)
    frame = read_table(export_results(rs, tmp_path / "s.csv"))
    assert frame["status"].tolist() == ["done", "stopped"]
