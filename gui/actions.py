"""The main window's actions (with their shortcuts), menus and toolbar."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QToolBar, QToolButton

from .examples import bundled_examples
from .icons import icon

if TYPE_CHECKING:  # pragma: no cover
    from .main_window import MainWindow


def make_action(window: MainWindow, text: str, slot, shortcut=None, icon_name: str = "", tip: str = "") -> QAction:
    action = QAction(icon(icon_name) if icon_name else icon(""), text, window)
    if shortcut is not None:
        action.setShortcut(QKeySequence(shortcut))
    if tip:
        action.setToolTip(tip)
        action.setStatusTip(tip)
    action.triggered.connect(lambda _checked=False: slot())
    return action


def build_actions(self: MainWindow) -> None:
    """The window's actions, its menus and its toolbar."""
    K = QKeySequence.StandardKey
    self.act_open_sheet = make_action(self, "Open spreadsheet…", self.choose_sheet, K.Open, "open",
                                       "Open a spreadsheet (Ctrl+O)")
    self.act_new_pipeline = make_action(self, "New pipeline", self.new_pipeline, K.New, "new")
    self.act_open_pipeline = make_action(self, "Open pipeline…", self.choose_pipeline, "Ctrl+Shift+O", "open")
    self.act_save = make_action(self, "Save pipeline", self.save_pipeline, K.Save, "save", "Save the pipeline (Ctrl+S)")
    self.act_save_as = make_action(self, "Save pipeline as…", self.save_pipeline_as, K.SaveAs, "save")
    self.act_export = make_action(self, "Export results…", self.export_results, "Ctrl+E", "export",
                                   "Export the results to Excel, CSV or Parquet (Ctrl+E)")
    self.act_export_shown = make_action(self, "Export rows as shown (sorted/filtered)…", self.export_shown_results,
                                         None, "export", "Export only the rows the results table shows, in its order")
    self.act_export_shown.setEnabled(False)
    for signal in (self.model.layoutChanged, self.model.modelReset, self.act_export.changed):
        signal.connect(self.update_export_shown)  # offered while a sort or a filter is on
    self.act_settings = make_action(self, "Settings…", self.open_settings, K.Preferences, "settings")
    self.act_quit = make_action(self, "Quit", self.close, K.Quit)
    stack = self.doc.undo_stack
    self.act_undo = make_action(self, "Undo", stack.undo, K.Undo, "undo")
    self.act_redo = make_action(self, "Redo", stack.redo, "Ctrl+Shift+Z", "redo")
    self.act_redo.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence(K.Redo)])
    self.act_undo.setEnabled(False)
    self.act_redo.setEnabled(False)
    stack.canUndoChanged.connect(self.act_undo.setEnabled)
    stack.canRedoChanged.connect(self.act_redo.setEnabled)
    stack.undoTextChanged.connect(lambda text: self.act_undo.setToolTip(f"Undo {text} (Ctrl+Z)"))
    stack.redoTextChanged.connect(lambda text: self.act_redo.setToolTip(f"Redo {text} (Ctrl+Shift+Z)"))
    self.act_run = make_action(self, "Run", self.run_all, "F5", "run",
                               "Run the rows that have no result of this pipeline yet (F5)")
    self.act_run_again = make_action(self, "Run all again", self.run_all_again, "Ctrl+F5", "run",
                                     "Run every row again, finished ones too (Ctrl+F5)")
    self.act_stop = make_action(self, "Stop", self.stop_run, "Esc", "stop")
    self.act_pause = make_action(self, "Pause / resume", self.toggle_pause, None, "pause")
    self.act_preview = make_action(self, "Preview on a few rows", self.preview_run, "Shift+F5", "preview")
    self.act_run_up_to = make_action(self, "Run up to selected step", self.run_up_to_selected, None, "preview",
                                     "Run the steps up to and including the selected one, on the selected rows "
                                     "(or the first N)")
    self.act_retry = make_action(self, "Retry failed/stopped rows", self.retry_failed, None, "retry",
                                 "Run again the rows that failed or were stopped")
    self.act_cancel_batch = make_action(self, "Cancel batch", self.cancel_batch, None, "stop",
                                        "Cancel at the provider the batch a step in batch mode waits for; the rows it "
                                        "finished are collected")
    self.act_cancel_batch.setVisible(False)  # shown while a batch waits at the provider
    self.act_run_settings = make_action(self, "Run settings…", self.show_run_settings, None, "settings",
                                        "Retries, response cache and budget, saved with the pipeline")
    self.act_delete_step = make_action(self, "Delete step", self.delete_step, K.Delete, "delete")
    self.act_delete_step.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
    self.cards.addAction(self.act_delete_step)

    menu = self.menuBar().addMenu("&File")
    menu.addAction(self.act_open_sheet)
    self.recent_menu = menu.addMenu("Open recent")
    self.examples_menu = menu.addMenu(icon("example"), "Open example")
    for example in bundled_examples():
        action = self.examples_menu.addAction(f"{example.title}  ({example.sheet.name})")
        action.setToolTip(example.description)
        action.triggered.connect(lambda _=False, e=example: self.open_example(e))
    if self.examples_menu.isEmpty():
        self.examples_menu.addAction("(no examples installed)").setEnabled(False)
    menu.addSeparator()
    for action in (self.act_new_pipeline, self.act_open_pipeline, self.act_save, self.act_save_as):
        menu.addAction(action)
    menu.addSeparator()
    menu.addAction(self.act_export)
    menu.addAction(self.act_export_shown)
    menu.addSeparator()
    menu.addAction(self.act_quit)
    edit = self.menuBar().addMenu("&Edit")
    edit.addAction(self.act_undo)
    edit.addAction(self.act_redo)
    edit.addSeparator()
    edit.addAction(self.act_settings)
    run = self.menuBar().addMenu("&Run")
    for action in (self.act_run, self.act_run_again, self.act_preview, self.act_run_up_to, self.act_pause,
                   self.act_stop, self.act_retry):
        run.addAction(action)
    run.addAction(self.act_cancel_batch)
    run.aboutToShow.connect(lambda: self.act_cancel_batch.setVisible(self.batch_waiting()))
    run.addSeparator()
    run.addAction(self.act_run_settings)

    bar = QToolBar("Main")
    bar.setObjectName("mainToolbar")
    bar.setMovable(False)
    bar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
    for action in (self.act_open_sheet, self.act_open_pipeline, self.act_save):
        bar.addAction(action)
    example_button = QToolButton()
    example_button.setText("Examples")
    example_button.setIcon(icon("example"))
    example_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
    example_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
    example_button.setMenu(self.examples_menu)
    bar.addWidget(example_button)
    bar.addSeparator()
    bar.addAction(self.act_undo)
    bar.addAction(self.act_redo)
    bar.addSeparator()
    bar.addAction(self.act_export)
    bar.addAction(self.act_settings)
    self.addToolBar(bar)
    self.refresh_recent()
