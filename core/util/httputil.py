"""Turning HTTP trouble into errors the engine can act on (retry or not) and users can read."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Collection, Mapping

from .errors import RetryableError, StepError
from .http import http
from .secrets import is_secret_name

RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504, 520, 521, 522, 524, 529}


# A reset "duration" this large is a Unix time (GitHub's x-ratelimit-reset), not seconds to wait.
EPOCH_AFTER = 1_000_000_000


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """The server's wait hint in seconds: retry-after-ms, Retry-After (seconds or a date),
    x-ratelimit-reset-* (a duration such as "6m0s", or a Unix time). Not capped: the engine caps
    every server-suggested wait (core/run/engine.py, RetryPolicy.max_server_wait)."""
    lower = {k.lower(): v for k, v in headers.items()}
    value = lower.get("retry-after-ms")
    if value:
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    value = lower.get("retry-after")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            parsed = email.utils.parsedate_to_datetime(value) if value else None
            if parsed is not None:
                return max(0.0, parsed.timestamp() - time.time())
    for key in ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens", "x-ratelimit-reset"):
        value = lower.get(key)
        if value:
            seconds = parse_duration(value)
            if seconds is not None and seconds >= EPOCH_AFTER:  # a time, not a wait
                seconds = max(0.0, seconds - time.time())
            if seconds is not None:
                return seconds
    return None


def parse_duration(text: str) -> float | None:
    """OpenAI's reset format: "1s", "6m0s", "250ms", "1h2m3.5s", or plain seconds."""
    text = text.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    total, number = 0.0, ""
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isdigit() or ch == ".":
            number += ch
            i += 1
            continue
        unit = "ms" if text.startswith("ms", i) else ch
        i += len(unit)
        if not number:
            return None
        scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}.get(unit)
        if scale is None:
            return None
        total += float(number) * scale
        number = ""
    return total if not number else None


def status_error(response: http.Response, what: str) -> Exception:
    """The error for a non-2xx response: retryable for 429/5xx, final for the rest."""
    code = response.status_code
    reason = response.reason_phrase or ""
    snippet = response.text[:200].strip().replace("\n", " ") if response.content else ""
    message = f"HTTP {code} {reason} from {what}".strip()
    if snippet:
        message += f": {snippet}"
    if code in RETRYABLE_STATUS:
        return RetryableError(message, retry_after=retry_after_seconds(response.headers), rate_limited=code == 429)
    return StepError(message)


def transport_error(exc: http.HTTPError, url: str) -> Exception:
    """Timeouts and connection failures: worth another try, said in words."""
    if isinstance(exc, http.TimeoutException):
        return RetryableError(f"{url} did not answer in time")
    if isinstance(exc, http.ConnectError):
        return RetryableError(f"cannot connect to {url}: {exc or 'connection refused'}")
    if isinstance(exc, (http.RemoteProtocolError, http.ReadError, http.WriteError)):
        return RetryableError(f"the connection to {url} broke: {exc or type(exc).__name__}")
    if isinstance(exc, http.UnsupportedProtocol) or isinstance(exc, http.InvalidURL):
        return StepError(f"not a usable URL: {url!r} ({exc})")
    return RetryableError(f"request to {url} failed: {exc or type(exc).__name__}")


# ---- redirects --------------------------------------------------------------------------
MAX_REDIRECTS = 10
# On a redirect a header is dropped if the secret policy calls its name a credential, or if its
# name merely has one of these in it: dropping a harmless header to another origin costs nothing.
_SECRET_WORDS = ("auth", "cookie", "key", "token", "secret", "password", "passwd", "session", "credential",
                 "signature")


def is_secret_header(name: str) -> bool:
    lower = name.lower()
    return is_secret_name(name) or any(word in lower for word in _SECRET_WORDS)


def keeps_credentials(src: http.URL, dst: http.URL) -> bool:
    """A redirect from `src` to `dst` may carry credentials: the same origin (scheme, host and
    port), or the same host moved from http to https on the standard ports (as httpx and
    browsers allow for Authorization)."""
    if src.origin == dst.origin:
        return True
    return (src.host == dst.host and src.scheme == "http" and dst.scheme == "https"
            and src.port in (None, 80) and dst.port in (None, 443))


async def send_following_redirects(client: http.AsyncClient, request: Mapping, secret_headers: Collection[str],
                                   max_redirects: int = MAX_REDIRECTS) -> http.Response:
    """Send `request` (keyword arguments of `client.request`) and follow its redirects. When a
    redirect leaves the origin, every header in `secret_headers` is dropped, and every header
    whose name suggests a credential (httpx itself only drops Authorization and Cookie)."""
    response = await client.request(**request, follow_redirects=False)
    for _ in range(max_redirects):
        following = response.next_request
        if following is None:
            return response
        if not keeps_credentials(response.request.url, following.url):
            secret = {name.lower() for name in secret_headers}
            for name in list(following.headers):
                if name.lower() in secret or is_secret_header(name):
                    del following.headers[name]
        await response.aclose()
        response = await client.send(following, follow_redirects=False)
    if response.next_request is None:
        return response
    await response.aclose()
    raise StepError(f"too many redirects (more than {max_redirects}), the last to {response.next_request.url}")
