"""Runs on a Dask cluster vs the single-process engine, the same command in the same run (issue 13, part 1).

    python tests/bench/bench_cluster.py [--rows 200000] [--llm-rows 20000] [--latency 0.05]

1. CPU: a trusted Python step burning ~2 ms per row; `batchgrid-cli run` without and with
   `--cluster local:2` (start-up of the cluster included). Target on a 2-core machine: >= 1.7x.
2. LLM: one model step per row against the test server in its own process (50 ms replies, or
   `--latency` seconds) at a max concurrency of 100 over the cluster (`local:2`); the lower bound is
   rows x latency / 100. Target: <= 1.15x the lower bound. At 50 ms that is 2,000 calls a second,
   more than two cores can send and answer (the figure then measures CPU); at a model's latency
   (1 s: 100 calls a second) it measures the cluster's budget.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from batchgrid.core.cli.main import main
from regimes import Server

BURN = "x = 0\nfor i in range(N):\n    x += i * i\nresult = x % 7"


def calibrate(ms: float = 2.0) -> int:
    """The N for which the step's loop costs about `ms` milliseconds here."""
    n = 10_000
    code = compile(BURN, "burn", "exec")
    per = float("inf")
    for _ in range(10):  # the quickest round: other processes on the machine only slow it down
        t = time.perf_counter()
        for _ in range(5):
            exec(code, {"N": n})
        per = min(per, (time.perf_counter() - t) / 5)
    return max(1000, int(n * ms / 1000 / per))


ENGINES: list = []  # the cluster runs' engines (their workers' wall and CPU time)


def watch_cluster_engines() -> None:
    from batchgrid.core.run.cluster import ClusterEngine

    plain = ClusterEngine.run

    async def run(self):
        ENGINES.append(self)
        return await plain(self)

    ClusterEngine.run = run  # type: ignore[method-assign]


def busy_cores() -> float:
    """CPU seconds the whole machine has spent busy (every process: ours and anyone else's), Linux only."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


MACHINE: list[float] = []  # the machine's busy cores during each run (ours and other processes')


def run(args: list[str]) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds: the client, and a local cluster's scheduler)."""
    err = io.StringIO()
    t, c, m = time.perf_counter(), time.process_time(), busy_cores()
    with contextlib.redirect_stderr(err):
        code = main(["run", *args, "--quiet"])
    wall, cpu_time = time.perf_counter() - t, time.process_time() - c
    MACHINE.append((busy_cores() - m) / wall)
    if code != 0:
        raise SystemExit(f"run failed ({code}): {err.getvalue().strip()}")
    return wall, cpu_time


def workers_line() -> str:
    engine = ENGINES[-1]
    busy = engine.worker_cpu / engine.worker_seconds if engine.worker_seconds else 0.0
    return (f"{engine.partitions_run} partitions; workers' CPU {engine.worker_cpu:.1f} s in "
            f"{engine.worker_seconds:.1f} s of partitions ({busy:.0%} busy)")


def cpu(folder: Path, rows: int) -> None:
    import pandas as pd

    n = calibrate()
    data = folder / "cpu.parquet"
    pd.DataFrame({"id": range(rows)}).to_parquet(data, index=False)
    pipeline = folder / "cpu.json"
    pipeline.write_text(json.dumps({"version": 1, "settings": {"max_concurrency": 8}, "steps": [
        {"type": "python", "code": BURN.replace("N", str(n)), "output": "burnt"}]}))
    common = [str(pipeline), str(data), "--trust", "--no-cache"]
    (local, local_cpu) = run([*common, "-o", str(folder / "local.parquet"), "--journal", str(folder / "j1.sqlite")])
    (cluster, client_cpu) = run([*common, "-o", str(folder / "cluster.parquet"), "--journal",
                                 str(folder / "j2.sqlite"), "--cluster", "local:2"])
    print(f"CPU step (~2 ms/row, N={n}), {rows:,} rows: single process {local:.1f} s ({rows / local:,.0f} rows/s, "
          f"CPU {local_cpu / local:.0%} of a core), local:2 {cluster:.1f} s ({rows / cluster:,.0f} rows/s; client and "
          f"scheduler CPU {client_cpu:.1f} s = {client_cpu / cluster:.0%} of a core; {workers_line()}): "
          f"{local / cluster:.2f}x throughput; the machine was busy {MACHINE[-2]:.2f} and {MACHINE[-1]:.2f} "
          f"cores of {os.cpu_count()} during each (every process)")


def llm(folder: Path, rows: int, cap: int = 100, latency: float = 0.05) -> None:
    import pandas as pd

    os.environ["BENCH_KEY"] = "sk-bench"  # the workers read it from their own environment
    data = folder / "llm.parquet"
    pd.DataFrame({"text": [f"row {i}" for i in range(rows)]}).to_parquet(data, index=False)
    with Server(latency) as server:
        pipeline = folder / "llm.json"
        pipeline.write_text(json.dumps({
            "version": 1, "settings": {"max_concurrency": cap},
            "providers": {"bench": {"preset": "openai", "base_url": server.base_url, "api_key_env": "BENCH_KEY",
                                    "model": "gpt-4o-mini"}},
            "steps": [{"type": "llm", "prompt": "{text}", "output": "answer"}]}))
        common = [str(pipeline), str(data), "--no-cache"]
        bound = rows * latency / cap
        local, _ = run([*common, "-o", str(folder / "l1.parquet"), "--journal", str(folder / "j3.sqlite")])
        cluster, _ = run([*common, "-o", str(folder / "l2.parquet"), "--journal", str(folder / "j4.sqlite"),
                          "--cluster", "local:2"])
    engine = ENGINES[-1]
    print(f"LLM, {rows:,} rows, {latency * 1000:.0f} ms replies, cap {cap} (lower bound {bound:.1f} s): "
          f"single process {local:.1f} s ({local / bound:.2f}x bound), local:2 {cluster:.1f} s ({cluster / bound:.2f}x "
          f"bound; peak {engine.peak_leases} leases in one partition; {engine.lease_grants:,} leases granted for "
          f"{rows:,} calls, {engine.lease_asks:,} requests in all ({engine.lease_seconds:.0f} s at the scheduler, "
          f"waits for a full cap included); {engine.partitions_run} partitions); the machine was busy "
          f"{MACHINE[-2]:.2f} and {MACHINE[-1]:.2f} cores of {os.cpu_count()}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--llm-rows", type=int, default=20_000)
    parser.add_argument("--latency", type=float, default=0.05, help="the test server's reply time (s)")
    options = parser.parse_args()
    watch_cluster_engines()
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        if options.rows:
            cpu(Path(tmp), options.rows)
        if options.llm_rows:
            llm(Path(tmp), options.llm_rows, latency=options.latency)
