"""A lean HTTP/1.1 keep-alive transport under the openai SDK, for plain-http model servers.

Why: a local server (vLLM, Ollama, LM Studio, llama.cpp) answers in milliseconds, so the
client's own CPU time per request decides how many rows a second a run gets. httpx's
default pool spends about half a millisecond per request choosing and checking
connections (it looks at every pooled connection each time); at 100 rows in flight that
alone caps a run near 2,000 requests a second of client time. This transport keeps idle
connections in a list per host and does nothing else: measured, the SDK's requests cost
less than half the CPU.

It speaks only what OpenAI-compatible servers answer: responses with Content-Length,
chunked responses (SSE streams, read as they arrive), or a body that ends with the
connection. It is used for http:// base URLs with no proxy configured for them; https
and proxies keep the SDK's own transport (remote APIs answer in hundreds of milliseconds,
so a client's microseconds do not matter there).

Stop: a cancelled request closes its connection at once, so the server sees the client
leave and stops working (and billing) for it.
"""

from __future__ import annotations

import asyncio
import urllib.request
from collections import defaultdict

from batchgrid.core.util.http import http

MAX_IDLE = 512          # idle connections kept per host
HEAD_LIMIT = 1 << 16    # longest response head accepted


def suits(base_url: str) -> bool:
    """Plain http, and no proxy configured for it."""
    if not base_url.startswith("http://"):
        return False
    host = base_url[len("http://"):].split("/", 1)[0].rsplit(":", 1)[0]
    return "http" not in urllib.request.getproxies() or urllib.request.proxy_bypass(host)


class _Connection:
    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer

    def usable(self) -> bool:
        return not self.reader.at_eof() and not self.writer.is_closing()

    def close(self) -> None:
        self.writer.close()


class KeepAliveTransport(http.AsyncBaseTransport):
    def __init__(self):
        self._idle: dict[tuple[str, int], list[_Connection]] = defaultdict(list)

    async def handle_async_request(self, request):
        timeouts = request.extensions.get("timeout") or {}
        url = request.url
        key = (url.host, url.port or 80)
        try:
            body = request.content
        except http.RequestNotRead:
            body = await request.aread()
        lines = [b"%s %s HTTP/1.1" % (request.method.encode(), url.raw_path)]
        # No compression asked for: local servers rarely compress and we would have to undo it.
        lines += [k + b": " + v for k, v in request.headers.raw if k.lower() != b"accept-encoding"]
        message = b"\r\n".join(lines) + b"\r\n\r\n" + body
        for attempt in (1, 2):
            conn, reused = await self._connection(key, timeouts.get("connect"), request)
            try:
                conn.writer.write(message)
                async with asyncio.timeout(timeouts.get("read")):
                    head = await conn.reader.readuntil(b"\r\n\r\n")
                break
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                conn.close()
                if reused and attempt == 1 and not getattr(exc, "partial", b""):
                    continue  # an idle connection the server had closed: the request never arrived
                raise http.RemoteProtocolError(f"the server closed the connection ({exc or type(exc).__name__})",
                                               request=request) from exc
            except TimeoutError:
                conn.close()
                raise http.ReadTimeout("no answer in time", request=request) from None
            except BaseException:  # cancelled (stop) or broken: never reuse a half-used connection
                conn.close()
                raise
        status, headers, length, chunked, keep = _parse_head(head, request)
        if chunked:
            stream = _ChunkedStream(self, key, conn, keep, timeouts.get("read"), request)
            return http.Response(status, headers=headers, stream=stream, request=request)
        try:
            async with asyncio.timeout(timeouts.get("read")):
                if length is not None:
                    content = await conn.reader.readexactly(length)
                else:
                    content, keep = await conn.reader.read(), False
        except TimeoutError:
            conn.close()
            raise http.ReadTimeout("the answer stopped arriving", request=request) from None
        except BaseException:
            conn.close()
            raise
        self.release(key, conn, keep)
        return http.Response(status, headers=headers, content=content, request=request)

    async def _connection(self, key: tuple[str, int], timeout: float | None, request) -> tuple[_Connection, bool]:
        idle = self._idle[key]
        while idle:
            conn = idle.pop()
            if conn.usable():
                return conn, True
            conn.close()
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(*key, limit=HEAD_LIMIT)
        except TimeoutError:
            raise http.ConnectTimeout(f"could not connect to {key[0]}:{key[1]} in time", request=request) from None
        except OSError as exc:
            raise http.ConnectError(str(exc), request=request) from exc
        return _Connection(reader, writer), False

    def release(self, key: tuple[str, int], conn: _Connection, keep: bool) -> None:
        idle = self._idle[key]
        if keep and conn.usable() and len(idle) < MAX_IDLE:
            idle.append(conn)
        else:
            conn.close()

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()


def _parse_head(head: bytes, request):
    lines = head.split(b"\r\n")
    try:
        version, code = lines[0].split(b" ", 2)[:2]
        status = int(code)
    except ValueError:
        raise http.RemoteProtocolError(f"not an HTTP answer: {lines[0][:80]!r}", request=request) from None
    headers, length, chunked, keep = [], None, False, version == b"HTTP/1.1"
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(b":")
        value = value.strip()
        headers.append((name, value))
        lower = name.lower()
        if lower == b"content-length":
            length = int(value)
        elif lower == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif lower == b"connection":
            keep = value.lower() == b"keep-alive" or (keep and value.lower() != b"close")
    if status in (204, 304) or request.method == "HEAD":
        length = 0
    return status, headers, length, chunked, keep


class _ChunkedStream(http.AsyncByteStream):
    """A chunked body read as it arrives (SSE); the connection goes back to the pool at the end,
    or is closed if the reader stops early (a stopped row)."""

    def __init__(self, transport: KeepAliveTransport, key, conn: _Connection, keep: bool, timeout, request):
        self._transport, self._key, self._conn, self._keep = transport, key, conn, keep
        self._timeout, self._request = timeout, request
        self._complete = False  # read to its end: the connection may serve another request

    async def __aiter__(self):
        reader = self._conn.reader
        try:
            while True:
                async with asyncio.timeout(self._timeout):
                    size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
                    data = await reader.readexactly(size + 2)
                if size == 0:
                    self._complete = True
                    return
                yield data[:-2]
        except TimeoutError:
            raise http.ReadTimeout("the stream stopped arriving", request=self._request) from None
        except (asyncio.IncompleteReadError, ConnectionError, ValueError) as exc:
            raise http.RemoteProtocolError(f"the stream broke off ({exc or type(exc).__name__})",
                                           request=self._request) from exc
        finally:
            if not self._complete:
                await self.aclose()

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self._complete:
            self._transport.release(self._key, conn, self._keep)
        else:
            conn.close()  # stopped early: the server sees the client leave
