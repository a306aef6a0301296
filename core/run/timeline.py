"""A run over time, as numbers for the run chart: rows finished per second, each finished row's
latency, and the cost so far against the cost projected for the whole run.

Fed by the run's progress (a few samples a second) and its row events (one float each); every
series is worked out when a chart asks for it, so feeding stays O(1) per event.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass

import numpy

from . import events as ev
from .summary import histogram

RATE_WINDOW = 1.0     # seconds: rows per second is measured over the last second
MAX_SAMPLES = 4000    # past this, every other sample is dropped (a long run keeps its shape)


@dataclass
class Point:
    seconds: float   # since the run started
    finished: int    # rows finished (done, failed or stopped)
    cost: float


class RunTimeline:
    def __init__(self) -> None:
        self.samples: list[Point] = []
        self.latencies = array("d")
        self.selected = 0

    def start(self, selected: int) -> None:
        """A new run of `selected` rows: forget the last one."""
        self.samples = [Point(0.0, 0, 0.0)]
        self.latencies = array("d")
        self.selected = selected

    def sample(self, seconds: float, finished: int, cost: float) -> None:
        """The run's progress now (from `Progress`: elapsed, finished, cost)."""
        if self.samples and seconds <= self.samples[-1].seconds:
            self.samples[-1] = Point(self.samples[-1].seconds, finished, cost)
            return
        self.samples.append(Point(seconds, finished, cost))
        if len(self.samples) > MAX_SAMPLES:
            self.samples = self.samples[:1] + self.samples[1:-1:2] + self.samples[-1:]

    def on_event(self, event: object) -> None:
        """A run listener: each finished row's latency (stopped rows have none worth drawing)."""
        kind = type(event)
        if kind is ev.RowDone or kind is ev.RowFailed:
            self.latencies.append(event.result.latency)  # type: ignore[attr-defined]

    # ---- series ------------------------------------------------------------------------------
    def rates(self) -> tuple[list[float], list[float]]:
        """(seconds, rows per second over the second before each sample)."""
        if len(self.samples) < 2:
            return [], []
        t = numpy.array([p.seconds for p in self.samples])
        f = numpy.array([p.finished for p in self.samples], dtype=float)
        back = numpy.searchsorted(t, t - RATE_WINDOW, side="right") - 1
        back = numpy.clip(back, 0, None)
        span = t - t[back]
        with numpy.errstate(invalid="ignore", divide="ignore"):
            rate = numpy.where(span > 0, (f - f[back]) / span, 0.0)
        return t[1:].tolist(), rate[1:].tolist()

    def latency_histogram(self) -> tuple[list[float], list[int]]:
        """(edges in seconds, rows per bin)."""
        return histogram(numpy.frombuffer(self.latencies, dtype=numpy.float64) if self.latencies else numpy.zeros(0))

    def latency_quantiles(self) -> tuple[float, float, float, float] | None:
        """(fastest, median, 95th percentile, slowest) in seconds; None before any row finished."""
        if not self.latencies:
            return None
        lo, median, p95, hi = numpy.percentile(numpy.frombuffer(self.latencies, dtype=numpy.float64), [0, 50, 95, 100])
        return float(lo), float(median), float(p95), float(hi)

    def costs(self) -> tuple[list[int], list[float]]:
        """(rows finished, cost so far) at each sample."""
        return [p.finished for p in self.samples], [p.cost for p in self.samples]

    def projected_cost(self) -> float:
        """The cost so far scaled to every row of the run (as the run bar says it), 0 before any row."""
        last = self.samples[-1] if self.samples else None
        if last is None or last.finished <= 0:
            return 0.0
        return last.cost * max(self.selected, last.finished) / last.finished
