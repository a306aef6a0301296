"""The Excel report: Results, Errors and Run sheets, written with XlsxWriter's constant_memory mode.

constant_memory streams each row to disk as soon as the next one starts, so memory stays flat
for any number of rows (tests/bench/bench_export.py: 2-3x faster than openpyxl's write-only
mode with the same formats). Column widths and kinds are measured on the first rows
(SAMPLE_ROWS) and set before the rows are written.

The report is a finished document, on screen and on paper:
- one font (FONT) in every cell, header and error rows included;
- a number format per column kind: dates without a time when the column holds none, cost as
  currency with 4 decimals, latency in seconds with 3, counts with thousands separators;
- widths from the content (bounded); long text wraps in a bounded column, top-aligned;
- each sheet prints landscape, fitted to the page width, with its header row on every page;
- the Run sheet: the run's settings, its totals once (with the review's summary: "412 accepted,
  23 edited, 9 rejected of 500"), and the pipeline one step per row;
- a cell the user edited in a review (core/run/overrides.py) has its own fill (EDITED), and the
  Results sheet's last column says which rows were reviewed, edited or rejected.
Cells are converted by `cells.excel_value`: numbers stay numbers, dates stay dates, lists and
dicts become JSON text, text never becomes a formula (written with write_string, never
write(); formula-looking text carries Excel's quote prefix). No secret is written
(core/util/secrets.py): cells hold no remembered one, errors and the Run sheet are redacted.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from decimal import Decimal
from itertools import islice
from pathlib import Path
from typing import Any

import xlsxwriter
from batchgrid.core.util import secrets
from xlsxwriter.exceptions import FileCreateError
from xlsxwriter.format import Format

from .atomic import ExportError, atomic_path
from .cells import ForcedText, excel_value
from .numfmt import ShownNumber

SAMPLE_ROWS = 1000            # rows measured for column widths and kinds
MIN_WIDTH, MAX_WIDTH = 6, 60  # column widths, in characters
WRAP_WIDTH = 30               # text wider than this wraps in a column this wide
LINE_HEIGHT = 15              # points, a line of FONT
MAX_LINES = 27                # Excel's tallest row (409 points)
EXCEL_MAX_ROWS = 1_048_576
EXCEL_MAX_COLUMNS = 16_384
PROGRESS_EVERY = 1000         # rows between two on_progress calls
ERROR_INPUT_COLUMNS = 8       # input columns repeated on the Errors sheet, to recognise the row

FONT = {"font_name": "Calibri", "font_size": 11}  # Excel's default; LibreOffice uses its metric twin, Carlito
HEADER = {"bold": True, "bg_color": "#D9E1F2", "bottom": 1, "bottom_color": "#8EA9DB", "text_wrap": True}
SECTION = {"bold": True, "bg_color": "#EDEDED"}
ERROR = {"font_color": "#9C0006", "bg_color": "#FFC7CE"}  # Excel's own "light red fill" for bad values
EDITED = {"font_color": "#9C5700", "bg_color": "#FFEB9C"}  # Excel's "Neutral": a value a person typed in

# Column kinds and their number formats.
GENERAL, NUMBER, WRAP, DATE, DATETIME, DATETIME_S, TIME, DURATION, COST, SECONDS, COUNT = (
    "general", "number", "wrap", "date", "datetime", "datetime_s", "time", "duration", "cost", "seconds", "count")
# "_)" keeps a bracket's width free after the value: right-aligned numbers and dates do not touch
# the next column's text (an alignment indent would, but LibreOffice draws it on some rows only).
NUMBER_FORMATS = {NUMBER: "General_)", DATE: "yyyy-mm-dd_)", DATETIME: "yyyy-mm-dd hh:mm_)",
                  DATETIME_S: "yyyy-mm-dd hh:mm:ss_)", TIME: "hh:mm:ss_)", DURATION: "[h]:mm:ss_)",
                  COST: '"$"#,##0.0000', SECONDS: "0.000", COUNT: "#,##0"}
DATE_KINDS = (DATE, DATETIME, DATETIME_S)
PADDED_KINDS = frozenset({NUMBER, DATE, DATETIME, DATETIME_S, TIME, DURATION})  # formats ending in "_)"
# Run columns (core/run/results.py) by name: how their numbers read.
RUN_COLUMN_KINDS = {"latency (s)": SECONDS, "cost": COST, "tokens": COUNT, "attempts": COUNT}
# The Run sheet's totals: one block, whether the run's description already holds them or not.
TOTALS = ("rows", "rows exported", "review", "tokens in", "tokens out", "cost", "shared work (tokens, cost)",
          "retries", "calls answered from cache")
RUN_ITEM_KINDS = {"cost": COST, "elapsed (s)": SECONDS, "rows": COUNT, "tokens in": COUNT, "tokens out": COUNT}

Progress = Callable[[int, int], None]


def percent_format(shown: str) -> str:
    """The number format that shows a percentage as `shown` does ("25.6%" -> "0.0%")."""
    decimals = len(shown.rstrip("%").partition(".")[2])
    return "0." + "0" * decimals + "%" if decimals else "0%"


class Report:
    """One XlsxWriter workbook and its formats (made once each, by their properties)."""

    def __init__(self, path: Path, buffers: str):
        options = {"constant_memory": True, "tmpdir": buffers, "use_zip64": True, "strings_to_formulas": False,
                   "strings_to_urls": False, "strings_to_numbers": False}
        self.book = xlsxwriter.Workbook(str(path), options)
        self._formats: dict[tuple, Format] = {}
        self._keys: dict[int, tuple] = {}  # id(format) -> its properties' key

    def format(self, kind: str = GENERAL, *, error: bool = False, header: bool = False, section: bool = False,
               quote: bool = False, left: bool = False, edited: bool = False) -> Format:
        key = (kind, error, header, section, quote, left, edited)
        found = self._formats.get(key)
        if found is None:
            props: dict[str, Any] = {**FONT, "valign": "top"}
            if header:
                props.update(HEADER)
            if section:
                props.update(SECTION)
            if error:
                props.update(ERROR)
            if edited:
                props.update(EDITED)
            if kind in NUMBER_FORMATS:
                props["num_format"] = NUMBER_FORMATS[kind]
            elif kind.endswith("%"):  # a percentage read from a workbook: its own format ("0.0%")
                props["num_format"] = kind
            if left:
                props["align"] = "left"
            if kind == WRAP:
                props["text_wrap"] = True
            if quote:
                props["quote_prefix"] = True  # Excel keeps it text even after the user edits the cell
            found = self._formats[key] = self.book.add_format(props)
            self._keys[id(found)] = key
        return found

    def variant(self, fmt: Format, *, kind: str | None = None, quote: bool = False) -> Format:
        """`fmt` with another number format, or with the quote prefix."""
        old_kind, error, header, section, _, left, edited = self._keys[id(fmt)]
        return self.format(kind or old_kind, error=error, header=header, section=section, quote=quote, left=left,
                           edited=edited)


class TableSheet:
    """One worksheet holding a table: bold frozen filterable header, formats and widths from
    the content, landscape print fitted to the width with the header on every page."""

    def __init__(self, report: Report, title: str, header: Sequence[str], sample: Iterable[Sequence[Any]],
                 kinds: dict[int, str] | None = None, *, filter_header: bool = True, wrap_width: int = WRAP_WIDTH,
                 left: bool = False):
        if len(header) > EXCEL_MAX_COLUMNS:
            raise ExportError(f"{len(header):,} columns do not fit in an Excel sheet (at most {EXCEL_MAX_COLUMNS:,})")
        self.report = report
        self.ws = report.book.add_worksheet(title)
        self.width = len(header)
        self.rows = 0
        self.filter_header = filter_header
        measured = _measure(header, sample, kinds or {}, filter_header, wrap_width)
        self.kinds = [kind for kind, _ in measured]
        self.left = left
        self.formats = [report.format(kind, left=left) for kind in self.kinds]
        self.error_formats = [report.format(kind, error=True, left=left) for kind in self.kinds]
        self.wrapped = [(i, width) for i, (kind, width) in enumerate(measured) if kind == WRAP]
        for i, (_, width) in enumerate(measured):
            self.ws.set_column(i, i, width)
        self.ws.freeze_panes(1, 0)
        _print_setup(self.ws)
        head = report.format(header=True)
        for i, name in enumerate(header):
            self._write(0, i, name, head, True)
        room = 3 if filter_header else 1
        lines = max((_header_lines(str(name), width - room) for name, (_, width) in zip(header, measured, strict=True)), default=1)
        if lines > 1:  # the header wraps on words
            self.ws.set_row(0, LINE_HEIGHT * lines)

    @staticmethod
    def check_fits(rows: int) -> None:
        if rows + 1 > EXCEL_MAX_ROWS:  # +1: the header
            raise ExportError(f"{rows:,} rows do not fit in an Excel sheet (at most {EXCEL_MAX_ROWS - 1:,}); "
                              "export to .csv or .parquet instead")

    def append(self, values: Sequence[Any], *, highlight: bool = False, section: bool = False,
               edited: Sequence[int] = ()) -> None:
        """One row; `highlight` fills a failed row, `edited` are the columns a person edited."""
        self.rows += 1
        r = self.rows
        if section:
            fmt = self.report.format(section=True)
            for c in range(self.width):
                self._write(r, c, values[c] if c < len(values) else None, fmt, True)
            return
        formats = self.error_formats if highlight else self.formats
        write = self._write
        for c, value in enumerate(values[: self.width]):
            if edited and c in edited:
                write(r, c, value, self.report.format(self.kinds[c], edited=True, left=self.left), True)
            else:
                write(r, c, value, formats[c], highlight)
        if highlight:  # every cell of a failed row is filled, blank or not
            for c in range(len(values), self.width):
                self.ws.write_blank(r, c, None, formats[c])
        if self.wrapped:
            self._fit_height(r, values)

    def _fit_height(self, r: int, values: Sequence[Any]) -> None:
        """A row as tall as its longest wrapped text: LibreOffice keeps the default height of
        rows without one, and Excel only fits rows it edits. A length-based estimate (no font
        metrics): word wrapping loses about what narrower-than-digit letters gain."""
        lines = 1
        for c, width in self.wrapped:
            value = values[c] if c < len(values) else None
            if isinstance(value, str) and (len(value) > width - 2 or "\n" in value):
                lines = max(lines, _wrapped_lines(value, width))
        ws = self.ws
        if lines > 1:
            ws.set_row(r, LINE_HEIGHT * min(lines, MAX_LINES))
        # XlsxWriter keeps every row's height for good; the previous row is written out by now.
        ws.row_info.pop(r - 1, None)
        ws.row_sizes.pop(r - 1, None)

    def _write(self, r: int, c: int, value: Any, fmt: Format, filled: bool) -> None:
        """One cell, by the type excel_value gives it; never write(), which would make formulas.
        `filled`: a header, section or error row, whose blank cells carry the fill too."""
        ws = self.ws
        if type(value) is ShownNumber:  # a percentage as the input showed it: the number, formatted so
            ws.write_number(r, c, float(value), self.report.variant(fmt, kind=percent_format(value.text)))
            return
        value = excel_value(value)
        kind = type(value)
        if kind is str:
            ws.write_string(r, c, value, fmt)
        elif kind is int or kind is float:
            ws.write_number(r, c, value, fmt)
        elif value is None:
            if filled:
                ws.write_blank(r, c, None, fmt)
        elif kind is ForcedText:
            ws.write_string(r, c, str(value), self.report.variant(fmt, quote=True))
        elif kind is bool:
            ws.write_boolean(r, c, value, fmt)
        elif isinstance(value, (dt.date, dt.time, dt.timedelta)):
            column = self.kinds[c] if c < len(self.kinds) else GENERAL
            ws.write_datetime(r, c, value, self.report.variant(fmt, kind=_date_kind(value, column)))
        elif isinstance(value, Decimal):
            ws.write_number(r, c, float(value), fmt)
        else:
            ws.write_string(r, c, str(value), fmt)

    def finish(self) -> None:
        if self.width and self.filter_header:
            self.ws.autofilter(0, 0, self.rows, self.width - 1)


def write_results(result_set, path: Path, on_progress: Progress | None = None,
                  rows: Sequence[int] | None = None) -> Path:
    """The full report for a run: Results, Errors and Run sheets, written atomically.

    `rows`: the row numbers to write, in this order (the window's sorted or filtered view);
    None writes every row in input order."""
    order = row_order(rows, len(result_set))
    total = len(order)
    TableSheet.check_fits(total)
    failed = set(result_set.error_indexes())
    header = result_set.header()
    first_run_column = len(result_set.input_columns) + len(result_set.output_columns)
    kinds = {i: RUN_COLUMN_KINDS[name.removeprefix("run ")] for i, name in enumerate(header)
             if i >= first_run_column and name.removeprefix("run ") in RUN_COLUMN_KINDS}

    def values() -> Iterator[list[Any]]:
        return (result_set.row_values(i) for i in order)

    def write(report: Report) -> None:
        results = TableSheet(report, "Results", header, islice(values(), SAMPLE_ROWS), kinds)
        highlight = {n for n, i in enumerate(order) if i in failed} if failed else set()
        _append_all(results, secrets.redact_rows(values()), total, on_progress, highlight,
                    _edited_cells(result_set, order))
        _errors_sheet(report, result_set, [i for i in order if i in failed])
        shown = None if rows is None else f"{total:,} of {len(result_set):,}, in the order shown"
        _run_sheet(report, result_set, shown)

    _save(path, write)
    if on_progress:
        on_progress(total, total)
    return path


def write_frame(header: Sequence[str], rows: Iterable[Sequence[Any]], sample: Iterable[Sequence[Any]],
                path: Path, total: int, sheet: str = "Data", on_progress: Progress | None = None) -> Path:
    """A plain table on one formatted sheet."""
    TableSheet.check_fits(total)
    _save(path, lambda report: _append_all(TableSheet(report, sheet, header, sample), rows, total, on_progress))
    if on_progress:
        on_progress(total, total)
    return path


def row_order(rows: Sequence[int] | None, count: int) -> Sequence[int]:
    if rows is None:
        return range(count)
    """The row numbers to write: `rows` checked against the results, or all of them in order."""
    rows = list(rows)
    if rows and not (0 <= min(rows) and max(rows) < count):
        raise ExportError(f"cannot export row {max(rows) + 1 if max(rows) >= count else min(rows) + 1}: "
                          f"the results have {count:,} rows")
    return rows


def _edited_cells(result_set, order: Sequence[int]) -> dict[int, list[int]]:
    """Written row (0-based) -> the columns a person edited in a review, for the rows that have any."""
    overrides = getattr(result_set, "overrides", None)
    marked = {i: cells for i in overrides.rows if (cells := result_set.edited_columns(i))} if overrides else {}
    return {n: marked[i] for n, i in enumerate(order) if i in marked} if marked else {}


def _append_all(sheet: TableSheet, rows: Iterable[Sequence[Any]], total: int, on_progress: Progress | None,
                highlight: set[int] | frozenset[int] = frozenset(), edited: dict[int, list[int]] | None = None) -> None:
    for i, values in enumerate(rows):
        sheet.append(values, highlight=i in highlight, edited=edited.get(i, ()) if edited else ())
        if on_progress and (i + 1) % PROGRESS_EVERY == 0:
            on_progress(i + 1, total)
    sheet.finish()


def _save(path: Path, write: Callable[[Report], None]) -> None:
    """Write the workbook under a temporary name and put it in place; XlsxWriter's row buffers go
    in a private folder, removed whatever happens."""
    with tempfile.TemporaryDirectory(prefix="batchgrid-xlsx-") as buffers, atomic_path(path) as temp:
        report = Report(temp, buffers)
        try:
            write(report)
            report.book.close()
        except FileCreateError as exc:  # XlsxWriter wraps the OSError (disk full, ...): say what it was
            cause = exc.args[0] if exc.args and isinstance(exc.args[0], OSError) else OSError(str(exc))
            raise cause from None
        finally:
            for ws in report.book.worksheets():  # a failed write leaves its row buffers open
                fh = getattr(ws, "row_data_fh", None)
                if fh is not None:
                    with contextlib.suppress(Exception):
                        fh.close()


def _print_setup(ws) -> None:
    ws.set_landscape()
    ws.fit_to_pages(1, 0)  # one page wide, as many pages tall as it takes
    ws.repeat_rows(0)      # the header row on every page
    ws.set_margins(left=0.4, right=0.4, top=0.6, bottom=0.6)
    ws.set_footer('&L&"Calibri,Regular"&9&A&R&"Calibri,Regular"&9Page &P of &N')
    ws.hide_gridlines(0)   # gridlines on screen and on paper


# ---- the Errors and Run sheets -------------------------------------------------------------------

def _errors_sheet(report: Report, result_set, indexes: list[int]) -> None:
    """Only the failed rows: where, which input, which step, what went wrong."""
    inputs = list(result_set.input_columns)[:ERROR_INPUT_COLUMNS]
    header = ["row", *inputs, "failed step", "error type", "error"]

    def rows():
        for i in indexes:
            result, row = result_set.results[i], result_set.rows.row(i)
            yield [i + 1, *(row.get(c) for c in inputs), result.failed_step, result.error_type,
                   secrets.redact(result.error)]

    _append_all(TableSheet(report, "Errors", header, islice(rows(), SAMPLE_ROWS)), secrets.redact_rows(rows()),
                len(indexes), None)


def _run_sheet(report: Report, result_set, shown: str | None) -> None:
    """What was run, on what, how, and what it came to: settings, totals once, the pipeline."""
    settings, pipeline = _split_pipeline(result_set.run_info)
    finished = [r for r in result_set.results if r is not None]
    computed: dict[str, Any] = {"rows": len(result_set)}
    computed.update({f"rows {status}": count for status, count in sorted(result_set.counts().items())})
    if shown:
        computed["rows exported"] = shown
    computed.update({"tokens in": sum(r.tokens_in for r in finished), "tokens out": sum(r.tokens_out for r in finished),
                     "cost": round(sum(r.cost for r in finished), 6),
                     "calls answered from cache": sum(r.cached for r in finished)})
    review = getattr(result_set, "review_summary", lambda: "")()
    if review:
        computed["review"] = review
    given = {k: v for k, v in settings.items() if _is_total(k)}  # the run's own figures win (shared work)
    totals = {**computed, **given}
    totals = dict(sorted(totals.items(), key=lambda kv: _total_rank(kv[0])))
    totals["exported at"] = dt.datetime.now().replace(microsecond=0)

    items: list[tuple[Any, Any, str]] = [(k, v, "") for k, v in _flatten(settings) if not _is_total(k)]
    items.append(("Totals", None, "section"))
    items += [(k, v, "") for k, v in totals.items()]
    if pipeline is not None:
        items.append(("Pipeline", None, "section"))
        items += [(k, v, "") for k, v in _pipeline_rows(pipeline)]
    wide = MAX_WIDTH  # one column of values: room for paths and prompts
    kinds = {1: WRAP} if any(isinstance(v, str) and (len(v) > wide or "\n" in v) for _, v, _ in items) else {}
    sheet = TableSheet(report, "Run", ["item", "value"], ((k, v) for k, v, _ in items), kinds, filter_header=False,
                       wrap_width=wide, left=True)
    for key, value, role in items:
        if role == "section":
            sheet.append([key, None], section=True)
            continue
        kind = RUN_ITEM_KINDS.get(key)
        if kind and isinstance(value, (int, float)):
            sheet.append([key])
            sheet.ws.write_number(sheet.rows, 1, value, report.format(kind, left=True))
        else:
            sheet.append([key, value])
    sheet.finish()


def _is_total(key: str) -> bool:
    return key in TOTALS or key.startswith("rows ")


def _total_rank(key: str) -> tuple[int, str]:
    if key == "rows":
        return (0, "")
    if key.startswith("rows ") and key != "rows exported":
        return (1, key)
    return (2 + TOTALS.index(key), "") if key in TOTALS else (99, key)


def _split_pipeline(info: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The run's settings, and the pipeline it describes (its file's dict or JSON text), redacted."""
    settings: dict[str, Any] = {}
    pipeline = None
    for key, value in secrets.redact_value(info).items():
        found = _as_pipeline(value) if pipeline is None else None
        if found is not None:
            pipeline = secrets.redact_value(found)
            if found.get("name") and not isinstance(settings.get("pipeline"), str):
                settings["pipeline"] = found["name"]
            continue
        settings[key] = value
    return settings, pipeline


def _as_pipeline(value: Any) -> dict[str, Any] | None:
    if isinstance(value, str) and value.lstrip().startswith("{"):
        with contextlib.suppress(ValueError):
            value = json.loads(value)
    if isinstance(value, dict) and isinstance(value.get("steps"), list):
        return value
    return None


def _pipeline_rows(pipeline: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """One row per step ("step 2", "Sentiment (classify)" and a line per setting), nested
    branches as "step 3.a.1"; then the pipeline's description, settings and providers."""
    yield from _step_rows(pipeline["steps"], "step ")
    if pipeline.get("description"):
        yield "description", str(pipeline["description"])
    if pipeline.get("settings"):
        yield "settings", _readable_lines(pipeline["settings"])
    for name, provider in (pipeline.get("providers") or {}).items():
        yield f"provider {name}", _readable_lines(provider) if isinstance(provider, dict) else _readable(provider)


def _step_rows(steps: list[Any], prefix: str) -> Iterator[tuple[str, str]]:
    for n, step in enumerate(steps, 1):
        if not isinstance(step, dict):
            yield f"{prefix}{n}", _readable(step)
            continue
        kind = str(step.get("type", "step"))
        flags = ", ".join([kind] * bool(step.get("name")) + ["disabled"] * (step.get("enabled") is False))
        title = f"{step.get('name') or kind} ({flags})" if flags else kind
        params = {k: v for k, v in step.items() if k not in ("type", "name", "enabled")}
        branches = {k: v for k, v in params.items() if _is_branches(v)}
        lines = [title]
        for key, value in params.items():
            lines.append(f"{key}: {', '.join(value) if key in branches else _readable(value)}")
        yield f"{prefix}{n}", "\n".join(lines)
        for value in branches.values():
            for branch, inner in value.items():
                yield from _step_rows(inner, f"{prefix}{n}.{branch}.")


def _is_branches(value: Any) -> bool:
    return isinstance(value, dict) and bool(value) and all(
        isinstance(v, list) and all(isinstance(s, dict) and "type" in s for s in v) for v in value.values())


def _readable(value: Any) -> str:
    """A setting as a person reads it: a = b, c = d; lists comma-separated; yes and no."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return "(none)"
    if isinstance(value, dict):
        return ", ".join(f"{k} = {_readable(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return "; ".join(f"({_readable(v)})" if isinstance(v, dict) else _readable(v) for v in value)
    return str(value)


def _readable_lines(values: dict[str, Any]) -> str:
    return "\n".join(f"{k}: {_readable(v)}" for k, v in values.items())


def _flatten(info: Any, prefix: str = "") -> Iterable[tuple[str, Any]]:
    """Nested settings as ("providers.openai.base_url", value) rows."""
    if isinstance(info, dict):
        for key, value in info.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            yield from _flatten(value, name)
    elif isinstance(info, (list, tuple)) and any(isinstance(v, (dict, list, tuple)) for v in info):
        for n, value in enumerate(info, 1):
            yield from _flatten(value, f"{prefix}[{n}]")
    else:
        yield prefix, info


# ---- kinds and widths ---------------------------------------------------------------------------------

def _measure(header: Sequence[str], sample: Iterable[Sequence[Any]], kinds: dict[int, str],
             filter_header: bool, wrap_width: int = WRAP_WIDTH) -> list[tuple[str, float]]:
    """Each column's kind and width (in characters) from its header and the sampled rows."""
    extra = 3 if filter_header else 1  # room for the filter button
    # A header wraps on its words: its longest word sets its width (bold is wider).
    head = [max((len(w) + (len(w) + 9) // 10 for w in str(name).split()), default=0) + extra for name in header]
    widest = list(head)
    dates: list[str | None] = [None] * len(header)  # the finest date kind seen in each column
    texts = [0] * len(header)
    numbers = [0] * len(header)  # cells holding numbers, and other cells (-1 for good)
    for values in sample:
        for i, value in enumerate(values[: len(widest)]):
            value = excel_value(value)
            vtype = type(value)
            if vtype is int or vtype is float or vtype is Decimal:
                if numbers[i] >= 0:
                    numbers[i] += 1
            elif value is not None:
                numbers[i] = -1
            if isinstance(value, (dt.date, dt.time, dt.timedelta)):
                dates[i] = _date_kind(value, dates[i] or DATE) if dates[i] != GENERAL else GENERAL
            elif value is not None:
                dates[i] = GENERAL  # a column of mixed values: its dates get their own formats
            if isinstance(value, str) and value:
                texts[i] = max(texts[i], _text_width(value))
            widest[i] = max(widest[i], _display_width(value, kinds.get(i)))
    out: list[tuple[str, float]] = []
    for i, width in enumerate(widest):
        kind = kinds.get(i) or (dates[i] if dates[i] != GENERAL else None) or (NUMBER if numbers[i] > 0 else GENERAL)
        if kind in (GENERAL, WRAP) and texts[i] > wrap_width:
            kind, width = WRAP, max(wrap_width, head[i])
        padding = 2 if kind in PADDED_KINDS else 1
        out.append((kind, min(max(width + padding, MIN_WIDTH), MAX_WIDTH)))
    return out


def _date_kind(value: Any, column: str) -> str:
    """The date format for a value in a column of this kind: the column's, unless the value
    has a time (or seconds) the column's format would hide."""
    if isinstance(value, dt.timedelta):
        return DURATION
    if isinstance(value, dt.time):
        return TIME
    if column not in DATE_KINDS:
        column = DATE
    if isinstance(value, dt.datetime):
        if value.second or value.microsecond:
            return DATETIME_S
        if (value.hour or value.minute) and column == DATE:
            return DATETIME
    return column


def _wrapped_lines(text: str, width: float) -> int:
    per_line = max(1, int(width) - 2)
    if "\n" not in text:
        return -(-len(text) // per_line)
    return sum(max(1, -(-len(part) // per_line)) for part in text.split("\n"))


def _header_lines(name: str, width: float) -> int:
    """Lines a header takes when it wraps on its words in `width` characters."""
    lines, used = 1, 0
    for word in name.split():
        size = len(word) + (len(word) + 9) // 10  # bold
        if used and used + 1 + size > width:
            lines, used = lines + 1, size
        else:
            used += size + (1 if used else 0)
    return lines


def _text_width(text: str) -> int:
    return max(map(len, text.split("\n"))) if "\n" in text else len(text)


def _display_width(value: Any, kind: str | None) -> int:
    if value is None:
        return 0
    if isinstance(value, str):
        return _text_width(value)
    if isinstance(value, bool):
        return 5
    if isinstance(value, (dt.datetime, dt.date)):
        return {DATE: 10, DATETIME: 16}.get(_date_kind(value, DATE), 19)
    if isinstance(value, (dt.time, dt.timedelta)):
        return 8
    if isinstance(value, (int, float, Decimal)):
        if kind == COST:
            return len(f"${value:,.4f}")
        if kind == SECONDS:
            return len(f"{value:.3f}")
        if kind == COUNT:
            return len(f"{value:,.0f}")
        return len(f"{value:.10g}") if isinstance(value, float) else len(str(value))
    return len(str(value))
