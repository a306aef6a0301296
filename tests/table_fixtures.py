"""Helpers for the tests of batchgrid.core.table: result sets, workbooks, and the corpus runner.

The corpus runner loads workbooks in worker processes with an address-space limit and a
time limit per file, so an allocation trap or a hang fails one test instead of the run.
Run as a script (`python tests/table_fixtures.py corpus-worker`) it is such a worker.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import queue
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Iterable, Sequence

# ../shared/testdata/spreadsheets beside the repository (DESIGN.md, "Testing"); overridable.
CORPUS = Path(os.environ.get("BATCHGRID_CORPUS",
                             Path(__file__).resolve().parents[2] / "shared" / "testdata" / "spreadsheets"))

FILE_SECONDS = 10.0             # a load slower than this counts as a hang (the promise: 10 s a file)
SHEETS_READ = 64                # sheets read one by one per file (a workbook of 1,024 empty sheets: the first 64)
EXTRA_MEMORY = 1024 * 2**20     # address space a worker may add to what it has after imports (the promise: 1 GB)


# ---- result sets ------------------------------------------------------------------------

def make_result_set(records: Sequence[dict[str, Any]], outputs: Sequence[dict[str, Any] | None], *,
                    failures: dict[int, tuple[str, str, str]] | None = None, run_info: dict | None = None):
    """A ResultSet as a run leaves it: outputs[i] None means "not run"; failures[i] = (step, type, message)."""
    from batchgrid.core.run import events as ev
    from batchgrid.core.table import Table
    from batchgrid.core.run.results import ResultSet

    failures = failures or {}
    output_columns = list(dict.fromkeys(k for o in outputs if o for k in o))
    results = []
    for i, out in enumerate(outputs):
        if i in failures:
            step, kind, message = failures[i]
            results.append(ev.RowResult(index=i, status=ev.ERROR, outputs=out or {}, error=message,
                                        error_type=kind, failed_step=step, attempts=2, latency=0.25))
        elif out is None:
            results.append(None)
        else:
            results.append(ev.RowResult(index=i, status=ev.DONE, outputs=out, attempts=1, latency=0.125 + i,
                                        tokens_in=10, tokens_out=5 + i, cost=0.0015))
    return ResultSet(Table.from_records(list(records)), output_columns, results, run_info or {})


def result_set_from_frame(frame, outputs: Sequence[dict[str, Any] | None], **kwargs):
    """Like make_result_set, with the input rows taken from a DataFrame as the engine does."""
    from batchgrid.core.table import Table

    rows = Table.from_frame(frame)
    records = [rows.row(i) for i in range(len(rows))]
    result_set = make_result_set(records, outputs, **kwargs)
    result_set.rows = rows
    return result_set


def sample_records(n: int) -> list[dict[str, Any]]:
    """Rows with every kind of value an input sheet has."""
    start = dt.datetime(2024, 1, 31, 9, 30)
    return [{"id": i, "name": f"customer {i}", "score": i * 0.37 + 0.01, "joined": start + dt.timedelta(days=i, minutes=i),
             "vip": i % 3 == 0, "note": None if i % 4 == 1 else f"note {i}"} for i in range(n)]


def assert_same_values(a, b, rel_tol: float = 1e-15) -> None:
    """Two columns hold the same cells: blanks equal blanks, floats to Excel's precision."""
    import math

    import pandas as pd

    a, b = list(a), list(b)
    assert len(a) == len(b)
    for x, y in zip(a, b):
        if pd.isna(x):
            assert pd.isna(y), (x, y)
        elif isinstance(x, float):
            assert math.isclose(x, y, rel_tol=rel_tol), (x, y)
        else:
            assert x == y and type(x) is type(y), (x, y)


# ---- workbooks ---------------------------------------------------------------------------

