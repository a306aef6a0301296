"""Runs on a Dask cluster vs the single-process engine, the same command in the same run (issue 13, part 1).

    python tests/bench/bench_cluster.py [--rows 200000] [--llm-rows 20000]

1. CPU: a trusted Python step burning ~2 ms per row; `batchgrid-cli run` without and with
   `--cluster local:2` (start-up of the cluster included). Target on a 2-core machine: >= 1.7x.
2. LLM: one model step per row against the test server in its own process (50 ms replies) at a
   max concurrency of 100 over the cluster (`local:2`); the lower bound is rows x 50 ms / 100.
   Target: <= 1.15x the lower bound.
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
    t = time.perf_counter()
    for _ in range(20):
        exec(code, {"N": n})
    per = (time.perf_counter() - t) / 20
    return max(1000, int(n * ms / 1000 / per))


def run(args: list[str]) -> float:
    err = io.StringIO()
    t = time.perf_counter()
    with contextlib.redirect_stderr(err):
        code = main(["run", *args, "--quiet"])
    wall = time.perf_counter() - t
    if code != 0:
        raise SystemExit(f"run failed ({code}): {err.getvalue().strip()}")
    return wall


def cpu(folder: Path, rows: int) -> None:
    import pandas as pd

    n = calibrate()
    data = folder / "cpu.parquet"
    pd.DataFrame({"id": range(rows)}).to_parquet(data, index=False)
    pipeline = folder / "cpu.json"
    pipeline.write_text(json.dumps({"version": 1, "settings": {"max_concurrency": 8}, "steps": [
        {"type": "python", "code": BURN.replace("N", str(n)), "output": "burnt"}]}))
    common = [str(pipeline), str(data), "--trust", "--no-cache"]
    local = run([*common, "-o", str(folder / "local.parquet"), "--journal", str(folder / "j1.sqlite")])
    cluster = run([*common, "-o", str(folder / "cluster.parquet"), "--journal", str(folder / "j2.sqlite"),
                   "--cluster", "local:2"])
    print(f"CPU step (~2 ms/row, N={n}), {rows:,} rows: single process {local:.1f} s ({rows / local:,.0f} rows/s), "
          f"local:2 {cluster:.1f} s ({rows / cluster:,.0f} rows/s): {local / cluster:.2f}x throughput")


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
        local = run([*common, "-o", str(folder / "l1.parquet"), "--journal", str(folder / "j3.sqlite")])
        cluster = run([*common, "-o", str(folder / "l2.parquet"), "--journal", str(folder / "j4.sqlite"),
                       "--cluster", "local:2"])
    print(f"LLM, {rows:,} rows, {latency * 1000:.0f} ms replies, cap {cap} (lower bound {bound:.1f} s): "
          f"single process {local:.1f} s ({local / bound:.2f}x bound), local:2 {cluster:.1f} s ({cluster / bound:.2f}x bound)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--llm-rows", type=int, default=20_000)
    options = parser.parse_args()
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        if options.rows:
            cpu(Path(tmp), options.rows)
        if options.llm_rows:
            llm(Path(tmp), options.llm_rows)
