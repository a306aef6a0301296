"""`batchgrid`: the window. `batchgrid FILE [--pipeline P]`, `batchgrid --example`;
`batchgrid run|check|steps ...` is the headless CLI (no Qt is imported for it)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

CLI_COMMANDS = ("run", "check", "steps")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="batchgrid",
        description="Open the Batchgrid window. For headless runs: batchgrid run PIPELINE INPUT (see batchgrid run -h).")
    parser.add_argument("file", nargs="?", help="a spreadsheet to open (or a pipeline .json)")
    parser.add_argument("--pipeline", "-p", help="a pipeline file to open with it")
    parser.add_argument("--sheet", help="the sheet to open in a workbook")
    parser.add_argument("--example", action="store_true", help="open the bundled offline example")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in CLI_COMMANDS:
        from batchgrid.core.cli import main as cli_main  # headless: Qt is never imported

        return cli_main(argv)
    args = parse_args(argv)
    for given in (args.file, args.pipeline):
        if given and not Path(given).exists():
            print(f"batchgrid: error: {given}: no such file", file=sys.stderr)
            return 2
    return run_window(args)


def run_window(args: argparse.Namespace) -> int:
    import asyncio

    import PySide6  # noqa: F401  (qasync uses the first Qt binding imported: PySide6)
    import qasync
    from PySide6.QtWidgets import QApplication

    from . import style
    from .examples import offline_example
    from .main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setOrganizationName("Batchgrid")
    app.setApplicationName("Batchgrid")
    app.setStyle("Fusion")
    style.apply_scheme()  # the system's light or dark (or BATCHGRID_COLOR_SCHEME's)
    style.follow_system_scheme()

    async def open_window() -> None:
        closed = asyncio.Event()
        app.aboutToQuit.connect(closed.set)
        window = MainWindow()
        window.show()
        if args.example:
            example = offline_example()
            if example is None:
                window.show_message("No bundled example was found in this installation.")
            else:
                window.open_example(example)
        else:
            if args.pipeline:
                window.open_pipeline(args.pipeline)
            if args.file:
                window.open_path(args.file) if not args.sheet else window.open_sheet(args.file, args.sheet)
        await closed.wait()

    try:
        qasync.run(open_window())
    except asyncio.CancelledError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
