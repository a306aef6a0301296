"""Model steps in a real pipeline file, run headless by the CLI in its own process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd

from models_support import KEY, KEY_ENV


def cli(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "batchgrid.core.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=120, env={**os.environ, **(env or {})})


def test_a_pipeline_file_runs_headless_and_a_rerun_is_answered_from_the_cache(models, tmp_path):
    server = models.server

    def reply(prompt: str, request: dict) -> str:
        text, _, instructions = prompt.partition("\n\n")  # Classify's labels follow the row's text
        if instructions.startswith("Classify"):
            return "positive" if "good" in text else "negative"
        return f"echo: {prompt}"

    server.configure(reply=reply)
    pipeline = {"version": 1,
                "providers": {"local": {"preset": "vllm", "base_url": server.base_url, "api_key_env": KEY_ENV,
                                        "model": "qwen2.5"}},
                "settings": {"max_concurrency": 4},
                "steps": [{"type": "llm", "prompt": "Summarise: {review}", "output": "summary"},
                          {"type": "classify", "prompt": "{review}", "labels": ["positive", "negative"]}]}
    (tmp_path / "p.json").write_text(json.dumps(pipeline))
    (tmp_path / "in.csv").write_text("review\ngood food\nawful service\nvery good\n")
    args = ("run", tmp_path / "p.json", tmp_path / "in.csv", "-o", tmp_path / "out.csv",
            "--journal", tmp_path / "data" / "journal.sqlite")

    first = cli(*args, env={KEY_ENV: KEY})
    assert first.returncode == 0, first.stderr
    table = pd.read_csv(tmp_path / "out.csv")
    assert list(table["summary"]) == ["echo: Summarise: good food", "echo: Summarise: awful service",
                                      "echo: Summarise: very good"]
    assert list(table["label"]) == ["positive", "negative", "positive"]
    assert server.stats.requests == 6
    assert (tmp_path / "data" / "cache.sqlite").exists()  # beside the journal

    again = cli(*args, env={KEY_ENV: KEY})
    assert again.returncode == 0, again.stderr
    assert server.stats.requests == 6  # all answered from the cache
    assert KEY not in (tmp_path / "out.csv").read_text() + first.stderr + again.stderr


def test_a_wrong_key_is_one_clear_line_per_row_in_the_output(models, tmp_path):
    pipeline = {"version": 1, "providers": models.providers(), "steps": [{"type": "llm", "prompt": "{q}"}]}
    (tmp_path / "p.json").write_text(json.dumps(pipeline))
    (tmp_path / "in.csv").write_text("q\na\nb\n")
    result = cli("run", tmp_path / "p.json", tmp_path / "in.csv", "-o", tmp_path / "out.csv",
                 "--journal", tmp_path / "j.sqlite", env={KEY_ENV: "sk-wrong-000000000000000"})
    assert result.returncode == 1
    table = pd.read_csv(tmp_path / "out.csv")
    assert set(table["error"]) == {"the API key for provider 'test' was rejected (HTTP 401: Incorrect API key "
                                   "provided.); check the environment variable BATCHGRID_TEST_KEY"}
    assert "sk-wrong" not in (tmp_path / "out.csv").read_text()
