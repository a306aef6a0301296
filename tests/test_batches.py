"""Batch mode's core (core/providers/batches.py) against the test server's Batch API over real HTTP:
submit, the stages, results joined back in input order, per-row errors in the synchronous path's words,
splitting, cancel, expiry, a resume from the journal without submitting again, the batch price."""

from __future__ import annotations

import asyncio
import json
import sqlite3

import openai
import pytest
from batchgrid.core.providers.batch_file import BatchLimits, chunks, custom_id, parse_custom_id, ranges
from batchgrid.core.providers.batches import (
    EMBEDDINGS,
    BatchClient,
    BatchProgress,
    BatchRecord,
    PollPolicy,
    batch_support,
)
from batchgrid.core.providers.client import embedding_request
from batchgrid.core.providers.errors import map_error
from batchgrid.core.providers.prices import PriceTable, batch_discount
from batchgrid.core.providers.profiles import resolve_profile
from batchgrid.core.run.journal import Journal
from batchgrid.core.steps import new_step
from batchgrid.core.util.errors import StepError
from models_support import KEY, profile

FAST = PollPolicy(first=0.001, factor=2, cap=0.01)
STEP = "1"  # the step's key in custom_ids: the second top-level step


@pytest.fixture
def test_profile(fake_openai):
    fake_openai.configure(api_key=KEY)
    return resolve_profile("test", profile(fake_openai), environ={})


@pytest.fixture
async def batches(test_profile):
    async with BatchClient(test_profile, KEY, poll=FAST) as client:
        yield client


def llm_requests(test_profile, n, prompt="review {i}: {text}"):
    """Each row's request exactly as the LLM step builds it for the synchronous path."""
    step = new_step("llm", prompt=prompt.replace("{i}", "{row}"))
    return [(i, step.request_for({"row": i, "text": f"words of row {i}"}, test_profile)) for i in range(n)]


async def finish(fake_openai, client, record, **wait):
    """Run the batches to their end at the server, then the client's wait (which returns at once)."""
    fake_openai.finish_batches()
    return await client.wait(record, **wait)


async def test_rows_go_as_one_batch_and_come_back_in_input_order_at_the_batch_price(fake_openai, batches,
                                                                                     test_profile):
    requests = llm_requests(test_profile, 6)
    record = await batches.submit(STEP, requests)
    assert len(record.parts) == 1 and record.parts[0].rows == [[0, 5]] and record.model == "gpt-4o-mini"
    assert fake_openai.stats.batches_created == 1 and KEY in " ".join(fake_openai.stats.authorizations)
    sent = [json.loads(x) for x in fake_openai.file_content(record.parts[0].input_file_id).splitlines()]
    assert [x["custom_id"] for x in sent] == [f"{i}:1" for i in range(6)]
    assert sent[2]["body"] == requests[2][1] and sent[2]["url"] == "/v1/chat/completions"

    stages = []
    for _ in range(3):
        fake_openai.advance_batches()
        await batches.refresh(record)
        stages.append((record.progress().status, record.progress().completed))
    assert stages == [("in_progress", 0), ("finalizing", 6), ("finished", 6)]
    progress = await batches.wait(record)
    assert progress.finished and progress.total == 6
    outcomes = await batches.collect(record)
    assert [o.row for o in outcomes] == list(range(6))  # the server wrote them shuffled
    assert all(not o.error for o in outcomes)
    assert outcomes[3].body["choices"][0]["message"]["content"] == "echo: review 3: words of row 3"
    usage = outcomes[3].body["usage"]
    assert (outcomes[3].tokens_in, outcomes[3].tokens_out) == (usage["prompt_tokens"], usage["completion_tokens"])
    full = PriceTable().cost("gpt-4o-mini", outcomes[3].tokens_in, outcomes[3].tokens_out)
    assert outcomes[3].cost == pytest.approx(full / 2) and full > 0
    assert fake_openai.stats.batch_lines == {f"{i}:1": 1 for i in range(6)}


