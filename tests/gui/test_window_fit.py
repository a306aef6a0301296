"""The window fits small screens and large scaling (issue 12, item 1): no label sets a minimum
width, whatever it says; the window opens within the screen and comes back clamped to it."""

from __future__ import annotations

import shutil

import pytest
from batchgrid.core.run import events as ev
from batchgrid.core.run.engine import Progress
from batchgrid.core.steps import REGISTRY
from batchgrid.gui import style
from batchgrid.gui.main_window import MainWindow
from conftest import EXAMPLES
from PySide6.QtCore import QSize
from qt_async import run, run_to_end
from window_checks import app_palette, minimum, settle, too_big, unreadable  # noqa: F401  (a fixture)

# 1,024×700 and 1,600×1,000 at 150 % (1,066×666 logical), less a title bar and a panel
SMALL_SCREEN = QSize(1000, 620)
LONG_COST = ("about 81,135 tokens, $0.00 for 300 rows (projected from the first 20); no price for "
             "fake-model, nor for another-model-with-a-long-name")
# The window inside each screen the issue names, less a title bar, in the logical pixels the
# layout sees (1,600×1,000 at QT_SCALE_FACTOR=1.5 is 1,066×666).
SCREENS = {"1024x700": QSize(1016, 660), "1600x1000-at-150%": QSize(1058, 626)}
LONG_NAME = "Quarterly customer feedback export for the northern region, reviewed and deduplicated " * 2


def open_long_named_sheet(qloop, window, tmp_path):
    sheet = tmp_path / (LONG_NAME.strip()[:180] + ".xlsx")
    shutil.copy(EXAMPLES / "reviews.xlsx", sheet)
    assert run(qloop, window.load_pipeline(EXAMPLES / "reviews-offline.batchgrid.json"))
    assert run(qloop, window.load_sheet(sheet))
    return sheet


def test_every_step_kind_a_long_cost_line_long_messages_and_names_fit_a_small_screen(qloop, window, tmp_path):
    sheet = open_long_named_sheet(qloop, window, tmp_path)
    window.run_bar.show_estimate(LONG_COST)
    for kind in REGISTRY:  # each form shown in turn; every step left with a problem for the blocker line
        window.add_step(kind)
        settle(window)
        assert too_big(window, SMALL_SCREEN) == [], kind
    window.show_message(f"Could not open {sheet}: the file is being used by another program "
                        f"({'/'.join(['a-very-long-folder-name'] * 8)}).")
    window.run_bar.show_progress(Progress(total=300_000, selected=300_000, done=123_456, failed=7_890, running=1000,
                                          clock_start=1.0, clock_end=61.0, tokens_in=123_456_789,
                                          tokens_out=98_765_432, cost=1234.5678))
    window.status_text.setText(f"Read {sheet.name}: 240 rows × 9 columns in 0.4 s")
    assert too_big(window, SMALL_SCREEN) == []
    hint = minimum(window)
    assert hint.width() <= SMALL_SCREEN.width() and hint.height() <= SMALL_SCREEN.height(), hint
    window.resize(SMALL_SCREEN)
    settle(window)
    assert window.size() == SMALL_SCREEN  # the window really shrinks to it
    # the form and the inspector are on screen, not pushed off to the right
    for part in (window.form_panel, window.inspector):
        right = part.mapTo(window, part.rect().topRight()).x()
        assert right <= SMALL_SCREEN.width(), type(part).__name__


def test_the_empty_window_fits_a_small_screen(window):
    assert too_big(window, SMALL_SCREEN) == []


def test_a_long_text_is_elided_with_the_whole_text_in_its_tooltip(qloop, window, tmp_path):
    open_long_named_sheet(qloop, window, tmp_path)
    window.run_bar.show_estimate(LONG_COST)
    window.resize(SMALL_SCREEN)
    settle(window)
    label = window.run_bar.estimate
    assert label.text() == f"Projected: {LONG_COST}"  # the text itself is whole
    assert label.width() < label.fontMetrics().horizontalAdvance(label.text())
    assert label.shown_text().endswith("…") and f"Projected: {LONG_COST}" in label.full_tip()


def test_a_saved_size_larger_than_the_screen_comes_back_clamped_to_it(qtbot, app_settings, window):
    window.resize(1800, 1300)  # saved from a bigger monitor (the offscreen screen is 800×800)
    window.move(0, 0)
    app_settings.q.setValue("window/geometry", window.saveGeometry())
    again = MainWindow(app_settings)
    qtbot.addWidget(again)
    again.show()
    settle(again)
    available = again.screen().availableGeometry()
    assert available.contains(again.frameGeometry()), (again.frameGeometry(), available)
    assert again.width() >= available.width() * 0.9  # clamped, not shrunk to nothing


def test_a_first_window_opens_within_the_screen(qtbot, app_settings):
    window = MainWindow(app_settings)  # nothing saved yet
    qtbot.addWidget(window)
    window.show()
    settle(window)
    available = window.screen().availableGeometry()
    assert available.contains(window.frameGeometry()), (window.frameGeometry(), available)


@pytest.mark.parametrize(("scheme", "screen"), [("light", "1024x700"), ("light", "1600x1000-at-150%"),
                                                 ("dark", "1024x700"), ("dark", "1600x1000-at-150%")])
@pytest.mark.usefixtures("app_palette")
def test_pictures_of_a_finished_run_at_small_screens_light_and_dark(qloop, window, tmp_path,
                                                                    scheme, screen):
    style.apply_scheme(scheme)
    size = SCREENS[screen]
    assert run(qloop, window.load_pipeline(EXAMPLES / "reviews-offline.batchgrid.json"))
    assert run(qloop, window.load_sheet(EXAMPLES / "reviews.xlsx"))
    run(qloop, run_to_end(window))
    window.view.setCurrentIndex(window.model.index(window.model.status.index(ev.ERROR), 0))  # the inspector shows it
    window.resize(size)
    settle(window)
    assert too_big(window, size) == []
    assert window.size() == size
    picture = window.grab()
    picture.save(str(tmp_path / f"{scheme}-{screen}.png"))
    assert (picture.width(), picture.height()) == (size.width(), size.height())
    image = picture.toImage()
    colours = {image.pixel(x, y) for x in range(0, image.width(), 23) for y in range(0, image.height(), 19)}
    assert len(colours) > 20  # a real picture, not a blank grab
    for part in (window.form_panel, window.inspector, window.run_bar.retry_button):
        right = part.mapTo(window, part.rect().bottomRight())
        assert right.x() <= size.width() and right.y() <= size.height(), type(part).__name__
    assert unreadable(window) == []
