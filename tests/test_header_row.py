"""The header row: a title block above the table is found and said; the user's choice (the
session's header_row, the CLI's --header-row, the pipeline's header_row setting) wins."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import openpyxl
import pandas as pd
import pytest

from batchgrid.core.pipeline import Pipeline
from batchgrid.core.session import Session
from batchgrid.core.table import preview, read_table
from batchgrid.core.table.frame import notes_of
from batchgrid.core.util.errors import InputError, PipelineError
from table_fixtures import write_workbook

SALES = [
    ["Sales report Q3"],
    [],
    ["region", "units", "price"],
    ["North", 3, 2.5],
    ["South", 4, 1.25],
    ["East", 7, 3.0],
]


def xlsx(tmp_path: Path, rows, name: str = "report.xlsx") -> Path:
    return write_workbook(tmp_path / name, {"Data": rows})


# ---- a title block above the table ------------------------------------------------------------

def test_a_title_and_a_blank_row_above_the_header(tmp_path):
    frame = read_table(xlsx(tmp_path, SALES))
    assert list(frame.columns) == ["region", "units", "price"]
    assert frame["region"].tolist() == ["North", "South", "East"]
    assert frame["units"].dtype == "int64" and frame["units"].tolist() == [3, 4, 7]  # numbers, not text
    assert frame["price"].tolist() == [2.5, 1.25, 3.0]
    assert notes_of(frame) == ['the table\'s header is row 3 (rows 1-2 look like a title: "Sales report Q3"); '
                               "to choose another, right-click a row ▸ Use as header (or --header-row N)"]
    assert (frame.attrs["header_row"], frame.attrs["first_row"]) == (3, 4)


def test_a_merged_title_a_subtitle_and_a_date_line_then_the_header(tmp_path):
    book = openpyxl.Workbook()
    sheet = book.active
    sheet["A1"] = "ACME Corp — quarterly sales"
    sheet.merge_cells("A1:E1")
    sheet["A2"] = "All regions, in thousands"
    sheet["A3"] = dt.datetime(2024, 10, 1)
    for row in (["id", "region", "rep", "units", "total"], [1, "North", "Ada", 3, 7.5], [2, "South", "Bo", 4, 10.0]):
        sheet.append(row)
    book.save(tmp_path / "acme.xlsx")
    frame = read_table(tmp_path / "acme.xlsx")
    assert list(frame.columns) == ["id", "region", "rep", "units", "total"]
    assert frame.to_dict("list") == {"id": [1, 2], "region": ["North", "South"], "rep": ["Ada", "Bo"],
                                     "units": [3, 4], "total": [7.5, 10.0]}
    assert 'header is row 4 (rows 1-3 look like a title: "ACME Corp — quarterly sales")' in notes_of(frame)[0]


def test_a_label_and_value_line_over_a_wide_table_is_part_of_the_title(tmp_path):
    rows = [["Inventory"], ["Generated:", dt.datetime(2024, 10, 1)], [],
            ["sku", "name", "", "stock", "price", "shelf"],  # a header with a blank cell is still the header
            ["A-1", "bolt", "x", 10, 0.5, "B2"], ["A-2", "nut", None, 25, 0.25, "B3"]]
    frame = read_table(xlsx(tmp_path, rows))
    assert list(frame.columns) == ["sku", "name", "column_3", "stock", "price", "shelf"]
    assert frame["stock"].tolist() == [10, 25]
    assert frame.attrs["header_row"] == 4


def test_a_lone_notes_line_above_the_table(tmp_path):
    frame = read_table(xlsx(tmp_path, [["Notes:"], ["name", "score"], ["Ada", 9], ["Bo", 7]]))
    assert list(frame.columns) == ["name", "score"] and frame["score"].tolist() == [9, 7]
    assert 'row 1 looks like a title: "Notes:"' in notes_of(frame)[0]


def test_a_title_line_in_a_csv(tmp_path):
    path = tmp_path / "export.csv"
    path.write_text("Exported from CRM\n\nid,name,amount\n1,Ada,10.5\n2,Bo,3\n", encoding="utf-8")
    frame = read_table(path)
    assert list(frame.columns) == ["id", "name", "amount"]
    assert frame["id"].tolist() == [1, 2] and frame["amount"].tolist() == [10.5, 3.0]
    assert "header is row 3" in notes_of(frame)[0]


@pytest.mark.parametrize("rows, columns", [
    ([["name"], ["Ada"], ["Bo"]], ["name"]),                                     # one column: its first row
    ([["a", "b", "c"], [1, 2, 3]], ["a", "b", "c"]),                             # a table that starts with its header
    ([["id", None, "note", None], [1, 2, 3, 4]], ["id", "column_2", "note", "column_4"]),  # half of it named
    ([["Notes:"]], ["Notes:"]),                                                  # only a lone line
    ([["Total", 5], ["a", "b", "c", "d"], [1, 2, 3, 4]], ["Total", "5", "column_3", "column_4"]),  # 2 of 4 cells
    ([["Q1", "Q1", "Q2", "Q2"], ["jan", "feb", "apr", "may"], [1, 2, 3, 4]], ["Q1", "Q1_2", "Q2", "Q2_2"]),  # 2 rows
])
def test_tables_that_start_with_their_header_are_read_as_before(tmp_path, rows, columns):
    frame = read_table(xlsx(tmp_path, rows))
    assert list(frame.columns) == columns
    assert notes_of(frame) == []
    assert (frame.attrs["header_row"], frame.attrs["first_row"]) == (1, 2)


def test_the_preview_says_where_the_header_and_the_first_row_are(tmp_path):
    path = xlsx(tmp_path, [[]] * 2 + SALES)  # the title in row 3, the header in row 5
    shown = preview(path)
    assert (shown.header_row, shown.first_row) == (5, 6) and shown.columns == ["region", "units", "price"]
    assert preview(path, header_row=0).first_row == 3  # from the first row with a value
    assert (preview(path, header_row=4).header_row, preview(path, header_row=4).first_row) == (4, 5)


# ---- the user's header row --------------------------------------------------------------------

async def test_the_session_reads_the_header_row_asked_for(tmp_path):
    path = xlsx(tmp_path, SALES)
    session = Session(journal_path=tmp_path / "j.sqlite")
    found = await session.open_sheet(path)
    assert found is not None and found.table.columns == ["region", "units", "price"]
    assert (found.header_row, found.first_row, found.header_asked) == (3, 4, None)
    assert found.sheet_row(2) == 6 and found.table.row(2) == {"region": "East", "units": 7, "price": 3.0}

    none = await session.open_sheet(path, header_row=0)
    assert none is not None and none.table.columns == ["column_1", "column_2", "column_3"]
    assert none.table.column("column_1") == ["Sales report Q3", None, "region", "North", "South", "East"]
    assert (none.header_row, none.first_row) == (0, 1)

    chosen = await session.open_sheet(path, header_row=4)  # a data row as the header
    assert chosen is not None and chosen.table.columns == ["North", "3", "2.5"]
    assert chosen.table.column("3") == [4, 7] and chosen.first_row == 5

    with pytest.raises(InputError, match=r"^header row 40 is below the last row with data \(row 6\) in report.xlsx$"):
        await session.open_sheet(path, header_row=40)
    await session.close()


async def test_a_big_sheet_is_read_whole_with_the_same_header(tmp_path):
    path = tmp_path / "big.csv"
    path.write_text("Monthly export\n\nn,square\n" + "".join(f"{i},{i * i}\n" for i in range(500)), encoding="utf-8")
    session = Session(journal_path=tmp_path / "j.sqlite")
    seen = []
    sheet = await session.open_sheet(path, on_preview=lambda s: seen.append((s.complete, s.header_row, s.first_row)))
    assert seen == [(False, 3, 4)]
    assert sheet is not None and sheet.complete and len(sheet.table) == 500
    assert (sheet.header_row, sheet.first_row) == (3, 4) and sheet.table.column("square")[-1] == 499 * 499
    assert sheet.table.notes and "header is row 3" in sheet.table.notes[0]
    await session.close()


async def test_the_pipeline_setting_chooses_the_header_and_a_change_is_seen(tmp_path):
    path = xlsx(tmp_path, SALES)
    session = Session(journal_path=tmp_path / "j.sqlite")
    session.set_pipeline(Pipeline.from_dict({"version": 1, "settings": {"header_row": 0}, "steps": []}))
    sheet = await session.open_sheet(path)
    assert sheet is not None and sheet.table.columns == ["column_1", "column_2", "column_3"]
    assert sheet.header_asked == 0 and not session.header_differs()
    session.pipeline.settings["header_row"] = None  # found by itself (another pipeline opened, say): read again
    assert session.header_differs()
    sheet = await session.open_sheet(path)
    assert sheet is not None and sheet.table.columns == ["region", "units", "price"] and sheet.header_row == 3
    session.pipeline.settings["header_row"] = 3  # the row it found: the same table, no need to read it again
    assert not session.header_differs()
    session.pipeline.settings["header_row"] = 4
    assert session.header_differs()
    sheet = await session.open_sheet(path, header_row=3)  # asked for: wins over the pipeline
    assert sheet is not None and sheet.header_row == 3 and session.header_differs()
    await session.close()


def test_a_parquet_file_says_a_header_row_does_not_apply(tmp_path):
    path = tmp_path / "t.parquet"
    pd.DataFrame({"a": [1, 2]}).to_parquet(path)
    frame = read_table(path, header_row=3)
    assert list(frame.columns) == ["a"]
    assert notes_of(frame) == ["header row 3 does not apply to t.parquet: a parquet file's columns have their names"]
    assert notes_of(read_table(path)) == [] and preview(path).header_row is None


# ---- the pipeline file's header_row setting -----------------------------------------------------

def test_the_header_row_setting_round_trips_through_the_file(tmp_path):
    pipeline = Pipeline.from_dict({"version": 1, "steps": []})
    assert pipeline.settings["header_row"] is None and "settings" not in pipeline.to_dict()  # unset: not written
    for value in (3, 0):
        pipeline.settings["header_row"] = value
        pipeline.save(tmp_path / "p.json")
        assert json.loads((tmp_path / "p.json").read_text())["settings"] == {"header_row": value}
        assert Pipeline.load(tmp_path / "p.json").settings["header_row"] == value


@pytest.mark.parametrize("value, message", [
    (-1, "settings.header_row: must be at least 0"),
    ("3", 'settings.header_row: must be a whole number, not "3"'),
    (2.5, "settings.header_row: must be a whole number, not 2.5"),
])
def test_a_bad_header_row_setting_is_one_line(value, message):
    with pytest.raises(PipelineError) as caught:
        Pipeline.from_dict({"version": 1, "settings": {"header_row": value}, "steps": []})
    assert [str(p) for p in caught.value.problems] == [message]


# ---- the CLI's --header-row ---------------------------------------------------------------------

def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "batchgrid.core.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def report(tmp_path):
    pipeline = tmp_path / "p.json"
    pipeline.write_text(json.dumps({"version": 1, "steps": [
        {"type": "template", "template": "{region}: {units}", "output": "line"}]}))
    return tmp_path, pipeline, xlsx(tmp_path, SALES)


def test_run_finds_the_header_under_the_title_and_says_so(report):
    tmp, pipeline, data = report
    out = tmp / "out.csv"
    result = cli("run", pipeline, data, "-o", out, "--journal", tmp / "j.sqlite")
    assert result.returncode == 0, result.stderr
    assert "batchgrid: note: the table's header is row 3 (rows 1-2 look like a title" in result.stderr
    assert pd.read_csv(out)["line"].tolist() == ["North: 3", "South: 4", "East: 7"]


def test_run_header_row_flag_and_pipeline_setting(report):
    tmp, _, data = report
    out = tmp / "out.csv"
    numbered = tmp / "numbered.json"  # saved with "No header row": every row is data, columns column_1...
    numbered.write_text(json.dumps({"version": 1, "settings": {"header_row": 0}, "steps": [
        {"type": "template", "template": "{column_1}", "output": "line"}]}))
    result = cli("run", numbered, data, "-o", out, "--journal", tmp / "j.sqlite")
    assert result.returncode == 0, result.stderr
    assert "note" not in result.stderr  # the header row was chosen: nothing to say
    assert pd.read_csv(out, keep_default_na=False)["line"].tolist() == [
        "Sales report Q3", "", "region", "North", "South", "East"]
    result = cli("run", numbered, data, "-o", out, "--journal", tmp / "j.sqlite", "--header-row", 3)  # the flag wins
    assert result.returncode == 2
    assert 'unknown column "column_1"; columns are: region, units, price' in result.stderr
    result = cli("run", numbered, data, "-o", out, "--journal", tmp / "j.sqlite", "--header-row", 4, "--limit", 1)
    assert result.returncode == 2 and "columns are: North, 3, 2.5" in result.stderr  # a data row as the header


def test_check_with_header_row(report):
    tmp, pipeline, data = report
    result = cli("check", pipeline, data, "--header-row", 3)
    assert result.returncode == 0, result.stderr
    assert "(1 steps, 3 rows)" in result.stdout and "note" not in result.stderr  # chosen: nothing to say
    result = cli("check", pipeline, data, "--header-row", 0)
    assert result.returncode == 2 and "region" in result.stderr


@pytest.mark.parametrize("args, fragment", [
    (("--header-row", 9), "header row 9 is below the last row with data (row 6) in report.xlsx"),
    (("--header-row", -1), "--header-row must be 0 (no header row) or the header's row number, 1 or more"),
    (("--header-row", "three"), "'three' is not a whole number"),
])
def test_a_bad_header_row_is_one_line(report, args, fragment):
    tmp, pipeline, data = report
    for command in (("run", pipeline, data, "-o", tmp / "out.csv", "--journal", tmp / "j.sqlite"),
                    ("check", pipeline, data)):
        result = cli(*command, *args)
        err = result.stderr.strip()
        assert result.returncode == 2 and err.startswith("batchgrid: error: ") and "\n" not in err, err
        assert fragment in err and "Traceback" not in err
    assert not (tmp / "out.csv").exists()
