"""Settings without a system keyring: a key typed "for this session only" (or one the keyring
refuses) makes Run work, and is written nowhere; Settings says where keys can live; Test
connection shows the server's models and a timed 1-token answer, or the run's words for what is
wrong, without freezing the window (it can be cancelled)."""

from __future__ import annotations

import json
import logging
import socket

import keyring
import pandas as pd
import pytest
from batchgrid.core.providers import keys
from batchgrid.core.run import events as ev
from batchgrid.gui.settings import AppSettings, SettingsDialog
from keyring.backend import KeyringBackend
from keyring.backends import fail
from keyring.errors import PasswordSetError
from PySide6.QtCore import QSettings, Qt
from qt_async import next_signal, run, run_to_end
from test_secret_canary import files_holding

SECRET = "sk-typed-in-settings-0123456789abcdef"
SERVED = ["llama3.1", "qwen2.5", "phi3"]


class RefusingKeyring(KeyringBackend):
    """A keyring that is there but refuses to store (a locked or broken store)."""

    priority = 1  # type: ignore[assignment]

    def get_password(self, service, username):
        return None

    def set_password(self, service, username, password):
        raise PasswordSetError("the collection is locked")

    def delete_password(self, service, username):
        pass


@pytest.fixture
def failing_keyring():
    before = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    yield
    keyring.set_keyring(before)


@pytest.fixture
def app_settings(tmp_path, failing_keyring):
    """The window's settings on a machine without a keyring, detected as the app detects it."""
    return AppSettings(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))


