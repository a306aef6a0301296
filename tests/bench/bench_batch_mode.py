"""Batch mode's figures for the README: the bundled model example (resources/examples/reviews-llm.batchgrid.json
over reviews.xlsx, 240 rows) against the test server as OpenAI (gpt-4o-mini at its list price), once with its
model steps one request per row and once with `batch` on them; the requests the server saw and the cost.

    python tests/bench/bench_batch_mode.py
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from batchgrid.core.pipeline import Pipeline  # noqa: E402
from batchgrid.core.providers.batches import PollPolicy  # noqa: E402
from batchgrid.core.run import batch_mode  # noqa: E402
from batchgrid.core.session import Session  # noqa: E402
from fake_openai import FakeOpenAI, _fill  # noqa: E402

EXAMPLES = ROOT / "resources" / "examples"


def reply(prompt: str, body: dict) -> str:
    """Answers a model could give: a label from the stars, the fields of the schema, a two-sentence reply."""
    if "Classify the text above" in prompt:
        stars = prompt.split("/5 stars")[0][-1:]
        return "negative" if stars in "12" else "neutral" if stars == "3" else "positive"
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        return json.dumps(_fill(fmt["json_schema"]["schema"], prompt))
    return "Thank you for taking the time to tell us about this. We are sorry it fell short and will put it right."


async def run(server: FakeOpenAI, batch: bool, folder: Path, cache: bool) -> dict:
    server.reset()
    server.configure(batch_seconds_per_stage=0, reply=reply)  # each poll finds the batches a stage further on
    pipeline = Pipeline.load(EXAMPLES / "reviews-llm.batchgrid.json")
    pipeline.providers = {"openai": {"preset": "openai", "base_url": server.base_url, "model": "gpt-4o-mini",
                                     "api_key_env": "BENCH_KEY"}}
    for step in pipeline.steps:
        if "batch" in step.config:
            step.config["batch"] = batch  # its fallbacks kept: they answer the rows the batch could not
    session = Session(journal_path=folder / "journal.sqlite", data_dir=folder, use_cache=cache)
    session.set_pipeline(pipeline)
    session.trust()
    await session.open_sheet(EXAMPLES / "reviews.xlsx")
    estimate = await session.estimate()
    await session.start()
    reason, message = await session.wait()
    assert reason == "finished", message
    stats = server.stats
    results = session.store.results
    errors = {r.error for r in results if r.status == "error"}
    assert not errors, errors
    out = {"rows": len(results), "done": sum(r.status == "done" for r in results),
           "cost": sum(r.cost for r in results), "projected": estimate.describe() if estimate else "",
           "chat requests": stats.by_path.get("/v1/chat/completions", 0), "batches": stats.batches_created,
           "requests": stats.requests, "batch lines": [b["request_counts"]["total"] for b in server.batches]}
    await session.close()
    return out


async def main() -> None:
    batch_mode.POLL = PollPolicy(first=0.01, factor=1.5, cap=0.05)
    os.environ["BENCH_KEY"] = "sk-test"
    for cache in (False, True):
        with FakeOpenAI() as server, tempfile.TemporaryDirectory() as tmp:
            sync = await run(server, False, Path(tmp) / "sync", cache)
            batched = await run(server, True, Path(tmp) / "batch", cache)
        print(f"response cache {'on' if cache else 'off'} (a fresh one); projected: {sync['projected']}; "
              f"in batch mode, projected: {batched['projected']}")
        for name, r in (("one request per row", sync), ("batch mode", batched)):
            print(f"  {name:20} {r['done']}/{r['rows']} rows done, ${r['cost']:.4f}; {r['chat requests']} chat "
                  f"requests, {r['batches']} batches (lines {r['batch lines']}), {r['requests']} HTTP requests in all")
        print(f"  batch mode costs {batched['cost'] / sync['cost']:.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
