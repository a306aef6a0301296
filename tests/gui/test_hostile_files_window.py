"""The window and hostile or locked files (issue 11): every file opens or gives one line in the
message bar, and the window lives on (the session reads in a reader process); a
password-protected workbook asks for its password."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the file builders

import hostile_files as hf  # noqa: E402
from qt_async import run  # noqa: E402


def test_a_password_protected_workbook_asks_for_its_password(qloop, window, tmp_path):
    path = hf.password_xlsx(tmp_path / "salaries.xlsx")
    answers = ["guess", hf.PASSWORD]
    asked = []

    def ask_password(p, *, wrong=False):
        asked.append(wrong)
        return answers.pop(0)

    window.ask_password = ask_password
    assert run(qloop, window.load_sheet(path))
    assert asked == [False, True]  # asked, then told the first answer was wrong
    assert window.session.table.column("name") == ["Zoë", "Bob"]

    window.ask_password = lambda p, *, wrong=False: None  # cancelled
    assert run(qloop, window.load_sheet(path)) is False
    assert window.last_message == "Could not open salaries.xlsx: salaries.xlsx is password-protected; enter its password to open it"


@pytest.mark.parametrize("build", [hf.shared_strings_many, hf.corrupt_deflate, hf.malformed_rels])
def test_the_window_lives_on_after_hostile_files(qloop, window, tmp_path, build):
    path = build(tmp_path / "hostile.xlsx")
    assert run(qloop, window.load_sheet(path)) is False
    assert window.last_message.startswith("Could not open hostile.xlsx: ") and "\n" not in window.last_message
    good = tmp_path / "good.csv"
    good.write_text("id,name\n1,a\n", encoding="utf-8")
    assert run(qloop, window.load_sheet(good))


def test_a_stray_far_cell_is_left_out_and_the_window_says_so(qloop, window, tmp_path):
    path = hf.sparse_far_cell(tmp_path / "stray.xlsx")
    assert run(qloop, window.load_sheet(path))
    assert window.session.table.columns == ["id", "name"] and len(window.session.table) == 2
    assert "1 stray cell far from it left out (XFD1048576)" in window.last_message
