"""Application settings (QSettings): provider profiles, prices, default concurrency, where runs
go (this computer or a Dask cluster), recent files, window layout. API keys go to the OS keyring
when there is one, never to a file; without one (or when it refuses), a key typed here is used for
this session only (kept in memory by core/providers/keys.py, where every run finds it). Settings
says where keys can live here.

Test connection tries the selected provider profile as the table shows it (unsaved edits and a
key typed but not saved included): core/providers/connection.py, awaited off the event loop,
with a Cancel.

The Settings dialog also shows what is kept on disk (the response cache, the run journal) with
a Clear button each: a view over the session's `storage` / `clear_cache` / `clear_journal`,
which do the work off the GUI thread.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from pathlib import Path
from typing import Any

from batchgrid.core.pipeline.file import looks_like_key
from batchgrid.core.providers.connection import check_connection
from batchgrid.core.providers.keys import (
    has_key,
    keyring_available,
    keyring_fields,
    keyring_title,
    store_key,
    use_for_session,
)
from batchgrid.core.providers.prices import DEFAULT_PRICES, PRICES_FILE, read_user_prices, save_user_prices
from batchgrid.core.util import secrets
from batchgrid.core.util.errors import BatchgridError
from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from .widgets import one_line

RECENT_LIMIT = 8
ON_THIS_COMPUTER, ON_CLUSTER = "this computer", "cluster"  # Run on
DEFAULT_CLUSTER = "local:2"
PRESET_NAMES = ("openai", "azure", "ollama", "lmstudio", "vllm", "llamacpp", "openrouter")
# columns of the providers table: profile field, title
PROVIDER_FIELDS = (("name", "Name"), ("preset", "Kind"), ("base_url", "Base URL"), ("model", "Default model"),
                   ("api_key_env", "Key variable"))


KEY_NOT_HERE = "Not kept in \"Key variable\""
_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def variable_name_problem(text: str) -> str:
    """Why `text` cannot be the name of an environment variable holding a key ('' if it can):
    most often, it is the key itself."""
    if looks_like_key(text) or (len(text) >= 24 and "_" not in text and any(c.isdigit() for c in text)
                                and any(c.islower() for c in text)):
        return "that looks like an API key, not the name of a variable"
    if not _VARIABLE_NAME.fullmatch(text):
        return "a variable's name has only letters, digits and _ (and does not start with a digit)"
    return ""


class AppSettings:
    def __init__(self, qsettings: QSettings | None = None, use_keyring: bool | None = None):
        self.q = qsettings or QSettings("Batchgrid", "Batchgrid")
        self.use_keyring = keyring_available() if use_keyring is None else use_keyring

    # ---- plain values ------------------------------------------------------------------
    def default_concurrency(self) -> int:
        return int(self.q.value("run/default_concurrency", 8))

    def set_default_concurrency(self, value: int) -> None:
        self.q.setValue("run/default_concurrency", int(value))

    # Run on: this computer or a Dask cluster. This computer's choice, never the pipeline file's
    # (a file is shared between people, each with their own machine and cluster).
    def runs_on_cluster(self) -> bool:
        return self.q.value("run/on", ON_THIS_COMPUTER) == ON_CLUSTER

    def cluster_address(self) -> str:
        return str(self.q.value("run/cluster_address", DEFAULT_CLUSTER) or "").strip()

    def set_run_on(self, on_cluster: bool, address: str) -> None:
        self.q.setValue("run/on", ON_CLUSTER if on_cluster else ON_THIS_COMPUTER)
        self.q.setValue("run/cluster_address", address.strip())

    def cluster(self) -> str | None:
        """Where runs go: the cluster's address as typed (`Session.start(cluster=...)`); None: this computer."""
        return self.cluster_address() if self.runs_on_cluster() else None

    def providers(self) -> list[dict[str, Any]]:
        try:
            value = json.loads(self.q.value("providers/profiles", "[]") or "[]")
        except ValueError:
            return []
        return [p for p in value if isinstance(p, dict) and p.get("name")]

    def set_providers(self, profiles: list[dict[str, Any]]) -> None:
        # A key is never written to the settings file, even when one was typed as a variable's name.
        profiles = [{k: v for k, v in p.items() if not (k == "api_key_env" and variable_name_problem(str(v)))}
                    for p in profiles]
        self.q.setValue("providers/profiles", json.dumps(profiles))

    def pipeline_profile(self, name: str) -> dict[str, Any] | None:
        """The named profile as a pipeline holds it: where the key lives, never the key."""
        for profile in self.providers():
            if profile.get("name") == name:
                out = {k: v for k, v in profile.items() if k in ("preset", "base_url", "model", "api_key_env") and v}
                if self.has_key(name):
                    out.pop("api_key_env", None)
                    out.update(keyring_fields(name))
                return out
        return None

    # ---- keys ----------------------------------------------------------------------------
    def save_key(self, provider: str, key: str) -> str:
        """Keep a key for `provider`: for this session in any case (this session's runs find it,
        whatever the pipeline's profile names), and in the OS keyring when there is one. '' when
        the keyring has it, else why not, in words. Blocking (a keyring may ask the desktop)."""
        use_for_session(provider, key)
        if not self.use_keyring:
            return "no system keyring was found"
        try:
            store_key(provider, key)
        except Exception as exc:  # locked, refused, no backend after all: the session key still works
            return f"the system keyring refused it ({secrets.redact(str(exc)) or type(exc).__name__})"
        return ""

    def keys_kept_in(self) -> str:
        """Where keys can live on this machine, in words."""
        variable = "set the environment variable named under \"Key variable\" (such as OPENAI_API_KEY) " \
                   "before starting Batchgrid"
        if not self.use_keyring:
            return ("Keys are kept in: memory only. There is no system keyring here, so a key typed here lasts "
                    f"until you quit Batchgrid; to keep one, {variable}.")
        title = keyring_title()
        return (f"Keys are kept in: the system keyring{f' ({title})' if title else ''} with Save key; in memory "
                f"until you quit with Use for this session only; or {variable}.")

    def has_key(self, provider: str) -> bool:
        return self.use_keyring and has_key(provider)

    # ---- recent files ----------------------------------------------------------------------
    def recent(self, kind: str) -> list[str]:
        value = self.q.value(f"recent/{kind}", [])
        if isinstance(value, str):
            value = [value]
        return [v for v in (value or []) if v]

    def add_recent(self, kind: str, path: str) -> None:
        items = [path] + [p for p in self.recent(kind) if p != path]
        self.q.setValue(f"recent/{kind}", items[:RECENT_LIMIT])


