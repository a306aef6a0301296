"""A model server restarting mid-run (issue 10): the run waits for it and finishes every row.

llama-server killed and back a little later: the test server's go_down() / come_back(). Before
its first answer a refused connection is a setup error (one line, the same in every row); after
it, the provider says ServerUnreachable and the engine waits (core/run/engine.py, server_turn).
"""

from __future__ import annotations

import asyncio

from batchgrid.core.run import events as ev
from batchgrid.core.run.engine import RetryPolicy
from models_support import prompts

LLM = {"type": "llm", "prompt": "{text}", "stream": False}


async def test_a_server_restart_mid_run_ends_with_every_row_done(models):
    server = models.server
    server.configure(latency=0.005)
    policy = RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.05, server_retry_cap=0.1)
    run = models.engine([LLM], prompts(120), max_concurrency=8, retry_policy=policy)
    waiting: list = []
    back = asyncio.Event()
    run.engine.subscribe(lambda e: isinstance(e, ev.RunWaiting) and waiting.append(e))
    run.engine.subscribe(lambda e: isinstance(e, ev.ServerBack) and back.set())
    task = asyncio.ensure_future(run.engine.run())
    assert await server.wait_for(lambda s: sum(s.answered.values()) >= 20, timeout=30)
    server.go_down()
    while len(waiting) < 3:  # the run waits: probes a few times, one at a time
        await asyncio.sleep(0.01)
        assert not task.done(), run.errors()[:3]
    server.come_back()
    await asyncio.wait_for(back.wait(), 30)
    await task
    assert run.statuses() == ["done"] * 120, run.errors()[:3]
    assert run.outputs("answer") == [f"echo: row {i}" for i in range(120)]
    assert waiting[0].url.startswith(server.url)
    assert "waiting for the server at" in waiting[0].describe()
    assert run.engine.progress.waiting == ""
