"""The main window's file work: opening sheets and pipelines (dialogs, drops, recent files,
examples), saving pipelines, exporting results. Each is a call on the session, awaited so
the window stays live; failures are one line in the message bar."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from batchgrid.core.pipeline import Pipeline
from batchgrid.core.session import Sheet
from batchgrid.core.table.password import PasswordRequired, WrongPassword
from batchgrid.core.util.errors import BatchgridError
from PySide6.QtCore import QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QFileDialog, QInputDialog, QLineEdit

from . import unsaved
from .examples import Example
from .widgets import one_line

SHEET_FILTER = "Spreadsheets (*.xlsx *.xlsm *.xlsb *.xls *.ods *.csv *.tsv *.txt *.parquet);;All files (*)"
PIPELINE_FILTER = "Batchgrid pipelines (*.json);;All files (*)"
EXPORT_FILTERS = {"Excel workbook (*.xlsx)": ".xlsx", "CSV (*.csv)": ".csv", "Parquet (*.parquet)": ".parquet"}
PIPELINE_SUFFIXES = (".json",)

if TYPE_CHECKING:  # pragma: no cover
    from .main_window import MainWindow

    _Base = MainWindow
else:
    _Base = object


class FileActions(_Base):
    """Mixed into MainWindow: the methods behind File ▸ Open, Save, Export and drag and drop."""

    # Hooks a test (or a script) replaces: how a file or folder is opened with the desktop's
    # application, and the Save / Don't save / Cancel answer (None: ask with a message box).
    open_url: Callable[[QUrl], object] = staticmethod(QDesktopServices.openUrl)
    ask_save_changes_hook: Callable[[str], str] | None = None

    def choose_sheet(self) -> None:
        start = str(self.sheet_path.parent) if self.sheet_path else ""
        path, _ = QFileDialog.getOpenFileName(self, "Open a spreadsheet", start, SHEET_FILTER)
        if path:
            self.open_sheet(path)

    def open_path(self, path: str) -> None:
        """A dropped or recent file: a pipeline if it is one, else a sheet."""
        if Path(path).suffix.lower() in PIPELINE_SUFFIXES:
            self.open_pipeline(path)
        else:
            self.open_sheet(path)

    def open_sheet(self, path, sheet: str | None = None) -> asyncio.Task:
        return self.spawn(self.load_sheet(Path(path), sheet))

    async def load_sheet(self, path: Path, sheet: str | None = None) -> bool:
        """Show a sheet: its first rows at once, then all of it, read by the session off the
        loop so the window stays live. False (and a message in the window) if it cannot be read."""
        if self.runner.running:
            self.show_message("Stop the run before opening another sheet.")
            self.sheetLoaded.emit()
            return False
        path = Path(path)
        self.loading = True
        self._set_busy(f"Reading {path.name}…", True)
        t0 = time.perf_counter()
        try:
            sheet_read = await self._open_with_password(path, sheet)
        except Exception as exc:  # any unreadable file: one line in the window, never a traceback
            self.loading = False
            self._set_busy("", False)
            self.show_message(f"Could not open {path.name}: {one_line(exc)}")
            self.update_state()
            self.sheetLoaded.emit()
            return False
        if sheet_read is None:
            return False  # another sheet was opened meanwhile
        self.loading = False
        self._show_table(sheet_read)
        rows = sheet_read.table
        self._set_busy(f"Read {path.name}: {len(rows):,} rows × {len(rows.columns)} columns in "
                       f"{time.perf_counter() - t0:.1f} s", False)
        self.settings.add_recent("sheets", str(sheet_read.path))
        self.refresh_recent()
        if rows.notes:  # how the file was read, said once (an encoding guessed, a title row skipped)
            self.show_message("\n".join(rows.notes), "warning")
        self.update_state()
        self.update_estimate()
        await self.offer_resume()
        await self.offer_pending_batch()
        self.sheetLoaded.emit()
        return True

    async def _open_with_password(self, path: Path, sheet: str | None) -> Sheet | None:
        """The session's open_sheet; a password-protected workbook asks for its password (used for
        this open only, never stored). Cancelling the dialog leaves the error to show."""
        password = None
        while True:
            try:
                return await self.session.open_sheet(path, sheet, on_preview=self._show_preview, password=password)
            except PasswordRequired as exc:
                password = self.ask_password(path, wrong=isinstance(exc, WrongPassword))
                if password is None:
                    raise

    def ask_password(self, path: Path, *, wrong: bool = False) -> str | None:
        """The password the user types for `path` (None: cancelled)."""
        prompt = ("That password is wrong. " if wrong else "") + f"{path.name} is password-protected. Password:"
        text, ok = QInputDialog.getText(self, "Password", prompt, QLineEdit.EchoMode.Password)
        return text if ok and text else None

    def _show_preview(self, sheet: Sheet) -> None:
        self._show_table(sheet)
        self.status_text.setText(f"Reading all of {sheet.path.name}; the first {len(sheet.table):,} rows are shown…")

    def _show_table(self, sheet: Sheet) -> None:
        self.doc.set_columns(sheet.table.columns)
        self.model.store_reset()
        self._show_sheet_picker()
        self.lower.setCurrentIndex(1)
        self.show_row(-1)
        more = "" if sheet.complete else " so far"
        header = ("" if sheet.header_row is None else
                  f" · header: row {sheet.header_row}" if sheet.header_row else " · no header row")
        self.table_info.setText(f"{len(sheet.table):,} rows{more} × {len(sheet.table.columns)} columns from "
                                f"{sheet.path.name}{header}")
        self.table_info.setToolTip("" if sheet.header_row is None else
                                   "To choose the header: right-click a row ▸ Use as header, or No header row")
        self.run_bar.show_message("Not run yet.")
        self.message_bar.hide()
        self.update_state()

    def _show_sheet_picker(self) -> None:
        sheet = self.session.sheet
        names = sheet.names if sheet else []
        self.sheet_picker.blockSignals(True)
        self.sheet_picker.clear()
        self.sheet_picker.addItems(names)
        if sheet is not None and sheet.name in names:
            self.sheet_picker.setCurrentText(sheet.name)
        self.sheet_picker.blockSignals(False)
        many = len(names) > 1
        self.sheet_picker.setVisible(many)
        self.sheet_picker_label.setVisible(many)

    # ---- the header row: right-click ▸ Use as header / No header row ----------------------------
    def can_choose_header(self) -> bool:
        """A sheet with rows (not a parquet file) is shown and no run or read is in progress."""
        sheet = self.session.sheet
        return sheet is not None and sheet.first_row is not None and not self.runner.running and not self.loading

    def use_as_header(self, row: int | None) -> None:
        """Table row `row` (None: no header row) becomes the pipeline's header_row setting, as the
        sheet numbers it (undoable, saved with the pipeline); follow_header_setting reads the sheet again."""
        sheet = self.session.sheet
        if sheet is None or not self.can_choose_header():
            return
        self.doc.set_setting("header_row", 0 if row is None else sheet.sheet_row(row))

    def follow_header_setting(self) -> asyncio.Task | None:
        """Read the sheet again when the pipeline asks for another header row than it was read with
        (Use as header, its undo, the Run settings field, a pipeline opened)."""
        sheet = self.session.sheet
        if sheet is None or self.runner.running or not self.session.header_differs():
            return None
        return self.open_sheet(sheet.path, sheet.name)

    def refresh_recent(self) -> None:
        self.recent_menu.clear()
        paths = self.settings.recent("sheets") + self.settings.recent("pipelines")
        for path in paths:
            self.recent_menu.addAction(path, lambda p=path: self.open_path(p))
        if not paths:
            self.recent_menu.addAction("(nothing yet)").setEnabled(False)
        self.welcome.show_recent(self.settings.recent("sheets"))

    def _new_pipeline(self) -> Pipeline:
        return Pipeline(settings={"max_concurrency": self.settings.default_concurrency()})

    def _may_discard(self) -> bool:
        """Unsaved changes: Save (False if the save did not happen), Don't save, or Cancel (False)."""
        if self.doc.undo_stack.isClean() or not self.doc.pipeline.steps:
            return True
        answer = self.ask_save_changes()
        if answer == unsaved.SAVE:
            return self.save_pipeline()
        return answer == unsaved.DISCARD

    def ask_save_changes(self) -> str:
        path = self.doc.pipeline.path
        name = path.name if path else "this unsaved pipeline"
        if self.ask_save_changes_hook is not None:
            return self.ask_save_changes_hook(name)
        if unsaved.answered_by_script(self.ask):
            discard = self.ask("Discard changes?", f"{name} has unsaved changes. Discard them?")
            return unsaved.DISCARD if discard else unsaved.CANCEL
        return unsaved.ask_dialog(self, name)

    def new_pipeline(self) -> None:
        if self._may_discard():
            self._use_pipeline(self._new_pipeline())
            self.follow_header_setting()

    def _use_pipeline(self, pipeline: Pipeline) -> None:
        self.doc.replace(pipeline)
        self.session.set_pipeline(self.doc.pipeline)

    def choose_pipeline(self) -> None:
        start = str(self.doc.pipeline.path.parent) if self.doc.pipeline.path else ""
        path, _ = QFileDialog.getOpenFileName(self, "Open a pipeline", start, PIPELINE_FILTER)
        if path:
            self.open_pipeline(path)

    def open_pipeline(self, path) -> asyncio.Task:
        return self.spawn(self.load_pipeline(path))

    async def load_pipeline(self, path) -> bool:
        """Read and check a pipeline file (off the loop); False and a message if it cannot be used."""
        if not self._may_discard():
            return False
        try:
            pipeline = await asyncio.to_thread(Pipeline.load, path)
        except Exception as exc:
            problems = getattr(exc, "problems", [])
            detail = "\n".join(str(p) for p in problems[:8]) if len(problems) > 1 else one_line(exc)
            self.show_message(f"Could not open {Path(path).name}: {detail}")
            return False
        self._use_pipeline(pipeline)
        self.settings.add_recent("pipelines", str(pipeline.path))
        self.refresh_recent()
        if pipeline.steps:
            self.cards.select_step(pipeline.steps[0])
        self.message_bar.hide()
        reread = self.follow_header_setting()  # its header row is not the one the sheet was read with
        if reread is not None:
            await reread  # which offers to resume the last run
        else:
            await self.offer_resume()
            await self.offer_pending_batch()
        return True

    # ---- batch mode: a batch the last run left at the provider -----------------------------
    async def offer_pending_batch(self) -> None:
        """The last run of this pipeline on this sheet left a batch at the provider (the app was closed, or
        the run stopped): say how far it is there, asked now, and offer to collect it or cancel it."""
        try:
            line = await self.session.pending_batch()
        except BatchgridError as exc:
            line = f"a batch of the last run is at the provider, but it cannot be asked how far it is ({exc})"
        if line:
            self.show_message(f"{line}. Resume collects the results when they are ready (nothing is sent again).",
                              "info", [("Resume", lambda: self.start_run("resume")),
                                       ("Cancel batch", self.cancel_batch)])

    def cancel_batch(self) -> asyncio.Task:
        """Run ▸ Cancel batch: cancel at the provider the batch the run waits for (or the last run left there);
        the rows it finished are collected."""
        running = self.session.running

        async def cancel() -> None:
            try:
                cancelled = await self.session.cancel_batch()
            except BatchgridError as exc:
                self.show_message(f"The batch could not be cancelled: {one_line(exc)}")
                return
            if not cancelled:
                self.show_message("No batch is waiting at the provider.", "info")
            elif running:
                self.show_message("Cancelling the batch at the provider; the rows it finished will be collected.",
                                  "info")
            else:
                self.show_message("The batch is cancelled at the provider. Resume collects the rows it finished.",
                                  "info", [("Resume", lambda: self.start_run("resume"))])

        return self.spawn(cancel())

    def batch_waiting(self) -> bool:
        """A batch waits at the provider: the running run's, or one the last run left there (the Run menu
        then offers Cancel batch)."""
        return self.session.batch_pending

    def save_pipeline(self) -> bool:
        if self.doc.pipeline.path is None:
            return self.save_pipeline_as()
        return self._save_to(self.doc.pipeline.path)

    def save_pipeline_as(self) -> bool:
        start = str(self.doc.pipeline.path or (self.sheet_path.with_suffix(".batchgrid.json") if self.sheet_path else ""))
        path, _ = QFileDialog.getSaveFileName(self, "Save the pipeline", start, PIPELINE_FILTER)
        return bool(path) and self._save_to(Path(path))

    def _save_to(self, path: Path) -> bool:
        try:
            self.doc.pipeline.save(path)  # a small JSON file, written atomically
        except Exception as exc:
            self.show_message(f"Could not save {path.name}: {one_line(exc)}")
            return False
        self.doc.undo_stack.setClean()
        self.settings.add_recent("pipelines", str(path))
        self.refresh_recent()
        self.status_text.setText(f"Saved {path}")
        self.update_title()
        return True

    def open_example(self, example: Example) -> asyncio.Task:
        async def both() -> bool:
            return await self.load_pipeline(example.pipeline) and await self.load_sheet(example.sheet)

        return self.spawn(both())

    def _ask_export_path(self) -> str:
        start = self.sheet_path.with_name(f"{self.sheet_path.stem}-results.xlsx") if self.sheet_path else Path("results.xlsx")
        path, chosen = QFileDialog.getSaveFileName(self, "Export results", str(start), ";;".join(EXPORT_FILTERS))
        if path and not Path(path).suffix:
            path += EXPORT_FILTERS.get(chosen, ".xlsx")
        return path

    def export_results(self) -> asyncio.Task | None:
        if self.rows is None:
            self.show_message("Open a spreadsheet and run a pipeline before exporting.")
            return None
        path = self.ask_save_path()
        return self.spawn(self.export_to(Path(path))) if path else None

    def shown_rows(self) -> list[int] | None:
        """The rows the results table shows, in its order, while a sort or a filter is on."""
        return None if self.model.order is None else list(self.model.order)

    def update_export_shown(self) -> None:
        self.act_export_shown.setEnabled(self.act_export.isEnabled() and self.model.order is not None)

    def export_shown_results(self) -> asyncio.Task | None:
        rows = self.shown_rows()
        if rows is None:  # nothing sorted or filtered: every row, in input order
            return self.export_results()
        path = self.ask_save_path()
        return self.spawn(self.export_to(Path(path), rows)) if path else None

    async def export_to(self, path: Path, rows: list[int] | None = None) -> bool:
        """Write the results off the UI thread, with progress in the status bar; `rows`: only
        these, in this order (the table as shown)."""
        loop = asyncio.get_running_loop()
        self._set_busy(f"Exporting to {path.name}…", True, 100)

        def on_progress(done, total) -> None:  # called in the export thread
            percent = int(100 * done / total) if total else 0
            loop.call_soon_threadsafe(self.busy.setValue, percent)

        try:
            written = await self.session.export(path, on_progress=on_progress, rows=rows)
        except Exception as exc:
            self._set_busy("", False)
            self.show_message(f"Could not export to {path.name}: {one_line(exc)}")
            self.exportFinished.emit("")
            return False
        what = f"{written:,} rows" + (" as shown" if rows is not None else "")
        self._set_busy(f"Exported {what} to {path}", False)
        self.show_message(f"Exported {what} to {path}", "ok", self.export_actions(path))
        self.exportFinished.emit(str(path))
        return True

    def export_actions(self, path: Path) -> list[tuple[str, Callable[[], object]]]:
        """The message after an export offers to open the file, or its folder, with the desktop's
        applications (a folder view cannot select the file on every desktop: it opens the folder)."""
        path = Path(path).absolute()
        return [("Open", lambda: self.open_url(QUrl.fromLocalFile(str(path)))),
                ("Show in folder", lambda: self.open_url(QUrl.fromLocalFile(str(path.parent))))]

    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        files = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if files:
            event.acceptProposedAction()
            for path in sorted(files, key=lambda p: not p.lower().endswith(PIPELINE_SUFFIXES)):
                self.open_path(path)
