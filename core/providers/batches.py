"""Batch mode: one model step's requests for many rows through the provider's Batch API, at its batch price.

    client = BatchClient(profile, key, prices=prices)
    record = await client.submit("2", [(row, request), ...], on_record=save)  # upload, create
    await client.wait(record, on_progress=show)                               # poll until done
    outcomes = await client.collect(record)                                   # per row, input order

The openai SDK's own `files` and `batches` resources do the HTTP (the client is built as the
synchronous path builds it: client.make_client). The requests are the ones the step would send
one by one; each JSONL line's custom_id is "{row}:{step}" (batch_file.py). Above the provider's
limits (50,000 requests or 200 MB a batch) they are split into several batches.

Everything a later process needs to carry on is the `BatchRecord`: a small JSON-able record of the
batch ids, file ids, which rows each batch holds (as [first, last] runs), when it was submitted,
and the last progress seen. `on_record` is called whenever it changes (after each batch is
created, before the next upload; after a poll that saw progress): the run journal keeps it
(Journal.save_batch), so closing the app or rebooting loses nothing: a new client given the
record polls and collects without submitting anything again.

Waiting is a poll with a backoff (a few seconds, growing to a minute) that asyncio cancellation
ends at once; the batches go on at the provider. `cancel` is what cancels them there (the rows
already done are still collected: they are paid for). While the provider cannot be reached
(offline, a 5xx, a rate limit) polling goes on and the progress says why.

Per row: the answer's body (a chat completion or an embeddings list, as the synchronous endpoint
answers), or an error in the words of the synchronous path (errors.map_error on the line's own
status and body); tokens from the line's usage, cost at the batch price (prices.BATCH_DISCOUNT).
A row with no line in either file is an error saying why (the batch expired, was cancelled...).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from batchgrid.core.util.errors import RetryableError, StepError
from batchgrid.core.util.http import http

from .batch_file import (
    DEFAULT_LIMITS,
    MAX_BYTES,
    MAX_REQUESTS,
    BatchLimits,
    chunks,
    expand,
    parse_custom_id,
    ranges,
    result_lines,
)
from .errors import map_error, server_message
from .prices import PriceTable, batch_discount
from .profiles import Profile

if TYPE_CHECKING:  # pragma: no cover
    import openai

log = logging.getLogger(__name__)
__all__ = ["MAX_BYTES", "MAX_REQUESTS", "BatchClient", "BatchLimits", "BatchPart", "BatchProgress", "BatchRecord",
           "PollPolicy", "RowOutcome", "batch_support"]

CHAT = "/v1/chat/completions"
EMBEDDINGS = "/v1/embeddings"
ENDPOINTS = (CHAT, EMBEDDINGS)
FINISHED = ("completed", "failed", "expired", "cancelled")
# Where a batch is, in words, while it is not finished
STAGE_WORDS = {"validating": "the provider is checking the batch", "finalizing": "the provider is writing the results",
               "cancelling": "the provider is cancelling the batch"}
MISSING = {  # a row with no line in either file, by how its batch ended
    "expired": "the batch expired before this row was done",
    "cancelled": "the batch was cancelled before this row was done",
    "completed": "the batch finished without an answer for this row",
}


def batch_support(profile: Profile) -> str:
    """'' when the profile's provider has a Batch API, else why not (one line)."""
    if profile.preset.local:
        return (f"{profile.preset.title} at {profile.base_url} has no batch API (and costs nothing): "
                "run the step without batch mode")
    if batch_discount(profile.preset.name) == 0:
        return f"{profile.preset.title} has no batch API that Batchgrid can use: run the step without batch mode"
    return ""


@dataclass(frozen=True)
class PollPolicy:
    first: float = 5.0     # seconds before the first question
    factor: float = 1.5    # the wait grows while nothing changes...
    cap: float = 60.0      # ...up to a minute


DEFAULT_POLL = PollPolicy()


