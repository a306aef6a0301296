"""Test connection (core/providers/connection.py) against the test server, and keys given for this
session only (core/providers/keys.py): a run finds them with no keyring and no environment
variable, and they are in no file written and no message shown (the secret canary's checks)."""

from __future__ import annotations

import asyncio
import logging
import socket

import keyring
import pandas as pd
import pytest
from batchgrid.core.pipeline import Pipeline
from batchgrid.core.providers import keys
from batchgrid.core.providers.connection import check_connection
from batchgrid.core.providers.profiles import api_key, resolve_profile
from batchgrid.core.run import events as ev
from batchgrid.core.session import Session
from batchgrid.core.util.errors import SetupError
from keyring.backends import fail
from models_support import KEY, KEY_ENV
from test_secret_canary import files_holding

SERVED = ["llama3.1", "qwen2.5", "phi3"]


@pytest.fixture
def failing_keyring():
    """The keyring a machine without one has (keyring's 'fail' backend), restored afterwards."""
    before = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    yield
    keyring.set_keyring(before)


def fields(server, **extra) -> dict:
    return {"preset": "openai", "base_url": server.base_url, "api_key_env": KEY_ENV, "model": "llama3.1", **extra}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- Test connection --------------------------------------------------------------------------
async def test_right_key_lists_models_and_times_a_one_token_answer(models):
    models.server.configure(models=SERVED)
    report = await check_connection("test", fields(models.server))
    assert report.ok, report.message
    assert report.models == tuple(SERVED) and report.model == "llama3.1"
    assert report.latency_ms is not None and report.latency_ms > 0
    assert report.message.startswith("OK: 3 models (llama3.1, qwen2.5, phi3); a 1-token answer from llama3.1 in ")
    assert report.message.endswith(" ms")
    stats = models.server.stats
    assert stats.by_path["/v1/models"] == 1 and stats.by_path["/v1/chat/completions"] == 1
    assert stats.per_prompt == {"Say OK": 1}


async def test_the_latency_reported_is_the_tiny_requests(models):
    models.server.configure(latency=0.2)
    report = await check_connection("test", fields(models.server, model="gpt-4o-mini"))
    assert report.ok, report.message
    assert report.latency_ms >= 200
    assert f"in {report.latency_ms:,.0f} ms" in report.message


