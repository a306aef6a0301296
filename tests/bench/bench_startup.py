"""Start-up: the headless CLI and the window, each against a bare baseline timed in the same run.

    .venv/bin/python tests/bench/bench_startup.py              # 10 runs of each, interleaved
    .venv/bin/python tests/bench/bench_startup.py --runs 5
    /tmp/venv312-bench/bin/python tests/bench/bench_startup.py    # another interpreter: its venv needs
                                                                   # `pip install -e '.[test]'` (batchgrid-cli)

Every figure is the median wall time of fresh processes, started by this script with the
same interpreter (sys.executable), the commands interleaved so that a busy moment of the
shared machine hits them all alike.

1. `batchgrid-cli check resources/examples/reviews-offline.batchgrid.json resources/examples/reviews.xlsx`
   (and `batchgrid-cli steps`), against `python -c pass` (the interpreter's own start) and
   `python -c "import pandas"` (the one heavy library `check` needs to read the sheet).
   Target: check <= 0.5 s. Also: which heavy packages each command ends up importing
   (openai must not be one of them for `check` and `steps`), and the biggest imports of
   `check` (python -X importtime, cumulative).
2. Time to window: from the process's start (just before the parent spawns it) to the main
   window shown - `show()` done, one event-loop turn, `isVisible()` true - and to its first
   paint, under QT_QPA_PLATFORM=offscreen. The app starts as `batchgrid` does
   (`batchgrid.gui.app.main([])`, qasync loop, Fusion style, a fresh settings folder); the
   child only wraps `MainWindow.show` to take the time. Baseline: a bare QApplication and an
   empty QMainWindow shown the same way. Target: <= 1.5 s. Also: whether openai is imported
   before the window shows (it must not be), and 1.5 s after; the biggest imports before the
   window shows.

Nothing is sent anywhere; about 1 minute.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchkit import REPO, Load, median, python_line

PY = sys.executable
BIN = Path(PY).parent
PIPELINE = REPO / "resources/examples/reviews-offline.batchgrid.json"
SHEET = REPO / "resources/examples/reviews.xlsx"
HEAVY = ("openai", "httpx2", "httpx", "aiohttp", "numpy", "pandas", "pyarrow", "openpyxl", "python_calamine",
         "PySide6", "qasync", "keyring", "jsonpath_ng", "rich", "tiktoken")

# Runs the CLI's main in-process and says which heavy packages it imported (on stderr, last line).
CLI_MODULES = f"""
import sys, io, contextlib
from batchgrid.core.cli import main
out = io.StringIO()
try:
    with contextlib.redirect_stdout(out):
        code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
heavy = {HEAVY!r}
print("MODULES " + " ".join(m for m in heavy if m in sys.modules), file=sys.stderr)
"""

# The window as `batchgrid` starts it; MainWindow.show is wrapped to note when it is shown.
WINDOW_CHILD = f"""
import os, sys, time, json
from batchgrid.gui import main_window as mw
from PySide6.QtCore import QEvent, QObject, QTimer
from PySide6.QtWidgets import QApplication
marks = {{}}
heavy = {HEAVY!r}

class FirstPaint(QObject):
    def eventFilter(self, obj, event):
        if "paint" not in marks and event.type() == QEvent.Type.Paint:
            window = getattr(obj, "window", None)
            if window is not None and isinstance(window(), mw.MainWindow):
                marks["paint"] = time.time()
                marks["openai_at_paint"] = "openai" in sys.modules
        return False

shown = mw.MainWindow.show
def show(self):
    marks["show_called"] = time.time()
    QApplication.instance().installEventFilter(painter)
    shown(self)
    def turned():
        marks["visible"] = time.time()
        marks["is_visible"] = self.isVisible()
        marks["openai_at_show"] = "openai" in sys.modules
        marks["heavy_at_show"] = [m for m in heavy if m in sys.modules]
        print("WINDOW SHOWN", file=sys.stderr, flush=True)
        QTimer.singleShot(1500, later)
    QTimer.singleShot(0, turned)
def later():
    marks["openai_later"] = "openai" in sys.modules
    print("MARKS " + json.dumps(marks), flush=True)
    os._exit(0)
