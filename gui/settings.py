"""Application settings (QSettings): provider profiles, prices, default concurrency, recent
files, window layout. API keys go to the OS keyring when there is one, never to a file."""

from __future__ import annotations

import json
from typing import Any

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import (
    QDialog, QDialogButtonBox, QDoubleSpinBox, QFormLayout, QGroupBox, QHBoxLayout, QHeaderView, QLabel,
    QLineEdit, QPushButton, QSpinBox, QTableWidget, QTableWidgetItem, QVBoxLayout,
)

KEYRING_SERVICE = "batchgrid"
RECENT_LIMIT = 8
PROVIDER_FIELDS = (("name", "Name"), ("base_url", "Base URL"), ("api_key_env", "Key variable"),
                   ("model", "Default model"))


def keyring_available() -> bool:
    """True when the OS offers a real keyring (not keyring's 'fail' backend)."""
    try:
        import keyring
        from keyring.backends import fail

        return not isinstance(keyring.get_keyring(), fail.Keyring)
    except Exception:
        return False


class AppSettings:
    def __init__(self, qsettings: QSettings | None = None, use_keyring: bool | None = None):
        self.q = qsettings or QSettings("Batchgrid", "Batchgrid")
        self.use_keyring = keyring_available() if use_keyring is None else use_keyring

    # ---- plain values ------------------------------------------------------------------
    def default_concurrency(self) -> int:
        return int(self.q.value("run/default_concurrency", 8))

    def set_default_concurrency(self, value: int) -> None:
        self.q.setValue("run/default_concurrency", int(value))

    def providers(self) -> list[dict[str, Any]]:
        try:
            value = json.loads(self.q.value("providers/profiles", "[]") or "[]")
        except ValueError:
            return []
        return [p for p in value if isinstance(p, dict) and p.get("name")]

    def set_providers(self, profiles: list[dict[str, Any]]) -> None:
        self.q.setValue("providers/profiles", json.dumps(profiles))

    # ---- keys ----------------------------------------------------------------------------
    def save_key(self, provider: str, key: str) -> bool:
        """Store a key in the OS keyring. False when there is no keyring."""
        if not self.use_keyring:
            return False
        import keyring

        keyring.set_password(KEYRING_SERVICE, provider, key)
        return True

    def has_key(self, provider: str) -> bool:
        if not self.use_keyring:
            return False
        import keyring

        try:
            return bool(keyring.get_password(KEYRING_SERVICE, provider))
        except Exception:
            return False

    # ---- recent files ----------------------------------------------------------------------
    def recent(self, kind: str) -> list[str]:
        value = self.q.value(f"recent/{kind}", [])
        if isinstance(value, str):
            value = [value]
        return [v for v in (value or []) if v]

    def add_recent(self, kind: str, path: str) -> None:
        items = [path] + [p for p in self.recent(kind) if p != path]
        self.q.setValue(f"recent/{kind}", items[:RECENT_LIMIT])


class SettingsDialog(QDialog):
    """Providers (base URL, key variable, model, prices), keys, default concurrency."""

    def __init__(self, settings: AppSettings, parent=None):
        super().__init__(parent)
        self.settings = settings
        self.setWindowTitle("Settings")
        self.resize(760, 480)
        layout = QVBoxLayout(self)

        box = QGroupBox("Model providers")
        inner = QVBoxLayout(box)
        inner.addWidget(QLabel("Any OpenAI-compatible server: OpenAI, Azure, or a local Ollama "
                               "(http://localhost:11434/v1) or LM Studio (http://localhost:1234/v1) server."))
        headers = [title for _, title in PROVIDER_FIELDS] + ["Input $ / 1M tokens", "Output $ / 1M tokens"]
        self.table = QTableWidget(0, len(headers))
        self.table.setHorizontalHeaderLabels(headers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().hide()
        for profile in settings.providers():
            self._add_row(profile)
        inner.addWidget(self.table)
        buttons = QHBoxLayout()
        add = QPushButton("Add provider")
        add.clicked.connect(lambda: self._add_row({"name": f"provider{self.table.rowCount() + 1}",
                                                   "api_key_env": "OPENAI_API_KEY"}))
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
        save_key = QPushButton("Save key")
        save_key.clicked.connect(self.save_key)
        keys.addWidget(self.key_edit, 1)
        keys.addWidget(save_key)
        inner.addLayout(keys)
        where = ("Keys are stored in your system keyring." if settings.use_keyring else
                 "No system keyring was found: set the environment variable named under "
                 "\"Key variable\" before starting Batchgrid.")
        self.key_note = QLabel(where)
        self.key_note.setWordWrap(True)
        self.key_note.setObjectName("help")
        inner.addWidget(self.key_note)
        layout.addWidget(box)

        form = QFormLayout()
        self.concurrency = QSpinBox()
        self.concurrency.setRange(1, 1000)
        self.concurrency.setValue(settings.default_concurrency())
        form.addRow("Default rows at once for new pipelines", self.concurrency)
        layout.addLayout(form)

        box_buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        box_buttons.accepted.connect(self.accept)
        box_buttons.rejected.connect(self.reject)
        layout.addWidget(box_buttons)

    def _add_row(self, profile: dict[str, Any]) -> None:
        r = self.table.rowCount()
        self.table.insertRow(r)
        for c, (key, _) in enumerate(PROVIDER_FIELDS):
            self.table.setItem(r, c, QTableWidgetItem(str(profile.get(key, "") or "")))
        for c, key in ((len(PROVIDER_FIELDS), "input_price"), (len(PROVIDER_FIELDS) + 1, "output_price")):
            spin = QDoubleSpinBox()
            spin.setRange(0, 10_000)
            spin.setDecimals(4)
            spin.setValue(float(profile.get(key, 0) or 0))
            self.table.setCellWidget(r, c, spin)

    def profiles(self) -> list[dict[str, Any]]:
        found = []
        for r in range(self.table.rowCount()):
            profile: dict[str, Any] = {}
            for c, (key, _) in enumerate(PROVIDER_FIELDS):
                item = self.table.item(r, c)
                text = item.text().strip() if item else ""
                if text:
                    profile[key] = text
            profile["input_price"] = self.table.cellWidget(r, len(PROVIDER_FIELDS)).value()
            profile["output_price"] = self.table.cellWidget(r, len(PROVIDER_FIELDS) + 1).value()
            if profile.get("name"):
                found.append(profile)
        return found

    def save_key(self) -> None:
        r = self.table.currentRow()
        item = self.table.item(r, 0) if r >= 0 else None
        key = self.key_edit.text().strip()
        if item is None or not key:
            self.key_note.setText("Select a provider and type its key first.")
            return
        if self.settings.save_key(item.text().strip(), key):
            self.key_note.setText(f"The key of {item.text().strip()} is stored in your system keyring.")
            self.key_edit.clear()
        else:
            self.key_note.setText("No system keyring was found, so the key was not stored: set the "
                                  "environment variable named under \"Key variable\" instead.")

    def accept(self) -> None:
        self.settings.set_providers(self.profiles())
        self.settings.set_default_concurrency(self.concurrency.value())
        super().accept()
