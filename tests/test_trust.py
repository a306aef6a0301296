"""The trust model (issue 9): what a pipeline nobody vouched for may do, and the literal-secret check.

Untrusted, a pipeline may read the open sheet and the files in its own folder, call the hosts it
names, and read `${NAME}` only in header values. Anything else (Python code, `${NAME}` in a
template, URL or prompt, a file outside its folder, a file: URL) is a `Permission`: refused before
any row runs with one line each (step and parameter), refused again at run time, allowed with trust.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from batchgrid.core.pipeline.file import Pipeline
from batchgrid.core.run import events as ev
from batchgrid.core.run.engine import Engine, RetryPolicy
from batchgrid.core.run.job import Job
from batchgrid.core.session import Session
from batchgrid.core.steps.context import RunResources
from batchgrid.core.table import Table
from batchgrid.core.util.errors import PipelineError, UntrustedCodeError

CANARY = "canary-9f8e7d6c5b4a3"
FAST = RetryPolicy(max_attempts=1, base_delay=0.01, max_delay=0.01)


@pytest.fixture(autouse=True)
def canary(monkeypatch):
    monkeypatch.setenv("BATCHGRID_CANARY", CANARY)


def cli(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "batchgrid.core.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=120, cwd=cwd)


def write_pipeline(folder: Path, *steps, providers=None, name="p.json") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    data = {"version": 1, "steps": list(steps)}
    if providers:
        data["providers"] = providers
    path = folder / name
    path.write_text(json.dumps(data))
    return path


def job_for(path: Path, records, trusted=False) -> Job:
    return Job(Pipeline.load(path), Table.from_records(records), trusted=trusted)


def refusal(path: Path, records) -> list[str]:
    """The lines an untrusted run of the pipeline file is refused with (before any row)."""
    with pytest.raises(UntrustedCodeError) as info:
        job_for(path, records).check_ready()
    assert "\n" not in str(info.value)
    return info.value.lines


async def run_steps(steps, records, *, trusted: bool, base_dir: Path | None = None):
    pipeline = Pipeline.from_dict({"version": 1, "steps": steps})
    engine = Engine(pipeline.steps, Table.from_records(records), max_concurrency=2, retry_policy=FAST,
                    resources=RunResources(trusted=trusted, base_dir=base_dir or Path.cwd()))
    finished = []
    engine.subscribe(lambda e: finished.append(e) if isinstance(e, ev.RunFinished) else None)
    await engine.run()
    return engine.results, finished[0]


# ---- item 1: environment variables outside header values ---------------------------------------
def test_env_vars_in_a_template_a_url_and_a_prompt_each_need_trust(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test-not-a-key")  # the LLM step's key, once trusted
    path = write_pipeline(
        tmp_path,
        {"type": "template", "template": "key=${BATCHGRID_CANARY}", "output": "o"},
        {"type": "http", "url": "https://x.example/?k=${SCORE_TOKEN}", "headers": {"Authorization": "Bearer ${TOK}"}},
        {"type": "llm", "prompt": "Say {a} and ${MY_SECRET}", "output": "answer"},
    )
    assert refusal(path, [{"a": 1}]) == [
        "steps[0].template: uses $BATCHGRID_CANARY in a template",
        "steps[1].url: uses $SCORE_TOKEN in a URL",
        "steps[2].prompt: uses $MY_SECRET in a prompt",
    ]
    assert [p.describe() for p in Pipeline.load(path).permissions()][1] == "uses $SCORE_TOKEN in a URL (step 2, url)"
    job_for(path, [{"a": 1}], trusted=True).check_ready()  # trusted: nothing stops it (no key is needed yet)


def test_env_vars_in_header_values_need_no_trust(tmp_path):
    path = write_pipeline(
        tmp_path,
        {"type": "http", "url": "https://x.example/{a}", "headers": {"Authorization": "Bearer ${TOK}"}},
        providers={"p": {"preset": "ollama", "headers": {"X-Token": "${TOK}"}}})
    assert Pipeline.load(path).permissions() == []
    job_for(path, [{"a": 1}]).check_ready()


async def test_an_untrusted_run_does_not_expand_env_vars_in_a_template():
    """Defence in depth: even a run that skipped the check leaves ${NAME} out of the results."""
    steps = [{"type": "template", "template": "key=${BATCHGRID_CANARY}", "output": "o"}]
    results, finished = await run_steps(steps, [{"a": 1}], trusted=False)
    assert results[0].status == ev.ERROR and CANARY not in repr(results[0])
    assert results[0].error.startswith("${BATCHGRID_CANARY} is not read here")
    results, _ = await run_steps(steps, [{"a": 1}], trusted=True)
    assert results[0].status == ev.DONE  # expanded (what results show of a secret is the secret policy's)


async def test_an_untrusted_run_never_sends_an_env_var_in_a_url(fake_openai):
    steps = [{"type": "http", "url": fake_openai.url + "/echo/${BATCHGRID_CANARY}"}]
    results, _ = await run_steps(steps, [{"a": 1}], trusted=False)
    assert results[0].status == ev.ERROR and fake_openai.stats.requests == 0
    results, _ = await run_steps(steps, [{"a": 1}], trusted=True)
    assert results[0].status == ev.DONE and list(fake_openai.stats.by_path) == [f"/echo/{CANARY}"]


async def test_an_untrusted_run_still_reads_env_vars_in_headers(fake_openai):
    steps = [{"type": "http", "url": fake_openai.url + "/echo", "headers": {"X-Api-Key": "${BATCHGRID_CANARY}"}}]
    results, _ = await run_steps(steps, [{"a": 1}], trusted=False)
    assert results[0].status == ev.DONE and fake_openai.stats.last_headers["x-api-key"] == CANARY


# ---- item 2: files outside the pipeline's folder ---------------------------------------------
def test_a_similar_step_reading_etc_passwd_needs_trust(tmp_path):
    path = write_pipeline(tmp_path, {"type": "similar", "source": "q", "reference_file": "/etc/passwd"})
    assert refusal(path, [{"q": "x"}]) == ["steps[0].reference_file: reads /etc/passwd"]


def test_a_lookup_outside_the_folder_needs_trust_and_inside_does_not(tmp_path):
    (tmp_path / "prices.csv").write_text("sku,price\nA,1\n")
    (tmp_path / "pipes" / "ref").mkdir(parents=True)
    (tmp_path / "pipes" / "ref" / "mine.csv").write_text("sku,price\nA,2\n")
    lookup = {"type": "lookup", "file_key": "sku", "key": "sku", "columns": ["price"]}
    outside = write_pipeline(tmp_path / "pipes", {**lookup, "file": "../prices.csv"}, name="out.json")
    assert refusal(outside, [{"sku": "A"}]) == [f"steps[0].file: reads {os.path.realpath(tmp_path / 'prices.csv')}"]
    absolute = write_pipeline(tmp_path / "pipes", {**lookup, "file": str(tmp_path / "prices.csv")}, name="abs.json")
    assert refusal(absolute, [{"sku": "A"}]) == [f"steps[0].file: reads {os.path.realpath(tmp_path / 'prices.csv')}"]
    inside = write_pipeline(tmp_path / "pipes", {**lookup, "file": "ref/mine.csv"}, name="in.json")
    assert Pipeline.load(inside).permissions() == []
    job_for(inside, [{"sku": "A"}]).check_ready()


def test_a_link_inside_the_folder_to_a_file_outside_needs_trust(tmp_path):
    (tmp_path / "secret.csv").write_text("sku,price\nA,1\n")
    (tmp_path / "pipes").mkdir()
    (tmp_path / "pipes" / "prices.csv").symlink_to(tmp_path / "secret.csv")
    path = write_pipeline(tmp_path / "pipes", {"type": "lookup", "file": "prices.csv", "file_key": "sku",
                                               "key": "sku", "columns": ["price"]})
    assert refusal(path, [{"sku": "A"}]) == [f"steps[0].file: reads {os.path.realpath(tmp_path / 'secret.csv')}"]


async def test_an_untrusted_run_reads_no_file_outside_the_folder(tmp_path):
    """Defence in depth: the run's own path resolution refuses, before reading anything."""
    (tmp_path / "prices.csv").write_text("sku,price\nA,1\n")
    (tmp_path / "pipes").mkdir()
    steps = [{"type": "lookup", "file": "../prices.csv", "file_key": "sku", "key": "sku", "columns": ["price"]}]
    results, finished = await run_steps(steps, [{"sku": "A"}], trusted=False, base_dir=tmp_path / "pipes")
    assert finished.reason == "failed" and "outside the pipeline's folder" in finished.message
    assert "\n" not in finished.message and results[0] is None
    results, finished = await run_steps(steps, [{"sku": "A"}], trusted=True, base_dir=tmp_path / "pipes")
    assert finished.reason == "finished" and results[0].outputs == {"price": 1}


