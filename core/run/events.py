"""What the engine tells the world while it runs. Front ends subscribe; nothing calls widgets.

Listeners are plain callables run on the engine's event loop thread. They must be quick:
the GUI coalesces events into table updates on a timer, the CLI redraws a progress bar.

Secrets are hidden where results are made (core/util/secrets.py): a row's error, its traces'
errors and details, retry reasons and the run's message are redacted, and its output cells
(and streamed text) hold no remembered secret, so nothing downstream (the table, the journal, exports, the
inspector, the CLI) ever holds one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from batchgrid.core.util import secrets

if TYPE_CHECKING:  # events stay cheap to import: only the type is needed
    from batchgrid.core.steps.tree import StepPath

# Row statuses, as the results table and the export show them.
QUEUED = "queued"
RUNNING = "running"
RETRYING = "retrying"
DONE = "done"
ERROR = "error"
CANCELLED = "cancelled"


@dataclass(slots=True)
class StepTrace:
    """What one step did in one row, for the row inspector.

    `step` is the label the step ran under; `path` where it was in the pipeline that ran
    (the inspector finds the step by it, so an edit after the run cannot mislead it).
    """

    step: str
    seconds: float
    attempts: int = 1
    error: str = ""
    details: dict[str, Any] | None = None  # model steps: the request sent and the raw reply
    path: StepPath = ()  # () : not known (a journal written before paths were kept)

    def __post_init__(self) -> None:
        if not isinstance(self.path, tuple):  # read back from JSON, a path is a list
            self.path = tuple(self.path)
        if self.error:
            self.error = secrets.redact(self.error)
        if self.details:
            self.details = secrets.redact_value(self.details)


@dataclass(slots=True)
class RowResult:
    index: int
    status: str
    outputs: dict[str, Any]
    error: str = ""
    error_type: str = ""
    failed_step: str = ""
    attempts: int = 1
    latency: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float = 0.0
    cached: int = 0  # calls answered from the response cache
    trace: list[StepTrace] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.error:
            self.error = secrets.redact(self.error)
        self.outputs = secrets.redact_cells(self.outputs)

    @property
    def tokens(self) -> int:
        return self.tokens_in + self.tokens_out

    @property
    def note(self) -> str:
        """What the user should know about a row that finished (an answer cut off at the token
        limit): its steps' warnings, each after its step's label."""
        return "; ".join(f"{t.step}: {t.details['warning']}" for t in self.trace
                         if t.details and t.details.get("warning"))


@dataclass(slots=True)
class RunStarted:
    total: int       # rows in the table
    selected: int    # rows this run will try


@dataclass(slots=True)
class RowStarted:
    index: int


@dataclass(slots=True)
class RowPartial:
    """Streamed output: `text` is everything received so far for `column`."""

    index: int
    column: str
    text: str

    def __post_init__(self) -> None:
        self.text = secrets.redact_known(self.text)


@dataclass(slots=True)
class RowRetrying:
    index: int
    step: str
    attempt: int       # the attempt that will be made next
    max_attempts: int  # 0: a rate limit's wait, which spends none of the row's attempts
    delay: float
    reason: str

    def __post_init__(self) -> None:
        self.reason = secrets.redact(self.reason)

    def describe(self) -> str:
        if not self.max_attempts:
            return f"rate limited, retrying in {self.delay:.0f} s: {self.reason}"
        return f"retrying ({self.attempt}/{self.max_attempts}) in {self.delay:.0f} s: {self.reason}"


@dataclass(slots=True)
class RowFinished:
    """A row reached an end state; see `result.status` (done, error or cancelled)."""

    index: int
    result: RowResult


class RowDone(RowFinished):
    __slots__ = ()


class RowFailed(RowFinished):
    __slots__ = ()


class RowCancelled(RowFinished):
    __slots__ = ()


@dataclass(slots=True)
class RunWaiting:
    """A server that answered earlier in this run refuses connections (a restart): its rows wait
    for it, spending none of their attempts, and it is tried again in `retry_in` seconds."""

    url: str
    retry_in: float
    silent_for: float = 0.0  # seconds since it last answered

    def describe(self) -> str:
        return f"waiting for the server at {self.url} (retrying in {self.retry_in:.0f} s)"


@dataclass(slots=True)
class ServerBack:
    """The server the run was waiting for answers again: its rows go on."""

    url: str


@dataclass(slots=True)
class RunPaused:
    """The run starts no new row until it is resumed. `reason` (one line) when the engine paused
    itself; `kind` says why, for a front end's hint: "budget", "failures" (the same error again
    and again), "server" (silent too long) or "wait" (a server asked for a longer wait than we
    wait on our own); "" when the user paused it."""

    reason: str = ""
    kind: str = ""

    def __post_init__(self) -> None:
        self.reason = secrets.redact(self.reason)


@dataclass(slots=True)
class RunResumed:
    pass


@dataclass(slots=True)
class RunFinished:
    reason: str   # "finished", "stopped" or "failed" (the run itself, not a row, failed)
    summary: Any  # engine.Progress
    message: str = ""

    def __post_init__(self) -> None:
        self.message = secrets.redact(self.message)


Listener = Callable[[object], None]


@dataclass(slots=True)
class BatchWaiting:
    """A step in batch mode waits for its rows' batches at the provider (core/run/batch_mode.py):
    `line` says how far they are ("batch submitted 2 h ago: 41,200 of 50,000 done at the provider");
    "" once the wait is over."""

    step: str
    line: str