async def test_failed_lines_are_errors_in_the_words_of_the_synchronous_path(fake_openai, batches, test_profile):
    fake_openai.configure(batch_line_errors={r"^1:": 500, r"^2:": 429, r"^3:": 401, r"^4:": "server_error"})
    record = await batches.submit(STEP, llm_requests(test_profile, 6))
    await finish(fake_openai, batches, record)
    assert (record.progress().completed, record.progress().failed) == (2, 4)
    outcomes = await batches.collect(record)
    assert [bool(o.error) for o in outcomes] == [False, True, True, True, True, False]
    assert outcomes[4].error == "the provider did not run this row: The request failed (server_error). (server_error)"
    assert outcomes[1].retryable and outcomes[2].retryable and not outcomes[3].retryable
    assert outcomes[1].cost == 0 and outcomes[1].body is None
    # the same failures met by a synchronous request say the same thing
    fake_openai.configure(script={"sync": [500, 429, 401]})
    with openai.OpenAI(base_url=fake_openai.base_url, api_key=KEY, max_retries=0) as client:
        for outcome in outcomes[1:4]:
            with pytest.raises(openai.APIStatusError) as caught:
                client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "sync"}])
            assert str(map_error(caught.value, test_profile, "gpt-4o-mini", KEY)).split(" (HTTP")[0] == \
                outcome.error.split(" (HTTP")[0]
    assert "had a server error (HTTP 500: The server had an error" in outcomes[1].error
    assert outcomes[3].error.startswith("the API key for provider 'test' was rejected")


async def test_a_request_the_endpoint_refuses_says_so_as_the_synchronous_path_does(fake_openai, batches,
                                                                                  test_profile):
    fake_openai.configure(models=["other-model"])
    record = await batches.submit(STEP, llm_requests(test_profile, 2))
    await finish(fake_openai, batches, record)
    outcomes = await batches.collect(record)
    assert outcomes[0].error.startswith("provider 'test' has no model 'gpt-4o-mini' (HTTP 404")
    assert outcomes[0].error.endswith("; check the model name")


async def test_an_expired_batch_keeps_the_rows_it_did(fake_openai, batches, test_profile):
    fake_openai.configure(batch_expire_after=3)
    record = await batches.submit(STEP, llm_requests(test_profile, 5))
    await finish(fake_openai, batches, record)
    outcomes = await batches.collect(record)
    assert [o.error for o in outcomes] == ["", "", ""] + ["the batch expired before this row was done"] * 2
    assert outcomes[4].retryable and outcomes[2].body is not None
    # a provider that leaves the requests it did not run out of both files: the same words
    fake_openai.configure(batch_expired_lines="missing")
    record = await batches.submit(STEP, llm_requests(test_profile, 5))
    await finish(fake_openai, batches, record)
    assert [o.error for o in await batches.collect(record)][3:] == ["the batch expired before this row was done"] * 2


async def test_requests_above_the_limits_are_split_into_several_batches(fake_openai, test_profile):
    requests = llm_requests(test_profile, 7)
    async with BatchClient(test_profile, KEY, poll=FAST, limits=BatchLimits(requests=3)) as client:
        record = await client.submit(STEP, requests)
        assert [p.rows for p in record.parts] == [[[0, 2]], [[3, 5]], [[6, 6]]]
        assert fake_openai.stats.batches_created == 3
        await finish(fake_openai, client, record)
        assert [o.row for o in await client.collect(record)] == list(range(7))
        assert record.progress().describe().startswith("3 batches submitted just now: 7 of 7 done")
    line = len(next(chunks(requests[:1], STEP, "/v1/chat/completions")).data)
    async with BatchClient(test_profile, KEY, poll=FAST, limits=BatchLimits(bytes=int(line * 2.5))) as client:
        record = await client.submit(STEP, requests)
        assert [p.requests for p in record.parts] == [2, 2, 2, 1]


