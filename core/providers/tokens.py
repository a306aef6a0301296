"""Token estimates, for rate limits and projected cost before a server has counted anything.

About four characters per token for English text (OpenAI's own rule of thumb), plus a
few tokens of framing per message. Real counts from the response's usage replace these
as soon as there is one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 4
DEFAULT_ANSWER_TOKENS = 250  # a chat answer's length when the step sets no max tokens


def text_tokens(text: str) -> int:
    return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


def prompt_tokens(request: Mapping[str, Any]) -> int:
    """Tokens a chat or embeddings request sends."""
    if "messages" in request:
        total = 0
        for message in request["messages"]:
            content = message.get("content")
            total += TOKENS_PER_MESSAGE + text_tokens(content if isinstance(content, str) else str(content or ""))
        fmt = request.get("response_format")
        if fmt:
            total += text_tokens(str(fmt))
        return total
    inputs = request.get("input")
    inputs = [inputs] if isinstance(inputs, str) else list(inputs or [])
    return sum(text_tokens(t) for t in inputs)


def answer_limit(request: Mapping[str, Any]) -> int | None:
    return request.get("max_completion_tokens") or request.get("max_tokens")
