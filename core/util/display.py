"""How a value reads as text, everywhere: the results table, the clipboard, the inspector,
CSV export and templates all call `display_text`, so a value never reads two ways.

The rules follow what Excel shows: a blank is empty, 3.0 reads 3, a float shows at most
15 significant digits (Excel's own precision: 0.1 + 0.2 reads 0.3), a date at midnight
reads as a date, lists and dicts (parsed JSON, embeddings) read as JSON.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any

_JSON = json.JSONEncoder(ensure_ascii=False, default=str)  # made once: json.dumps(**options) builds one per call


def display_text(value: Any) -> str:
    if value is None:
        return ""
    kind = type(value)
    if kind is str:
        return value
    if kind is int or kind is bool:
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ""  # a blank cell as pandas reads it
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.15g}"
    if isinstance(value, dt.datetime):
        if value != value:  # pandas' NaT
            return ""
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat(sep=" ")
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, (set, frozenset)):
        value = sorted(value, key=str)
    tolist = getattr(value, "tolist", None)  # numpy arrays and scalars (embeddings, numbers)
    if tolist is not None and not isinstance(value, (list, tuple, dict)):
        value = tolist()
        if not isinstance(value, (list, tuple, dict)):
            return display_text(value)
    if isinstance(value, (list, tuple, dict)):
        return _JSON.encode(value)
    return str(value)
