"""The canary: a key used in an HTTP header, in a URL and as a provider key, by a run whose rows
fail every way a server can make them fail, is found in no file the run writes (journal, cache,
each export format, the saved pipeline) and in no message it shows (row errors, traces, retry
notes, the table's cells, the inspector, logs, the CLI's output). See core/util/secrets.py."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from batchgrid.core.pipeline import Pipeline
from batchgrid.core.run import events as ev
from batchgrid.core.session import Session

CANARY_ENV = "BG_CANARY"
CANARY = "sk-canary-1234567890abcdef"
# Rows: what the HTTP step's server answers (`status`) and what the model is asked (`text`).
# 200 echoes the request (headers, query) into a result cell; 404 puts the URL in the error;
# 400 echoes the request headers into the error; 503 is retried (a retry note), then fails;
# "provider-fails" makes the model provider refuse the request.
ROWS = [
    {"text": "first", "status": 200},
    {"text": "second", "status": 404},
    {"text": "third", "status": 400},
    {"text": "fourth", "status": 503},
    {"text": "provider-fails here", "status": 200},
]


def canary_pipeline(server) -> dict:
    return {
        "version": 1,
        "name": "canary",
        "settings": {"max_concurrency": 2, "max_attempts": 2, "retry_base_delay": 0.01, "retry_max_delay": 0.02},
        "providers": {"canary": {"preset": "openai", "base_url": server.base_url, "api_key_env": CANARY_ENV,
                                 "model": "gpt-4o-mini"}},
        "steps": [
            {"type": "llm", "provider": "canary", "prompt": "{text}", "output": "answer", "stream": False},
            {"type": "http", "url": server.url + "/echo?status={status}&api_key=${" + CANARY_ENV + "}",
             "headers": {"Authorization": "Bearer ${" + CANARY_ENV + "}", "X-Api-Key": "${" + CANARY_ENV + "}"},
             "output": "reply"},
        ],
    }


def files_holding(folder: Path, needle: str) -> list[str]:
    """Every file under `folder` whose bytes, or whose text once unpacked (xlsx members, parquet
    values), hold `needle`."""
    found = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        texts = [data]
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                texts += [zf.read(name) for name in zf.namelist()]
        if path.suffix == ".parquet":
            texts.append(json.dumps(pq.read_table(path).to_pylist(), default=str).encode())
        if any(needle.encode() in t for t in texts):
            found.append(str(path.relative_to(folder)))
    return found


@pytest.fixture
def canary_env(fake_openai, monkeypatch, tmp_path):
    monkeypatch.setenv(CANARY_ENV, CANARY)
    fake_openai.configure(api_key=CANARY, script={"provider-fails": [400]})
    sheet = tmp_path / "rows.csv"
    pd.DataFrame(ROWS).to_csv(sheet, index=False)
    return sheet


async def test_the_canary_is_in_no_file_written_and_no_message_shown(fake_openai, canary_env, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)  # every log record any library makes during the run
    data = tmp_path / "data"
    session = Session(data_dir=data, journal_path=data / "journal.sqlite")
    session.set_pipeline(Pipeline.from_dict(canary_pipeline(fake_openai)))
    session.trusted = True  # ${...} in a URL is the user's to allow
    await session.open_sheet(canary_env)
    heard: list[object] = []
    session.listeners.append(heard.append)
    await session.start()
    reason, message = await session.wait()
    session.run_ended()

    # The run did what the canary needs: the key was sent, every kind of failure happened.
    assert reason == "finished", message
    assert f"Bearer {CANARY}" in fake_openai.stats.authorizations  # the provider got its key
    results = session.store.results
    assert [r.status if r else None for r in results] == [ev.DONE, ev.ERROR, ev.ERROR, ev.ERROR, ev.ERROR]
    assert "HTTP 404" in results[1].error and "api_key=•••" in results[1].error
    assert "HTTP 400" in results[2].error and '"api_key": "•••"' in results[2].error
    assert "gave up after 2 attempts" in results[3].error
    assert "provider 'canary'" in results[4].error
    assert any(isinstance(e, ev.RowRetrying) for e in heard)
    assert "x-api-key" in str(results[0].outputs["reply"]).lower()  # the echo is there, its key is not

    # Everything written.
    exports = tmp_path / "exports"
    exports.mkdir()
    for name in ("results.xlsx", "results.csv", "results.parquet"):
        await session.export(exports / name)
    await session.save_pipeline(exports / "canary.batchgrid.json")
    await session.close()  # the journal's last rows are in its file
    written = files_holding(tmp_path, CANARY)
    assert written == []
    assert {p.name for p in data.iterdir()} >= {"journal.sqlite", "cache.sqlite"}
    assert sorted(p.name for p in exports.iterdir()) == ["canary.batchgrid.json", "results.csv", "results.parquet",
                                                         "results.xlsx"]

    # Everything shown: events (errors, traces, retry notes), the table's cells, logs.
    shown = [repr(e) for e in heard]
    shown += [e.describe() for e in heard if isinstance(e, ev.RowRetrying)]
    shown += [str(session.store.value(row, col)) for row in range(len(ROWS)) for col in range(len(session.store.header))]
    shown += [message, caplog.text]
    assert [text for text in shown if CANARY in text] == []


def test_the_cli_shows_and_writes_no_canary(fake_openai, canary_env, tmp_path):
    pipeline = tmp_path / "canary.batchgrid.json"
    pipeline.write_text(json.dumps(canary_pipeline(fake_openai)))
    out = tmp_path / "out.xlsx"
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "xdg")}
    done = subprocess.run([sys.executable, "-m", "batchgrid.core.cli", "run", str(pipeline), str(canary_env),
                           "-o", str(out), "--trust", "--journal", str(tmp_path / "data" / "journal.sqlite")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 1, done.stderr  # some rows failed
    assert out.exists()
    assert CANARY not in done.stdout + done.stderr
    assert files_holding(tmp_path, CANARY) == []