painter = FirstPaint()
mw.MainWindow.show = show
from batchgrid.gui.app import main
main([])
"""

BARE_CHILD = """
import os, sys, time, json
from PySide6.QtCore import QEvent, QObject, QTimer
from PySide6.QtWidgets import QApplication, QMainWindow
marks = {}
class FirstPaint(QObject):
    def eventFilter(self, obj, event):
        if "paint" not in marks and event.type() == QEvent.Type.Paint:
            marks["paint"] = time.time()
        return False
app = QApplication(sys.argv[:1])
app.setStyle("Fusion")
painter = FirstPaint()
app.installEventFilter(painter)
window = QMainWindow()
window.resize(1200, 800)
marks["show_called"] = time.time()
window.show()
def turned():
    marks["visible"] = time.time()
    marks["is_visible"] = window.isVisible()
    QTimer.singleShot(0, done)
def done(waited=[0]):
    waited[0] += 1
    if "paint" not in marks and waited[0] < 200:  # up to about 1 s for the first paint
        QTimer.singleShot(5, done)
        return
    print("MARKS " + json.dumps(marks), flush=True)
    os._exit(0)
QTimer.singleShot(0, turned)
app.exec()
"""


def timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=REPO, timeout=60)
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{argv} failed ({done.returncode}): {done.stderr.decode()[-2000:]}")
    return elapsed


def marks_of(argv: list[str], env: dict[str, str]) -> dict:
    """Run a window child; its marks as seconds since just before it was spawned."""
    t0 = time.time()
    done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=REPO, timeout=60)
    found = re.search(r"^MARKS (.*)$", done.stdout, re.M)
    if not found:
        raise SystemExit(f"no marks from {argv[:3]}: {done.stdout[-1000:]} {done.stderr[-2000:]}")
    marks = json.loads(found.group(1))
    for key in ("show_called", "visible", "paint"):
        if key in marks:
            marks[key] -= t0
    return marks


def top_imports(stderr: str, until: str | None = None) -> list[tuple[str, float]]:
    """What importing each heavy package cost where it was first imported (its cumulative time,
    with whatever it pulled in that was not loaded yet), largest first, from
    `python -X importtime` (which slows imports a little: indicative)."""
    found: dict[str, float] = {}
    for line in stderr.splitlines():
        if until and until in line:
            break
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)", line)
        if m and m.group(4) in HEAVY and m.group(4) not in found:
            found[m.group(4)] = int(m.group(2)) / 1e6
    return sorted(found.items(), key=lambda x: -x[1])


def import_chains(stderr: str, names: tuple[str, ...]) -> dict[str, str]:
    """Who first imported each of `names`: "pandas <- batchgrid.core.table.export <- ..." (the
    modules whose import was in progress), from `python -X importtime`."""
    parsed = []
    for line in stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)", line)
        if m:
            parsed.append((len(m.group(3)), m.group(4)))
    chains = {}
    for i, (depth, name) in enumerate(parsed):
        if name in names and name not in chains:
            chain = [name]
            for d, parent in parsed[i + 1:]:  # a module is listed after everything it imported
                if d < depth:
                    chain.append(parent)
                    depth = d
                if d == 0:
                    break
            chains[name] = " <- ".join(c for c in chain if c.startswith("batchgrid") or c == name)
    return chains


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    load = Load()
    cli = str(BIN / "batchgrid-cli")
    if not Path(cli).exists():
        raise SystemExit(f"{cli} not found: install the package into this interpreter's environment")

    with tempfile.TemporaryDirectory() as home:
        env = dict(os.environ, QT_QPA_PLATFORM="offscreen", XDG_CONFIG_HOME=f"{home}/config",
                   XDG_DATA_HOME=f"{home}/data", XDG_CACHE_HOME=f"{home}/cache", PYTHONDONTWRITEBYTECODE="0")
        cli_cmds = {
            "python -c pass": [PY, "-c", "pass"],
            'python -c "import pandas"': [PY, "-c", "import pandas"],
            "batchgrid-cli check (example)": [cli, "check", str(PIPELINE), str(SHEET)],
            "batchgrid-cli steps": [cli, "steps"],
        }
        window_cmds = {
            "bare QApplication + QMainWindow": [PY, "-c", BARE_CHILD],
            "batchgrid window": [PY, "-c", WINDOW_CHILD],
        }
        # Warm the file cache (and .pyc files) once, untimed.
        for argv in cli_cmds.values():
            timed(argv, env)
        for argv in window_cmds.values():
            marks_of(argv, env)

        cli_times: dict[str, list[float]] = {k: [] for k in cli_cmds}
        win_marks: dict[str, list[dict]] = {k: [] for k in window_cmds}
        for _ in range(args.runs):
            for name, argv in cli_cmds.items():
                cli_times[name].append(timed(argv, env))
            for name, argv in window_cmds.items():
                win_marks[name].append(marks_of(argv, env))

        modules = {}
        for name, cmd in (("check", ["check", str(PIPELINE), str(SHEET)]), ("steps", ["steps"])):
            done = subprocess.run([PY, "-c", CLI_MODULES, *cmd], capture_output=True, text=True, env=env, cwd=REPO,
                                  timeout=60)
            found = re.search(r"^MODULES(.*)$", done.stderr, re.M)
            modules[name] = found.group(1).split() if found else [f"(failed: {done.stderr[-300:]})"]
        check_imports = subprocess.run([PY, "-X", "importtime", "-c", CLI_MODULES, "check", str(PIPELINE),
                                        str(SHEET)], capture_output=True, text=True, env=env, cwd=REPO, timeout=60)
        window_imports = subprocess.run([PY, "-X", "importtime", "-c", WINDOW_CHILD], capture_output=True, text=True,
                                        env=env, cwd=REPO, timeout=60)

    print(python_line())
    print(load.line())
    print(f"CLI start-up: wall time of a fresh process, median of {args.runs} (min-max)")
    base = median(cli_times["python -c pass"])
    pandas = median(cli_times['python -c "import pandas"'])
    for name, times in cli_times.items():
        m = median(times)
        print(f"  {name:32} {m:6.3f} s  ({min(times):.3f}-{max(times):.3f})   {m / base:5.1f}x bare python, "
              f"{m / pandas:4.2f}x import pandas, {m - pandas:+.3f} s beyond pandas")
    check = median(cli_times["batchgrid-cli check (example)"])
    print(f"  check: {check:.3f} s   (target <= 0.5 s: {'met' if check <= 0.5 else 'NOT met'})")
    for name, mods in modules.items():
        print(f"  heavy packages imported by `{name}`: {' '.join(mods) or '(none)'}   "
              f"openai: {'IMPORTED' if 'openai' in mods else 'not imported'}")
    print("  what each heavy import cost `check` (-X importtime, cumulative at its first import): "
          + ", ".join(f"{m} {t:.3f} s" for m, t in top_imports(check_imports.stderr)))

    for chain in import_chains(check_imports.stderr, ("pandas", "numpy", "openpyxl", "httpx2", "openai")).values():
        print(f"    {chain}")

    print(f"Time to window (QT_QPA_PLATFORM=offscreen), seconds from spawn, median of {args.runs}:")
    rows = {}
    for name, marks in win_marks.items():
        shown = [m["visible"] for m in marks]
        painted = [m["paint"] for m in marks if "paint" in m]
        built = [m["show_called"] for m in marks]
        rows[name] = median(shown)
        print(f"  {name:32} shown {median(shown):6.3f} s ({min(shown):.3f}-{max(shown):.3f}), "
              f"first paint {median(painted) if painted else float('nan'):6.3f} s, "
              f"show() called at {median(built):6.3f} s; visible: {all(m['is_visible'] for m in marks)}")
    window = rows["batchgrid window"]
    bare = rows["bare QApplication + QMainWindow"]
    print(f"  the window / bare Qt window: {window / bare:.2f}x ({window - bare:+.3f} s)   "
          f"(target <= 1.5 s: {'met' if window <= 1.5 else 'NOT met'})")
    app_marks = win_marks["batchgrid window"]
    print(f"  openai imported before the window shows: {'YES' if any(m['openai_at_show'] for m in app_marks) else 'no'}"
          f"; by its first paint: {'YES' if any(m.get('openai_at_paint') for m in app_marks) else 'no'}"
          f"; 1.5 s later: {'yes' if any(m['openai_later'] for m in app_marks) else 'no'}")
    print(f"  heavy packages loaded when it shows: {' '.join(app_marks[0]['heavy_at_show'])}")
    print("  what each heavy import cost before it shows (cumulative at its first import): "
          + ", ".join(f"{m} {t:.3f} s" for m, t in top_imports(window_imports.stderr, until="WINDOW SHOWN")))


if __name__ == "__main__":
    main()
