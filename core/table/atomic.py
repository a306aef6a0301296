"""Atomic writes: a crash or a full disk never leaves a half-written file where a good one was.

The file is written under a temporary name in the same folder (same disk, so the final
rename is atomic), flushed to disk, then renamed over the target with os.replace.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from batchgrid.core.util.errors import BatchgridError


class ExportError(BatchgridError):
    """A results file could not be written (no such folder, disk full, file open elsewhere)."""


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path`, on failure it vanishes."""
    if not path.parent.is_dir():
        raise ExportError(f"cannot write {path.name}: the folder {path.parent} does not exist")
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temp, "xb"):  # created here so it gets normal permissions (the umask), unlike mkstemp
            pass
        yield temp
        with open(temp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            temp.unlink()
        if isinstance(exc, OSError):
            raise ExportError(_describe(path, exc)) from None
        raise


def _describe(path: Path, exc: OSError) -> str:
    if isinstance(exc, PermissionError):
        return f"cannot write {path.name}: permission denied (is it open in Excel or another program?)"
    reason = exc.strerror or str(exc)
    return f"cannot write {path.name}: {reason}"
