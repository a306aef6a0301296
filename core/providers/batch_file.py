"""The Batch API's files: requests as JSONL lines, split under the provider's limits; result lines read back.

Each line names its row and step in `custom_id` = "{row}:{step}" (row first, split at the first
colon: a step key may hold any character). The provider answers in no particular order; the
custom_id is how every answer finds its row again.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

MAX_REQUESTS = 50_000            # OpenAI's limits per batch (Azure's global batch: 100,000, 200 MB)
MAX_BYTES = 200 * 1024 * 1024


@dataclass(frozen=True)
class BatchLimits:
    """The most one batch may hold; above either, the requests are split into several batches."""

    requests: int = MAX_REQUESTS
    bytes: int = MAX_BYTES


DEFAULT_LIMITS = BatchLimits()


def custom_id(row: int, step: str) -> str:
    return f"{row}:{step}"


def parse_custom_id(text: str) -> tuple[int, str] | None:
    """(row, step) of a custom_id this module wrote; None for anything else."""
    row, colon, step = str(text).partition(":")
    if not colon or not row.isdigit():
        return None
    return int(row), step


def jsonl_line(row: int, step: str, url: str, body: dict[str, Any]) -> bytes:
    line = {"custom_id": custom_id(row, step), "method": "POST", "url": url, "body": body}
    return json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


@dataclass
class Chunk:
    """The lines of one batch: its rows in input order and the file's bytes."""

    rows: list[int] = field(default_factory=list)
    data: bytearray = field(default_factory=bytearray)


def chunks(requests: Iterable[tuple[int, dict[str, Any]]], step: str, url: str,
           limits: BatchLimits = DEFAULT_LIMITS) -> Iterator[Chunk]:
    """The requests as JSONL, one chunk per batch, each under `limits` (a single line larger than
    the byte limit still gets a chunk of its own: the provider says what is wrong with it)."""
    chunk = Chunk()
    for row, body in requests:
        line = jsonl_line(row, step, url, body)
        if chunk.rows and (len(chunk.rows) >= limits.requests or len(chunk.data) + len(line) > limits.bytes):
            yield chunk
            chunk = Chunk()
        chunk.rows.append(row)
        chunk.data += line
    if chunk.rows:
        yield chunk


def ranges(rows: Iterable[int]) -> list[list[int]]:
    """Rows as [first, last] runs, in their order: 50,000 consecutive rows are one pair in the journal."""
    runs: list[list[int]] = []
    for row in rows:
        if runs and row == runs[-1][1] + 1:
            runs[-1][1] = row
        else:
            runs.append([row, row])
    return runs


def expand(runs: Iterable[Iterable[int]]) -> Iterator[int]:
    for first, last in runs:
        yield from range(first, last + 1)


def result_lines(data: bytes) -> Iterator[dict[str, Any]]:
    """The lines of an output or error file (a line that is not a JSON object is skipped: its row
    is then reported as having no answer)."""
    for raw in data.splitlines():
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        if isinstance(line, dict):
            yield line
