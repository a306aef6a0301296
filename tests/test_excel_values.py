"""Workbook values as Excel shows them (issue 11): formulas without a saved result, error
cells, number formats. Every workbook is built here (openpyxl, XlsxWriter, or XML parts)."""

from __future__ import annotations

import datetime as dt
import pickle
import zipfile
from pathlib import Path

import openpyxl
import xlsxwriter
from batchgrid.core.table import read_table
from batchgrid.core.table.columnar import Table
from batchgrid.core.table.frame import notes_of
from batchgrid.core.table.numfmt import ShownNumber
from batchgrid.core.util.template import render

NS = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"


def xml_xlsx(path: Path, rows: str, *, formats: str = "", xfs: str = '<xf numFmtId="0"/>',
             workbook_pr: str = "") -> Path:
    """A one-sheet xlsx written as XML parts: what no library writes (cells without r=, 1904)."""
    parts = {
        "[Content_Types].xml": '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
        '<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
        '<Override PartName="/xl/styles.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>'
        "</Types>",
        "_rels/.rels": '<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        f'<Relationship Id="rId1" Type="{REL}/officeDocument" Target="xl/workbook.xml"/></Relationships>',
        "xl/_rels/workbook.xml.rels": '<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        f'<Relationship Id="rId1" Type="{REL}/worksheet" Target="worksheets/sheet1.xml"/>'
        f'<Relationship Id="rId2" Type="{REL}/styles" Target="styles.xml"/></Relationships>',
        "xl/workbook.xml": f'<?xml version="1.0"?><workbook {NS} xmlns:r="{REL}">{workbook_pr}<sheets>'
        '<sheet name="Data" sheetId="1" r:id="rId1"/></sheets></workbook>',
        "xl/styles.xml": f'<?xml version="1.0"?><styleSheet {NS}>'
        + (f"<numFmts>{formats}</numFmts>" if formats else "") + f"<cellXfs>{xfs}</cellXfs></styleSheet>",
        "xl/worksheets/sheet1.xml": f'<?xml version="1.0"?><worksheet {NS}><sheetData>{rows}</sheetData></worksheet>',
    }
    with zipfile.ZipFile(path, "w") as z:
        for name, text in parts.items():
            z.writestr(name, text)
    return path


# ---- formulas without a saved result ---------------------------------------------------------

def test_openpyxl_formulas_read_blank_with_one_note_per_column(tmp_path):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["item", "price", "total"])
    for i in range(1, 4):
        ws.append([f"item {i}", i * 10, f"=B{i + 1}*2"])
    ws.append(["sum", "=SUM(B2:B4)", "=SUM(C2:C4)"])
    path = tmp_path / "script.xlsx"
    wb.save(path)

    frame = read_table(path)
    assert frame["total"].tolist() == [None] * 4  # blank, never 0
    assert frame["price"].tolist() == [10, 20, 30, None]
    assert notes_of(frame) == [
        "column price: 1 formula has no saved result; open and save the file in Excel so they are computed",
        "column total: 4 formulas have no saved result; open and save the file in Excel so they are computed"]


def test_xlsxwriter_placeholder_zero_is_not_read_as_the_total(tmp_path):
    path = tmp_path / "report.xlsx"
    with xlsxwriter.Workbook(path) as wb:
        ws = wb.add_worksheet()
        ws.write_row(0, 0, ["n", "double"])
        for i in range(1, 4):
            ws.write_number(i, 0, i)
            ws.write_formula(i, 1, f"=A{i + 1}*2")  # XlsxWriter saves 0 as the result
        ws.write_formula(4, 1, "=SUM(B2:B4)", None, 12)  # a result the writer gave: kept
    frame = read_table(path)
    assert frame["double"].tolist() == [None, None, None, 12]
    assert notes_of(frame) == [
        "column double: 3 formulas have no saved result; open and save the file in Excel so they are computed"]


def test_formulas_with_saved_results_and_empty_text_results_stay(tmp_path):
    rows = ('<row r="1"><c r="A1" t="inlineStr"><is><t>a</t></is></c><c r="B1" t="inlineStr"><is><t>b</t></is></c></row>'
            '<row r="2"><c r="A2"><f>1+1</f><v>2</v></c><c r="B2" t="str"><f>IF(A2&gt;1,"","x")</f><v></v></c></row>'
            '<row r="3"><c r="A3"><f>0*1</f><v>0</v></c><c r="B3" t="str"><f>"y"</f><v>y</v></c></row>')
    frame = read_table(xml_xlsx(tmp_path / "excel.xlsx", rows))
    assert frame["a"].tolist() == [2, 0]
    assert frame["b"].tolist() == [None, "y"]
    assert notes_of(frame) == []


# ---- error cells -----------------------------------------------------------------------------

