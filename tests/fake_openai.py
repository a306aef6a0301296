"""An OpenAI-compatible HTTP server for tests: real sockets on 127.0.0.1, configurable, counted.

Start and stop
--------------
    server = FakeOpenAI().start()    # a background thread with its own event loop, random port
    server.url        # "http://127.0.0.1:PORT"      (plain HTTP tests: /slow, /echo)
    server.base_url   # "http://127.0.0.1:PORT/v1"   (the openai SDK's base_url)
    server.configure(latency=0.05, rate_429=0.2)
    ...
    server.stop()

or `with FakeOpenAI() as server: ...`. The `fake_openai` fixture in tests/conftest.py gives
each test a fresh, started server. `python tests/fake_openai.py --port 8765` runs one in
the foreground (for benchmarks in another process); it is then configured and read
through the control endpoints below.

Configuration: `server.configure(**options)` (unknown names raise); `server.reset()`
restores the defaults and zeroes the counts.

    latency            seconds every request waits before its answer (default 0)
    latency_by_prompt  {substring: seconds}: a prompt containing the substring waits this long instead
                       (a slow row)
    rate_429           fraction of requests answered 429 at once (default 0)
    retry_after        Retry-After header on those 429s, in seconds (default 0.05; None sends none)
    retry_after_ms     when set, a retry-after-ms header is sent too
    ratelimit_reset    when set (e.g. "1s", "250ms"), an x-ratelimit-reset-requests header too
    rate_500           fraction of requests answered 500 at once (default 0)
    script             {prompt substring: [status, ...]}: the first requests whose prompt contains
                       the substring get these statuses in order (429 with Retry-After), then
                       normal answers. Deterministic retries.
    api_key            when set, /v1/* answers 401 unless "Authorization: Bearer <api_key>"
                       (or "api-key: <api_key>", as Azure sends it)
    models             model names that exist; None (default) accepts any model. Others get 404
                       with code "model_not_found".
    reply              callable(prompt, request_json) -> str, replacing the default answer
    stream_delay       seconds between streamed chunks (default 0)
    cut_stream         {prompt substring: n}: the first n streams for a matching prompt break off
                       after their first word (the connection is closed)
    stream_close       True: streams are sent as llama.cpp-style servers send them: "Connection: close",
                       no Content-Length, no chunking; the body ends when the server closes the
                       connection (default False: chunked, the connection kept)
    drop_after_read    {prompt substring: n}: the first n requests whose prompt contains the substring
                       are read in full, then the connection is closed with no answer (counted in
                       `requests` and `dropped`): a server that crashed or restarted mid-request
    embedding_dim      length of embedding vectors (default 64; a request's `dimensions` wins unless
                       ignore_dimensions)
    seed               seed of the random faults (default 0)

What real servers do (llama.cpp's llama-server, llama-cpp-python, the engines under LM Studio
and Ollama), each off by default:
    slots              N: the server works on at most N chat/embeddings requests at once (llama.cpp's
                       --parallel); the rest wait in its queue, counted in `queued`/`peak_queued`
    hold               True: every counted request waits (received, counted in in_flight) until hold
                       is set back to False: an event-driven "freeze" for crash and stop tests
    context_size       N tokens (words): a chat prompt longer than N is refused as llama.cpp does
                       (400, type "exceed_context_size_error", with n_prompt_tokens and n_ctx), or, with
                       context_overflow="empty_stream" and "stream": true, answered as llama-cpp-python
                       does: HTTP 200, a role chunk, no content, no finish reason, then [DONE].
                       An answer is also cut (finish_reason "length") where the context ends.
                       GET /props then reports it (llama.cpp: default_generation_settings.n_ctx).
    context_overflow   "error" (default) or "empty_stream" (see context_size)
    empty_stream       {prompt substring: n}: the first n streamed answers for a matching prompt are
                       empty 200 streams (role chunk, no content, no finish reason, [DONE], a clean end)
    stall_stream       {prompt substring: seconds}: streams for a matching prompt stop sending for this
                       long after their first word (a server hanging mid-answer)
    ignores_max_completion_tokens  True: `max_completion_tokens` is ignored, only `max_tokens` limits the
                       answer (llama-cpp-python)
    rate_limit         (requests, seconds): a sliding-window limit over chat/embeddings requests; a request
                       over it is answered 429 at once with the time until the window has room, as
                       retry_after_style says (not counted against the window)
    retry_after_style  "seconds" (Retry-After: 2), "ms" (retry-after-ms), "date" (Retry-After as an HTTP
                       date), "epoch" (x-ratelimit-reset: a Unix time, as GitHub sends it) or "none"
    refuse_json_schema True: response_format json_schema is answered 500 "Input should be 'text' or
                       'json_object'" (llama-cpp-python); json_object still works
    embeddings         "on" (default); "501": 501 "This server does not support embeddings" (llama.cpp
                       started without --embeddings); "500": 500 "Llama model must be created with
                       embedding=True" (llama-cpp-python)
    ignore_dimensions  True: `dimensions` is ignored, vectors are embedding_dim long
A restart: `server.go_down()` stops listening and drops every connection (requests in flight get
no answer; new connections are refused); `server.come_back()` listens again on the same port.

Endpoints
---------
    POST /v1/chat/completions   "prompt" = the last user message's text. Answer:
                                - `reply(prompt, request)` when configured;
                                - with response_format json_schema: an object with every property
                                  of the schema: strings = the prompt, numbers/integers = its word
                                  count, booleans = word count is even, arrays = its words (or
                                  [first choice] for an array of enums), enums = the first choice;
                                - with response_format json_object: {"echo": prompt};
                                - otherwise "echo: <prompt>".
                                "stream": true answers as SSE: one chunk per word, then a usage
                                chunk when stream_options.include_usage, then [DONE].
                                usage: prompt_tokens = words in all messages, completion_tokens
                                = words in the answer.
    POST /v1/embeddings         input: a string or a list of strings. Vectors are a hashed bag of
                                words, L2-normalised: texts sharing words are similar.
    Azure paths (/openai/deployments/{name}/chat/completions|embeddings) are served as the
    /v1 ones, with the deployment name as the model.
    GET  /v1/models             the configured models (or a few defaults).
    GET  /slow?ms=N             waits N ms (plus the latency), answers {"slept_ms": N}.
    ANY  /echo                  answers JSON {method, path, query, headers, body, json}; `?status=N`
                                sets the answer's status, `?ms=N` waits first.
    GET  /_stats  POST /_config  POST /_reset   control endpoints (not counted).

Batches (OpenAI's Batch API; Azure's /openai/files and /openai/batches are served as these)
-------
    POST   /v1/files                  multipart/form-data: file, purpose ("batch"...). Answers the file object
                                      {id "file-...", object, bytes, created_at, filename, purpose, status}.
    GET    /v1/files                  the files; GET /v1/files/{id}: one; GET /v1/files/{id}/content: its bytes;
    DELETE /v1/files/{id}             {id, object, deleted: true}. An unknown id: 404 "No such File object".
    POST   /v1/batches                {input_file_id, endpoint, completion_window, metadata}: endpoint
                                      /v1/chat/completions or /v1/embeddings (Azure's "/chat/completions" too),
                                      completion_window "24h", the file uploaded with purpose "batch" (else 400;
                                      an unknown file 404). Counted in `batches_created`.
    GET    /v1/batches/{id}           the batch: id, status, request_counts {total, completed, failed},
                                      output_file_id, error_file_id, errors, created_at, in_progress_at,
                                      finalizing_at, completed_at, failed_at, expired_at, cancelling_at,
                                      cancelled_at, expires_at, metadata. An unknown id: 404.
    POST   /v1/batches/{id}/cancel    status cancelling (then cancelled at the next stage); a finished batch: 400.
    GET    /v1/batches?limit=&after=  newest first, as OpenAI pages them (has_more, first_id, last_id).
A batch moves validating -> in_progress -> finalizing -> completed, or -> failed (validation), -> expired, or
cancelling -> cancelled, one stage per `server.advance_batches(lines=None)` (in_progress runs `lines` more of
its requests per advance, default batch_lines_per_stage, else all; it moves to finalizing once all have run).
`server.finish_batches()` advances until every batch is done; `server.expire_batches()` expires every unfinished
batch now; `server.batches` lists the batch objects; `server.file_content(id)` reads a file.
Validation (the first stage) fails the batch (status failed, `errors.data` = [{code, message, line}]) for a line
that is not JSON, lacks custom_id/method/url/body, names another url than the batch's endpoint, repeats a
custom_id or another model than the first line's, or matches batch_invalid_lines; for a file over
batch_max_requests lines or batch_max_bytes bytes too (line null).
Each request is answered as its synchronous endpoint would answer it (the same text, usage, vectors, a missing
model's 404, a context overflow's 400), with no latency, slots or rate_429/rate_500/script faults (those hit
the files and batches requests themselves, as any counted request). Output file lines:
    {"id": "batch_req_...", "custom_id", "response": {"status_code": 200, "request_id", "body": <the answer>},
     "error": null}
error file lines: a non-200 `response` (its body the endpoint's error), or "response": null and
"error": {"code", "message"} (an expired request: code "batch_expired"). Both files are written when the batch
completes, expires or is cancelled (requests run so far), in a shuffled order (batch_shuffle), purpose
"batch_output"; no file when it would be empty. A cancelled batch's requests not run are in neither file.
Counts: files_uploaded, batches_created, batch_lines (Counter: requests run per custom_id).
    batch_seconds_per_stage  None (default: batches move only when a test advances them) or seconds: a batch
                       moves on by itself when one of its stages has lasted this long (seen at the next files or
                       batches request; 0: at once)
    batch_lines_per_stage  requests run per in_progress stage (None: all at once)
    batch_line_errors  {custom_id regex: status or code}: matching requests fail into the error file: a status
                       (429, 500, 400, 404) as a non-200 response with that status's error body; a text as
                       "error": {"code": text, "message": "The request failed (text)."}
    batch_invalid_lines  {custom_id regex: message}: a matching line fails the batch's validation
    batch_expire_after N requests: a batch expires once it has run N of its requests (partial output)
    batch_expired_lines "error" (default, as OpenAI does: each request not run is an error line with code
                       batch_expired) or "missing" (they are in neither file)
    batch_shuffle      True (default): output and error lines in a shuffled order (by seed); False: run order
    batch_max_requests, batch_max_bytes  a file over either fails validation (default 50,000 and 200 MB)

Every counted request can be hit by rate_429 / rate_500 / script (not /v1/models). For
/slow and /echo the "prompt" is the `prompt` query parameter, so script and
latency_by_prompt work there too.

Helpers: `await server.wait_for(lambda stats: ..., timeout=5)` polls from a test's own
loop; `server.drop_idle_connections()` closes idle keep-alive connections, as servers do.

Counts (`server.stats`, read from any thread; `server.stats.snapshot()` gives a plain dict):
    requests          requests received (all counted endpoints)
    connections       TCP connections accepted
    by_path           Counter of paths
    statuses          Counter of status codes sent
    in_flight         requests received and not yet answered (or abandoned)
    peak_in_flight    the most at once
    per_prompt        Counter: chat requests per prompt (all of them, whatever the answer)
    faults_by_prompt  Counter: 429/500 answers per prompt
    embedding_batches list of input counts, one per embeddings request
    embedded          Counter: embeddings requests per text
    disconnects       requests the client closed before the answer was complete (noticed at once:
                      the connection's close wakes the request, no polling)
    dropped           requests the server read and then dropped (drop_after_read)
    stream_events     SSE events sent so far (all streams), the [DONE] marker included
    streams_ended     streams whose body was sent to its end
    log               list of (time.monotonic(), path, prompt, status) per finished request
    authorizations    set of Authorization / api-key header values seen
    last_headers      the headers of the last counted request (names in lower case)
    last_body         the JSON body of the last chat or embeddings request
    answered          Counter: chat answers sent in full with status 200, per prompt (paid calls that
                      finished: a stream counts once its last byte is written)
    queued, peak_queued  requests waiting for a slot (see `slots`), and the most at once
    rate_limited      requests refused by the sliding-window `rate_limit`
"""