def write_workbook(path: Path, sheets: dict[str, Iterable[Sequence[Any]]], *, epoch_1904: bool = False) -> Path:
    """An xlsx written by openpyxl (normal mode), one sheet per item, rows as given."""
    import openpyxl
    from openpyxl.utils.datetime import CALENDAR_MAC_1904

    book = openpyxl.Workbook()
    book.remove(book.active)
    if epoch_1904:
        book.epoch = CALENDAR_MAC_1904
    for name, rows in sheets.items():
        sheet = book.create_sheet(name)
        for row in rows:
            sheet.append(list(row))
    book.save(path)
    return path


def big_xlsx(path: Path, rows: int, *, shared_strings: bool = True) -> Path:
    """A one-sheet xlsx of `rows` x 4 written straight as XML (openpyxl would take minutes).

    Columns id, name (shared or inline strings), score (C3 holds #DIV/0!), day (dates)."""
    import zipfile

    def cells(k: int) -> str:  # data row k (0-based) is sheet row k + 2
        i = k + 2
        text = f'<c r="B{i}" t="s"><v>{k}</v></c>' if shared_strings else \
            f'<c r="B{i}" t="inlineStr"><is><t>customer {k}</t></is></c>'
        score = f'<c r="C{i}" t="e"><v>#DIV/0!</v></c>' if k == 1 else f'<c r="C{i}"><v>{k * 0.25}</v></c>'
        return (f'<row r="{i}"><c r="A{i}"><v>{k}</v></c>{text}{score}'
                f'<c r="D{i}" s="1"><v>{45000 + k % 1000}</v></c></row>')

    header = ('<row r="1"><c r="A1" t="inlineStr"><is><t>id</t></is></c><c r="B1" t="inlineStr"><is><t>name</t></is></c>'
              '<c r="C1" t="inlineStr"><is><t>score</t></is></c><c r="D1" t="inlineStr"><is><t>day</t></is></c></row>')
    ns = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
    sheet = "".join([f'<?xml version="1.0" encoding="UTF-8"?><worksheet {ns}><sheetData>', header,
                     "".join(cells(k) for k in range(rows)), "</sheetData></worksheet>"])
    strings = "".join([f'<?xml version="1.0" encoding="UTF-8"?><sst {ns} count="{rows}" uniqueCount="{rows}">',
                       "".join(f"<si><t>customer {i}</t></si>" for i in range(rows)), "</sst>"])
    rel = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    parts = {
        "[Content_Types].xml": '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
        '<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
        '<Override PartName="/xl/styles.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>'
        '<Override PartName="/xl/sharedStrings.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/>'
        "</Types>",
        "_rels/.rels": f'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        f'<Relationship Id="rId1" Type="{rel}/officeDocument" Target="xl/workbook.xml"/></Relationships>',
        "xl/workbook.xml": f'<?xml version="1.0" encoding="UTF-8"?><workbook {ns} xmlns:r="{rel}"><sheets>'
        '<sheet name="Data" sheetId="1" r:id="rId1"/></sheets></workbook>',
        "xl/_rels/workbook.xml.rels": f'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        f'<Relationship Id="rId1" Type="{rel}/worksheet" Target="worksheets/sheet1.xml"/>'
        f'<Relationship Id="rId2" Type="{rel}/styles" Target="styles.xml"/>'
        f'<Relationship Id="rId3" Type="{rel}/sharedStrings" Target="sharedStrings.xml"/></Relationships>',
        "xl/styles.xml": f'<?xml version="1.0" encoding="UTF-8"?><styleSheet {ns}><fonts count="1"><font/></fonts>'
        '<fills count="1"><fill/></fills><borders count="1"><border/></borders>'
        '<cellStyleXfs count="1"><xf/></cellStyleXfs><cellXfs count="2"><xf numFmtId="0"/><xf numFmtId="14" applyNumberFormat="1"/></cellXfs>'
        "</styleSheet>",
        "xl/worksheets/sheet1.xml": sheet,
        "xl/sharedStrings.xml": strings,
    }
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        for name, text in parts.items():
            z.writestr(name, text)
    return path


# ---- the corpus runner --------------------------------------------------------------------

