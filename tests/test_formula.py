"""The Formula step (issue 14, part 3): Excel's operators and functions over a row's columns, its
errors with where they are, and a language that cannot reach attributes, imports or the environment."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import threading

import pandas as pd
import pytest

from batchgrid.core.pipeline.file import Pipeline
from batchgrid.core.pipeline.preview import is_cheap
from batchgrid.core.steps import REGISTRY, formula_functions, new_step
from batchgrid.core.steps.formula import FormulaError, FormulaSyntaxError, check_formula, evaluate
from batchgrid.core.steps.formula_parse import MAX_DEPTH, MAX_LENGTH
from batchgrid.core.steps.formula_values import MAX_TEXT
from batchgrid.core.util.errors import PipelineError, StepError

ROW = {"price": 12.5, "qty": 4, "zero": 0, "review": "  Great   product  ", "Customer name": "ada lovelace",
       "rating": 2, "blank": None, "empty": "", "na": "n/a", "amount": "1,234.50", "pct": "12%",
       "signed": dt.datetime(2020, 2, 15), "due": dt.date(2024, 1, 31), "tags": ["a", "b"], "nums": [1, 2, 3]}
COLUMNS = list(ROW)


def value(formula: str, **extra):
    return evaluate(formula, {**ROW, **extra})


def syntax_error(formula: str, columns=COLUMNS) -> str:
    with pytest.raises(FormulaSyntaxError) as info:
        check_formula(formula, columns)
    return str(info.value)


def row_error(formula: str, **extra) -> str:
    with pytest.raises(FormulaError) as info:
        value(formula, **extra)
    return str(info.value)


# ---- operators, as Excel -----------------------------------------------------------------
@pytest.mark.parametrize(("formula", "expected"), [
    ("1+2*3", 7), ("(1+2)*3", 9), ("10/4", 2.5), ("7-2-1", 4), ("2*3/4", 1.5),
    ("-2^2", 4),            # Excel: negation binds tighter than ^
    ("0-2^2", -4), ("2^3^2", 64),  # ^ is left-associative in Excel
    ("2^-1", 0.5), ("50%", 0.5), ("-50%", -0.5), ("200%%", 0.02), ("--\"3\"", 3), ("+\"a\"", "a"),
    ("1+2&3", "33"),        # & after arithmetic
    ("1+1=2", True), ("\"a\"&\"b\"=\"ab\"", True),
    ("1<2", True), ("2<=2", True), ("3>=4", False), ("1<>2", True), ("2>1", True),
    ('"a"="A"', True),      # text compares without case, as in Excel
    ('"apple"<"Banana"', True),
    ("TRUE", True), ("false", False), ("TRUE=TRUE", True),
    ('"x""y"', 'x"y'),      # "" is a quote inside text
    ("1.5e3", 1500), (".5", 0.5),
    ("=1+1", 2),            # a leading = as typed in Excel
    ("SUM(1;2)", 3),        # ; separates arguments too
])
def test_operators_and_precedence(formula, expected):
    assert value(formula) == expected


def test_whole_numbers_are_written_as_whole_numbers():
    assert value("price*qty") == 50 and isinstance(value("price*qty"), int)
    assert value('"n: "&10/4') == "n: 2.5"
    assert value('"n: "&1/3') == "n: 0.333333333333333"  # 15 significant digits, as Excel shows


def test_columns_by_name_with_brackets_or_bare():
    assert value("[Customer name]") == "ada lovelace"
    assert value("price * qty") == 50
    assert value("[price]*[qty]") == 50


def test_blank_cells_behave_as_in_excel():
    assert value("blank+1") == 1 and value("empty*3") == 0
    assert value('blank&"x"') == "x"
    assert value('blank=""') is True and value("blank=0") is True
    assert value("ISBLANK(blank)") is True and value("ISBLANK(empty)") is True and value("ISBLANK(qty)") is False
    assert value('IF(blank, "yes", "no")') == "no"
    assert value("blank") is None  # a blank cell copied stays blank


def test_text_that_reads_as_a_number_is_a_number():
    assert value("amount*2") == 2469
    assert value("pct*100") == 12
    assert value('"12"=12') is True and value('"5"<10') is True
    assert value("TRUE+1") == 2


# ---- functions -----------------------------------------------------------------------------
@pytest.mark.parametrize(("formula", "expected"), [
    ('IF(rating < 3, "escalate", "ok")', "escalate"), ('IF(rating > 3, "escalate")', False),
    ('if(1, "lower-case names work")', "lower-case names work"),
    ("AND(1, TRUE, rating=2)", True), ("AND(1, 0)", False), ("OR(0, FALSE, 1)", True), ("OR(0, blank)", False),
    ("NOT(rating=2)", False),
    ("LEN(review)", 19), ("LEN(blank)", 0), ("LEN(qty)", 1),
    ('LEFT("abcdef")', "a"), ('LEFT("abcdef", 3)', "abc"), ('RIGHT("abcdef", 2)', "ef"), ('RIGHT("abc", 0)', ""),
    ('MID("abcdef", 2, 3)', "bcd"), ('MID("abc", 5, 2)', ""),
    ('UPPER("straße")', "STRASSE"), ("LOWER(\"ABC\")", "abc"), ("PROPER([Customer name])", "Ada Lovelace"),
    ('PROPER("don\'t stop")', "Don't Stop"),
    ("TRIM(review)", "Great product"),
    ("ROUND(2.675, 2)", 2.68), ("ROUND(-2.5)", -3), ("ROUND(2.5, 0)", 3), ("ROUND(1234.5, -2)", 1200),
    ("ROUNDUP(1.21, 1)", 1.3), ("ROUNDDOWN(-1.29, 1)", -1.2), ("INT(-1.5)", -2), ("MOD(-3, 2)", 1),
    ('CONCAT("a", 1, TRUE, blank, tags)', "a1TRUEab"), ('CONCATENATE("a", "b")', "ab"),
    ('TEXTJOIN(", ", TRUE, "a", blank, "b")', "a, b"),
    ('CONTAINS(review, "GREAT")', True), ('CONTAINS(review, "bad")', False),
    ("ABS(-3)", 3), ("MIN(4, 2, 8)", 2), ("MAX(4, 2, 8)", 8), ("SUM(1, 2, \"3\", blank)", 6), ("SUM(nums)", 6),
    ("AVERAGE(nums)", 2), ("MAX(blank)", 0),
    ('IFERROR(price/zero, "none")', "none"), ("IFERROR(price/qty, 0)", 3.125),
    ("ISERROR(price/zero)", True), ("ISNUMBER(price)", True), ("ISNUMBER(amount)", False), ("ISTEXT(review)", True),
    ('SUBSTITUTE("a-b-c", "-", "+")', "a+b+c"), ('SUBSTITUTE("a-b-c", "-", "+", 2)', "a-b+c"),
    ('SUBSTITUTE("abc", "", "x")', "abc"),
    ('FIND("b", "abcb")', 2), ('FIND("b", "abcb", 3)', 4), ('SEARCH("B", "abc")', 2),
    ('REPT("ab", 3)', "ababab"),
    ('VALUE("1,234.50")', 1234.5), ('VALUE("12%")', 0.12), ('VALUE("$12")', 12),
    ('TEXT(1234.567, "#,##0.00")', "1,234.57"), ('TEXT(0.256, "0.0%")', "25.6%"), ('TEXT(42, "00000")', "00042"),
    ('TEXT(3.14159, "0.00")', "3.14"), ('TEXT(-5, "0")', "-5"), ('TEXT(7, "$0.00")', "$7.00"),
    ('TEXT(due, "yyyy-mm-dd")', "2024-01-31"), ('TEXT(due, "d mmm yyyy")', "31 Jan 2024"),
    ('TEXT(due, "dddd")', "Wednesday"), ('TEXT("abc", "0.00")', "abc"),
    ("YEAR(due)", 2024), ("MONTH(due)", 1), ("DAY(due)", 31), ('YEAR("2023-06-01")', 2023),
    ("DATE(2024, 13, 1)", dt.date(2025, 1, 1)), ("DATE(2024, 3, 0)", dt.date(2024, 2, 29)),
])
def test_functions(formula, expected):
    assert value(formula) == expected


def test_dates(monkeypatch):
    monkeypatch.setattr(formula_functions, "today", lambda: dt.date(2024, 3, 1))
    assert value("TODAY()") == dt.date(2024, 3, 1)
    assert value('DATEDIF(signed, TODAY(), "d")') == 1476
    assert value('DATEDIF(signed, due, "m")') == 47
    assert value('DATEDIF(signed, due, "y")') == 3
    assert value('DATEDIF(signed, due, "ym")') == 11
    assert value('DATEDIF("2024-01-31", "2024-03-01", "md")') == 1
    assert value('DATEDIF("2024-01-15", "2024-02-14", "m")') == 0  # a month is whole only on its day
    assert value("due + 1") == dt.date(2024, 2, 1) and value("due - 31") == dt.date(2023, 12, 31)
    assert value("TODAY() - due") == 30 and value('due - "2024-01-01"') == 30
    assert value("due > signed") is True and value('due = "2024-01-31"') is True
    assert isinstance(value("NOW()"), dt.datetime)
    assert "is after the end date" in row_error('DATEDIF(due, signed, "d")')
    assert row_error('DATEDIF(signed, due, "w")').startswith('#NUM!: DATEDIF\'s unit is "d", "m", "y"')
    assert "cannot read \"soon\" as a date; write dates as 2024-01-31" in row_error('YEAR("soon")')


# ---- errors before a run: where they are -----------------------------------------------------
@pytest.mark.parametrize(("formula", "message"), [
    ("LEN([reveiw]) > 10", "position 5: unknown column [reveiw]; did you mean [review]?"),
    ("Review & 1", "position 1: unknown column [Review]; did you mean [review]?"),
    ("IF(rating)", "position 1: IF takes 2 or 3 arguments: IF(condition, value if true, [value if false])"),
    ("LEN()", "position 1: LEN takes 1 argument: LEN(text)"),
    ("TODAY(1)", "position 1: TODAY takes no arguments: TODAY()"),
    ("AND()", "position 1: AND takes at least 1 argument: AND(condition, ...)"),
    ('IF(1, "a, 2)', 'position 7: unclosed "'),
    ("LEN([review)", "position 5: unclosed ["),
    ("(1+2", 'position 1: this "(" is never closed'),
    ("LEN(1", 'position 4: the "(" of LEN is never closed'),
    ("1+2)", 'position 4: this ")" closes no "("'),
    ("1+", 'position 3: the formula ends too early: a value is missing after "+"'),
    ("1 2", 'position 3: expected an operator (such as + or &) or the end of the formula, found "2"'),
    ("rating < 3 AND qty", "position 12: expected an operator (such as + or &) or the end of the formula, "
                           'found "AND"; AND is a function: write AND(a, b), not a AND b'),
    ("IF(1,,2)", "position 6: an argument of IF is missing"),
    ("CONCATENAT(1)", "position 1: unknown function CONCATENAT; did you mean CONCATENATE?"),
    ("VLOOKUP(1, 2, 3)", "position 1: VLOOKUP is not a formula function here; a Lookup step looks values up"),
    ("A1*2", "position 1: unknown column [A1]; formulas read the row's columns by name, not cells"),
    ("'text'", "position 1: \"'\" cannot be used in a formula: text goes in double quotes"),
    ("[]", "position 1: [] names no column"),
    ("", "position 1: the formula is empty"),
])
def test_errors_say_where(formula, message):
    assert syntax_error(formula).startswith(message)


def test_a_pipeline_reports_formula_problems_before_a_run():
    p = Pipeline.from_dict({"version": 1, "steps": [
        {"type": "formula", "formula": 'IF(LEN([reveiw]) > 10, "long", "short")', "output": "size"},
        {"type": "formula", "formula": "size & 1", "output": "size_1"},
    ]})
    assert [str(x) for x in p.problems(["id", "review"])] == [
        "steps[0].formula: position 8: unknown column [reveiw]; did you mean [review]?"]
    assert p.steps[0].reads() == ["reveiw"] and p.steps[1].reads() == ["size"]
    with pytest.raises(PipelineError) as info:
        Pipeline.from_dict({"version": 1, "steps": [{"type": "formula", "formula": "IF(1)"}]})
    assert info.value.messages() == ["steps[0].formula: position 1: IF takes 2 or 3 arguments: "
                                     "IF(condition, value if true, [value if false])"]
    with pytest.raises(PipelineError) as info:
        Pipeline.from_dict({"version": 1, "steps": [{"type": "formula", "formula": 12}]})
    assert info.value.messages() == ["steps[0].formula: must be text, not 12"]


# ---- errors on a row, in Excel's words -------------------------------------------------------
def test_row_errors_are_excel_errors_in_words():
    assert row_error("[price]/[zero]") == "#DIV/0!: division by zero in [price]/[zero]"
    assert row_error("na * 2") == '#VALUE!: cannot read "n/a" as a number in na * 2'
    assert row_error('FIND("z", review)') == '#VALUE!: "z" is not in "  Great   product  " in FIND("z", review)'
    assert row_error("10^400").startswith("#NUM!: the result is too large")
    assert row_error("(-8)^(1/3)").startswith("#NUM!: a negative number to a fractional power")
    assert row_error('MID("abc", 0, 1)').startswith("#VALUE!: MID's start must be 1 or more, not 0")
    assert row_error('"a" < 1').startswith('#VALUE!: cannot compare "a" with "1"')
    assert value('"a" = 1') is False


def test_the_step_fails_the_row_in_one_line_or_gives_iferror_s_fallback():
    step = new_step("formula", formula="price / zero", output="unit")
    with pytest.raises(StepError) as info:
        step.apply(ROW)
    assert str(info.value) == "#DIV/0!: division by zero in price / zero"
    step.config["formula"] = 'IFERROR(price / zero, "n/a")'
    assert step.apply(ROW) == {"unit": "n/a"}
    assert new_step("formula", formula="1").writes() == ["result"]


def test_the_step_is_declared_cheap_and_needs_no_trust():
    cls = REGISTRY["formula"]
    assert cls.group == "Data" and cls.title == "Formula" and not cls.runs_code and not cls.external
    assert is_cheap(new_step("formula", formula="1"))  # the editor previews it on the selected row
    assert all(p.help for p in cls.params)


# ---- the sandbox ------------------------------------------------------------------------------
@pytest.mark.parametrize("formula", [
    "[__class__]", "__class__", '__import__("os")', "().__class__", "review.upper()", "review.__class__",
    "lambda x: x", "[x for x in review]", "exec(\"1\")", "eval(\"1\")", "open(\"/etc/passwd\")", "getattr(review, 'x')",
    "os.environ", "${HOME}", "$HOME", "{1, 2}", "review[0]", "1 if 1 else 2", "import os", "globals()",
])
def test_attributes_imports_and_python_are_refused_before_a_run(formula):
    message = syntax_error(formula)
    assert message.startswith("position ") and "\n" not in message


def test_nothing_reaches_the_environment_or_python(monkeypatch):
    monkeypatch.setenv("FORMULA_SECRET", "s3cret")
    assert value('"${FORMULA_SECRET}"') == "${FORMULA_SECRET}"  # text is text, never expanded
    assert value('"__import__(\'os\')"') == "__import__('os')"
    # a column called __class__ is just a column
    assert evaluate("[__class__] & [__import__]", {"__class__": "a", "__import__": "b"}) == "ab"
    assert evaluate("LEN([x])", {"x": object()}) > 0  # an odd value reads as text; its attributes do not matter


def test_text_a_formula_makes_is_bounded():
    big = "x" * (MAX_TEXT - 10)
    assert row_error('REPT("x", 100000000)').startswith("#VALUE!: the text would be 100,000,000 characters long")
    for formula in ("big & big", 'SUBSTITUTE(big, "x", "xx")', "CONCAT(big, big)", 'REPT(big, 2)',
                    'TEXTJOIN(",", 1, big, big)', "big" + "&big" * 500):
        assert "characters long; at most 1,000,000" in row_error(formula, big=big)
    assert value('IFERROR(REPT("x", 1e9), "too long")') == "too long"


def test_long_and_deep_formulas_are_refused_in_words_never_a_recursion_error():
    assert syntax_error("1+" * MAX_LENGTH + "1").startswith("position 8193: the formula is 16,385 characters long")
    nested = f"the formula nests more than {MAX_DEPTH} levels deep; split it over several Formula steps"
    for formula in ("(" * 1000 + "1" + ")" * 1000, "LEN(" * 500 + "1" + ")" * 500,
                    "IF(1," * 65 + "1" + ",0)" * 65, "1+(" * 100 + "1" + ")" * 100, "-(" * 200 + "1" + ")" * 200):
        assert nested in syntax_error(formula)
    # the deepest formulas allowed evaluate (long chains and sign runs are loops, not nesting)
    assert value("IF(1," * 64 + "1" + ",0)" * 64) == 1
    assert value("+".join(["1"] * 4000)) == 4000
    assert value("-" * 5000 + "1") == 1
    worst = "IF(1,1+-(" * 21 + "1" + ")%,0)" * 21  # every kind of node on every level
    results = []
    thread = threading.Thread(target=lambda: results.append(value(worst)))  # a worker thread, as in a run
    thread.start()
    thread.join()
    assert len(results) == 1


# ---- the pipeline file and the CLI ------------------------------------------------------------
def test_a_formula_step_runs_from_the_command_line(tmp_path):
    pipeline = tmp_path / "p.json"
    pipeline.write_text(json.dumps({"version": 1, "steps": [
        {"type": "formula", "formula": '=IF([rating] < 3, "escalate", "ok")', "output": "action"},
        {"type": "formula", "formula": 'IFERROR([price] / [qty], "n/a")', "output": "unit_or_na"},
        {"type": "formula", "formula": "[price] / [qty]", "output": "unit"},  # fails the second row
    ]}))
    data = tmp_path / "orders.csv"
    data.write_text("id,rating,price,qty\n1,5,10,4\n2,1,3,0\n")
    out = tmp_path / "out.csv"
    cli = [sys.executable, "-m", "batchgrid.core.cli"]
    run = subprocess.run([*cli, "run", pipeline, data, "-o", out, "--journal", tmp_path / "j.sqlite"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stderr  # one row failed
    table = pd.read_csv(out, keep_default_na=False)
    assert list(table["action"]) == ["ok", "escalate"]
    assert list(table["unit"].astype(str)) == ["2.5", ""]
    assert list(table["unit_or_na"].astype(str)) == ["2.5", "n/a"]
    assert "#DIV/0!: division by zero in [price] / [qty]" in table["error"][1]
    pipeline.write_text(json.dumps({"version": 1, "steps": [
        {"type": "formula", "formula": "[price] * [qtty]", "output": "total"}]}))
    check = subprocess.run([*cli, "check", pipeline, data], capture_output=True, text=True, timeout=120)
    assert check.returncode != 0
    assert "steps[0].formula: position 11: unknown column [qtty]; did you mean [qty]?" in check.stdout + check.stderr


def test_the_readme_s_formula_examples_read_well():
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    block = text.split('A `formula` step computes')[1].split("```json")[1].split("```")[0]
    steps = json.loads(block)
    columns = ["rating", "review_clean", "price", "qty", "ordered"]
    for step in steps:
        check_formula(step["formula"], columns)
    row = {"rating": 1, "review_clean": "it leaked all over the floor", "price": 10, "qty": 3, "ordered": "2024-01-31"}
    assert [evaluate(s["formula"], row) for s in steps[:2]] == ["escalate", 3.33]
