"""How a cluster run cuts its selected rows into partitions, as it sends them.

Why cut late rather than all at once: the right size depends on what the run has seen.
- Every worker thread should have several partitions, and the last ones should end together:
  a partition is at most the rows left / (threads x PARTITIONS_PER_WORKER), so the partitions
  shrink towards the end of the run (10,000 rows as 5 partitions on 2 workers was 3 rounds for
  one of them while the other idled).
- A worker that dies loses the partition it was running: once partitions have come back, a
  partition holds about PARTITION_SECONDS of work at the rate they ran (a slow step's partitions
  are small, a fast step's are MAX_PARTITION_ROWS).
- None below MIN_PARTITION_ROWS: a task costs a few milliseconds to send and start.
Rows a partition did not finish (it paused) are sent again first, as they were.
"""

from __future__ import annotations

from collections import deque

MAX_PARTITION_ROWS = 2000
MIN_PARTITION_ROWS = 50
PARTITIONS_PER_WORKER = 4  # at least this many per worker thread for the rows left
PARTITION_SECONDS = 10.0   # about the work one partition holds, once the rate is known


class Cutter:
    def __init__(self, selection: list[int], threads: int, fixed: int = 0):
        self.selection = selection
        self.threads = max(1, threads)
        self.fixed = fixed             # rows per partition chosen by the caller (0: sized here)
        self.next = 0                  # the first row of `selection` not cut yet
        self.returned: deque[list[int]] = deque()
        self.rows_run = 0              # rows of partitions that came back, and their time on a worker
        self.seconds = 0.0

    def __bool__(self) -> bool:
        return bool(self.returned) or self.next < len(self.selection)

    def size(self) -> int:
        if self.fixed:
            return self.fixed
        left = len(self.selection) - self.next
        size = min(MAX_PARTITION_ROWS, -(-left // (self.threads * PARTITIONS_PER_WORKER)))
        if self.seconds > 0 and self.rows_run:
            size = min(size, int(self.rows_run / self.seconds * PARTITION_SECONDS))
        return max(MIN_PARTITION_ROWS, size)

    def take(self) -> list[int]:
        if self.returned:
            return self.returned.popleft()
        start = self.next
        self.next = min(len(self.selection), start + self.size())
        return self.selection[start:self.next]

    def give_back(self, rows: list[int]) -> None:
        self.returned.appendleft(rows)

    def ran(self, rows: int, seconds: float) -> None:
        self.rows_run += rows
        self.seconds += seconds

    def workers_changed(self, threads: int) -> None:
        self.threads = max(1, threads)