async def test_cancel_stops_the_batch_at_the_provider_and_keeps_the_rows_done(fake_openai, batches, test_profile):
    fake_openai.configure(batch_lines_per_stage=2)
    record = await batches.submit(STEP, llm_requests(test_profile, 5))
    fake_openai.advance_batches()
    fake_openai.advance_batches()  # two rows done
    saved = []
    await batches.cancel(record, on_record=lambda r: saved.append(r.to_dict()))
    assert record.cancelled and saved and fake_openai.batches[0]["status"] == "cancelling"
    await finish(fake_openai, batches, record)
    assert fake_openai.batches[0]["status"] == "cancelled"
    outcomes = await batches.collect(record)
    assert [o.error for o in outcomes] == ["", ""] + ["the batch was cancelled before this row was done"] * 3
    await batches.cancel(record)  # nothing left to cancel: no error


async def test_a_batch_the_provider_refuses_fails_every_row_with_its_reason(fake_openai, batches, test_profile):
    fake_openai.configure(batch_invalid_lines={r"^1:": "the request is too large"})
    record = await batches.submit(STEP, llm_requests(test_profile, 3))
    await finish(fake_openai, batches, record)
    assert [o.error for o in await batches.collect(record)] == [
        "the provider refused the batch: the request is too large (line 2)"] * 3


async def test_a_batch_run_survives_a_restart_through_the_journal(fake_openai, test_profile, tmp_path):
    path = tmp_path / "journal.sqlite"
    journal = Journal(path)
    run_id = journal.new_run("job", "pipeline", None, None, 4)
    requests = llm_requests(test_profile, 4)
    async with BatchClient(test_profile, KEY, poll=FAST) as client:
        await client.submit(STEP, requests, on_record=lambda r: journal.save_batch(run_id, r.step, r.to_dict()))
    journal.close()  # the app is closed; the provider goes on
    fake_openai.advance_batches()
    fake_openai.advance_batches(lines=3)
    created, uploaded = fake_openai.stats.batches_created, fake_openai.stats.files_uploaded

    journal = Journal(path)  # reopened: a new process, a new client
    saved = journal.load_batches(run_id)
    record = BatchRecord.from_dict(saved[STEP])
    assert record.rows() == [0, 1, 2, 3]
    async with BatchClient(test_profile, KEY, poll=FAST) as client:
        await client.refresh(record)
        assert record.progress().describe().startswith("batch submitted just now: 3 of 4 done at the provider")
        journal.save_batch(run_id, STEP, record.to_dict())
        await finish(fake_openai, client, record)
        outcomes = await client.collect(record)
    assert [o.body["choices"][0]["message"]["content"] for o in outcomes] == [
        f"echo: review {i}: words of row {i}" for i in range(4)]
    assert (fake_openai.stats.batches_created, fake_openai.stats.files_uploaded) == (created, uploaded)
    assert all(n == 1 for n in fake_openai.stats.batch_lines.values())
    assert BatchRecord.from_dict(journal.load_batches(run_id)[STEP]).progress().completed == 3  # as last saved
    journal.delete_batch(run_id, STEP)
    assert journal.load_batches(run_id) == {}
    journal.close()


async def test_a_submission_cut_short_is_carried_on_in_the_same_record(fake_openai, test_profile):
    requests = llm_requests(test_profile, 5)
    async with BatchClient(test_profile, KEY, poll=FAST, limits=BatchLimits(requests=2)) as client:
        record = await client.submit(STEP, requests[:2])  # then the app died
        left = [(row, body) for row, body in requests if row not in set(record.rows())]
        await client.submit(STEP, left, record=record)
        assert record.rows() == [0, 1, 2, 3, 4] and len(record.parts) == 3
        await finish(fake_openai, client, record)
        assert [o.row for o in await client.collect(record)] == [0, 1, 2, 3, 4]


