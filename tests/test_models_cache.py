"""The response cache: the same paid request is never made twice unless the user asks."""

from __future__ import annotations

from batchgrid.core.run import events as ev
from batchgrid.core.providers.cache import CACHE_FILE, ResponseCache, cache_key
from models_support import prompts

LLM = {"type": "llm", "prompt": "{text}"}


async def test_a_second_identical_run_makes_no_request(models):
    first = await models.run([LLM], prompts(30))
    assert models.server.stats.requests == 30
    second = await models.run([LLM], prompts(30))
    assert models.server.stats.requests == 30  # not one more
    assert second.outputs("answer") == first.outputs("answer")
    assert all(r.cached == 1 and r.cost == 0 for r in second.results)
    assert [r.tokens for r in second.results] == [r.tokens for r in first.results]
    assert second.engine.progress.cached == 30
    assert (models.data_dir / CACHE_FILE).exists()


async def test_changing_one_rows_input_makes_one_request(models):
    await models.run([LLM], prompts(30))
    rows = prompts(30)
    rows[17]["text"] = "something new"
    run = await models.run([LLM], rows)
    assert models.server.stats.requests == 31
    assert models.server.stats.per_prompt["something new"] == 1
    assert run.outputs("answer")[17] == "echo: something new"


async def test_editing_a_later_step_costs_nothing_for_the_earlier_ones(models):
    steps = [{**LLM, "output": "a"}, {"type": "llm", "prompt": "second: {a}", "output": "b"}]
    await models.run(steps, prompts(10))
    assert models.server.stats.requests == 20
    steps[1] = {"type": "llm", "prompt": "edited: {a}", "output": "b"}
    run = await models.run(steps, prompts(10))
    assert models.server.stats.requests == 30  # only the edited step asked again
    assert run.outputs("b")[0] == "echo: edited: echo: row 0"


async def test_the_cache_can_be_turned_off_for_a_run(models):
    await models.run([LLM], prompts(10))
    await models.run([LLM], prompts(10), use_cache=False)
    assert models.server.stats.requests == 20


async def test_temperature_above_zero_is_cached_and_part_of_the_key(models):
    await models.run([{**LLM, "temperature": 0.9}], prompts(5))
    await models.run([{**LLM, "temperature": 0.9}], prompts(5))
    assert models.server.stats.requests == 5
    await models.run([{**LLM, "temperature": 0.5}], prompts(5))
    assert models.server.stats.requests == 10


async def test_a_cached_answer_still_reaches_a_streaming_cell(models):
    await models.run([LLM], prompts(1))
    run = await models.run([LLM], prompts(1))
    assert [e.text for e in run.of(ev.RowPartial)] == ["echo: row 0"]
    assert run.results[0].trace[0].details["cached"] is True


async def test_cache_hits_skip_the_rate_limiter(models):
    providers = models.providers(rpm=60)  # one request a second
    await models.run([LLM], prompts(1), providers=providers)
    run = await models.run([LLM], prompts(1) * 20, providers=providers)
    assert run.statuses() == ["done"] * 20
    assert run.engine.progress.elapsed < 1.0  # 20 cached answers do not wait for 20 seconds of limit


async def test_embeddings_are_cached_per_text(models):
    await models.run([{"type": "embed", "source": "text"}], prompts(20), max_concurrency=20)
    run = await models.run([{"type": "embed", "source": "text"}], prompts(25), max_concurrency=25)
    assert models.server.stats.embedding_batches == [20, 5]
    assert run.engine.progress.cached == 20


async def test_a_damaged_cache_file_is_set_aside(models):
    models.data_dir.mkdir(parents=True)
    (models.data_dir / CACHE_FILE).write_bytes(b"this is not a database" * 100)
    run = await models.run([LLM], prompts(2))
    assert run.statuses() == ["done", "done"]
    assert (models.data_dir / (CACHE_FILE + ".broken")).exists()


def test_writes_are_grouped_and_read_back(tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite")
    key = cache_key("http://x/v1/chat/completions", {"model": "m", "messages": [], "stream": True})
    assert key == cache_key("http://x/v1/chat/completions", {"messages": [], "model": "m"})  # order, stream: same
    cache.put(key, {"text": "hi"})  # no loop: written at once
    assert cache.get(key) == {"text": "hi"} and key in cache
    cache.close()
    again = ResponseCache(tmp_path / "c.sqlite")
    assert again.get(key) == {"text": "hi"}
    assert again.get("missing") is None
    again.close()


async def test_the_same_resources_serve_a_second_run(models):
    first = models.engine([LLM], prompts(3))
    await first.engine.run()
    from batchgrid.core.run.engine import Engine
    from batchgrid.core.table import Table
    from batchgrid.core.steps import new_step

    again = Engine([new_step("llm", prompt="{text}")], Table.from_records(prompts(3)),
                   resources=first.engine.resources)
    await again.run()
    assert [r.outputs["answer"] for r in again.results] == ["echo: row 0", "echo: row 1", "echo: row 2"]
    assert again.progress.cached == 3


def test_a_put_is_durable_when_it_returns_even_with_a_loop(tmp_path):
    import asyncio
    import sqlite3

    async def put_then_look():
        cache = ResponseCache(tmp_path / "c.sqlite")
        cache.put("k", {"text": "paid for"})
        # another connection (another process after a kill) sees it at once: no buffer
        with sqlite3.connect(tmp_path / "c.sqlite") as con:
            assert con.execute("SELECT value FROM responses WHERE key = 'k'").fetchone() == ('{"text":"paid for"}',)
        cache.close()

    asyncio.run(put_then_look())


def test_past_its_size_limit_the_least_recently_used_answers_go(tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite", size_limit=10_000)
    value = {"text": "x" * 989}  # 1,000 bytes stored
    for i in range(9):
        cache.put(f"k{i}", value)
    assert cache.evicted == 0 and cache.size == 9_000
    assert cache.get("k0") == value  # k0 is used again: k1 is now the least recently used
    cache.put("k9", value)
    cache.put("k10", value)  # past the limit: evicted down to 90%
    assert cache.size <= 9_000
    assert "k1" not in cache and "k0" in cache and "k10" in cache
    cache.close()
    again = ResponseCache(tmp_path / "c.sqlite", size_limit=10_000)  # the size is read back
    assert again.size == cache.size
    again.clear()
    assert again.size == 0 and again.get("k0") is None
    again.close()


def test_a_cache_from_before_eviction_is_upgraded(tmp_path):
    import sqlite3

    with sqlite3.connect(tmp_path / "c.sqlite") as con:
        con.execute("CREATE TABLE responses (key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL NOT NULL)")
        con.execute("INSERT INTO responses VALUES ('old', '{\"text\":\"kept\"}', 1.0)")
    cache = ResponseCache(tmp_path / "c.sqlite")
    assert cache.get("old") == {"text": "kept"} and cache.size == len('{"text":"kept"}')
    cache.close()
