"""`batchgrid run` under real faults: Ctrl-C at defined moments, journals it cannot use, files
nested too deep, numbers that are not numbers, an output that cannot be written after the rows ran.
Every one ends with one line on stderr and the exit code the CLI's docstring promises."""

from __future__ import annotations

import asyncio
import csv
import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_cli import assert_one_line_error, cli

TRIM = {"version": 1, "steps": [{"type": "trim", "source": "review", "output": "clean"}]}


def start_cli(*args, env=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "batchgrid.core.cli", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def wait_until(condition, proc: subprocess.Popen, what: str, timeout: float = 60.0) -> None:
    """Until `condition()` holds (the moment the test waits for); fails if the CLI ended first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(f"the CLI ended (exit {proc.returncode}) before {what}: {err}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.002)


def interrupted(proc: subprocess.Popen) -> tuple[int, str]:
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"Ctrl-C did not end the CLI: {err}")
    return proc.returncode, err


def assert_one_stopped_line(code: int, err: str) -> str:
    assert code == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("batchgrid: stopped"), err
    return lines[0]


OLD = "id,review\nthe previous output\n"


# ---- Ctrl-C --------------------------------------------------------------------------------------

@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs a named pipe to hold the CLI in its startup")
def test_ctrl_c_during_startup_is_one_line_and_leaves_the_old_output(tmp_path):
    """The CLI is still reading its input (a named pipe nobody has written yet) when Ctrl-C comes."""
    pipeline = tmp_path / "p.json"
    pipeline.write_text(json.dumps(TRIM))
    fifo = tmp_path / "in.csv"
    os.mkfifo(fifo)
    out = tmp_path / "out.csv"
    out.write_text(OLD)
    proc = start_cli("run", pipeline, fifo, "-o", out, "--journal", tmp_path / "j.sqlite", "--quiet")
    writer: list[int] = []

    def reader_opened() -> bool:  # opening the write end without blocking works once the CLI reads it
        try:
            writer.append(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError as exc:
            if exc.errno != errno.ENXIO:
                raise
        return bool(writer)

    wait_until(reader_opened, proc, "the CLI opened its input")
    try:
        line = assert_one_stopped_line(*interrupted(proc))
    finally:
        os.close(writer[0])
    assert "nothing was written" in line, line
    assert out.read_text() == OLD
    assert not list(tmp_path.glob(".out.csv.*"))


def test_ctrl_c_during_the_run_writes_what_finished_in_one_line(tmp_path, fake_openai):
    data = tmp_path / "codes.csv"
    data.write_text("code\n" + "".join(f"{i}\n" for i in range(6)))
    pipeline = tmp_path / "http.json"
    pipeline.write_text(json.dumps({"version": 1, "settings": {"max_concurrency": 1}, "steps": [
        {"type": "http", "url": fake_openai.url + "/echo?prompt=row{code}", "output": "body"}]}))
    out = tmp_path / "out.csv"
    out.write_text(OLD)
    fake_openai.configure(hold=True)
    proc = start_cli("run", pipeline, data, "-o", out, "--journal", tmp_path / "j.sqlite", "--quiet")
    wait_until(lambda: fake_openai.stats.in_flight >= 1, proc, "the first request reached the server")
    line = assert_one_stopped_line(*interrupted(proc))
    fake_openai.configure(hold=False)
    assert "--resume" in line and "0 done" in line and "6 not run" in line, line
    with open(out, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["code"] for r in rows] == [str(i) for i in range(6)]  # complete: every row, none run
    assert all(r["status"] != "done" for r in rows)


def test_ctrl_c_during_export_leaves_the_old_output_or_a_complete_new_one(tmp_path):
    pipeline = tmp_path / "p.json"
    pipeline.write_text(json.dumps(TRIM))
    data = tmp_path / "big.csv"
    n = 100_000
    with open(data, "w") as f:
        f.write("id,review\n")
        f.writelines(f"{i}, review number {i} {'x' * 40}\n" for i in range(n))
    out = tmp_path / "out.csv"
    out.write_text(OLD)
    proc = start_cli("run", pipeline, data, "-o", out, "--journal", tmp_path / "j.sqlite", "--quiet")
    wait_until(lambda: any(tmp_path.glob(".out.csv.*.tmp")), proc, "the export started")
    line = assert_one_stopped_line(*interrupted(proc))
    assert not list(tmp_path.glob(".out.csv.*")), "no temporary file is left behind"
    text = out.read_text(encoding="utf-8-sig")
    if text == OLD:
        assert "left as it was" in line and "--resume" in line, line
    else:  # the export had finished when Ctrl-C came: the new file is whole
        with open(out, encoding="utf-8-sig", newline="") as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == n and rows[-1]["clean"] == f"review number {n - 1} {'x' * 40}"
        assert {r["status"] for r in rows} == {"done"}
    # What finished is in the journal: --resume writes it without running a row again.
    again = cli("run", pipeline, data, "-o", out, "--journal", tmp_path / "j.sqlite", "--resume", "--quiet")
    assert again.returncode == 0, again.stderr
    with open(out, encoding="utf-8-sig", newline="") as f:
        assert sum(1 for _ in csv.reader(f)) == n + 1


def test_without_add_signal_handler_ctrl_c_goes_through_signal_signal():
    """Windows: loop.add_signal_handler raises NotImplementedError; the same callback runs anyway."""
    from batchgrid.core.cli.main import install_interrupt_handler

    heard: list[str] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()

        def no_signals(*_args):
            raise NotImplementedError

        loop.add_signal_handler = no_signals  # type: ignore[method-assign]
        before = signal.getsignal(signal.SIGINT)
        done = asyncio.Event()

        def on_interrupt() -> None:
            heard.append("interrupt")
            done.set()

        restore = install_interrupt_handler(loop, on_interrupt)
        try:
            handler = signal.getsignal(signal.SIGINT)
            assert callable(handler) and handler is not before
            handler(signal.SIGINT, None)  # what Python does when Ctrl-C comes, on Windows too
            await asyncio.wait_for(done.wait(), 10)
        finally:
            restore()
        assert signal.getsignal(signal.SIGINT) is before

    asyncio.run(scenario())
    assert heard == ["interrupt"]


# ---- journals it cannot use ---------------------------------------------------------------------

@pytest.fixture
def files(tmp_path):
    pipeline = tmp_path / "p.json"
    pipeline.write_text(json.dumps(TRIM))
    data = tmp_path / "d.csv"
    data.write_text("id,review\n1,a\n2,b\n")
    return tmp_path, pipeline, data


@pytest.mark.parametrize("case", ["not a database", "a folder", "cannot be written"])
def test_a_journal_it_cannot_use_is_a_one_line_error(files, case):
    tmp, pipeline, data = files
    journal = tmp / "j.sqlite"
    if case == "not a database":
        journal.write_text("these are my notes, not a database\n" * 200)
        expect = ["is not a Batchgrid journal"]
    elif case == "a folder":
        journal.mkdir()
        expect = ["is a folder"]
    else:
        if not Path("/sys").is_dir() or _writable("/sys"):
            pytest.skip("needs a folder nobody may write in (Linux /sys)")
        journal = Path("/sys/batchgrid-journal.sqlite")
        expect = ["cannot be written"]
    out = tmp / "out.csv"
    result = cli("run", pipeline, data, "-o", out, "--journal", journal)
    assert_one_line_error(result, f"cannot use the journal at {journal}", "--journal", *expect)
    assert not out.exists()


def _writable(folder: str) -> bool:
    try:
        Path(folder, ".batchgrid-probe").touch()
    except OSError:
        return False
    Path(folder, ".batchgrid-probe").unlink()
    return True


# ---- an output that cannot be written after the rows ran ----------------------------------------

@pytest.mark.skipif(not Path("/sys").is_dir(), reason="needs a folder nobody may write in (Linux /sys)")
def test_an_export_that_fails_after_the_rows_ran_says_resume_writes_them(files, fake_openai):
    tmp, _, data = files
    if _writable("/sys"):
        pytest.skip("/sys is writable here")
    pipeline = tmp / "http.json"
    pipeline.write_text(json.dumps({"version": 1, "steps": [
        {"type": "http", "url": fake_openai.url + "/echo?prompt={review}", "output": "body"}]}))
    journal = tmp / "j.sqlite"
    result = cli("run", pipeline, data, "-o", "/sys/batchgrid-out.csv", "--journal", journal)
    assert result.returncode == 4, result.stderr
    err = result.stderr.strip()
    assert "Traceback" not in err and "\n" not in err, err
    assert err.startswith("batchgrid: error: ") and "batchgrid-out.csv" in err
    assert "the 2 finished rows are kept in the journal" in err and "--resume" in err, err
    sent = fake_openai.stats.requests
    assert sent == 2
    out = tmp / "out.csv"
    again = cli("run", pipeline, data, "-o", out, "--journal", journal, "--resume")
    assert again.returncode == 0, again.stderr
    assert fake_openai.stats.requests == sent  # written from the journal: nothing ran again
    with open(out, encoding="utf-8-sig", newline="") as f:
        assert [r["status"] for r in csv.DictReader(f)] == ["done", "done"]


def test_an_output_that_is_a_folder_is_refused_before_any_row_runs(files):
    tmp, pipeline, data = files
    (tmp / "out.csv").mkdir()
    assert_one_line_error(cli("run", pipeline, data, "-o", tmp / "out.csv", "--journal", tmp / "j.sqlite"),
                          "out.csv: is a folder")


# ---- pipeline files nested too deep -------------------------------------------------------------

def nested(depth: int) -> str:
    leaf = '{"type": "trim", "source": "review", "output": "x"}'
    return ('{"version": 1, "steps": [' + '{"type": "parallel", "branches": {"a": [' * depth + leaf
            + "]}}" * depth + "]}")


@pytest.mark.parametrize("depth", [21, 200, 5000])
def test_a_pipeline_nested_too_deep_is_refused_in_one_line(files, depth):
    tmp, pipeline, data = files
    pipeline.write_text(nested(depth))
    assert_one_line_error(cli("run", pipeline, data, "--journal", tmp / "j.sqlite"), "nested", "more than 20")
    result = cli("check", pipeline)
    assert result.returncode == 2 and "Traceback" not in result.stderr and "more than 20" in result.stderr


def test_twenty_levels_of_parallel_steps_are_fine(files):
    _, pipeline, data = files
    pipeline.write_text(nested(19))  # 19 parallel steps around the trim: 20 levels of steps
    result = cli("check", pipeline, data)
    assert result.returncode == 0, result.stderr


# ---- numbers that are not numbers, arguments out of range ---------------------------------------

@pytest.mark.parametrize("settings_text, where", [
    ('"retry_base_delay": NaN', "settings.retry_base_delay"),
    ('"retry_max_delay": Infinity', "settings.retry_max_delay"),
    ('"budget": -Infinity', "settings.budget"),
    ('"budget": NaN', "settings.budget"),
])
def test_nan_and_infinity_in_settings_are_refused(files, settings_text, where):
    tmp, pipeline, data = files
    pipeline.write_text('{"version": 1, "settings": {' + settings_text + '}, "steps": '
                        + json.dumps(TRIM["steps"]) + "}")
    assert_one_line_error(cli("run", pipeline, data, "--journal", tmp / "j.sqlite"), f"{where}: must be a number")
    assert cli("check", pipeline).returncode == 2


def test_nan_in_a_step_parameter_is_refused(files):
    tmp, pipeline, data = files
    pipeline.write_text('{"version": 1, "steps": [{"type": "http", "url": "http://127.0.0.1:9/{review}", '
                        '"output": "o", "timeout": NaN}]}')
    assert_one_line_error(cli("run", pipeline, data, "--journal", tmp / "j.sqlite"),
                          "steps[0].timeout: must be a number, not NaN")


def test_nan_is_a_problem_for_a_pipeline_being_edited():
    from batchgrid.core.pipeline.file import Pipeline

    pipeline = Pipeline.from_dict(TRIM)
    pipeline.settings["retry_base_delay"] = float("nan")
    assert [str(p) for p in pipeline.check()] == ["settings.retry_base_delay: must be a number, not NaN"]


@pytest.mark.parametrize("args, expect", [
    (["--max-concurrency", str(10**30)], "--max-concurrency must be at most 1000"),
    (["--max-concurrency", "1001"], "--max-concurrency must be at most 1000"),
    (["--max-concurrency", "-3"], "--max-concurrency must be at least 1"),
    (["--max-concurrency", "many"], "--max-concurrency: 'many' is not a whole number"),
    (["--limit", "0"], "--limit must be at least 1"),
    (["--limit", "-5"], "--limit must be at least 1"),
    (["--limit", "2.5"], "--limit: '2.5' is not a whole number"),
    (["--limit"], "--limit: expected one argument"),
    (["--frobnicate"], "unrecognized arguments: --frobnicate"),
])
def test_every_bad_argument_is_one_line_and_exit_2(files, args, expect):
    tmp, pipeline, data = files
    assert_one_line_error(cli("run", pipeline, data, "--journal", tmp / "j.sqlite", *args), expect)


def test_a_missing_command_is_one_line_and_exit_2():
    assert_one_line_error(cli(), "COMMAND")