from __future__ import annotations

import argparse
import asyncio
import email.utils
import hashlib
import json
import math
import random
import re
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

DEFAULTS: dict[str, Any] = {
    "latency": 0.0,
    "latency_by_prompt": {},
    "rate_429": 0.0,
    "retry_after": 0.05,
    "retry_after_ms": None,
    "ratelimit_reset": None,
    "rate_500": 0.0,
    "script": {},
    "api_key": None,
    "models": None,
    "reply": None,
    "stream_delay": 0.0,
    "cut_stream": {},
    "stream_close": False,
    "drop_after_read": {},
    "embedding_dim": 64,
    "seed": 0,
    "slots": None,
    "hold": False,
    "context_size": None,
    "context_overflow": "error",
    "empty_stream": {},
    "stall_stream": {},
    "ignores_max_completion_tokens": False,
    "rate_limit": None,
    "retry_after_style": "seconds",
    "refuse_json_schema": False,
    "embeddings": "on",
    "ignore_dimensions": False,
    # Batch API (/v1/files, /v1/batches): see "Batches" in the docstring
    "batch_seconds_per_stage": None,
    "batch_lines_per_stage": None,
    "batch_line_errors": {},
    "batch_invalid_lines": {},
    "batch_expire_after": None,
    "batch_expired_lines": "error",
    "batch_shuffle": True,
    "batch_max_requests": 50_000,
    "batch_max_bytes": 200 * 1024 * 1024,
}
DEFAULT_MODELS = ["gpt-4o-mini", "gpt-4o", "text-embedding-3-small"]
REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 411: "Length Required",
           429: "Too Many Requests", 500: "Internal Server Error", 501: "Not Implemented",
           503: "Service Unavailable"}
_WORD = re.compile(r"\S+\s*")
_AZURE_PATH = re.compile(r"^/openai/deployments/([^/]+)/(chat/completions|embeddings)$")
_AZURE_BATCH_PATH = re.compile(r"^/openai/((?:files|batches)(?:/.*)?)$")  # Azure's files and batches


def _with_model(body: bytes, model: str) -> bytes:
    try:
        data = json.loads(body)
    except ValueError:
        return body
    return json.dumps({**data, "model": model}).encode() if isinstance(data, dict) else body


