"""A provider's own limits, on top of the run's max concurrency (docs/architecture.md, engine contract point 2).

- max requests in flight, and a *window* below it that a rate limit halves (once per round of
  requests: the answers to requests already on the wire are not news) and that each
  success widens by 1/window, so concurrency creeps back up. The run's max concurrency
  stays the ceiling.
- requests per minute and tokens per minute as token buckets holding one second's worth,
  so a limit is spread over the minute instead of spent in a burst. Tokens are estimated
  before the call and corrected from the response's usage.
- 429s. A scattered 429 (most of the latest answers were not 429s: a busy server shedding a
  few requests) delays only its own row, by the server's Retry-After. When 429s are the rule
  (half or more of the latest answers) the provider has met a real rate limit: every new
  request waits until the server's Retry-After has passed, and the limiter learns the rate
  the server lets through, from the requests that succeeded in its window (the time from the
  first request to the Retry-After's end, measured at the first limit met) and from then on
  sends at 98% of it, one request at a time, so that a long run stays just under the limit
  instead of bursting into it again at the start of every window. The pace grows 10% after each
  window without a 429 until the limit is met again, 3% from then on; once it is learnt, every
  429 that is news sets it again from what went through in the latest window, and only the
  refused row waits (the first limit met holds every row: the pace is not known yet).

The engine drives it through `RowContext.call(make_call, limiter=gate)`: a `CallGate`
(one per call, carrying that call's token estimate) offers `acquire()` and `rate_limited(wait)`.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

RECENT = 32          # answers the limiter remembers to tell a rate limit from scattered 429s
PACE_SHARE = 0.98    # of the rate the server was seen to let through
PACE_RAISE = 1.03    # the pace grows by this after every window without a 429
FIRST_RAISE = 1.10   # ... and by this until a second limit met confirms it (the first guess of
                     # the window is long by up to a second when Retry-After is in whole seconds)
MIN_LEARNT = 4       # successes in the server's window needed to learn a pace from them


class TokenBucket:
    def __init__(self, per_minute: float, burst: float = 1.0):
        self.rate = per_minute / 60.0                 # refill per second
        self.capacity = max(1.0, self.rate * burst)   # `burst` seconds' worth (at least one)
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
        self.recent: deque[bool] = deque(maxlen=RECENT)  # the latest answers: True for a 429
        self.successes: deque[float] = deque(maxlen=100_000)  # when the latest successful requests were sent
        self.first_sent = 0.0
        self.limit_window: float | None = None  # the server's rate-limit window, once learnt (seconds)
        self.pace: TokenBucket | None = None    # the learnt rate, one request at a time
        self._raised = 0.0
        self._confirmed = False

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
            if self.pace is not None:
                if self.limit_window and now - self._raised >= self.limit_window:
                    self.pace.rate *= PACE_RAISE if self._confirmed else FIRST_RAISE  # a window without a 429
                    self._raised = now
                wait = max(wait, self.pace.wait_time(1, now))
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            if self.requests is not None:
                self.requests.take(1)
            if self.pace is not None:
                self.pace.take(1)
            if not self.first_sent:
                self.first_sent = now
            if self.tokens is not None:
                self.tokens.take(tokens)
            self.in_flight += 1
            return now

    def leave(self, succeeded: bool, started_at: float = 0.0) -> None:
        self.in_flight -= 1
        if succeeded:
            self.recent.append(False)
            self.successes.append(started_at)
            if self.window < self.ceiling:
                self.window = min(float(self.ceiling), self.window + 1.0 / self.window)
        self._wake()

    def settle(self, estimated: int, actual: int) -> None:
        """The response said how many tokens the call really used."""
        if self.tokens is not None and actual:
            self.tokens.adjust(estimated - actual)

    def rate_limited(self, wait: float, started_at: float) -> None:
        """A 429, the server asking to wait `wait` seconds (its Retry-After, capped by the engine).

        Scattered among successes it is the row's own business (the row waits). When 429s are
        the rule, a rate limit: hold every new request for `wait`, halve the window and learn
        the pace, once per round (a 429 to a request sent before the last cut is no news)."""
        now = time.monotonic()
        self.rate_limits += 1
        self.recent.append(True)
        if started_at < self._last_cut:
            return
        if self.pace is None and sum(self.recent) * 2 < len(self.recent):
            return
        if self.pace is None:  # the first limit met: hold everyone, the pace is not known yet
            self.blocked_until = max(self.blocked_until, now + wait)
        # Once a pace is known, meeting the limit again means the pace grew a little past it:
        # set it again from the latest window and let only the refused row wait. Holding every
        # row for a Retry-After rounded up to whole seconds would idle a short window's budget.
        self.window = max(1.0, self.window / 2)
        self._last_cut = now
        self._learn_pace(started_at or now, wait)

    def _learn_pace(self, sent: float, wait: float) -> None:
        """The rate the server lets through: the requests that succeeded in its window (which
        ends when its Retry-After does, counted from when the refused request was sent), over
        the window's length."""
        if self.limit_window is None:  # the first limit met: everything so far was in its window
            if not self.first_sent:
                return
            self.limit_window = max(0.01, sent + wait - self.first_sent)
            start = self.first_sent
        else:  # met again: what went through in the latest window
            start = sent - self.limit_window
            self._confirmed = True
        let_through = sum(1 for t in self.successes if start <= t <= sent)
        if let_through < MIN_LEARNT:
            return
        rate = PACE_SHARE * let_through / self.limit_window
        self.pace = TokenBucket(rate * 60.0, burst=0.0)
        self.pace.level = 0.0  # the first request after the hold waits its turn too
        self._raised = time.monotonic()

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
        self.limiter.leave(exc_type is None, self.started_at)

    def rate_limited(self, wait: float) -> None:
        self.limiter.rate_limited(wait, self.started_at)
