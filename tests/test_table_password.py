"""Password-protected workbooks (issue 11): decrypted in memory with the user's password; the
default password opens without asking; no password or a wrong one is a distinct error the
front ends ask on (the window's dialog, the CLI's --password-env)."""

from __future__ import annotations

import pytest

import hostile_files as hf
from batchgrid.core.session import Session
from batchgrid.core.table import list_sheets, preview, read_table
from batchgrid.core.table.password import DEFAULT_PASSWORD, PasswordRequired, WrongPassword
from table_fixtures import CORPUS


@pytest.fixture
def locked(tmp_path):
    return hf.password_xlsx(tmp_path / "salaries.xlsx")


def test_the_right_password_opens_the_workbook(locked):
    frame = read_table(locked, password=hf.PASSWORD)
    assert frame.to_dict("list") == {"id": [1, 2], "name": ["Zoë", "Bob"]}
    assert list_sheets(locked, password=hf.PASSWORD) == ["Secret"]
    assert preview(locked, password=hf.PASSWORD).kind == "xlsx"


def test_no_password_asks_for_one(locked):
    with pytest.raises(PasswordRequired) as info:
        read_table(locked)
    assert not isinstance(info.value, WrongPassword)
    assert str(info.value) == "salaries.xlsx is password-protected; enter its password to open it"


def test_a_wrong_password_says_so(locked):
    with pytest.raises(WrongPassword, match=r"^salaries.xlsx: the password is wrong"):
        read_table(locked, password="guess")


def test_the_default_password_opens_without_asking(tmp_path):
    path = hf.password_xlsx(tmp_path / "protected.xlsx", password=DEFAULT_PASSWORD)
    assert read_table(path)["name"].tolist() == ["Zoë", "Bob"]


@pytest.mark.skipif(not CORPUS.is_dir(), reason="corpus not found")
def test_corpus_files_with_a_password_ask_for_it_and_default_ones_open():
    with pytest.raises(PasswordRequired, match="pass_protected.xlsb is password-protected"):
        read_table(CORPUS / "pass_protected.xlsb")
    with pytest.raises(WrongPassword):
        read_table(CORPUS / "pass_protected.xlsx", password="not it")
    # issue_385.xls is encrypted with Excel's default password: it opens (and its one sheet is empty)
    assert list_sheets(CORPUS / "issue_385.xls") == ["Sheet1"]


async def test_the_session_passes_the_password_through_its_reader(locked, tmp_path):
    session = Session(data_dir=tmp_path)
    try:
        with pytest.raises(PasswordRequired):
            await session.open_sheet(locked)
        with pytest.raises(WrongPassword):
            await session.open_sheet(locked, password="guess")
        sheet = await session.open_sheet(locked, password=hf.PASSWORD)
        assert sheet.table.column("name") == ["Zoë", "Bob"]
    finally:
        await session.close()


def test_the_cli_takes_the_password_from_an_environment_variable(locked, tmp_path):
    import json
    import os
    import subprocess
    import sys

    pipeline = tmp_path / "p.json"
    pipeline.write_text(json.dumps({"version": 1, "steps": [
        {"type": "template", "template": "{name}", "output": "copy"}]}))

    def check(*extra, env=None):
        return subprocess.run([sys.executable, "-m", "batchgrid.core.cli", "check", str(pipeline), str(locked), *extra],
                              capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})})

    opened = check("--password-env", "SHEET_PASSWORD", env={"SHEET_PASSWORD": hf.PASSWORD})
    assert opened.returncode == 0 and "2 rows" in opened.stdout, opened.stderr
    refused = check()
    assert refused.returncode == 2 and "salaries.xlsx is password-protected" in refused.stderr
    assert refused.stderr == ("batchgrid: error: salaries.xlsx is password-protected: put its password in an "
                              "environment variable and pass the variable's name with --password-env NAME\n")
    assert "Traceback" not in refused.stderr and refused.stderr.count("\n") == 1
    missing = check("--password-env", "NOT_SET_ANYWHERE")
    assert missing.returncode == 2 and "NOT_SET_ANYWHERE is not set" in missing.stderr


def test_an_xls_with_the_old_xor_protection_asks_for_its_password_and_opens(tmp_path):
    path = hf.xor_obfuscated_xls(tmp_path / "old.xls")  # calamine alone: "Codepage ... not found"
    with pytest.raises(PasswordRequired, match="old.xls is password-protected"):
        read_table(path)
    with pytest.raises(WrongPassword):
        read_table(path, password="guess")
    assert read_table(path, password=hf.PASSWORD).to_dict("list") == {"id": [1, 2], "name": ["a", "b"]}