async def test_waiting_reports_progress_rides_out_server_errors_and_stops_when_cancelled(fake_openai, batches,
                                                                                         test_profile):
    fake_openai.configure(batch_lines_per_stage=1)
    record = await batches.submit(STEP, llm_requests(test_profile, 3))
    fake_openai.configure(script={"": [500, 500]})  # the next two questions fail
    seen: list[BatchProgress] = []
    polled = asyncio.Event()

    def progress(p):
        seen.append(p)
        if len(seen) >= 3:
            polled.set()

    waiting = asyncio.create_task(batches.wait(record, on_progress=progress))
    await polled.wait()
    assert "cannot reach the provider (asking how the batch is going: provider 'test' had a server error" \
        in seen[0].note
    assert "asking again in" in seen[0].describe()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert fake_openai.batches[0]["status"] == "validating"  # stopping the wait cancels nothing there
    fake_openai.finish_batches()
    assert (await batches.wait(record)).finished


async def test_embeddings_in_a_batch(fake_openai, batches, test_profile):
    requests = [(i, embedding_request("text-embedding-3-small", f"text {i}", 8)) for i in range(3)]
    record = await batches.submit(STEP, requests, endpoint=EMBEDDINGS)
    await finish(fake_openai, batches, record)
    outcomes = await batches.collect(record)
    assert len(outcomes[1].body["data"][0]["embedding"]) == 8 and outcomes[1].tokens_in == 2
    assert outcomes[1].cost == pytest.approx(PriceTable().cost("text-embedding-3-small", 2, 0) / 2)


async def test_what_cannot_be_batched_is_said_in_words(fake_openai, test_profile):
    local = resolve_profile("local", {"local": {"preset": "ollama", "model": "llama3"}}, environ={})
    assert batch_support(local).startswith("Ollama at http://127.0.0.1:11434/v1 has no batch API")
    assert batch_support(test_profile) == ""
    with pytest.raises(StepError, match="has no batch API"):
        await BatchClient(local, None).submit(STEP, [(0, {"model": "m"})])
    elsewhere = resolve_profile("test", profile(fake_openai, base_url=fake_openai.url + "/nothing/v1"), environ={})
    async with BatchClient(elsewhere, KEY, poll=FAST) as client:
        with pytest.raises(StepError, match=r"^uploading the batch's requests: the server at .*/nothing/v1 has no "
                                            r"batch API \(HTTP 404"):
            await client.submit(STEP, llm_requests(test_profile, 1))
        record = BatchRecord("test", fake_openai.base_url, "/v1/chat/completions", "m", STEP, 0.0)
        with pytest.raises(StepError, match=r"this batch was submitted to .* point it back there"):
            await client.refresh(record)
    with pytest.raises(StepError, match="a batch takes one model"):
        async with BatchClient(test_profile, KEY) as client:
            await client.submit(STEP, [(0, {"model": "a"}), (1, {"model": "b"})])


def test_progress_in_words():
    p = BatchProgress(total=50_000, completed=41_000, failed=200, status="in_progress", created=1000.0, batches=1)
    assert p.describe(now=1000.0 + 2 * 3600 + 100) == \
        "batch submitted 2 h ago: 41,200 of 50,000 done at the provider (200 failed)"
    p = BatchProgress(total=10, completed=0, failed=0, status="validating", created=0.0, batches=2)
    assert p.describe(now=300) == "2 batches submitted 5 min ago: 0 of 10 done at the provider; " \
                                  "the provider is checking the batch"


def test_custom_ids_rows_and_the_record_round_trip():
    assert custom_id(12, "0.x.1") == "12:0.x.1" and parse_custom_id("12:0.x.1") == (12, "0.x.1")
    assert parse_custom_id("a:b") is None and parse_custom_id("12") is None
    assert ranges([0, 1, 2, 5, 6, 9]) == [[0, 2], [5, 6], [9, 9]]
    record = BatchRecord("p", "http://x/v1", "/v1/chat/completions", "m", "2", 5.0)
    assert BatchRecord.from_dict(json.loads(json.dumps(record.to_dict()))) == record


