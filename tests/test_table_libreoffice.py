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


# ---- the report on paper (issue 11) ------------------------------------------------------------------

POPPLER = all(shutil.which(tool) for tool in ("pdftotext", "pdffonts", "pdfinfo"))


def libreoffice_pdf(path, folder):
    """The workbook printed to PDF by LibreOffice, as a user would (every sheet, its print setup)."""
    profile = folder / "profile"
    done = subprocess.run([SOFFICE, f"-env:UserInstallation={profile.as_uri()}", "--headless",
                           "--convert-to", "pdf", "--outdir", str(folder), str(path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    pdf = folder / (path.stem + ".pdf")
    assert pdf.exists(), f"LibreOffice wrote no PDF: {done.stdout} {done.stderr}"
    return pdf


def poppler(*args) -> str:
    return subprocess.run(list(args), capture_output=True, text=True, check=True, timeout=60).stdout


@pytest.mark.skipif(not POPPLER, reason="poppler-utils (pdftotext, pdffonts, pdfinfo) are not installed")
def test_the_report_prints_as_a_finished_document(tmp_path):
    from test_report_format import realistic_run

    pdf = libreoffice_pdf(export_results(realistic_run(300), tmp_path / "report.xlsx"), tmp_path)
    info = dict(line.split(":", 1) for line in poppler("pdfinfo", str(pdf)).splitlines() if ":" in line)
    pages = int(info["Pages"])
    width, height = (float(v) for v in info["Page size"].split()[0:3:2])
    assert width > height                                  # landscape
    assert pages <= 25                                     # 300 rows fitted to the width (was 69 pages)
    fonts = [line.split()[0] for line in poppler("pdffonts", str(pdf)).splitlines()[2:]]
    families = {name.split("+")[-1].split("-")[0] for name in fonts}
    assert len(families) == 1 and not any("Serif" in f for f in families), fonts  # one font, headers too
    text = [poppler("pdftotext", "-layout", "-f", str(n), "-l", str(n), str(pdf), "-") for n in range(1, pages + 1)]
    first, second = text[0], text[1]
    for header in ("customer", "review", "rating", "ordered", "sentiment", "status", "cost"):
        assert header in first and header in second        # the header row on every page
    assert "2026-04-25" in first and "0:00:00" not in first  # a date-only column shows dates
    assert "$0.0015" in first and "0.125" in first and "Customer 001" in first
    assert "of the model's context window" in first or "context window" in first  # wrapped, not clipped
    run = "\n".join(page for page in text if "Totals" in page or "step 1" in page)
    assert run.count("tokens in") == 1 and "Clean review text (trim)" in run and "output: review_clean" in run
    assert not any(line.strip() in ("{", "}") for line in run.splitlines())  # the pipeline as text, not JSON
