"""The xlsx report's writer against XlsxWriter's constant_memory mode, in the same run (issue 11).

    python tests/bench/bench_export.py [rows]

A run of ROWS rows x 12 columns (3 input, 2 output and the 7 run columns; one row in 500
failed) exported as the full report (Results, Errors and Run sheets: formats per column kind,
widths, wrapped text with fitted row heights, print setup), against:
- XlsxWriter constant_memory writing the same Results cells with the same formats directly (the
  floor for this document: no conversion, no row heights, no Errors or Run sheet);
- openpyxl write-only writing the same cells with a font and number formats (the previous
  writer's way of doing it), for reference.
Each time is the best of REPEAT runs, the writers taking turns.
"""

from __future__ import annotations

import datetime as dt
import platform
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/, for table_fixtures
sys.path.insert(0, str(HERE))

from bench_table import compare  # noqa: E402

ROWS = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
REPEAT = 3
REVIEWS = ("Arrived two days late and the box was crushed, but the kettle itself works fine.", "Great value.",
           "Stopped working after a week; I want a refund or a replacement, whichever is faster.")


def make_run(rows: int):
    from table_fixtures import make_result_set

    start = dt.datetime(2026, 4, 25)
    records = [{"id": i + 1, "review": REVIEWS[i % 3], "ordered": start - dt.timedelta(days=i % 90)}
               for i in range(rows)]
    outputs = [{"sentiment": ("positive", "negative")[i % 2],
                "reply": f"Thank you for your review, customer {i + 1}. We will send a replacement today."}
               for i in range(rows)]
    failures = {i: ("Sentiment", "StepError", "HTTP 400: the prompt is too long") for i in range(0, rows, 500)}
    return make_result_set(records, outputs, failures=failures, run_info={"input file": "reviews.xlsx"})


def xlsxwriter_direct(path: Path, header, cells, kinds) -> None:
    import xlsxwriter

    from batchgrid.core.table.write_xlsx import FONT, NUMBER_FORMATS

    book = xlsxwriter.Workbook(str(path), {"constant_memory": True, "strings_to_formulas": False,
                                           "strings_to_urls": False})
    sheet = book.add_worksheet("Results")
    formats = [book.add_format({**FONT, **({"num_format": NUMBER_FORMATS[k]} if k in NUMBER_FORMATS else {}),
                                **({"text_wrap": True} if k == "wrap" else {})}) for k in kinds]
    bold = book.add_format({**FONT, "bold": True})
    for c, name in enumerate(header):
        sheet.write_string(0, c, name, bold)
    for r, row in enumerate(cells, 1):
        for c, value in enumerate(row):
            kind = type(value)
            if kind is str:
                sheet.write_string(r, c, value, formats[c])
            elif kind is int or kind is float:
                sheet.write_number(r, c, value, formats[c])
            elif kind is bool:
                sheet.write_boolean(r, c, value, formats[c])
            elif value is not None:
                sheet.write_datetime(r, c, value, formats[c])
    book.close()


def openpyxl_styled(path: Path, header, cells, kinds) -> None:
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font

    from batchgrid.core.table.write_xlsx import FONT, NUMBER_FORMATS

    book = Workbook(write_only=True)
    sheet = book.create_sheet("Results")
    font, bold = Font(name=FONT["font_name"], size=FONT["font_size"]), Font(name=FONT["font_name"],
                                                                            size=FONT["font_size"], bold=True)
    numbers = [NUMBER_FORMATS.get(k) for k in kinds]
    sheet.append([_cell(WriteOnlyCell(sheet, name), bold, None) for name in header])
    for row in cells:
        sheet.append([_cell(WriteOnlyCell(sheet, v), font, numbers[c]) for c, v in enumerate(row)])
    book.save(path)


def _cell(cell, font, number_format):
    cell.font = font
    if number_format:
        cell.number_format = number_format
    return cell


def main() -> None:
    from batchgrid.core.table import export_results
    from batchgrid.core.table.cells import excel_value
    from batchgrid.core.table.write_xlsx import RUN_COLUMN_KINDS, SAMPLE_ROWS, _measure

    result_set = make_run(ROWS)
    header = result_set.header()
    cells = [[str(v) if isinstance(v, str) else v for v in map(excel_value, row)] for row in result_set.iter_rows()]
    kinds = [kind for kind, _ in _measure(header, cells[:SAMPLE_ROWS],
                                          {i: RUN_COLUMN_KINDS[n] for i, n in enumerate(header) if n in RUN_COLUMN_KINDS},
                                          True)]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ours, direct, styled = compare(lambda: export_results(result_set, folder / "ours.xlsx"),
                                       lambda: xlsxwriter_direct(folder / "direct.xlsx", header, cells, kinds),
                                       lambda: openpyxl_styled(folder / "styled.xlsx", header, cells, kinds),
                                       repeat=REPEAT)
    print(f"Python {platform.python_version()}: the report, {ROWS:,} rows x {len(header)} columns")
    print(f"  export_results (Results + Errors + Run sheets)      {ours:.3f} s")
    print(f"  XlsxWriter constant_memory, same cells and formats  {direct:.3f} s   ours / it = {ours / direct:.2f}x")
    print(f"  openpyxl write-only, same cells and formats         {styled:.3f} s   ours / it = {ours / styled:.2f}x")


if __name__ == "__main__":
    main()
