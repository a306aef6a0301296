"""Small helpers shared by the window, start-up, memory and loop-lag benchmarks (not a benchmark).

Nothing here imports Qt at module level: bench_startup must be able to time a bare interpreter.
"""

from __future__ import annotations

import itertools
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
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def gaps_ms(ticks: list[float], start: float = float("-inf"), end: float = float("inf")) -> list[float]:
    """Gaps between consecutive timer ticks (ms) that overlap [start, end]."""
    return [(b - a) * 1000 for a, b in itertools.pairwise(ticks) if b >= start and a <= end]


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


class Ticker:
    """A 10 ms precise QTimer that notes when it fires (its gaps are the event loop's lag).
    Needs a QApplication; Qt is imported when one is made."""

    def __init__(self, interval_ms: int = 10) -> None:
        from PySide6.QtCore import Qt, QTimer

        self.ticks: list[float] = []
        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.timeout.connect(lambda: self.ticks.append(time.perf_counter()))

    def start(self) -> None:
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()

    def gaps(self, start: float = float("-inf"), end: float = float("inf")) -> list[float]:
        return gaps_ms(self.ticks, start, end)


class GcWatch:
    """Notes every garbage collection (generation, start, end, thread): a full collection holds
    the GIL for as long as it scans every object, whichever thread triggered it."""

    def __init__(self) -> None:
        self.collections: list[tuple[int, float, float, str]] = []
        self._t0 = 0.0

    def _callback(self, phase: str, info: dict) -> None:
        import threading

        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            self.collections.append((info["generation"], self._t0, time.perf_counter(),
                                     "loop" if threading.current_thread() is threading.main_thread() else "worker"))

    def start(self) -> GcWatch:
        import gc

        gc.callbacks.append(self._callback)
        return self

    def stop(self) -> None:
        import gc

        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def describe(self, start: float = float("-inf"), end: float = float("inf"),
                 ticks: list[float] | None = None, over_ms: float = 50.0) -> str:
        """Full (generation 2) collections within [start, end]; with `ticks`, how many of the
        timer gaps longer than `over_ms` overlap one of them."""
        full = [(t0, t1, where) for gen, t0, t1, where in self.collections if gen == 2 and t1 >= start and t0 <= end]
        young = [(t1 - t0) for gen, t0, t1, _ in self.collections if gen < 2 and t1 >= start and t0 <= end]
        text = (f"{len(full)} full collections ({sum(t1 - t0 for t0, t1, _ in full) * 1000:.0f} ms, longest "
                f"{max((t1 - t0 for t0, t1, _ in full), default=0) * 1000:.0f} ms; in a worker thread: "
                f"{sum(w == 'worker' for _, _, w in full)}), {len(young)} young ({sum(young) * 1000:.0f} ms)")
        if full and start != float("-inf"):
            text += " [full at " + ", ".join(f"+{t0 - start:.2f} s ({(t1 - t0) * 1000:.0f} ms, {where})"
                                             for t0, t1, where in full[:6]) + (" ...]" if len(full) > 6 else "]")
        if ticks is not None:
            long_gaps = [(a, b) for a, b in itertools.pairwise(ticks)
                         if (b - a) * 1000 > over_ms and b >= start and a <= end]
            hit = sum(any(a <= t1 and b >= t0 for t0, t1, _ in full) for a, b in long_gaps)
            text += f"; timer gaps > {over_ms:.0f} ms: {len(long_gaps)}, of which {hit} overlap a full collection"
        return text


class Spans:
    """When named pieces of work ran: wrap a method (sync or async, on an instance or a class)
    and every call is noted as (start, end)."""

    def __init__(self) -> None:
        self.spans: dict[str, list[tuple[float, float]]] = {}

    def wrap(self, owner: object, attr: str, name: str | None = None) -> None:
        import functools
        import inspect

        original = getattr(owner, attr)
        spans = self.spans.setdefault(name or attr, [])
        if inspect.iscoroutinefunction(original):
            @functools.wraps(original)
            async def timed_async(*args, **kwargs):
                t = time.perf_counter()
                try:
                    return await original(*args, **kwargs)
                finally:
                    spans.append((t, time.perf_counter()))
            setattr(owner, attr, timed_async)
        else:
            @functools.wraps(original)
            def timed(*args, **kwargs):
                t = time.perf_counter()
                try:
                    return original(*args, **kwargs)
                finally:
                    spans.append((t, time.perf_counter()))
            setattr(owner, attr, timed)

    def describe(self, name: str, ticks: list[float] | None = None) -> str:
        spans = self.spans.get(name, [])
        if not spans:
            return f"{name}: not called"
        total = sum(b - a for a, b in spans)
        text = f"{name}: {len(spans)} call(s), {total * 1000:.0f} ms"
        if ticks is not None:
            gaps = [(b - a) * 1000 for a, b in itertools.pairwise(ticks)
                    if any(a <= s1 and b >= s0 for s0, s1 in spans)]
            text += f"; longest timer gap meanwhile {max(gaps, default=0):.0f} ms"
        return text
