"""Editor conventions analysts expect (issue 12): the palette's keys, the cards' right-click menu,
Save / Don't save / Cancel over unsaved changes, Open and Show in folder after an export."""

from __future__ import annotations

import json

from PySide6.QtCore import Qt
from PySide6.QtGui import QContextMenuEvent
from PySide6.QtWidgets import QApplication, QMenu, QPushButton

from batchgrid.gui import unsaved
from batchgrid.gui.examples import bundled_examples
from qt_async import next_signal, run, run_to_end


def types(window) -> list[str]:
    return [s.type for s in window.doc.pipeline.steps]


# ---- the palette ----------------------------------------------------------------------------
def test_typing_highlights_the_first_match_arrows_move_and_enter_adds_it(qtbot, window):
    palette = window.palette
    palette.search.setFocus()
    qtbot.keyClicks(palette.search, "case")
    assert palette.highlighted_type() == "change_case"  # the first match, as you type
    qtbot.keyClick(palette.search, Qt.Key.Key_Return)
    assert types(window) == ["change_case"]

    palette.search.clear()
    qtbot.keyClicks(palette.search, "json")
    shown = [i.data(0, Qt.ItemDataRole.UserRole + 1) for i in palette.shown_items()]
    assert len(shown) >= 2 and palette.highlighted_type() == shown[0]
    qtbot.keyClick(palette.search, Qt.Key.Key_Down)  # from the search box: the results move
    assert palette.highlighted_type() == shown[1]
    qtbot.keyClick(palette.search, Qt.Key.Key_Up)
    qtbot.keyClick(palette.search, Qt.Key.Key_Up)  # stops at the first, never on a group heading
    assert palette.highlighted_type() == shown[0]
    qtbot.keyClick(palette.search, Qt.Key.Key_Down)
    qtbot.keyClick(palette.search, Qt.Key.Key_Enter)
    assert types(window) == ["change_case", shown[1]]
    assert palette.search.hasFocus()  # the next search can be typed at once

    qtbot.keyClicks(palette.search, "zzz")  # nothing matches: Enter adds nothing
    qtbot.keyClick(palette.search, Qt.Key.Key_Return)
    assert len(types(window)) == 2

    palette.search.clear()  # Enter in the list itself adds the highlighted step too
    palette.tree.setFocus()
    palette.tree.setCurrentItem(palette.item_for("trim"))
    qtbot.keyClick(palette.tree, Qt.Key.Key_Return)
    assert types(window)[-1] == "trim"


# ---- the cards' right-click menu ----------------------------------------------------------------
def right_click_card(window, row: int) -> QMenu:
    cards = window.cards
    pos = cards.visualRect(cards.model().index(row)).center()
    viewport = cards.viewport()
    QApplication.sendEvent(viewport, QContextMenuEvent(QContextMenuEvent.Reason.Mouse, pos, viewport.mapToGlobal(pos)))
    menu = QApplication.activePopupWidget()
    assert isinstance(menu, QMenu) and menu is cards.card_menu
    return menu


def choose(window, row: int, text: str) -> None:
    menu = right_click_card(window, row)
    action = next(a for a in menu.actions() if a.text() == text)
    assert action.isEnabled(), text
    action.trigger()
    menu.close()


def test_right_click_on_a_card_duplicates_disables_moves_and_deletes_it(window):
    for step_type in ("trim", "change_case", "length"):
        window.add_step(step_type)
    steps = window.doc.pipeline.steps
    trim, case, length = steps

    menu = right_click_card(window, 0)
    assert [a.text() for a in menu.actions() if a.text()] == [
        "Duplicate", "Disable", "Move up", "Move down", "Run up to here", "Delete"]
    assert not next(a for a in menu.actions() if a.text() == "Move up").isEnabled()
    menu.close()
    assert window.cards.current_step() is trim  # the right-clicked card is selected

    choose(window, 0, "Duplicate")
    assert types(window) == ["trim", "trim", "change_case", "length"]
    assert window.cards.current_step() is steps[1] and steps[1] is not trim
    window.act_undo.trigger()
    assert types(window) == ["trim", "change_case", "length"]

    choose(window, 1, "Disable")
    assert case.enabled is False
    assert "Enable" in [a.text() for a in right_click_card(window, 1).actions()]
    window.cards.card_menu.close()
    choose(window, 1, "Enable")
    assert case.enabled is True

    choose(window, 0, "Move down")
    assert steps == [case, trim, length]
    assert window.cards.current_step() is trim and window.form_panel.form.step is trim  # selection follows
    choose(window, 2, "Move up")
    assert steps == [case, length, trim] and window.cards.current_step() is length

    choose(window, 0, "Delete")
    assert steps == [length, trim]
    window.act_undo.trigger()
    assert steps == [case, length, trim]


