"""Test-only steps that make the engine's behaviour observable: calls counted while in flight."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from typing import Any, Mapping

from batchgrid.core.util.errors import RetryableError, StepError
from batchgrid.core.steps.base import FLOAT, OUTPUT, SOURCE, Param, Step, register, REGISTRY


class CallMeter:
    """Counts external calls in flight (and the peak) across the whole run."""

    def __init__(self):
        self.now = 0
        self.peak = 0
        self.total = 0
        self.finished = 0
        self.cancelled = 0
        self.lock = threading.Lock()

    def enter(self):
        with self.lock:
            self.now += 1
            self.total += 1
            self.peak = max(self.peak, self.now)

    def leave(self, cancelled=False):
        with self.lock:
            self.now -= 1
            if cancelled:
                self.cancelled += 1
            else:
                self.finished += 1


METER = CallMeter()
BEHAVIOUR: dict[str, Any] = {}  # per-test knobs: failures by value, flaky counts...


def _register(cls):
    if cls.type not in REGISTRY:
        register(cls)
    return REGISTRY[cls.type]


class SlowCall(Step):
    """Awaits a simulated external call of `seconds`, counted by METER. Fails on "boom"."""

    type = "test_slow_call"
    title = "Slow call (test)"
    group = "Web"
    description = "test step"
    external = True
    params = (
        Param("source", SOURCE, "", required=True),
        Param("seconds", FLOAT, 0.01),
        Param("jitter", FLOAT, 0.0),
        Param("output", OUTPUT, "called"),
    )

    async def run(self, row: Mapping[str, Any], ctx) -> dict[str, Any]:
        value = self.source_text(row)
        if value == "boom":
            raise StepError(f"cannot process {value!r}")

        async def call():
            METER.enter()
            try:
                delay = self.config["seconds"] + random.uniform(0, self.config["jitter"])
                await asyncio.sleep(delay)
                flaky = BEHAVIOUR.get("flaky", {})
                if flaky.get(value, 0) > 0:
                    flaky[value] -= 1
                    raise RetryableError("HTTP 429 Too Many Requests", retry_after=BEHAVIOUR.get("retry_after"),
                                         rate_limited=BEHAVIOUR.get("rate_limited", True))
            except asyncio.CancelledError:
                METER.leave(cancelled=True)
                raise
            METER.leave()
            return f"called:{value}"

        return {self.output_name(): await ctx.call(call)}


SlowCall = _register(SlowCall)


class BlockingSleep(Step):
    type = "test_blocking_sleep"
    title = "Blocking sleep (test)"
    group = "Code"
    description = "test step"
    blocking = True
    params = (Param("source", SOURCE, "", required=True), Param("output", OUTPUT, "slept_in"))

    def apply(self, row):
        time.sleep(0.05)
        return {self.output_name(): threading.current_thread().name}


BlockingSleep = _register(BlockingSleep)


# Binding that blocks in a worker thread until the test opens the gate, as reading a large
# lookup file from a slow disk does. `BIND_ENTERED` is set once the thread is blocked.
BIND_GATE = threading.Event()
BIND_ENTERED = threading.Event()


def _read_slowly() -> None:
    BIND_ENTERED.set()
    BIND_GATE.wait()


class SlowBind(Step):
    type = "test_slow_bind"
    title = "Slow preparation (test)"
    group = "Data"
    description = "test step"
    params = (Param("output", OUTPUT, "bound"),)

    async def bind(self, resources):
        await asyncio.to_thread(_read_slowly)
        return await super().bind(resources)

    def apply(self, row):
        return {self.output_name(): True}


SlowBind = _register(SlowBind)


async def wait_until(condition, timeout: float = 5.0) -> bool:
    """Poll `condition()` from the test's loop until it holds; False on timeout."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.001)
    return True