@dataclass
class Stats:
    requests: int = 0
    connections: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0
    disconnects: int = 0
    dropped: int = 0
    stream_events: int = 0
    streams_ended: int = 0
    by_path: Counter = field(default_factory=Counter)
    statuses: Counter = field(default_factory=Counter)
    per_prompt: Counter = field(default_factory=Counter)
    faults_by_prompt: Counter = field(default_factory=Counter)
    embedding_batches: list = field(default_factory=list)
    embedded: Counter = field(default_factory=Counter)
    log: list = field(default_factory=list)
    authorizations: set = field(default_factory=set)
    last_headers: dict = field(default_factory=dict)
    last_body: Any = None
    answered: Counter = field(default_factory=Counter)
    queued: int = 0
    peak_queued: int = 0
    rate_limited: int = 0
    files_uploaded: int = 0
    batches_created: int = 0
    batch_lines: Counter = field(default_factory=Counter)

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": self.requests, "connections": self.connections, "in_flight": self.in_flight, "peak_in_flight": self.peak_in_flight,
            "disconnects": self.disconnects, "dropped": self.dropped, "stream_events": self.stream_events,
            "streams_ended": self.streams_ended, "by_path": dict(self.by_path),
            "statuses": {str(k): v for k, v in self.statuses.items()}, "per_prompt": dict(self.per_prompt),
            "faults_by_prompt": dict(self.faults_by_prompt), "embedding_batches": list(self.embedding_batches),
            "embedded": dict(self.embedded), "log": [list(e) for e in self.log],
            "answered": dict(self.answered), "queued": self.queued, "peak_queued": self.peak_queued,
            "rate_limited": self.rate_limited, "files_uploaded": self.files_uploaded,
            "batches_created": self.batches_created, "batch_lines": dict(self.batch_lines),
        }


class _Disconnected(Exception):
    """The client closed the connection."""


class _Request:
    __slots__ = ("method", "path", "query", "headers", "body")

    def __init__(self, method: str, target: str, headers: dict[str, str], body: bytes):
        parts = urlsplit(target)
        self.method = method
        self.path = parts.path
        azure = _AZURE_PATH.match(parts.path)
        if azure:  # Azure OpenAI: /openai/deployments/{deployment}/chat/completions?api-version=...
            self.path = "/v1/" + azure.group(2)
            body = _with_model(body, azure.group(1))
        azure_batch = _AZURE_BATCH_PATH.match(parts.path)
        if azure_batch:  # /openai/files, /openai/batches/{id}?api-version=...
            self.path = "/v1/" + azure_batch.group(1)
        self.query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body or b"null")


class _Connection(asyncio.Protocol):
    """One client connection: HTTP/1.1 keep-alive, requests served one after another."""

    def __init__(self, server: "FakeOpenAI"):
        self.server = server
        self.buffer = bytearray()
        self.more = asyncio.Event()     # data arrived or the connection ended
        self.closed = asyncio.Event()   # the client went away
        self.transport: asyncio.Transport | None = None
        self.task: asyncio.Task | None = None
        self.busy = False
        self.stream_chunked = True  # the current stream's framing (False: the body ends with the connection)
        self.close_after = False    # this answer ends the connection

    # ---- protocol callbacks -------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport
        self.server._connections.add(self)
        self.server.stats.connections += 1
        self.task = asyncio.get_running_loop().create_task(self._serve())

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self.more.set()

    def eof_received(self):
        self.closed.set()
        self.more.set()
        return None  # close the transport

    def connection_lost(self, exc) -> None:
        self.closed.set()
        self.more.set()
        self.server._connections.discard(self)

    # ---- reading ------------------------------------------------------------------
    async def _read_until(self, marker: bytes) -> bytes:
        while True:
            at = self.buffer.find(marker)
            if at >= 0:
                chunk = bytes(self.buffer[:at])
                del self.buffer[: at + len(marker)]
                return chunk
            if self.closed.is_set():
                raise _Disconnected
            if len(self.buffer) > 1 << 20:
                raise ValueError("header too long")
            self.more.clear()
            await self.more.wait()

    async def _read_exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            if self.closed.is_set():
                raise _Disconnected
            self.more.clear()
            await self.more.wait()
        chunk = bytes(self.buffer[:n])
        del self.buffer[:n]
        return chunk

    async def _read_request(self) -> _Request:
        head = (await self._read_until(b"\r\n\r\n")).decode("latin-1")
        lines = head.split("\r\n")
        method, target, _version = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = bytearray()
            while True:
                size = int((await self._read_until(b"\r\n")).split(b";")[0], 16)
                body += await self._read_exactly(size)
                await self._read_until(b"\r\n")
                if size == 0:
                    break
            return _Request(method, target, headers, bytes(body))
        length = int(headers.get("content-length", "0") or 0)
        return _Request(method, target, headers, await self._read_exactly(length) if length else b"")

    # ---- writing ------------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        if self.closed.is_set() or self.transport is None or self.transport.is_closing():
            raise _Disconnected
        self.transport.write(data)

    def send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        head = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}", "Content-Type: application/json",
                f"Content-Length: {len(payload)}"]
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self._write(("\r\n".join(head) + "\r\n\r\n").encode() + payload)

    def start_stream(self, close: bool = False) -> None:
        """Chunked, or (close=True) as llama.cpp's server does: no length, the body ends when the connection does."""
        self.stream_chunked = not close
        framing = b"Connection: close\r\n" if close else b"Transfer-Encoding: chunked\r\n"
        self._write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                    + framing + b"\r\n")

    def stream_event(self, data: str) -> None:
        payload = f"data: {data}\n\n".encode()
        self._write(b"%x\r\n%s\r\n" % (len(payload), payload) if self.stream_chunked else payload)
        self.server.stats.stream_events += 1

    def end_stream(self) -> None:
        if self.stream_chunked:
            self._write(b"0\r\n\r\n")
        else:
            self.close_after = True
            self.transport.close()  # the end of the body
        self.server.stats.streams_ended += 1

    async def pause(self, seconds: float) -> None:
        """Wait, but raise _Disconnected the moment the client goes away."""
        if seconds <= 0:
            if self.closed.is_set():
                raise _Disconnected
            return
        try:
            await asyncio.wait_for(self.closed.wait(), seconds)
        except asyncio.TimeoutError:
            return
        raise _Disconnected

    # ---- serving ------------------------------------------------------------------
    async def _serve(self) -> None:
        try:
            while True:
                try:
                    request = await self._read_request()
                except _Disconnected:
                    return
                except (ValueError, IndexError):
                    with _suppress():
                        self.send(400, {"error": {"message": "malformed request"}})
                    return
                self.busy = True
                await self.server._handle(self, request)
                self.busy = False
                if self.close_after or request.headers.get("connection", "").lower() == "close":
                    return
        finally:
            if self.transport is not None:
                self.transport.close()


class _suppress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return exc[0] is not None and issubclass(exc[0], (_Disconnected, OSError))


