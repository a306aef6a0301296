"""Reading workbooks: values as Excel shows them, header and sheet choice, files by content."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import zipfile

import numpy as np
import pandas as pd
import pytest

from batchgrid.core.util.errors import InputError
from batchgrid.core.table import list_sheets, preview, read_table
from batchgrid.core.table.frame import notes_of
from table_fixtures import CORPUS, big_xlsx, write_workbook

needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"corpus not found at {CORPUS}")


def corpus(name: str):
    return CORPUS / name


# ---- values as Excel shows them (files from the corpus) ----------------------------------------

@needs_corpus
@pytest.mark.parametrize("name", ["date.xlsx", "date.xls", "date.xlsb", "date.ods",
                                  "date_1904.xlsx", "date_1904.xls", "date_1904.xlsb"])
def test_dates_in_both_date_systems_read_as_excel_shows_them(name):
    frame = read_table(corpus(name), header_row=0)
    assert frame["column_1"][0] == dt.datetime(2021, 1, 1)
    assert frame["column_2"].tolist()[:2] == [15, 16]
    if name == "date.ods":
        assert frame["column_1"].tolist()[1:3] == [dt.datetime(2021, 1, 1, 10, 10, 10), dt.time(10, 10, 10)]
    else:
        assert frame["column_1"][1] == dt.datetime(2021, 1, 2)
        shown = "255:10:10" if name.endswith((".xlsx", ".xls")) else dt.timedelta(hours=255, minutes=10, seconds=10)
        assert frame["column_1"][2] == shown  # xlsx, xls: the duration as Excel shows it (tests/test_excel_values.py)


def test_a_1904_workbook_written_elsewhere_gives_the_same_dates(tmp_path):
    days = [dt.datetime(2024, 2, 29), dt.datetime(1999, 12, 31, 23, 59)]
    for epoch_1904 in (False, True):
        path = write_workbook(tmp_path / f"d{epoch_1904}.xlsx", {"S": [["day"], *[[d] for d in days]]},
                              epoch_1904=epoch_1904)
        frame = read_table(path)
        assert frame["day"].dtype.kind == "M"
        assert frame["day"].tolist() == days


@needs_corpus
@pytest.mark.parametrize("name", ["merged_range.xlsx", "merged_range.xls"])
def test_merged_cells_show_their_value_in_every_cell_they_cover(name):
    frame = read_table(corpus(name), sheet="Sheet2")
    assert list(frame.columns) == ["A1", "B1", "C1", "C1_2", "E1", "F1"]  # C1:D2 merged across
    assert frame["A1"].tolist() == ["A1", "A1", "A1"]                    # A1:A4 merged down
    assert frame["C1"].tolist() == ["C1", "C3", "C3"]                    # C3:D4 merged
    assert frame["C1_2"].tolist() == ["C1", "C3", "C3"]
    assert frame["B1"].tolist() == ["B1", "B3", "B4"]                    # not merged below row 2


@needs_corpus
def test_rich_text_reads_as_its_plain_text():
    frame = read_table(corpus("richtext-after-plain.xlsx"))
    assert list(frame.columns) == ["abcd", "abcd_2", "abcd_3", "abcd_4"]
    assert frame.iloc[0].tolist() == ["tvalrval1rval2", "rval1rval2", "rval1rval2", "rval1rval2"]


@needs_corpus
def test_error_cells_read_as_the_text_excel_shows():
    frame = read_table(corpus("errors.xlsx"), header_row=0)
    assert frame["column_1"].tolist() == ["#DIV/0!", "#NAME?", "#VALUE!", "#NULL!", "#REF!", "#NUM!", "#N/A"]


@needs_corpus
@pytest.mark.parametrize("name", ["issues.xlsx", "issues.xls", "issues.xlsb", "issues.ods"])
def test_numbers_text_booleans_and_dates_keep_their_kind(name):
    values = read_table(corpus(name), sheet="datatypes", header_row=0)["column_1"].tolist()
    assert values[:5] == [1, 1.5, "ab", False, "test"]
    assert type(values[0]) is int and type(values[3]) is bool
    assert values[5] == dt.datetime(2016, 10, 20)


@needs_corpus
@pytest.mark.parametrize("name, expected", [("shared_formula_simple.xlsx", [2, 4, 6]), ("xls_formula.xls", None)])
def test_formulas_give_their_cached_values(name, expected):
    frame = read_table(corpus(name), header_row=0)
    if expected:
        assert frame["column_2"].tolist() == expected
    else:
        assert frame["column_1"].tolist() == [10, 20, 110, 65]


@needs_corpus
def test_a_note_above_the_table_is_not_its_header_unless_chosen():
    found = read_table(corpus("header-row.xlsx"))  # a lone "Note 1" in row 3, the table's header in row 9
    assert list(found.columns) == ["Columns", "Column A", "Column B", "Column C"]
    assert 'rows 3-8 look like a title: "Note 1"' in notes_of(found)[0]
    frame = read_table(corpus("header-row.xlsx"), header_row=9)  # the row number Excel shows
    assert list(frame.columns) == ["Columns", "Column A", "Column B", "Column C"]
    assert frame.iloc[0].tolist() == ["put data here", 1, 2, 3]
    assert list(read_table(corpus("header-row.xlsx"), header_row=3).columns) == ["column_1", "column_2", "Note 1",
                                                                                  "column_4"]


@needs_corpus
def test_leading_empty_rows_and_columns_are_skipped():
    frame = read_table(corpus("temperature-in-middle.xlsx"))  # the table starts at B4
    assert list(frame.columns) == ["label", "value"]
    assert frame["label"].tolist() == ["celsius", "fahrenheit"]
    assert frame["value"].tolist() == [22.2222, 72]


@needs_corpus
def test_sheets_are_listed_and_the_first_visible_non_empty_one_is_the_default():
    path = corpus("any_sheets.xlsx")
    assert list_sheets(path) == ["Visible", "Hidden", "VeryHidden"]  # a chart sheet holds no table
    assert preview(path).sheet == "Visible"
    with pytest.raises(InputError, match=r"^sheet 'Data' not found in any_sheets.xlsx; sheets are: "
                                         r"'Visible', 'Hidden', 'VeryHidden'$"):
        read_table(path, sheet="Data")
    with pytest.raises(InputError, match="sheet 'Hidden' of any_sheets.xlsx is empty"):
        read_table(path, sheet="Hidden")


# ---- values, names and types (workbooks written here) -----------------------------------------

def test_blank_and_repeated_header_cells_get_unique_visible_names(tmp_path):
    path = write_workbook(tmp_path / "h.xlsx", {"S": [["name", None, "name", " ", "column_2", 2024, "name"],
                                                      ["a", 1, "b", 2, 3, 4, "c"]]})
    frame = read_table(path)
    assert list(frame.columns) == ["name", "column_2", "name_2", "column_4", "column_2_2", "2024", "name_3"]
    assert frame.iloc[0].tolist() == ["a", 1, "b", 2, 3, 4, "c"]


def test_whole_numbers_become_ints_where_the_column_allows(tmp_path):
    path = write_workbook(tmp_path / "n.xlsx", {"S": [["whole", "blanks", "fraction", "mixed", "flag"],
                                                      [1.0, 1, 0.5, "x", True],
                                                      [2, None, 2, 3.0, False],
                                                      [3, 3, 2.25, None, True]]})
    frame = read_table(path)
    assert frame["whole"].dtype == np.int64 and frame["whole"].tolist() == [1, 2, 3]
    assert frame["blanks"].tolist() == [1, None, 3]               # a blank stays None; 1 never reads 1.0
    assert all(type(v) is int for v in frame["blanks"].dropna())
    assert frame["fraction"].dtype == np.float64
    assert frame["mixed"].tolist() == ["x", 3, None] and type(frame["mixed"][1]) is int
    assert frame["flag"].dtype == bool


def test_empty_rows_inside_the_table_are_kept_and_trailing_ones_dropped(tmp_path):
    path = write_workbook(tmp_path / "e.xlsx", {"S": [["a", "b"], [1, 2], [None, None], [3, 4], [None, None]]})
    frame = read_table(path)
    assert len(frame) == 3
    assert frame["a"].tolist() == [1, None, 3]


def test_limit_and_header_row_zero(tmp_path):
    path = write_workbook(tmp_path / "l.xlsx", {"S": [[i, f"t{i}"] for i in range(50)]})
    frame = read_table(path, header_row=0, limit=5)
    assert list(frame.columns) == ["column_1", "column_2"]
    assert frame["column_1"].tolist() == [0, 1, 2, 3, 4]
    assert len(read_table(path, limit=0)) == 0


def test_sheet_by_index_by_name_and_case_insensitively(tmp_path):
    path = write_workbook(tmp_path / "s.xlsx", {"Empty": [], "Data": [["x"], [1]], "More": [["y"], [2]]})
    assert list_sheets(path) == ["Empty", "Data", "More"]
    assert list(read_table(path).columns) == ["x"]           # the first non-empty sheet
    assert list(read_table(path, sheet="").columns) == ["x"]
    assert list(read_table(path, sheet=2).columns) == ["y"]  # 0-based, like pandas
    assert list(read_table(path, sheet="more").columns) == ["y"]
    with pytest.raises(InputError, match=r"has no sheet number 5 \(counting from 0\); sheets are: 'Empty', 'Data', 'More'"):
        read_table(path, sheet=5)


def test_a_header_row_below_the_data_is_a_clear_error(tmp_path):
    path = write_workbook(tmp_path / "b.xlsx", {"S": [["a"], [1]]})
    with pytest.raises(InputError, match=r"^header row 7 is below the last row with data \(row 2\) in b.xlsx$"):
        read_table(path, header_row=7)


# ---- files are recognised by content ---------------------------------------------------------

@needs_corpus
def test_a_misnamed_workbook_is_read_by_its_content(tmp_path):
    shutil.copy(corpus("date.xls"), tmp_path / "really-xls.xlsx")
    shutil.copy(corpus("issues.xlsx"), tmp_path / "no_extension")
    shutil.copy(corpus("date.ods"), tmp_path / "report.csv")
    assert read_table(tmp_path / "really-xls.xlsx", header_row=0)["column_2"].tolist() == [15, 16, 17]
    assert list_sheets(tmp_path / "no_extension")[0] == "datatypes"
    assert read_table(tmp_path / "report.csv", header_row=0)["column_2"].tolist() == [15, 16, 17, 18]


def test_a_csv_named_xlsx_is_read_as_csv(tmp_path):
    (tmp_path / "data.xlsx").write_text("name;score\nAnna;3\nBen;4\n", encoding="utf-8")
    frame = read_table(tmp_path / "data.xlsx")
    assert frame.to_dict("list") == {"name": ["Anna", "Ben"], "score": [3, 4]}


@pytest.mark.parametrize("content, words", [
    (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", "it looks like a PDF document"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "it looks like a PNG image"),
    (b"\xff\xd8\xff\xe0\x00\x10JFIF", "it looks like a JPEG image"),
    (b"<!DOCTYPE html><html><body><p>Your session has expired.</p></body></html>",
     "a web page (HTML) with no table in it"),
    (b'<?xml version="1.0"?><Workbook xmlns="urn:schemas-microsoft-com:office:spreadsheet">',
     "the Excel 2003 XML spreadsheet is damaged (it is not well-formed XML at line 1)"),
    (b'<?xml version="1.0"?><catalog><book id="1"/></catalog>', "it looks like an XML file"),
    (b"\x00\x01\x02\x03\x00\x00\xfe\xff" * 100, "binary file"),
    (b"", "is empty"),
    (b"\n\n  \n", "is empty"),
])
def test_files_that_are_not_spreadsheets_are_named(tmp_path, content, words):
    path = tmp_path / "report.xlsx"
    path.write_bytes(content)
    with pytest.raises(InputError) as info:
        read_table(path)
    message = str(info.value)
    assert words in message and "report.xlsx" in message and "\n" not in message


@pytest.mark.parametrize("inside, words", [
    ({"word/document.xml": "<w/>", "[Content_Types].xml": "wordprocessingml"}, "a Word document"),
    ({"mimetype": "application/vnd.oasis.opendocument.text", "content.xml": "<x/>"}, "a text document (ODT)"),
    ({"notes.txt": "hello"}, "a zip archive"),
])
def test_zip_files_that_are_not_workbooks_are_named(tmp_path, inside, words):
    path = tmp_path / "book.xlsx"
    with zipfile.ZipFile(path, "w") as z:
        for name, text in inside.items():
            z.writestr(name, text)
    with pytest.raises(InputError, match=re.escape(f"book.xlsx is not a spreadsheet (it looks like {words}")):
        read_table(path)


@needs_corpus
def test_a_truncated_workbook_is_damaged(tmp_path):
    data = corpus("issues.xlsx").read_bytes()
    (tmp_path / "cut.xlsx").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"^cut.xlsx is damaged or incomplete"):
        read_table(tmp_path / "cut.xlsx")


def test_missing_files_and_folders(tmp_path):
    with pytest.raises(InputError, match=r"^nope.xlsx: no such file"):
        read_table(tmp_path / "nope.xlsx")
    (tmp_path / "dir.xlsx").mkdir()
    with pytest.raises(InputError, match="dir.xlsx is a folder"):
        read_table(tmp_path / "dir.xlsx")


# ---- preview ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def big_workbook(tmp_path_factory):
    """300,000 rows with a shared-strings table, as Excel writes them (~40 MB of XML)."""
    return big_xlsx(tmp_path_factory.mktemp("big") / "big.xlsx", 300_000)


def test_preview_of_a_big_workbook_is_quick_and_matches_the_full_read(big_workbook):
    import time

    started = time.perf_counter()
    shown = preview(big_workbook)
    seconds = time.perf_counter() - started
    assert seconds < 1.0
    assert shown.sheets == ["Data"] and shown.sheet == "Data" and shown.kind == "xlsx"
    assert shown.columns == ["id", "name", "score", "day"]
    assert len(shown.frame) == 200 and not shown.complete
    full = read_table(big_workbook)
    assert len(full) == 300_000
    pd.testing.assert_frame_equal(shown.frame, full.head(200))
    assert full["name"].iloc[-1] == "customer 299999"
    assert full["day"].dtype.kind == "M"
    assert shown.frame["score"][1] == full["score"][1] == "#DIV/0!"


def test_preview_of_a_small_table_is_complete(tmp_path):
    path = write_workbook(tmp_path / "s.xlsx", {"S": [["a"], [1], [2]]})
    shown = preview(path, rows=1)
    assert shown.complete is False and shown.frame["a"].tolist() == [1]
    assert preview(path, rows=2).complete is True


# ---- parquet ----------------------------------------------------------------------------------

def test_parquet_is_read_with_its_types_and_previewed(tmp_path):
    frame = pd.DataFrame({"id": [1, 2, None], "name": ["a", "b", "c"], "score": [0.5, 1.5, 2.5]})
    frame["id"] = frame["id"].astype("Int64")
    frame.to_parquet(tmp_path / "t.parquet")
    back = read_table(tmp_path / "t.parquet")
    assert list(back.columns) == ["id", "name", "score"]
    assert back["id"].tolist() == [1, 2, None]  # ints with a blank stay ints, the blank None (not pd.NA)
    assert back["score"].tolist() == [0.5, 1.5, 2.5]
    shown = preview(tmp_path / "t.parquet", rows=2)
    assert shown.kind == "parquet" and shown.sheets == ["t"] and len(shown.frame) == 2 and not shown.complete


def test_a_damaged_parquet_file_is_a_clear_error(tmp_path):
    pd.DataFrame({"a": range(100)}).to_parquet(tmp_path / "ok.parquet")
    data = (tmp_path / "ok.parquet").read_bytes()
    (tmp_path / "cut.parquet").write_bytes(data[:200])
    with pytest.raises(InputError, match=r"^cut.parquet cannot be read: the file is damaged or not a valid parquet file"):
        read_table(tmp_path / "cut.parquet")


# ---- markup saved as .xls: Excel 2003 XML and HTML tables ------------------------------------

def test_an_excel_2003_xml_workbook_reads_with_its_types_and_sheets(tmp_path):
    import hostile_files

    path = hostile_files.spreadsheetml_2003(tmp_path / "export.xls")
    assert list_sheets(path) == ["Report", "Other"]
    frame = read_table(path)
    assert frame.columns.tolist() == ["id", "name", "when"]
    assert frame["id"].tolist()[0] == 1 and pd.isna(frame["id"].tolist()[1])
    assert frame["name"].tolist() == ["Zoë", "no id"]
    assert frame["when"][0] == dt.datetime(2024, 1, 31)
    assert read_table(path, sheet="other")["x"].tolist() == [True]
    assert preview(path).kind == "xml2003"


def test_an_html_table_saved_as_xls_reads_like_a_csv(tmp_path):
    path = tmp_path / "export.xls"
    path.write_text('<html><body><table><tr><td colspan="2">layout</td></tr></table>'
                    '<table><tr><th>zip</th><th>amount</th><th>city</th></tr>'
                    '<tr><td>007</td><td>2.5</td><td rowspan="2">Köln</td></tr>'
                    '<tr><td>010</td><td>10</td></tr></table></body></html>', encoding="cp1252")
    assert list_sheets(path) == ["Table 1", "Table 2"]
    frame = read_table(path)  # the biggest table
    assert frame.to_dict("list") == {"zip": ["007", "010"], "amount": [2.5, 10.0], "city": ["Köln", "Köln"]}
    assert preview(path).kind == "html"


def test_an_excel_95_file_in_a_codepage_calamine_lacks_is_read_by_xlrd(tmp_path):
    import hostile_files

    path = hostile_files.mac_central_european_xls(tmp_path / "kraje.xls")  # calamine: "Codepage 272D not found"
    assert list_sheets(path) == ["Data"]
    assert read_table(path).to_dict("list") == {"id": [1, 2], "město": ["Łódź", "Brno"]}


def test_an_excel_4_worksheet_is_read_by_xlrd(tmp_path):
    import hostile_files

    path = hostile_files.biff4_xls(tmp_path / "old.xls")
    assert read_table(path).to_dict("list") == {"id": [1, 2], "name": ["Zoë", "b"]}
    assert preview(path).kind == "xls-old"
