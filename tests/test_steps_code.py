"""The Python expression step: trust, compile once, columns as variables, errors with line numbers."""

import threading

import pytest

from batchgrid.core.run import events as ev
from batchgrid.core.run.engine import Engine, RunResources
from batchgrid.core.table import Table
from batchgrid.core.util.errors import PipelineError, StepError, UntrustedCodeError
from batchgrid.core.pipeline.file import Pipeline
from batchgrid.core.steps import REGISTRY, new_step
from batchgrid.core.steps.base import CODE

TRUSTED = RunResources(trusted=True)


def load(*steps):
    return Pipeline.from_dict({"version": 1, "steps": list(steps)})


async def prepared(**config):
    """The step bound for a trusted run: what the engine calls for every row."""
    return await new_step("python", **config).bind(TRUSTED)


async def run(steps, records, trusted):
    engine = Engine(steps, Table.from_records(records), max_concurrency=3,
                    resources=RunResources(trusted=trusted))
    finished = []
    engine.subscribe(lambda e: finished.append(e) if isinstance(e, ev.RunFinished) else None)
    await engine.run()
    return engine.results, finished[0]


def test_declaration():
    cls = REGISTRY["python"]
    assert cls.group == "Code" and cls.runs_code is True
    assert cls.param("code").kind == CODE
    assert cls.param("run_in_thread").title == "Slow code (run in a thread)"
    assert all(p.help for p in cls.params)
    assert load({"type": "python", "code": "1"}).runs_code is True


# ---- trust --------------------------------------------------------------------------

async def test_bind_refuses_without_trust_and_explains_trust():
    step = new_step("python", code="len(review) > 100")
    with pytest.raises(UntrustedCodeError) as info:
        await step.bind(RunResources(trusted=False))
    message = str(info.value)
    assert "--trust" in message and "Python expression" in message and "\n" not in message
    with pytest.raises(UntrustedCodeError):  # nor can the declaration run it unbound
        step.apply({"review": "x"})


async def test_engine_run_without_trust_runs_no_row():
    step = new_step("python", code="len(review)")
    results, finished = await run([new_step("trim", source="review"), step], [{"review": "a"}, {"review": "b"}],
                                  trusted=False)
    assert finished.reason == "failed" and "--trust" in finished.message
    assert results == [None, None]


async def test_trust_is_checked_on_every_run():
    step = new_step("python", code="1")
    trusted_run = await step.bind(TRUSTED)
    with pytest.raises(UntrustedCodeError):
        await step.bind(RunResources(trusted=False))
    with pytest.raises(UntrustedCodeError):
        step.apply({})
    assert trusted_run.apply({}) == {"result": 1}  # a binding belongs to its own run


# ---- expressions and blocks -----------------------------------------------------------

async def test_expression_over_columns():
    step = await prepared(code="len(review) > 10")
    assert step.step.writes() == ["result"]
    assert step.apply({"review": "short"}) == {"result": False}
    assert step.apply({"review": "much longer than ten"}) == {"result": True}


async def test_columns_with_any_name_through_row_and_reserved_names():
    step = await prepared(code='row["Customer name"].upper() + "/" + json + "/" + str(row["class"])', output="who")
    # "Customer name" and "class" are not Python names; a "json" column does not hide the json module...
    with pytest.raises(StepError, match="TypeError"):
        step.apply({"Customer name": "ada", "class": 1, "json": "{}"})
    step = await prepared(code='row["Customer name"].upper() + "/" + row["json"] + "/" + str(row["class"]) '
                               '+ "/" + str(json.loads(row["json"]))', output="who")
    assert step.apply({"Customer name": "ada", "class": 1, "json": "{}"}) == {"who": "ADA/{}/1/{}"}


async def test_block_of_statements_sets_result_with_modules():
    code = (
        "words = re.findall(r'\\w+', review or '')\n"
        "when = datetime.date.fromisoformat(day)\n"
        "result = {'n': len(words), 'root': math.sqrt(len(words)), 'weekday': when.strftime('%A'),\n"
        "          'data': json.dumps({'w': words[:1]})}\n"
    )
    step = await prepared(code=code, outputs=["n", "root", "weekday", "data"])
    assert step.step.writes() == ["n", "root", "weekday", "data"]
    assert step.apply({"review": "one two three four", "day": "2024-03-09"}) == {
        "n": 4, "root": 2.0, "weekday": "Saturday", "data": '{"w": ["one"]}'}


async def test_lazy_imports_work_with_pyside_loaded():
    # shiboken replaces builtins.__import__ with a hook that aborted the process when the
    # code's builtins were a plain dict (the window has PySide6 loaded, always).
    pytest.importorskip("PySide6.QtCore")
    step = await prepared(code="import statistics\nresult = (datetime.date(2024, 3, 9).strftime('%a'), "
                               "statistics.mean([1, 2]), datetime.datetime.strptime('09/03/24', '%d/%m/%y').year)")
    assert step.apply({}) == {"result": ("Sat", 1.5, 2024)}


async def test_blank_result_is_blank_not_the_string_none():
    step = await prepared(code="review.strip() if review else None")
    assert step.apply({"review": None}) == {"result": None}
    several = await prepared(code="None", outputs=["a", "b"])
    assert several.apply({}) == {"a": None, "b": None}
    block = await prepared(code="if review:\n    result = review\n")
    assert block.apply({"review": ""}) == {"result": None}


async def test_the_row_is_a_copy():
    step = await prepared(code="row['review'] = 'changed'\nresult = review")
    row = {"review": "original"}
    assert step.apply(row) == {"result": "original"}
    assert row == {"review": "original"}