async def test_a_wrong_key_is_said_as_a_run_says_it(models, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-wrong-key-abcdef0123456789")
    report = await check_connection("test", fields(models.server))
    assert not report.ok
    assert report.message == ("Failed: the API key for provider 'test' was rejected (HTTP 401: Incorrect API key "
                              f"provided.); check the environment variable {KEY_ENV}")
    typed = await check_connection("test", fields(models.server), key="sk-typed-wrong-0123456789",
                                   key_from="the key typed above")
    assert not typed.ok and "sk-typed" not in typed.message
    assert typed.message.endswith("was rejected (HTTP 401: Incorrect API key provided.); check the key typed above")


async def test_nothing_listening(monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    url = f"http://127.0.0.1:{closed_port()}/v1"
    report = await check_connection("local", {"preset": "vllm", "base_url": url, "model": "m"})
    assert not report.ok
    assert report.message == f"Failed: nothing is listening at {url} — is the vLLM server running?"


async def test_an_unknown_model_names_what_the_server_serves(models):
    models.server.configure(models=SERVED)
    report = await check_connection("test", fields(models.server, model="llama3"))
    assert not report.ok
    assert report.message.startswith("Failed: provider 'test' has no model 'llama3' (HTTP 404")
    assert report.message.endswith("check the model name; the server serves 3 models (llama3.1, qwen2.5, phi3)")


async def test_an_embedding_only_profile_asks_for_an_embedding(models):
    report = await check_connection("emb", {"preset": "vllm", "base_url": models.server.base_url,
                                            "embedding_model": "text-embedding-3-small"}, key=KEY)
    assert report.ok, report.message
    assert "; an embedding from text-embedding-3-small in " in report.message
    assert models.server.stats.by_path["/v1/embeddings"] == 1
    assert models.server.stats.by_path["/v1/chat/completions"] == 0


async def test_no_model_named_uses_the_one_served_or_asks_for_one(fake_openai):
    fake_openai.configure(models=["only-one"])
    report = await check_connection("local", {"preset": "ollama", "base_url": fake_openai.base_url})
    assert report.ok and report.model == "only-one", report.message
    fake_openai.configure(models=SERVED)
    report = await check_connection("local", {"preset": "ollama", "base_url": fake_openai.base_url})
    assert report.ok and report.model is None
    assert report.message == "OK: 3 models (llama3.1, qwen2.5, phi3); name one as the default model to try " \
                             "a 1-token answer"


async def test_a_hosted_profile_without_a_key_says_where_one_goes(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    report = await check_connection("work", {"preset": "openai"})
    assert not report.ok and report.no_key
    assert report.message.startswith("Failed: no API key for provider 'work': set the environment variable "
                                     "OPENAI_API_KEY")


async def test_a_bad_profile_is_said_before_any_request():
    report = await check_connection("local", {"preset": "vllm", "base_url": "127.0.0.1:8000"})
    assert not report.ok
    assert report.message == "Failed: providers.local.base_url: '127.0.0.1:8000' must start with http:// or https://"


async def test_a_silent_server_times_out_and_a_test_can_be_cancelled(models):
    models.server.configure(hold=True)
    report = await check_connection("test", fields(models.server), timeout=0.3)
    assert report.message == f"Failed: the server at {models.server.base_url} did not answer within 0.3 s"
    task = asyncio.ensure_future(check_connection("test", fields(models.server)))
    assert await models.server.wait_for(lambda s: s.in_flight >= 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    models.server.configure(hold=False)


# ---- keys for this session only ---------------------------------------------------------------
def test_a_session_key_comes_before_the_environment_and_is_named_in_messages(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-environment-0123")
    profile = resolve_profile("work", {"work": {"preset": "openai"}})
    assert api_key(profile) == "sk-from-the-environment-0123"
    keys.use_for_session("work", "sk-typed-for-this-session-0123")
    assert api_key(profile) == "sk-typed-for-this-session-0123"
    assert profile.key_source() == "the key typed in Settings for this session"
    other = resolve_profile("home", {"home": {"preset": "openai"}})
    assert api_key(other) == "sk-from-the-environment-0123"  # a session key is its profile's only


async def test_a_session_key_tests_and_its_rejection_names_it(models, monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    assert (await check_connection("test", fields(models.server))).no_key  # its variable is not set
    keys.use_for_session("test", KEY)
    assert (await check_connection("test", fields(models.server))).ok
    keys.use_for_session("test", "sk-stale-session-key-0123456")
    report = await check_connection("test", fields(models.server))
    assert report.message.endswith("check the key typed in Settings for this session")


async def test_without_a_keyring_a_session_key_runs_and_is_written_nowhere(fake_openai, failing_keyring, monkeypatch,
                                                                          tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    secret = "sk-session-canary-0123456789abcdef"
    fake_openai.configure(api_key=secret, script={"fails": [400]})
    assert not keys.keyring_available() and keys.keyring_title() is None
    sheet = tmp_path / "rows.csv"
    pd.DataFrame({"text": ["one", "two", "fails here"]}).to_csv(sheet, index=False)
    data = tmp_path / "data"
    session = Session(data_dir=data, journal_path=data / "journal.sqlite")
    # the profile as Settings copies it into a pipeline: where the key lives, never the key
    session.set_pipeline(Pipeline.from_dict({
        "version": 1, "settings": {"max_attempts": 1},
        "providers": {"hosted": {"preset": "openai", "base_url": "https://api.example.com/v1", "model": "m"}},
        "steps": [{"type": "llm", "provider": "hosted", "prompt": "{text}", "output": "answer"}]}))
    await session.open_sheet(sheet)
    with pytest.raises(SetupError, match="no API key for provider 'hosted'"):
        await session.start()

    keys.use_for_session("hosted", secret)
    # a hosted service named by the profile, served here by the test server
    session.set_pipeline(Pipeline.from_dict({
        "version": 1, "settings": {"max_attempts": 1},
        "providers": {"hosted": {"preset": "openai", "base_url": fake_openai.base_url, "model": "m"}},
        "steps": [{"type": "llm", "provider": "hosted", "prompt": "{text}", "output": "answer"}]}))
    heard: list = []
    session.listeners.append(heard.append)
    await session.start()
    reason, message = await session.wait()
    session.run_ended()
    assert reason == "finished", message
    assert f"Bearer {secret}" in fake_openai.stats.authorizations
    results = session.store.results
    assert [r.status for r in results] == [ev.DONE, ev.DONE, ev.ERROR]
    assert results[0].outputs["answer"] == "echo: one"
    await session.export(tmp_path / "out.xlsx")
    await session.save_pipeline(tmp_path / "saved.batchgrid.json")
    await session.close()
    assert files_holding(tmp_path, secret) == []  # the journal, the cache, the export, the pipeline
    shown = [repr(e) for e in heard] + [message, caplog.text, results[2].error]
    assert [text for text in shown if secret in text] == []