async def test_an_untrusted_similar_step_sends_nothing_from_etc_passwd(models, tmp_path):
    step = {"type": "similar", "source": "text", "reference_file": "/etc/passwd"}
    run = await models.run([step], [{"text": "root"}], base_dir=tmp_path)
    finished = run.of(ev.RunFinished)[0]
    assert finished.reason == "failed" and "/etc/passwd is outside the pipeline's folder" in finished.message
    assert models.server.stats.embedding_batches == []


def test_code_and_file_urls_need_trust(tmp_path):
    path = write_pipeline(tmp_path, {"type": "python", "code": "1 + 1", "output": "two"},
                          {"type": "http", "url": "file:///etc/passwd"})
    assert refusal(path, [{"a": 1}]) == ["steps[0].code: runs Python code",
                                         "steps[1].url: reads local files through a file: URL"]


def test_disabled_steps_and_branches(tmp_path):
    path = write_pipeline(tmp_path, {"type": "python", "code": "1", "output": "one", "enabled": False},
                          {"type": "parallel", "branches": {"x": [{"type": "template", "template": "${HOME}",
                                                                   "output": "h"}]}})
    wanted = Pipeline.load(path).permissions()
    assert [str(p) for p in wanted] == ["steps[1].branches.x[0].template: uses $HOME in a template"]
    assert wanted[0].describe() == "uses $HOME in a template (step 2, branch x, step 1, template)"


