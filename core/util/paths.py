"""Where Batchgrid keeps its own files (journal, response cache, prices) for this user."""

from __future__ import annotations

from pathlib import Path


def default_data_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("batchgrid", appauthor=False))