class FakeOpenAI:
    """The server. See the module docstring."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.host = host
        self.port = port
        self.stats = Stats()
        self._options = dict(DEFAULTS)
        self._random = random.Random(0)
        self._script_used: Counter = Counter()
        self._connections: set[_Connection] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._window: deque[float] = deque()   # times of the requests the rate_limit let through
        self._busy = 0                         # requests holding one of the `slots`
        self._slot_waiters: deque[asyncio.Future] = deque()
        self._batch_store = _BatchStore(self)

    # ---- lifecycle ----------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def start(self) -> "FakeOpenAI":
        ready = threading.Event()
        failure: list[BaseException] = []

        def main() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._server = loop.run_until_complete(
                    loop.create_server(lambda: _Connection(self), self.host, self.port, backlog=1024))
                self.port = self._server.sockets[0].getsockname()[1]
            except BaseException as exc:  # pragma: no cover - port in use
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=main, name="fake-openai", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is None or self._thread is None:
            return

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for conn in list(self._connections):
                if conn.transport is not None:
                    conn.transport.abort()
            tasks = [c.task for c in list(self._connections) if c.task]
            for t in tasks:
                t.cancel()
            await asyncio.sleep(0)

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(5)
        self._loop = self._thread = None

    def go_down(self) -> None:
        """Stop listening and drop every connection, as a killed server does (see the docstring)."""
        async def down() -> None:
            if self._server is not None:
                self._server.close()
                self._server = None
            for conn in list(self._connections):
                if conn.transport is not None:
                    conn.transport.abort()
        asyncio.run_coroutine_threadsafe(down(), self._loop).result(5)

    def come_back(self) -> None:
        """Listen again on the same port (after go_down)."""
        async def up() -> None:
            self._server = await self._loop.create_server(lambda: _Connection(self), self.host, self.port,
                                                          backlog=1024, reuse_address=True)
        asyncio.run_coroutine_threadsafe(up(), self._loop).result(5)

    def __enter__(self) -> "FakeOpenAI":
        return self.start() if self._thread is None else self

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- configuration ------------------------------------------------------------
    def configure(self, **options: Any) -> "FakeOpenAI":
        unknown = set(options) - set(DEFAULTS)
        if unknown:
            raise TypeError(f"unknown option(s): {', '.join(sorted(unknown))}")
        merged = {**self._options, **options}
        if "seed" in options:
            self._random = random.Random(options["seed"])
        if "script" in options:
            self._script_used = Counter()
        self._options = merged  # one assignment: the server thread sees old or new, never half
        return self

    def reset(self) -> "FakeOpenAI":
        self._options = dict(DEFAULTS)
        self._random = random.Random(0)
        self._script_used = Counter()
        self._window.clear()
        self.stats = Stats()
        self._batch_store = _BatchStore(self)
        return self

    @property
    def options(self) -> dict[str, Any]:
        return dict(self._options)

    def drop_idle_connections(self) -> None:
        """Close every connection that is not serving a request (as servers do after a keep-alive timeout)."""
        def drop() -> None:
            for conn in list(self._connections):
                if not conn.busy and conn.transport is not None:
                    conn.transport.close()
        self._loop.call_soon_threadsafe(drop)
        time.sleep(0.05)

    async def wait_for(self, predicate: Callable[[Stats], bool], timeout: float = 5.0) -> bool:
        """Poll (from a test's own loop) until `predicate(stats)` holds; False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.stats):
                return True
            await asyncio.sleep(0.005)
        return predicate(self.stats)

    # ---- batches (see "Batches" in the docstring) -----------------------------------
    def advance_batches(self, lines: int | None = None) -> int:
        """Move every unfinished batch one stage on (in_progress: run `lines` more of its requests,
        default batch_lines_per_stage, else all). Returns how many batches moved."""
        return self._batch_store.advance(lines)

    def finish_batches(self) -> None:
        """Advance every batch until it is completed, failed, expired or cancelled."""
        self._batch_store.finish()

    def expire_batches(self) -> int:
        """Every unfinished batch expires now (its done requests kept); returns how many."""
        return self._batch_store.expire_all()

    @property
    def batches(self) -> list[dict]:
        """The batch objects as GET /v1/batches/{id} would answer them, oldest first."""
        return self._batch_store.snapshot()

    def file_content(self, file_id: str) -> bytes:
        return self._batch_store.content(file_id)

    # ---- request handling (server thread) -----------------------------------------
    async def _handle(self, conn: _Connection, request: _Request) -> None:
        if request.path.startswith("/_"):
            with _suppress():
                self._control(conn, request)
            return
        stats, options = self.stats, self._options
        stats.requests += 1
        stats.last_headers = request.headers
        stats.by_path[request.path] += 1
        stats.in_flight += 1
        stats.peak_in_flight = max(stats.peak_in_flight, stats.in_flight)
        prompt, status = "", 0
        try:
            prompt = _prompt_of(request)
            if request.path == "/v1/chat/completions":
                stats.per_prompt[prompt] += 1
            if self._drop(prompt, options):
                stats.dropped += 1
                conn.close_after = True
                conn.transport.close()  # read in full, never answered
                return
            status = await self._answer(conn, request, prompt, options)
        except _Disconnected:
            stats.disconnects += 1
        finally:
            stats.in_flight -= 1
            if status:
                stats.statuses[status] += 1
            stats.log.append((time.monotonic(), request.path, prompt, status))

    async def _answer(self, conn: _Connection, request: _Request, prompt: str, options: dict) -> int:
        path = request.path
        if path.startswith("/v1/"):
            auth = request.headers.get("authorization") or request.headers.get("api-key")
            if auth:
                self.stats.authorizations.add(auth)
            key = options["api_key"]
            if key is not None and auth not in (f"Bearer {key}", key):
                conn.send(401, _error("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"))
                return 401
        while self._options["hold"]:
            await conn.pause(0.005)
        options = self._options
        if path == "/v1/models":
            await conn.pause(options["latency"])
            names = options["models"] or DEFAULT_MODELS
            conn.send(200, {"object": "list", "data": [{"id": n, "object": "model", "owned_by": "test"} for n in names]})
            return 200
        if path == "/props":  # llama.cpp's server properties
            if options["context_size"] is None:
                conn.send(404, _error("File Not Found", "not_found_error", None))
                return 404
            conn.send(200, {"default_generation_settings": {"n_ctx": options["context_size"]},
                            "total_slots": options["slots"] or 1})
            return 200
        model_call = path in ("/v1/chat/completions", "/v1/embeddings")
        if model_call and options["rate_limit"] is not None:
            wait = self._over_rate_limit(options["rate_limit"])
            if wait is not None:
                self.stats.rate_limited += 1
                conn.send(429, _error("Rate limit reached. Please try again later.", "requests",
                                      "rate_limit_exceeded"), _wait_headers(wait, options["retry_after_style"]))
                return 429
        fault = self._fault(prompt, options)
        if fault:
            return self._send_fault(conn, fault, prompt, options)
        if model_call and options["slots"]:
            await self._take_slot(conn, options["slots"])
            try:
                if path == "/v1/chat/completions":
                    return await self._chat(conn, request, prompt, options)
                return await self._embeddings(conn, request, options)
            finally:
                self._give_slot()
        if path == "/v1/chat/completions":
            return await self._chat(conn, request, prompt, options)
        if path == "/v1/embeddings":
            return await self._embeddings(conn, request, options)
        if path.startswith(("/v1/files", "/v1/batches")):
            status, payload = self._batch_store.serve(request)
            conn.send(status, payload)
            return status
        if path == "/slow":
            ms = float(request.query.get("ms", "0") or 0)
            await conn.pause(_latency_for(prompt, options) + ms / 1000)
            conn.send(200, {"slept_ms": ms})
            return 200
        if path == "/redirect":  # /redirect?to=URL&status=302: a redirect to wherever `to` says
            status = int(request.query.get("status", "302"))
            conn.send(status, {"to": request.query.get("to", "")}, {"Location": request.query.get("to", "")})
            return status
        if path == "/echo" or path.startswith("/echo/"):  # the path as it arrived, still percent-encoded
            await conn.pause(_latency_for(prompt, options) + float(request.query.get("ms", "0") or 0) / 1000)
            status = int(request.query.get("status", "200"))
            try:
                parsed = request.json()
            except ValueError:
                parsed = None
            conn.send(status, {"method": request.method, "path": path, "query": request.query,
                               "headers": request.headers, "body": request.body.decode("utf-8", "replace"),
                               "json": parsed})
            return status
        conn.send(404, _error(f"no such endpoint: {path}", "invalid_request_error", "not_found"))
        return 404

    def _over_rate_limit(self, limit: tuple[int, float]) -> float | None:
        """None when the sliding window has room (the request is counted in it), else seconds until it has."""
        count, seconds = limit
        now = time.monotonic()
        while self._window and self._window[0] <= now - seconds:
            self._window.popleft()
        if len(self._window) < count:
            self._window.append(now)
            return None
        return self._window[0] + seconds - now

    async def _take_slot(self, conn: _Connection, slots: int) -> None:
        stats = self.stats
        if self._busy >= slots:
            stats.queued += 1
            stats.peak_queued = max(stats.peak_queued, stats.queued)
            try:
                while self._busy >= slots:
                    future = asyncio.get_running_loop().create_future()
                    self._slot_waiters.append(future)
                    closed = asyncio.ensure_future(conn.closed.wait())
                    try:
                        await asyncio.wait([future, closed], return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        closed.cancel()
                    if conn.closed.is_set():
                        if future.done() and not future.cancelled():
                            self._wake_slot()  # pass the turn on
                        else:
                            future.cancel()
                        raise _Disconnected
            finally:
                stats.queued -= 1
        self._busy += 1

    def _give_slot(self) -> None:
        self._busy -= 1
        self._wake_slot()

    def _wake_slot(self) -> None:
        while self._slot_waiters:
            future = self._slot_waiters.popleft()
            if not future.done():
                future.set_result(None)
                return

    def _fault(self, prompt: str, options: dict) -> int:
        for marker, statuses in options["script"].items():
            if marker in prompt:
                used = self._script_used[marker]
                if used < len(statuses):
                    self._script_used[marker] += 1
                    return statuses[used]
        roll = self._random.random()
        if roll < options["rate_429"]:
            return 429
        if roll < options["rate_429"] + options["rate_500"]:
            return 500
        return 0

    def _send_fault(self, conn: _Connection, status: int, prompt: str, options: dict) -> int:
        self.stats.faults_by_prompt[prompt] += 1
        if status == 429:
            headers = {}
            if options["retry_after"] is not None:
                headers = _wait_headers(options["retry_after"], options["retry_after_style"])
            if options["retry_after_ms"] is not None:
                headers["retry-after-ms"] = f"{options['retry_after_ms']:g}"
            if options["ratelimit_reset"] is not None:
                headers["x-ratelimit-reset-requests"] = options["ratelimit_reset"]
            conn.send(429, _error("Rate limit reached. Please try again later.", "requests", "rate_limit_exceeded"),
                      headers)
        else:
            conn.send(status, _error("The server had an error while processing your request.", "server_error", None))
        return status

    def _cut(self, prompt: str, options: dict) -> bool:
        return self._first_n("cut", options["cut_stream"], prompt)

    def _drop(self, prompt: str, options: dict) -> bool:
        return self._first_n("drop", options["drop_after_read"], prompt)

    def _first_n(self, kind: str, counts: dict[str, int], prompt: str) -> bool:
        """True for the first n requests whose prompt contains a marker of `counts` ({marker: n})."""
        for marker, count in counts.items():
            if marker in prompt and self._script_used[f"{kind}:{marker}"] < count:
                self._script_used[f"{kind}:{marker}"] += 1
                return True
        return False

    def _check_model(self, conn: _Connection, model: Any, options: dict) -> bool:
        missing = _missing_model(model, options)
        if missing is not None:
            conn.send(404, missing)
            return False
        return True

    async def _chat(self, conn: _Connection, request: _Request, prompt: str, options: dict) -> int:
        body = request.json()
        self.stats.last_body = body
        model = body.get("model")
        if not self._check_model(conn, model, options):
            return 404
        fmt = body.get("response_format") or {}
        if options["refuse_json_schema"] and fmt.get("type") == "json_schema":
            conn.send(500, _error("[{'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), "
                                  "'msg': \"Input should be 'text' or 'json_object'\"}]", "internal_server_error", None))
            return 500
        prompt_tokens = sum(_words(_text_of(m.get("content"))) for m in body.get("messages", []))
        stream = bool(body.get("stream"))
        context = options["context_size"]
        overflow = context is not None and prompt_tokens > context
        if overflow and not (stream and options["context_overflow"] == "empty_stream"):
            conn.send(400, {"error": {"code": 400, "type": "exceed_context_size_error",
                                      "message": "the request exceeds the available context size, try increasing it",
                                      "n_prompt_tokens": prompt_tokens, "n_ctx": context}})
            return 400
        await conn.pause(_latency_for(prompt, options))
        pieces, finish, answer, usage = _completion(prompt, body, options, prompt_tokens)
        ident = "chatcmpl-" + hashlib.sha1(prompt.encode()).hexdigest()[:12]
        created = int(time.time())
        if not stream:
            # Counted before the answer goes out: a client that has it must find it counted.
            self.stats.answered[prompt] += 1
            conn.send(200, _chat_body(ident, created, model, finish, answer, usage))
            return 200
        conn.start_stream(close=options["stream_close"] or overflow)

        def chunk(delta: dict, finish: str | None = None) -> str:
            return json.dumps({"id": ident, "object": "chat.completion.chunk", "created": created, "model": model,
                               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

        conn.stream_event(chunk({"role": "assistant", "content": ""}))
        if overflow or self._first_n("empty", options["empty_stream"], prompt):
            conn.stream_event("[DONE]")  # llama-cpp-python: no content, no finish reason, a clean end
            conn.end_stream()
            return 200
        cut = self._cut(prompt, options)
        stall = next((seconds for marker, seconds in options["stall_stream"].items() if marker in prompt), 0.0)
        for n, piece in enumerate(pieces or [answer]):
            await conn.pause(options["stream_delay"] + (stall if n == 1 else 0.0))
            conn.stream_event(chunk({"content": piece}))
            if cut:
                conn.transport.close()
                return 200
        conn.stream_event(chunk({}, finish))
        if (body.get("stream_options") or {}).get("include_usage"):
            conn.stream_event(json.dumps({"id": ident, "object": "chat.completion.chunk", "created": created,
                                          "model": model, "choices": [], "usage": usage}))
        self.stats.answered[prompt] += 1  # before its end goes out (as above)
        conn.stream_event("[DONE]")
        conn.end_stream()
        return 200

    async def _embeddings(self, conn: _Connection, request: _Request, options: dict) -> int:
        body = request.json()
        self.stats.last_body = body
        texts = body.get("input")
        texts = [texts] if isinstance(texts, str) else list(texts or [])
        self.stats.embedding_batches.append(len(texts))
        for t in texts:
            self.stats.embedded[t] += 1
        if options["embeddings"] == "501":
            conn.send(501, {"error": {"code": 501, "type": "not_supported_error",
                                      "message": "This server does not support embeddings. Start it with `--embeddings`"}})
            return 501
        if options["embeddings"] == "500":
            conn.send(500, _error("Llama model must be created with embedding=True to call this method",
                                  "internal_server_error", None))
            return 500
        if not self._check_model(conn, body.get("model"), options):
            return 404
        await conn.pause(max((_latency_for(t, options) for t in texts), default=options["latency"]))
        conn.send(200, _embeddings_body(body, texts, options))
        return 200

    def _control(self, conn: _Connection, request: _Request) -> None:
        if request.path == "/_stats":
            conn.send(200, self.stats.snapshot())
        elif request.path == "/_config":
            self.configure(**(request.json() or {}))
            conn.send(200, {"ok": True})
        elif request.path == "/_reset":
            self.reset()
            conn.send(200, {"ok": True})
        else:
            conn.send(404, _error(f"no such endpoint: {request.path}", "invalid_request_error", None))


# ---- answers: deterministic functions of the request ---------------------------------
def _wait_headers(seconds: float, style: str) -> dict[str, str]:
    """How a server says "wait `seconds`" (see retry_after_style)."""
    if style == "ms":
        return {"retry-after-ms": f"{seconds * 1000:.0f}"}
    if style == "date":
        return {"Retry-After": email.utils.formatdate(time.time() + seconds, usegmt=True)}
    if style == "epoch":
        return {"x-ratelimit-reset": f"{int(time.time() + seconds + 0.999)}"}
    if style == "none":
        return {}
    return {"Retry-After": f"{seconds:g}" if seconds == int(seconds) or seconds < 1 else f"{math.ceil(seconds)}"}


def _answer_limit(body: dict, options: dict, room: int | None) -> int | None:
    """The most tokens (words) the answer may have: max_tokens, max_completion_tokens (unless the server
    ignores it, as llama-cpp-python does), and what is left of the context."""
    limits = [body.get("max_tokens")]
    if not options["ignores_max_completion_tokens"]:
        limits.append(body.get("max_completion_tokens"))
    limits.append(room)
    limits = [int(n) for n in limits if isinstance(n, (int, float)) and not isinstance(n, bool)]
    return min(limits) if limits else None


def _error(message: str, kind: str, code: str | None) -> dict:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _missing_model(model: Any, options: dict) -> dict | None:
    """The 404 body for a model the server does not have (see `models`), else None."""
    if options["models"] is not None and model not in options["models"]:
        return _error(f"The model `{model}` does not exist or you do not have access to it.",
                      "invalid_request_error", "model_not_found")
    return None


def _completion(prompt: str, body: dict, options: dict, prompt_tokens: int) -> tuple[list[str], str, str, dict]:
    """The answer's pieces (words), finish reason, text and usage, cut where max tokens or the context end."""
    context = options["context_size"]
    pieces, finish = _WORD.findall(_chat_answer(prompt, body, options)), "stop"
    limit = _answer_limit(body, options, None if context is None else context - prompt_tokens)
    if limit is not None and len(pieces) > limit:
        pieces, finish = pieces[:max(0, limit)], "length"
    answer = "".join(pieces).rstrip() if finish == "length" else "".join(pieces)
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": _words(answer),
             "total_tokens": prompt_tokens + _words(answer)}
    return pieces, finish, answer, usage


def _chat_body(ident: str, created: int, model: Any, finish: str, answer: str, usage: dict) -> dict:
    return {"id": ident, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "finish_reason": finish, "message": {"role": "assistant", "content": answer}}],
            "usage": usage}


def _embeddings_body(body: dict, texts: list[str], options: dict) -> dict:
    dim = options["embedding_dim"]
    if body.get("dimensions") and not options["ignore_dimensions"]:
        dim = int(body["dimensions"])
    data = [{"object": "embedding", "index": i, "embedding": embed_text(t, dim)} for i, t in enumerate(texts)]
    tokens = sum(_words(t) for t in texts)
    return {"object": "list", "model": body.get("model"), "data": data,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def _text_of(content: Any) -> str:
    if isinstance(content, list):  # content parts
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content if isinstance(content, str) else ""


def _prompt_of(request: _Request) -> str:
    if request.path == "/v1/chat/completions":
        try:
            messages = request.json().get("messages", [])
        except (ValueError, AttributeError):
            return ""
        users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
        return _text_of(users[-1].get("content")) if users else ""
    if request.path == "/v1/embeddings":
        try:
            texts = request.json().get("input")
        except (ValueError, AttributeError):
            return ""
        return texts if isinstance(texts, str) else (texts[0] if texts else "")
    return request.query.get("prompt", "")


def _latency_for(prompt: str, options: dict) -> float:
    for marker, seconds in options["latency_by_prompt"].items():
        if marker in prompt:
            return seconds
    return options["latency"]


def _words(text: str) -> int:
    return len(text.split())


def _chat_answer(prompt: str, body: dict, options: dict) -> str:
    if options["reply"] is not None:
        return options["reply"](prompt, body)
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema") or {}
        return json.dumps(_fill(schema, prompt))
    if fmt.get("type") == "json_object":
        return json.dumps({"echo": prompt})
    return f"echo: {prompt}"


def _fill(schema: dict, prompt: str) -> Any:
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "object":
        return {name: _fill(sub, prompt) for name, sub in (schema.get("properties") or {}).items()}
    if kind in ("integer", "number"):
        return _words(prompt)
    if kind == "boolean":
        return _words(prompt) % 2 == 0
    if kind == "array":
        items = schema.get("items") or {}
        return [_fill(items, prompt)] if "enum" in items else prompt.split()
    return prompt


def embed_text(text: str, dim: int = 64) -> list[float]:
    """A hashed bag of words, L2-normalised: texts that share words point the same way."""
    vector = [0.0] * dim
    for word in re.findall(r"\w+", text.lower()):
        h = int.from_bytes(hashlib.md5(word.encode()).digest()[:4], "little")
        vector[h % dim] += 1.0 if (h >> 16) & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vector))
    if norm == 0:
        vector[0], norm = 1.0, 1.0
    return [v / norm for v in vector]


