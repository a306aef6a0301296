"""The HTTP client library core uses: httpx2, and the one place its clients are built.

Why httpx2: the openai SDK is built on it, so the HTTP step and the model steps share one
library, one set of error and timeout classes, and one way of tuning a pool. It is
well kept (the successor of httpx), streams response bodies as they arrive whatever their
framing (chunked, or ended by the connection's close), and its pool is cheap at a hundred
requests in flight (measured: 2,000 requests at 100 in flight cost 17 s of client CPU through
httpx 0.28, 1.7 s through httpx2). Imported directly, never found through the SDK's classes,
so importing this module does not import openai.

A POST is never sent twice by this layer: httpx2 re-sends nothing on its own (its transport
retries only failed connection attempts, and those default to 0), and the SDK's retries are
off (client.py). A request that fails is one failed attempt of the engine's, which decides.
"""

from __future__ import annotations

import httpx2 as http

__all__ = ["MAX_IDLE", "http", "pooled_client"]


MAX_IDLE = 100  # idle connections kept alive, at most (see pooled_client)


def pooled_client(*, timeout: http.Timeout | float, in_flight: int, follow_redirects: bool = False) -> http.AsyncClient:
    """A client for one run with up to `in_flight` requests at once.

    No cap on connections: the engine's budget and the provider's limiter decide how many
    requests are in flight, and a pool cap would queue requests where they cannot be seen.
    Idle connections kept: as many as requests in flight, up to MAX_IDLE. Fewer would reopen
    connections after every wave of answers; more costs CPU, because httpx2's pool checks
    every idle connection's socket each time a request starts or ends (measured, 3,000
    requests at 500 in flight: 2.0 ms of CPU per request keeping 500, 1.6 ms keeping 100).
    """
    # Idle connections expire after httpx2's 5 s, before most servers close theirs (a request sent
    # on a connection the server is closing that very moment would fail).
    limits = http.Limits(max_connections=None, max_keepalive_connections=max(1, min(in_flight, MAX_IDLE)))
    # `limits`, not a transport of our own: the client then still honours the proxy settings
    # of the environment (HTTPS_PROXY, NO_PROXY), and its transports keep retries=0.
    return http.AsyncClient(limits=limits, timeout=timeout, follow_redirects=follow_redirects)
