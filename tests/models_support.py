"""Helpers for the model-step tests: run steps over records against the fake OpenAI server."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchgrid.core.run import events as ev
from batchgrid.core.run.engine import Engine, RetryPolicy, RunResources
from batchgrid.core.table import Table
from batchgrid.core.steps import new_step

KEY_ENV = "BATCHGRID_TEST_KEY"
KEY = "sk-test-key-0123456789abcdef"
FAST_RETRIES = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05)


def profile(server, **extra) -> dict[str, Any]:
    """A provider profile for the test server (key from KEY_ENV)."""
    return {"test": {"preset": "openai", "base_url": server.base_url, "api_key_env": KEY_ENV,
                     "model": "gpt-4o-mini", "embedding_model": "text-embedding-3-small", **extra}}


@dataclass
class Run:
    engine: Engine
    events: list = field(default_factory=list)

    @property
    def results(self):
        return self.engine.results

    def outputs(self, column: str) -> list[Any]:
        return [r.outputs.get(column) if r else None for r in self.results]

    def statuses(self) -> list[str]:
        return [r.status if r else "not run" for r in self.results]

    def errors(self) -> list[str]:
        return [r.error for r in self.results if r and r.status == ev.ERROR]

    def of(self, kind) -> list:
        return [e for e in self.events if isinstance(e, kind)]


def make_engine(steps, records, *, providers=None, data_dir: Path, max_concurrency: int = 8, use_cache: bool = True,
                settings: dict | None = None, retry_policy: RetryPolicy = FAST_RETRIES,
                base_dir: Path | None = None) -> Run:
    steps = [new_step(s["type"], **{k: v for k, v in s.items() if k != "type"}) if isinstance(s, dict) else s
             for s in steps]
    resources = RunResources(providers=providers or {}, settings=settings or {}, data_dir=data_dir,
                             use_cache=use_cache, base_dir=base_dir or Path.cwd())  # the pipeline's folder
    engine = Engine(steps, Table.from_records(records), max_concurrency=max_concurrency,
                    retry_policy=retry_policy, resources=resources)
    run = Run(engine)
    engine.subscribe(run.events.append)
    return run


def prompts(n: int, prefix: str = "row") -> list[dict[str, Any]]:
    return [{"text": f"{prefix} {i}"} for i in range(n)]


class ModelBench:
    """The fake server with a required key, a provider profile for it and a private data folder."""

    def __init__(self, server, data_dir: Path):
        self.server = server
        self.data_dir = data_dir
        server.configure(api_key=KEY)

    def providers(self, **extra) -> dict[str, Any]:
        return profile(self.server, **extra)

    def engine(self, steps, records, **kw) -> Run:
        kw.setdefault("providers", self.providers())
        kw.setdefault("data_dir", self.data_dir)
        return make_engine(steps, records, **kw)

    async def run(self, steps, records, **kw) -> Run:
        run = self.engine(steps, records, **kw)
        await run.engine.run()
        return run


def example_replies(answered: dict[str, str], extracted: Counter | None = None) -> Callable[[str, dict], str]:
    """The test server's answers for the bundled model example (reviews-llm): a label for the classifier,
    a reply, and for the extractor JSON, except from gpt-4o-mini for reviews of odd length (text, so the
    fallback answers those). `answered`: the extractor's prompt -> the model whose JSON was kept;
    `extracted`: the extractor's requests per model."""

    def reply(prompt: str, request: dict) -> str:
        if "response_format" in request:
            if extracted is not None:
                extracted[request["model"]] += 1
            text = prompt.split("\n\nExtract")[0]
            if request["model"] == "gpt-4o-mini" and len(text) % 2:
                return "The customer is unhappy."  # not the JSON asked for
            answered[text] = request["model"]
            return json.dumps({"problem": "it broke", "wants_refund": False})
        return "negative" if "Classify" in prompt else "Thank you."

    return reply
