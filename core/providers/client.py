"""One provider for one run: the openai SDK client, its limiter, the cache, usage and cost.

Requests go through `AsyncOpenAI.post(path, body=..., cast_to=object)`: the SDK still does
the base URL, auth headers, Azure's deployment paths and its error classes, but hands back
the JSON as is. That skips building typed request and response objects for every row
(measured: 0.19 ms of CPU per call instead of 0.43 ms), keeps non-standard servers
working, and is exactly what the response cache stores. The SDK's own retries are off:
retries are the engine's. One client per provider per run, on the SDK's own HTTP library
(httpx2, core/util/http.py) with a pool sized to the run.

openai is imported where a client is built or its errors are read, never at the top: the
steps import this module, and `batchgrid-cli check`, `steps` and the window's start must not
pay for importing the SDK (about 0.3 s).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from batchgrid.core.util import template as tpl
from batchgrid.core.util.errors import RetryableError, StepError
from batchgrid.core.util.http import http, pooled_client

from .cache import ResponseCache, cache_key
from .errors import ProviderFailure, map_error
from .limiter import ProviderLimiter
from .prices import PriceTable
from .profiles import Profile
from .tokens import answer_limit, prompt_tokens, text_tokens

if TYPE_CHECKING:  # pragma: no cover
    import openai

CHAT = "/chat/completions"
EMBEDDINGS = "/embeddings"


@dataclass
class ChatReply:
    text: str
    tokens_in: int
    tokens_out: int
    finish_reason: str = ""
    cached: bool = False
    estimated_usage: bool = False  # the server sent no usage; tokens are estimates

    def to_cache(self) -> dict[str, Any]:
        return {"text": self.text, "tokens_in": self.tokens_in, "tokens_out": self.tokens_out,
                "finish_reason": self.finish_reason}


def make_client(profile: Profile, key: str | None, *, in_flight: int = 100) -> openai.AsyncOpenAI:
    """The SDK client for a provider: its retries off (max_retries=0: the engine retries, and
    counts every attempt), its pool sized for `in_flight` requests at once."""
    import openai

    # Always an explicit key: never let the SDK pick OPENAI_API_KEY up for some other server.
    api_key = key or "no-key"
    headers = {name: tpl.render(value, {}, allow_env=True)  # "${TOKEN}": the environment
               for name, value in profile.headers.items()}
    http_client = pooled_client(timeout=profile.timeout, in_flight=in_flight, follow_redirects=True)
    if profile.is_azure:
        return openai.AsyncAzureOpenAI(azure_endpoint=profile.base_url, api_version=profile.api_version,
                                       api_key=api_key, max_retries=0, timeout=profile.timeout,
                                       default_headers=headers or None, http_client=http_client)
    return openai.AsyncOpenAI(base_url=profile.base_url, api_key=api_key, max_retries=0, timeout=profile.timeout,
                              default_headers=headers or None, http_client=http_client)


class Provider:
    def __init__(self, profile: Profile, key: str | None, *, ceiling: int, cache: ResponseCache | None,
                 prices: PriceTable):
        self.profile = profile
        self.name = profile.name
        self._key = key
        self.cache = cache
        self.prices = prices
        self.limiter = ProviderLimiter(ceiling=ceiling, max_in_flight=profile.max_in_flight,
                                       rpm=profile.rpm, tpm=profile.tpm)
        self.client = make_client(profile, key, in_flight=min(ceiling, profile.max_in_flight or ceiling))
        self._sdk_error = _sdk().OpenAIError  # what the SDK raises; mapped by _error()
        self._failure: ProviderFailure | None = None          # the whole provider is unusable
        self._model_failures: dict[str, ProviderFailure] = {}  # one model is

    def endpoint(self, path: str) -> str:
        return self.profile.base_url + path

    def cost(self, model: str, tokens_in: int, tokens_out: int) -> float:
        return self.prices.cost(model, tokens_in, tokens_out, local=self.profile.preset.local)

    # ---- failures every later call would meet too --------------------------------------
    def _check(self, model: str) -> None:
        failure = self._failure or self._model_failures.get(model)
        if failure is not None:
            raise failure

    def _error(self, exc: Exception, model: str) -> Exception:
        error = map_error(exc, self.profile, model, self._key)
        if isinstance(error, ProviderFailure):
            if error.model is None:
                self._failure = self._failure or error
            else:
                self._model_failures.setdefault(error.model, error)
        return error

    # ---- chat --------------------------------------------------------------------------
    async def chat(self, ctx, request: dict[str, Any], *, stream_to: str | None = None) -> ChatReply:
        """Send one chat request under the engine's retries and this provider's limits, or answer
        it from the cache. Streams into `stream_to` (a column) when given. Accounts usage and cost."""
        model = request["model"]
        cache = self.cache
        key = cache_key(self.endpoint(CHAT), request) if cache is not None else None
        if cache is not None and key is not None:
            hit = cache.get(key)
            if hit is not None:  # no limiter, no slot, no cost
                reply = ChatReply(hit["text"], hit["tokens_in"], hit["tokens_out"], hit.get("finish_reason", ""), True)
                if stream_to:
                    ctx.partial(stream_to, reply.text)
                ctx.add_usage(reply.tokens_in, reply.tokens_out, 0.0, cached=True)
                self._note(ctx, request, reply, 0.0)
                return reply
        self._check(model)
        estimate = prompt_tokens(request) + (answer_limit(request) or 0)
        gate = self.limiter.gate(estimate)

        async def attempt() -> ChatReply:
            self._check(model)  # another row may have learnt the key is wrong while this one waited
            try:
                if stream_to:
                    return await self._stream(ctx, request, stream_to)
                return parse_chat(await self.client.post(CHAT, body=request, cast_to=object), request)
            except self._sdk_error as exc:
                raise self._error(exc, model) from None

        reply = await ctx.call(attempt, limiter=gate)
        self.limiter.settle(estimate, reply.tokens_in + reply.tokens_out)
        cost = self.cost(model, reply.tokens_in, reply.tokens_out)
        ctx.add_usage(reply.tokens_in, reply.tokens_out, cost)
        if cache is not None and key is not None:
            cache.put(key, reply.to_cache())
        self._note(ctx, request, reply, cost)
        return reply

    async def _stream(self, ctx, request: dict[str, Any], column: str) -> ChatReply:
        body = {**request, "stream": True, "stream_options": {"include_usage": True}}
        stream = await self.client.post(CHAT, body=body, cast_to=object, stream=True,
                                        stream_cls=_sdk().AsyncStream[object])
        text, finish, usage, done = "", "", None, False
        try:
            async for chunk in sse_data(stream.response):
                if chunk is DONE:
                    done = True
                    continue
                for choice in chunk.get("choices") or ():
                    piece = (choice.get("delta") or {}).get("content")
                    if piece:
                        text += piece
                        ctx.partial(column, text)
                    finish = choice.get("finish_reason") or finish
                usage = chunk.get("usage") or usage
        finally:
            await stream.close()  # on stop too: the connection closes, the server stops billing
        if not (finish or done):
            # A body that ends with the connection (llama.cpp) looks complete even when the server
            # died mid-answer: only the answer's own end tells. Another attempt, not half an answer.
            raise RetryableError(f"the answer from provider {self.name!r} broke off "
                                 "(the stream ended without a finish reason)")
        return _reply(text, usage, finish, request)

    def _note(self, ctx, request: dict[str, Any], reply: ChatReply, cost: float) -> None:
        ctx.note(provider=self.name, request=request, response=reply.text, cached=reply.cached,
                 tokens_in=reply.tokens_in, tokens_out=reply.tokens_out, cost=cost,
                 finish_reason=reply.finish_reason, usage="estimated" if reply.estimated_usage else "from the server")

    # ---- embeddings --------------------------------------------------------------------
    def embedding_key(self, model: str, text: str, dimensions: int | None) -> str:
        return cache_key(self.endpoint(EMBEDDINGS), embedding_request(model, text, dimensions))

    async def embed(self, ctx, model: str, texts: list[str], dimensions: int | None) -> tuple[list[np.ndarray], int]:
        """One embeddings request for `texts` (one engine slot); vectors in input order and tokens used."""
        self._check(model)
        request = embedding_request(model, texts, dimensions)
        gate = self.limiter.gate(prompt_tokens(request))

        async def attempt():
            self._check(model)
            try:
                return await self.client.post(EMBEDDINGS, body=request, cast_to=object)
            except self._sdk_error as exc:
                raise self._error(exc, model) from None

        data = await ctx.call(attempt, limiter=gate)
        vectors, tokens = parse_embeddings(data, len(texts))
        self.limiter.settle(gate.tokens, tokens)
        return vectors, tokens

    async def aclose(self) -> None:
        await self.client.close()


def embedding_request(model: str, texts: str | list[str], dimensions: int | None) -> dict[str, Any]:
    request: dict[str, Any] = {"model": model, "input": texts}
    if dimensions:
        request["dimensions"] = dimensions
    return request


# ---- reading replies ---------------------------------------------------------------------
DONE: dict[str, Any] = {"[DONE]": True}  # yielded by sse_data for the stream's [DONE] marker


async def sse_data(response) -> Any:
    """The JSON events of a server-sent-events body, read to its very end; DONE for [DONE].

    Read here rather than by the SDK's stream class, which stops at [DONE] and leaves its
    inner generators for the garbage collector: finalizing those costs a system call each
    (three per row), a third of a streamed row's CPU time on a fast local server.
    """
    data: list[str] = []
    try:
        async for line in response.aiter_lines():
            if line.startswith("data:"):
                data.append(line[5:].lstrip(" "))
            elif not line and data:
                event = _sse_event_or_done("\n".join(data))
                data = []
                if event is not None:
                    yield event
        if data:
            event = _sse_event_or_done("\n".join(data))
            if event is not None:
                yield event
    except http.TimeoutException:  # as the SDK would say it
        raise _sdk().APITimeoutError(request=response.request) from None
    except http.TransportError as exc:
        raise _sdk().APIConnectionError(message=str(exc) or "the stream broke off", request=response.request) from exc


def _sdk():
    """The openai module, imported on first use (see the module docstring)."""
    import openai

    return openai


def _sse_event_or_done(text: str) -> dict | None:
    return DONE if text.startswith("[DONE]") else _sse_event(text)


def _sse_event(text: str) -> dict | None:
    if text.startswith("[DONE]"):
        return None  # read on to the end of the body, so the connection can serve another request
    try:
        event = json.loads(text)
    except ValueError:
        raise StepError(f"the stream sent something that is not JSON: {text[:120]}", raw=text) from None
    if isinstance(event, dict) and event.get("error"):
        error = event["error"]
        message = error.get("message", error) if isinstance(error, dict) else error
        raise RetryableError(f"the server broke off the answer: {message}")
    return event if isinstance(event, dict) else None


def _reply(text: str, usage: Any, finish: str, request: dict[str, Any]) -> ChatReply:
    if isinstance(usage, dict) and usage.get("prompt_tokens") is not None:
        return ChatReply(text, int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0), finish)
    return ChatReply(text, prompt_tokens(request), text_tokens(text), finish, estimated_usage=True)


def parse_chat(data: Any, request: dict[str, Any]) -> ChatReply:
    try:
        choice = data["choices"][0]
        message = choice.get("message") or {}
    except (TypeError, KeyError, IndexError, AttributeError):
        raise StepError(f"the server's reply is not a chat completion: {str(data)[:200]}", raw=str(data)) from None
    if message.get("refusal") and not message.get("content"):
        raise StepError(f"the model refused: {message['refusal']}", raw=str(message["refusal"]))
    return _reply(message.get("content") or "", data.get("usage"), choice.get("finish_reason") or "", request)


def parse_embeddings(data: Any, expected: int) -> tuple[list[np.ndarray], int]:
    try:
        items = sorted(data["data"], key=lambda d: d.get("index", 0))
        vectors = [_vector(item["embedding"]) for item in items]
    except (TypeError, KeyError, AttributeError, ValueError):
        raise StepError(f"the server's reply is not a list of embeddings: {str(data)[:200]}") from None
    if len(vectors) != expected:
        raise StepError(f"asked for {expected} embeddings, the server sent {len(vectors)}")
    usage = data.get("usage") or {}
    return vectors, int(usage.get("prompt_tokens") or usage.get("total_tokens") or 0)


def _vector(value: Any) -> np.ndarray:
    if isinstance(value, str):  # encoding_format "base64"
        return np.frombuffer(base64.b64decode(value), dtype=np.float32).copy()
    return np.asarray(value, dtype=np.float32)
