"""Where API keys live: the OS keyring (the one place that names its entries, so what a front end
stores is what a run reads: a profile says `keyring_service`/`keyring_user`, never the key), and
keys given for this session only (kept in this process's memory, never written anywhere).

A session key is for machines without a working keyring: typed in the window's Settings, it is
found by every run until the app quits (`profiles.api_key` asks here first). It is remembered as a
secret at once (core/util/secrets.py), so every journal, trace, export, message and log hides it.

Keyring calls may block while the desktop asks the user: call these off the event loop.
"""

from __future__ import annotations

import threading
from typing import Any

from batchgrid.core.util import secrets

KEYRING_SERVICE = "batchgrid"

# What the user would call each backend (keyring's module names); others show the backend's own name.
_BACKEND_TITLES = {
    "SecretService": "Secret Service",
    "libsecret": "Secret Service",
    "kwallet": "KWallet",
    "macOS": "macOS Keychain",
    "Windows": "Windows Credential Manager",
}


# ---- the OS keyring ---------------------------------------------------------------------------
def _backend() -> Any | None:
    """The keyring backend in use; None when there is none ('fail', 'null', an empty chain)."""
    try:
        import keyring
        from keyring.backends import chainer, fail, null

        backend = keyring.get_keyring()
    except Exception:
        return None
    if isinstance(backend, (fail.Keyring, null.Keyring)):
        return None
    if isinstance(backend, chainer.ChainerBackend) and not backend.backends:
        return None
    return backend


def keyring_available() -> bool:
    """True when the OS offers a real keyring (not keyring's 'fail' or 'null' backend)."""
    return _backend() is not None


def keyring_title() -> str | None:
    """The keyring's name in words ("Secret Service", "macOS Keychain"); None when there is none."""
    backend = _backend()
    if backend is None:
        return None
    from keyring.backends import chainer

    if isinstance(backend, chainer.ChainerBackend):
        backend = backend.backends[0]
    module = type(backend).__module__.rsplit(".", 1)[-1]
    return _BACKEND_TITLES.get(module) or str(getattr(backend, "name", "") or type(backend).__name__)


def store_key(provider: str, key: str) -> None:
    """Store the key in the keyring; raises what the keyring raises (locked, refused, none)."""
    import keyring

    secrets.remember(key)
    keyring.set_password(KEYRING_SERVICE, provider, key)


def has_key(provider: str) -> bool:
    try:
        import keyring

        return bool(keyring.get_password(KEYRING_SERVICE, provider))
    except Exception:
        return False


def keyring_fields(provider: str) -> dict[str, Any]:
    """What a pipeline's profile says to read this provider's stored key."""
    return {"keyring_service": KEYRING_SERVICE, "keyring_user": provider}


# ---- keys for this session only -----------------------------------------------------------------
_session_lock = threading.Lock()  # runs read these from worker threads
_session_keys: dict[str, str] = {}


def use_for_session(provider: str, key: str) -> None:
    """Use `key` for the provider profile named `provider` until the app quits (memory only)."""
    secrets.remember(key)
    with _session_lock:
        _session_keys[provider] = key


def session_key(provider: str) -> str | None:
    with _session_lock:
        return _session_keys.get(provider)


def forget_session_keys() -> None:
    with _session_lock:
        _session_keys.clear()
