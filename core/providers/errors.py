"""The openai SDK's exceptions, said in words and sorted into "retry" and "retrying cannot help".

Permanent: 401, 403, 404, other 4xx but 408/409/425/429, 501, and a 5xx whose text says the
request is unsupported or invalid (a server without json_schema or without embeddings). Those
fail once; a refusal every row would meet is said without any row's text. A refused connection
is a setup error before the server's first answer in this run, and ServerUnreachable (the run
waits for it) after."""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING

from batchgrid.core.util import secrets
from batchgrid.core.util.errors import RetryableError, ServerUnreachable, StepError
from batchgrid.core.util.http import http
from batchgrid.core.util.httputil import retry_after_seconds

from .profiles import Profile

if TYPE_CHECKING:  # pragma: no cover  (openai is imported only when an error is mapped: see client.py)
    import openai

CONNECT_TIMEOUT = 10.0  # seconds a server may take to accept a connection (client.py)

def server_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        message = inner.get("message") if isinstance(inner, dict) else inner
        if message:
            return " ".join(str(message).split())[:300]
    text = getattr(exc.response, "text", "") or exc.message or ""
    return " ".join(str(text).split())[:300]


def error_code(exc: openai.APIStatusError) -> str:
    body = exc.body
    inner = body.get("error", body) if isinstance(body, dict) else None
    code = exc.code or (inner.get("code") if isinstance(inner, dict) else None)
    return str(code or "")



class ProviderFailure(StepError):
    """A failure every later call would meet too: a rejected key or no quota (the whole provider),
    an unknown or forbidden model (`model` set: that model only). Later calls fail at once."""

    def __init__(self, message: str, *, model: str | None = None):
        super().__init__(message)
        self.model = model


# A 5xx whose text says the request itself is what the server cannot do: another attempt gets the same.
_UNSUPPORTED = ("not support", "unsupported", "not implemented", "input should be", "must be created with",
                "invalid", "validation error", "not allowed")
_SCHEMA_WORDS = ("json_schema", "response_format", "json_object")


class SchemaRefused(ProviderFailure):
    """The server refuses response_format json_schema (llama-cpp-python, older servers): the structured
    and classify steps fall back to JSON mode or plain text for this model, for the rest of the run."""


class EmbeddingsRefused(ProviderFailure):
    """The server serves no embeddings at all (llama-server without --embeddings): every later
    embeddings call fails at once; chat is untouched."""


def permanent_status(status: int, detail: str) -> bool:
    """A status another attempt cannot change: 501, a 4xx other than 408/409/425/429, and a 5xx whose
    text says the request is unsupported or invalid."""
    if status == 501:
        return True
    if 400 <= status < 500:
        return status not in (408, 409, 425, 429)
    text = detail.lower()
    return status >= 500 and any(word in text for word in _UNSUPPORTED)


