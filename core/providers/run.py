"""What the model steps of one run share: providers by name, the response cache, prices,
embedding batchers and work done once per run (knowledge bases). A profile that takes its model
from the server (OPENAI_BASE_URL at a local server, no model named: core/providers/profiles.py)
asks it (GET /models) when the run first uses the provider.

A run's resources hold one (`RunResources.models`); the engine closes it when the run ends,
which cancels work still going on (a batch no row waits for, a knowledge base being
embedded) and closes the clients and the cache. A later run on the same resources starts
afresh: nothing of the closed run is reused.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from batchgrid.core.util.paths import default_data_dir

from .batcher import EmbeddingBatcher
from .cache import ResponseCache
from .client import Provider
from .prices import PriceTable
from .profiles import api_key, default_profile_name, resolve_profile

DEFAULT_CEILING = 8


class RunProviders:
    def __init__(self, profiles: Mapping[str, dict[str, Any]] | None = None, *, data_dir: Path | None = None,
                 use_cache: bool = True, ceiling: int = DEFAULT_CEILING):
        self.profiles: Mapping[str, dict[str, Any]] = profiles if profiles is not None else {}
        self.data_dir = data_dir      # where the cache and the user's price table live (None: the default)
        self.use_cache = use_cache
        self.ceiling = ceiling        # the run's max concurrency: a provider's own window never passes it
        self.cache: ResponseCache | None = None
        self.prices: PriceTable | None = None
        self._batchers: dict[tuple, EmbeddingBatcher] = {}
        self._once: dict[Any, asyncio.Future] = {}

    def folder(self) -> Path:
        return Path(self.data_dir) if self.data_dir is not None else default_data_dir()

    async def provider(self, name: str) -> Provider:
        name = name or default_profile_name(self.profiles)
        return await self.once(("provider", name), lambda: self._create(name))

    async def _create(self, name: str) -> Provider:
        profile = resolve_profile(name, self.profiles)
        await self.once("files", lambda: asyncio.to_thread(self._open_files))
        # A keyring may block while it asks the desktop: keep the loop (and the window) free.
        key = await asyncio.to_thread(api_key, profile) if profile.keyring_service else api_key(profile)
        assert self.prices is not None  # read by _open_files
        provider = Provider(profile, key, ceiling=self.ceiling, cache=self.cache, prices=self.prices)
        if profile.models_from_server:
            await self._models_from_server(provider)
        return provider

    @staticmethod
    async def _models_from_server(provider: Provider) -> None:
        """OPENAI_BASE_URL at another server and no model named: use the one model it serves, not
        OpenAI's default. Several: the defaults if it serves them, else the step must name one
        (said on its rows). No answer: the preset's defaults stay (many local servers take any name)."""
        profile = provider.profile
        served = await provider.served_models()
        if not served:
            return
        changes: dict[str, Any] = {}
        if len(served) == 1:
            changes = {name: served[0] for name in profile.models_from_server}
        else:  # the preset's defaults it serves stay (a proxy of OpenAI's models); the others must be named
            shown = ", ".join(served[:8]) + (", ..." if len(served) > 8 else "")
            changes = {name: None for name in profile.models_from_server if getattr(profile, name) not in served}
            if not changes:
                return
            changes["model_problem"] = (f"the server at {profile.base_url} serves {len(served)} models ({shown}): "
                                        "name one in the step's model")
        provider.profile = replace(profile, **changes)

    def _open_files(self) -> None:
        """The response cache (SQLite) and the price table: files, so read in a worker thread."""
        folder = self.folder()
        self.prices = PriceTable.load(folder)
        if self.use_cache:
            self.cache = ResponseCache.in_folder(folder)

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
        """End of the run: nothing it started keeps going, and nothing of it is reused."""
        once, self._once = self._once, {}
        batchers, self._batchers = self._batchers, {}
        pending = [f for f in once.values() if not f.done()]
        for future in pending:  # a knowledge base still being embedded when the run stopped
            future.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for batcher in batchers.values():  # batches gathering or in flight: never sent, or cancelled
            await batcher.aclose()
        for future in once.values():
            if not future.cancelled() and future.exception() is None and isinstance(future.result(), Provider):
                await future.result().aclose()
        if self.cache is not None:
            self.cache.close()
            self.cache = None
        self.prices = None