def test_run_up_to_here_asks_the_window_to_run_to_that_step(qloop, window, tmp_path):
    sheet = tmp_path / "people.csv"
    sheet.write_text("name\nAnn\nBob\n")
    assert run(qloop, window.load_sheet(sheet))
    for step_type in ("trim", "change_case", "length"):
        window.add_step(step_type)
        window.doc.set_param(window.doc.pipeline.steps[-1], "source", "name")
    if getattr(window, "run_up_to", None) is None:
        # main_window.py's run_up_to is not there yet: the card list offers it only once a window
        # listens (window_layout.connect_signals connects it when the method exists)
        action = next(a for a in right_click_card(window, 1).actions() if a.text() == "Run up to here")
        assert not action.isEnabled()
        window.cards.card_menu.close()
        window.cards.can_run_up_to = lambda: True
    asked = []
    window.cards.runUpToRequested.connect(asked.append)
    choose(window, 1, "Run up to here")
    assert asked == [1]


def test_run_up_to_here_is_offered_only_when_the_pipeline_can_run(window):
    window.add_step("trim")  # no sheet open: nothing can run
    menu = right_click_card(window, 0)
    action = next(a for a in menu.actions() if a.text() == "Run up to here")
    assert not action.isEnabled()
    menu.close()


# ---- Save / Don't save / Cancel ---------------------------------------------------------------
def write_pipeline(path, step_type="trim"):
    path.write_text(json.dumps({"version": 1, "steps": [{"type": step_type, "source": "name"}]}))
    return path


def test_unsaved_changes_ask_save_dont_save_or_cancel_before_another_pipeline_opens(qloop, window, tmp_path):
    first, second = write_pipeline(tmp_path / "first.json"), write_pipeline(tmp_path / "second.json", "length")
    assert run(qloop, window.load_pipeline(first))
    answers, asked = [], []
    window.ask_save_changes_hook = lambda name: (asked.append(name), answers.pop(0))[1]

    window.add_step("change_case")  # an unsaved change
    answers.append(unsaved.CANCEL)
    assert not run(qloop, window.load_pipeline(second))
    assert asked == ["first.json"] and types(window) == ["trim", "change_case"]

    answers.append(unsaved.SAVE)  # saved to its file, then the other opens
    assert run(qloop, window.load_pipeline(second))
    assert [s["type"] for s in json.loads(first.read_text())["steps"]] == ["trim", "change_case"]
    assert types(window) == ["length"]

    window.add_step("trim")
    answers.append(unsaved.DISCARD)  # an example over unsaved changes asks too
    example = bundled_examples()[0]
    assert run(qloop, window.open_example(example))
    assert asked == ["first.json", "first.json", "second.json"]
    assert json.loads(second.read_text())["steps"] == [{"type": "length", "source": "name"}]  # not saved


def test_closing_with_unsaved_changes_can_be_cancelled_or_saved(qloop, window, tmp_path):
    path = write_pipeline(tmp_path / "p.json")
    assert run(qloop, window.load_pipeline(path))
    window.add_step("length")
    window.ask_save_changes_hook = lambda name: unsaved.CANCEL
    assert not window.close()
    assert window.isVisible()
    window.ask_save_changes_hook = lambda name: unsaved.SAVE

    async def close():
        closed = next_signal(window.closed)
        window.close()
        await closed

    run(qloop, close())
    assert [s["type"] for s in json.loads(path.read_text())["steps"]] == ["trim", "length"]


def test_the_question_has_save_dont_save_and_cancel_buttons():
    title, text = unsaved.question("p.json")
    assert title == "Save changes?" and "p.json" in text


