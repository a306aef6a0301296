"""A SIGKILL never repeats a finished paid call: an answer that came back is durable (in the
response cache, or with the cache off in the journal) before its row moves on, so a resumed
run asks again only what was in flight at the kill.

Real processes (`python -m batchgrid.core.cli run ...`), real SQLite, the test server in this
process. The kills are event-driven on the server's counters: after N answers, either frozen
(hold every request, wait until all CONCURRENCY workers wait on a new held request: every
answer before is processed, and the in-flight prompts are exactly the held ones) or at a truly
random moment.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pandas as pd
import pytest

ROWS = 300
CONCURRENCY = 20
KEY_ENV = "BATCHGRID_TEST_KEY"


def wait_until(predicate, what: str, timeout: float = 60.0) -> None:
    """Until the server's counters say so (a safety timeout only: the wait is on the counters)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.001)


class CrashRun:
    def __init__(self, tmp, server, *, cache: bool):
        self.tmp, self.server, self.cache = tmp, server, cache
        self.pipeline = tmp / "llm.json"
        self.pipeline.write_text(json.dumps({
            "version": 1, "settings": {"max_attempts": 1},
            "providers": {"paid": {"base_url": server.base_url, "model": "gpt-4o-mini", "api_key_env": KEY_ENV}},
            "steps": [{"type": "llm", "prompt": "{text}", "output": "answer", "stream": False}]}))
        self.data = tmp / "rows.csv"
        self.data.write_text("text\n" + "".join(f"row {i}\n" for i in range(ROWS)))
        self.out = tmp / "out.csv"
        self.held: set[str] = set()

    def start(self, resume: bool) -> subprocess.Popen:
        args = [sys.executable, "-m", "batchgrid.core.cli", "run", str(self.pipeline), str(self.data),
                "-o", str(self.out), "--journal", str(self.tmp / "journal.sqlite"),
                "--max-concurrency", str(CONCURRENCY), "--quiet"]
        args += ["--resume"] if resume else []
        args += [] if self.cache else ["--no-cache"]
        return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                env=dict(os.environ, **{KEY_ENV: "k"}))

    def answered(self) -> Counter:
        return Counter(dict(self.server.stats.answered))

    def total_answered(self) -> int:
        return self.server.stats.statuses[200]

    def kill(self, proc: subprocess.Popen, after: int, *, frozen: bool) -> None:
        stats = self.server.stats
        wait_until(lambda: self.total_answered() >= after or proc.poll() is not None, f"{after} answers")
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        if frozen:
            self.server.configure(hold=True)
            # Every worker waits on a new (held) request: every answer before it has been processed.
            wait_until(lambda: stats.in_flight == CONCURRENCY, "every worker on a held request")
            asked, answered = Counter(dict(stats.per_prompt)), self.answered()
            abandoned = {p for p in asked if asked[p] > answered[p]}
            self.held |= abandoned
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
        self.server.configure(hold=False)
        wait_until(lambda: stats.in_flight == 0, "the killed run's requests to end")

    def finish(self) -> None:
        proc = self.start(resume=True)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert "Traceback" not in err
        table = pd.read_csv(self.out)
        assert list(table["answer"]) == [f"echo: row {i}" for i in range(ROWS)]  # every row its own answer
        assert list(table["status"]) == ["done"] * ROWS


@pytest.mark.parametrize("cache", [True, False], ids=["cache", "no-cache"])
def test_a_frozen_kill_repeats_no_finished_paid_call(tmp_path, fake_openai, cache):
    run = CrashRun(tmp_path, fake_openai, cache=cache)
    fake_openai.configure(latency=0.002)
    for n, after in enumerate((20, 100, 200)):
        run.kill(run.start(resume=n > 0), after, frozen=True)
    run.finish()
    answered = run.answered()
    assert set(answered) == {f"row {i}" for i in range(ROWS)}
    repeated = {p: k for p, k in answered.items() if k > 1}
    assert {p: k for p, k in repeated.items() if p not in run.held} == {}  # only held prompts may repeat
    assert len(run.held) == 3 * CONCURRENCY


def test_a_kill_at_a_random_moment_repeats_only_calls_in_flight(tmp_path, fake_openai):
    run = CrashRun(tmp_path, fake_openai, cache=True)
    kills = (20, 100, 200)
    for n, after in enumerate(kills):
        run.kill(run.start(resume=n > 0), after, frozen=False)
    run.finish()
    answered = run.answered()
    assert set(answered) == {f"row {i}" for i in range(ROWS)}
    repeats = sum(k - 1 for k in answered.values())
    assert repeats <= CONCURRENCY * len(kills), f"{repeats} finished paid calls made again over {len(kills)} kills"
