"""The exported workbook opens in LibreOffice: `--headless --convert-to csv` reads every
sheet back to the values we wrote. Skipped when LibreOffice is not installed
(Debian: apt-get install --no-install-recommends libreoffice-calc-nogui).
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from batchgrid.core.table import export_results, read_table
from table_fixtures import assert_same_values, make_result_set, sample_records

SOFFICE = shutil.which("libreoffice") or shutil.which("soffice")
# CSV, comma, double quotes, UTF-8, ..., -1: every sheet to its own file (LibreOffice 7.2+)
ALL_SHEETS_CSV = "csv:Text - txt - csv (StarCalc):44,34,76,1,,0,false,true,false,false,false,-1"

pytestmark = pytest.mark.skipif(SOFFICE is None, reason="LibreOffice (libreoffice/soffice) is not on PATH")


def libreoffice_csv(path, folder) -> dict:
    """Sheet name -> the CSV LibreOffice writes for it."""
    profile = folder / "profile"  # a private profile: no clash with a running LibreOffice
    done = subprocess.run([SOFFICE, f"-env:UserInstallation={profile.as_uri()}", "--headless",
                           "--convert-to", ALL_SHEETS_CSV, "--outdir", str(folder), str(path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    sheets = {p.stem.removeprefix(path.stem + "-"): p for p in folder.glob("*.csv")}
    assert sheets, f"LibreOffice wrote nothing: {done.stdout} {done.stderr}"
    return sheets


@pytest.fixture
def exported(tmp_path):
    records = sample_records(30)
    outputs = [{"summary": f"text {i}", "formula": '=HYPERLINK("http://x","click")', "data": {"i": i}}
               for i in range(30)]
    rs = make_result_set(records, outputs, failures={4: ("summarise", "StepError", "HTTP 400")},
                         run_info={"input file": "in.xlsx", "max_concurrency": 4})
    return export_results(rs, tmp_path / "report.xlsx")


def test_libreoffice_reads_back_every_sheet(exported, tmp_path):
    sheets = libreoffice_csv(exported, tmp_path / "lo")
    names = ["Results", "Errors", "Run"] if len(sheets) > 1 else ["report"]  # older LibreOffice: first sheet only
    assert sorted(sheets) == sorted(names)
    for name in names:
        ours = read_table(exported, sheet="Results" if name == "report" else name)
        theirs = read_table(sheets[name])
        assert list(theirs.columns) == list(ours.columns)
        if name == "Run":  # a column of mixed values: a CSV gives it back as text
            assert theirs["value"].tolist() == [shown(v) for v in ours["value"]]
            continue
        for column in ours.columns:
            assert_same_values(ours[column], theirs[column], rel_tol=1e-9)  # LibreOffice prints 15 digits


def shown(value) -> str | None:
    if value is None:  # a section heading's empty value
        return None
    return value.strftime("%Y-%m-%d %H:%M:%S") if hasattr(value, "strftime") else str(value)


def test_formula_looking_text_is_text_for_libreoffice_too(exported, tmp_path):
    sheets = libreoffice_csv(exported, tmp_path / "lo")
    results = read_table(sheets.get("Results") or sheets["report"])
    assert set(results["formula"]) == {'=HYPERLINK("http://x","click")'}  # never evaluated to "click"
