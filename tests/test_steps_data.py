"""Data steps: parse number, parse JSON, JSON path extract, lookup (against real CSV and xlsx files)."""

import csv

import openpyxl
import pytest

from batchgrid.core.run import events as ev
from batchgrid.core.run.engine import Engine, RunResources
from batchgrid.core.table import Table
from batchgrid.core.util.errors import InputError, PipelineError, StepError
from batchgrid.core.pipeline.file import Pipeline
from batchgrid.core.steps import REGISTRY, new_step
from batchgrid.core.steps.base import COLUMN, FILE, SOURCE
from batchgrid.core.steps.data import parse_number


def load(*steps):
    return Pipeline.from_dict({"version": 1, "steps": list(steps)})


def problems_of(*steps):
    with pytest.raises(PipelineError) as info:
        load(*steps)
    return info.value.messages()


async def run(steps, records, base_dir, max_concurrency=4):
    """Run steps over records through the real engine; returns (results by row, RunFinished)."""
    engine = Engine(steps, Table.from_records(records), max_concurrency=max_concurrency,
                    resources=RunResources(base_dir=base_dir))
    finished = []
    engine.subscribe(lambda e: finished.append(e) if isinstance(e, ev.RunFinished) else None)
    await engine.run()
    return engine.results, finished[0]


@pytest.mark.parametrize("step_type", ["parse_number", "parse_json", "json_path", "lookup"])
def test_data_steps_are_registered_with_described_params(step_type):
    cls = REGISTRY[step_type]
    assert cls.group == "Data" and cls.title and cls.description
    assert all(p.help for p in cls.params)


# ---- parse number -----------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("1,234.50", 1234.5), ("1234", 1234), ("$12", 12), ("12%", 0.12), ("(5)", -5), ("-$1,234.50", -1234.5),
    ("$-5", -5), ("5-", -5), ("+3", 3), ("\u22127", -7), ("12 EUR", 12), ("USD 1,200", 1200), ("£0.99", 0.99),
    ("1'234.50", 1234.5), (".5", 0.5), ("1e3", 1000.0), ("  42  ", 42), ("($1,000)", -1000),
    ("1,234,567", 1234567), ("-12.5 %", -0.125),
])
def test_parse_number_reads_common_spreadsheet_forms(text, expected):
    value = parse_number(text)
    assert value == pytest.approx(expected) and type(value) is type(expected)


@pytest.mark.parametrize("text, expected", [
    ("1.234,50", 1234.5), ("1 234,50", 1234.5), ("1\u00a0234,5", 1234.5), ("€ 1.234,50", 1234.5),
    ("12,5%", 0.125), ("1.234.567", 1234567), ("0,99", 0.99),
])
def test_parse_number_with_a_decimal_comma(text, expected):
    assert parse_number(text, decimal_comma=True) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["12,x", "1,23", "1.234,50", "abc", "$", "(5", "--5", "1.2.3", "12 pcs", "5 -3"])
def test_parse_number_refuses_what_is_not_a_number(text):
    with pytest.raises(StepError) as info:
        parse_number(text)
    assert str(info.value).startswith(f'cannot read "{text}" as a number')


def test_parse_number_hints_at_the_decimal_comma_and_names_booleans():
    with pytest.raises(StepError, match="tick 'Decimal comma'"):
        parse_number("1.234,50")
    with pytest.raises(StepError, match="true/false"):
        parse_number(True)


def test_parse_number_blanks_numbers_and_percent_option():
    assert parse_number(None) is None and parse_number("") is None and parse_number("   ") is None
    assert parse_number(float("nan")) is None
    assert parse_number(7) == 7 and parse_number(2.5) == 2.5
    assert parse_number("12%", percent_as_fraction=False) == 12


def test_parse_number_step_error_or_blank():
    step = new_step("parse_number", source="price")
    assert step.writes() == ["price_number"]
    assert step.apply({"price": "$1,200.00"}) == {"price_number": 1200.0}
    assert step.apply({"price": None}) == {"price_number": None}
    with pytest.raises(StepError, match='cannot read "12,x" as a number'):
        step.apply({"price": "12,x"})
    lenient = new_step("parse_number", source="price", on_error="blank", output="p")
    assert lenient.apply({"price": "12,x"}) == {"p": None}
    comma = new_step("parse_number", source="price", decimal_comma=True)
    assert comma.apply({"price": "1.234,50"}) == {"price_number": 1234.5}