def test_batch_prices():
    prices = PriceTable()
    assert batch_discount("openai") == batch_discount("azure") == 0.5 and batch_discount("openrouter") == 0
    assert prices.batch_price("gpt-4o", "openai").input == pytest.approx(1.25)
    assert prices.batch_price("gpt-4o", "openrouter") == prices.price("gpt-4o")
    assert prices.batch_cost("gpt-4o", 1_000_000, 0, preset="azure") == pytest.approx(1.25)
    assert prices.batch_cost("gpt-4o", 1_000_000, 0, preset="openai", local=True) == 0
    assert prices.batch_price("unknown-model", "openai") is None


def test_an_older_journal_gets_the_batches_table(tmp_path):
    path = tmp_path / "journal.sqlite"
    db = sqlite3.connect(path)
    db.executescript("CREATE TABLE runs (run_id TEXT PRIMARY KEY, job_key TEXT NOT NULL, pipeline_hash TEXT NOT NULL,"
                     " input_path TEXT, sheet TEXT, total INTEGER NOT NULL, started REAL NOT NULL, finished REAL,"
                     " status TEXT NOT NULL DEFAULT 'running');"
                     "INSERT INTO runs VALUES ('old', 'job', 'h', NULL, NULL, 3, 1.0, NULL, 'running');")
    db.close()
    journal = Journal(path, keep_runs=1)
    assert journal.latest_run("job").run_id == "old" and journal.load_batches("old") == {}
    journal.save_batch("old", "2", {"a": 1})
    journal.save_batch("old", "0", {"b": 1})
    journal.save_batch("old", "2", {"a": 2})  # replaced, keeps its place
    assert journal.load_batches("old") == {"2": {"a": 2}, "0": {"b": 1}}
    journal.new_run("job", "h", None, None, 3)  # the old run is dropped, its batch records with it
    assert journal.load_batches("old") == {}
    journal.close()


def test_the_projected_cost_shows_the_batch_price(tmp_path):
    from batchgrid.core.pipeline.file import Pipeline
    from batchgrid.core.run.estimate import estimate_cost
    from batchgrid.core.table import Table

    def estimate(preset):
        pipeline = Pipeline.from_dict({"version": 1, "providers": {"p": {"preset": preset, "model": "gpt-4o"}},
                                       "steps": [{"type": "llm", "prompt": "{text}", "max_tokens": 100}]})
        return estimate_cost(pipeline, Table.from_records([{"text": "x" * 4000}] * 1000), sample=5,
                             data_dir=tmp_path)

    openai_estimate = estimate("openai")
    assert openai_estimate.batch_cost == pytest.approx(openai_estimate.cost / 2)
    assert openai_estimate.describe() == ("about 1,104,000 tokens, $3.51 for 1,000 rows (projected from the first 5); "
                                          "in batch mode: $1.75 instead of $3.51")
    no_batches = estimate("openrouter")  # no batch API: nothing to save, nothing said
    assert no_batches.batch_cost == no_batches.cost and "batch mode" not in no_batches.describe()


def test_a_step_in_batch_mode_is_projected_at_the_batch_price_first(tmp_path):
    """The projection leads with what the run will cost: batch mode's price, the synchronous one beside it."""
    from batchgrid.core.pipeline.file import Pipeline
    from batchgrid.core.run.estimate import estimate_cost
    from batchgrid.core.table import Table

    def estimate(*batch: bool):
        pipeline = Pipeline.from_dict({"version": 1, "providers": {"p": {"preset": "openai", "model": "gpt-4o"}},
                                       "steps": [{"type": "llm", "prompt": "{text}", "max_tokens": 100,
                                                  "output": f"a{i}", "batch": b} for i, b in enumerate(batch)]})
        return estimate_cost(pipeline, Table.from_records([{"text": "x" * 4000}] * 1000), sample=5,
                             data_dir=tmp_path)

    batched = estimate(True)
    assert batched.cost == pytest.approx(batched.sync_cost / 2) and batched.steps[0].batch
    assert batched.describe() == ("about 1,104,000 tokens, $1.75 for 1,000 rows at the batch price (projected from "
                                  "the first 5); $3.51 without batch mode")
    mixed = estimate(True, False)
    assert mixed.cost == pytest.approx(mixed.sync_cost * 3 / 4) and mixed.batch_cost == pytest.approx(mixed.sync_cost / 2)
    assert mixed.describe() == ("about 2,208,000 tokens, $5.26 for 1,000 rows with 1 of 2 model steps in batch mode "
                                "(projected from the first 5); $7.02 without batch mode; every model step in batch "
                                "mode: $3.51")