# ---- the CLI: --trust, and `check` listing what needs trust ---------------------------------------
def test_cli_refuses_an_untrusted_pipeline_and_runs_it_with_trust(tmp_path):
    data = tmp_path / "d.csv"
    data.write_text("a\n1\n")
    path = write_pipeline(tmp_path, {"type": "template", "template": "key=${BATCHGRID_CANARY}", "output": "o"},
                          {"type": "template", "template": "{a}${HOME}", "output": "h"})
    out = tmp_path / "out.csv"
    refused = cli("run", path, data, "-o", out, "--journal", tmp_path / "j.sqlite")
    assert refused.returncode == 2 and not out.exists()
    assert refused.stderr.splitlines() == [
        "batchgrid: error: this pipeline needs your trust to run; add --trust if you trust where it came from. "
        "It wants to:",
        "  steps[0].template: uses $BATCHGRID_CANARY in a template",
        "  steps[1].template: uses $HOME in a template"]
    checked = cli("check", path, data)
    assert checked.returncode == 0
    assert "steps[0].template: uses $BATCHGRID_CANARY in a template" in checked.stdout.splitlines()[2]
    trusted = cli("run", path, data, "-o", out, "--journal", tmp_path / "j.sqlite", "--trust")
    assert trusted.returncode == 0, trusted.stderr
    assert ",done," in out.read_text()


