"""Pipeline files: every problem found before a row runs, said with where it is; lossless round trip."""

from __future__ import annotations

import json

import pytest
from batchgrid.core.pipeline.file import Pipeline
from batchgrid.core.steps import REGISTRY, step_types_by_group
from batchgrid.core.steps.base import GROUPS, PARAM_KINDS
from batchgrid.core.util.errors import BatchgridError, PipelineError


def problems_of(data) -> list[str]:
    """The lines the CLI prints for a file with `data`."""
    with pytest.raises(PipelineError) as info:
        Pipeline.from_dict(data)
    return info.value.messages()


def lines(problems) -> list[str]:
    return [str(p) for p in problems]


def test_unknown_column_is_reported_with_where_and_what_exists():
    p = Pipeline.from_dict({"version": 1, "steps": [
        {"type": "trim", "source": "review"},
        {"type": "template", "template": "x"},
        {"type": "template", "template": "Summarise: {reveiw}", "output": "prompt"},
    ]})
    assert lines(p.problems(["id", "review", "rating"])) == [
        'steps[2].template: unknown column "reveiw" (did you mean "review"?); columns are: id, review, rating, '
        'review_trimmed, text'
    ]


def test_later_steps_can_read_earlier_outputs_but_not_later_ones():
    p = Pipeline.from_dict({"version": 1, "steps": [
        {"type": "template", "template": "{b}", "output": "a"},
        {"type": "template", "template": "{a}", "output": "b"},
    ]})
    problems = lines(p.problems(["x"]))
    assert len(problems) == 1 and problems[0].startswith('steps[0].template: unknown column "b"')


def test_disabled_steps_are_not_checked_and_their_outputs_do_not_exist():
    p = Pipeline.from_dict({"version": 1, "steps": [
        {"type": "template", "template": "{nope}", "output": "a", "enabled": False},
        {"type": "template", "template": "{a}", "output": "b"},
    ]})
    assert lines(p.problems(["x"]))[0].startswith('steps[1].template: unknown column "a"')


def test_every_problem_is_listed_not_just_the_first():
    problems = problems_of({"version": 2, "colour": "red", "settings": {"max_concurrency": 0},
                            "steps": [{"type": "trimm", "source": "a"}, {"type": "template", "tempalte": "x"},
                                      {"type": "template", "template": "{unclosed"}]})
    assert "version: 2 is not supported; this Batchgrid reads version 1" in problems
    assert "colour: unknown top-level field" in problems
    assert "settings.max_concurrency: must be at least 1" in problems
    assert "steps[0].type: unknown step type 'trimm' (did you mean \"trim\"?)" in problems
    assert any(p.startswith('steps[1].tempalte: unknown parameter for a template step (did you mean "template"?)')
               for p in problems)
    assert "steps[1].template: missing; Text with {column} placeholders; {{ and }} are literal braces." in problems
    assert "steps[2].template: unclosed '{' at position 1; write '{{' for a literal brace" in problems
    embed = problems_of({"version": 1, "steps": [{"type": "embed", "source": "a", "fallbacks": []}]})
    assert embed[0].startswith("steps[0].fallbacks: unknown parameter for an embed step; parameters are: ")


def test_types_are_checked():
    problems = problems_of({"version": 1, "steps": [{"type": "trim", "source": 5, "collapse_inner": "yes"}]})
    assert problems == ["steps[0].source: must be text, not 5", 'steps[0].collapse_inner: must be true or false, not "yes"']


def test_outputs_may_write_over_an_input_column_but_not_over_each_other():
    p = Pipeline.from_dict({"version": 1, "steps": [
        {"type": "template", "template": "{a}", "output": "a"},
        {"type": "template", "template": "{a}", "output": "same"},
        {"type": "template", "template": "{a}", "output": "same"},
    ]})
    assert lines(p.problems(["a"])) == ['steps[2]: output "same" is already written by steps[1]; choose another name']


def test_parallel_branches_are_checked_inside_and_see_only_what_came_before():
    p = Pipeline.from_dict({"version": 1, "steps": [{"type": "parallel", "branches": {
        "one": [{"type": "template", "template": "{a}", "output": "x"}],
        "two": [{"type": "template", "template": "{x}", "output": "y"}],  # x is a sibling's: not visible
    }}, {"type": "template", "template": "{x} {y}", "output": "both"}]})
    assert lines(p.problems(["a"])) == ['steps[0].branches.two[0].template: unknown column "x"; columns are: a']
    assert p.output_columns() == ["x", "y", "both"]


