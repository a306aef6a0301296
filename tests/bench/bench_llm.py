"""Benchmark: the LLM step through the engine against the bare openai SDK client, same server, same run.

    python tests/bench/bench_llm.py [--regime cpu|remote|both] [--repeat 3]

Regimes (tests/bench/regimes.py): 50 ms replies at 100 in flight (2,000 rows: the client's CPU
time decides) and 800 ms replies at 500 in flight (3,000 rows: a remote API). The server,
tests/fake_openai.py, runs in its own process.

Contenders, each timed from creating its client to closing it (connections included):
    bare SDK, chat.completions.create   openai.AsyncOpenAI with its default settings, typed calls,
                                        a semaphore for the concurrency: the reference
    bare SDK, raw JSON post             the same client, `post(..., cast_to=object)` as the LLM step does
    LLM step                            the engine running one LLM step (cache on, as by default),
                                        not streaming, then streaming
When aiohttp is installed (pip install 'openai[aiohttp]'), the SDK's aiohttp client is measured
too, bare and under the LLM step, for comparison (Batchgrid itself uses httpx2: see
core/util/http.py).
Reported: wall time (x the lower bound rows x latency / in flight, x the reference) and this
process's CPU time per request (x the reference's). Target: the LLM step <= 1.10x the bare SDK
client's wall time in both regimes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from pathlib import Path

from regimes import REGIMES, Regime, Server, compare, report

KEY_ENV = "BATCHGRID_BENCH_KEY"
REFERENCE = "bare SDK, chat.completions.create"
TARGET = 1.10


def body(i: int) -> dict:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"row {i}"}]}


async def bare_sdk(base_url: str, regime: Regime, raw: bool, aiohttp: bool = False) -> None:
    import openai

    http_client = openai.DefaultAioHttpClient() if aiohttp else None
    client = openai.AsyncOpenAI(api_key="sk-bench", base_url=base_url, http_client=http_client)  # the SDK's defaults
    gate = asyncio.Semaphore(regime.in_flight)

    async def one(i: int) -> None:
        async with gate:
            if raw:
                data = await client.post("/chat/completions", body=body(i), cast_to=object)
                assert data["choices"][0]["message"]["content"] == f"echo: row {i}"
            else:
                reply = await client.chat.completions.create(**body(i))
                assert reply.choices[0].message.content == f"echo: row {i}"

    await asyncio.gather(*(one(i) for i in range(regime.requests)))
    await client.close()


async def llm_step(base_url: str, regime: Regime, stream: bool, rows: int | None = None, aiohttp: bool = False) -> None:
    from batchgrid.core.providers import client
    from batchgrid.core.run.engine import Engine, RunResources
    from batchgrid.core.steps import new_step
    from batchgrid.core.table import Table

    if aiohttp:  # for comparison only: the run's model client on the SDK's aiohttp client instead of httpx2
        import openai

        pooled, client.pooled_client = client.pooled_client, lambda **kw: openai.DefaultAioHttpClient(timeout=kw["timeout"])
        try:
            return await llm_step(base_url, regime, stream, rows)
        finally:
            client.pooled_client = pooled

    rows = rows or regime.requests
    providers = {"bench": {"preset": "openai", "base_url": base_url, "api_key_env": KEY_ENV, "model": "gpt-4o-mini"}}
    engine = Engine([new_step("llm", prompt="{text}", stream=stream)],
                    Table.from_records([{"text": f"row {i}"} for i in range(rows)]), max_concurrency=regime.in_flight,
                    resources=RunResources(providers=providers, data_dir=Path(tempfile.mkdtemp()), use_cache=True))
    progress = await engine.run()
    wrong = [r.index for r in engine.results if r.outputs.get("answer") != f"echo: row {r.index}"]
    assert progress.done == rows and not wrong, f"{progress.failed} failed, {len(wrong)} wrong answers"


async def run_regime(regime: Regime, repeat: int) -> dict[str, float]:
    print(regime.describe())
    with Server(regime.latency) as server:
        await llm_step(server.base_url, regime, False, rows=regime.in_flight)  # warm up: imports, the server
        contenders = {
            REFERENCE: lambda: bare_sdk(server.base_url, regime, raw=False),
            "bare SDK, raw JSON post": lambda: bare_sdk(server.base_url, regime, raw=True),
            "LLM step, not streaming": lambda: llm_step(server.base_url, regime, False),
            "LLM step, streaming": lambda: llm_step(server.base_url, regime, True),
        }
        if aiohttp_installed():  # for comparison only (pip install 'openai[aiohttp]')
            contenders["bare SDK, raw JSON post, aiohttp client"] = \
                lambda: bare_sdk(server.base_url, regime, raw=True, aiohttp=True)
            contenders["LLM step, not streaming, aiohttp client"] = \
                lambda: llm_step(server.base_url, regime, False, aiohttp=True)
        results = await compare(contenders, repeat)
    report(regime, results, REFERENCE)
    ratios = {label: results[label].wall / results[REFERENCE].wall for label in results
              if label.startswith("LLM") and "aiohttp" not in label}
    verdict = "met" if max(ratios.values()) <= TARGET else "NOT met"
    print(f"  target: the LLM step <= {TARGET:.2f}x the bare SDK client: {verdict} "
          f"({', '.join(f'{r:.2f}x' for r in ratios.values())})")
    return ratios


def aiohttp_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("aiohttp") is not None


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--regime", choices=[*REGIMES, "both"], default="both")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    os.environ[KEY_ENV] = "sk-bench"
    for name in REGIMES if args.regime == "both" else [args.regime]:
        await run_regime(REGIMES[name], args.repeat)


if __name__ == "__main__":
    asyncio.run(main())
