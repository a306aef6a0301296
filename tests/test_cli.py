"""`batchgrid run`: real processes, real files; every bad input a one-line error and exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from openpyxl import load_workbook

from batchgrid.core.steps import REGISTRY

PIPELINE = {"version": 1, "steps": [
    {"type": "trim", "source": "review", "output": "clean"},
    {"type": "template", "template": "[{rating}] {clean}", "output": "line"},
]}


def cli(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "batchgrid.core.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=120, cwd=cwd)


@pytest.fixture
def files(tmp_path):
    pipeline = tmp_path / "p.json"
    pipeline.write_text(json.dumps(PIPELINE))
    data = tmp_path / "reviews.csv"
    data.write_text("id,review,rating\n1,  good  stuff ,5\n2,bad,1\n3,\" so-so\",3\n")
    return tmp_path, pipeline, data


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, (result.stdout, result.stderr)
    err = result.stderr.strip()
    assert err.startswith("batchgrid: error: ")
    assert "Traceback" not in result.stderr and "\n" not in err, err
    for fragment in fragments:
        assert fragment in err, err


def test_run_writes_results_in_input_order_and_exits_0(files):
    tmp, pipeline, data = files
    out = tmp / "out.xlsx"
    result = cli("run", pipeline, data, "-o", out, "--journal", tmp / "j.sqlite")
    assert result.returncode == 0, result.stderr
    assert "3 done, 0 failed of 3 rows" in result.stderr
    table = pd.read_excel(out, sheet_name=0, engine="openpyxl")
    assert list(table["line"]) == ["[5] good stuff", "[1] bad", "[3] so-so"]
    assert list(table["status"]) == ["done"] * 3


def test_default_output_is_beside_the_input(files):
    tmp, pipeline, data = files
    result = cli("run", pipeline, data, "--journal", tmp / "j.sqlite")
    assert result.returncode == 0, result.stderr
    assert (tmp / "reviews-results.xlsx").exists()
    assert load_workbook(tmp / "reviews-results.xlsx").sheetnames[0]


def test_limit_runs_only_the_first_rows(files):
    tmp, pipeline, data = files
    out = tmp / "out.csv"
    result = cli("run", pipeline, data, "-o", out, "--limit", 2, "--journal", tmp / "j.sqlite")
    assert result.returncode == 0, result.stderr
    assert len(pd.read_csv(out)) == 2


def test_failed_rows_mean_exit_1_and_their_errors_in_the_output(files, fake_openai):
    tmp, _, _ = files
    data = tmp / "codes.csv"
    data.write_text("code\n500\n200\n404\n")
    pipeline = tmp / "http.json"
    pipeline.write_text(json.dumps({"version": 1, "settings": {"max_attempts": 1}, "steps": [
        {"type": "http", "url": fake_openai.url + "/echo?status={code}", "output": "body"}]}))
    out = tmp / "out.csv"
    result = cli("run", pipeline, data, "-o", out, "--journal", tmp / "j.sqlite")
    assert result.returncode == 1, result.stderr
    table = pd.read_csv(out)
    assert list(table["status"]) == ["error", "done", "error"]
    assert table["error"][0].startswith("HTTP 500 Internal Server Error")
    assert table["error"][2].startswith("HTTP 404 Not Found")


@pytest.mark.parametrize("case", ["missing input", "folder input", "missing pipeline", "bad json", "unknown column",
                                  "bad step", "bad output", "bad concurrency", "not a spreadsheet"])
def test_bad_inputs_give_one_line_errors(files, case):
    tmp, pipeline, data = files
    args = ["run", pipeline, data, "--journal", tmp / "j.sqlite"]
    expect = []
    if case == "missing input":
        args[2] = tmp / "nope.csv"
        expect = ["nope.csv", "no such file"]
    elif case == "folder input":
        args[2] = tmp
        expect = ["is a folder"]
    elif case == "missing pipeline":
        args[1] = tmp / "nope.json"
        expect = ["nope.json: no such pipeline file"]
    elif case == "bad json":
        pipeline.write_text('{"version": 1, "steps": [}')
        expect = ["p.json: not valid JSON at line 1"]
    elif case == "unknown column":
        pipeline.write_text(json.dumps({"version": 1, "steps": [{"type": "trim", "source": "reveiw"}]}))
        expect = ['steps[0].source: unknown column "reveiw" (did you mean "review"?); columns are: id, review, rating']
    elif case == "bad step":
        pipeline.write_text(json.dumps({"version": 1, "steps": [{"type": "summarize"}]}))
        expect = ["steps[0].type: unknown step type 'summarize'"]
    elif case == "bad output":
        args += ["-o", tmp / "out.docx"]
        expect = ["the output must end in .xlsx, .csv or .parquet"]
    elif case == "bad concurrency":
        args += ["--max-concurrency", "0"]
        expect = ["--max-concurrency must be at least 1"]
    elif case == "not a spreadsheet":
        fake = tmp / "report.xlsx"
        fake.write_bytes(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n")
        args[2] = fake
        expect = ["report.xlsx"]
    assert_one_line_error(cli(*args), *expect)


def test_a_step_that_cannot_start_is_a_one_line_error(files):
    tmp, pipeline, data = files
    pipeline.write_text(json.dumps({"version": 1, "steps": [
        {"type": "lookup", "file": "missing.csv", "file_key": "sku", "key": "id", "columns": ["name"]}]}))
    out = tmp / "out.csv"
    assert_one_line_error(cli("run", pipeline, data, "-o", out, "--journal", tmp / "j.sqlite"), "missing.csv")
    assert not out.exists()


def test_several_pipeline_problems_are_all_listed(files):
    tmp, pipeline, data = files
    pipeline.write_text(json.dumps({"version": 1, "steps": [{"type": "trim", "source": "a"}, {"type": "trim", "source": "b"}]}))
    result = cli("run", pipeline, data, "--journal", tmp / "j.sqlite")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert 'steps[0].source: unknown column "a"' in result.stderr
    assert 'steps[1].source: unknown column "b"' in result.stderr


def test_code_steps_need_trust(files):
    tmp, _, data = files
    code_steps = [cls for cls in REGISTRY.values() if cls.runs_code]
    assert code_steps, "the palette has a Python step"
    cls = code_steps[0]
    step = {"type": cls.type}
    for p in cls.params:
        if p.kind == "code":
            step[p.name] = "1 + 1"
    pipeline = tmp / "code.json"
    pipeline.write_text(json.dumps({"version": 1, "steps": [step]}))
    out = tmp / "out.csv"
    assert_one_line_error(cli("run", pipeline, data, "-o", out, "--journal", tmp / "j.sqlite"), "--trust")
    assert not out.exists()
    trusted = cli("run", pipeline, data, "-o", out, "--journal", tmp / "j.sqlite", "--trust")
    assert trusted.returncode == 0, trusted.stderr


def test_check_and_steps_commands(files):
    tmp, pipeline, data = files
    ok = cli("check", pipeline, data)
    assert ok.returncode == 0 and "ok (2 steps, 3 rows)" in ok.stdout
    steps = cli("steps")
    assert steps.returncode == 0
    for step_type in ("trim", "template", "http", "parallel"):
        assert f"#### `{step_type}`" in steps.stdout


def test_core_never_imports_qt():
    """core/ must run with no Qt at all: import every core module in a fresh interpreter."""
    code = (
        "import sys, pkgutil, importlib, batchgrid.core as c\n"
        "for m in pkgutil.walk_packages(c.__path__, 'batchgrid.core.'):\n"
        "    if m.name.endswith('.__main__'): continue  # runs the CLI\n"
        "    importlib.import_module(m.name)\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'PyQt5', 'PyQt6', 'qasync', 'shiboken6')]\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
    source = Path(__file__).resolve().parent.parent / "core"
    offenders = [str(p) for p in source.rglob("*.py")
                 if any(w in p.read_text() for w in ("import PySide6", "from PySide6", "import qasync", "from qasync"))]
    assert offenders == []


def test_a_model_pipeline_without_a_key_says_what_it_needs_before_any_row(files, monkeypatch):
    tmp, _, data = files
    pipeline = tmp / "llm.json"
    pipeline.write_text(json.dumps({"version": 1, "steps": [
        {"type": "llm", "name": "Summarise", "prompt": "Summarise: {review}", "output": "summary"}]}))
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    result = subprocess.run([sys.executable, "-m", "batchgrid.core.cli", "run", str(pipeline), str(data),
                             "-o", str(tmp / "out.csv"), "--journal", str(tmp / "j.sqlite")],
                            capture_output=True, text=True, timeout=120, env=env)
    assert_one_line_error(result, 'the step "Summarise" needs a language model: set OPENAI_API_KEY',
                          "http://127.0.0.1:11434/v1")
    assert not (tmp / "out.csv").exists()


def test_a_local_server_needs_no_key(files, fake_openai):
    tmp, _, data = files
    pipeline = tmp / "llm.json"
    pipeline.write_text(json.dumps({"version": 1, "steps": [
        {"type": "llm", "prompt": "Summarise: {review}", "output": "summary", "stream": False}]}))
    env = {k: v for k, v in __import__("os").environ.items() if k != "OPENAI_API_KEY"}
    env["OPENAI_BASE_URL"] = fake_openai.base_url
    out = tmp / "out.csv"
    result = subprocess.run([sys.executable, "-m", "batchgrid.core.cli", "run", str(pipeline), str(data),
                             "-o", str(out), "--journal", str(tmp / "j.sqlite")],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    assert "projected: about " in result.stderr and "for 3 rows (projected from the first 3)" in result.stderr
    assert list(pd.read_csv(out)["summary"]) == ["echo: Summarise:   good  stuff ", "echo: Summarise: bad",
                                                 "echo: Summarise:  so-so"]


def test_a_budget_pause_ends_a_headless_run_instead_of_hanging(files, fake_openai):
    tmp, _, data = files
    pipeline = tmp / "llm.json"
    pipeline.write_text(json.dumps({"version": 1, "settings": {"budget": 0.000001, "max_concurrency": 1},
                                    "providers": {"paid": {"base_url": fake_openai.base_url, "model": "gpt-4o",
                                                           "api_key_env": "BATCHGRID_TEST_KEY"}},
                                    "steps": [{"type": "llm", "prompt": "{review}", "output": "o", "stream": False}]}))
    env = dict(__import__("os").environ, BATCHGRID_TEST_KEY="k")
    result = subprocess.run([sys.executable, "-m", "batchgrid.core.cli", "run", str(pipeline), str(data),
                             "-o", str(tmp / "out.csv"), "--journal", str(tmp / "j.sqlite"), "--no-cache"],
                            capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 1, result.stderr
    assert "batchgrid: paused:" in result.stderr and "--resume" in result.stderr


def test_an_unexpected_error_line_never_quotes_a_credential():
    from batchgrid.core.cli.main import one_line

    line = one_line(RuntimeError("request failed: headers={'authorization': 'Bearer abcdefghijklmnop1234'}"))
    assert "abcdefghijklmnop1234" not in line and "request failed" in line
