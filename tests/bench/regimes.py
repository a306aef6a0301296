"""What the HTTP and model benchmarks share: the two regimes, the local server in its own
process, and a measurement of wall time and this process's CPU time.

Regimes (issue 8, item 7):
    cpu     50 ms replies, 100 in flight, 2,000 requests: the client's own CPU time decides
    remote  800 ms replies, 500 in flight, 3,000 requests: a remote API, many connections open

Every contender is measured in the same run, against the same server, interleaved (one run
of each, then again), and the best of the repeats is kept: the run least disturbed by the
rest of a shared machine.
"""

from __future__ import annotations

import gc
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/, for fake_openai


@dataclass(frozen=True)
class Regime:
    name: str
    latency: float   # seconds the server waits before answering
    in_flight: int   # requests at once
    requests: int

    @property
    def lower_bound(self) -> float:
        return self.requests * self.latency / self.in_flight

    def describe(self) -> str:
        return (f"{self.name}: {self.latency * 1000:.0f} ms replies, {self.in_flight} in flight, "
                f"{self.requests} requests (lower bound {self.lower_bound:.2f} s)")


REGIMES = {"cpu": Regime("cpu", 0.05, 100, 2000), "remote": Regime("remote", 0.8, 500, 3000)}


@dataclass
class Measure:
    wall: float  # seconds
    cpu: float   # seconds of this process's CPU time (all threads)

    def per_request_ms(self, requests: int) -> float:
        return self.cpu / requests * 1000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """tests/fake_openai.py in its own process (it would otherwise share this one's interpreter lock)."""

    def __init__(self, latency: float):
        port = free_port()
        self.process = subprocess.Popen([sys.executable, str(HERE.parent / "fake_openai.py"), "--port", str(port),
                                         "--latency", str(latency)], stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        self.process.stdout.readline()  # "listening on ..."
        self.url = f"http://127.0.0.1:{port}"
        self.base_url = self.url + "/v1"

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        self.process.wait()


async def measure(run: Callable[[], Awaitable[None]]) -> Measure:
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    await run()
    return Measure(time.perf_counter() - wall, time.process_time() - cpu)


async def compare(contenders: dict[str, Callable[[], Awaitable[None]]], repeat: int) -> dict[str, Measure]:
    """Each contender `repeat` times, interleaved; the best wall time and the least CPU time of each."""
    runs: dict[str, list[Measure]] = {label: [] for label in contenders}
    for _ in range(repeat):
        for label, run in contenders.items():
            runs[label].append(await measure(run))
    return {label: Measure(min(m.wall for m in ms), min(m.cpu for m in ms)) for label, ms in runs.items()}


def report(regime: Regime, results: dict[str, Measure], reference: str) -> None:
    ref = results[reference]
    print(f"  {'':52s} {'wall':>8s} {'x bound':>8s} {'x ref':>7s} {'CPU/request':>12s} {'x ref':>7s}")
    for label, m in results.items():
        print(f"  {label:52s} {m.wall:7.3f}s {m.wall / regime.lower_bound:7.2f}x {m.wall / ref.wall:6.2f}x "
              f"{m.per_request_ms(regime.requests):9.3f} ms {m.cpu / ref.cpu:6.2f}x")
