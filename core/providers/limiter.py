"""A provider's own limits, on top of the run's max concurrency (docs/architecture.md, engine contract point 2).

- max requests in flight, and a *window* below it that a 429 halves (once per round of
  requests: the answers to requests already on the wire are not news) and that each
  success widens by 1/window, so concurrency creeps back up. The run's max concurrency
  stays the ceiling.
- a 429 also holds every new request of the provider until its Retry-After has passed:
  a rate limit slows the whole provider, not just the row that met it.
- requests per minute and tokens per minute as token buckets holding one second's worth,
  so a limit is spread over the minute instead of spent in a burst. Tokens are estimated
  before the call and corrected from the response's usage.

The engine drives it through `RowContext.call(make_call, limiter=gate)`: a `CallGate`
(one per call, carrying that call's token estimate) offers `acquire()` and `rate_limited(delay)`.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque


class TokenBucket:
    def __init__(self, per_minute: float):
        self.rate = per_minute / 60.0                 # refill per second
        self.capacity = max(1.0, self.rate)           # one second's worth
        self.level = self.capacity
        self.stamp = time.monotonic()

    def _refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_time(self, amount: float, now: float) -> float:
        """Seconds until `amount` may be taken (a request bigger than the bucket waits for a full one)."""
        self._refill(now)
        need = min(amount, self.capacity)
        return 0.0 if self.level >= need else (need - self.level) / self.rate

    def take(self, amount: float) -> None:
        self.level -= amount  # may go below zero: the next callers wait for the debt

    def adjust(self, amount: float) -> None:
        """Correct an earlier estimate: positive gives tokens back, negative takes more."""
        self.level = min(self.capacity, self.level + amount)


class ProviderLimiter:
    def __init__(self, *, ceiling: int, max_in_flight: int | None = None, rpm: int | None = None,
                 tpm: int | None = None):
        self.ceiling = max(1, min(ceiling, max_in_flight) if max_in_flight else ceiling)
        self.window = float(self.ceiling)
        self.in_flight = 0
        self.blocked_until = 0.0
        self.rate_limits = 0          # 429s met, for the run summary
        self.requests = TokenBucket(rpm) if rpm else None
        self.tokens = TokenBucket(tpm) if tpm else None
        self._last_cut = 0.0
        self._waiters: deque[asyncio.Future] = deque()

    def gate(self, tokens: int = 0) -> CallGate:
        return CallGate(self, tokens)

    # ---- entering and leaving ----------------------------------------------------------
    async def enter(self, tokens: int) -> float:
        """Wait for this provider's turn; returns when the request may go (monotonic time)."""
        while True:
            now = time.monotonic()
            if now < self.blocked_until:
                await asyncio.sleep(self.blocked_until - now)
                continue
            if self.in_flight >= int(self.window):
                await self._wait_for_room()
                continue
            wait = 0.0
            if self.requests is not None:
                wait = self.requests.wait_time(1, now)
            if self.tokens is not None and tokens:
                wait = max(wait, self.tokens.wait_time(tokens, now))
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            if self.requests is not None:
                self.requests.take(1)
            if self.tokens is not None:
                self.tokens.take(tokens)
            self.in_flight += 1
            return now

    def leave(self, succeeded: bool) -> None:
        self.in_flight -= 1
        if succeeded and self.window < self.ceiling:
            self.window = min(float(self.ceiling), self.window + 1.0 / self.window)
        self._wake()

    def settle(self, estimated: int, actual: int) -> None:
        """The response said how many tokens the call really used."""
        if self.tokens is not None and actual:
            self.tokens.adjust(estimated - actual)

    def rate_limited(self, delay: float, started_at: float) -> None:
        """A 429: hold the whole provider for `delay`, and halve the window once per round."""
        now = time.monotonic()
        self.rate_limits += 1
        self.blocked_until = max(self.blocked_until, now + delay)
        if started_at >= self._last_cut:  # sent after the last cut: this is news
            self.window = max(1.0, self.window / 2)
            self._last_cut = now

    # ---- waiting for room in the window ------------------------------------------------
    async def _wait_for_room(self) -> None:
        future = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self._wake()  # we were handed a turn we will not use: pass it on
            else:
                self._remove(future)
            raise

    def _remove(self, future: asyncio.Future) -> None:
        try:
            self._waiters.remove(future)
        except ValueError:
            pass

    def _wake(self) -> None:
        room = int(self.window) - self.in_flight
        while room > 0 and self._waiters:
            future = self._waiters.popleft()
            if not future.done():
                future.set_result(None)
                room -= 1


class CallGate:
    """One call's pass through the provider's limiter (what `RowContext.call` expects)."""

    __slots__ = ("limiter", "started_at", "tokens")

    def __init__(self, limiter: ProviderLimiter, tokens: int):
        self.limiter = limiter
        self.tokens = tokens
        self.started_at = 0.0

    def acquire(self) -> CallGate:
        return self

    async def __aenter__(self) -> CallGate:
        self.started_at = await self.limiter.enter(self.tokens)
        return self

    async def __aexit__(self, exc_type, exc, tb) -> None:
        self.limiter.leave(exc_type is None)

    def rate_limited(self, delay: float) -> None:
        self.limiter.rate_limited(delay, self.started_at)
