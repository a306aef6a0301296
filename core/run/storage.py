"""What Batchgrid keeps on disk between runs: the response cache and the run journal. Their
sizes and clearing them, for the Settings dialog (through the session, off the loop).

Both are bounded on their own (core/providers/cache.py: a size limit, least recently used
evicted; core/run/journal.py: the last runs per sheet and pipeline, sampled traces); clearing
gives their space back at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from batchgrid.core.providers.cache import CACHE_FILE, ResponseCache, files_size

from .journal import Journal


@dataclass
class Storage:
    cache_path: Path
    cache_bytes: int
    journal_path: Path
    journal_bytes: int


def sizes(data_dir: Path, journal_path: Path) -> Storage:
    cache = Path(data_dir) / CACHE_FILE
    return Storage(cache, files_size(cache), Path(journal_path), files_size(Path(journal_path)))


def clear_cache(data_dir: Path) -> None:
    """Forget every cached answer (a run in flight keeps its own connection and goes on)."""
    path = Path(data_dir) / CACHE_FILE
    if path.exists():
        cache = ResponseCache(path)
        try:
            cache.clear()
        finally:
            cache.close()


def clear_journal(journal: Journal | None, path: Path) -> None:
    """Forget every run: through the open `journal` when there is one, else the file at `path`."""
    if journal is not None:
        journal.clear()
    elif Path(path).exists():
        opened = Journal(path)
        try:
            opened.clear()
        finally:
            opened.close()
