"""The response cache: the same paid request is never made twice unless the user asks.

SQLite in WAL mode, `cache.sqlite` beside the journal. The key is a hash of the endpoint
(base URL + path), the model and the full request body, so any change to a prompt, a
setting or a row's input makes a new request, and nothing else does. Streaming or not
does not change the answer, so it is not part of the key.

Calls with temperature > 0 are cached too, on purpose: rerunning a pipeline after
editing step 4 should cost nothing for steps 1-3, whatever their temperature. The
temperature and seed are part of the key, so changing either asks again; to draw fresh
samples for the same request, run with the cache off (`use_cache: false`, `--no-cache`).

Writes are grouped: kept in memory for at most a tenth of a second (or 256 entries),
then written in one transaction, so caching costs the run next to nothing.

No secret is stored: keys are hashes (request headers, where keys travel, are not even part
of them), and a reply that echoes a remembered secret is stored with it hidden
(core/util/secrets.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import sqlite3
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from batchgrid.core.util import secrets

log = logging.getLogger(__name__)

CACHE_FILE = "cache.sqlite"
FLUSH_AFTER = 0.1
FLUSH_ENTRIES = 256
NOT_PART_OF_KEY = ("stream", "stream_options")


def cache_key(endpoint: str, request: Mapping[str, Any]) -> str:
    body = {k: v for k, v in request.items() if k not in NOT_PART_OF_KEY}
    text = endpoint + "\n" + json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class ResponseCache:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = self._open()
        except sqlite3.DatabaseError as exc:  # a damaged file: keep it aside, start afresh
            broken = self.path.with_name(self.path.name + ".broken")
            log.warning("response cache %s is damaged (%s); moved to %s", self.path, exc, broken)
            self.path.replace(broken)
            self._db = self._open()
        self._pending: dict[str, str] = {}
        self._timer: asyncio.TimerHandle | None = None
        self.hits = 0
        self.misses = 0

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=5000")
        db.execute("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL NOT NULL)")
        return db

    @classmethod
    def in_folder(cls, data_dir: Path) -> ResponseCache:
        return cls(Path(data_dir) / CACHE_FILE)

    def get(self, key: str) -> Any | None:
        text = self._pending.get(key)
        if text is None:
            row = self._db.execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone()
            text = row[0] if row else None
        if text is None:
            self.misses += 1
            return None
        self.hits += 1
        return json.loads(text)

    def __contains__(self, key: str) -> bool:
        return key in self._pending or self._db.execute(
            "SELECT 1 FROM responses WHERE key = ?", (key,)).fetchone() is not None

    def put(self, key: str, value: Any) -> None:
        self._pending[key] = secrets.redact_known(json.dumps(value, ensure_ascii=False, separators=(",", ":")))
        if len(self._pending) >= FLUSH_ENTRIES:
            self.flush()
        elif self._timer is None:
            try:
                self._timer = asyncio.get_running_loop().call_later(FLUSH_AFTER, self.flush)
            except RuntimeError:  # no loop (a plain script): write now
                self.flush()

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pending:
            return
        now = time.time()
        rows = [(k, v, now) for k, v in self._pending.items()]
        self._pending.clear()
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO responses (key, value, created) VALUES (?, ?, ?)", rows)

    def clear(self) -> None:
        self._pending.clear()
        self._db.execute("DELETE FROM responses")

    def close(self) -> None:
        self.flush()
        self._db.close()

    async def aclose(self) -> None:
        self.close()
