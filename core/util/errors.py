"""Errors that carry a message meant for the user, not a traceback."""

from __future__ import annotations

from collections.abc import Iterable

from .problems import Problem


class BatchgridError(Exception):
    """Base for every error Batchgrid reports to the user as one readable line."""


class StepError(BatchgridError):
    """A row failed in a step for a reason retrying cannot fix (bad input, 400, 401, bad output).

    `raw` keeps whatever the step got back (a model's unparseable reply, say) so the
    user can see it in the row instead of losing it.
    """

    def __init__(self, message: str, *, raw: str | None = None):
        super().__init__(message)
        self.raw = raw


class RetryableError(BatchgridError):
    """A transient failure (429, 5xx, timeout, connection reset): the engine may retry.

    `retry_after` is the server's own hint in seconds, honoured over our backoff.
    `rate_limited` marks a 429, which slows the whole provider, not just this row.
    """

    def __init__(self, message: str, *, retry_after: float | None = None, rate_limited: bool = False):
        super().__init__(message)
        self.retry_after = retry_after
        self.rate_limited = rate_limited


class ServerUnreachable(RetryableError):
    """A server that has already answered in this run now refuses connections (it is restarting):
    the run waits for it, retrying with a capped backoff, instead of failing the rest of the
    sheet. Before a server's first answer a refused connection is a setup error, not this.
    `url` is the server's address, for "waiting for the server at ..."."""

    def __init__(self, message: str, *, url: str, retry_after: float | None = None):
        super().__init__(message, retry_after=retry_after)
        self.url = url


class PipelineError(BatchgridError):
    """The pipeline is invalid. `problems` lists every problem, each with where it is (data:
    a step path and a parameter); `messages()` gives them as the CLI prints them, one a line.
    `str(error)` is the first line, and how many more there are."""

    def __init__(self, problems: Iterable[Problem | str]):
        self.problems = [p if isinstance(p, Problem) else Problem(str(p)) for p in problems]
        first = str(self.problems[0]) if self.problems else "the pipeline is invalid"
        more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        super().__init__(first + more)

    def messages(self) -> list[str]:
        return [str(p) for p in self.problems]


class UntrustedError(BatchgridError):
    """The pipeline wants what only a pipeline the user trusts may do (run Python code, read an
    environment variable outside a header value, read a file outside its folder), and the user
    has not said they trust it. `lines`: what it wants, one line each, where it is first."""

    def __init__(self, message: str, lines: Iterable[str] = ()):
        super().__init__(message)
        self.lines = list(lines)


UntrustedCodeError = UntrustedError  # its name from when only Python code needed trust


class InputError(BatchgridError):
    """An input file could not be used (missing, unreadable, not a spreadsheet...)."""


class SetupError(BatchgridError):
    """Something outside the pipeline must be set up first (an API key, a model server)."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))