# ---- parse JSON -------------------------------------------------------------------

def test_parse_json():
    step = new_step("parse_json", source="payload")
    assert step.writes() == ["payload_json"]
    assert step.apply({"payload": '{"a": [1, 2], "b": null}'}) == {"payload_json": {"a": [1, 2], "b": None}}
    assert step.apply({"payload": "  "}) == {"payload_json": None}
    assert step.apply({"payload": None}) == {"payload_json": None}
    assert step.apply({"payload": {"already": "parsed"}}) == {"payload_json": {"already": "parsed"}}
    assert step.apply({"payload": 5}) == {"payload_json": 5}


def test_parse_json_bad_text_fails_the_row_with_the_text_and_where():
    step = new_step("parse_json", source="payload")
    with pytest.raises(StepError) as info:
        step.apply({"payload": '{"a": 1,}'})
    assert str(info.value) == 'cannot read "{\\"a\\": 1,}" as JSON: Expecting property name enclosed in double quotes at line 1, column 9'
    assert info.value.raw == '{"a": 1,}'


# ---- JSON path extract ------------------------------------------------------------

ORDER = '{"id": 7, "customer": {"name": "Ada"}, "items": [{"sku": "A1", "qty": 2}, {"sku": "B2", "qty": 1}]}'


def test_json_path_several_columns_from_text():
    step = new_step("json_path", source="order",
                    paths={"customer": "$.customer.name", "first_sku": "items[0].sku", "skus": "$.items[*].sku",
                           "missing": "$.nope"})
    assert step.writes() == ["customer", "first_sku", "skus", "missing"]
    assert step.apply({"order": ORDER}) == {"customer": "Ada", "first_sku": "A1", "skus": ["A1", "B2"], "missing": None}


def test_json_path_from_a_parsed_value_and_all_matches():
    step = new_step("json_path", source="data", paths={"qty": "$.items[*].qty", "id": "id"}, all_matches=True)
    assert step.apply({"data": {"id": 7, "items": [{"qty": 2}]}}) == {"qty": [2], "id": [7]}


def test_json_path_blank_missing_and_bad_json():
    step = new_step("json_path", source="order", paths={"name": "customer.name"}, when_missing="error")
    assert step.apply({"order": None}) == {"name": None}
    with pytest.raises(StepError, match=r'nothing at customer.name in "\{\\"id\\": 1\}"'):
        step.apply({"order": '{"id": 1}'})
    with pytest.raises(StepError, match='cannot read "not json" as JSON'):
        step.apply({"order": "not json"})


def test_json_path_bad_path_is_located():
    problems = problems_of({"type": "json_path", "source": "order", "paths": {"ok": "$.a", "bad": "$.items[?"}})
    assert len(problems) == 1 and problems[0].startswith("steps[0].paths.bad: not a valid JSON path '$.items[?'")
    assert problems_of({"type": "json_path", "source": "order"}) == [
        "steps[0].paths: missing; New column to JSON path, e.g. price: $.data.price or first_tag: tags[0]."]


# ---- lookup -----------------------------------------------------------------------

PRICES = [("sku", "name", "price"), ("A1", "Apple", "1.20"), ("b2", "Banana", "0.50"), ("A1", "Dup", "9.99")]


