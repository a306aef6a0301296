"""The response cache: the same paid request is never made twice unless the user asks.

SQLite in WAL mode, `cache.sqlite` beside the journal. The key is a hash of the endpoint
(base URL + path), the model and the full request body, so any change to a prompt, a
setting or a row's input makes a new request, and nothing else does. Streaming or not
does not change the answer, so it is not part of the key.

Calls with temperature > 0 are cached too, on purpose: rerunning a pipeline after
editing step 4 should cost nothing for steps 1-3, whatever their temperature. The
temperature and seed are part of the key, so changing either asks again; to draw fresh
samples for the same request, run with the cache off (`use_cache: false`, `--no-cache`).

Durable on return: `put` commits before it returns (WAL, synchronous=NORMAL: a killed process
loses nothing committed), so an answer that came back is never paid for twice, even when the
process is killed the next moment. A commit costs about 30 microseconds on the loop's thread
(measured), a paid call hundreds of milliseconds: 100 calls in flight at 200 ms are 500 answers
a second, 1.5% of the loop (3% with the journal's commit of the row), so it stays on the loop.
The cache is *the* durable record of paid answers; the journal only records finished rows.

Bounded: at most `size_limit` bytes of answers (default 1 GiB, the `size` column sums them);
past it, the least recently used entries are evicted down to 90% of the limit. "Used" is the
time of the last put or hit. Hits only update it in memory and write it in group commits (a
tenth of a second, or 256 hits): an access time lost to a kill costs nothing but a slightly
older position in the eviction order, so reading from the cache stays free of commits.

Why not diskcache (the project's stated preference): it is not a dependency yet, it would move
the cache from one file to a folder (every existing cache would be lost) and with
least-recently-used eviction it commits on every hit; this module needs a few dozen lines for
the same policy and keeps puts durable and hits cheap. The size it reports is the answers'
bytes; the file on disk is that plus SQLite's pages and indexes (freed pages are reused, so
it stops growing; `clear()` gives the space back).

A damaged file is moved aside (`cache.sqlite.broken`) and a fresh cache started.

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
SIZE_LIMIT = 1 << 30          # bytes of answers kept (1 GiB)
EVICT_TO = 0.9                # eviction frees down to this share of the limit
TOUCH_AFTER = 0.1             # seconds a hit's access time may wait in memory
TOUCH_ENTRIES = 256           # or this many hits
NOT_PART_OF_KEY = ("stream", "stream_options")


def cache_key(endpoint: str, request: Mapping[str, Any]) -> str:
    body = {k: v for k, v in request.items() if k not in NOT_PART_OF_KEY}
    text = endpoint + "\n" + json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def files_size(path: Path) -> int:
    """Bytes on disk of an SQLite database with its WAL and shared-memory files."""
    total = 0
    for suffix in ("", "-wal", "-shm"):
        try:
            total += path.with_name(path.name + suffix).stat().st_size
        except OSError:
            pass
    return total


class ResponseCache:
    def __init__(self, path: str | Path, size_limit: int = SIZE_LIMIT):
        self.path = Path(path)
        self.size_limit = size_limit
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = self._open()
        except sqlite3.DatabaseError as exc:  # a damaged file: keep it aside, start afresh
            broken = self.path.with_name(self.path.name + ".broken")
            log.warning("response cache %s is damaged (%s); moved to %s", self.path, exc, broken)
            self.path.replace(broken)
            for suffix in ("-wal", "-shm"):
                self.path.with_name(self.path.name + suffix).unlink(missing_ok=True)
            self._db = self._open()
        self._size: int = self._db.execute("SELECT COALESCE(SUM(size), 0) FROM responses").fetchone()[0]
        self._touched: dict[str, float] = {}
        self._timer: asyncio.TimerHandle | None = None
        self.hits = 0
        self.misses = 0
        self.evicted = 0

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # with WAL: a commit survives the process's death
            db.execute("PRAGMA busy_timeout=5000")
            db.execute("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, value TEXT NOT NULL,"
                       " created REAL NOT NULL, used REAL, size INTEGER)")
            columns = {row[1] for row in db.execute("PRAGMA table_info(responses)")}
            if "used" not in columns:  # a cache from before eviction: every entry was last used when made
                db.execute("ALTER TABLE responses ADD COLUMN used REAL")
                db.execute("ALTER TABLE responses ADD COLUMN size INTEGER")
                db.execute("UPDATE responses SET used = created, size = length(CAST(value AS BLOB))")
            db.execute("CREATE INDEX IF NOT EXISTS responses_by_use ON responses (used)")
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    @classmethod
    def in_folder(cls, data_dir: Path) -> ResponseCache:
        return cls(Path(data_dir) / CACHE_FILE)

    @property
    def size(self) -> int:
        """Bytes of answers held (what the limit counts)."""
        return self._size

    def get(self, key: str) -> Any | None:
        row = self._db.execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone()
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        self._touch(key)
        return json.loads(row[0])

    def __contains__(self, key: str) -> bool:
        return self._db.execute("SELECT 1 FROM responses WHERE key = ?", (key,)).fetchone() is not None

    def put(self, key: str, value: Any) -> None:
        """Store an answer; committed (durable) when this returns."""
        text = secrets.redact_known(json.dumps(value, ensure_ascii=False, separators=(",", ":")))
        size = len(text.encode())
        now = time.time()
        self._touched.pop(key, None)
        with self._db:
            self._db.execute("BEGIN")
            old = self._db.execute("SELECT size FROM responses WHERE key = ?", (key,)).fetchone()
            self._db.execute("INSERT OR REPLACE INTO responses (key, value, created, used, size)"
                             " VALUES (?, ?, ?, ?, ?)", (key, text, now, now, size))
        self._size += size - ((old[0] or 0) if old else 0)
        if self._size > self.size_limit:
            self.evict()

    def evict(self, down_to: int | None = None) -> int:
        """Drop the least recently used entries until the answers take at most `down_to` bytes
        (default: 90% of the limit). Returns how many were dropped."""
        target = int(self.size_limit * EVICT_TO) if down_to is None else down_to
        self.flush()  # the latest access times decide
        doomed, freed = [], 0
        for key, size in self._db.execute("SELECT key, size FROM responses ORDER BY used"):
            if self._size - freed <= target:
                break
            doomed.append((key,))
            freed += size or 0
        if doomed:
            with self._db:
                self._db.execute("BEGIN")
                self._db.executemany("DELETE FROM responses WHERE key = ?", doomed)
            self._size -= freed
            self.evicted += len(doomed)
        return len(doomed)

    def _touch(self, key: str) -> None:
        self._touched[key] = time.time()
        if len(self._touched) >= TOUCH_ENTRIES:
            self.flush()
        elif self._timer is None:
            try:
                self._timer = asyncio.get_running_loop().call_later(TOUCH_AFTER, self.flush)
            except RuntimeError:  # no loop (a plain script): write now
                self.flush()

    def flush(self) -> None:
        """Write the access times of recent hits (answers themselves are written by `put`)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._touched:
            return
        rows = [(t, k) for k, t in self._touched.items()]
        self._touched.clear()
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany("UPDATE responses SET used = ? WHERE key = ?", rows)

    def clear(self) -> None:
        """Forget every answer and give the space back to the disk."""
        self._touched.clear()
        self._db.execute("DELETE FROM responses")
        self._db.execute("VACUUM")
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._size = 0

    def close(self) -> None:
        try:
            self.flush()
        except sqlite3.Error as exc:  # access times only: nothing of value is lost
            log.warning("response cache %s: access times not written (%s)", self.path, exc)
        self._db.close()

    async def aclose(self) -> None:
        self.close()
