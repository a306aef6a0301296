"""Run continues: a session's "resume" runs only the rows without a current result (not run,
stopped, run up to a step, or made by another version of the pipeline); "all" runs every row
again; "retry_failed" takes failed and stopped rows. A real session against the test server,
which counts what it is asked (cache off: every call reaches it)."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pandas as pd

from batchgrid.core.pipeline import Pipeline
from batchgrid.core.run import events as ev
from batchgrid.core.run.job import ALL, RESUME, RETRY_FAILED
from batchgrid.core.session import Session

ROWS = 30


def llm_pipeline(server, prompt: str = "{q}", *, cache: bool = False, then: list | None = None) -> Pipeline:
    return Pipeline.from_dict({
        "version": 1, "settings": {"use_cache": cache},
        "providers": {"test": {"preset": "vllm", "base_url": server.base_url, "model": "m"}},
        "steps": [{"type": "llm", "prompt": prompt, "output": "a"}, *(then or [])]})


async def open_session(tmp_path: Path, server, rows: int = ROWS, **pipeline) -> Session:
    sheet = tmp_path / "rows.csv"
    pd.DataFrame({"q": [f"q{i}" for i in range(rows)]}).to_csv(sheet, index=False)
    session = Session(journal_path=tmp_path / "journal.sqlite", data_dir=tmp_path / "data")
    await session.open_sheet(sheet)
    session.set_pipeline(llm_pipeline(server, **pipeline))
    return session


def asked(server) -> Counter:
    return Counter(server.stats.per_prompt)


def asked_since(server, before: Counter) -> Counter:
    return asked(server) - before


def rows_with(session: Session, *statuses: str) -> set[int]:
    return {i for i, s in enumerate(session.store.status) if s in statuses}


async def run(session: Session, mode: str = ALL, **options) -> str:
    await session.start(mode, max_concurrency=options.pop("max_concurrency", 3), **options)
    reason, _ = await session.wait()
    session.run_ended()
    return reason


async def stop_after(session: Session, done: int, mode: str = ALL) -> None:
    """Start a run and stop it once `done` rows are done."""
    reached = asyncio.get_running_loop().create_future()

    def listen(event):
        if isinstance(event, ev.RowDone) and session.progress.done >= done and not reached.done():
            reached.set_result(None)

    session.listeners.append(listen)
    try:
        await session.start(mode, max_concurrency=3)
        await reached
        session.stop()
        assert (await session.wait())[0] == "stopped"
        session.run_ended()
    finally:
        session.listeners.remove(listen)


async def test_after_a_stop_resume_asks_only_for_the_rows_not_done(tmp_path, fake_openai):
    fake_openai.configure(latency=0.05)
    session = await open_session(tmp_path, fake_openai)
    await stop_after(session, 8)
    done = rows_with(session, ev.DONE)
    stopped = rows_with(session, ev.CANCELLED)
    assert len(done) >= 8 and stopped and len(done) < ROWS
    assert session.rows_left() == ROWS - len(done)
    before = asked(fake_openai)
    assert await run(session, RESUME) == "finished"
    again = asked_since(fake_openai, before)
    assert set(again) == {f"q{i}" for i in range(ROWS) if i not in done}  # the rest, stopped rows too
    assert all(n == 1 for n in again.values())
    assert rows_with(session, ev.DONE) == set(range(ROWS))
    assert session.rows_left() == 0
    await session.close()


async def test_a_previews_rows_are_not_asked_again_by_the_next_run(tmp_path, fake_openai):
    session = await open_session(tmp_path, fake_openai)
    assert await run(session, ALL, rows=list(range(10))) == "finished"
    assert set(asked(fake_openai)) == {f"q{i}" for i in range(10)}
    assert await run(session, RESUME) == "finished"
    assert asked(fake_openai) == Counter({f"q{i}": 1 for i in range(ROWS)})  # each row once, in all
    await session.close()


async def test_an_edited_prompt_makes_every_result_stale_and_undoing_it_finds_them_again(tmp_path, fake_openai):
    session = await open_session(tmp_path, fake_openai)
    assert await run(session, RESUME) == "finished"  # a first Run: every row
    assert sum(asked(fake_openai).values()) == ROWS
    step = session.pipeline.steps[0]
    step.config["prompt"] = "Shout: {q}"  # edited in place, as the window's document does
    session.pipeline_edited()
    assert session.rows_left() is None  # not known without the journal: every row may be left
    before = asked(fake_openai)
    assert await run(session, RESUME) == "finished"
    assert set(asked_since(fake_openai, before)) == {f"Shout: q{i}" for i in range(ROWS)}
    assert session.store.results[0].outputs["a"] == "echo: Shout: q0"

    step.config["prompt"] = "{q}"  # undone: the journal holds this exact pipeline's results
    session.pipeline_edited()
    before = asked(fake_openai)
    engine = await session.start(RESUME)
    await session.wait()
    assert engine.selection == [] and asked_since(fake_openai, before) == Counter()
    assert session.store.results[0].outputs["a"] == "echo: q0"
    await session.close()


async def test_run_all_again_asks_for_every_row_and_says_what_it_repeats(tmp_path, fake_openai):
    session = await open_session(tmp_path, fake_openai)
    assert session.rerun_repeats() == ""  # nothing done yet
    assert await run(session, RESUME) == "finished"
    assert session.rerun_repeats() == (f"{ROWS} rows already have a result of this pipeline: running them again "
                                       "sends model calls again.")
    before = asked(fake_openai)
    assert await run(session, ALL) == "finished"
    assert asked_since(fake_openai, before) == Counter({f"q{i}": 1 for i in range(ROWS)})
    session.pipeline.settings["use_cache"] = True  # the cache answers unchanged calls: nothing is paid again
    assert session.rerun_repeats() == ""
    await session.close()


async def test_retry_failed_takes_the_stopped_rows_and_the_failed_ones_not_the_rows_never_run(tmp_path,
                                                                                              fake_openai):
    fake_openai.configure(latency=0.05, script={"q1": [400]})  # q1, q10..q19: one 400 each
    session = await open_session(tmp_path, fake_openai)
    await stop_after(session, 12)
    failed, stopped = rows_with(session, ev.ERROR), rows_with(session, ev.CANCELLED)
    not_run = rows_with(session, "not run")
    assert failed and stopped and not_run
    before = asked(fake_openai)
    engine = await session.start(RETRY_FAILED)
    assert set(engine.selection) == failed | stopped
    await session.wait()
    session.run_ended()
    assert set(asked_since(fake_openai, before)) == {f"q{i}" for i in failed | stopped}
    assert rows_with(session, "not run") == not_run
    await session.close()


async def test_run_up_to_a_step_runs_the_first_steps_and_leaves_the_rows_to_the_next_run(tmp_path, fake_openai):
    then = [{"type": "llm", "prompt": "again: {a}", "output": "b"}]
    session = await open_session(tmp_path, fake_openai, rows=6, then=then)
    assert await run(session, ALL, rows=[0, 1], up_to=(0,)) == "finished"
    assert set(asked(fake_openai)) == {"q0", "q1"}  # the second step did not run
    first = session.store.results[0]
    assert first.outputs == {"a": "echo: q0"} and "b" in session.store.output_columns
    assert session.store.value(0, session.store.header.index("b")) is None  # later steps' outputs: blank
    assert session.rows_left() == 6  # run up to a step, those rows are not finished
    before = asked(fake_openai)
    assert await run(session, RESUME) == "finished"
    assert set(asked_since(fake_openai, before)) == {f"q{i}" for i in range(6)} | {
        f"again: echo: q{i}" for i in range(6)}
    assert session.store.results[0].outputs == {"a": "echo: q0", "b": "echo: again: echo: q0"}
    assert session.rows_left() == 0
    await session.close()


async def test_a_run_up_to_a_step_is_not_journalled_as_finished_rows(tmp_path, fake_openai):
    then = [{"type": "llm", "prompt": "again: {a}", "output": "b"}]
    session = await open_session(tmp_path, fake_openai, rows=4, then=then)
    assert await run(session, ALL, rows=[0, 1], up_to=0) == "finished"
    await session.close()
    reopened = await open_session(tmp_path, fake_openai, rows=4, then=then)
    assert await reopened.previous_run() is None  # nothing finished: nothing offered, nothing kept
    await reopened.close()
