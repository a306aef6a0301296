"""Batch mode on Azure OpenAI (issue 13, part 2), end to end through the session: the files and
batches go to Azure's /openai/files and /openai/batches with its api-version and api-key header,
each line names the deployment, and the answers come back by custom_id at the batch price."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from batchgrid.core.pipeline import Pipeline
from batchgrid.core.providers.prices import PriceTable
from batchgrid.core.session import Session
from models_support import KEY
from test_batch_mode import outputs, quick_polls, submitted, when  # noqa: F401 (quick_polls: a fixture)


async def test_an_azure_step_in_batch_mode_runs_through_azure_s_batch_api(tmp_path, fake_openai, monkeypatch):
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", KEY)
    fake_openai.configure(api_key=KEY)
    session = Session(journal_path=tmp_path / "journal.sqlite", data_dir=tmp_path / "data")
    session.set_pipeline(Pipeline.from_dict({"version": 1, "providers": {
        "az": {"preset": "azure", "base_url": fake_openai.url, "model": "gpt-4o-mini"}}, "steps": [
        {"type": "llm", "prompt": "review {text}", "batch": True}]}))
    sheet = tmp_path / "sheet.csv"
    pd.DataFrame({"text": [f"t{i}" for i in range(4)]}).to_csv(sheet, index=False)
    await session.open_sheet(sheet)
    assert session.problems() == []
    estimate = await session.estimate()
    assert "at the batch price" in estimate.describe()  # Azure's batch price is half, as OpenAI's
    waiting = when(session, submitted)
    await session.start()
    assert (await waiting).line.startswith("batch submitted just now: 0 of 4 done at the provider")
    fake_openai.finish_batches()
    assert await session.wait() == ("finished", "")
    assert outputs(session, "answer") == [f"echo: review t{i}" for i in range(4)]
    assert fake_openai.stats.batches_created == 1 and fake_openai.stats.by_path.get("/v1/chat/completions", 0) == 0
    assert KEY in fake_openai.stats.authorizations  # Azure's api-key header
    batch = fake_openai.batches[0]
    lines = [json.loads(x) for x in fake_openai.file_content(batch["input_file_id"]).splitlines()]
    assert {x["url"] for x in lines} == {"/chat/completions"}  # Azure names the endpoint without /v1
    assert {x["body"]["model"] for x in lines} == {"gpt-4o-mini"}  # the deployment
    result = session.store.results[0]
    full = PriceTable().cost("gpt-4o-mini", result.tokens_in, result.tokens_out)
    assert result.cost == pytest.approx(full / 2) and full > 0
    await session.close()