def run_corpus(paths: Sequence[Path], *, workers: int = 2, file_seconds: float = FILE_SECONDS) -> dict[str, dict]:
    """file name -> what loading it gave (see `_load_everything`), or a crash/timeout record."""
    todo = queue.SimpleQueue()
    for p in paths:
        todo.put(str(p))
    results: dict[str, dict] = {}
    threads = [threading.Thread(target=_drive_worker, args=(todo, results, file_seconds)) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def _drive_worker(todo: queue.SimpleQueue, results: dict[str, dict], file_seconds: float) -> None:
    worker = None
    while True:
        try:
            path = todo.get_nowait()
        except queue.Empty:
            break
        name = Path(path).name
        if worker is None:
            worker = _Worker()
        record = worker.load(path, file_seconds)
        if record.get("crash") or record.get("timeout"):
            worker.kill()
            worker = None
        results[name] = record
    if worker is not None:
        worker.close()


class _Worker:
    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, __file__, "corpus-worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
                                     env={**os.environ, "ARROW_DEFAULT_MEMORY_POOL": "system"})  # as the reader
        self.lines: queue.SimpleQueue = queue.SimpleQueue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put("")  # the worker ended

    def load(self, path: str, seconds: float) -> dict:
        self.proc.stdin.write(path + "\n")
        self.proc.stdin.flush()
        try:
            line = self.lines.get(timeout=seconds + 30)  # + the worker's start-up
        except queue.Empty:
            return {"timeout": True}
        if not line:
            self.proc.wait(timeout=10)
            return {"crash": f"the worker process died (exit code {self.proc.returncode}): "
                             f"{self.proc.stderr.read()[-2000:]}"}
        record = json.loads(line)
        if record["seconds"] > seconds:
            record["timeout"] = True
        return record

    def kill(self) -> None:
        self.proc.kill()
        self._finish()

    def close(self) -> None:
        self.proc.stdin.close()
        self._finish()

    def _finish(self) -> None:
        self.proc.wait(timeout=30)
        self.reader.join(timeout=30)  # it stops at the end of the worker's output
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            with contextlib.suppress(OSError):
                pipe.close()


def _load_everything(path: str) -> dict:
    """list_sheets, a preview, and read_table of every sheet; InputErrors recorded as messages."""
    from batchgrid.core.util.errors import InputError
    from batchgrid.core.table import list_sheets, preview, read_table

    record: dict[str, Any] = {"loads": [], "errors": []}
    try:
        sheets = list_sheets(path)
        record["sheets"] = sheets
        for sheet in [None, *sheets[:SHEETS_READ]]:
            try:
                frame = read_table(path, sheet=sheet)
                record["loads"].append([sheet, list(frame.shape)])
            except InputError as exc:
                record["errors"].append(str(exc))
        try:
            shown = preview(path)
            record["preview"] = [shown.sheet, len(shown.columns)]
        except InputError as exc:
            record["errors"].append(str(exc))
    except InputError as exc:
        record["errors"].append(str(exc))
    except Exception:  # anything else is a bug the test reports
        record["crash"] = traceback.format_exc()
    return record


def _limit_memory() -> None:
    try:
        import resource
    except ImportError:  # Windows: no rlimits; the timeout still applies
        return
    try:
        with open("/proc/self/status") as f:
            size_kb = next(int(line.split()[1]) for line in f if line.startswith("VmSize:"))
    except (OSError, StopIteration):  # not Linux: the timeout still applies
        return
    limit = size_kb * 1024 + EXTRA_MEMORY
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _worker_main() -> None:
    import resource

    from batchgrid.core.table import read_table  # noqa: F401  (imports happen before the limit)

    _limit_memory()
    for line in sys.stdin:
        t0 = time.perf_counter()
        record = _load_everything(line.strip())
        record["seconds"] = time.perf_counter() - t0
        record["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(record), flush=True)


if __name__ == "__main__" and sys.argv[1:] == ["corpus-worker"]:
    _worker_main()
