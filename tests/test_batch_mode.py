"""Batch mode end to end (issue 13, part 2): a pipeline whose model step has `batch` on runs its rows through
the test server's Batch API over real HTTP, through the session as the window and the CLI drive it. The
server's stages are driven by the tests (advance_batches, finish_batches, expire_batches): no sleeps."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from batchgrid.core.pipeline import Pipeline
from batchgrid.core.providers.batches import PollPolicy
from batchgrid.core.providers.prices import PriceTable
from batchgrid.core.run import batch_mode
from batchgrid.core.run import events as ev
from batchgrid.core.session import Session
from models_support import KEY, KEY_ENV, profile

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def quick_polls(monkeypatch):
    """The provider is asked again within milliseconds (the tests move the batches on)."""
    monkeypatch.setattr(batch_mode, "POLL", PollPolicy(first=0.002, factor=2, cap=0.02))


@pytest.fixture
def server(fake_openai, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    fake_openai.configure(api_key=KEY)
    return fake_openai


def pipeline_dict(server, *, batch=True, settings=None, **llm) -> dict:
    return {"version": 1, "providers": profile(server), "settings": settings or {}, "steps": [
        {"type": "template", "template": "review {text}", "output": "prompt"},
        {"type": "llm", "prompt": "{prompt}", "batch": batch, **llm},
        {"type": "change_case", "source": "answer", "case": "upper", "output": "shout"},
    ]}


def write_sheet(path: Path, n: int) -> Path:
    pd.DataFrame({"text": [f"t{i}" for i in range(n)]}).to_csv(path, index=False)
    return path


async def open_session(tmp_path, server, n=6, **kw) -> Session:
    session = Session(journal_path=tmp_path / "journal.sqlite", data_dir=tmp_path / "data")
    session.set_pipeline(Pipeline.from_dict(pipeline_dict(server, **kw)))
    await session.open_sheet(write_sheet(tmp_path / "sheet.csv", n))
    assert session.problems() == []
    return session


def when(session: Session, predicate) -> asyncio.Future:
    """A future done at the first event that `predicate` accepts, of the run going on or else the next one."""
    future = asyncio.get_running_loop().create_future()

    def listen(event):
        if not future.done() and predicate(event):
            future.set_result(event)

    if session.running and session.engine is not None:
        session.engine.subscribe(listen)
    else:
        session.listeners.append(listen)
    return future


def submitted(event) -> bool:
    return isinstance(event, ev.BatchWaiting) and "done at the provider" in event.line


def outputs(session: Session, column: str) -> list:
    return [r.outputs.get(column) if r else None for r in session.store.results]


async def test_a_batch_step_sends_one_batch_and_its_rows_come_back_in_input_order_at_half_price(tmp_path, server):
    session = await open_session(tmp_path, server, n=6)
    waiting = when(session, submitted)
    await session.start()
    line = await waiting
    assert line.step == "2. LLM" and line.line.startswith("batch submitted just now: 0 of 6 done at the provider")
    assert session.progress.batched == 6 and session.progress.queued == 0 and session.progress.done == 0
    server.finish_batches()
    assert await session.wait() == ("finished", "")
    assert server.stats.batches_created == 1 and server.stats.by_path.get("/v1/chat/completions", 0) == 0
    assert outputs(session, "answer") == [f"echo: review t{i}" for i in range(6)]
    assert outputs(session, "shout") == [f"ECHO: REVIEW T{i}" for i in range(6)]  # the step after it ran
    sent = [json.loads(x) for x in server.file_content(server.batches[0]["input_file_id"]).splitlines()]
    assert [x["custom_id"] for x in sent] == [f"{i}:1" for i in range(6)]
    results = session.store.results
    full = PriceTable().cost("gpt-4o-mini", results[0].tokens_in, results[0].tokens_out)
    assert results[0].cost == pytest.approx(full / 2) and full > 0
    assert session.progress.cost == pytest.approx(sum(r.cost for r in results))
    assert session.progress.batch == ""
    trace = results[0].trace[1]
    assert trace.details["batch"] is True and trace.details["response"] == "echo: review t0"
    # the journal holds the rows; nothing is left to collect
    job = session.job
    assert job is not None and job.pending_batches() == {}
    await session.close()


async def test_rows_answered_by_the_cache_skip_the_batch_and_identical_requests_go_once(tmp_path, server):
    session = await open_session(tmp_path, server, n=4, batch=False)
    await session.start(rows=[0, 1])  # two rows answered synchronously: their answers are in the cache
    await session.wait()
    assert server.stats.by_path["/v1/chat/completions"] == 2
    session.set_pipeline(Pipeline.from_dict(pipeline_dict(server)))
    sheet = tmp_path / "sheet.csv"
    pd.DataFrame({"text": ["t0", "t1", "t2", "t3", "t2"]}).to_csv(sheet, index=False)
    await session.open_sheet(sheet)
    waiting = when(session, submitted)
    await session.start()
    await waiting
    server.finish_batches()
    await session.wait()
    sent = [json.loads(x)["custom_id"] for x in server.file_content(server.batches[0]["input_file_id"]).splitlines()]
    assert sent == ["2:1", "3:1"]  # rows 0 and 1 from the cache; row 4 asks what row 2 asks
    assert outputs(session, "answer") == [f"echo: review t{i}" for i in (0, 1, 2, 3, 2)]
    results = session.store.results
    assert [r.cached for r in results] == [1, 1, 0, 0, 1] and results[4].cost == 0 and results[2].cost > 0
    await session.close()


async def test_lines_failing_in_the_error_file_become_row_errors_in_the_runs_words(tmp_path, server):
    server.configure(batch_line_errors={r"^1:": 401, r"^3:": "server_error"})
    session = await open_session(tmp_path, server, n=5)
    waiting = when(session, submitted)
    await session.start()
    await waiting
    server.finish_batches()
    await session.wait()
    statuses = [r.status for r in session.store.results]
    assert statuses == [ev.DONE, ev.ERROR, ev.DONE, ev.ERROR, ev.DONE]
    errors = session.store.results
    assert errors[1].error.startswith("the API key for provider 'test' was rejected") and errors[1].failed_step == "2. LLM"
    assert errors[3].error == "the provider did not run this row: The request failed (server_error). (server_error)"
    assert errors[1].outputs.get("shout") is None and errors[2].outputs["shout"] == "ECHO: REVIEW T2"
    assert not session.paused  # rows of a batch failing alike do not pause the run
    await session.close()


async def test_an_expired_batch_keeps_the_rows_it_did_and_retry_failed_sends_only_the_others(tmp_path, server):
    server.configure(batch_lines_per_stage=2)
    session = await open_session(tmp_path, server, n=5)
    waiting = when(session, submitted)
    await session.start()
    await waiting
    server.advance_batches()           # in progress
    server.advance_batches()           # two rows done
    assert server.expire_batches() == 1
    await session.wait()
    results = session.store.results
    assert [r.status for r in results] == [ev.DONE, ev.DONE, ev.ERROR, ev.ERROR, ev.ERROR]
    assert results[2].error == "the batch expired before this row was done"
    waiting = when(session, submitted)
    await session.start("retry_failed")
    await waiting
    server.finish_batches()
    await session.wait()
    assert [r.status for r in session.store.results] == [ev.DONE] * 5
    second = [json.loads(x)["custom_id"] for x in server.file_content(server.batches[1]["input_file_id"]).splitlines()]
    assert second == ["2:1", "3:1", "4:1"] and server.stats.batches_created == 2
    await session.close()


async def test_cancel_batch_cancels_at_the_provider_and_collects_what_was_done(tmp_path, server):
    server.configure(batch_lines_per_stage=2)
    session = await open_session(tmp_path, server, n=5)
    waiting = when(session, submitted)
    await session.start()
    await waiting
    server.advance_batches()
    server.advance_batches()  # rows 0..1 (in the server's order) done
    assert session.batch_pending
    cancelled = when(session, lambda e: isinstance(e, ev.BatchWaiting) and "cancelling" in e.line)
    assert await session.cancel_batch()
    await cancelled
    assert server.batches[0]["status"] == "cancelling"
    server.finish_batches()
    await session.wait()
    results = session.store.results
    assert sum(r.status == ev.DONE for r in results) == 2
    assert {r.error for r in results if r.status == ev.ERROR} == {"the batch was cancelled before this row was done"}
    assert server.stats.batches_created == 1
    await session.close()


async def test_stop_leaves_the_batch_at_the_provider_and_a_reopened_session_collects_it(tmp_path, server):
    session = await open_session(tmp_path, server, n=4)
    waiting = when(session, submitted)
    await session.start()
    await waiting
    session.stop()
    assert await session.wait() == ("stopped", "")
    assert {r.error for r in session.store.results} == {"stopped while its batch is at the provider: resume the run "
                                                        "to collect it"}
    assert session.engine is not None and session.engine.left_at_provider[0].startswith(
        "2. LLM: batch submitted just now: 0 of 4 done at the provider")
    await session.close()
    server.advance_batches()
    server.advance_batches(lines=3)

    again = await open_session(tmp_path, server, n=4)  # the app reopened
    assert await again.pending_batch() == "2. LLM: batch submitted just now: 3 of 4 done at the provider"
    assert again.rerun_repeats().startswith("A batch of the last run is still at the provider: running every row "
                                            "again submits its rows again, and they are paid twice.")
    server.finish_batches()
    await again.start("resume")
    assert await again.wait() == ("finished", "")
    assert outputs(again, "answer") == [f"echo: review t{i}" for i in range(4)]
    assert server.stats.batches_created == 1 and server.stats.files_uploaded == 1
    assert all(n == 1 for n in server.stats.batch_lines.values())
    assert await again.pending_batch() == ""
    await again.close()


async def test_the_budget_is_checked_against_the_batch_price_before_submitting(tmp_path, server):
    price = PriceTable().batch_cost("gpt-4o-mini", 10, 10, preset="openai")
    session = await open_session(tmp_path, server, n=4, settings={"budget": price})  # less than four rows' worth
    paused = when(session, lambda e: isinstance(e, ev.RunPaused))
    await session.start()
    event = await paused
    assert event.kind == "budget" and "4 rows in batch mode would cost about" in event.reason
    assert "at the batch price" in event.reason and server.stats.batches_created == 0
    session.resume()  # Resume anyway: submits
    await when(session, submitted)
    assert server.stats.batches_created == 1
    session.stop()
    await session.wait()
    await session.close()


async def test_a_batch_step_inside_a_parallel_step_is_a_problem_in_words(server):
    pipeline = Pipeline.from_dict({"version": 1, "providers": profile(server), "steps": [
        {"type": "parallel", "branches": {"a": [{"type": "llm", "prompt": "{text}", "batch": True}]}}]})
    problems = pipeline.problems(["text"])
    assert [str(p) for p in problems] == [
        "steps[0].branches.a[0].batch: batch mode works on top-level steps only: move this step out of the "
        "parallel step, or turn batch mode off"]


async def test_a_provider_without_a_batch_api_fails_the_run_in_one_line(tmp_path, server):
    session = await open_session(tmp_path, server, n=2)
    providers = {"local": {"preset": "ollama", "base_url": server.base_url, "model": "m"}}
    data = pipeline_dict(server)
    data["providers"] = providers
    session.set_pipeline(Pipeline.from_dict(data))
    await session.start()
    reason, message = await session.wait()
    assert reason == "failed" and message.startswith("2. LLM: Ollama at ") and "has no batch API" in message
    await session.close()


# ---- the CLI, a real process ------------------------------------------------------------------------
def cli_files(tmp_path, server, n=5) -> tuple[Path, Path, Path, Path]:
    pipe = tmp_path / "reviews.batchgrid.json"
    pipe.write_text(json.dumps(pipeline_dict(server)))
    return pipe, write_sheet(tmp_path / "sheet.csv", n), tmp_path / "out.csv", tmp_path / "journal.sqlite"


async def start_cli(*args) -> asyncio.subprocess.Process:
    env = {**os.environ, KEY_ENV: KEY, "BATCHGRID_BATCH_POLL": "0.01"}  # the provider asked again at once
    return await asyncio.create_subprocess_exec(sys.executable, "-m", "batchgrid.core.cli", "run", *map(str, args),
                                                stderr=subprocess.PIPE, env=env)


async def read_until(process: asyncio.subprocess.Process, text: str) -> list[str]:
    """stderr's lines up to the first holding `text` (the CLI's own words: no sleeping, no guessing)."""
    lines: list[str] = []
    while True:
        line = (await asyncio.wait_for(process.stderr.readline(), 60)).decode()
        assert line, f"the CLI ended before saying {text!r}: {lines}"
        lines.append(line.strip())
        if text in line:
            return lines


async def test_cli_killed_between_submit_and_completion_then_resume_collects_without_submitting_again(tmp_path,
                                                                                                   server):
    pipe, sheet, out, journal = cli_files(tmp_path, server)
    process = await start_cli(pipe, sheet, "-o", out, "--journal", journal)
    try:
        said = await read_until(process, "done at the provider")
        assert said[-1] == ("batchgrid: 2. LLM: batch submitted just now: 0 of 5 done at the provider; "
                            "the provider is checking the batch")
        assert any("at the batch price" in line and "without batch mode" in line for line in said)  # the saving, said
    finally:
        process.kill()  # SIGKILL: no cleanup of any kind, the batch is at the provider
        await process.wait()
    assert process.returncode == -signal.SIGKILL and not out.exists()
    server.finish_batches()
    with sqlite3.connect(journal) as db:  # the batch's record outlived the process
        assert db.execute("SELECT step FROM batches").fetchall() == [("1",)]

    resumed = await start_cli(pipe, sheet, "-o", out, "--journal", journal, "--resume")
    _, err = await resumed.communicate()
    assert resumed.returncode == 0, err.decode()
    assert "5 done, 0 failed of 5 rows" in err.decode()
    written = pd.read_csv(out)
    assert list(written["answer"]) == [f"echo: review t{i}" for i in range(5)]
    assert list(written["shout"]) == [f"ECHO: REVIEW T{i}" for i in range(5)]
    assert server.stats.batches_created == 1 and server.stats.files_uploaded == 1
    assert server.stats.by_path.get("/v1/chat/completions", 0) == 0
    assert all(n == 1 for n in server.stats.batch_lines.values()) and len(server.stats.batch_lines) == 5


async def test_cli_ctrl_c_leaves_the_batch_at_the_provider_and_says_how_to_collect_or_cancel_it(tmp_path, server):
    server.configure(batch_lines_per_stage=2)
    pipe, sheet, out, journal = cli_files(tmp_path, server)
    process = await start_cli(pipe, sheet, "-o", out, "--journal", journal)
    await read_until(process, "done at the provider")
    process.send_signal(signal.SIGINT)
    _, err = await process.communicate()
    assert process.returncode == 130
    last = err.decode().strip().splitlines()[-1]
    assert last.startswith("batchgrid: stopped: 0 done, 0 failed, 5 not run of 5 rows")
    assert last.endswith("the batch goes on at the provider (2. LLM: batch submitted just now: 0 of 5 done at the "
                         "provider; the provider is checking the batch): run again with --resume to collect it (nothing is submitted twice), or with "
                         "--cancel-batch to cancel it")
    server.advance_batches()
    server.advance_batches()  # two rows done at the provider

    cancelled = await start_cli(pipe, sheet, "-o", out, "--journal", journal, "--cancel-batch")
    await read_until(cancelled, "the provider is cancelling the batch")
    server.finish_batches()
    _, err = await cancelled.communicate()
    assert cancelled.returncode == 1, err.decode()
    written = pd.read_csv(out)
    assert written["answer"].notna().sum() == 2
    assert set(written["error"].dropna()) == {"the batch was cancelled before this row was done"}
    assert server.stats.batches_created == 1 and server.batches[0]["status"] == "cancelled"


# ---- the other model steps, and answers that do not parse --------------------------------------------
async def run_steps_in_batch(tmp_path, server, steps: list[dict], n=3) -> Session:
    session = Session(journal_path=tmp_path / "journal.sqlite", data_dir=tmp_path / "data")
    session.set_pipeline(Pipeline.from_dict({"version": 1, "providers": profile(server), "steps": steps}))
    await session.open_sheet(write_sheet(tmp_path / "sheet.csv", n))
    assert session.problems() == []
    server.configure(batch_seconds_per_stage=0)  # each poll finds the batches a stage further on
    await session.start()
    assert (await session.wait())[0] == "finished"
    return session


async def test_structured_classify_and_embed_steps_read_their_answers_from_the_batch(tmp_path, server):
    server.configure(reply=lambda prompt, body: "beta" if "Classify" in prompt else '{"words": 2}')
    session = await run_steps_in_batch(tmp_path, server, [
        {"type": "classify", "prompt": "{text}", "labels": ["alpha", "beta"], "batch": True},
        {"type": "structured", "prompt": "{text}", "fields": [{"name": "words", "type": "integer"}], "batch": True},
        {"type": "embed", "source": "text", "dimensions": 8, "batch": True},
    ])
    assert outputs(session, "label") == ["beta"] * 3
    assert outputs(session, "words") == [2, 2, 2]
    vectors = outputs(session, "text_embedding")
    assert [len(v) for v in vectors] == [8, 8, 8] and vectors[0] != vectors[1]
    assert [b["endpoint"] for b in server.batches] == ["/v1/chat/completions"] * 2 + ["/v1/embeddings"]
    assert server.stats.by_path.get("/v1/embeddings", 0) == 0 and server.stats.batches_created == 3
    assert all(r.cost > 0 for r in session.store.results)
    await session.close()


async def test_an_answer_that_does_not_parse_fails_its_row_in_the_steps_words_and_is_still_paid(tmp_path, server):
    server.configure(reply=lambda prompt, body: "gamma" if "t1" in prompt else "alpha")
    session = await run_steps_in_batch(tmp_path, server, [
        {"type": "classify", "prompt": "{text}", "labels": ["alpha", "beta"], "batch": True}])
    results = session.store.results
    assert [r.status for r in results] == [ev.DONE, ev.ERROR, ev.DONE]
    assert results[1].error == "the model answered 'gamma', which is not one of the labels: alpha, beta"
    assert results[1].cost > 0 and results[1].trace[0].details["raw"] == "gamma"
    await session.close()


async def test_cancel_batch_with_no_run_going_on_cancels_what_the_last_run_left(tmp_path, server):
    server.configure(batch_lines_per_stage=1)
    session = await open_session(tmp_path, server, n=3)
    waiting = when(session, submitted)
    await session.start()
    await waiting
    session.stop()
    await session.wait()
    server.advance_batches()
    server.advance_batches()  # one row done at the provider
    assert session.batch_pending
    assert await session.cancel_batch()  # the window's Cancel batch on the reopen offer; no run
    assert server.batches[0]["status"] == "cancelling"
    server.finish_batches()
    await session.start("resume")
    assert (await session.wait())[0] == "finished"
    assert sorted(r.status for r in session.store.results) == [ev.DONE, ev.ERROR, ev.ERROR]
    assert server.stats.batches_created == 1
    await session.close()


async def test_rows_that_do_not_meet_the_steps_condition_skip_the_batch(tmp_path, server):
    session = Session(journal_path=tmp_path / "journal.sqlite", data_dir=tmp_path / "data")
    session.set_pipeline(Pipeline.from_dict({"version": 1, "providers": profile(server), "steps": [
        {"type": "llm", "prompt": "{text}", "batch": True,
         "when": {"all": [{"column": "n", "op": "<=", "value": 1}]}}]}))
    sheet = tmp_path / "sheet.csv"
    pd.DataFrame({"text": ["a", "b", "c", "d"], "n": [0, 5, 1, 7]}).to_csv(sheet, index=False)
    await session.open_sheet(sheet)
    server.configure(batch_seconds_per_stage=0)
    await session.start()
    assert (await session.wait())[0] == "finished"
    assert outputs(session, "answer") == ["echo: a", None, "echo: c", None]
    assert sorted(server.stats.batch_lines) == ["0:0", "2:0"]
    assert session.store.results[1].trace[0].details == {"skipped": "n is not <= 1"}
    await session.close()