def test_scripts_answering_the_windows_questions_answer_this_one(window):
    window.add_step("trim")
    window.questions.clear()
    assert window._may_discard()  # conftest answers Yes: don't save
    assert window.questions == ["Discard changes?"]
    window.ask = lambda title, text: False
    assert not window._may_discard()


# ---- after an export ------------------------------------------------------------------------
def test_the_export_message_offers_open_and_show_in_folder(qloop, window, tmp_path):
    sheet = tmp_path / "people.csv"
    sheet.write_text("name\nAnn\nBob\n")
    assert run(qloop, window.load_sheet(sheet))
    window.add_step("change_case")
    window.doc.set_param(window.doc.pipeline.steps[0], "source", "name")
    assert run(qloop, run_to_end(window))[0] == "finished"
    opened = []
    window.open_url = opened.append  # nothing is launched
    target = tmp_path / "out" / "results.xlsx"
    target.parent.mkdir()
    window.ask_save_path = lambda: str(target)

    async def export():
        exported = next_signal(window.exportFinished)
        window.act_export.trigger()
        return await exported

    assert run(qloop, export()) == (str(target),)
    buttons = {b.text(): b for b in window.message_bar.findChildren(QPushButton) if b.isVisibleTo(window)}
    assert set(buttons) >= {"Open", "Show in folder"}
    buttons["Open"].click()
    assert [u.toLocalFile() for u in opened] == [str(target)]
    window.show_message(window.last_message, "ok", window.export_actions(target))
    buttons = {b.text(): b for b in window.message_bar.findChildren(QPushButton) if b.isVisibleTo(window)}
    buttons["Show in folder"].click()
    assert [u.toLocalFile() for u in opened] == [str(target), str(target.parent)]



# ---- the wheel over a form ---------------------------------------------------------------------
def _wheel(widget, notches: int = -3) -> None:
    from PySide6.QtCore import QPoint, QPointF
    from PySide6.QtGui import QWheelEvent

    centre = QPointF(widget.rect().center())
    event = QWheelEvent(centre, QPointF(widget.mapToGlobal(centre.toPoint())), QPoint(), QPoint(0, 120 * notches),
                        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(widget, event)


def test_the_wheel_over_a_number_it_is_not_editing_scrolls_the_form_and_leaves_the_value(qtbot, window):
    """Scrolling down the run settings with the mouse wheel must not change the value of every
    number box or list that passes under the pointer (found by hand: Pause after failures 20 -> 13)."""
    window.resize(1024, 700)
    window.show()
    window.show_run_settings()
    panel = window.form_panel
    spin = panel.settings_form.fields["pause_after_failures"].spin
    bar = panel.verticalScrollBar()
    assert bar.maximum() > 0  # the form is taller than its place: it scrolls
    bar.setValue(0)
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    window.cards.setFocus()  # the user is elsewhere (Qt would hand a box the focus on the wheel)
    before, settings = spin.value(), dict(window.doc.pipeline.settings)
    assert spin.focusPolicy() == Qt.FocusPolicy.StrongFocus  # not WheelFocus: the wheel does not take the focus
    _wheel(spin)
    assert not spin.hasFocus()
    assert spin.value() == before and window.doc.pipeline.settings == settings and window.doc.undo_stack.isClean()
    assert bar.value() > 0  # the form scrolled instead
    spin.setFocus()
    qtbot.waitUntil(spin.hasFocus)
    _wheel(spin, notches=1)  # once the user is in the box, the wheel is theirs
    assert spin.value() == before + 1


def test_run_settings_open_at_their_top(qtbot, window):
    """The run bar's settings button shows the run settings from their title and first line (Run
    on), not scrolled to where the last step's form was (found in a real window at 1,024 x 700:
    it opened at Retry max delay)."""
    window.resize(1024, 700)
    window.add_step("llm")  # a long form
    panel = window.form_panel
    bar = panel.verticalScrollBar()
    assert bar.maximum() > 0
    bar.setValue(bar.maximum())
    window.run_bar.settingsClicked.emit()
    form = panel.settings_form
    assert form is not None and form.isVisible()
    assert bar.value() == min(form.y(), bar.maximum()) and bar.value() > 0  # the form's top at the top
    assert form.run_on.mapTo(panel.viewport(), form.run_on.rect().topLeft()).y() < panel.viewport().height()
