"""What the model steps of one run share: providers by name, the response cache, prices,
embedding batchers and work done once per run (knowledge bases).

It lives in `RunResources.extras`, so the engine closes it (clients, cache) when the run ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from batchgrid.core.util.paths import default_data_dir

from .batcher import EmbeddingBatcher
from .cache import ResponseCache
from .client import Provider
from .prices import PriceTable
from .profiles import api_key, default_profile_name, resolve_profile

EXTRAS_KEY = "models"


def data_folder(resources) -> Path:
    if resources.data_dir is not None:
        return Path(resources.data_dir)
    return default_data_dir()


class RunProviders:
    def __init__(self, resources, max_concurrency: int):
        self.resources = resources
        self.max_concurrency = max_concurrency
        folder = data_folder(resources)
        self.cache = ResponseCache.in_folder(folder) if resources.use_cache else None
        self.prices = PriceTable.load(folder)
        self._batchers: dict[tuple, EmbeddingBatcher] = {}
        self._once: dict[Any, asyncio.Future] = {}
        self.closed = False

    @classmethod
    def of(cls, ctx) -> RunProviders:
        """The run's shared model state, made by the first model call of the run."""
        extras = ctx.resources.extras
        hub = extras.get(EXTRAS_KEY)
        if hub is None or hub.closed:  # closed: the resources are being used for another run
            hub = extras[EXTRAS_KEY] = cls(ctx.resources, ctx.max_concurrency)
        return hub

    async def provider(self, name: str) -> Provider:
        name = name or default_profile_name(self.resources.providers)
        return await self.once(("provider", name), lambda: self._create(name))

    async def _create(self, name: str) -> Provider:
        profile = resolve_profile(name, self.resources.providers)
        # A keyring may block while it asks the desktop: keep the loop (and the window) free.
        key = await asyncio.to_thread(api_key, profile) if profile.keyring_service else api_key(profile)
        return Provider(profile, key, ceiling=self.max_concurrency, cache=self.cache, prices=self.prices)

    def batcher(self, provider: Provider, model: str, dimensions: int | None, batch_size: int | None) -> EmbeddingBatcher:
        size = batch_size or provider.profile.batch_size
        key = (provider.name, model, dimensions, size)
        if key not in self._batchers:
            self._batchers[key] = EmbeddingBatcher(provider, model, dimensions=dimensions, batch_size=size)
        return self._batchers[key]

    async def once(self, key: Any, make: Callable[[], Awaitable[Any]]) -> Any:
        """Run `make()` once per run for `key`; every caller gets its result (or its error).
        A caller being cancelled does not cancel the shared work; the end of the run does."""
        future = self._once.get(key)
        if future is None:
            future = self._once[key] = asyncio.ensure_future(make())
        if future.done():  # the common case after the first rows: no await at all
            return future.result()
        return await asyncio.shield(future)

    async def aclose(self) -> None:
        self.closed = True
        pending = [f for f in self._once.values() if not f.done()]
        for future in pending:  # a knowledge base still being embedded when the run stopped
            future.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for future in self._once.values():
            if not future.cancelled() and future.exception() is None and isinstance(future.result(), Provider):
                await future.result().aclose()
        if self.cache is not None:
            self.cache.close()
