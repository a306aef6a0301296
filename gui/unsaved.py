"""The question asked before unsaved pipeline changes would be lost (closing, opening another
pipeline or an example, New): Save / Don't save / Cancel, as every editor asks it."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import QMessageBox, QWidget

SAVE, DISCARD, CANCEL = "save", "discard", "cancel"


def question(name: str) -> tuple[str, str]:
    """The title and text of the question for a pipeline called `name`."""
    return "Save changes?", f"Save the changes to {name} before closing it?\n\nIf you don't save, they are lost."


def ask_dialog(parent: QWidget, name: str) -> str:
    """The question as a message box: SAVE, DISCARD or CANCEL (Escape and the close button cancel)."""
    title, text = question(name)
    box = QMessageBox(QMessageBox.Icon.Warning, title, text, parent=parent)
    buttons = QMessageBox.StandardButton
    box.setStandardButtons(buttons.Save | buttons.Discard | buttons.Cancel)
    box.button(buttons.Discard).setText("Don't save")
    box.setDefaultButton(buttons.Save)
    box.setEscapeButton(buttons.Cancel)
    answer = box.exec()
    return {buttons.Save: SAVE, buttons.Discard: DISCARD}.get(buttons(answer), CANCEL)


def answered_by_script(ask: Callable[[str, str], bool]) -> bool:
    """True when the window's yes/no questions are answered by a script or a test (`window.ask`
    replaced): they answer this one too (Yes: don't save), so none of them meets a modal box."""
    return "ask_user" not in getattr(getattr(ask, "__code__", None), "co_names", ())
