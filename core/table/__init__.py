"""Spreadsheets in and out. (Minimal for now: the spreadsheet issue replaces this.)"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..errors import InputError


def read_table(path, *, sheet: str | int | None = None, header_row: int | None = None,
               limit: int | None = None) -> pd.DataFrame:
    """Read a sheet into a DataFrame or raise InputError with a one-line reason."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    try:
        if path.suffix.lower() in (".csv", ".txt", ".tsv"):
            return pd.read_csv(path, nrows=limit, sep=None, engine="python", dtype=object)
        return pd.read_excel(path, sheet_name=sheet or 0, nrows=limit, engine="calamine")
    except Exception as exc:  # pragma: no cover - replaced by the spreadsheet issue
        raise InputError(f"{path.name}: cannot be read ({exc})") from None


def export_results(result_set, path, *, fmt: str | None = None) -> Path:
    path = Path(path)
    frame = result_set.to_frame()
    suffix = (fmt or path.suffix.lstrip(".")).lower()
    if suffix == "csv":
        frame.to_csv(path, index=False)
    elif suffix == "parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_excel(path, index=False)
    return path
