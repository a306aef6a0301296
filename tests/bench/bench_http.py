"""Benchmark: the HTTP step through the engine against a bare httpx2 client, same server, same run.

    python tests/bench/bench_http.py [--regime cpu|remote|both] [--repeat 3]

Regimes (tests/bench/regimes.py): 50 ms replies at 100 in flight (2,000 requests) and 800 ms
replies at 500 in flight (3,000 requests). The server, tests/fake_openai.py (GET /slow), runs
in its own process.

Contenders, each timed from creating its client to closing it (connections included):
    bare httpx2 client    httpx2.AsyncClient with its defaults, except that its pool may open as
                          many connections as there are requests in flight (its default stops at
                          100), and a semaphore for the concurrency: the reference
    HTTP step             the engine running one HTTP step (GET, whole reply to a column)
Reported: wall time (x the lower bound requests x latency / in flight, x the reference) and
this process's CPU time per request (x the reference's).
"""

from __future__ import annotations

import argparse
import asyncio

from regimes import REGIMES, Regime, Server, compare, report

REFERENCE = "bare httpx2 client"


async def bare_httpx2(url: str, regime: Regime) -> None:
    import httpx2

    gate = asyncio.Semaphore(regime.in_flight)
    async with httpx2.AsyncClient(limits=httpx2.Limits(max_connections=regime.in_flight)) as client:

        async def one(i: int) -> None:
            async with gate:
                reply = await client.get(f"{url}/slow", params={"prompt": f"row {i}"})
                assert reply.status_code == 200 and reply.json() == {"slept_ms": 0.0}

        await asyncio.gather(*(one(i) for i in range(regime.requests)))


async def http_step(url: str, regime: Regime, rows: int | None = None) -> None:
    from batchgrid.core.run.engine import Engine
    from batchgrid.core.steps import new_step
    from batchgrid.core.table import Table

    rows = rows or regime.requests
    step = new_step("http", method="GET", url=url + "/slow?prompt={text}", output="reply")
    engine = Engine([step], Table.from_records([{"text": f"row {i}"} for i in range(rows)]),
                    max_concurrency=regime.in_flight)
    progress = await engine.run()
    wrong = [r.index for r in engine.results if r.outputs.get("reply") != '{"slept_ms": 0.0}']
    assert progress.done == rows and not wrong, f"{progress.failed} failed, {len(wrong)} wrong replies"


async def run_regime(regime: Regime, repeat: int) -> None:
    print(regime.describe())
    with Server(regime.latency) as server:
        await http_step(server.url, regime, rows=regime.in_flight)  # warm up: imports, the server
        results = await compare({
            REFERENCE: lambda: bare_httpx2(server.url, regime),
            "HTTP step": lambda: http_step(server.url, regime),
        }, repeat)
    report(regime, results, REFERENCE)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--regime", choices=[*REGIMES, "both"], default="both")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    for name in REGIMES if args.regime == "both" else [args.regime]:
        await run_regime(REGIMES[name], args.repeat)


if __name__ == "__main__":
    asyncio.run(main())
