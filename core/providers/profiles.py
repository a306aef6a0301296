"""Provider profiles: the pipeline's `providers` section, checked, resolved, and given a key.

A profile names where the key lives (an environment variable or an OS keyring entry),
never the key itself (a key typed in the window's Settings "for this session only" is found by
the profile's name, before either: keys.py):

    "providers": {
      "local": {"preset": "ollama", "model": "llama3.1"},
      "work":  {"preset": "azure", "base_url": "https://acme.openai.azure.com",
                "api_key_env": "AZURE_OPENAI_API_KEY", "model": "gpt-4o-mini-deploy", "rpm": 600}
    }

With no profiles at all, the default provider "openai" follows the ecosystem convention:
OPENAI_API_KEY and OPENAI_BASE_URL from the environment. An "openai" profile whose base URL is
not OpenAI's because OPENAI_BASE_URL says so (pointed at Ollama, LM Studio, llama.cpp, vLLM)
is an OpenAI-compatible server: it gets `max_tokens` (not OpenAI's newer `max_completion_tokens`,
which llama-cpp-python ignores), costs nothing unless the user's price table names its model,
and, when the profile names no model, uses the one the server serves (GET /models, asked when
the run first uses the provider: core/providers/run.py).

Timeouts: `timeout` (120 s) is how long a server may take to start answering, time queued
at a busy server included (for an answer sent at once, all of it); `idle_timeout` (30 s) the
longest silence between a stream's chunks once it has begun. Connecting has 10 s.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from batchgrid.core.util import secrets
from batchgrid.core.util import template as tpl
from batchgrid.core.util.errors import StepError

from .keys import session_key
from .presets import DEFAULT_AZURE_API_VERSION, PRESETS, Preset

DEFAULT_PROVIDER = "openai"
DEFAULT_TIMEOUT = 120.0
DEFAULT_IDLE_TIMEOUT = 30.0
OPENAI_HOST = "api.openai.com"
DEFAULT_BATCH_SIZE = 256

# field -> (expected type, words for the message)
FIELDS: dict[str, tuple[Any, str]] = {
    "preset": (str, "one of: " + ", ".join(PRESETS)),
    "base_url": (str, "a URL such as http://127.0.0.1:11434/v1"),
    "model": (str, "a model name"),
    "embedding_model": (str, "a model name"),
    "api_key_env": (str, "the name of an environment variable"),
    "keyring_service": (str, "a keyring service name"),
    "keyring_user": (str, "a keyring user name"),
    "headers": (dict, "an object of header name to text"),
    "api_version": (str, "an Azure API version such as 2024-10-21"),
    "max_in_flight": (int, "a whole number of requests"),
    "rpm": (int, "requests per minute, a whole number"),
    "tpm": (int, "tokens per minute, a whole number"),
    "timeout": ((int, float), "seconds"),
    "idle_timeout": ((int, float), "seconds"),
    "batch_size": (int, "texts per embeddings request"),
}
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass
class Profile:
    name: str
    preset: Preset
    base_url: str
    model: str | None
    embedding_model: str | None
    api_key_env: str | None
    keyring_service: str | None = None
    keyring_user: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    api_version: str | None = None
    max_in_flight: int | None = None
    rpm: int | None = None
    tpm: int | None = None
    timeout: float = DEFAULT_TIMEOUT
    batch_size: int = DEFAULT_BATCH_SIZE
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    models_from_server: tuple[str, ...] = ()  # "model", "embedding_model": defaults to ask the server for
    model_problem: str | None = None          # why there is no model (the server serves several)
    key_from: str = ""  # where a key the caller gave came from, in words (Test connection: "the key typed above")

    @property
    def is_azure(self) -> bool:
        return self.preset.name == "azure"

    @property
    def max_tokens_field(self) -> str:
        return self.preset.max_tokens_field

    @property
    def hosted(self) -> bool:
        """A hosted API at its own address (never asked for llama.cpp's /props)."""
        own = self.preset.base_url
        return self.preset.needs_key and not self.preset.local and (own is None or self.base_url == own.rstrip("/"))

    @property
    def server_root(self) -> str:
        """The server's own root: the base URL without its /v1 (llama.cpp serves /props there)."""
        root = self.base_url.rstrip("/")
        return root[:-3] if root.endswith("/v1") else root

    def key_source(self) -> str:
        """Where the key comes from, in words (never the key)."""
        if self.key_from:
            return self.key_from
        if session_key(self.name):
            return "the key typed in Settings for this session"
        if self.keyring_service:
            return f"the keyring entry {self.keyring_service}/{self.keyring_user or self.name}"
        return f"the environment variable {self.api_key_env}" if self.api_key_env else "no key"


# ---- checking the pipeline's section ---------------------------------------------------
def validate_providers(section: Any) -> list[str]:
    """Problems in a pipeline's `providers` section, each located (`providers.local.rpm: ...`)."""
    if not isinstance(section, dict):
        return ["providers: must be an object of named provider profiles"]
    problems = []
    for name, raw in section.items():
        at = f"providers.{name}"
        if not isinstance(raw, dict):
            problems.append(f"{at}: must be an object (preset, base_url, model, api_key_env, ...)")
            continue
        for key, value in raw.items():
            if key not in FIELDS:
                problems.append(f"{at}.{key}: unknown field; fields are: {', '.join(FIELDS)}")
                continue
            expected, words = FIELDS[key]
            if value is None:
                continue
            if not isinstance(value, expected) or isinstance(value, bool):
                problems.append(f"{at}.{key}: must be {words}")
                continue
            if key == "preset" and value not in PRESETS:
                problems.append(f"{at}.preset: {value!r} is not one of: {', '.join(PRESETS)}")
            elif key == "base_url" and not value.startswith(("http://", "https://")):
                problems.append(f"{at}.base_url: {value!r} must start with http:// or https://")
            elif key == "api_key_env" and not _ENV_NAME.match(value):
                problems.append(f"{at}.api_key_env: {value!r} is not an environment variable name "
                                "(name the variable that holds the key, not the key)")
            elif key == "headers":
                problems += _header_problems(value, at)
            elif key in ("max_in_flight", "rpm", "tpm", "batch_size", "timeout", "idle_timeout") and value <= 0:
                problems.append(f"{at}.{key}: must be more than 0")
        preset = PRESETS.get(raw.get("preset") or _guess_preset(name))
        if preset is not None and preset.base_url is None and not raw.get("base_url"):
            problems.append(f"{at}.base_url: missing; {preset.title} needs its endpoint, "
                            "e.g. https://YOUR-RESOURCE.openai.azure.com")
    return problems


def _header_problems(headers: dict, at: str) -> list[str]:
    for name, value in headers.items():
        if not isinstance(value, str):
            return [f"{at}.headers: every value must be text"]
        try:
            tpl.parse(value)  # "${TOKEN}" reads the environment; nothing else may be in braces
        except tpl.TemplateSyntaxError as exc:
            return [f"{at}.headers.{name}: {exc}"]
    return []


# ---- resolving --------------------------------------------------------------------------
def _guess_preset(name: str) -> str:
    return name if name in PRESETS else "openai"


def default_profile_name(providers: Mapping[str, Any]) -> str:
    """A step with no provider uses the pipeline's first profile, else the environment's OpenAI."""
    return next(iter(providers), DEFAULT_PROVIDER)


def resolve_profile(name: str, providers: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Profile:
    environ = os.environ if environ is None else environ
    name = name or default_profile_name(providers)
    if name in providers:
        raw = dict(providers[name])
    elif name == DEFAULT_PROVIDER and not providers:
        raw = {"preset": "openai"}
    else:
        raise StepError(f"no provider profile named {name!r}; profiles are: {', '.join(providers) or '(none)'}")
    preset = PRESETS[raw.get("preset") or _guess_preset(name)]
    base_url = raw.get("base_url")
    from_env = not base_url and preset.name == "openai" and bool(environ.get("OPENAI_BASE_URL"))
    if not base_url and preset.name == "openai":
        base_url = environ.get("OPENAI_BASE_URL") or preset.base_url
    base_url = (base_url or preset.base_url or "").rstrip("/")
    has_keyring = bool(raw.get("keyring_service"))
    from_server: tuple[str, ...] = ()
    if from_env and urlsplit(base_url).hostname != OPENAI_HOST:
        preset = compatible_server(preset)
        from_server = tuple(f for f in ("model", "embedding_model") if not raw.get(f))
    return Profile(
        name=name,
        preset=preset,
        base_url=base_url,
        model=raw.get("model") or preset.model,
        embedding_model=raw.get("embedding_model") or preset.embedding_model,
        api_key_env=raw.get("api_key_env") or (None if has_keyring else preset.api_key_env),
        keyring_service=raw.get("keyring_service"),
        keyring_user=raw.get("keyring_user"),
        headers=dict(raw.get("headers") or {}),
        api_version=raw.get("api_version") or (DEFAULT_AZURE_API_VERSION if preset.name == "azure" else None),
        max_in_flight=raw.get("max_in_flight"),
        rpm=raw.get("rpm"),
        tpm=raw.get("tpm"),
        timeout=float(raw.get("timeout") or DEFAULT_TIMEOUT),
        batch_size=int(raw.get("batch_size") or DEFAULT_BATCH_SIZE),
        idle_timeout=float(raw.get("idle_timeout") or DEFAULT_IDLE_TIMEOUT),
        models_from_server=from_server,
    )


def compatible_server(preset: Preset) -> Preset:
    """The OpenAI preset for another OpenAI-compatible server: `max_tokens`, and free (`local`:
    priced only when the user's price table names the model)."""
    return replace(preset, title="OpenAI-compatible server", local=True, max_tokens_field="max_tokens")


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host in ("localhost", "::1") or host.startswith("127.")


def api_key(profile: Profile, environ: Mapping[str, str] | None = None) -> str | None:
    """The profile's key given for this session, from the OS keyring or from the environment; a
    StepError in words if it must exist and does not. Blocking (a keyring may ask the desktop): call it off the event loop."""
    environ = os.environ if environ is None else environ
    # A key given for this session (typed in Settings: core/providers/keys.py) comes first. It was
    # given for this very profile, just now, in this app; an environment variable is often shared by
    # several profiles (OPENAI_API_KEY) and set long ago, and a keyring entry may be an older key:
    # letting either win would silently ignore what the user just typed.
    key = session_key(profile.name)
    if key:
        return key
    if profile.keyring_service:
        user = profile.keyring_user or profile.name
        key, why = _from_keyring(profile.keyring_service, user)
        if key:
            return secrets.remembered(key)
        if not profile.api_key_env or not environ.get(profile.api_key_env):
            raise StepError(f"no API key for provider {profile.name!r}: the keyring entry "
                            f"{profile.keyring_service}/{user} {why}")
    if profile.api_key_env and environ.get(profile.api_key_env):
        return secrets.remembered(environ[profile.api_key_env])
    # A hosted service needs its key. A server on this machine (OPENAI_BASE_URL pointed at Ollama,
    # say) takes any key, unless the profile names a variable of its own for one.
    default_env = profile.api_key_env in (None, profile.preset.api_key_env)
    if profile.preset.needs_key and not (default_env and _is_loopback(profile.base_url)):
        var = profile.api_key_env or profile.preset.api_key_env
        raise StepError(f"no API key for provider {profile.name!r}: set the environment variable {var}"
                        + (" (or name a keyring entry in the profile)" if not profile.keyring_service else ""))
    return None


def _from_keyring(service: str, user: str) -> tuple[str | None, str]:
    try:
        import keyring

        key = keyring.get_password(service, user)
    except Exception as exc:  # no backend, a locked or broken store: say so, never crash
        reason = "no keyring backend is available on this system" if type(exc).__name__ == "NoKeyringError" \
            else f"could not be read ({type(exc).__name__})"
        return None, f"cannot be used: {reason}"
    return (key, "") if key else (None, "is empty or does not exist")
