"""API keys in the OS keyring: the one place that names the entries, so what a front end
stores is what a run reads (a profile says `keyring_service`/`keyring_user`, never the key).

Keyring calls may block while the desktop asks the user: call these off the event loop.
"""

from __future__ import annotations

from typing import Any

KEYRING_SERVICE = "batchgrid"


def keyring_available() -> bool:
    """True when the OS offers a real keyring (not keyring's 'fail' backend)."""
    try:
        import keyring
        from keyring.backends import fail

        return not isinstance(keyring.get_keyring(), fail.Keyring)
    except Exception:
        return False


def store_key(provider: str, key: str) -> None:
    import keyring

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
