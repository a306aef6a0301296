"""xls and ods values as the spreadsheet shows them (issue 11): error cells keep their text
(calamine reads them as blanks), zero-padded codes, percentages and [h]:mm durations through
their number format. The files are written by LibreOffice from an xlsx built here; skipped
only when LibreOffice is not installed (Debian: libreoffice-calc-nogui).
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from pathlib import Path

import openpyxl
import pytest
from batchgrid.core.table import excel, read_table
from batchgrid.core.table.numfmt import ShownNumber
from batchgrid.core.table.sniff import ODS, XLS

SOFFICE = shutil.which("libreoffice") or shutil.which("soffice")
pytestmark = pytest.mark.skipif(SOFFICE is None, reason="LibreOffice (libreoffice/soffice) is not on PATH")


def libreoffice(source: Path, *kinds: str) -> dict[str, Path]:
    """`source` saved by LibreOffice as each of `kinds` (xls, ods); LibreOffice computes the formulas."""
    folder = source.parent / "lo"
    done = subprocess.run([SOFFICE, f"-env:UserInstallation={(folder / 'profile').as_uri()}", "--headless",
                           "--convert-to", kinds[0], "--outdir", str(folder), str(source)],
                          capture_output=True, text=True, timeout=300)
    for kind in kinds[1:]:
        done = subprocess.run([SOFFICE, f"-env:UserInstallation={(folder / 'profile').as_uri()}", "--headless",
                               "--convert-to", kind, "--outdir", str(folder), str(source)],
                              capture_output=True, text=True, timeout=300)
    out = {kind: folder / f"{source.stem}.{kind}" for kind in kinds}
    assert all(p.exists() for p in out.values()), done.stderr
    return out


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("values")
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Data"
    ws.append(["rate", "zip", "time", "check", "n"])
    ws.append([0.256, 42, dt.timedelta(hours=37, minutes=5), "=1/0", 1])
    ws.append([0.0125, 1234, dt.timedelta(minutes=90), "=NA()", 2])
    ws.append([-0.5, 7, dt.timedelta(seconds=5), '=B2+"x"', 3])
    ws.append([1, 0, dt.timedelta(0), "=#REF!", 4])
    ws.append([0.1, 99999, dt.timedelta(days=3), "=nosuchfunction()", 5])
    for row in range(2, 7):
        ws.cell(row, 1).number_format = "0.0%"
        ws.cell(row, 2).number_format = "00000"
        ws.cell(row, 3).number_format = "[h]:mm"
    errors = wb.create_sheet("Errors")  # only errors, away from A1: it must not read as empty
    errors["C3"] = "=1/0"
    errors["D4"] = "=NA()"
    source = folder / "values.xlsx"
    wb.save(source)
    return libreoffice(source, "xls", "ods")


@pytest.mark.parametrize("kind", ["xls", "ods"])
def test_error_cells_keep_their_text(converted, kind):
    frame = read_table(converted[kind])
    assert frame["check"].tolist() == ["#DIV/0!", "#N/A", "#VALUE!", "#REF!", "#NAME?"]
    assert frame["n"].tolist() == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("kind", ["xls", "ods"])
def test_a_sheet_of_errors_is_not_empty_and_keeps_its_positions(converted, kind):
    grid = excel.load(converted[kind], XLS if kind == "xls" else ODS, "Errors")[2]
    assert grid.rows == [["#DIV/0!", ""], ["", "#N/A"]]


@pytest.mark.parametrize("kind", ["xls", "ods"])
def test_codes_percentages_and_durations_read_as_shown(converted, kind):
    frame = read_table(converted[kind])
    assert frame["zip"].tolist() == ["00042", "01234", "00007", "00000", "99999"]
    assert frame["time"].tolist() == ["37:05", "1:30", "0:00", "0:00", "72:00"]
    rates = frame["rate"].tolist()
    assert all(isinstance(r, ShownNumber) for r in rates)
    assert rates == [0.256, 0.0125, -0.5, 1, 0.1]  # the number, for numeric steps
    assert [str(r) for r in rates] == ["25.6%", "1.3%", "-50.0%", "100.0%", "10.0%"]