async def test_only_a_small_set_of_builtins():
    step = await prepared(code="open('/etc/passwd').read()")
    with pytest.raises(StepError, match="NameError: name 'open' is not defined"):
        step.apply({})
    step = await prepared(code="sorted(set(map(int, ['3', '1', '3'])))")
    assert step.apply({}) == {"result": [1, 3]}


# ---- errors -------------------------------------------------------------------------

async def test_runtime_errors_name_the_problem_and_line():
    step = await prepared(code="x = 1\ny = x / zero\nresult = y")
    with pytest.raises(StepError) as info:
        step.apply({"zero": 0})
    assert str(info.value) == "the code failed at line 2: ZeroDivisionError: division by zero"
    missing = await prepared(code='row["Custmer"]')
    with pytest.raises(StepError) as info:
        missing.apply({"Customer": "a", "id": 1})
    assert str(info.value) == "the code reads row['Custmer'], but there is no such column; columns are: Customer, id"


async def test_exit_in_the_code_fails_the_row_not_the_run():
    step = await prepared(code="import sys\nsys.exit(3)")
    with pytest.raises(StepError, match="^the code failed at line 2: SystemExit: 3$"):
        step.apply({})
    step = await prepared(code="if x:\n    raise ValueError\nresult = 1")
    with pytest.raises(StepError, match="^the code failed at line 2: ValueError$"):
        step.apply({"x": 1})


async def test_dict_outputs_must_match():
    step = await prepared(code="{'a': 1}", outputs=["a", "b"])
    with pytest.raises(StepError, match="has no key b; its keys are: a"):
        step.apply({})
    step = await prepared(code="5", outputs=["a"])
    with pytest.raises(StepError, match=r'must give a dict with the keys a; it gave "5" \(int\)'):
        step.apply({})


def test_syntax_errors_are_located_with_a_line_number():
    with pytest.raises(PipelineError) as info:
        load({"type": "python", "code": "x = 1\ny = = 2\nresult = y"})
    (problem,) = info.value.messages()
    assert problem.startswith("steps[0].code: line 2: ") and problem.endswith(": y = = 2")
    with pytest.raises(PipelineError) as info:
        load({"type": "python", "code": "len(review"})
    assert info.value.messages()[0].startswith("steps[0].code: line 1: ")
    with pytest.raises(PipelineError) as info:
        load({"type": "python", "code": "x = len(review)"})
    assert info.value.messages() == [
        "steps[0].code: these lines never set result; write result = ... (or give a single expression)"]
    with pytest.raises(PipelineError) as info:
        load({"type": "python", "code": ""})
    assert info.value.messages() == ["steps[0].code: must not be empty"]


async def test_bind_compiles_and_reports_a_syntax_error_edited_after_loading():
    step = new_step("python", code="1 +")
    with pytest.raises(StepError, match=r'the step "Python expression" has a syntax error at line 1'):
        await step.bind(TRUSTED)


def test_output_names_are_validated_against_the_table():
    pipeline = load({"type": "template", "template": "{id}", "output": "score"},
                    {"type": "python", "code": "1", "outputs": ["id", "score"]})
    assert [str(p) for p in pipeline.problems(["id"])] == ['steps[1]: output "score" is already written by steps[0]; choose another name']
    assert load({"type": "python", "code": "1", "output": "flag"}).output_columns() == ["flag"]


# ---- where it runs -------------------------------------------------------------------

@pytest.mark.parametrize("in_thread", [False, True])
async def test_runs_in_a_thread_only_when_asked(in_thread):
    step = await prepared(code="1", run_in_thread=in_thread)
    threads = []
    original = step.apply
    step.apply = lambda row: threads.append(threading.current_thread()) or original(row)
    assert await step.run({}, ctx=None) == {"result": 1}
    assert (threads[0] is threading.main_thread()) is not in_thread


# ---- through the engine --------------------------------------------------------------

async def test_end_to_end_with_trust_one_row_failing():
    pipeline = load(
        {"type": "length", "source": "review", "characters": False},
        {"type": "python", "code": "round(stars / review_words, 2)", "output": "stars_per_word",
         "run_in_thread": True},
        {"type": "change_case", "source": "review", "case": "upper"},
    )
    records = [{"review": "good value", "stars": 4}, {"review": "", "stars": 1}, {"review": "a b c", "stars": 5}]
    assert pipeline.problems(["review", "stars"]) == []
    results, finished = await run(pipeline.steps, records, trusted=True)
    assert finished.reason == "finished"
    assert [r.status for r in results] == ["done", "error", "done"]
    assert results[0].outputs == {"review_words": 2, "stars_per_word": 2.0, "review_upper": "GOOD VALUE"}
    assert results[1].error == "the code failed at line 1: ZeroDivisionError: division by zero"
    assert results[1].failed_step == "2. Python expression" and "review_upper" not in results[1].outputs
    assert results[2].outputs == {"review_words": 3, "stars_per_word": 1.67, "review_upper": "A B C"}


def test_round_trip_is_lossless():
    data = {"version": 1, "steps": [
        {"type": "python", "name": "score", "code": "parts = review.split()\nresult = {'n': len(parts)}",
         "outputs": ["n"], "run_in_thread": True},
        {"type": "python", "code": "n > 2", "output": "long"},
    ]}
    pipeline = Pipeline.from_dict(data)
    assert pipeline.to_dict() == data
    assert [s.config for s in Pipeline.from_dict(pipeline.to_dict()).steps] == [s.config for s in pipeline.steps]
