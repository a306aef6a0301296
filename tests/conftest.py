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
