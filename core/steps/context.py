"""What a step sees while it runs: the typed contract between the engine and the steps.

The engine (core/run) implements `StepContext`; steps depend only on this Protocol and on
`RunResources`, never on the engine, so the layers stay one-way: run -> steps.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from batchgrid.core.providers.run import RunProviders
from batchgrid.core.util.errors import UntrustedError

if TYPE_CHECKING:  # pragma: no cover
    from .plan import PlannedStep


@dataclass
class RunResources:
    """What steps share during one run: settings, clients, the model state, where relative
    paths start. The engine closes what it holds when the run ends (`aclose`)."""

    base_dir: Path = field(default_factory=Path.cwd)  # the pipeline's folder: relative paths start here
    # The user trusts this pipeline: its Python code, `${NAME}` anywhere, files outside its folder
    # (core/pipeline/trust.py says what an untrusted one may do).
    trusted: bool = False
    providers: dict[str, dict[str, Any]] = field(default_factory=dict)  # the pipeline's provider profiles
    settings: dict[str, Any] = field(default_factory=dict)              # the pipeline's run settings
    data_dir: Path | None = None                      # where the journal and response cache live
    use_cache: bool = True                            # answer repeated paid requests from the cache
    # The run's model state: providers by name, the response cache, embedding batchers.
    models: RunProviders = field(init=False, repr=False)
    # While a run lasts: the context for work every row shares (a knowledge base embedded
    # while binding); its calls take the run's slots and retries, its cost is the run's.
    shared: StepContext | None = field(default=None, repr=False)
    _http: Any = None

    def __post_init__(self) -> None:
        self.models = RunProviders(self.providers, data_dir=self.data_dir, use_cache=self.use_cache)

    def http_client(self, in_flight: int = 100):
        """One pooled HTTP client (core/util/http.py) for the run's HTTP steps; it never re-sends a
        request (retries are the engine's). The first caller's `in_flight` (the run's concurrency)
        sizes its pool."""
        if self._http is None:
            from batchgrid.core.util.http import http, pooled_client

            self._http = pooled_client(timeout=http.Timeout(60.0, connect=10.0), in_flight=in_flight,
                                       follow_redirects=True)
        return self._http

    def resolve(self, path: str) -> Path:
        """A step's file path: relative to the pipeline's folder; a file outside that folder
        only for a pipeline the user trusts."""
        full = Path(path).expanduser()
        if not full.is_absolute():
            full = self.base_dir / full
        if not self.trusted and not within(full, self.base_dir):
            raise UntrustedError(f"{os.path.realpath(full)} is outside the pipeline's folder ({self.base_dir}); "
                                 "a pipeline reads files elsewhere only if you trust it "
                                 "(CLI: --trust; window: answer Yes when asked)")
        return full

    async def aclose(self) -> None:
        """The run is over: close its HTTP client and its model state (a later run reopens them)."""
        await self.models.aclose()
        if self._http is not None:
            await self._http.aclose()
            self._http = None


def within(path: Path, folder: Path) -> bool:
    """`path` is `folder` or below it once `..` and symbolic links are followed."""
    return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(folder))


class StepContext(Protocol):
    """One row's view of the run, handed to a step's `run()` (or the run's own, for shared work)."""

    index: int     # the row number in the input table
    step: str      # the label of the step running now ("2. Summarise")
    attempts: int  # attempts made so far in this row (1 + retries)

    @property
    def resources(self) -> RunResources: ...

    @property
    def max_concurrency(self) -> int: ...

    async def call(self, make_call: Callable[[], Awaitable[Any]], *, limiter: Any = None) -> Any:
        """Make one external call under the run's budget, retrying transient failures."""
        ...

    def partial(self, column: str, text: str) -> None:
        """Publish streamed output so the row's cell can grow as tokens arrive."""

    def add_usage(self, tokens_in: int = 0, tokens_out: int = 0, cost: float = 0.0, cached: bool = False) -> None:
        """Count a call's tokens and cost against this row and the run."""

    def note(self, **details: Any) -> None:
        """Attach details (request sent, raw reply) to this step's trace for the row inspector."""

    async def run_steps(self, plan: Sequence[PlannedStep], row: dict[str, Any]) -> dict[str, Any]:
        """Run a bound branch of the step running now (a parallel step's) on `row`; returns its outputs."""
        ...