def map_error(exc: BaseException, profile: Profile, model: str, secret: str | None = None, *,
              answered: bool = False, request: dict | None = None, path: str = "") -> Exception:
    """The Batchgrid error for an SDK exception: RetryableError (the engine retries) or StepError.

    `answered`: the server has answered in this run (a refused connection is then a restart:
    ServerUnreachable). `request` and `path`: what was sent, to say which feature a server refused.
    Messages of refusals that every row would meet name no row's text: the engine compares them."""
    import openai

    secrets.remember(secret)  # the key is hidden from every message (core/util/secrets.py)
    who = f"provider {profile.name!r}"
    at = f"the server at {profile.base_url}"
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        detail = secrets.redact(server_message(exc))
        code = error_code(exc)
        said = f" (HTTP {status}: {detail})" if detail else f" (HTTP {status})"
        if status == 401:
            return ProviderFailure(f"the API key for {who} was rejected{said}; check {profile.key_source()}")
        if status == 403:
            return ProviderFailure(f"{who} refused access to model {model!r}{said}", model=model)
        context = _context_overflow(exc)
        if context is not None:
            return StepError(f"the prompt ({context[0]} tokens) is longer than the model's context "
                             f"({context[1]} tokens)")
        if status == 404:
            if code == "model_not_found" or "model" in detail.lower() or "deployment" in detail.lower():
                return ProviderFailure(f"{who} has no model {model!r}{said}; check the model name", model=model)
            return ProviderFailure(f"{who} has no such endpoint at {profile.base_url}{said}; is the base URL right?")
        if status == 429:
            if code == "insufficient_quota" or "quota" in detail.lower():
                return ProviderFailure(f"{who} says the account has no quota or credit left{said}")
            return RetryableError(f"{who} is rate limiting{said}", retry_after=retry_after_seconds(exc.response.headers),
                                  rate_limited=True)
        if permanent_status(status, detail):
            lower = detail.lower()
            if path.endswith("/embeddings") and (status == 501 or "embedding" in lower):
                return EmbeddingsRefused(f"{at} does not serve embeddings (start it with embeddings enabled, "
                                         "e.g. llama-server --embeddings) or use another server")
            fmt = (request or {}).get("response_format") or {}
            if fmt.get("type") == "json_schema" and any(word in lower for word in _SCHEMA_WORDS):
                return SchemaRefused(f"{at} does not support structured output (json_schema); switch the step "
                                     "to JSON mode or use another server", model=model)
            if status == 501:
                return ProviderFailure(f"{at} does not support this request{said}")
            return StepError(f"{who} refused the request{said}")
        return RetryableError(f"{who} had a server error{said}", retry_after=retry_after_seconds(exc.response.headers))
    if isinstance(exc, openai.APITimeoutError):
        if any(isinstance(e, http.ConnectTimeout) for e in _causes(exc)):
            return RetryableError(f"{at} did not accept a connection within {CONNECT_TIMEOUT:g} s")
        return RetryableError(f"{who} did not answer within {profile.timeout:g} s")
    if isinstance(exc, openai.APIConnectionError):
        if _refused(exc):
            if answered:
                return ServerUnreachable(f"{at} refuses connections (restarting?)", url=profile.base_url)
            hint = profile.preset.running_hint or "is the server running and the base URL right?"
            return StepError(f"nothing is listening at {profile.base_url} — {hint}")
        if _no_such_host(exc):
            return StepError(f"the address of {profile.base_url} cannot be found — is the base URL right?")
        if _dropped(exc):
            return RetryableError(f"{at} closed the connection without an answer")
        return RetryableError(f"the connection to {who} at {profile.base_url} failed: {_root(exc)}")
    if isinstance(exc, openai.OpenAIError):
        return StepError(f"{who}: {secrets.redact(str(exc))}")
    return exc if isinstance(exc, Exception) else RuntimeError(str(exc))


def _context_overflow(exc: openai.APIStatusError) -> tuple[int, int] | None:
    """(prompt tokens, context) from llama.cpp's 400 exceed_context_size_error, else None."""
    body = exc.body
    inner = body.get("error", body) if isinstance(body, dict) else None
    if not isinstance(inner, dict) or inner.get("type") != "exceed_context_size_error":
        return None
    try:
        return int(inner["n_prompt_tokens"]), int(inner["n_ctx"])
    except (KeyError, TypeError, ValueError):
        return None


def _dropped(exc: BaseException) -> bool:
    """The server closed the connection before any answer (it crashed or is restarting)."""
    return any(isinstance(e, (http.RemoteProtocolError, http.ReadError)) for e in _causes(exc))


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _refused(exc: BaseException) -> bool:
    for e in _causes(exc):
        if isinstance(e, ConnectionRefusedError) or getattr(e, "errno", None) == errno.ECONNREFUSED:
            return True
        text = str(e).lower()
        if "connection refused" in text or "connect call failed" in text:
            return True
    return False


def _no_such_host(exc: BaseException) -> bool:
    return any(isinstance(e, socket.gaierror) or "name or service not known" in str(e).lower()
               or "nodename nor servname" in str(e).lower() for e in _causes(exc))


def _root(exc: BaseException) -> str:
    last = exc
    for e in _causes(exc):
        last = e
    return str(last) or type(last).__name__
