"""Patterns from a pipeline cannot hang anything: a regex that backtracks for minutes fails its row
in words, the other rows finish, Stop takes effect, and the cost projection returns.

`(a|aa)+$` on forty "a" and a "!" backtracks for minutes in Python's `re` (and in `regex` too:
`regex` answers `(a+)+$`, the issue's example, at once, so that one simply finds no match).
"""

from __future__ import annotations

import asyncio

import pytest

from batchgrid.core.pipeline.file import Pipeline
from batchgrid.core.run import events as ev
from batchgrid.core.run.engine import Engine
from batchgrid.core.run.estimate import estimate_cost
from batchgrid.core.table import Table
from batchgrid.core.util.jsonpath import extract
from batchgrid.core.util.patterns import TOO_SLOW, NeedsWorkerThread, PatternTooSlow, compile_pattern

EVIL = r"(a|aa)+$"
EVIL_TEXT = "a" * 40 + "!"


def engine(steps, records, **kw):
    p = Pipeline.from_dict({"version": 1, "steps": steps})
    p.validate(Table.from_records(records).columns)
    return Engine(p.steps, Table.from_records(records), **kw)


STEPS = {
    "regex_extract": {"type": "regex_extract", "source": "s", "pattern": EVIL, "output": "out"},
    "find_replace": {"type": "find_replace", "source": "s", "find": EVIL, "replace": "x", "regex": True,
                     "output": "out"},
    "split": {"type": "split", "source": "s", "delimiter": EVIL, "regex": True, "output": "out"},
    "json_path_sub": {"type": "json_path", "source": "j", "paths": {"out": "$.s.`sub(/" + EVIL + "/, x)`"}},
    "json_path_filter": {"type": "json_path", "source": "j", "paths": {"out": '$.items[?(@ =~ "' + EVIL + '")]'}},
}


def record(text: str) -> dict:
    return {"s": text, "j": {"s": text, "items": [text]}}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", list(STEPS))
async def test_a_runaway_pattern_fails_its_row_in_words_and_the_others_finish(kind):
    e = engine([STEPS[kind]], [record(EVIL_TEXT), record("aa"), record("b")], max_concurrency=2)
    await e.run()
    bad, *good = e.results
    assert bad.status == ev.ERROR
    assert bad.error == TOO_SLOW
    assert [r.status for r in good] == [ev.DONE, ev.DONE]


async def test_the_issues_pattern_simply_finds_no_match():
    e = engine([{"type": "regex_extract", "source": "s", "pattern": r"(a+)+$", "output": "out"}],
               [{"s": "a" * 28 + "!"}, {"s": "aaa"}])
    await e.run()
    assert [(r.status, r.outputs["out"]) for r in e.results] == [(ev.DONE, None), (ev.DONE, "aaa")]


@pytest.mark.timeout(60)
async def test_a_run_of_runaway_patterns_can_be_stopped():
    rows = [record(EVIL_TEXT)] * 200
    e = engine([STEPS["find_replace"]], rows, max_concurrency=2)
    failed = asyncio.Event()
    e.subscribe(lambda event: failed.set() if isinstance(event, ev.RowFailed) else None)
    task = asyncio.ensure_future(e.run())
    await failed.wait()  # rows are in their patterns now, off the loop's thread
    e.stop()
    progress = await task
    assert progress.cancelled >= 1
    assert progress.done + progress.failed + progress.cancelled < len(rows)
    finished = [r for r in e.results if r is not None and r.status == ev.ERROR]
    assert finished and all(r.error == TOO_SLOW for r in finished)


@pytest.mark.timeout(60)
def test_the_cost_projection_returns(tmp_path):
    steps = [STEPS["find_replace"], STEPS["json_path_sub"],
             {"type": "llm", "prompt": "{out}", "max_tokens": 10}]
    pipeline = Pipeline.from_dict({"version": 1, "providers": {"p": {"preset": "openai", "model": "gpt-4o-mini"}},
                                   "steps": steps})
    rows = Table.from_records([record(EVIL_TEXT)] * 40)
    estimate = estimate_cost(pipeline, rows, sample=20, data_dir=tmp_path)
    assert estimate.sampled == 20 and estimate.steps[0].calls == 40
    assert estimate.problems == [f"1. Find and replace: {TOO_SLOW}", f"2. JSON path extract: {TOO_SLOW}"]


# ---- the limit itself ----------------------------------------------------------------------

@pytest.mark.timeout(60)
def test_off_the_loop_a_pattern_runs_to_its_limit_then_says_so():
    with pytest.raises(PatternTooSlow) as info:
        compile_pattern(EVIL).search(EVIL_TEXT)
    assert str(info.value) == TOO_SLOW and not isinstance(info.value, NeedsWorkerThread)


async def test_on_the_loop_a_pattern_asks_for_a_worker_thread():
    with pytest.raises(NeedsWorkerThread):
        compile_pattern(EVIL).search(EVIL_TEXT)
    assert compile_pattern(r"\d+").search("ab 12").group() == "12"  # ordinary patterns stay on the loop


def test_patterns_read_as_python_reads_them():
    assert compile_pattern(r"(?P<y>\d{4})-(\d\d)").groupindex == {"y": 1}
    assert compile_pattern("cat", True).sub("dog", "Cat cAt", count=1) == "dog cAt"
    assert compile_pattern(r"\s*").split("a b") == ["", "a", "", "b", ""]
    with pytest.raises(Exception, match="not a valid regular expression: missing \\), unterminated subpattern"):
        compile_pattern("(ab")


@pytest.mark.timeout(60)
def test_json_path_patterns_are_limited_and_checked():
    assert extract({"s": "hello"}, "$.s.`sub(/l+/, L)`") == "heLo"
    assert extract({"a": [{"n": "abc"}, {"n": "xbc"}]}, '$.a[?(@.n =~ "a.*")].n') == "abc"
    with pytest.raises(PatternTooSlow):
        extract({"a": [EVIL_TEXT]}, '$.a[?(@ =~ "' + EVIL + '")]')
    with pytest.raises(ValueError, match="not a valid regular expression"):
        extract({}, '$.a[?(@ =~ "(a")]')