def test_error_cells_without_positions_keep_their_text(tmp_path):
    rows = ('<row><c t="inlineStr"><is><t>x</t></is></c><c t="inlineStr"><is><t>y</t></is></c></row>'
            '<row><c t="e"><v>#N/A</v></c><c><v>1</v></c></row>'
            '<row><c><v>2</v></c><c t="e"><v>#DIV/0!</v></c></row>'
            '<row r="7"><c r="B7" t="e"><v>#REF!</v></c></row>'
            '<row><c t="e"><v>#NAME?</v></c></row>')
    frame = read_table(xml_xlsx(tmp_path / "errors.xlsx", rows))
    assert frame["x"].tolist() == ["#N/A", 2, None, None, None, None, "#NAME?"]
    assert frame["y"].tolist() == [1, "#DIV/0!", None, None, None, "#REF!", None]


# ---- number formats --------------------------------------------------------------------------

def formatted_workbook(path: Path) -> Path:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["rate", "zip", "time", "id", "day"])
    ws.append([0.256, 42, dt.timedelta(hours=37, minutes=5), 123456789012345678, dt.datetime(2024, 1, 5)])
    ws.append([0.0125, 1234, dt.timedelta(minutes=90), 1, dt.datetime(2024, 2, 1)])
    for row in (2, 3):
        ws.cell(row, 1).number_format = "0.0%"
        ws.cell(row, 2).number_format = "00000"
        ws.cell(row, 3).number_format = "[h]:mm"
        ws.cell(row, 5).number_format = "dd/mm/yyyy"
    wb.save(path)
    return path


def test_values_read_as_their_number_format_shows_them(tmp_path):
    frame = read_table(formatted_workbook(tmp_path / "formats.xlsx"))
    assert frame["zip"].tolist() == ["00042", "01234"]
    assert frame["time"].tolist() == ["37:05", "1:30"]
    assert frame["id"].tolist() == ["123456789012346000", 1]  # 15 significant digits, as Excel shows
    assert frame["day"].tolist() == [pd_timestamp(2024, 1, 5), pd_timestamp(2024, 2, 1)]
    rates = frame["rate"].tolist()
    assert rates == [0.256, 0.0125] and [str(r) for r in rates] == ["25.6%", "1.3%"]


def pd_timestamp(*args):
    import pandas as pd

    return pd.Timestamp(dt.datetime(*args))


def test_a_percentage_is_a_number_to_steps_and_its_shown_text_to_templates(tmp_path):
    table = Table.from_frame(read_table(formatted_workbook(tmp_path / "formats.xlsx")))
    rate = table.row(0)["rate"]
    assert rate * 100 == 25.6 and rate + 0 == 0.256 and f"{rate:.2f}" == "0.26"
    assert render("rate {rate} for {zip}", table.row(0)) == "rate 25.6% for 00042"
    again = pickle.loads(pickle.dumps(rate, protocol=pickle.HIGHEST_PROTOCOL))  # through the reader process
    assert isinstance(again, ShownNumber) and again == 0.256 and str(again) == "25.6%"


def test_day_zero_and_1904_dates_keep_their_day(tmp_path):
    formats = '<numFmt numFmtId="164" formatCode="dd/mm/yyyy"/>'
    xfs = '<xf numFmtId="0"/><xf numFmtId="164" applyNumberFormat="1"/><xf numFmtId="14" applyNumberFormat="1"/>'
    rows = ('<row r="1"><c r="A1" t="inlineStr"><is><t>day</t></is></c><c r="B1" t="inlineStr"><is><t>b</t></is></c></row>'
            '<row r="2"><c r="A2" s="1"><v>0</v></c><c r="B2" s="2"><v>1</v></c></row>'
            '<row r="3"><c r="A3" s="1"><v>0.5</v></c><c r="B3" s="2"><v>-1</v></c></row>'
            '<row r="4"><c r="A4" s="1"><v>45000</v></c><c r="B4" s="2"><v>45000</v></c></row>')
    mac = read_table(xml_xlsx(tmp_path / "mac.xlsx", rows, formats=formats, xfs=xfs,
                              workbook_pr='<workbookPr date1904="1"/>'))
    assert mac["day"].tolist() == [dt.datetime(1904, 1, 1), dt.datetime(1904, 1, 1, 12), dt.datetime(2027, 3, 16)]
    assert mac["b"].tolist() == [dt.datetime(1904, 1, 2), dt.datetime(1903, 12, 31), dt.datetime(2027, 3, 16)]
    windows = read_table(xml_xlsx(tmp_path / "windows.xlsx", rows, formats=formats, xfs=xfs))
    assert windows["day"].tolist() == ["1900-01-00", "1900-01-00 12:00:00", dt.datetime(2023, 3, 15)]
    assert windows["b"].tolist()[1] == -1  # Excel cannot show it (#####): the number, not a time of day