@pytest.fixture
def no_openai_env(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("BG_HOSTED_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


def dialog_with(qtbot, settings, tmp_path, profile: dict, parent=None) -> SettingsDialog:
    settings.set_providers([profile])
    dialog = SettingsDialog(settings, tmp_path, parent)
    if parent is None:
        qtbot.addWidget(dialog)
    dialog.table.setCurrentCell(0, 0)
    return dialog


def test_without_a_keyring_a_key_for_this_session_makes_run_work_and_is_written_nowhere(
        qtbot, qloop, window, app_settings, fake_openai, no_openai_env, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    fake_openai.configure(api_key=SECRET)
    assert not app_settings.use_keyring
    # its key in a variable that is not set (a server on this machine takes any key otherwise)
    hosted = {"name": "hosted", "preset": "openai", "base_url": fake_openai.base_url, "model": "gpt-4o-mini",
              "api_key_env": "BG_HOSTED_KEY"}
    app_settings.set_providers([hosted])
    sheet = tmp_path / "rows.csv"
    pd.DataFrame({"text": ["one", "two", "three"]}).to_csv(sheet, index=False)
    pipeline = tmp_path / "p.batchgrid.json"
    pipeline.write_text(json.dumps({
        "version": 1, "settings": {"use_cache": False},
        "providers": {"hosted": app_settings.pipeline_profile("hosted")},
        "steps": [{"type": "llm", "provider": "hosted", "prompt": "{text}", "output": "answer"}]}))
    assert run(qloop, window.load_pipeline(pipeline))
    assert run(qloop, window.load_sheet(sheet))
    shown: list[str] = []
    window.messageShown.connect(shown.append)

    # before: Run has no key
    assert not run(qloop, window.begin_run("all"))
    assert "no API key for provider 'hosted'" in window.last_message

    dialog = dialog_with(qtbot, app_settings, tmp_path, hosted, window)
    assert dialog.key_where.text().startswith("Keys are kept in: memory only. There is no system keyring here, so "
                                              "a key typed here lasts until you quit Batchgrid")
    assert "OPENAI_API_KEY" in dialog.key_where.text()
    assert dialog.save_key_button.isHidden() and not dialog.session_key_button.isHidden()
    qtbot.keyClicks(dialog.key_edit, SECRET)
    qtbot.mouseClick(dialog.session_key_button, Qt.MouseButton.LeftButton)
    assert dialog.key_note.text() == "hosted uses this key until you quit Batchgrid; it is not written anywhere."
    assert dialog.key_edit.text() == ""
    dialog.accept()

    assert run(qloop, run_to_end(window))[0] == "finished"
    assert window.model.status == [ev.DONE] * 3
    assert f"Bearer {SECRET}" in fake_openai.stats.authorizations
    assert window._save_to(tmp_path / "saved.batchgrid.json")
    assert run(qloop, window.export_to(tmp_path / "out.xlsx"))
    for row in range(3):
        window.view.setCurrentIndex(window.model.index(row, 0))
        shown.append(window.inspector.toPlainText())
    run(qloop, window.session.close())
    app_settings.q.sync()
    assert files_holding(tmp_path, SECRET) == []  # journal, export, saved pipeline, the settings file
    shown += [window.status_text.text(), window.last_message, caplog.text]
    assert [text for text in shown if SECRET in text] == []


def test_a_keyring_that_refuses_keeps_the_key_for_this_session(qtbot, qloop, tmp_path):
    before = keyring.get_keyring()
    keyring.set_keyring(RefusingKeyring())
    try:
        settings = AppSettings(QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
        assert settings.use_keyring
        dialog = dialog_with(qtbot, settings, tmp_path, {"name": "work", "preset": "openai"})
        assert dialog.key_where.text().startswith("Keys are kept in: the system keyring")
        assert "Use for this session only" in dialog.key_where.text()
        assert not dialog.save_key_button.isHidden()

        async def scenario():
            noted = next_signal(dialog.keyNoted)
            dialog.key_edit.setText(SECRET)
            dialog.save_key_button.click()
            return (await noted)[0]

        note = run(qloop, scenario())
    finally:
        keyring.set_keyring(before)
    assert note.startswith("The key was not stored: the system keyring refused it (the collection is locked). "
                           "work uses it for this session only, until you quit Batchgrid")
    assert keys.session_key("work") == SECRET


class MemoryKeyring(RefusingKeyring):
    """A keyring that works (in memory)."""

    def __init__(self):
        super().__init__()
        self.stored: dict = {}

    def get_password(self, service, username):
        return self.stored.get((service, username))

    def set_password(self, service, username, password):
        self.stored[(service, username)] = password


def test_with_a_keyring_save_key_stores_it_there(qtbot, qloop, tmp_path):
    before = keyring.get_keyring()
    store = MemoryKeyring()
    keyring.set_keyring(store)
    try:
        settings = AppSettings(QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
        dialog = dialog_with(qtbot, settings, tmp_path, {"name": "work", "preset": "openai"})

        async def scenario():
            noted = next_signal(dialog.keyNoted)
            dialog.key_edit.setText(SECRET)
            dialog.save_key_button.click()
            return (await noted)[0]

        assert run(qloop, scenario()) == "The key of work is stored in your system keyring."
        assert store.stored == {("batchgrid", "work"): SECRET}
        assert settings.pipeline_profile("work") == {"preset": "openai", "keyring_service": "batchgrid",
                                                     "keyring_user": "work"}
    finally:
        keyring.set_keyring(before)


# ---- Test connection ---------------------------------------------------------------------------
def press_test(dialog) -> str:
    async def scenario():
        tested = next_signal(dialog.connectionTested)
        dialog.test_button.click()
        return (await tested)[0]

    return scenario()


def test_test_connection_says_ok_or_what_is_wrong(qtbot, qloop, app_settings, fake_openai, no_openai_env, tmp_path):
    fake_openai.configure(api_key=SECRET, models=SERVED)
    dialog = dialog_with(qtbot, app_settings, tmp_path, {"name": "local", "preset": "vllm",
                                                         "base_url": fake_openai.base_url, "model": "llama3.1"})
    # a right key, typed and not saved yet
    dialog.key_edit.setText(SECRET)
    text = run(qloop, press_test(dialog))
    assert text.startswith("OK: 3 models (llama3.1, qwen2.5, phi3); a 1-token answer from llama3.1 in ")
    assert dialog.connection_result.text() == text and text.endswith(" ms")
    assert dialog.test_button.text() == "Test connection"

    # a wrong key
    dialog.key_edit.setText("sk-wrong-key-0123456789abcdef")
    text = run(qloop, press_test(dialog))
    assert text == ("Failed: the API key for provider 'local' was rejected (HTTP 401: Incorrect API key provided.); "
                    "check the key typed above")
    assert dialog.connection_result.objectName() == "fieldProblem"

    # an unknown model (the table as edited, not yet saved)
    dialog.key_edit.setText(SECRET)
    dialog.table.item(0, 3).setText("llama3")
    text = run(qloop, press_test(dialog))
    assert text.startswith("Failed: provider 'local' has no model 'llama3' (HTTP 404")
    assert text.endswith("; the server serves 3 models (llama3.1, qwen2.5, phi3)")

    # nothing listening
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dialog.table.item(0, 2).setText(f"http://127.0.0.1:{port}/v1")
    text = run(qloop, press_test(dialog))
    assert text == f"Failed: nothing is listening at http://127.0.0.1:{port}/v1 — is the vLLM server running?"


def test_a_profile_without_its_key_says_where_to_put_one(qtbot, qloop, app_settings, no_openai_env, tmp_path):
    dialog = dialog_with(qtbot, app_settings, tmp_path, {"name": "work", "preset": "openai"})
    text = run(qloop, press_test(dialog))
    assert text.startswith("Failed: no API key for provider 'work': set the environment variable OPENAI_API_KEY")
    assert text.endswith("; or type the key above and test again")


def test_a_test_in_progress_can_be_cancelled(qtbot, qloop, app_settings, fake_openai, tmp_path):
    fake_openai.configure(hold=True)
    dialog = dialog_with(qtbot, app_settings, tmp_path, {"name": "local", "preset": "vllm",
                                                         "base_url": fake_openai.base_url, "model": "m"})

    async def scenario():
        tested = next_signal(dialog.connectionTested)
        dialog.test_button.click()
        assert dialog.connection_result.text() == "Testing local…" and dialog.test_button.text() == "Cancel"
        assert await fake_openai.wait_for(lambda s: s.in_flight >= 1)  # the server has the question
        dialog.test_button.click()
        return (await tested)[0]

    assert run(qloop, scenario()) == "Test cancelled."
    assert dialog.test_button.text() == "Test connection"
    fake_openai.configure(hold=False)