# ---- the record: all a later process needs ----------------------------------------------------
@dataclass
class BatchPart:
    """One batch at the provider."""

    batch_id: str
    input_file_id: str
    rows: list[list[int]]          # [first, last] runs of row numbers, in input order
    requests: int
    status: str = "validating"
    completed: int = 0
    failed: int = 0
    output_file_id: str | None = None
    error_file_id: str | None = None
    error: str = ""                # why the provider refused the whole batch (status failed)

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


@dataclass
class BatchRecord:
    provider: str                  # the profile's name
    base_url: str                  # where the batches are (a resume elsewhere is refused)
    endpoint: str                  # CHAT or EMBEDDINGS
    model: str
    step: str                      # the step's key in custom_ids
    created: float                 # time.time() of the submission
    parts: list[BatchPart] = field(default_factory=list)
    cancelled: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BatchRecord:
        parts = [BatchPart(**p) for p in data.get("parts", [])]
        return cls(**{**dict(data), "parts": parts})

    def rows(self) -> list[int]:
        return [row for part in self.parts for row in expand(part.rows)]

    @property
    def finished(self) -> bool:
        return all(part.finished for part in self.parts)

    def progress(self, note: str = "") -> BatchProgress:
        unfinished = [p.status for p in self.parts if not p.finished]
        order = ("validating", "in_progress", "cancelling", "finalizing")
        status = min(unfinished, key=lambda s: order.index(s) if s in order else 0) if unfinished else "finished"
        return BatchProgress(total=sum(p.requests for p in self.parts), completed=sum(p.completed for p in self.parts),
                             failed=sum(p.failed for p in self.parts), status=status, created=self.created,
                             batches=len(self.parts), note=note)


@dataclass(frozen=True)
class BatchProgress:
    total: int
    completed: int
    failed: int
    status: str          # the least advanced unfinished batch's status, or "finished"
    created: float
    batches: int
    note: str = ""       # why polling is not getting through, when it is not

    @property
    def finished(self) -> bool:
        return self.status == "finished"

    def describe(self, now: float | None = None) -> str:
        """"batch submitted 2 h ago: 41,200 of 50,000 done at the provider"."""
        age = ago((time.time() if now is None else now) - self.created)
        what = "batch" if self.batches <= 1 else f"{self.batches} batches"
        line = f"{what} submitted {age}: {self.completed + self.failed:,} of {self.total:,} done at the provider"
        if self.failed:
            line += f" ({self.failed:,} failed)"
        if self.status in STAGE_WORDS:
            line += f"; {STAGE_WORDS[self.status]}"
        return line + (f"; {self.note}" if self.note else "")


def ago(seconds: float) -> str:
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86_400 * 2:
        return f"{int(seconds // 3600)} h ago"
    return f"{int(seconds // 86_400)} days ago"


@dataclass
class RowOutcome:
    """One row's result: `body` (the endpoint's answer) or `error` (one line)."""

    row: int
    body: dict[str, Any] | None = None
    error: str = ""
    retryable: bool = False   # the provider failed this row for a passing reason (a 5xx, a 429, expiry)
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float = 0.0


