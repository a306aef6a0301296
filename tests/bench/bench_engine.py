"""Engine benchmarks, measured side by side with the anchors in one run (ratios, not absolutes).

    python tests/bench/bench_engine.py            # full size (100,000 rows; LangChain takes ~2 min)
    python tests/bench/bench_engine.py --quick    # 20,000 rows

1. Engine overhead: rows/s of a 3-step pure-text pipeline (trim, upper case, template),
   against LangChain's RunnableSequence.abatch on the same three functions and rows, and
   a bare asyncio task per row (the floor of any asyncio design).
2. I/O efficiency: 2,000 rows x two steps that each await a simulated call with log-normal
   latency (median 50 ms), max concurrency 100. Lower bound = max(total work / 100, the
   longest row). Also: when the first row finishes, against the median single-row latency.
The HTTP step over real sockets, against a bare httpx2 client: tests/bench/bench_http.py.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import statistics
import time

from batchgrid.core.run import events as ev
from batchgrid.core.run.engine import Engine
from batchgrid.core.table import Table
from batchgrid.core.pipeline.file import Pipeline
from batchgrid.core.steps.base import INT, OUTPUT, SOURCE, Param, Step, register

LATENCIES: dict[tuple[int, int], float] = {}  # (row, step) -> seconds, shared by both contenders


@register
class SimulatedCall(Step):
    type = "bench_simulated_call"
    title = "Simulated call"
    group = "Web"
    description = "Awaits a precomputed latency, as a remote call would."
    external = True
    params = (Param("source", SOURCE, "", "column", required=True), Param("stage", INT, 0, "which latency"),
              Param("output", OUTPUT, "", "output"))

    async def run(self, row, ctx):
        delay = LATENCIES[(row["id"], self.config["stage"])]

        async def call():
            await asyncio.sleep(delay)
            return row[self.config["source"]]

        return {self.output_name(): await ctx.call(call)}


def text_rows(n: int) -> list[dict]:
    return [{"id": i, "review": f"  Review number {i}:   fine product, would buy again  "} for i in range(n)]


# The three functions, as plain Python for the baselines.
def f_trim(text: str) -> str:
    return " ".join(text.split())


def f_upper(text: str) -> str:
    return text.upper()


def f_template(text: str) -> str:
    return f"Review: {text}"


async def batchgrid_text(records: list[dict], concurrency: int) -> float:
    p = Pipeline.from_dict({"version": 1, "steps": [
        {"type": "trim", "source": "review", "output": "clean"},
        {"type": "change_case", "source": "clean", "output": "upper", "case": "upper"},
        {"type": "template", "template": "Review: {upper}", "output": "line"},
    ]})
    engine = Engine(p.steps, Table.from_records(records), max_concurrency=concurrency)
    finished = 0

    def count(event):  # a listener, as every front end has one
        nonlocal finished
        if isinstance(event, ev.RowFinished):
            finished += 1

    engine.subscribe(count)
    t = time.perf_counter()
    await engine.run()
    elapsed = time.perf_counter() - t
    assert finished == len(records) and engine.results[-1].outputs["line"] == f_template(f_upper(f_trim(records[-1]["review"])))
    return elapsed


async def langchain_text(records: list[dict], concurrency: int) -> float:
    from langchain_core.runnables import RunnableLambda

    chain = (RunnableLambda(lambda r: f_trim(r["review"])) | RunnableLambda(f_upper) | RunnableLambda(f_template))
    t = time.perf_counter()
    out = await chain.abatch(records, config={"max_concurrency": concurrency}, return_exceptions=True)
    elapsed = time.perf_counter() - t
    assert out[-1] == f_template(f_upper(f_trim(records[-1]["review"])))
    return elapsed


async def bare_tasks_text(records: list[dict]) -> float:
    async def one(r):
        return f_template(f_upper(f_trim(r["review"])))

    t = time.perf_counter()
    await asyncio.gather(*(one(r) for r in records))
    return time.perf_counter() - t


def make_latencies(n: int, median: float, sigma: float = 0.5, seed: int = 7) -> None:
    rnd = random.Random(seed)
    LATENCIES.clear()
    for i in range(n):
        for stage in (0, 1):
            LATENCIES[(i, stage)] = median * math.exp(rnd.gauss(0, sigma))


async def batchgrid_io(n: int, concurrency: int) -> tuple[float, float]:
    p = Pipeline.from_dict({"version": 1, "steps": [
        {"type": "bench_simulated_call", "source": "review", "stage": 0, "output": "a"},
        {"type": "bench_simulated_call", "source": "a", "stage": 1, "output": "b"},
    ]})
    engine = Engine(p.steps, Table.from_records(text_rows(n)), max_concurrency=concurrency)
    first = []
    t = time.perf_counter()
    engine.subscribe(lambda e: isinstance(e, ev.RowDone) and not first and first.append(time.perf_counter() - t))
    await engine.run()
    return time.perf_counter() - t, first[0]


async def langchain_io(n: int, concurrency: int) -> float:
    from langchain_core.runnables import RunnableLambda

    async def stage(stage_no):
        async def call(r):
            await asyncio.sleep(LATENCIES[(r["id"], stage_no)])
            return r
        return call

    chain = RunnableLambda(await stage(0)) | RunnableLambda(await stage(1))
    t = time.perf_counter()
    await chain.abatch(text_rows(n), config={"max_concurrency": concurrency})
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="20,000 rows instead of 100,000")
    parser.add_argument("--skip-langchain", action="store_true")
    args = parser.parse_args()
    n = 20_000 if args.quick else 100_000
    records = text_rows(n)

    print(f"1. Engine overhead: 3-step text pipeline, {n:,} rows, max concurrency 100")
    ours = min(asyncio.run(batchgrid_text(records, 100)) for _ in range(3))
    bare = min(asyncio.run(bare_tasks_text(records)) for _ in range(3))
    print(f"   Batchgrid engine        {n / ours:>10,.0f} rows/s")
    print(f"   bare asyncio task/row   {n / bare:>10,.0f} rows/s   (Batchgrid at {bare / ours:.2f}x of it)")
    if not args.skip_langchain:
        lc = asyncio.run(langchain_text(records, 100))
        print(f"   LangChain abatch        {n / lc:>10,.0f} rows/s")
        print(f"   => Batchgrid is {lc / ours:,.0f}x LangChain (target >= 50x)")

    n_io, median, conc = 2000, 0.050, 100
    make_latencies(n_io, median)
    work = sum(LATENCIES.values())
    longest = max(LATENCIES[(i, 0)] + LATENCIES[(i, 1)] for i in range(n_io))
    bound = max(work / conc, longest)
    row_median = statistics.median(LATENCIES[(i, 0)] + LATENCIES[(i, 1)] for i in range(n_io))
    print(f"\n2. I/O efficiency: {n_io:,} rows x 2 steps, log-normal latency (median {median * 1000:.0f} ms), "
          f"max concurrency {conc}")
    print(f"   lower bound {bound:.3f} s (work/{conc} = {work / conc:.3f} s, longest row {longest:.3f} s)")
    total, first = asyncio.run(batchgrid_io(n_io, conc))
    print(f"   Batchgrid   {total:.3f} s = {total / bound:.3f}x the bound (target <= 1.10x); first result after "
          f"{first * 1000:.0f} ms = {first / row_median:.2f}x the median row latency {row_median * 1000:.0f} ms "
          f"(target <= 2x)")
    if not args.skip_langchain:
        lc_total = asyncio.run(langchain_io(n_io, conc))
        print(f"   LangChain   {lc_total:.3f} s = {lc_total / bound:.3f}x the bound")
    # The HTTP step against a bare httpx2 client at both regimes: tests/bench/bench_http.py.


if __name__ == "__main__":
    main()
