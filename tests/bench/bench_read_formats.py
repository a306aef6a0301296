"""What reading workbook values as Excel shows them costs (issue 11), against python-calamine's
own read of the same file, measured in the same run.

    python tests/bench/bench_read_formats.py [--rows N] [--before DIR]

- xlsx, 100,000 rows x 6, two columns formatted on every row ("0.0%" and "00000"), and the same
  file without formats: excel.load (calamine + the XML scan + the formats applied) vs calamine's
  to_python() alone;
- xls and ods (when LibreOffice is installed to convert the xlsx; xls is cut at 65,000 rows):
  the same, for xlrd's globals + our record walk, and the content.xml pass.

--before DIR: a folder holding an older copy of core/table as a package named `oldtable`
(`mkdir -p DIR/oldtable && git archive REV core/table | tar -x --strip-components=2 -C DIR/oldtable`):
it is timed in the same run, taking turns with the current code.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPEAT = 5


def compare(*fns, repeat: int = REPEAT) -> list[float]:
    """The fastest run of each function, taking turns so that a busy moment slows all of them."""
    best = [float("inf")] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            gc.collect()
            start = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - start)
    return best


def write_xlsx(path: Path, rows: int, formatted: bool) -> Path:
    import xlsxwriter

    with xlsxwriter.Workbook(path) as book:
        sheet = book.add_worksheet("Data")
        percent = book.add_format({"num_format": "0.0%"}) if formatted else None
        padded = book.add_format({"num_format": "00000"}) if formatted else None
        sheet.write_row(0, 0, ["id", "name", "rate", "zip", "amount", "note"])
        for i in range(1, rows):
            sheet.write_number(i, 0, i)
            sheet.write_string(i, 1, f"name {i % 1000}")
            sheet.write_number(i, 2, (i % 1000) / 1000, percent)
            sheet.write_number(i, 3, i % 99_999, padded)
            sheet.write_number(i, 4, i * 1.25)
            if i % 7:
                sheet.write_string(i, 5, "x")
    return path


def convert(path: Path, to: str, folder: Path) -> Path | None:
    soffice = shutil.which("libreoffice") or shutil.which("soffice")
    if soffice is None:
        return None
    subprocess.run([soffice, f"-env:UserInstallation={(folder / 'profile').as_uri()}", "--headless",
                    "--convert-to", to, "--outdir", str(folder), str(path)], capture_output=True, timeout=600)
    out = path.with_suffix("." + to)
    return out if out.exists() else None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--before", type=Path)
    args = parser.parse_args()

    import python_calamine as pc
    from batchgrid.core.table import excel
    from batchgrid.core.table.sniff import ODS, XLS, XLSX

    old = None
    if args.before:
        sys.path.insert(0, str(args.before))
        old = importlib.import_module("oldtable.excel")
    print(f"Python {sys.version.split()[0]}; best of {REPEAT}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        files = []
        for formatted in (True, False):
            name = "formatted" if formatted else "plain"
            xlsx = write_xlsx(folder / f"{name}.xlsx", args.rows, formatted)
            files.append((f"xlsx {name}", xlsx, XLSX))
            small = write_xlsx(folder / f"{name}-65k.xlsx", min(args.rows, 65_000), formatted)
            for to, kind in (("xls", XLS), ("ods", ODS)):
                if (converted := convert(small, to, folder)) is not None:
                    files.append((f"{to} {name}", converted, kind))
        for label, path, kind in files:
            fns = [lambda path=path: pc.CalamineWorkbook.from_path(str(path)).get_sheet_by_name("Data").to_python(),
                   lambda path=path, kind=kind: excel.load(path, kind, None)]
            if old is not None:
                fns.append(lambda path=path, kind=kind: old.load(path, kind, None))
            times = compare(*fns)
            line = f"{label:15} calamine {times[0]:.3f} s   ours {times[1]:.3f} s ({times[1] / times[0]:.2f}x)"
            if old is not None:
                line += f"   before {times[2]:.3f} s ({times[2] / times[0]:.2f}x)"
            print(line)


if __name__ == "__main__":
    main()