# ---- the client ----------------------------------------------------------------------------------
class BatchClient:
    def __init__(self, profile: Profile, key: str | None, *, prices: PriceTable | None = None,
                 limits: BatchLimits = DEFAULT_LIMITS, poll: PollPolicy = DEFAULT_POLL,
                 client: openai.AsyncOpenAI | None = None):
        from .client import make_client

        self.profile = profile
        self._key = key
        self.prices = prices if prices is not None else PriceTable()
        self.limits = limits
        self.poll = poll
        self.client = client if client is not None else make_client(profile, key, in_flight=4)

    async def aclose(self) -> None:
        await self.client.close()

    async def __aenter__(self) -> BatchClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ---- submitting ---------------------------------------------------------------------------
    async def submit(self, step: str, requests: Iterable[tuple[int, dict[str, Any]]], *, endpoint: str = CHAT,
                     record: BatchRecord | None = None, tag: str = "",
                     on_record: Callable[[BatchRecord], None] | None = None) -> BatchRecord:
        """Upload the requests (row, request body) and create their batches; a `record` given
        (a resumed submission) gets the new batches added. `on_record` is called after each batch
        is created, so a crash between two uploads loses at most the batch being made; `tag` (the
        run's id) marks the batches at the provider so that one can be found again (`adopt`)."""
        why = batch_support(self.profile)
        if why:
            raise StepError(why)
        if endpoint not in ENDPOINTS:
            raise ValueError(f"batch endpoint {endpoint!r} is not one of {ENDPOINTS}")
        requests = list(requests)
        models = {str(body.get("model")) for _, body in requests}
        if len(models) > 1:  # the providers take one model per batch
            raise StepError(f"a batch takes one model; these requests name {', '.join(sorted(models))}")
        if record is None:
            record = BatchRecord(self.profile.name, self.profile.base_url, endpoint, models.pop() if models else "",
                                 step, time.time())
        url = self._wire(endpoint)
        for chunk in chunks(requests, step, url, self.limits):
            first, last = chunk.rows[0], chunk.rows[-1]
            name = f"batchgrid-step-{step}-rows-{first}-{last}.jsonl"
            file = await self._call("uploading the batch's requests",
                                    self.client.files.create(file=(name, bytes(chunk.data)), purpose="batch"))
            batch = await self._call("creating the batch", self.client.batches.create(
                input_file_id=file.id, endpoint=url, completion_window="24h",  # type: ignore[arg-type]
                metadata={"batchgrid_step": step[:500], "batchgrid_rows": f"{first}-{last}",
                          **({"batchgrid_tag": tag[:500]} if tag else {})}))
            record.parts.append(BatchPart(batch.id, file.id, ranges(chunk.rows), len(chunk.rows), batch.status))
            if on_record is not None:
                on_record(record)
        return record

    async def adopt(self, record: BatchRecord, tag: str, *, newest: int = 100) -> int:
        """Add to `record` the batches of its step and `tag` that the provider has and the record
        lacks (created just before a crash, never saved), so that a resume does not submit (and pay
        for) their rows again. Looks at the provider's `newest` batches; returns how many it added."""
        self._check_record(record)
        known = {part.batch_id for part in record.parts}
        page = await self._call("looking for batches already submitted", self.client.batches.list(limit=newest),
                                answered=True)
        found = [b for b in page.data if b.id not in known and b.status != "failed"
                 and (b.metadata or {}).get("batchgrid_tag") == tag[:500]
                 and (b.metadata or {}).get("batchgrid_step") == record.step[:500]]
        for batch in reversed(found):  # oldest first, as they were submitted
            content = await self._call("reading a batch's requests", self.client.files.content(batch.input_file_id),
                                       answered=True)
            rows = [ids[0] for ids in (parse_custom_id(line.get("custom_id", ""))
                                       for line in result_lines(content.content)) if ids is not None]
            record.parts.append(BatchPart(batch.id, batch.input_file_id, ranges(rows), len(rows), batch.status))
        return len(found)

    def _wire(self, endpoint: str) -> str:
        """The endpoint as this provider names it in a batch: Azure drops the /v1."""
        return endpoint.removeprefix("/v1") if self.profile.is_azure else endpoint

    # ---- waiting ------------------------------------------------------------------------------
    async def refresh(self, record: BatchRecord) -> bool:
        """Ask the provider where each unfinished batch is; True when anything changed."""
        self._check_record(record)
        changed = False
        for part in record.parts:
            if part.finished:
                continue
            batch = await self._call("asking how the batch is going", self.client.batches.retrieve(part.batch_id),
                                     answered=True)
            counts = batch.request_counts
            before = (part.status, part.completed, part.failed)
            part.status = batch.status
            if counts is not None and counts.total:
                part.completed, part.failed = counts.completed, counts.failed
            part.output_file_id = batch.output_file_id or part.output_file_id
            part.error_file_id = batch.error_file_id or part.error_file_id
            if batch.status == "failed":
                errors = batch.errors.data if batch.errors and batch.errors.data else []
                part.error = "; ".join(_batch_error(e) for e in errors[:3]) or "no reason given"
            changed = changed or before != (part.status, part.completed, part.failed)
        return changed

    async def wait(self, record: BatchRecord, *, on_progress: Callable[[BatchProgress], None] | None = None,
                   on_record: Callable[[BatchRecord], None] | None = None) -> BatchProgress:
        """Poll until every batch is finished. Cancelling the task ends the wait at once (the
        batches go on at the provider: `cancel` is what stops them there)."""
        delay = self.poll.first
        while True:
            note = ""
            try:
                changed = await self.refresh(record)
            except RetryableError as exc:  # offline, a 5xx, a rate limit: the batch goes on meanwhile
                changed, note = False, f"cannot reach the provider ({exc}); asking again in {delay:g} s"
            if changed and on_record is not None:
                on_record(record)
            progress = record.progress(note)
            if on_progress is not None:
                on_progress(progress)
            if progress.finished:
                return progress
            await asyncio.sleep(delay)
            if not changed:
                delay = min(self.poll.cap, delay * self.poll.factor)

    async def cancel(self, record: BatchRecord, *, on_record: Callable[[BatchRecord], None] | None = None) -> None:
        """Cancel the unfinished batches at the provider. Rows already done stay collectable."""
        self._check_record(record)
        import openai

        record.cancelled = True
        for part in record.parts:
            if part.finished:
                continue
            try:
                batch = await self._call("cancelling the batch", self.client.batches.cancel(part.batch_id),
                                         answered=True, passing=(openai.BadRequestError, openai.ConflictError))
            except (openai.BadRequestError, openai.ConflictError):  # it finished meanwhile
                continue
            part.status = batch.status
        if on_record is not None:
            on_record(record)

    # ---- collecting ---------------------------------------------------------------------------
    async def collect(self, record: BatchRecord,
                      requests: Mapping[int, dict[str, Any]] | None = None) -> list[RowOutcome]:
        """Every row's outcome, in the record's (input) order, once its batches are finished.
        `requests` (row -> request body), when given, lets errors say which feature was refused."""
        self._check_record(record)
        unfinished = [p.batch_id for p in record.parts if not p.finished]
        if unfinished:
            raise StepError(f"the batch {unfinished[0]} is not finished yet; wait for it first")
        requests = requests or {}
        outcomes: list[RowOutcome] = []
        for part in record.parts:
            lines: dict[int, dict[str, Any]] = {}
            for file_id in (part.output_file_id, part.error_file_id):
                if not file_id:
                    continue
                content = await self._call("downloading the batch's results", self.client.files.content(file_id),
                                           answered=True)
                for line in result_lines(content.content):
                    found = parse_custom_id(line.get("custom_id", ""))
                    if found is not None and found[1] == record.step:
                        lines[found[0]] = line
            for row in expand(part.rows):
                answer = lines.get(row)
                if answer is not None:
                    outcomes.append(self._outcome(record, row, answer, requests.get(row)))
                elif part.status == "failed":
                    outcomes.append(RowOutcome(row, error=f"the provider refused the batch: {part.error}"))
                else:
                    outcomes.append(RowOutcome(row, error=MISSING.get(part.status, MISSING["completed"]),
                                               retryable=part.status == "expired"))
        return outcomes

    async def run(self, step: str, requests: Iterable[tuple[int, dict[str, Any]]], *, endpoint: str = CHAT,
                  on_record: Callable[[BatchRecord], None] | None = None,
                  on_progress: Callable[[BatchProgress], None] | None = None) -> list[RowOutcome]:
        """Submit, wait and collect: the whole of one step's batch."""
        requests = list(requests)
        record = await self.submit(step, requests, endpoint=endpoint, on_record=on_record)
        await self.wait(record, on_progress=on_progress, on_record=on_record)
        return await self.collect(record, dict(requests))

    def _outcome(self, record: BatchRecord, row: int, line: dict[str, Any],
                 request: dict[str, Any] | None) -> RowOutcome:
        response = line.get("response") if isinstance(line.get("response"), dict) else None
        status = response.get("status_code") if response else None
        body = response.get("body") if response else None
        if status == 200 and isinstance(body, dict):
            usage = body.get("usage") or {}
            tokens_in = int(usage.get("prompt_tokens") or 0)
            tokens_out = int(usage.get("completion_tokens") or 0)
            cost = self.prices.batch_cost(record.model, tokens_in, tokens_out, preset=self.profile.preset.name,
                                          local=self.profile.preset.local)
            return RowOutcome(row, body, tokens_in=tokens_in, tokens_out=tokens_out, cost=cost)
        if isinstance(status, int):
            error = map_error(_status_error(status, body, self.profile.base_url + record.endpoint), self.profile,
                              record.model, self._key, answered=True, request=request, path=record.endpoint)
            return RowOutcome(row, error=str(error), retryable=isinstance(error, RetryableError))
        raw_error = line.get("error")
        error_info: dict[str, Any] = raw_error if isinstance(raw_error, dict) else {}
        code = str(error_info.get("code") or "")
        if code == "batch_expired":
            return RowOutcome(row, error=MISSING["expired"], retryable=True)
        message = " ".join(str(error_info.get("message") or "no reason given").split())[:300]
        return RowOutcome(row, error=f"the provider did not run this row: {message}" + (f" ({code})" if code else ""))

    # ---- errors -------------------------------------------------------------------------------
    def _check_record(self, record: BatchRecord) -> None:
        if record.base_url.rstrip("/") != self.profile.base_url.rstrip("/"):
            raise StepError(f"this batch was submitted to {record.base_url}, but provider {self.profile.name!r} "
                            f"is now at {self.profile.base_url}: point it back there to collect the results")

    async def _call(self, doing: str, call: Any, *, answered: bool = False, passing: tuple = ()) -> Any:
        """Await an SDK call; its failure in words ("creating the batch: ..."), retryable or not."""
        import openai

        try:
            return await call
        except passing:
            raise
        except openai.OpenAIError as exc:
            if isinstance(exc, openai.NotFoundError) and not answered:
                raise StepError(f"{doing}: the server at {self.profile.base_url} has no batch API "
                                f"(HTTP 404: {server_message(exc)})") from None
            if isinstance(exc, openai.NotFoundError):
                raise StepError(f"{doing}: the provider no longer has it (HTTP 404: {server_message(exc)}); "
                                "was it deleted, or is this another account's key?") from None
            error = map_error(exc, self.profile, "", self._key, answered=answered, path="/batches")
            if isinstance(error, RetryableError):
                raise RetryableError(f"{doing}: {error}", retry_after=error.retry_after) from None
            raise StepError(f"{doing}: {error}") from None


def _batch_error(error: Any) -> str:
    line = f" (line {error.line})" if getattr(error, "line", None) else ""
    return f"{error.message or error.code}{line}"


def _status_error(status: int, body: Any, url: str) -> openai.APIStatusError:
    """A batch line's non-200 answer as the SDK would have raised it, so it maps to the same words."""
    import openai

    response = http.Response(status, json=body, request=http.Request("POST", url))
    inner = body.get("error") if isinstance(body, dict) else None
    message = inner.get("message") if isinstance(inner, dict) else None
    return openai.APIStatusError(str(message or f"HTTP {status}"), response=response, body=body)