# ---- the Batch API: files and batches ---------------------------------------------------------
BATCH_ENDPOINTS = ("/v1/chat/completions", "/v1/embeddings")
BATCH_DONE = ("completed", "failed", "expired", "cancelled")
EXPIRED_MESSAGE = "This request could not be executed before the completion window expired."


@dataclass
class _Batch:
    id: str
    endpoint: str
    input_file_id: str
    metadata: dict | None
    created_at: int
    moved_at: float                        # time.monotonic() the current stage began
    status: str = "validating"
    lines: list = field(default_factory=list)     # the input lines, once validated
    done: int = 0                                  # lines run so far
    outputs: list = field(default_factory=list)   # output file lines (answered 200)
    failures: list = field(default_factory=list)  # error file lines
    errors: list | None = None                     # validation errors (status failed)
    times: dict = field(default_factory=dict)      # in_progress_at, completed_at... -> Unix time
    output_file_id: str | None = None
    error_file_id: str | None = None

    def view(self) -> dict:
        total = len(self.lines)
        return {"id": self.id, "object": "batch", "endpoint": self.endpoint, "input_file_id": self.input_file_id,
                "completion_window": "24h", "status": self.status, "created_at": self.created_at,
                "expires_at": self.created_at + 86_400, **self.times,
                "errors": None if self.errors is None else {"object": "list", "data": self.errors},
                "output_file_id": self.output_file_id, "error_file_id": self.error_file_id,
                "request_counts": {"total": total, "completed": len(self.outputs), "failed": len(self.failures)},
                "metadata": self.metadata}


