"""Shared fixtures. Append new fixtures at the end; others use this file too."""

from __future__ import annotations

import pytest


# ---- the OpenAI-compatible test server (tests/fake_openai.py) -------------------------------
@pytest.fixture
def fake_openai():
    """A started FakeOpenAI on 127.0.0.1 (random port), stopped after the test."""
    from fake_openai import FakeOpenAI

    server = FakeOpenAI().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def models(fake_openai, monkeypatch, tmp_path):
    """For model-step tests: the fake server (key required), a provider profile "test" for it,
    the key in the environment and a private data folder for the cache and prices."""
    from models_support import KEY, KEY_ENV, ModelBench

    monkeypatch.setenv(KEY_ENV, KEY)
    return ModelBench(fake_openai, tmp_path / "data")


# ---- keys typed "for this session only" (core/providers/keys.py) -----------------------------
@pytest.fixture(autouse=True)
def no_session_keys():
    """Session keys live as long as the process: none typed in one test reaches the next."""
    yield
    from batchgrid.core.providers.keys import forget_session_keys

    forget_session_keys()
