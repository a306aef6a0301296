"""CSV files read as the user expects: encodings, stray quotes, ragged rows, Excel's sep= line,
comment lines, DOS end of file, numbers written as text, and a note for each thing worth knowing."""

from __future__ import annotations

import codecs
import json
import subprocess
import sys

import pytest
from batchgrid.core.table import preview, read_table, textfile
from batchgrid.core.table.frame import notes_of
from batchgrid.core.util.errors import InputError


def write(tmp_path, name, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


# ---- encodings ----------------------------------------------------------------------------

def test_one_bad_byte_in_a_big_utf8_file_costs_one_line_not_the_file(tmp_path):
    rows = "".join(f"{i},naïve café {i}\n" for i in range(1, 50_000))
    data = ("id,text\n" + rows).encode("utf-8") + b"50000,bad \xff byte\n"
    frame = read_table(write(tmp_path, "big.csv", data))
    assert frame["text"][0] == "naïve café 1" and frame["text"][49_998] == "naïve café 49999"
    assert frame["text"].iloc[-1] == "bad \ufffd byte"
    assert notes_of(frame) == ["line 50,001 has bytes that are not valid UTF-8, shown as \ufffd"]


def test_bad_bytes_on_several_lines_are_summarised(tmp_path):
    lines = [f"{i},Zürich\n".encode() for i in range(1, 400)]
    for i in (10, 40, 100, 300):
        lines[i] = f"{i + 1},Z".encode() + b"\xfc" + b"rich\n"  # a Windows line pasted in
    frame = read_table(write(tmp_path, "mixed.csv", b"id,city\n" + b"".join(lines)))
    assert frame["city"][0] == "Zürich" and frame["city"][10] == "Z\ufffdrich"
    assert notes_of(frame) == ["lines 12, 42 and 2 others have bytes that are not valid UTF-8, shown as \ufffd"]


@pytest.mark.parametrize("encoding, text, note", [
    ("cp1251", "имя;город;сумма\n" + "Иван Петров;Москва;12\nОльга;Санкт-Петербург;7\n" * 20,
     "read as Cyrillic text (windows-1251); if letters look wrong, save the file as UTF-8"),
    ("shift_jis", "名前,都市,金額\n" + "田中太郎,東京都,12\n佐藤花子,大阪市,7\n" * 20,
     "read as Japanese text (Shift-JIS); if letters look wrong, save the file as UTF-8"),
    ("gbk", "姓名,城市,金额\n" + "张三,北京市,12\n李四,上海市,7\n" * 20,
     "read as Simplified Chinese text (GBK/GB18030); if letters look wrong, save the file as UTF-8"),
])
def test_other_scripts_are_detected_and_named(tmp_path, encoding, text, note):
    frame = read_table(write(tmp_path, "data.csv", text.encode(encoding)))
    header, first = text.splitlines()[:2]
    delimiter = ";" if ";" in header else ","
    assert list(frame.columns) == header.split(delimiter)
    assert frame.iloc[0].tolist()[:2] == first.split(delimiter)[:2]
    assert notes_of(frame) == [note]


def test_western_windows_text_stays_windows_1252(tmp_path):
    text = "name,price,city\n" + "Café Müller,3 €,Zürich\nNaïve,4 €,Besançon\n" * 30
    frame = read_table(write(tmp_path, "w.csv", text.encode("cp1252")))
    assert frame.iloc[0].tolist() == ["Café Müller", "3 €", "Zürich"]
    assert frame.iloc[1].tolist() == ["Naïve", "4 €", "Besançon"]
    assert notes_of(frame)[0] == ("read as Western European text (windows-1252); "
                                  "if letters look wrong, save the file as UTF-8")


def test_a_utf8_bom_and_plain_ascii_need_no_note(tmp_path):
    frame = read_table(write(tmp_path, "bom.csv", codecs.BOM_UTF8 + "a,b\nx,ü\n".encode()))
    assert list(frame.columns) == ["a", "b"] and frame["b"].tolist() == ["ü"] and notes_of(frame) == []
    assert notes_of(read_table(write(tmp_path, "ascii.csv", b"a,b\n1,2\n"))) == []


# ---- quotes that never close ------------------------------------------------------------

def table_lines(n: int) -> list[str]:
    return ["id,name,city,amount,comment\n"] + [f"{i},name {i},city {i},{i * 2},fine\n" for i in range(1, n + 1)]


def test_a_stray_quote_does_not_swallow_the_rows_after_it(tmp_path):
    lines = table_lines(3000)
    lines[11] = '11,"Hello,city 11,22,fine\n'  # line 12 opens a quote that never closes
    lines[2012] = '2012,"Smith, John",city 2012,4024,fine\n'  # the next quote: where csv would close it
    frame = read_table(write(tmp_path, "stray.csv", "".join(lines).encode()))
    assert len(frame) == 3000  # no row lost or swallowed
    assert frame["id"].tolist() == list(range(1, 3001))
    assert frame.iloc[10].tolist() == [11, '"Hello', "city 11", 22, "fine"]  # the quote shows where it is
    assert frame.iloc[11].tolist() == [12, "name 12", "city 12", 24, "fine"]
    assert frame.iloc[2011].tolist() == [2012, "Smith, John", "city 2012", 4024, "fine"]
    assert notes_of(frame) == ["line 12 opens a quote that does not close (it ran to line 2,013); "
                               "its lines were read as rows of their own: check the quotes on line 12"]


def test_a_stray_quote_near_the_end_runs_to_the_end_of_the_file(tmp_path):
    lines = table_lines(100)
    lines[95] = '95,name 95,"city 95,190,fine\n'
    frame = read_table(write(tmp_path, "end.csv", "".join(lines).encode()))
    assert frame["id"].tolist() == list(range(1, 101))
    assert frame["city"][94] == '"city 95' and frame["city"][95] == "city 96"
    assert notes_of(frame) == ["line 96 opens a quote that does not close (it ran to line 101); "
                               "its lines were read as rows of their own: check the quotes on line 96"]


def test_two_stray_quotes_that_pair_up_still_give_every_row(tmp_path):
    lines = table_lines(500)
    lines[20] = '20,"name 20,city 20,40,fine\n'
    lines[300] = '300,name 300",city 300,600,fine\n'  # closes the quote where a field ends: no csv error
    frame = read_table(write(tmp_path, "pair.csv", "".join(lines).encode()))
    assert frame["id"].tolist() == list(range(1, 501))
    assert frame["name"][299] == 'name 300"'
    assert notes_of(frame)[0].startswith("line 21 opens a quote that does not close (it ran to line 301)")


def test_stray_quotes_on_many_lines_make_one_note_and_a_preview_sees_them_too(tmp_path):
    lines = table_lines(300)
    for i in (10, 50, 90, 130):
        lines[i] = f'{i},"name {i},city {i},{i * 2},fine\n'
        lines[i + 5] = f'{i + 5},"name {i + 5}" x,city,{(i + 5) * 2},fine\n'
    path = write(tmp_path, "many.csv", "".join(lines).encode())
    frame = read_table(path)
    assert frame["id"].tolist() == list(range(1, 301))
    assert notes_of(frame) == ["lines 11, 51 and 2 others open quotes that do not close; "
                               "their lines were read as rows of their own: check the quotes there"]
    shown = preview(path, rows=20)
    assert shown.frame["id"].tolist() == list(range(1, 21)) and shown.notes[0].startswith("lines 11, 51 and 1 other open")


def test_quoted_cells_of_many_lines_stay_one_cell(tmp_path):
    answer = "Dear team,\nthanks, we saw it.\n\n- point one\n- point two, with a comma\nBye"
    text = "id,answer,score\n" + "".join(f'{i},"{answer}",{i}\n' for i in range(1, 50))
    frame = read_table(write(tmp_path, "answers.csv", text.encode()))
    assert frame["answer"].tolist() == [answer] * 49 and frame["score"].tolist() == list(range(1, 50))
    assert notes_of(frame) == []
    address = "Flat 4, Rose House\n12 Main Street, Leeds\nWest Yorkshire, LS1\nUnited Kingdom, Europe\nNorth, sort of"
    text = "name,address\n" + "".join(f'p{i},"{address}"\n' for i in range(30))  # a comma on every line
    assert read_table(write(tmp_path, "addresses.csv", text.encode()))["address"].tolist() == [address] * 30


# ---- delimiters, ragged rows, sep=, comments ----------------------------------------------

def test_a_ragged_file_with_short_rows_still_has_columns(tmp_path):
    text = "name,email,phone\nAnn\nBob,bob@example.com\nCy\nDee,dee@example.com,555\nEd\nFay\n"
    frame = read_table(write(tmp_path, "ragged.csv", text.encode()))
    assert list(frame.columns) == ["name", "email", "phone"]
    assert frame["email"].tolist() == [None, "bob@example.com", None, "dee@example.com", None, None]
    assert notes_of(frame) == []


def test_rows_wider_than_the_header_are_named(tmp_path):
    lines = ["a,b,c,d,e\n"] + ["1,2,3,4,5\n"] * 100
    for i in (13, 89, 95, 97, 99):
        lines[i] = "1,2,3,4,5,x,y\n"
    lines[50] = "1,2,3,4,5,,\n"  # trailing empty fields are not more data
    frame = read_table(write(tmp_path, "wide.csv", "".join(lines).encode()))
    assert list(frame.columns) == ["a", "b", "c", "d", "e", "column_6", "column_7"]
    assert notes_of(frame) == ["rows 14, 90 and 3 others have more fields than the header (7 vs 5); "
                               "extra fields are in column_6 and column_7"]


@pytest.mark.parametrize("hint", ["sep=;", '"sep=;"', "SEP=;;"])
def test_excels_sep_line_sets_the_delimiter_and_is_not_the_header(tmp_path, hint):
    text = f"{hint}\r\nname;amount, note\r\nann;1,50\r\nbob;2\r\n"
    path = write(tmp_path, "sep.csv", text.encode())
    grid, _, delimiter = textfile.read_grid(path)
    assert delimiter == ";" and grid.top == 1 and grid.rows[0] == ["name", "amount, note"]
    assert read_table(path).to_dict("list") == {"name": ["ann", "bob"], "amount, note": ["1,50", "2"]}


def test_comment_lines_at_the_top_are_skipped_when_a_table_follows(tmp_path):
    text = "# exported by the shop\n# 2024-05-01\n# columns: id, name\nid,name\n1,ann\n2,bob\n"
    frame = read_table(write(tmp_path, "c.csv", text.encode()))
    assert frame.to_dict("list") == {"id": [1, 2], "name": ["ann", "bob"]}
    assert notes_of(frame) == ["skipped 3 comment lines at the top"]
    assert read_table(tmp_path / "c.csv", header_row=4)["name"].tolist() == ["ann", "bob"]  # rows as in the file


def test_a_header_that_starts_with_a_hash_is_kept(tmp_path):
    text = "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\n1\t100\trs1\n2\t200\trs2\n"
    frame = read_table(write(tmp_path, "v.tsv", text.encode()))
    assert list(frame.columns) == ["#CHROM", "POS", "ID"] and frame["POS"].tolist() == [100, 200]
    assert notes_of(frame) == ["skipped 1 comment line at the top"]


def test_a_list_of_hashtags_is_data_not_comments(tmp_path):
    frame = read_table(write(tmp_path, "tags.txt", b"#blessed\n#monday\n#coffee\n"))
    assert frame.columns.tolist() == ["#blessed"] and frame["#blessed"].tolist() == ["#monday", "#coffee"]


def test_a_trailing_ctrl_z_is_not_a_row(tmp_path):
    assert read_table(write(tmp_path, "dos.csv", b"a,b\r\n1,2\r\n\x1a")).to_dict("list") == {"a": [1], "b": [2]}
    assert read_table(write(tmp_path, "dos2.csv", b"a,b\r\n1,2\x1a")).to_dict("list") == {"a": [1], "b": [2]}


# ---- numbers written as text -------------------------------------------------------------

def test_numbers_written_for_reading_stay_text_with_a_note(tmp_path):
    text = ("item;price;share;total;zip\n" + "".join(
        f"thing {i};{i}.234,50 €;{i}%;$1,2{i}0;0{i}123\n" for i in range(1, 8)) + "odd;n/a;;;01234\n")
    frame = read_table(write(tmp_path, "n.csv", text.encode()))
    assert frame["price"][0] == "1.234,50 €" and frame["share"][0] == "1%" and frame["total"][0] == "$1,210"
    assert notes_of(frame) == ["columns price, share and total look like numbers written as text (1.234,50 €): "
                               "add a Parse number step (tick Decimal comma) to use them as numbers"]
    text = "item,price\n" + "".join(f'thing {i},"$1,2{i}0"\n' for i in range(1, 8))
    assert notes_of(read_table(write(tmp_path, "usd.csv", text.encode()))) == [
        "column price looks like numbers written as text ($1,210): add a Parse number step to use them as numbers"]


def test_plain_numbers_codes_and_words_get_no_number_note(tmp_path):
    text = "id,zip,price,word\n1,01234,1.20,apple\n2,09999,2.50,pear\n"
    assert notes_of(read_table(write(tmp_path, "p.csv", text.encode()))) == []


# ---- line endings and empty files ----------------------------------------------------------

@pytest.mark.parametrize("newline", ["\r\n", "\r", "\n"])
def test_every_line_ending_reads_the_same(tmp_path, newline):
    text = newline.join(["id,note", '1,"two' + newline + 'lines"', "2,plain", ""])
    frame = read_table(write(tmp_path, "e.csv", text.encode()))
    assert frame.to_dict("list") == {"id": [1, 2], "note": ["two" + newline + "lines", "plain"]}
    assert notes_of(frame) == []


def test_header_only_and_blank_files(tmp_path):
    assert read_table(write(tmp_path, "h.csv", b"a;b;c\r\n")).columns.tolist() == ["a", "b", "c"]
    with pytest.raises(InputError, match=r"^blank.csv is empty$"):
        read_table(write(tmp_path, "blank.csv", b"\r\n\r\n\n"))


# ---- the notes reach the user --------------------------------------------------------------

def test_the_cli_prints_the_readers_notes(tmp_path):
    pipeline = tmp_path / "p.json"
    pipeline.write_text(json.dumps({"version": 1, "steps": [{"type": "trim", "source": "город", "output": "city"}]}))
    lines = ["имя;город\n"] + [f"Иван {i};Москва\n" for i in range(1, 41)]
    lines[5] = 'Иван 5;"Москва\n'  # line 6: a quote that never closes
    data = write(tmp_path, "люди.csv", "".join(lines).encode("cp1251"))
    result = subprocess.run([sys.executable, "-m", "batchgrid.core.cli", "check", str(pipeline), str(data)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "40 rows" in result.stdout
    assert result.stderr.splitlines() == [
        "batchgrid: note: read as Cyrillic text (windows-1251); if letters look wrong, save the file as UTF-8",
        "batchgrid: note: line 6 opens a quote that does not close (it ran to line 41); "
        "its lines were read as rows of their own: check the quotes on line 6"]
