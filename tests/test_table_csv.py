"""Delimited text: encodings, delimiters, quoting, and which text becomes numbers or dates."""

from __future__ import annotations

import codecs
import datetime as dt

import numpy as np
import pytest

from batchgrid.core.util.errors import InputError
from batchgrid.core.table import list_sheets, preview, read_table

TEXT = "name;city;amount\nJosé;Zürich;12\nRenée;Besançon;7\nŁukasz €;Kraków;3\n"


@pytest.mark.parametrize("encoding, data", [
    ("utf-8", TEXT.encode("utf-8")),
    ("utf-8 with BOM", codecs.BOM_UTF8 + TEXT.encode("utf-8")),
    ("utf-16 with BOM", TEXT.encode("utf-16")),
    ("utf-16-le without BOM", TEXT.encode("utf-16-le")),
])
def test_unicode_encodings_are_recognised(tmp_path, encoding, data):
    path = tmp_path / "people.csv"
    path.write_bytes(data)
    frame = read_table(path)
    assert list(frame.columns) == ["name", "city", "amount"]  # no BOM glued to the first name
    assert frame["name"].tolist() == ["José", "Renée", "Łukasz €"]
    assert frame["city"].tolist() == ["Zürich", "Besançon", "Kraków"]
    assert frame["amount"].tolist() == [12, 7, 3]


def test_windows_1252_and_latin_1_are_the_fallbacks(tmp_path):
    (tmp_path / "w.csv").write_bytes("name,price\nCafé,3 €\nNaïve,“4”\n".encode("cp1252"))
    frame = read_table(tmp_path / "w.csv")
    assert frame["name"].tolist() == ["Café", "Naïve"] and frame["price"].tolist() == ["3 €", "“4”"]
    (tmp_path / "l.csv").write_bytes(b"name,code\nGr\xfc\xdfe,\x81\n")  # 0x81 is undefined in 1252
    assert read_table(tmp_path / "l.csv").iloc[0].tolist() == ["Grüße", "\x81"]


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_the_delimiter_is_found(tmp_path, delimiter):
    rows = [["id", "comment", "score"], ["1", "fine, thanks; really", "2.5"], ["2", "meh", "3.5"]]
    text = "\n".join(delimiter.join(f'"{v}"' if ("," in v or ";" in v) else v for v in r) for r in rows)
    (tmp_path / "data.txt").write_text(text + "\n", encoding="utf-8")
    frame = read_table(tmp_path / "data.txt")
    assert list(frame.columns) == ["id", "comment", "score"]
    assert frame["comment"].tolist() == ["fine, thanks; really", "meh"]
    assert frame["score"].tolist() == [2.5, 3.5]


def test_one_column_of_sentences_is_not_split_at_commas(tmp_path):
    (tmp_path / "reviews.txt").write_text("review\nGreat product, would buy again\nBad.\nOk; fine | sure\n",
                                          encoding="utf-8")
    frame = read_table(tmp_path / "reviews.txt")
    assert frame.to_dict("list") == {"review": ["Great product, would buy again", "Bad.", "Ok; fine | sure"]}


def test_european_csv_keeps_decimal_commas_as_text_under_semicolons(tmp_path):
    (tmp_path / "eu.csv").write_text("Artikel;Preis\nÄpfel;1,50\nBirnen;2,25\n", encoding="utf-8")
    frame = read_table(tmp_path / "eu.csv")
    assert frame.to_dict("list") == {"Artikel": ["Äpfel", "Birnen"], "Preis": ["1,50", "2,25"]}


def test_quoted_fields_hold_newlines_quotes_and_long_text(tmp_path):
    long_text = "x" * 300_000  # longer than the csv module's default field limit
    (tmp_path / "q.csv").write_text(f'a,b\n"line 1\nline 2","say ""hi"""\nshort,"{long_text}"\n', encoding="utf-8")
    frame = read_table(tmp_path / "q.csv")
    assert frame["a"].tolist() == ["line 1\nline 2", "short"]
    assert frame["b"].tolist() == ['say "hi"', long_text]


def test_ragged_rows_blank_lines_and_blank_headers(tmp_path):
    (tmp_path / "r.csv").write_text("\n\nname,,name\nann,1\nbob,2,3,extra\n\n", encoding="utf-8")
    frame = read_table(tmp_path / "r.csv")
    assert list(frame.columns) == ["name", "column_2", "name_2", "column_4"]
    assert frame["name_2"].tolist() == [None, 3]
    assert frame["column_4"].isna().tolist() == [True, False] and frame["column_4"][1] == "extra"


def test_text_becomes_numbers_dates_and_booleans_only_without_loss(tmp_path):
    (tmp_path / "t.csv").write_text(
        "zip,price,count,ratio,when,ok,big,label\n"
        "01234,1.20,7,0.5,2024-01-31,TRUE,12345678901234567890,1e5\n"
        "99999,2.50,,1.25,2024-02-01 10:30:00,false,2,7\n", encoding="utf-8")
    frame = read_table(tmp_path / "t.csv")
    assert frame["zip"].tolist() == ["01234", "99999"]                   # leading zero: text
    assert frame["price"].tolist() == ["1.20", "2.50"]                   # trailing zero: text
    assert frame["count"].tolist() == [7, None]
    assert frame["ratio"].dtype == np.float64 and frame["ratio"].tolist() == [0.5, 1.25]
    assert frame["when"].tolist() == [dt.datetime(2024, 1, 31), dt.datetime(2024, 2, 1, 10, 30)]
    assert frame["ok"].tolist() == [True, False]
    assert frame["big"].tolist() == [12345678901234567890, 2]            # every digit kept
    assert frame["label"].tolist() == ["1e5", "7"]


def test_a_tsv_prefers_tabs(tmp_path):
    (tmp_path / "t.tsv").write_text("a,b\tc\n1,2\t3\n", encoding="utf-8")
    assert list(read_table(tmp_path / "t.tsv").columns) == ["a,b", "c"]


def test_header_only_limit_and_preview(tmp_path):
    (tmp_path / "h.csv").write_text("a,b\n", encoding="utf-8")
    assert read_table(tmp_path / "h.csv").shape == (0, 2)
    (tmp_path / "many.csv").write_text("n\n" + "".join(f"{i}\n" for i in range(1000)), encoding="utf-8")
    assert read_table(tmp_path / "many.csv", limit=3)["n"].tolist() == [0, 1, 2]
    shown = preview(tmp_path / "many.csv", rows=10)
    assert shown.sheets == ["many"] and shown.sheet == "many" and shown.kind == "csv"
    assert shown.frame["n"].tolist() == list(range(10)) and not shown.complete


def test_a_text_file_has_one_sheet(tmp_path):
    (tmp_path / "one.csv").write_text("a\n1\n", encoding="utf-8")
    assert list_sheets(tmp_path / "one.csv") == ["one"]
    assert read_table(tmp_path / "one.csv", sheet=0)["a"].tolist() == [1]
    with pytest.raises(InputError, match=r"^sheet 'Data' not found: one.csv is a text file with one table, 'one'$"):
        read_table(tmp_path / "one.csv", sheet="Data")