# ---- the session: a pipeline built by the user is theirs; a loaded one is not -------------------
async def test_session_trusts_what_the_user_builds_not_what_it_loads(tmp_path):
    data = tmp_path / "d.csv"
    data.write_text("a\n1\n")
    path = write_pipeline(tmp_path, {"type": "python", "code": "a * 2", "output": "b"})
    session = Session(journal_path=tmp_path / "j.sqlite")
    try:
        await session.open_sheet(data)
        session.set_pipeline(Pipeline.from_dict(json.loads(path.read_text())))  # built here: no file
        assert session.needs_trust() == []
        await session.check_ready()
        await session.load_pipeline(path)
        assert [str(p) for p in session.needs_trust()] == ["steps[0].code: runs Python code"]
        with pytest.raises(UntrustedCodeError):
            await session.check_ready()
        session.trust()
        assert session.needs_trust() == []
        await session.start()
        assert await session.wait() == ("finished", "")
        assert session.store.result_set({}).results[0].outputs == {"b": 2}
        await session.load_pipeline(path)  # the same file again, unchanged: trusted in this session
        assert session.needs_trust() == []
        write_pipeline(tmp_path, {"type": "python", "code": "a * 3", "output": "b"})  # changed on disk
        await session.load_pipeline(path)
        assert [str(p) for p in session.needs_trust()] == ["steps[0].code: runs Python code"]
    finally:
        await session.close()


# ---- item 7: literal secrets in a pipeline file ---------------------------------------------------
@pytest.mark.parametrize("headers, where", [
    ({"X-Api-Key": "4f1c2b9a8e7d6c5b"}, "headers.X-Api-Key"),
    ({"Authorization": "Token 4f1c2b9a8e7d6c5b4a39"}, "headers.Authorization"),
    ({"Authorization": "Basic dXNlcjpwYXNz"}, "headers.Authorization"),
    ({"Cookie": "session=abc"}, "headers.Cookie"),
    ({"x-auth-token": "hunter2hunter2"}, "headers.x-auth-token"),
    ({"X-Client-Secret": "s"}, "headers.X-Client-Secret"),
])
def test_a_literal_value_in_a_credential_header_is_refused(tmp_path, headers, where):
    path = write_pipeline(tmp_path, {"type": "http", "url": "https://x.example/", "headers": headers})
    with pytest.raises(PipelineError) as info:
        Pipeline.load(path)
    (line,) = info.value.messages()
    assert line.startswith(f"steps[0].{where}: ") and "${ENV_VAR}" in line
    checked = cli("check", path) if where == "headers.X-Api-Key" else None
    if checked is not None:
        assert checked.returncode == 2 and checked.stderr.startswith(f"batchgrid: error: steps[0].{where}: ")


def test_a_literal_credential_header_in_a_provider_profile_is_refused():
    with pytest.raises(PipelineError) as info:
        Pipeline.from_dict({"version": 1, "providers": {"p": {"preset": "ollama", "headers": {"X-Api-Key": "k-123"}}},
                            "steps": []})
    assert info.value.messages()[0].startswith("providers.p.headers.X-Api-Key: ")


@pytest.mark.parametrize("value", [
    "AKIAIOSFODNN7EXAMPLE", "ghp_" + "a1" * 18, "xoxb-1234567890-abcdef", "sk-proj-" + "Ab3" * 8,
    "Token 4f1c2b9a8e7d6c5b4a39", "github_pat_" + "A1b2" * 6, "AIza" + "B2c3D4e5F6" * 3 + "G7h8i",
])
def test_known_key_formats_are_refused_anywhere(value):
    with pytest.raises(PipelineError) as info:
        Pipeline.from_dict({"version": 1, "steps": [{"type": "template", "template": f"x {value} {{a}}", "output": "o"}]})
    assert info.value.messages() == ["steps[0].template: looks like an API key or token; pipeline files never hold "
                                     "secrets; write ${ENV_VAR} and set that environment variable instead"]


@pytest.mark.parametrize("headers", [
    {"X-Api-Key": "${MY_KEY}"}, {"Authorization": "Bearer ${TOK}"}, {"Token": "${TOK}"},
    {"Authorization": "Token {token_column}"}, {"X-Team": "data"}, {"Accept": "application/json"},
])
def test_credential_headers_from_the_environment_or_a_column_are_fine(headers):
    Pipeline.from_dict({"version": 1, "steps": [{"type": "http", "url": "https://x.example/", "headers": headers}]})


def test_ordinary_words_are_not_mistaken_for_keys():
    Pipeline.from_dict({"version": 1, "steps": [
        {"type": "template", "template": "Token classification of internationalization: {a}", "output": "o"}]})
