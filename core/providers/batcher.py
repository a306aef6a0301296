"""Native batching for embeddings (docs/architecture.md, engine contract point 6).

Rows ask for one vector each and wait only for their own. Texts asked for within a few
milliseconds of each other are gathered, up to the batch size (and `MAX_REQUEST_TOKENS`), and
sent as ONE request that holds one engine slot (through the `call` of a row still waiting for
it, so it retries like any call). A batch goes as soon as it is full, or when no text has
joined it for `linger` seconds (or it has gathered for `MAX_GATHER`): rows keep flowing.

A row waiting in a gathering batch is parked (`ctx.park`): it waits for other rows, not for a
server, so the engine starts another row meanwhile (core/run/engine.py, `Lending`). The batch
fills from rows queued for the step, not only from the `max_concurrency` rows in flight:
1,000 rows at the defaults are 4 requests of 256 texts, not 125 of 8. When the batch goes,
its rows are unparked: they count as rows at work again while their request is on the wire.

Each text is cached on its own (endpoint, model, dimensions, text), so a later run or a
knowledge base seen before costs nothing. Identical texts in one batch are sent once.
A batch whose rows have all been cancelled (stop, a failed sibling branch) is dropped: never
sent if it was still gathering, cancelled if it was on the wire. `aclose()` does the same
for every batch at the end of the run.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import numpy as np

from .client import Provider
from .tokens import text_tokens

DEFAULT_LINGER = 0.005    # a batch no text joined for this long goes
MAX_GATHER = 0.25         # a batch goes after gathering this long, however fast texts still join it
MAX_REQUEST_TOKENS = 300_000  # OpenAI's limit of input tokens in one embeddings request


class _Batch:
    __slots__ = ("contexts", "futures", "keys", "last", "parked", "start", "task", "texts", "tokens")

    def __init__(self, now: float) -> None:
        self.start = self.last = now  # when the first and the latest text joined
        self.tokens = 0
        self.parked = True  # gathering: its rows are parked in the engine (ctx.park)
        self.texts: list[str] = []
        self.keys: list[str | None] = []
        self.futures: list[asyncio.Future] = []
        self.contexts: list[Any] = []  # the context of each text's row; None once that row is cancelled
        self.task: asyncio.Task | None = None

    def waiting(self) -> Any:
        """The context of a row still waiting for this batch, or None if none is."""
        return next((c for c in self.contexts if c is not None), None)


class EmbeddingBatcher:
    def __init__(self, provider: Provider, model: str, *, dimensions: int | None = None,
                 batch_size: int = 100, linger: float | None = None):
        self.provider = provider
        self.model = model
        self.dimensions = dimensions
        self.batch_size = max(1, batch_size)
        self.linger = DEFAULT_LINGER if linger is None else linger
        self._open: _Batch | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._in_flight: set[asyncio.Task] = set()

    async def embed(self, ctx, text: str) -> np.ndarray:
        """The vector of `text`, answered from the cache or from a shared batch request."""
        provider = self.provider
        cache = provider.cache
        key = provider.embedding_key(self.model, text, self.dimensions) if cache is not None else None
        if cache is not None and key is not None:
            hit = cache.get(key)
            if hit is not None:
                ctx.add_usage(hit["tokens"], 0, 0.0, cached=True)
                return _decode(hit["vector"])
        batch = self._join(ctx, text, key)
        place = len(batch.futures) - 1
        try:
            vector, tokens, batch_size = await asyncio.shield(batch.futures[place])
        except asyncio.CancelledError:
            if batch.parked and batch.contexts[place] is not None:
                _unpark(ctx)
            batch.contexts[place] = None
            if batch.waiting() is None:
                self._drop(batch)  # nobody wants this batch any more
            raise
        ctx.add_usage(tokens, 0, provider.cost(self.model, tokens, 0))
        ctx.note(provider=provider.name, model=self.model, batch_size=batch_size, cached=False)
        return vector

    def _join(self, ctx, text: str, key: str | None) -> _Batch:
        loop = asyncio.get_running_loop()
        now = loop.time()
        tokens = text_tokens(text)
        batch = self._open
        if batch is not None and batch.texts and batch.tokens + tokens > MAX_REQUEST_TOKENS:
            self._send()  # this text would take the request past the provider's limit: the batch goes first
            batch = None
        if batch is None:
            batch = self._open = _Batch(now)
            self._timer = loop.call_at(now + self.linger, self._lingered)
        batch.last = now
        batch.tokens += tokens
        batch.texts.append(text)
        batch.keys.append(key)
        batch.contexts.append(ctx)
        batch.futures.append(loop.create_future())
        if len(batch.texts) < self.batch_size:
            park = getattr(ctx, "park", None)  # the engine's contexts have it
            if park is not None:
                park(self.batch_size)  # its worker may take another row, which may join this batch
        else:
            batch.contexts[-1] = None  # (not parked: not unparked when the batch goes)
            self._send()
            batch.contexts[-1] = ctx
        return batch

    def _lingered(self) -> None:
        """The linger timer: the batch goes if no text joined it for `linger` seconds, else it waits on."""
        self._timer = None
        batch = self._open
        if batch is None:
            return
        loop = asyncio.get_running_loop()
        due = min(batch.last + self.linger, batch.start + max(MAX_GATHER, self.linger))
        if loop.time() < due:
            self._timer = loop.call_at(due, self._lingered)
        else:
            self._send()

    def _close_open_batch(self) -> _Batch | None:
        batch, self._open = self._open, None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if batch is not None and batch.parked:
            batch.parked = False  # its rows wait for a server now (or for nothing): rows at work again
            for ctx in batch.contexts:
                if ctx is not None:
                    _unpark(ctx)
        return batch

    def _send(self) -> None:
        batch = self._close_open_batch()
        ctx = batch.waiting() if batch is not None else None
        if batch is None or ctx is None:
            return
        # The request is made through a waiting row's context: its retries show on that row.
        batch.task = asyncio.ensure_future(self._request(ctx, batch))
        self._in_flight.add(batch.task)
        batch.task.add_done_callback(self._in_flight.discard)

    def _drop(self, batch: _Batch) -> None:
        if batch is self._open:
            self._close_open_batch()  # still gathering: it is never sent
        elif batch.task is not None:
            batch.task.cancel()       # on the wire: the request is cancelled

    async def aclose(self) -> None:
        """The run is over: a gathering batch is never sent, requests in flight are cancelled."""
        batch = self._close_open_batch()
        for future in batch.futures if batch is not None else ():
            future.cancel()
        tasks = list(self._in_flight)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _request(self, ctx, batch: _Batch) -> None:
        unique = list(dict.fromkeys(batch.texts))
        try:
            vectors, tokens = await self.provider.embed(ctx, self.model, unique, self.dimensions)
        except asyncio.CancelledError:
            for f in batch.futures:
                f.cancel()
            raise
        except Exception as exc:
            for row_ctx, f in zip(batch.contexts, batch.futures, strict=True):
                if f.done():
                    continue
                if row_ctx is None:
                    f.cancel()  # that row was cancelled: nobody would read the error
                else:
                    f.set_exception(exc)
            return
        by_text = dict(zip(unique, vectors, strict=True))
        chars = sum(len(t) for t in batch.texts) or 1
        cache = self.provider.cache
        for text, key, future in zip(batch.texts, batch.keys, batch.futures, strict=True):
            share = round(tokens * len(text) / chars)  # each row pays for its own text
            if cache is not None and key is not None:
                cache.put(key, {"vector": _encode(by_text[text]), "tokens": share})
            if not future.done():
                future.set_result((by_text[text], share, len(batch.texts)))

    async def embed_many(self, ctx, texts: list[str]) -> list[np.ndarray]:
        """Many texts at once (a knowledge base): they fill batches of `batch_size`."""
        return list(await asyncio.gather(*(self.embed(ctx, t) for t in texts)))


def _unpark(ctx: Any) -> None:
    unpark = getattr(ctx, "unpark", None)
    if unpark is not None:
        unpark()


def _encode(vector: np.ndarray) -> str:
    return base64.b64encode(np.asarray(vector, dtype=np.float32).tobytes()).decode("ascii")


def _decode(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype=np.float32).copy()


def vector_of(value: Any) -> np.ndarray | None:
    """A cell that already holds a vector (an Embed step's output), else None."""
    if isinstance(value, np.ndarray) and value.ndim == 1 and value.size:
        return value.astype(np.float32, copy=False)
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, (int, float)) for v in value):
        return np.asarray(value, dtype=np.float32)
    return None
