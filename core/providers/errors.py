"""The openai SDK's exceptions, said in words and sorted into "retry" and "retrying cannot help"."""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING

from batchgrid.core.util import secrets
from batchgrid.core.util.errors import RetryableError, StepError
from batchgrid.core.util.httputil import retry_after_seconds

from .profiles import Profile

if TYPE_CHECKING:  # pragma: no cover  (openai is imported only when an error is mapped: see client.py)
    import openai

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


def map_error(exc: BaseException, profile: Profile, model: str, secret: str | None = None) -> Exception:
    """The Batchgrid error for an SDK exception: RetryableError (the engine retries) or StepError."""
    import openai

    secrets.remember(secret)  # the key is hidden from every message (core/util/secrets.py)
    who = f"provider {profile.name!r}"
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        detail = secrets.redact(server_message(exc))
        code = error_code(exc)
        said = f" (HTTP {status}: {detail})" if detail else f" (HTTP {status})"
        if status == 401:
            return ProviderFailure(f"the API key for {who} was rejected{said}; check {profile.key_source()}")
        if status == 403:
            return ProviderFailure(f"{who} refused access to model {model!r}{said}", model=model)
        if status == 404:
            if code == "model_not_found" or "model" in detail.lower() or "deployment" in detail.lower():
                return ProviderFailure(f"{who} has no model {model!r}{said}; check the model name", model=model)
            return ProviderFailure(f"{who} has no such endpoint at {profile.base_url}{said}; is the base URL right?")
        if status == 429:
            if code == "insufficient_quota" or "quota" in detail.lower():
                return ProviderFailure(f"{who} says the account has no quota or credit left{said}")
            return RetryableError(f"{who} is rate limiting{said}", retry_after=retry_after_seconds(exc.response.headers),
                                  rate_limited=True)
        if status in (408, 409, 425) or status >= 500:
            return RetryableError(f"{who} had a server error{said}", retry_after=retry_after_seconds(exc.response.headers))
        return StepError(f"{who} refused the request{said}")
    if isinstance(exc, openai.APITimeoutError):
        return RetryableError(f"{who} did not answer within {profile.timeout:g} s")
    if isinstance(exc, openai.APIConnectionError):
        if _refused(exc):
            hint = profile.preset.running_hint or "is the server running and the base URL right?"
            return StepError(f"nothing is listening at {profile.base_url} — {hint}")
        if _no_such_host(exc):
            return StepError(f"the address of {profile.base_url} cannot be found — is the base URL right?")
        return RetryableError(f"the connection to {who} at {profile.base_url} failed: {_root(exc)}")
    if isinstance(exc, openai.OpenAIError):
        return StepError(f"{who}: {secrets.redact(str(exc))}")
    return exc if isinstance(exc, Exception) else RuntimeError(str(exc))


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
