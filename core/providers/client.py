"""One provider for one run: the openai SDK client, its limiter, the cache, usage and cost.

Requests go through `AsyncOpenAI.post(path, body=..., cast_to=object)`: the SDK still does
the base URL, auth headers, Azure's deployment paths and its error classes, but hands back
the JSON as is. That skips building typed request and response objects for every row
(measured: 0.19 ms of CPU per call instead of 0.43 ms), keeps non-standard servers
working, and is exactly what the response cache stores. The SDK's own retries are off:
retries are the engine's. One client per provider per run, on the SDK's own HTTP library
(httpx2, core/util/http.py) with a pool sized to the run.

Timeouts: a server has CONNECT_TIMEOUT (10 s) to accept a connection and the profile's
`timeout` (120 s) to start answering: time queued at a busy server counts only there. Once a
stream has begun, the profile's `idle_timeout` (30 s) is the longest silence between its chunks.

What a server says is checked, not trusted: a stream that ends without a finish reason is
broken off (another attempt); one with no text and no finish reason is an empty answer (one more
attempt at most; when the server reports its context and the prompt is longer, said at once);
an answer cut at the token limit carries a warning; vectors must have the `dimensions` asked for.
Refusals every row would meet (a wrong key, no embeddings, no json_schema, ignored dimensions)
are remembered, so later rows fail (or fall back) without paying for a refused call.

Identical requests in flight at the same time share one call (single flight): the followers
wait for the leader's answer and count as cached. If the leader is cancelled (its row was
stopped), a follower makes its own call.

The server's first answer in this run (any HTTP response, an error status too) is remembered:
after it, a refused connection is a server restarting (ServerUnreachable: the run waits), not
a server that was never started.

openai is imported where a client is built or its errors are read, never at the top: the
steps import this module, and `batchgrid-cli check`, `steps` and the window's start must not
pay for importing the SDK (about 0.3 s).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from batchgrid.core.util import template as tpl
from batchgrid.core.util.errors import RetryableError, StepError
from batchgrid.core.util.http import http, pooled_client

from .cache import ResponseCache, cache_key
from .errors import CONNECT_TIMEOUT, EmbeddingsRefused, ProviderFailure, SchemaRefused, map_error
from .limiter import ProviderLimiter
from .prices import PriceTable
from .profiles import Profile
from .tokens import answer_limit, prompt_tokens, text_tokens

if TYPE_CHECKING:  # pragma: no cover
    import openai

CHAT = "/chat/completions"
EMBEDDINGS = "/embeddings"
PROBE_TIMEOUT = 5.0  # GET /props and /models: cheap questions, never worth a long wait

log = logging.getLogger(__name__)
__all__ = ["CHAT", "CONNECT_TIMEOUT", "EMBEDDINGS", "ChatReply", "Provider", "SchemaRefused"]


class EmptyAnswer(RetryableError):
    """A 200 stream with no text and no finish reason (llama-cpp-python on a context overflow)."""


def cut_off_message(request: dict[str, Any]) -> str:
    """What to say about an answer that ended at the token limit (finish_reason "length")."""
    limit = answer_limit(request)
    if limit:
        return f"the answer was cut off at the token limit (max_tokens {limit}); raise Max tokens"
    return "the answer was cut off at the model's limit (its context is full); shorten the prompt"


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
    # `read` is per socket read: the wait for the answer to begin (queued time included) and, for an
    # answer sent at once, for all of it. Silence inside a stream is the idle timeout's (_stream).
    timeout = http.Timeout(profile.timeout, connect=min(CONNECT_TIMEOUT, profile.timeout))
    http_client = pooled_client(timeout=timeout, in_flight=in_flight, follow_redirects=True)
    if profile.is_azure:
        return openai.AsyncAzureOpenAI(azure_endpoint=profile.base_url, api_version=profile.api_version,
                                       api_key=api_key, max_retries=0, timeout=timeout,
                                       default_headers=headers or None, http_client=http_client)
    return openai.AsyncOpenAI(base_url=profile.base_url, api_key=api_key, max_retries=0, timeout=timeout,
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
        self._embeddings_failure: ProviderFailure | None = None  # the server serves no embeddings
        self._dimension_failures: dict[tuple[str, int], ProviderFailure] = {}  # dimensions ignored
        self.schema_refused: set[str] = set()  # models whose server refuses json_schema (steps fall back)
        self.answered = False                  # the server has sent an HTTP response in this run
        self._in_flight: dict[str, asyncio.Future] = {}  # single flight: cache key -> the leader's reply
        self._context: asyncio.Future | None = None      # the server's context size (GET /props), once
        self._warned: set[tuple[str, int]] = set()

    def endpoint(self, path: str) -> str:
        return self.profile.base_url + path

    def cost(self, model: str, tokens_in: int, tokens_out: int) -> float:
        return self.prices.cost(model, tokens_in, tokens_out, local=self.profile.preset.local)

    # ---- what the server tells about itself ----------------------------------------------
    async def context_size(self) -> int | None:
        """The model's context in tokens as the server reports it (llama.cpp: GET /props), asked
        once per run; None when it does not say (a hosted API is not asked)."""
        if self.profile.hosted:
            return None
        if self._context is None:
            self._context = asyncio.ensure_future(self._props_context())
        return await asyncio.shield(self._context)

    async def _props_context(self) -> int | None:
        data = await self._probe(self.profile.server_root + "/props")
        try:
            n_ctx = int(data["default_generation_settings"]["n_ctx"])
        except (TypeError, KeyError, ValueError):
            return None
        return n_ctx if n_ctx > 0 else None

    async def served_models(self) -> list[str] | None:
        """The models the server lists (GET /models); None when it does not answer."""
        data = await self._probe(self.endpoint("/models"))
        try:
            return [str(m["id"]) for m in data["data"]]
        except (TypeError, KeyError):
            return None

    async def _probe(self, url: str) -> Any:
        """GET `url` as JSON, briefly; None on any failure (these questions are never fatal)."""
        headers = {"Authorization": f"Bearer {self._key}"} if self._key else {}
        try:
            response = await self.client._client.get(url, headers=headers, timeout=PROBE_TIMEOUT)
            self.answered = True
            return response.json() if response.status_code == 200 else None
        except (http.HTTPError, ValueError):
            return None

    # ---- failures every later call would meet too --------------------------------------
    def _check(self, model: str) -> None:
        failure = self._failure or self._model_failures.get(model)
        if failure is not None:
            raise failure

    def _error(self, exc: Exception, model: str, request: dict[str, Any], path: str) -> Exception:
        if isinstance(exc, _sdk().APIStatusError):
            self.answered = True
        error = map_error(exc, self.profile, model, self._key, answered=self.answered, request=request, path=path)
        if isinstance(error, SchemaRefused):
            self.schema_refused.add(model)  # the steps ask again without json_schema
        elif isinstance(error, EmbeddingsRefused):
            self._embeddings_failure = self._embeddings_failure or error
        elif isinstance(error, ProviderFailure):
            if error.model is None:
                self._failure = self._failure or error
            else:
                self._model_failures.setdefault(error.model, error)
        return error

    # ---- chat --------------------------------------------------------------------------
    async def chat(self, ctx, request: dict[str, Any], *, stream_to: str | None = None) -> ChatReply:
        """Send one chat request under the engine's retries and this provider's limits, or answer
        it from the cache or from an identical request in flight. Streams into `stream_to` (a
        column) when given. Accounts usage and cost."""
        model = request["model"]
        cache = self.cache
        key = cache_key(self.endpoint(CHAT), request)
        while True:
            if cache is not None:
                hit = cache.get(key)
                if hit is not None:  # no limiter, no slot, no cost
                    reply = ChatReply(hit["text"], hit["tokens_in"], hit["tokens_out"], hit.get("finish_reason", ""),
                                      True)
                    return await self._shared(ctx, request, reply, stream_to)
            leader = self._in_flight.get(key)
            if leader is None:
                break
            try:  # the same request is on the wire for another row: share its answer
                reply = await asyncio.shield(leader)
            except asyncio.CancelledError:
                if not leader.cancelled():
                    raise  # this row was stopped
                continue  # the leader's row was stopped: ask for ourselves
            return await self._shared(ctx, request, ChatReply(reply.text, reply.tokens_in, reply.tokens_out,
                                                              reply.finish_reason, True), stream_to)
        future = self._in_flight[key] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieved)
        try:
            reply = await self._chat(ctx, request, stream_to)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            raise
        else:
            future.set_result(reply)
        finally:
            if self._in_flight.get(key) is future:
                del self._in_flight[key]
        cost = self.cost(model, reply.tokens_in, reply.tokens_out)
        ctx.add_usage(reply.tokens_in, reply.tokens_out, cost)
        if cache is not None:
            cache.put(key, reply.to_cache())
        await self._note(ctx, request, reply, cost)
        return reply

    async def _shared(self, ctx, request: dict[str, Any], reply: ChatReply, stream_to: str | None) -> ChatReply:
        """A reply this row did not pay for (the cache's, or an identical request's in flight)."""
        if stream_to:
            ctx.partial(stream_to, reply.text)
        ctx.add_usage(reply.tokens_in, reply.tokens_out, 0.0, cached=True)
        await self._note(ctx, request, reply, 0.0)
        return reply

    async def _chat(self, ctx, request: dict[str, Any], stream_to: str | None) -> ChatReply:
        model = request["model"]
        self._check(model)
        estimate = prompt_tokens(request) + (answer_limit(request) or 0)
        gate = self.limiter.gate(estimate)
        empty = 0

        async def attempt() -> ChatReply:
            nonlocal empty
            self._check(model)  # another row may have learnt the key is wrong while this one waited
            try:
                if stream_to:
                    return await self._stream(ctx, request, stream_to)
                reply = parse_chat(await self.client.post(CHAT, body=request, cast_to=object), request)
                self.answered = True
                return reply
            except self._sdk_error as exc:
                raise self._error(exc, model, request, CHAT) from None
            except EmptyAnswer:
                empty += 1
                raise await self._empty_answer(request, empty) from None

        reply = await ctx.call(attempt, limiter=gate)
        self.limiter.settle(estimate, reply.tokens_in + reply.tokens_out)
        return reply

    async def _empty_answer(self, request: dict[str, Any], times: int) -> Exception:
        """An empty answer: the prompt is too long for the context (said at once, when the server
        reports its context), or one more attempt, then a failure."""
        n_ctx = await self.context_size()
        tokens = prompt_tokens(request)
        if n_ctx is not None and tokens > n_ctx:
            return StepError(f"the prompt (about {tokens} tokens) is longer than the model's context ({n_ctx} tokens)")
        if times >= 2:
            return StepError("the server sent an empty answer twice (no text and no finish reason); "
                             "the prompt may be longer than the model's context")
        return EmptyAnswer("the server sent an empty answer (no text and no finish reason)")

    async def _stream(self, ctx, request: dict[str, Any], column: str) -> ChatReply:
        body = {**request, "stream": True, "stream_options": {"include_usage": True}}
        stream = await self.client.post(CHAT, body=body, cast_to=object, stream=True,
                                        stream_cls=_sdk().AsyncStream[object])
        self.answered = True
        text, finish, usage, done = "", "", None, False
        idle = self.profile.idle_timeout
        loop = asyncio.get_running_loop()
        try:
            # Until the first event the answer has not begun (the read timeout's); after it, silence
            # longer than `idle` is a server hanging mid-answer.
            async with asyncio.timeout(None) as deadline:
                async for chunk in sse_data(stream.response):
                    deadline.reschedule(loop.time() + idle)
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
        except TimeoutError:
            raise RetryableError(f"the server at {self.profile.base_url} sent nothing for {idle:g} s "
                                 "in the middle of an answer") from None
        except StreamBroken:
            raise RetryableError("the server ended the stream early") from None
        finally:
            await stream.close()  # on stop too: the connection closes, the server stops billing
        if not finish:
            if not text and not (usage or {}).get("completion_tokens"):
                raise EmptyAnswer("the server sent an empty answer")
            if not done:
                # A body that ends with the connection (llama.cpp) looks complete even when the server
                # died mid-answer: only the answer's own end tells. Another attempt, not half an answer.
                raise RetryableError("the server ended the stream early")
        return _reply(text, usage, finish, request)

    async def _note(self, ctx, request: dict[str, Any], reply: ChatReply, cost: float) -> None:
        ctx.note(provider=self.name, request=request, response=reply.text, cached=reply.cached,
                 tokens_in=reply.tokens_in, tokens_out=reply.tokens_out, cost=cost,
                 finish_reason=reply.finish_reason, usage="estimated" if reply.estimated_usage else "from the server")
        warnings = [cut_off_message(request)] if reply.finish_reason == "length" else []
        limit = answer_limit(request)
        n_ctx = await self.context_size() if limit else None
        if limit and n_ctx is not None and limit > n_ctx:
            warnings.append(f"max_tokens {limit} is more than the model's context ({n_ctx} tokens) "
                            f"at {self.profile.base_url}")
            if (request["model"], limit) not in self._warned:
                self._warned.add((request["model"], limit))
                log.warning("%s", warnings[-1])
        if warnings:
            ctx.note(warning="; ".join(warnings))

    # ---- embeddings --------------------------------------------------------------------
    def embedding_key(self, model: str, text: str, dimensions: int | None) -> str:
        return cache_key(self.endpoint(EMBEDDINGS), embedding_request(model, text, dimensions))

    def _check_embeddings(self, model: str, dimensions: int | None) -> None:
        self._check(model)
        failure = self._embeddings_failure or (self._dimension_failures.get((model, dimensions))
                                               if dimensions else None)
        if failure is not None:
            raise failure

    async def embed(self, ctx, model: str, texts: list[str], dimensions: int | None) -> tuple[list[np.ndarray], int]:
        """One embeddings request for `texts` (one engine slot); vectors in input order and tokens used."""
        self._check_embeddings(model, dimensions)
        request = embedding_request(model, texts, dimensions)
        gate = self.limiter.gate(prompt_tokens(request))

        async def attempt():
            self._check_embeddings(model, dimensions)
            try:
                data = await self.client.post(EMBEDDINGS, body=request, cast_to=object)
            except self._sdk_error as exc:
                raise self._error(exc, model, request, EMBEDDINGS) from None
            self.answered = True
            return data

        data = await ctx.call(attempt, limiter=gate)
        vectors, tokens = parse_embeddings(data, len(texts))
        self.limiter.settle(gate.tokens, tokens)
        if dimensions and vectors and len(vectors[0]) != dimensions:
            # Storing vectors of another length would break every comparison later, silently.
            failure = self._dimension_failures.setdefault((model, dimensions), ProviderFailure(
                f"the server at {self.profile.base_url} ignored dimensions={dimensions} and sent vectors of "
                f"{len(vectors[0])}; leave Dimensions blank for this server"))
            raise failure
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
    except http.TransportError:  # the innermost error ("0 bytes read...") tells the user nothing
        raise StreamBroken from None


class StreamBroken(Exception):
    """The connection ended in the middle of a stream's body."""


def _retrieved(future: asyncio.Future) -> None:
    """A single-flight future nobody waited for: its error is the leader's, raised there already."""
    if not future.cancelled():
        future.exception()


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
