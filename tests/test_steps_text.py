"""Text steps: trim, template, change case, find and replace, regex extract, split, length."""

import pytest

from batchgrid.core.util.errors import PipelineError, StepError
from batchgrid.core.pipeline.file import Pipeline
from batchgrid.core.steps import REGISTRY, new_step
from batchgrid.core.steps.base import COLUMN, COLUMNS, OUTPUT, SOURCE


def one(step, **row):
    """The step's single output for a row."""
    out = step.apply(row)
    assert list(out) == step.writes()
    (value,) = out.values()
    return value


def load(*steps):
    return Pipeline.from_dict({"version": 1, "steps": list(steps)})


def problems_of(*steps):
    with pytest.raises(PipelineError) as info:
        load(*steps)
    return info.value.messages()


# ---- declarations -----------------------------------------------------------------

TEXT_TYPES = ["trim", "template", "change_case", "find_replace", "regex_extract", "split", "length"]


@pytest.mark.parametrize("step_type", TEXT_TYPES)
def test_text_steps_are_registered_with_described_params(step_type):
    cls = REGISTRY[step_type]
    assert cls.group == "Text" and cls.title and cls.description
    for p in cls.params:
        assert p.help, f"{step_type}.{p.name} has no help text"
    if step_type != "template":
        assert cls.param("source").kind == SOURCE


# ---- trim and template still work -------------------------------------------------

def test_trim_and_template():
    assert one(new_step("trim", source="review"), review="  a \t b\n ") == "a b"
    assert one(new_step("trim", source="review", collapse_inner=False), review="  a  b ") == "a  b"
    assert one(new_step("template", template="{a}-{b}"), a="x", b=3.0) == "x-3"


# ---- change case ------------------------------------------------------------------

@pytest.mark.parametrize("case, text, expected", [
    ("upper", "Straße café", "STRASSE CAFÉ"),
    ("lower", "ÉCOLE Normale", "école normale"),
    ("title", "don't STOP the 3rd-place (hello)", "Don't Stop The 3rd-Place (Hello)"),
    ("sentence", "HELLO THERE. how are you?  \"fine\", thanks! ok", "Hello there. How are you?  \"Fine\", thanks! Ok"),
    ("sentence", "  leading spaces", "  Leading spaces"),
])
def test_change_case(case, text, expected):
    assert one(new_step("change_case", source="review", case=case), review=text) == expected


def test_change_case_default_output_names_the_case_and_blank_stays_blank():
    step = new_step("change_case", source="review", case="upper")
    assert step.writes() == ["review_upper"]
    assert step.apply({"review": None}) == {"review_upper": ""}
    assert new_step("change_case", source="{a} {b}", case="lower").writes() == ["text_lower"]


# ---- find and replace -------------------------------------------------------------

def test_find_replace_literal_is_literal():
    step = new_step("find_replace", source="s", find="a.b", replace=r"\1$&")
    assert one(step, s="a.b axb a.b") == r"\1$& axb \1$&"


def test_find_replace_case_insensitive_and_count():
    step = new_step("find_replace", source="s", find="cat", replace="dog", case_sensitive=False, count=2)
    assert one(step, s="Cat cat CAT") == "dog dog CAT"
    assert one(new_step("find_replace", source="s", find="cat", replace="dog"), s="Cat cat") == "Cat dog"


def test_find_replace_regex_with_groups():
    step = new_step("find_replace", source="s", find=r"(?P<d>\d{2})/(\d{2})/(\d{4})", replace=r"\3-\2-\g<d>",
                    regex=True)
    assert one(step, s="on 31/12/2024 and 01/02/2025") == "on 2024-12-31 and 2025-02-01"
    assert one(new_step("find_replace", source="s", find=r"\s+", replace=" ", regex=True), s="a \n\t b") == "a b"


def test_find_replace_removes_when_replacement_blank_and_keeps_blank_input():
    step = new_step("find_replace", source="s", find="-")
    assert one(step, s="1-2-3") == "123"
    assert one(step, s=None) == ""


def test_find_replace_bad_regex_and_bad_group_are_located():
    problems = problems_of({"type": "find_replace", "source": "s", "find": "(ab", "regex": True})
    assert problems == ["steps[0].find: not a valid regular expression: missing ), unterminated subpattern at position 0"]
    problems = problems_of({"type": "find_replace", "source": "s", "find": r"(\d)", "replace": r"\2", "regex": True})
    assert len(problems) == 1 and problems[0].startswith("steps[0].replace: cannot be used with this pattern")
    assert "invalid group reference 2" in problems[0]
    # The same text is fine as a literal search: nothing to compile.
    load({"type": "find_replace", "source": "s", "find": "(ab"})


