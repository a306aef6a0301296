"""The one secret policy: what is a secret, and how it is hidden in everything Batchgrid writes
(journal, response cache, exports) or shows (the results table, the row inspector, messages,
logs).

Two kinds of secret:
- Known values. Every value read from a `${NAME}`, a keyring entry or a provider key is
  `remember`ed where it is read, and hidden wherever it turns up later, in any text, whichever
  step put it there (an echoed header, a URL in an error, a reply written to a cell). Kept for
  the life of the process: a key stays a key after its run.
- Patterns, for secrets whatever their origin: the value of a credential-like name
  (Authorization, X-Api-Key, api_key=, *token*, *secret*, password, cookie) in a header line,
  a query string, JSON or `name=value` text; `Bearer ...`; well-known key formats (sk-...,
  AKIA..., ghp_...); the password in `https://user:password@host`.

`redact(text)` hides both and keeps the context: `authorization=Bearer •••`,
`https://host/path?api_key=•••`. `redact_known(text)` hides only known values: for data
(result cells, cached replies), where a pattern could take ordinary text for a key.
`redact_value(obj)` walks dicts and lists; a credential-named key hides its whole value.
Redacting twice changes nothing, and a `${NAME}` reference (not a secret) is left as it is.

Logs: every log record's message and traceback is redacted (a record factory installed when
this module is imported: core imports it wherever errors and traces are made).
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any
from urllib.parse import quote, quote_plus

MASK = "•••"
MIN_LENGTH = 6  # shorter values are not remembered: hiding "yes" or "1" everywhere would garble every text

# ---- known values ---------------------------------------------------------------------------
_lock = threading.Lock()
# (the secrets in every form, one pattern matching any of them), replaced whole: a reader in
# another thread always sees a pair that belongs together.
_state: tuple[frozenset[str], re.Pattern[str] | None] = (frozenset(), None)


def remember(value: str | None) -> None:
    """`value` is a secret from now on (a `${NAME}`'s value, a keyring entry, a provider key).
    Cheap when it is already known: callers may call it on every use."""
    global _state
    if not value or len(value) < MIN_LENGTH or value in _state[0]:
        return
    # The forms it takes in a URL and inside a JSON string, too.
    forms = {value, quote(value, safe=""), quote(value), quote_plus(value), json.dumps(value)[1:-1],
             json.dumps(value, ensure_ascii=False)[1:-1]}
    with _lock:
        known = _state[0] | forms
        _state = (known, re.compile("|".join(map(re.escape, sorted(known, key=len, reverse=True)))))


def remembered(value: str) -> str:
    """`value`, remembered as a secret: `return secrets.remembered(os.environ[name])`."""
    remember(value)
    return value


def redact_known(text: str) -> str:
    """`text` with every remembered secret replaced by •••."""
    known, pattern = _state
    if pattern is None or not text or not any(secret in text for secret in known):
        return text
    return pattern.sub(MASK, text)


def redact_cells(cells: dict[str, Any]) -> dict[str, Any]:
    """A row's output cells with remembered secrets hidden: `cells` itself when none holds one
    (the common case costs a substring search per text cell)."""
    if _state[1] is None:
        return cells
    hidden = {k: v for k, v in cells.items() if _holds_known(v)}
    if not hidden:
        return cells
    return {k: _without_known(v) if k in hidden else v for k, v in cells.items()}


def redact_rows(rows: Iterable[Sequence[Any]]) -> Iterator[Sequence[Any]]:
    """Table rows on their way to a file, with remembered secrets hidden in their cells."""
    for values in rows:
        if _state[1] is not None and any(_holds_known(v) for v in values):
            values = [_without_known(v) for v in values]
        yield values


def _holds_known(value: Any) -> bool:
    if isinstance(value, str):
        return any(secret in value for secret in _state[0])
    if isinstance(value, dict):
        return any(_holds_known(v) for v in value.values())
    if isinstance(value, (list, tuple)):  # a list of numbers (an embedding) holds no text
        return bool(value) and not isinstance(value[0], (int, float)) and any(_holds_known(v) for v in value)
    return False


def _without_known(value: Any) -> Any:
    if isinstance(value, str):
        return redact_known(value)
    if isinstance(value, dict):
        return {k: _without_known(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_without_known(v) for v in value]
    return value


# ---- patterns -------------------------------------------------------------------------------
# Names whose values are credentials. A name that merely counts tokens (tokens_in, max_tokens)
# is not one, nor one that names where a key is kept (api_key_env, keyring_service).
_SECRET_NAME = re.compile(
    r"authorization|api[_-]?key|apikey|secret|passw(?:or)?d|passphrase|cookie|credential|signature|private[_-]?key"
    r"|token$|(?:^|[_-])token[_-]|(?:^|[_-])(?:key|auth)$", re.I)
_NOT_SECRET_NAME = re.compile(r"[_-](?:env|var|variable|name|service|user)$", re.I)
_SCHEME = r"(?:Bearer|Basic|Token|Digest|Bot|ApiKey|Key|SSWS)\s+"

# A `name: value` or `name=value` pair, in a header line, a query string, JSON (plain or
# escaped inside a string) or Python's repr: the value is quoted (up to its closing quote or
# the end of the line: a snippet may cut it) or runs to the next separator.
_PAIR = re.compile(
    r"(?<![\w-])(?P<name>[A-Za-z_][\w-]{0,63})(?P<sep>\\?[\"']?[ \t]*[:=][ \t]*)"
    r"(?:(?P<q>\\?[\"'])(?P<qv>[^\"'\r\n\\]*)|(?P<v>(?>(?:" + _SCHEME + r")?)(?!\$\{)[^\s&,;:\"'<>#(){}\[\]\\]+))")
# Secrets whatever their name: bearer tokens, key formats, a password in a URL.
_KEYISH = re.compile(
    r"(?P<bearer>(?<![\w-])Bearer\s+)(?!\$\{)[A-Za-z0-9._~+/=-]{8,}"
    r"|(?<![\w-])(?:sk-[A-Za-z0-9_*-]{8,}|[rs]k_(?:live|test)_[A-Za-z0-9]{16,}|A[KS]IA[0-9A-Z]{16}|xox[abposr]-[A-Za-z0-9-]{10,}|gh[pousr]_[A-Za-z0-9]{20,}"
    r"|github_pat_[A-Za-z0-9_]{20,}|AIza[0-9A-Za-z_-]{35}|glpat-[A-Za-z0-9_-]{20,}|hf_[A-Za-z0-9]{30,})"
    r"|(?P<userinfo>://[^/\s:@]*:)[^/\s@]+(?=@)")
_SCHEME_PREFIX = re.compile(_SCHEME, re.I)
# What a text must contain for _PAIR (lowercased) or _KEYISH to find anything.
_NAME_HINTS = ("auth", "key", "secret", "passw", "passp", "cookie", "credential", "signature", "token")
_KEY_HINTS = ("Bearer", "sk-", "k_live_", "k_test_", "AKIA", "ASIA", "xox", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "AIza",
              "glpat-", "hf_", "://")

# Key formats as such, for checks of text that must hold no key at all (a pipeline file).
KEY_FORMATS = re.compile(
    r"(?<![\w-])(?:sk-[A-Za-z0-9_-]{16,}|[rs]k_(?:live|test)_[A-Za-z0-9]{16,}|A[KS]IA[0-9A-Z]{16}|xox[abposr]-[A-Za-z0-9-]{10,}|gh[pousr]_[A-Za-z0-9]{20,}"
    r"|github_pat_[A-Za-z0-9_]{20,}|AIza[0-9A-Za-z_-]{35}|glpat-[A-Za-z0-9_-]{20,}|hf_[A-Za-z0-9]{30,})")


def is_secret_name(name: str) -> bool:
    """A header, parameter or setting whose value is a credential: Authorization, X-Api-Key,
    api_key, client_secret, access_token, X-Auth-Token, Cookie, password..."""
    return bool(_SECRET_NAME.search(name)) and not _NOT_SECRET_NAME.search(name)


def mask(value: str) -> str:
    """A credential's value hidden, its scheme kept ("Bearer •••"); a `${NAME}` reference kept."""
    if "${" in value or value == MASK:
        return value
    scheme = _SCHEME_PREFIX.match(value)
    if scheme and len(value) > scheme.end():
        return scheme.group() + MASK
    return MASK


def _redact_pairs(text: str) -> str:
    out: list[str] = []
    pos = 0
    while (m := _PAIR.search(text, pos)) is not None:
        group = "qv" if m.group("q") is not None else "v"
        value = m.group(group)
        if value and is_secret_name(m.group("name")):
            start, end = m.span(group)
            out += [text[pos:start], mask(value)]
            pos = end
        else:  # not a secret: look for pairs inside its value too (a URL's query after "http:")
            out.append(text[pos:m.end("sep")])
            pos = m.end("sep")
    out.append(text[pos:])
    return "".join(out)


def _keyish(m: re.Match[str]) -> str:
    return (m.group("bearer") or m.group("userinfo") or "") + MASK


def redact(text: str) -> str:
    """`text` with every secret replaced by •••: remembered values, credential-named values,
    bearer tokens and key formats."""
    if not text:
        return text
    text = redact_known(text)
    # Substring searches first: the regular expressions cost ~50 ns a character, these ~1.
    lower = text.lower() if "=" in text or ":" in text else ""
    if lower and any(hint in lower for hint in _NAME_HINTS):
        text = _redact_pairs(text)
    if any(hint in text for hint in _KEY_HINTS):
        text = _KEYISH.sub(_keyish, text)
    return text


def redact_value(value: Any) -> Any:
    """A copy of `value` (dicts, lists, text) with every secret hidden; a credential-named key
    (Authorization, api_key, ...) hides its whole value."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _hide(v) if isinstance(k, str) and is_secret_name(k) else redact_value(v)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_value(v) for v in value]
    return value


def _hide(value: Any) -> Any:
    if isinstance(value, str):
        return mask(value) if value else value
    if isinstance(value, (dict, list, tuple)):
        return redact_value(value)
    return value if value is None or isinstance(value, bool) else MASK


# ---- logs -----------------------------------------------------------------------------------
class _RedactedMessage:
    """A log record's message, redacted when a handler formats it (records no handler emits
    cost nothing)."""

    __slots__ = ("args", "msg")

    def __init__(self, msg: Any, args: Any):
        self.msg = msg
        self.args = args

    def __str__(self) -> str:
        text = str(self.msg)
        if self.args:
            text = text % self.args
        return redact(text)


def _install_log_redaction() -> None:
    make_record = logging.getLogRecordFactory()
    if getattr(make_record, "redacts_secrets", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        record.msg, record.args = _RedactedMessage(record.msg, record.args), ()
        if record.exc_info and record.exc_info[0] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return record

    factory.redacts_secrets = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


_install_log_redaction()