def test_secrets_are_refused_in_files():
    problems = problems_of({"version": 1, "providers": {"openai": {"api_key": "sk-abcdefghijklmnopqrstuvwx"}},
                            "steps": [{"type": "template", "template": "key sk-abcdefghijklmnopqrstuvwxyz"}]})
    assert problems[0].startswith("providers.openai.api_key: pipeline files never hold keys or passwords")
    assert problems[1].startswith("steps[0].template: looks like an API key or token")


def test_round_trip_is_lossless(tmp_path):
    data = {
        "version": 1, "name": "Reviews", "description": "tidy and tag",
        "settings": {"max_concurrency": 12, "retry_base_delay": 0.5},
        "steps": [
            {"type": "trim", "source": "review", "collapse_inner": False, "name": "Clean"},
            {"type": "template", "template": "{review_trimmed}!", "output": "loud", "enabled": False},
            {"type": "http", "method": "POST", "url": "http://x/{id}", "body": '{"a": "{id}"}',
             "extract": {"n": "$.n"}, "headers": {"X": "${TOKEN}"}},
            {"type": "parallel", "branches": {"a": [{"type": "template", "template": "{id}", "output": "pa"}],
                                              "b": [{"type": "trim", "source": "review", "output": "pb"}]}},
        ],
    }
    p = Pipeline.from_dict(data)
    path = tmp_path / "p.json"
    p.save(path)
    again = Pipeline.load(path)
    assert again.to_dict() == p.to_dict() == data
    assert json.loads(path.read_text()) == data
    assert again.fingerprint() == p.fingerprint()


def test_fingerprint_ignores_concurrency_but_not_steps():
    a = Pipeline.from_dict({"version": 1, "steps": [{"type": "trim", "source": "x"}]})
    b = Pipeline.from_dict({"version": 1, "settings": {"max_concurrency": 50}, "steps": [{"type": "trim", "source": "x"}]})
    c = Pipeline.from_dict({"version": 1, "steps": [{"type": "trim", "source": "y"}]})
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


@pytest.mark.parametrize("content, message", [
    ("{not json", "p.json: not valid JSON at line 1, column 2: Expecting property name enclosed in double quotes"),
    ("[]", 'the pipeline must be a JSON object with "version" and "steps"'),
    ('{"version": 1}', "steps: missing; a pipeline needs a list of steps"),
    ('{"steps": []}', 'version: missing; add "version": 1'),
])
def test_bad_files_say_what_is_wrong(tmp_path, content, message):
    path = tmp_path / "p.json"
    path.write_text(content)
    with pytest.raises(PipelineError) as info:
        Pipeline.load(path)
    assert info.value.messages()[0] == message


def test_missing_file(tmp_path):
    with pytest.raises(PipelineError) as info:
        Pipeline.load(tmp_path / "nope.json")
    assert str(info.value).endswith("nope.json: no such pipeline file")


def test_every_step_declares_what_a_form_needs():
    assert REGISTRY, "no steps registered"
    for cls in REGISTRY.values():
        if cls.type.startswith("test_"):
            continue
        assert cls.title and cls.description and cls.group in GROUPS, cls
        assert "\n" not in cls.description, cls
        for p in cls.params:
            assert p.kind in PARAM_KINDS and p.help, (cls.type, p.name)
    groups = step_types_by_group()
    assert list(groups) == [g for g in GROUPS if g in groups]


def test_every_step_type_round_trips_with_defaults():
    for step_type, cls in REGISTRY.items():
        if cls.type.startswith("test_"):
            continue
        step = cls()
        raw = step.to_dict()
        assert raw["type"] == step_type
        # A default step may be incomplete (required fields empty) but must serialise and re-read as itself.
        again = cls({k: v for k, v in raw.items() if k != "type"})
        assert again.to_dict() == raw


def test_templates_read_cells_as_a_person_would():
    import datetime as dt

    from batchgrid.core.util import template as tpl

    row = {"d": dt.datetime(2024, 1, 5), "t": dt.datetime(2024, 1, 5, 9, 30), "n": 3.0, "x": 2.5, "blank": None,
           "nan": float("nan"), "items": ["a", "b"]}
    assert tpl.render("{d}|{t}|{n}|{x}|{blank}|{nan}|{items}", row) == \
        '2024-01-05|2024-01-05 09:30:00|3|2.5|||["a", "b"]'
    assert tpl.render('{"q": "{n}", "keep": {x}}', row, lenient=True) == '{"q": "3", "keep": 2.5}'
    assert tpl.placeholders("Hi {name}, ${HOME} {{literal}}") == ["name"]


