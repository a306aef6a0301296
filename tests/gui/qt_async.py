"""Running async window scenarios on a qasync loop, and waiting for Qt signals without a nested loop."""

from __future__ import annotations

import asyncio


def run(loop, coro, timeout: float = 60):
    """Run a scenario on the qasync loop; fail (not hang) after `timeout` seconds."""
    return loop.run_until_complete(asyncio.wait_for(coro, timeout))


def next_signal(signal) -> asyncio.Future:
    """A future with the arguments of the next emission of `signal` (connect before acting)."""
    future = asyncio.get_running_loop().create_future()

    def emitted(*args):
        if not future.done():
            future.set_result(args)

    def disconnect(_future):
        try:
            signal.disconnect(emitted)
        except RuntimeError:  # the sender is gone already
            pass

    signal.connect(emitted)
    future.add_done_callback(disconnect)
    return future


async def run_to_end(window, mode: str = "all") -> tuple[str, str]:
    """Start a run as the Run button does and wait for its end: (reason, message)."""
    finished = next_signal(window.runFinished)
    assert await window.begin_run(mode)
    return await finished
