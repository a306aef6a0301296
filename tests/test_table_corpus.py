"""Every workbook of the corpus (130 real, odd and broken files from the calamine project)
loads or gives a clear one-line error, within a time bound and a memory bound.

Each file is loaded in a worker process whose address space is capped (RLIMIT_AS: what
it has after imports + 1.5 GiB) and whose every file has a time limit, so an allocation
trap or a hang shows up as a failed test, not a dead test run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from table_fixtures import CORPUS, FILE_SECONDS, run_corpus

FILES = sorted(p for p in CORPUS.glob("*") if p.is_file() and p.suffix != ".md") if CORPUS.is_dir() else []
PEAK_RSS_MB = 1024

pytestmark = pytest.mark.skipif(not FILES, reason=f"corpus not found at {CORPUS}")


@pytest.fixture(scope="module")
def corpus():
    return run_corpus(FILES, workers=2)


def test_the_corpus_is_all_there():
    assert len(FILES) >= 130


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_loads_or_gives_one_clear_line(corpus, path):
    record = corpus[path.name]
    assert not record.get("crash"), record["crash"]
    assert not record.get("timeout"), f"{path.name} took more than {FILE_SECONDS} s"
    assert record["peak_rss_mb"] < PEAK_RSS_MB
    assert record["loads"] or record["errors"]
    for message in record["errors"]:
        assert message.strip() and "\n" not in message and len(message) < 300
        assert "Traceback" not in message and 'File "' not in message
        assert path.name in message  # says which file


def test_a_readable_workbook_loads_every_sheet_with_data(corpus):
    record = corpus["table-multiple.xlsx"]
    assert record["sheets"] == ["Sheet1", "Sheet2", "Sheet3"]
    assert [shape for _, shape in record["loads"]] == [[4, 3], [4, 3], [4, 2], [10, 2]]
    assert record["preview"] == ["Sheet1", 3]


@pytest.mark.parametrize("name, words", [
    ("pass_protected.xlsx", "password-protected"),
    ("pass_protected.xlsb", "password-protected"),
    ("pass_protected.ods", "password-protected"),
    ("issue_385.xls", "every sheet is empty"),  # encrypted with the default password: it opens
    ("issue_594_dos.ods", "claims far more cells than a sheet can hold"),
    ("OOM_alloc3.xls", "damaged"),
    ("issue252.xlsx", "damaged"),
    ("picture.xlsx", "every sheet is empty"),
])
def test_bad_files_say_what_is_wrong(corpus, name, words):
    assert any(words in message for message in corpus[name]["errors"]), corpus[name]["errors"]


def test_the_workers_memory_limit_is_real():
    import subprocess
    import sys

    code = ("import sys; sys.path.insert(0, 'tests'); import table_fixtures as t; t._limit_memory()\n"
            "try:\n    bytearray(4 * 2**30)\nexcept MemoryError:\n    print('refused')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.stdout.strip() == "refused"
