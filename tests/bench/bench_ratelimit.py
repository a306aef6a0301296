"""Benchmark: rate limits (issue 10, item 14), against the project's own test server in its own process.

    python tests/bench/bench_ratelimit.py [--quick]

1. A sliding-window limit: the server lets R requests through in any W seconds (R = 600 per
   W = 5 s, a short window so the bench takes about two minutes; 120 requests a second) and
   answers the rest 429 with Retry-After (whole seconds, rounded up) until its window has room.
   An LLM step runs 3,600 rows (about six windows) at max concurrency 4, 20 and 100 (20 ms
   replies: even 4 at once could send faster than the limit). Reported: rows a second as a
   share of R / W (target >= 90%) and the requests the server refused (its own counter; target
   <= 3%).
2. Random faults: 1,000 rows, 200 ms replies, max concurrency 20, default retry policy; fault-free,
   then with 20% of requests answered 429 (Retry-After 0.5 s) and 5% answered 500. Target: every
   row done, in <= 2.5x the fault-free time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from regimes import Server

KEY_ENV = "BATCHGRID_BENCH_KEY"
LIMIT, WINDOW = 600, 5.0


def control(server: Server, path: str, body: dict | None = None) -> dict:
    data = json.dumps(body or {}).encode()
    request = urllib.request.Request(server.url + path, data=data if body is not None else None,
                                     headers={"Content-Type": "application/json"},
                                     method="POST" if body is not None else "GET")
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read())


async def run_rows(server: Server, rows: int, concurrency: int) -> tuple[float, dict, list[str]]:
    from batchgrid.core.run.engine import Engine, RetryPolicy
    from batchgrid.core.steps import new_step
    from batchgrid.core.steps.context import RunResources
    from batchgrid.core.table import Table

    providers = {"bench": {"preset": "openai", "base_url": server.base_url, "api_key_env": KEY_ENV,
                           "model": "gpt-4o-mini"}}
    step = new_step("llm", prompt="{text}", stream=False, provider="bench")
    with tempfile.TemporaryDirectory() as data:
        engine = Engine([step], Table.from_records([{"text": f"row {i}"} for i in range(rows)]),
                        max_concurrency=concurrency, retry_policy=RetryPolicy(),
                        resources=RunResources(providers=providers, data_dir=Path(data), use_cache=False))
        t0 = time.perf_counter()
        await engine.run()
        elapsed = time.perf_counter() - t0
    statuses = [r.status if r else "not run" for r in engine.results]
    return elapsed, control(server, "/_stats"), statuses


def sliding_window(server: Server, rows: int) -> list[str]:
    lines = [f"sliding window: {LIMIT} requests per {WINDOW:g} s ({LIMIT / WINDOW:.0f}/s), {rows} rows, 20 ms replies"]
    for concurrency in (4, 20, 100):
        control(server, "/_reset", {})
        control(server, "/_config", {"latency": 0.02, "rate_limit": [LIMIT, WINDOW], "retry_after_style": "seconds"})
        elapsed, stats, statuses = asyncio.run(run_rows(server, rows, concurrency))
        rate = rows / elapsed
        share = rate / (LIMIT / WINDOW)
        refused = stats["rate_limited"] / stats["requests"]
        lines.append(f"  max concurrency {concurrency:>3}: {elapsed:6.1f} s, {rate:6.1f} rows/s = {share:.1%} of the limit "
                     f"(target >= 90%); refused {stats['rate_limited']} of {stats['requests']} = {refused:.2%} "
                     f"(target <= 3%); {statuses.count('done')} done")
    return lines


def random_faults(server: Server, rows: int) -> list[str]:
    lines = [f"random faults: {rows} rows, 200 ms replies, max concurrency 20"]
    control(server, "/_reset", {})
    control(server, "/_config", {"latency": 0.2})
    base, _, statuses = asyncio.run(run_rows(server, rows, 20))
    lines.append(f"  fault-free: {base:.1f} s, {statuses.count('done')} done")
    control(server, "/_reset", {})
    control(server, "/_config", {"latency": 0.2, "rate_429": 0.2, "retry_after": 0.5, "rate_500": 0.05, "seed": 1})
    storm, stats, statuses = asyncio.run(run_rows(server, rows, 20))
    lines.append(f"  20% 429 (Retry-After 0.5 s) + 5% 500: {storm:.1f} s = {storm / base:.2f}x fault-free "
                 f"(target <= 2.5x); {statuses.count('done')} done, {statuses.count('error')} failed; "
                 f"429s {stats['statuses'].get('429', 0)}, 500s {stats['statuses'].get('500', 0)}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rows (a smoke run, not the figures)")
    args = parser.parse_args()
    os.environ[KEY_ENV] = "sk-bench"
    print(f"Python {sys.version.split()[0]}")
    with Server(0.0) as server:
        for line in sliding_window(server, 1200 if args.quick else 3600) + random_faults(server, 200 if args.quick else 1000):
            print(line, flush=True)


if __name__ == "__main__":
    main()
