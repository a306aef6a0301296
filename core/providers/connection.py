"""Test connection: is a provider profile usable, said in one line before any run.

Two questions to the server, on the same openai SDK client a run uses: the models it lists
(GET /models) and one tiny request on the profile's model (a chat completion with a 1-token
answer; an embedding for a profile with only an embedding model), timed. A failure is said in the
words a run would use (errors.map_error): a rejected key, nothing listening, an unknown model.
The whole check has `timeout` seconds (15), and a caller may cancel it (the window's Cancel):
the client is closed either way.

Qt-free and async: the window awaits it; nothing here blocks the loop (the key is read, and the
SDK imported the first time, in a worker thread).
"""

from __future__ import annotations

import asyncio
import importlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from batchgrid.core.util import secrets
from batchgrid.core.util.errors import StepError

from .client import CHAT, EMBEDDINGS, embedding_request, make_client, parse_chat, parse_embeddings
from .errors import ProviderFailure, map_error
from .profiles import Profile, api_key, resolve_profile, validate_providers

TIMEOUT = 15.0  # seconds for the whole check: a test should answer while the user still waits
MODELS = "/models"
SHOWN_MODELS = 4


@dataclass(frozen=True)
class ConnectionReport:
    ok: bool
    message: str                          # one line: "OK: 3 models (…); a 1-token answer from m in 240 ms"
    models: tuple[str, ...] | None = None  # what GET /models listed; None when it did not answer
    model: str | None = None               # the model the tiny request used
    latency_ms: float | None = None        # how long that request took
    no_key: bool = False                   # failed because no key was found (the caller may say where to put one)


async def check_connection(name: str, fields: Mapping[str, Any], *, key: str | None = None,
                           key_from: str = "the key being tested", timeout: float = TIMEOUT) -> ConnectionReport:
    """Test the provider profile `fields` (as a pipeline's `providers.<name>` holds it). `key`: the
    key to test (else the one a run would use: keys.py, the keyring, the environment); `key_from`
    names it in a message about a rejected key."""
    problems = validate_providers({name: dict(fields)})
    if problems:
        return ConnectionReport(False, f"Failed: {problems[0]}")
    try:
        profile = resolve_profile(name, {name: dict(fields)})
    except StepError as exc:
        return ConnectionReport(False, f"Failed: {exc}")
    profile = replace(profile, timeout=min(profile.timeout, timeout))
    if key:
        profile = replace(profile, key_from=key_from)
        secrets.remember(key)  # hidden from every message from here on
    else:
        try:  # a keyring may block while it asks the desktop
            key = await asyncio.to_thread(api_key, profile)
        except StepError as exc:
            return ConnectionReport(False, f"Failed: {exc}", no_key=True)
    await asyncio.to_thread(importlib.import_module, "openai")  # 0.3 s the first time: not on the loop
    client = make_client(profile, key, in_flight=1)
    try:
        async with asyncio.timeout(timeout):
            return await _check(client, profile, key)
    except TimeoutError:
        return ConnectionReport(False, f"Failed: the server at {profile.base_url} did not answer within {timeout:g} s")
    finally:
        await client.close()


async def _check(client, profile: Profile, key: str | None) -> ConnectionReport:
    import openai

    models: tuple[str, ...] | None = None
    listing_error: Exception | None = None
    try:
        models = _model_ids(await client.get(MODELS, cast_to=object))
    except openai.APIStatusError as exc:  # some servers list nothing: the tiny request decides
        listing_error = map_error(exc, profile, "", key, path=MODELS)
    except openai.OpenAIError as exc:  # nothing listening, no such host, no answer: said at once
        return ConnectionReport(False, f"Failed: {map_error(exc, profile, '', key, path=MODELS)}")
    listed = _listed(models)

    embedding = not profile.model and bool(profile.embedding_model)
    model = profile.embedding_model if embedding else profile.model
    if model and "model" in profile.models_from_server and models and model not in models:
        model = None  # OPENAI_BASE_URL at another server: a run uses the model it serves, not OpenAI's default
    if not model:
        if listing_error is not None:
            return ConnectionReport(False, f"Failed: {listing_error}")
        if not models:
            return ConnectionReport(False, f"Failed: the server at {profile.base_url} lists no models; "
                                    "name one as the default model", models=models)
        if len(models) > 1:
            return ConnectionReport(True, f"OK: {listed}; name one as the default model to try a 1-token answer",
                                    models=models)
        model = models[0]

    path = EMBEDDINGS if embedding else CHAT
    request: dict[str, Any] = (embedding_request(model, "test", None) if embedding else
                               {"model": model, "messages": [{"role": "user", "content": "Say OK"}],
                                profile.max_tokens_field: 1})
    started = time.perf_counter()
    try:
        data = await client.post(path, body=request, cast_to=object)
        if embedding:
            parse_embeddings(data, 1)
        else:
            parse_chat(data, request)
    except openai.OpenAIError as exc:
        error = map_error(exc, profile, model, key, request=request, path=path)
        message = f"Failed: {error}"
        if isinstance(error, ProviderFailure) and error.model == model and models:
            message += f"; the server serves {listed}"
        return ConnectionReport(False, message, models=models, model=model)
    except StepError as exc:  # a reply that is not what was asked for
        return ConnectionReport(False, f"Failed: {exc}", models=models, model=model)
    ms = (time.perf_counter() - started) * 1000
    answer = "an embedding" if embedding else "a 1-token answer"
    said = listed if models is not None else "the server does not list its models"
    return ConnectionReport(True, f"OK: {said}; {answer} from {model} in {ms:,.0f} ms",
                            models=models, model=model, latency_ms=ms)


def _model_ids(data: Any) -> tuple[str, ...] | None:
    try:
        return tuple(str(m["id"]) for m in data["data"])
    except (TypeError, KeyError):
        return None


def _listed(models: tuple[str, ...] | None) -> str:
    """ "3 models (a, b, c)", the first few named."""
    if models is None:
        return ""
    names = ", ".join(models[:SHOWN_MODELS]) + (", …" if len(models) > SHOWN_MODELS else "")
    count = f"{len(models)} model{'' if len(models) == 1 else 's'}"
    return f"{count} ({names})" if models else count