@pytest.fixture
def prices_csv(tmp_path):
    with open(tmp_path / "prices.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(PRICES)
    return tmp_path / "prices.csv"


@pytest.fixture
def prices_xlsx(tmp_path):
    book = openpyxl.Workbook()
    book.active.title = "Notes"
    book.active.append(["nothing here"])
    sheet = book.create_sheet("Prices")
    sheet.append(["code", "label", "price"])
    sheet.append([101, "Widget", 2.5])
    sheet.append([102, "Gadget", None])
    book.save(tmp_path / "book.xlsx")
    return tmp_path / "book.xlsx"


def lookup_step(**config):
    base = {"file": "prices.csv", "file_key": "sku", "key": "sku", "columns": ["name", "price"]}
    return new_step("lookup", **{**base, **config})


def test_lookup_declares_file_and_column_kinds():
    assert REGISTRY["lookup"].param("file").kind == FILE
    assert REGISTRY["lookup"].param("key").kind == COLUMN
    assert lookup_step().writes() == ["name", "price"]
    assert lookup_step(prefix="p_").writes() == ["p_name", "p_price"]


async def test_lookup_csv_through_the_engine(prices_csv):
    records = [{"sku": "A1"}, {"sku": "B2"}, {"sku": " b2 "}, {"sku": None}, {"sku": "zz"}]
    results, finished = await run([lookup_step(prefix="p_")], records, prices_csv.parent)
    assert finished.reason == "finished"
    assert [r.status for r in results] == ["done"] * 5
    assert results[0].outputs == {"p_name": "Apple", "p_price": "1.20"}  # the first row with a key wins
    assert results[1].outputs == {"p_name": None, "p_price": None}  # exact: case matters
    assert results[3].outputs == {"p_name": None, "p_price": None}  # blank key: blanks
    assert results[4].outputs == {"p_name": None, "p_price": None}

    loose, _ = await run([lookup_step(match="loose")], records, prices_csv.parent)
    assert [r.outputs["name"] for r in loose] == ["Apple", "Banana", "Banana", None, None]


async def test_lookup_not_found_error_fails_only_that_row(prices_csv):
    records = [{"sku": "A1"}, {"sku": "nope"}, {"sku": "b2"}]
    results, finished = await run([lookup_step(not_found="error")], records, prices_csv.parent)
    assert finished.reason == "finished"
    assert [r.status for r in results] == ["done", "error", "done"]
    assert results[1].error == '"nope" is not in the "sku" column of prices.csv'
    assert results[1].error_type == "StepError" and results[1].failed_step == "1. Lookup"
    assert results[2].outputs == {"name": "Banana", "price": "0.50"}


async def test_lookup_xlsx_sheet_with_numeric_keys(prices_xlsx):
    step = new_step("lookup", file="book.xlsx", sheet="Prices", file_key="code", key="id",
                    columns=["label", "price"])
    records = [{"id": "101"}, {"id": 102}, {"id": 102.0}, {"id": 103}]
    results, finished = await run([step], records, prices_xlsx.parent)
    assert finished.reason == "finished", finished.message
    assert [r.outputs for r in results] == [
        {"label": "Widget", "price": 2.5}, {"label": "Gadget", "price": None},
        {"label": "Gadget", "price": None}, {"label": None, "price": None}]


async def test_lookup_missing_file_fails_fast_naming_it(tmp_path):
    step = lookup_step(file="nowhere.csv")
    with pytest.raises(InputError) as info:
        await step.bind(RunResources(base_dir=tmp_path))
    assert str(info.value) == f"lookup file {tmp_path / 'nowhere.csv'} does not exist"
    results, finished = await run([step], [{"sku": "A1"}], tmp_path)
    assert finished.reason == "failed" and "nowhere.csv does not exist" in finished.message
    assert results == [None]  # no row ran


async def test_lookup_missing_columns_fail_fast_listing_the_file_columns(prices_csv):
    step = lookup_step(file_key="SKU", columns=["name", "cost"])
    with pytest.raises(InputError) as info:
        await step.bind(RunResources(base_dir=prices_csv.parent))
    assert str(info.value) == ('lookup file prices.csv has no column "SKU", "cost"; '
                               "its columns are: sku, name, price")


async def test_lookup_missing_sheet_is_one_line(prices_xlsx):
    step = new_step("lookup", file="book.xlsx", sheet="Nope", file_key="code", key="id", columns=["label"])
    with pytest.raises(InputError) as info:
        await step.bind(RunResources(base_dir=prices_xlsx.parent))
    assert "book.xlsx" in str(info.value) and "\n" not in str(info.value)


def test_lookup_validation(prices_csv):
    pipeline = load({"type": "lookup", "file": "prices.csv", "file_key": "sku", "key": "skuu", "columns": ["name"]})
    assert [str(p) for p in pipeline.problems(["sku", "qty"])] == [
        'steps[0].key: unknown column "skuu" (did you mean "sku"?); columns are: sku, qty']
    problems = problems_of({"type": "lookup", "file": "prices.csv", "key": "sku", "columns": [],
                            "match": "fuzzy"})
    assert problems == [
        "steps[0].file_key: missing; The column of that file holding the keys.",
        "steps[0].columns: must not be empty",
        "steps[0].match: 'fuzzy' is not one of: exact, loose",
    ]


def test_lookup_output_clashing_with_another_step_s_is_reported():
    pipeline = load({"type": "template", "template": "{sku}", "output": "name"},
                    {"type": "lookup", "file": "p.csv", "file_key": "sku", "key": "sku", "columns": ["sku", "name"]})
    assert [str(p) for p in pipeline.problems(["sku"])] == ['steps[1]: output "name" is already written by steps[0]; choose another name']
    prefixed = load({"type": "lookup", "file": "p.csv", "file_key": "sku", "key": "sku", "columns": ["sku"],
                     "prefix": "found_"})
    assert prefixed.problems(["sku"]) == []


# ---- the steps together -----------------------------------------------------------

async def test_end_to_end_chain_with_one_row_failing(prices_csv):
    pipeline = load(
        {"type": "parse_json", "source": "payload", "output": "data"},
        {"type": "json_path", "source": "data", "paths": {"sku": "$.sku", "amount": "$.amount"}},
        {"type": "parse_number", "source": "amount"},
        {"type": "lookup", "file": "prices.csv", "file_key": "sku", "key": "sku", "columns": ["name"]},
    )
    assert pipeline.problems(["payload"]) == []
    records = [{"payload": '{"sku": "A1", "amount": "1,200"}'},
               {"payload": '{"sku": "b2", "amount": "12,x"}'},  # fails in parse_number
               {"payload": "{broken"},                           # fails in parse_json
               {"payload": '{"sku": "b2", "amount": "(3)"}'}]
    results, finished = await run(pipeline.steps, records, prices_csv.parent, max_concurrency=2)
    assert finished.reason == "finished"
    assert [r.status for r in results] == ["done", "error", "error", "done"]
    assert results[0].outputs == {"data": {"sku": "A1", "amount": "1,200"}, "sku": "A1", "amount": "1,200",
                                  "amount_number": 1200, "name": "Apple"}
    assert results[1].failed_step == "3. Parse number"
    assert results[1].error == 'cannot read "12,x" as a number'
    assert results[2].failed_step == "1. Parse JSON" and results[2].error.startswith('cannot read "{broken" as JSON')
    assert results[3].outputs["amount_number"] == -3 and results[3].outputs["name"] == "Banana"


# ---- round trip -------------------------------------------------------------------

def test_round_trip_is_lossless():
    data = {"version": 1, "steps": [
        {"type": "parse_number", "source": "price", "decimal_comma": True, "percent_as_fraction": False,
         "on_error": "blank", "output": "p"},
        {"type": "parse_number", "source": "qty"},
        {"type": "parse_json", "name": "json", "source": "payload", "output": "data"},
        {"type": "json_path", "source": "data", "paths": {"a": "$.a", "b": "b[0]"}, "all_matches": True,
         "when_missing": "error"},
        {"type": "lookup", "file": "ref/prices.xlsx", "sheet": "Prices", "file_key": "sku", "key": "sku",
         "columns": ["name", "price"], "prefix": "ref_", "match": "loose", "not_found": "error", "enabled": False},
    ]}
    pipeline = Pipeline.from_dict(data)
    assert pipeline.to_dict() == data
    assert [s.config for s in Pipeline.from_dict(pipeline.to_dict()).steps] == [s.config for s in pipeline.steps]
    assert REGISTRY["parse_number"].param("source").kind == SOURCE


async def test_a_lookup_file_is_read_in_the_reader_process_where_it_cannot_crash_the_run(tmp_path, monkeypatch):
    """The lookup file is as untrusted as the sheet: read in the capped reader process (a reader
    that dies, as calamine does on some hostile files, is a one-line message, not a dead app)."""
    from batchgrid.core.table import worker

    prices = tmp_path / "prices.csv"
    prices.write_text("sku,name,price\n" + "".join(f"A{i},name {i},{i}\n" for i in range(200_000)), encoding="utf-8")
    monkeypatch.setattr(worker, "READ_MEMORY", 1 << 20)  # too little to read anything: the reader dies
    worker.shutdown()
    try:
        with pytest.raises(InputError, match="prices.csv") as info:
            await lookup_step().bind(RunResources(base_dir=tmp_path))
        assert "\n" not in str(info.value)
    finally:
        worker.shutdown()