# ---- regex extract ----------------------------------------------------------------

def test_extract_first_match_whole_or_first_group():
    assert one(new_step("regex_extract", source="s", pattern=r"\d+"), s="order 42, then 7") == "42"
    assert one(new_step("regex_extract", source="s", pattern=r"#(\w+)"), s="tags: #red #blue") == "red"
    assert one(new_step("regex_extract", source="s", pattern=r"\d+"), s="no digits") is None


def test_extract_all_matches_is_a_list():
    step = new_step("regex_extract", source="s", pattern=r"#(\w+)", mode="all")
    assert step.writes() == ["s_matches"]
    assert one(step, s="#red and #Blue") == ["red", "Blue"]
    assert one(step, s="none here") == []
    assert one(step, s=None) is None


def test_extract_case_insensitive():
    step = new_step("regex_extract", source="s", pattern="error: (.*)", case_sensitive=False)
    assert one(step, s="ERROR: disk full") == "disk full"


def test_extract_named_groups_to_columns():
    step = new_step("regex_extract", source="s", pattern=r"(?P<year>\d{4})-(?P<month>\d\d)(?:-(?P<day>\d\d))?",
                    mode="groups")
    assert step.writes() == ["year", "month", "day"]
    assert step.apply({"s": "due 2024-03-09"}) == {"year": "2024", "month": "03", "day": "09"}
    assert step.apply({"s": "due 2024-03"}) == {"year": "2024", "month": "03", "day": None}
    assert step.apply({"s": "never"}) == {"year": None, "month": None, "day": None}
    assert step.apply({"s": None}) == {"year": None, "month": None, "day": None}


def test_extract_bad_pattern_and_groups_without_names_are_reported():
    assert problems_of({"type": "regex_extract", "source": "s", "pattern": "[a-"}) == [
        "steps[0].pattern: not a valid regular expression: unterminated character set at position 0"]
    problems = problems_of({"type": "regex_extract", "source": "s", "pattern": r"(\d+)", "mode": "groups"})
    assert problems == ["steps[0].pattern: groups mode needs named groups, such as (?P<year>\\d{4}); this pattern has none"]
    problems = problems_of({"type": "regex_extract", "source": "s", "pattern": "x", "mode": "everything"})
    assert problems == ["steps[0].mode: 'everything' is not one of: first, all, groups"]


def test_extract_group_columns_are_checked_against_the_table():
    pipeline = load({"type": "regex_extract", "source": "s", "pattern": r"(?P<id>\d+)", "mode": "groups"})
    assert pipeline.output_columns() == ["id"]
    assert pipeline.problems(["s"]) == [] and pipeline.problems(["s", "id"]) == []  # writing over an input is allowed
    twice = load({"type": "template", "template": "{s}", "output": "id"},
                 {"type": "regex_extract", "source": "s", "pattern": r"(?P<id>\d+)", "mode": "groups"})
    assert [str(p) for p in twice.problems(["s"])] == ['steps[1]: output "id" is already written by steps[0]; choose another name']


# ---- split ------------------------------------------------------------------------

def test_split_into_a_list_trimmed():
    step = new_step("split", source="tags", delimiter=";")
    assert step.writes() == ["tags_parts"]
    assert one(step, tags=" a; b ;;c ") == ["a", "b", "", "c"]
    assert one(new_step("split", source="tags", delimiter=";", drop_empty=True), tags=" a; b ;;c ") == ["a", "b", "c"]
    assert one(new_step("split", source="tags", delimiter=";", trim=False), tags="a; b") == ["a", " b"]
    assert one(step, tags=None) is None


def test_split_by_regex():
    step = new_step("split", source="s", delimiter=r"\s*[,;|]\s*", regex=True)
    assert one(step, s="a , b;c|d") == ["a", "b", "c", "d"]


def test_split_into_numbered_columns_keeps_the_rest_in_the_last():
    step = new_step("split", source="name", delimiter=" ", mode="columns", columns=2)
    assert step.writes() == ["name_1", "name_2"]
    assert step.apply({"name": "Ada King Lovelace"}) == {"name_1": "Ada", "name_2": "King Lovelace"}
    assert step.apply({"name": "Plato"}) == {"name_1": "Plato", "name_2": None}
    assert step.apply({"name": ""}) == {"name_1": None, "name_2": None}
    named = new_step("split", source="name", delimiter=",", mode="columns", columns=3, output="part")
    assert named.apply({"name": "a,,c"}) == {"part_1": "a", "part_2": "", "part_3": "c"}