def test_a_pipeline_being_edited_is_checked_as_its_file_would_be():
    """What the window edits in place is checked without a save-and-reload round trip."""
    p = Pipeline.from_dict({"version": 1, "steps": [
        {"type": "trim", "source": "a"},
        {"type": "parallel", "branches": {"x": [{"type": "regex_extract", "source": "a", "pattern": "ok"}]}},
    ]})
    assert p.check() == [] and p.problems(["a"]) == []
    p.settings["max_concurrency"] = 0
    p.steps[0].config["collapse_inner"] = "yes"
    p.steps[1].children()["x"][0].config["pattern"] = "(unclosed"
    problems = lines(p.problems(["a"]))
    assert "settings.max_concurrency: must be at least 1" in problems
    assert 'steps[0].collapse_inner: must be true or false, not "yes"' in problems
    assert any(x.startswith("steps[1].branches.x[0].pattern: ") for x in problems), problems
    assert lines(p.check()) == problems


def test_problems_are_data_located_by_path_and_parameter():
    """A branch named with "." and "[" is still located exactly: the path is data, not text."""
    p = Pipeline.from_dict({"version": 1, "steps": [
        {"type": "trim", "source": "a"},
        {"type": "parallel", "branches": {"a.b[0]": [{"type": "template", "template": "{a}", "output": "t"},
                                                     {"type": "trim", "source": "nope"}]}},
    ]})
    (problem,) = p.problems(["a"])
    assert (problem.path, problem.param) == ((1, "a.b[0]", 1), "source")
    assert problem.message.startswith('unknown column "nope"')
    assert str(problem).startswith('steps[1].branches.a.b[0][1].source: unknown column "nope"')
    p.steps[0].config["collapse_inner"] = "yes"
    (problem,) = p.check()
    assert (problem.path, problem.param) == ((0,), "collapse_inner")


def test_problems_of_a_file_say_which_step_or_which_pipeline_field():
    with pytest.raises(PipelineError) as info:
        Pipeline.from_dict({"version": 2, "settings": {"budget": -1},
                            "providers": {"o": {"preset": "nope"}, "k": {"api_key": "x"}},
                            "steps": [{"type": "parallel", "branches": {"x": [
                                {"type": "trim", "source": 5},
                                {"type": "http", "url": "http://h/", "headers": {"Authorization": "Bearer abcdefghijklmnopqrstu"}},
                            ]}}]})
    located = {(p.path, p.param) for p in info.value.problems}
    assert (None, "version") in located and (None, "settings.budget") in located
    assert (None, "providers.o.preset") in located and (None, "providers.k.api_key") in located
    assert ((0, "x", 0), "source") in located
    assert ((0, "x", 1), "headers.Authorization") in located
    # the CLI's lines are unchanged
    assert "settings.budget: must be at least 0" in info.value.messages()
    assert str(info.value).startswith(str(info.value.problems[0]) + " (and ")


def test_output_clashes_name_the_step_that_wrote_first():
    p = Pipeline.from_dict({"version": 1, "steps": [
        {"type": "template", "template": "{a}", "output": "same"},
        {"type": "parallel", "branches": {"x": [{"type": "template", "template": "{a}", "output": "same"}]}},
    ]})
    (problem,) = p.problems(["a"])
    assert (problem.path, problem.param) == ((1, "x", 0), "")
    assert str(problem) == 'steps[1].branches.x[0]: output "same" is already written by steps[0]; choose another name'


def test_a_failed_save_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path):
    import resource
    import signal

    path = tmp_path / "p.json"
    old = Pipeline.from_dict({"version": 1, "steps": [{"type": "trim", "source": "a"}]})
    old.save(path)
    before = path.read_bytes()
    big = Pipeline.from_dict({"version": 1, "description": "x" * 200_000, "steps": []})
    # A file-size limit makes the write fail half-way, as a full disk would.
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, limits[1]))
    try:
        with pytest.raises(BatchgridError) as info:
            big.save(path)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, handler)
    assert "p.json" in str(info.value) and "\n" not in str(info.value)
    assert path.read_bytes() == before
    assert sorted(f.name for f in tmp_path.iterdir()) == ["p.json"]
    big.save(path)  # and a save that can finish replaces the file
    assert Pipeline.load(path).description == "x" * 200_000