class _BatchStore:
    """Files and batches, shared by the server thread (requests) and a test's thread (advance_batches):
    every access holds one lock and none of them waits while holding it."""

    def __init__(self, server: FakeOpenAI):
        self.server = server
        self.lock = threading.Lock()
        self.files: dict[str, dict] = {}      # id -> the file object, plus "data": its bytes
        self.batches: dict[str, _Batch] = {}  # in creation order
        self.serial = 0

    def _id(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}{hashlib.sha1(f'{prefix}{self.serial}{id(self)}'.encode()).hexdigest()[:16]}"

    # ---- requests --------------------------------------------------------------------
    def serve(self, request: _Request) -> tuple[int, Any]:
        with self.lock:
            self._tick()
            parts = request.path.strip("/").split("/")[1:]  # ["files", id, "content"], ["batches", id, "cancel"]
            method = request.method
            try:
                if parts[0] == "files":
                    return self._files(method, parts[1:], request)
                return self._batches(method, parts[1:], request)
            except _Refused as refused:
                return refused.status, _error(refused.message, "invalid_request_error", refused.code)

    def _files(self, method: str, rest: list[str], request: _Request) -> tuple[int, Any]:
        if not rest:
            if method == "GET":
                return 200, {"object": "list", "data": [self._file_view(f) for f in self.files.values()],
                             "has_more": False}
            if method != "POST":
                raise _Refused(405, "Method not allowed", None)
            form = _multipart(request)
            if "file" not in form or "purpose" not in form:
                raise _Refused(400, "Upload a file with a purpose (multipart/form-data: file, purpose).",
                               "missing_required_parameter")
            filename, data = form["file"]
            purpose = form["purpose"][1].decode()
            if purpose not in ("batch", "fine-tune", "assistants", "vision", "user_data", "evals"):
                raise _Refused(400, f"'{purpose}' is not a valid purpose.", "invalid_value")
            self.server.stats.files_uploaded += 1
            return 200, self._file_view(self._add_file(data, filename or "upload.jsonl", purpose))
        file = self.files.get(rest[0])
        if file is None:
            raise _Refused(404, f"No such File object: {rest[0]}", "not_found")
        if len(rest) > 1 and rest[1] == "content" and method == "GET":
            return 200, file["data"]
        if method == "DELETE":
            del self.files[rest[0]]
            return 200, {"id": rest[0], "object": "file", "deleted": True}
        return 200, self._file_view(file)

    def _add_file(self, data: bytes, filename: str, purpose: str) -> dict:
        file = {"id": self._id("file-"), "object": "file", "bytes": len(data), "created_at": int(time.time()),
                "filename": filename, "purpose": purpose, "status": "processed", "expires_at": None,
                "status_details": None, "data": data}
        self.files[file["id"]] = file
        return file

    @staticmethod
    def _file_view(file: dict) -> dict:
        return {k: v for k, v in file.items() if k != "data"}

    def _batches(self, method: str, rest: list[str], request: _Request) -> tuple[int, Any]:
        if not rest:
            if method == "POST":
                return 200, self._create(request.json() or {}).view()
            return 200, self._list(request.query)
        batch = self.batches.get(rest[0])
        if batch is None:
            raise _Refused(404, f"No batch found with id '{rest[0]}'.", "not_found")
        if len(rest) > 1 and rest[1] == "cancel" and method == "POST":
            if batch.status in BATCH_DONE:
                raise _Refused(400, f"Cannot cancel a batch with status '{batch.status}'.", "invalid_request")
            if batch.status != "cancelling":
                self._move(batch, "cancelling")
            return 200, batch.view()
        return 200, batch.view()

    def _create(self, body: dict) -> _Batch:
        endpoint = _batch_url(str(body.get("endpoint") or ""))
        if endpoint not in BATCH_ENDPOINTS:
            raise _Refused(400, f"Invalid endpoint {body.get('endpoint')!r}: this server batches "
                           + " and ".join(BATCH_ENDPOINTS), "invalid_value")
        if body.get("completion_window") != "24h":
            raise _Refused(400, "completion_window must be '24h'", "invalid_value")
        file = self.files.get(str(body.get("input_file_id") or ""))
        if file is None:
            raise _Refused(404, f"No such File object: {body.get('input_file_id')}", "not_found")
        if file["purpose"] != "batch":
            raise _Refused(400, "The input file must be uploaded with purpose 'batch'.", "invalid_value")
        batch = _Batch(self._id("batch_"), endpoint, file["id"], body.get("metadata"), int(time.time()),
                       time.monotonic())
        self.batches[batch.id] = batch
        self.server.stats.batches_created += 1
        return batch

    def _list(self, query: dict[str, str]) -> dict:
        newest = list(reversed(self.batches.values()))  # newest first, as OpenAI lists them
        after = query.get("after")
        if after in self.batches:
            newest = newest[[b.id for b in newest].index(after) + 1:]
        limit = int(query.get("limit", "20") or 20)
        page = newest[:limit]
        return {"object": "list", "data": [b.view() for b in page], "first_id": page[0].id if page else None,
                "last_id": page[-1].id if page else None, "has_more": len(newest) > limit}

    # ---- time ----------------------------------------------------------------------------
    def _tick(self) -> None:
        """batch_seconds_per_stage: every stage that has lasted that long moves on (lock held)."""
        seconds = self.server.options["batch_seconds_per_stage"]
        if seconds is None:
            return
        now = time.monotonic()
        for batch in self.batches.values():
            while batch.status not in BATCH_DONE and now - batch.moved_at >= seconds:
                started = batch.moved_at
                self._step(batch, None)
                batch.moved_at = started + seconds

    def advance(self, lines: int | None) -> int:
        with self.lock:
            moving = [b for b in self.batches.values() if b.status not in BATCH_DONE]
            for batch in moving:
                self._step(batch, lines)
            return len(moving)

    def finish(self) -> None:
        for _ in range(10_000):
            if not self.advance(None):
                return
        raise RuntimeError("the batches never finished")  # pragma: no cover

    def expire_all(self) -> int:
        with self.lock:
            moving = [b for b in self.batches.values() if b.status not in BATCH_DONE]
            for batch in moving:
                self._expire(batch)
            return len(moving)

    def snapshot(self) -> list[dict]:
        with self.lock:
            return [b.view() for b in self.batches.values()]

    def content(self, file_id: str) -> bytes:
        with self.lock:
            return self.files[file_id]["data"]

    # ---- stages ------------------------------------------------------------------------------
    def _move(self, batch: _Batch, status: str) -> None:
        batch.status = status
        batch.moved_at = time.monotonic()
        batch.times[f"{status}_at"] = int(time.time())

    def _step(self, batch: _Batch, lines: int | None) -> None:
        options = self.server.options
        if batch.status == "validating":
            errors = self._validate(batch, options)
            if errors:
                batch.errors = errors
                self._move(batch, "failed")
            else:
                self._move(batch, "in_progress")
        elif batch.status == "in_progress":
            count = lines if lines is not None else options["batch_lines_per_stage"]
            end = len(batch.lines) if count is None else min(len(batch.lines), batch.done + count)
            expire_after = options["batch_expire_after"]
            if expire_after is not None:
                end = min(end, expire_after)
            for line in batch.lines[batch.done:end]:
                self._run(batch, line, options)
            batch.done = end
            if expire_after is not None and batch.done >= expire_after and batch.done < len(batch.lines):
                self._expire(batch)
            elif batch.done >= len(batch.lines):
                self._move(batch, "finalizing")
        elif batch.status == "finalizing":
            self._write_files(batch, options)
            self._move(batch, "completed")
        elif batch.status == "cancelling":
            self._write_files(batch, options)
            self._move(batch, "cancelled")

    def _expire(self, batch: _Batch) -> None:
        options = self.server.options
        if options["batch_expired_lines"] == "error":
            for line in batch.lines[batch.done:]:
                batch.failures.append({"id": self._id("batch_req_"), "custom_id": line["custom_id"],
                                       "response": None, "error": {"code": "batch_expired",
                                                                   "message": EXPIRED_MESSAGE}})
        self._write_files(batch, options)
        self._move(batch, "expired")

    def _validate(self, batch: _Batch, options: dict) -> list[dict]:
        data = self.files[batch.input_file_id]["data"] if batch.input_file_id in self.files else b""
        errors: list[dict] = []

        def bad(line: int | None, code: str, message: str) -> None:
            errors.append({"code": code, "message": message, "param": None, "line": line})

        if len(data) > options["batch_max_bytes"]:
            bad(None, "file_too_large", f"The input file is larger than {options['batch_max_bytes']} bytes.")
            return errors
        seen: set[str] = set()
        first_model: list[Any] = []  # the first line's model: every other line must name it too
        lines = [raw for raw in data.splitlines() if raw.strip()]
        if len(lines) > options["batch_max_requests"]:
            bad(None, "too_many_requests", f"The input file has {len(lines)} requests; the most a batch may "
                f"have is {options['batch_max_requests']}.")
            return errors
        for number, raw in enumerate(lines, 1):
            try:
                line = json.loads(raw)
            except ValueError:
                bad(number, "invalid_json_line", "This line is not parseable as valid JSON.")
                continue
            missing = [k for k in ("custom_id", "method", "url", "body") if not isinstance(line, dict) or k not in line]
            if missing:
                bad(number, "missing_required_parameter", f"Missing required parameter: '{missing[0]}'.")
                continue
            if _batch_url(str(line["url"])) != batch.endpoint:
                bad(number, "mismatched_endpoint", f"The url {line['url']!r} does not match the batch's endpoint "
                    f"{batch.endpoint!r}.")
            if line["custom_id"] in seen:
                bad(number, "duplicate_custom_id", f"The custom_id {line['custom_id']!r} is used more than once.")
            seen.add(line["custom_id"])
            model = (line.get("body") or {}).get("model")
            first_model = first_model or [model]
            if model != first_model[0]:
                bad(number, "mismatched_model", "Every request of a batch must use the same model.")
            for pattern, message in options["batch_invalid_lines"].items():
                if re.search(pattern, str(line["custom_id"])):
                    bad(number, "invalid_request", message)
            batch.lines.append(line)
        if errors:
            batch.lines = []
        return errors

    def _run(self, batch: _Batch, line: dict, options: dict) -> None:
        custom_id = str(line["custom_id"])
        self.server.stats.batch_lines[custom_id] += 1
        entry: dict[str, Any] = {"id": self._id("batch_req_"), "custom_id": custom_id}
        fault = next((what for pattern, what in options["batch_line_errors"].items()
                      if re.search(pattern, custom_id)), None)
        if isinstance(fault, str):  # a request the batch could not run at all
            batch.failures.append({**entry, "response": None,
                                   "error": {"code": fault, "message": f"The request failed ({fault})."}})
            return
        if fault is not None:
            status, body = int(fault), _fault_body(int(fault))
        elif batch.endpoint == "/v1/embeddings":
            status, body = _batch_embeddings(line["body"], options)
        else:
            status, body = _batch_chat(line["body"], options)
        response = {"status_code": status, "request_id": "req_" + hashlib.sha1(entry["id"].encode()).hexdigest()[:16],
                    "body": body}
        (batch.outputs if status == 200 else batch.failures).append({**entry, "response": response, "error": None})

    def _write_files(self, batch: _Batch, options: dict) -> None:
        for kind, lines in (("output", batch.outputs), ("error", batch.failures)):
            if not lines:
                continue
            ordered = list(lines)
            if options["batch_shuffle"]:  # the real API writes lines in no particular order
                random.Random(f"{options['seed']}:{batch.id}:{kind}").shuffle(ordered)
            data = b"".join(json.dumps(line).encode() + b"\n" for line in ordered)
            file = self._add_file(data, f"{batch.id}_{kind}.jsonl", "batch_output")
            setattr(batch, f"{kind}_file_id", file["id"])