def test_split_keep_one_part():
    first = new_step("split", source="email", delimiter="@", mode="part")
    assert first.writes() == ["email_part"]
    assert one(first, email="ada@example.org") == "ada"
    last = new_step("split", source="path", delimiter="/", mode="part", part=-1, output="file")
    assert one(last, path="a/b/c.txt") == "c.txt"
    third = new_step("split", source="s", delimiter=",", mode="part", part=3)
    assert one(third, s="a,b") is None


def test_split_bad_settings_are_reported():
    assert problems_of({"type": "split", "source": "s", "delimiter": "(", "regex": True})[0].startswith(
        "steps[0].delimiter: not a valid regular expression")
    assert problems_of({"type": "split", "source": "s", "mode": "part", "part": 0}) == [
        "steps[0].part: 0 is not a position; 1 is the first part, -1 the last"]
    assert problems_of({"type": "split", "source": "s", "delimiter": ""}) == [
        "steps[0].delimiter: must not be empty; write the text to cut at, e.g. ,"]
    assert problems_of({"type": "split", "source": "s", "mode": "columns", "columns": 0}) == [
        "steps[0].columns: must be at least 1"]


# ---- length and word count --------------------------------------------------------

def test_length_counts_chosen_measures():
    step = new_step("length", source="review", lines=True)
    assert step.writes() == ["review_chars", "review_words", "review_lines"]
    assert step.apply({"review": "Good value.\nWould  buy again"}) == {
        "review_chars": 28, "review_words": 5, "review_lines": 2}
    assert step.apply({"review": None}) == {"review_chars": 0, "review_words": 0, "review_lines": 0}
    words_only = new_step("length", source="review", characters=False, prefix="r")
    assert words_only.apply({"review": "one two"}) == {"r_words": 2}


def test_length_needs_a_measure():
    assert problems_of({"type": "length", "source": "s", "characters": False, "words": False}) == [
        "steps[0]: tick at least one of characters, words or lines"]


# ---- columns are checked against the table ----------------------------------------

def test_unknown_source_column_is_located():
    pipeline = load({"type": "change_case", "source": "reveiw"}, {"type": "length", "source": "{review_upper}"})
    problems = [str(p) for p in pipeline.problems(["id", "review"])]
    assert problems[0] == 'steps[0].source: unknown column "reveiw" (did you mean "review"?); columns are: id, review'
    assert problems[1].startswith('steps[1].source: unknown column "review_upper"')
    good = load({"type": "change_case", "source": "review"}, {"type": "length", "source": "{review_upper}"})
    assert good.problems(["id", "review"]) == []


def test_template_sources_work_in_text_steps():
    step = new_step("change_case", source="{first} {last}", case="upper")
    assert one(step, first="ada", last="lovelace") == "ADA LOVELACE"


def test_column_params_use_column_kinds():
    # The validator checks only COLUMN, COLUMNS and SOURCE params against the table.
    for step_type in TEXT_TYPES:
        for p in REGISTRY[step_type].params:
            if p.name in ("source",):
                assert p.kind in (SOURCE, COLUMN, COLUMNS)
            if p.name == "output":
                assert p.kind == OUTPUT


# ---- round trip -------------------------------------------------------------------

ROUND_TRIP = [
    {"type": "trim", "name": "clean", "source": "review", "collapse_inner": False, "output": "clean"},
    {"type": "template", "template": "Say: {review}", "output": "prompt"},
    {"type": "change_case", "source": "review", "case": "sentence", "output": "sentence"},
    {"type": "find_replace", "source": "review", "find": "\\s+", "replace": " ", "regex": True,
     "case_sensitive": False, "count": 3, "output": "spaced", "enabled": False},
    {"type": "regex_extract", "source": "review", "pattern": "(?P<num>\\d+)", "mode": "groups", "case_sensitive": False},
    {"type": "split", "source": "review", "delimiter": "\\s+", "regex": True, "mode": "columns", "columns": 4,
     "part": 2, "trim": False, "drop_empty": True, "output": "w"},
    {"type": "length", "source": "review", "characters": False, "lines": True, "prefix": "len"},
    {"type": "split", "source": "review"},  # every parameter left at its default
]


def test_round_trip_is_lossless():
    data = {"version": 1, "steps": ROUND_TRIP}
    pipeline = Pipeline.from_dict(data)
    assert pipeline.to_dict() == data
    again = Pipeline.from_dict(pipeline.to_dict())
    assert [s.config for s in again.steps] == [s.config for s in pipeline.steps]
    assert pipeline.problems(["review"]) == []


def test_steps_raise_step_errors_not_crashes_on_a_bad_pattern_set_after_loading():
    step = new_step("regex_extract", source="s", pattern="(")
    with pytest.raises(StepError, match="not a valid regular expression"):
        step.apply({"s": "x"})
