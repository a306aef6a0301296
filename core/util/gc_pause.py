"""Pausing Python's garbage collector while big work runs beside a live event loop.

A full collection scans every object the app holds (a big sheet's results are millions)
and stops the window for hundreds of milliseconds; a burst of allocations (a run, a sort
of a million rows) triggers several. While paused, only the cheap young generations are
collected, on request. Pauses nest: the collector comes back when the last one ends.
"""

from __future__ import annotations

import gc
from contextlib import asynccontextmanager

_depth = 0
_was_enabled = True


def pause() -> None:
    global _depth, _was_enabled
    if _depth == 0:
        _was_enabled = gc.isenabled()
        gc.disable()
    _depth += 1


def resume() -> None:
    global _depth
    _depth = max(0, _depth - 1)
    if _depth == 0 and _was_enabled:
        gc.enable()


def keep_long_lived() -> None:
    """What is alive now (a sheet's results, say) stays: move it out of the collector's way, so
    later collections, young or full, do not scan it again. The next run unfreezes it."""
    gc.freeze()


def collect_young() -> None:
    """Collect the young generations: a few milliseconds, whatever the app holds."""
    gc.collect(1)


@asynccontextmanager
async def paused():
    pause()
    try:
        yield
    finally:
        resume()
