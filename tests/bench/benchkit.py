"""Small helpers shared by the window, start-up, memory and loop-lag benchmarks (not a benchmark).

Nothing here imports Qt at module level: bench_startup must be able to time a bare interpreter.
"""

from __future__ import annotations

import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# The 3-step text pipeline every front-end benchmark runs (the same as bench_engine's).
TEXT_PIPELINE = {"version": 1, "settings": {"max_concurrency": 8}, "steps": [
    {"type": "trim", "source": "review", "output": "clean"},
    {"type": "change_case", "source": "clean", "case": "upper", "output": "shout"},
    {"type": "template", "template": "{id}: {shout} ({stars}/5)", "output": "line"},
]}
WORDS = "great bad terrible fine excellent slow fast broken lovely awful okay price quality".split()


def make_sheet(path: Path, n: int, seed: int = 7) -> None:
    """n rows x 5 columns (id, review, stars, city, amount), written as parquet or csv."""
    import pandas as pd

    rng = random.Random(seed)
    frame = pd.DataFrame({
        "id": range(n),
        "review": ["  " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 14))) + "  " for _ in range(n)],
        "stars": [rng.randint(1, 5) for _ in range(n)],
        "city": [rng.choice(["Oslo", "Lima", "Pune", "Kyiv", "Accra"]) for _ in range(n)],
        "amount": [round(rng.random() * 1000, 2) for _ in range(n)],
    })
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def gaps_ms(ticks: list[float], start: float = float("-inf"), end: float = float("inf")) -> list[float]:
    """Gaps between consecutive timer ticks (ms) that overlap [start, end]."""
    return [(b - a) * 1000 for a, b in zip(ticks, ticks[1:], strict=False) if b >= start and a <= end]


def describe_gaps(gaps: list[float]) -> str:
    if not gaps:
        return "no ticks"
    return (f"{len(gaps):,} gaps: median {median(gaps):.1f} ms, p99 {percentile(gaps, 0.99):.1f} ms, "
            f"max {max(gaps):.1f} ms")


class Load:
    """How busy the machine was while a benchmark ran (it is shared): the load average at the
    start and end, and the CPU time other processes used meanwhile (in cores)."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.load0 = os.getloadavg()
        self.cpu0 = self._cpu()

    @staticmethod
    def _cpu() -> tuple[float, float]:
        """(busy seconds of the whole machine, this process's CPU seconds incl. children)."""
        with open("/proc/stat") as f:
            fields = [float(x) for x in f.readline().split()[1:]]
        hz = os.sysconf("SC_CLK_TCK")
        busy = (sum(fields[:8]) - fields[3] - fields[4]) / hz  # all but idle and iowait
        t = os.times()
        return busy, t.user + t.system + t.children_user + t.children_system

    def line(self) -> str:
        wall = time.perf_counter() - self.t0
        busy1, own1 = self._cpu()
        others = max(0.0, (busy1 - self.cpu0[0]) - (own1 - self.cpu0[1])) / wall if wall > 0 else 0.0
        load1 = os.getloadavg()
        return (f"machine: {os.cpu_count()} cores; load average {self.load0[0]:.2f} at the start, {load1[0]:.2f} at "
                f"the end; other processes used {others:.2f} cores on average over {wall:.0f} s")


def python_line() -> str:
    return f"Python {platform.python_version()} ({sys.executable})"