def human_size(size: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:,} {unit}" if unit == "bytes" else f"{size:,.1f} {unit}"
        size /= 1024  # type: ignore[assignment]
    return ""


class SettingsDialog(QDialog):
    """Provider profiles, their keys, model prices, the default concurrency, and what is kept on
    disk (with `session`: the cache's and the journal's sizes, a Clear button each)."""

    storageShown = Signal()  # the sizes on disk were (re)read and shown, or a clear failed
    keyNoted = Signal(str)  # a key was kept (or not): what key_note says
    connectionTested = Signal(str)  # Test connection ended (OK, failed or cancelled): what it says

    def __init__(self, settings: AppSettings, data_dir: Path | None = None, parent=None, session=None):
        super().__init__(parent)
        self.settings = settings
        self.data_dir = data_dir
        self.session = session
        self._tasks: set[asyncio.Task] = set()
        self._testing: asyncio.Task | None = None
        self.setWindowTitle("Settings")
        self.resize(820, 620)
        layout = QVBoxLayout(self)

        box = QGroupBox("Model providers")
        inner = QVBoxLayout(box)
        intro = QLabel("Any OpenAI-compatible server: OpenAI, Azure, OpenRouter, or a local Ollama, LM Studio, "
                       "vLLM or llama.cpp server (leave Base URL blank for the kind's usual address). "
                       "Choose a provider in a model step to use it; the pipeline keeps its settings, never its key.")
        intro.setWordWrap(True)
        inner.addWidget(intro)
        self.table = QTableWidget(0, len(PROVIDER_FIELDS))
        self.table.setHorizontalHeaderLabels([title for _, title in PROVIDER_FIELDS])
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().hide()
        for profile in settings.providers():
            self._add_row(profile)
        self.table.itemChanged.connect(self._refuse_key_as_variable)
        inner.addWidget(self.table)
        buttons = QHBoxLayout()
        add = QPushButton("Add provider")
        add.clicked.connect(lambda: self._add_row({"name": f"provider{self.table.rowCount() + 1}", "preset": "openai"}))
        remove = QPushButton("Remove")
        remove.clicked.connect(lambda: self.table.removeRow(self.table.currentRow()))
        buttons.addWidget(add)
        buttons.addWidget(remove)
        buttons.addStretch(1)
        inner.addLayout(buttons)
        keys = QHBoxLayout()
        self.key_edit = QLineEdit()
        self.key_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.key_edit.setPlaceholderText("API key of the selected provider")
        self.save_key_button = QPushButton("Save key")
        self.save_key_button.setToolTip("Keep the key in the system keyring: it stays after you quit")
        self.save_key_button.clicked.connect(self.save_key)
        self.save_key_button.setVisible(settings.use_keyring)
        self.session_key_button = QPushButton("Use for this session only")
        self.session_key_button.setToolTip("Keep the key in memory until you quit Batchgrid; it is never written "
                                           "to a file")
        self.session_key_button.clicked.connect(self.use_for_session)
        self.test_button = QPushButton("Test connection")
        self.test_button.setToolTip("Ask the selected provider for its models and one 1-token answer")
        self.test_button.clicked.connect(self.test_connection)
        keys.addWidget(self.key_edit, 1)
        for button in (self.save_key_button, self.session_key_button, self.test_button):
            keys.addWidget(button)
        inner.addLayout(keys)
        self.key_where = QLabel(settings.keys_kept_in())
        self.key_where.setWordWrap(True)
        self.key_where.setObjectName("help")
        inner.addWidget(self.key_where)
        self.key_note = QLabel()
        self.key_note.setWordWrap(True)
        inner.addWidget(self.key_note)
        self.connection_result = QLabel()
        self.connection_result.setWordWrap(True)
        self.connection_result.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        inner.addWidget(self.connection_result)
        layout.addWidget(box, 3)

        prices_box = QGroupBox("Prices (US dollars per million tokens; local servers cost nothing)")
        pcol = QVBoxLayout(prices_box)
        self.prices = QTableWidget(0, 3)
        self.prices.setHorizontalHeaderLabels(["Model", "Input", "Output"])
        self.prices.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.prices.verticalHeader().hide()
        for model, price in sorted(self._current_prices().items()):
            self._add_price(model, price.get("input", 0), price.get("output", 0))
        add_price = QPushButton("Add model price")
        add_price.clicked.connect(lambda: self._add_price("", 0, 0))
        pcol.addWidget(self.prices)
        pcol.addWidget(add_price, 0, Qt.AlignmentFlag.AlignLeft)
        layout.addWidget(prices_box, 2)

        form = QFormLayout()
        self.concurrency = QSpinBox()
        self.concurrency.setRange(1, 1000)
        self.concurrency.setValue(settings.default_concurrency())
        form.addRow("Rows at once for new pipelines", self.concurrency)
        layout.addLayout(form)
        if session is not None:
            layout.addWidget(self._storage_box())
        self.error = QLabel()
        self.error.setObjectName("fieldProblem")
        self.error.hide()
        layout.addWidget(self.error)
        box_buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        box_buttons.accepted.connect(self.accept)
        box_buttons.rejected.connect(self.reject)
        layout.addWidget(box_buttons)

    # ---- kept on disk ----------------------------------------------------------------------
    def _storage_box(self) -> QGroupBox:
        box = QGroupBox("Kept on disk")
        form = QFormLayout(box)
        self.cache_size = QLabel("…")
        self.journal_size = QLabel("…")
        self.clear_cache_button = QPushButton("Clear")
        self.clear_cache_button.setToolTip("Forget every model answer: the next runs ask (and pay) again")
        self.clear_cache_button.clicked.connect(lambda: self._spawn(self._clear(self.session.clear_cache)))
        self.clear_journal_button = QPushButton("Clear")
        self.clear_journal_button.setToolTip("Forget every run: earlier runs can no longer be resumed")
        self.clear_journal_button.clicked.connect(lambda: self._spawn(self._clear(self.session.clear_journal)))
        for label, size, button in (("Response cache", self.cache_size, self.clear_cache_button),
                                    ("Run journal", self.journal_size, self.clear_journal_button)):
            row = QHBoxLayout()
            row.addWidget(size, 1)
            row.addWidget(button)
            form.addRow(label, row)
        note = QLabel("The cache keeps model answers (the least recently used go past its size limit); the "
                      "journal keeps the last runs of each sheet and pipeline, with the steps' details of "
                      "failed rows and a sample of done rows.")
        note.setWordWrap(True)
        note.setObjectName("help")
        form.addRow(note)
        self.refresh_storage()
        return box

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def refresh_storage(self) -> None:
        """Read the sizes off the GUI thread (the session's worker thread) and show them."""
        self._spawn(self._show_storage())

    async def _show_storage(self) -> None:
        try:
            kept = await self.session.storage()
        except OSError as exc:
            self._storage_failed(f"The sizes on disk could not be read: {exc.strerror or exc}")
            return
        try:
            self.cache_size.setText(human_size(kept.cache_bytes))
            self.cache_size.setToolTip(str(kept.cache_path))
            self.journal_size.setText(human_size(kept.journal_bytes))
            self.journal_size.setToolTip(str(kept.journal_path))
        except RuntimeError:  # the dialog was closed meanwhile
            return
        self.storageShown.emit()

    async def _clear(self, clear) -> None:
        try:
            await clear()
        except (BatchgridError, OSError, sqlite3.Error) as exc:
            self._storage_failed(f"Not cleared: {exc}")
            return
        await self._show_storage()

    def _storage_failed(self, message: str) -> None:
        try:
            self.error.setText(message)
            self.error.show()
        except RuntimeError:  # the dialog was closed meanwhile
            return
        self.storageShown.emit()

    # ---- providers -----------------------------------------------------------------------
    def _add_row(self, profile: dict[str, Any]) -> None:
        r = self.table.rowCount()
        self.table.insertRow(r)
        for c, (key, _) in enumerate(PROVIDER_FIELDS):
            if key == "preset":
                combo = QComboBox()
                combo.addItems(PRESET_NAMES)
                combo.setCurrentText(str(profile.get("preset") or "openai"))
                self.table.setCellWidget(r, c, combo)
            else:
                self.table.setItem(r, c, QTableWidgetItem(str(profile.get(key, "") or "")))

    def _refuse_key_as_variable(self, item: QTableWidgetItem) -> None:
        """A key typed or pasted where the variable's name goes is refused at once (never kept,
        never saved), with where the key goes instead."""
        if PROVIDER_FIELDS[item.column()][0] != "api_key_env" or not item.text().strip():
            return
        problem = variable_name_problem(item.text().strip())
        if not problem:
            if self.error.text().startswith(KEY_NOT_HERE):
                self.error.hide()
            return
        self.table.blockSignals(True)
        item.setText("")
        self.table.blockSignals(False)
        where = ("paste the key into the key field below and press Save key: it goes to your system keyring"
                 if self.settings.use_keyring else
                 "paste the key into the key field below and press Use for this session only (no system keyring "
                 "was found), or put it in an environment variable before starting Batchgrid")
        self.error.setText(f"{KEY_NOT_HERE}: {problem}. Write the name of the environment variable that holds "
                           f"the key here, such as OPENAI_API_KEY; {where}.")
        self.error.show()
        self.key_edit.setFocus()

    def _rows(self) -> list[tuple[int, dict[str, Any]]]:
        """(row, profile) for each row with a name, as the table shows it now."""
        found = []
        for r in range(self.table.rowCount()):
            profile: dict[str, Any] = {}
            for c, (key, _) in enumerate(PROVIDER_FIELDS):
                if key == "preset":
                    text = self.table.cellWidget(r, c).currentText()
                else:
                    item = self.table.item(r, c)
                    text = item.text().strip() if item else ""
                if text:
                    profile[key] = text
            if profile.get("name"):
                found.append((r, profile))
        return found

    def profiles(self) -> list[dict[str, Any]]:
        return [profile for _, profile in self._rows()]

    def _selected_provider(self) -> int:
        """The row of the provider being edited: the selected one, or the only one."""
        r = self.table.currentRow()
        return 0 if r < 0 and self.table.rowCount() == 1 else r

    def _name_and_key(self) -> tuple[str, str] | None:
        r = self._selected_provider()
        item = self.table.item(r, 0) if r >= 0 else None
        key = self.key_edit.text().strip()
        if item is None or not item.text().strip() or not key:
            self._note_key("Select a provider and type its key first.")
            return None
        return item.text().strip(), key

    def _note_key(self, text: str) -> None:
        try:
            self.key_note.setText(text)
        except RuntimeError:  # the dialog was closed meanwhile
            return
        self.keyNoted.emit(text)

    def use_for_session(self) -> None:
        """Keep the typed key in memory for this session: every run until you quit finds it."""
        found = self._name_and_key()
        if found is None:
            return
        name, key = found
        use_for_session(name, key)
        self.key_edit.clear()
        self._note_key(f"{name} uses this key until you quit Batchgrid; it is not written anywhere.")

    def save_key(self) -> None:
        """Save key: to the system keyring (off the GUI thread: it may ask the desktop), and for
        this session in any case, so a keyring that is missing or refuses never leaves Run
        without the key."""
        found = self._name_and_key()
        if found is None:
            return
        name, key = found
        self.key_edit.clear()
        if not self.settings.use_keyring:
            self._key_kept(name, self.settings.save_key(name, key))
            return
        self._spawn(self._save_in_keyring(name, key))

    async def _save_in_keyring(self, name: str, key: str) -> None:
        self._key_kept(name, await asyncio.to_thread(self.settings.save_key, name, key))

    def _key_kept(self, name: str, why_not: str) -> None:
        self._note_key(f"The key of {name} is stored in your system keyring." if not why_not else
                       f"The key was not stored: {why_not}. {name} uses it for this session only, until you quit "
                       "Batchgrid; to keep it, set the environment variable named under \"Key variable\" "
                       "before starting Batchgrid.")

    # ---- test connection -------------------------------------------------------------------
    def test_connection(self) -> None:
        """Test the provider being edited; pressed again while a test runs: Cancel."""
        if self._testing is not None:
            self._testing.cancel()
            return
        r = self._selected_provider()
        profile = next((p for i, p in self._rows() if i == r), None)
        if profile is None:
            self._tested("Select a provider to test first.", ok=False)
            return
        name = profile.pop("name")
        self.connection_result.setObjectName("help")
        self._restyle(self.connection_result)
        self.connection_result.setText(f"Testing {name}…")
        self.test_button.setText("Cancel")
        self._testing = asyncio.ensure_future(self._test(name, profile, self.key_edit.text().strip() or None))
        self._tasks.add(self._testing)
        self._testing.add_done_callback(self._tasks.discard)

    async def _test(self, name: str, fields: dict[str, Any], key: str | None) -> None:
        ok = False
        try:
            report = await check_connection(name, fields, key=key, key_from="the key typed above")
            ok, text = report.ok, report.message
            if report.no_key:
                text += "; or type the key above and test again"
        except asyncio.CancelledError:
            text = "Test cancelled."
        except Exception as exc:  # never a traceback in the window
            text = f"Failed: {one_line(exc)}"
        self._testing = None
        self._tested(text, ok)

    def _tested(self, text: str, ok: bool) -> None:
        try:
            self.connection_result.setObjectName("help" if ok else "fieldProblem")
            self._restyle(self.connection_result)
            self.connection_result.setText(text)
            self.test_button.setText("Test connection")
        except RuntimeError:  # the dialog was closed meanwhile
            return
        self.connectionTested.emit(text)

    @staticmethod
    def _restyle(widget) -> None:
        widget.style().unpolish(widget)
        widget.style().polish(widget)

    def done(self, result: int) -> None:
        if self._testing is not None:  # closing the dialog ends its test
            self._testing.cancel()
        super().done(result)

    # ---- prices --------------------------------------------------------------------------
    def _current_prices(self) -> dict[str, dict[str, float]]:
        merged = {k: dict(v) for k, v in DEFAULT_PRICES.items()}
        if self.data_dir is not None:
            try:
                merged.update(read_user_prices(Path(self.data_dir) / PRICES_FILE))
            except Exception:
                pass  # a broken file is reported by the run that reads it; here we start afresh
        return merged

    def _add_price(self, model: str, input_price: float, output_price: float) -> None:
        r = self.prices.rowCount()
        self.prices.insertRow(r)
        self.prices.setItem(r, 0, QTableWidgetItem(model))
        for c, value in ((1, input_price), (2, output_price)):
            spin = QDoubleSpinBox()
            spin.setRange(0, 10_000)
            spin.setDecimals(4)
            spin.setValue(float(value or 0))
            self.prices.setCellWidget(r, c, spin)

    def price_table(self) -> dict[str, dict[str, float]]:
        table = {}
        for r in range(self.prices.rowCount()):
            item = self.prices.item(r, 0)
            model = item.text().strip() if item else ""
            if model:
                table[model] = {"input": self.prices.cellWidget(r, 1).value(),
                                "output": self.prices.cellWidget(r, 2).value()}
        return table

    def accept(self) -> None:
        self.settings.set_providers(self.profiles())
        self.settings.set_default_concurrency(self.concurrency.value())
        if self.data_dir is not None:
            # only what differs from the built-in list is the user's own
            own = {m: p for m, p in self.price_table().items() if DEFAULT_PRICES.get(m) != p}
            try:
                save_user_prices(Path(self.data_dir), own)
            except OSError as exc:
                self.error.setText(f"The prices could not be saved: {exc.strerror or exc}")
                self.error.show()
                return
        super().accept()