class _Refused(Exception):
    def __init__(self, status: int, message: str, code: str | None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


def _batch_url(url: str) -> str:
    """"/chat/completions" (Azure's form) and "/v1/chat/completions" are the same endpoint."""
    return url if url.startswith("/v1/") else "/v1" + url


def _fault_body(status: int) -> dict:
    if status == 429:
        return _error("Rate limit reached. Please try again later.", "requests", "rate_limit_exceeded")
    if status >= 500:
        return _error("The server had an error while processing your request.", "server_error", None)
    if status == 404:
        return _error("The model does not exist or you do not have access to it.", "invalid_request_error",
                      "model_not_found")
    return _error("Invalid request.", "invalid_request_error", None)


def _batch_chat(body: dict, options: dict) -> tuple[int, dict]:
    """One batch line of /v1/chat/completions, answered as the synchronous endpoint answers it."""
    model = body.get("model")
    missing = _missing_model(model, options)
    if missing is not None:
        return 404, missing
    messages = body.get("messages") or []
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    prompt = _text_of(users[-1].get("content")) if users else ""
    prompt_tokens = sum(_words(_text_of(m.get("content"))) for m in messages if isinstance(m, dict))
    context = options["context_size"]
    if context is not None and prompt_tokens > context:
        return 400, {"error": {"code": 400, "type": "exceed_context_size_error",
                               "message": "the request exceeds the available context size, try increasing it",
                               "n_prompt_tokens": prompt_tokens, "n_ctx": context}}
    _pieces, finish, answer, usage = _completion(prompt, body, options, prompt_tokens)
    ident = "chatcmpl-" + hashlib.sha1(prompt.encode()).hexdigest()[:12]
    return 200, _chat_body(ident, int(time.time()), model, finish, answer, usage)


def _batch_embeddings(body: dict, options: dict) -> tuple[int, dict]:
    missing = _missing_model(body.get("model"), options)
    if missing is not None:
        return 404, missing
    texts = body.get("input")
    texts = [texts] if isinstance(texts, str) else list(texts or [])
    return 200, _embeddings_body(body, texts, options)


def _multipart(request: _Request) -> dict[str, tuple[str | None, bytes]]:
    """A multipart/form-data body: field name -> (file name or None, bytes)."""
    found = re.search(r'boundary="?([^";]+)"?', request.headers.get("content-type", ""))
    if not found:
        return {}
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in request.body.split(b"--" + found.group(1).encode())[1:]:
        if part.startswith(b"--"):
            break
        head, _, data = part.partition(b"\r\n\r\n")
        names = re.search(rb'name="([^"]*)"(?:; *filename="([^"]*)")?', head)
        if names:
            filename = names.group(2).decode() if names.group(2) is not None else None
            fields[names.group(1).decode()] = (filename, data[:-2] if data.endswith(b"\r\n") else data)
    return fields


def main() -> None:  # pragma: no cover - for benchmarks in another process
    parser = argparse.ArgumentParser(description="Run the fake OpenAI-compatible server in the foreground.")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args()
    server = FakeOpenAI(port=args.port).start()
    server.configure(latency=args.latency)
    print(f"listening on {server.base_url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":  # pragma: no cover
    main()