async def test_a_batch_created_just_before_a_crash_is_found_again_not_submitted_twice(fake_openai, test_profile):
    requests = llm_requests(test_profile, 5)
    async with BatchClient(test_profile, KEY, poll=FAST, limits=BatchLimits(requests=2)) as client:
        saved: list[dict] = []
        await client.submit(STEP, requests, tag="run-1", on_record=lambda r: saved.append(r.to_dict()))
        # the process died after creating the third batch, before the journal had it
        record = BatchRecord.from_dict(saved[1])
        await client.submit(STEP, requests[:1], tag="run-2")  # another run's batch of the same step: not ours
        assert await client.adopt(record, "run-1") == 1
        assert record.rows() == [0, 1, 2, 3, 4] and fake_openai.stats.batches_created == 4
        assert await client.adopt(record, "run-1") == 0
        await finish(fake_openai, client, record)
        assert [o.row for o in await client.collect(record)] == [0, 1, 2, 3, 4]


SUBMITTER = """
import asyncio, sys
from batchgrid.core.providers.batches import BatchClient, PollPolicy
from batchgrid.core.providers.profiles import resolve_profile
from batchgrid.core.run.journal import Journal

base_url, key, path, run_id = sys.argv[1:5]
profile = resolve_profile("test", {"test": {"preset": "openai", "base_url": base_url, "model": "gpt-4o-mini"}},
                          environ={})

async def main():
    journal = Journal(path)
    client = BatchClient(profile, key, poll=PollPolicy(first=0.01, cap=0.05))
    requests = [(i, {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"row {i}"}]})
                for i in range(4)]
    record = await client.submit("1", requests, tag=run_id,
                                 on_record=lambda r: journal.save_batch(run_id, r.step, r.to_dict()))
    print("submitted", flush=True)
    await client.wait(record, on_record=lambda r: journal.save_batch(run_id, r.step, r.to_dict()))
    print("never here: the batch is not advanced", flush=True)

asyncio.run(main())
"""


async def test_resume_after_the_client_process_is_killed_between_submit_and_completion(fake_openai, test_profile,
                                                                                      tmp_path):
    import subprocess
    import sys

    path = tmp_path / "journal.sqlite"
    journal = Journal(path)
    run_id = journal.new_run("job", "pipeline", None, None, 4)
    journal.close()
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", SUBMITTER, fake_openai.base_url, KEY,
                                                   str(path), run_id, stdout=subprocess.PIPE)
    try:
        assert (await process.stdout.readline()).strip() == b"submitted"
        assert await fake_openai.wait_for(lambda stats: stats.by_path.get(
            f"/v1/batches/{fake_openai.batches[0]['id']}", 0) >= 2)  # it is polling
    finally:
        process.kill()  # SIGKILL: no cleanup of any kind
        await process.wait()
    fake_openai.finish_batches()

    journal = Journal(path)  # the app reopened
    record = BatchRecord.from_dict(journal.load_batches(run_id)[STEP])
    async with BatchClient(test_profile, KEY, poll=FAST) as client:
        assert await client.adopt(record, run_id) == 0  # the journal had it all
        await client.wait(record, on_record=lambda r: journal.save_batch(run_id, r.step, r.to_dict()))
        outcomes = await client.collect(record)
    assert [o.body["choices"][0]["message"]["content"] for o in outcomes] == [f"echo: row {i}" for i in range(4)]
    assert fake_openai.stats.batches_created == 1 and fake_openai.stats.files_uploaded == 1
    assert BatchRecord.from_dict(journal.load_batches(run_id)[STEP]).finished
    journal.close()
