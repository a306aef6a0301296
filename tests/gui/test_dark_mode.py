"""Every label reads in light and in dark (issue 12, item 6): the window follows the system's
colour scheme and draws each text colour on the background it was chosen for."""

from __future__ import annotations

import pytest
from batchgrid.gui import style
from conftest import EXAMPLES
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication
from qt_async import run
from window_checks import WCAG_TEXT, app_palette, contrast, unreadable  # noqa: F401  (a fixture)


def system_dark_palette() -> QPalette:
    """What a dark desktop hands a Fusion app: light text on dark windows."""
    p = QPalette()
    for role, value in ((QPalette.ColorRole.Window, "#2d2d2d"), (QPalette.ColorRole.WindowText, "#f0f0f0"),
                        (QPalette.ColorRole.Base, "#1e1e1e"), (QPalette.ColorRole.Text, "#f0f0f0"),
                        (QPalette.ColorRole.Button, "#353535"), (QPalette.ColorRole.ButtonText, "#f0f0f0"),
                        (QPalette.ColorRole.Highlight, "#3d6fb8"), (QPalette.ColorRole.HighlightedText, "#ffffff")):
        p.setColor(role, QColor(value))
    return p


def show_everything(qloop, window) -> None:
    """The example open, a step's form shown, a message in the bar, a warning in the run bar."""
    assert run(qloop, window.load_pipeline(EXAMPLES / "reviews-offline.batchgrid.json"))
    assert run(qloop, window.load_sheet(EXAMPLES / "reviews.xlsx"))
    window.add_step("template")  # left without its template: a problem on the card and in the run bar
    window.show_message("A run of this pipeline on this sheet finished 12 of 240 rows.", "info",
                        [("Resume (228 rows left)", lambda: None)])
    window.status_text.setText("Read reviews.xlsx: 240 rows × 9 columns in 0.4 s")
    window.run_bar.show_estimate("about 1,000 tokens, $0.01 for 240 rows")


@pytest.fixture
def dark_system(request):
    request.getfixturevalue("app_palette")  # put back afterwards
    QApplication.setPalette(system_dark_palette())


@pytest.mark.parametrize("kind", ["error", "warning", "ok"])
def test_under_a_dark_system_palette_every_label_reads(dark_system, qloop, window, kind):
    show_everything(qloop, window)
    window.show_message("Could not open sales.xlsx: the file is locked.", kind)
    assert unreadable(window) == []


@pytest.mark.usefixtures("app_palette")
def test_in_the_light_scheme_every_label_reads(qloop, window):
    style.apply_scheme("light")
    show_everything(qloop, window)
    assert unreadable(window) == []


@pytest.mark.usefixtures("app_palette")
def test_the_window_follows_the_system_switching_to_dark_and_back(qloop, window):
    style.apply_scheme("light")
    style.follow_system_scheme()
    show_everything(qloop, window)
    QApplication.styleHints().colorSchemeChanged.emit(Qt.ColorScheme.Dark)
    assert style.is_dark(QApplication.palette())
    assert unreadable(window) == []
    # the toolbar's line icons are drawn light now, without being set again
    ink = window.act_open_sheet.icon().pixmap(24, 24).toImage()
    drawn = [ink.pixelColor(x, y) for x in range(24) for y in range(24) if ink.pixelColor(x, y).alpha() > 200]
    assert drawn and min(c.lightness() for c in drawn) > 150
    QApplication.styleHints().colorSchemeChanged.emit(Qt.ColorScheme.Light)
    assert not style.is_dark(QApplication.palette())
    assert unreadable(window) == []


@pytest.mark.usefixtures("app_palette")
def test_the_environment_can_force_a_scheme(monkeypatch):
    monkeypatch.setenv(style.SCHEME_ENV, "dark")
    assert style.wanted_scheme() == "dark"
    assert style.apply_scheme() == "dark" and style.is_dark(QApplication.palette())
    monkeypatch.setenv(style.SCHEME_ENV, "light")
    assert style.apply_scheme() == "light" and not style.is_dark(QApplication.palette())


@pytest.mark.parametrize("colours", [style.LIGHT, style.DARK], ids=["light", "dark"])
def test_each_text_colour_reads_on_its_background(colours):
    """The pairs the style sheet, the cards and the inspector draw."""
    pairs = [("text", "window"), ("title", "window"), ("muted", "window"), ("text", "surface"),
             ("muted", "surface"), ("problem", "window"), ("problem", "surface"), ("error_text", "error_bg"),
             ("warning_text", "warning_bg"), ("ok_text", "ok_bg"), ("title", "preview_bg"),
             ("error_text", "error_bg"), ("text", "card"), ("muted", "card"), ("text", "card_selected"),
             ("muted", "card_selected"), ("problem", "card"), ("title", "header_bg"),
             ("selection_text", "selection_bg"), ("accent", "surface"), ("text", "code_bg")]
    low = [(fg, bg, round(contrast(QColor(colours[fg]), QColor(colours[bg])), 2)) for fg, bg in pairs
           if contrast(QColor(colours[fg]), QColor(colours[bg])) < WCAG_TEXT]
    assert low == []
