"""The window's look, light or dark: a quiet style sheet where red marks problems and colour
marks status.

The scheme follows the system's (Qt's `styleHints().colorScheme()`, and its changes), or
`BATCHGRID_COLOR_SCHEME=dark|light`. Where the platform gives no palette for the scheme (a bare
X server, Fusion), the app sets one. Every colour below comes in a pair with the background it
is read on, one set per scheme, so no text is ever drawn dark on dark or light on light.
"""

from __future__ import annotations

import os

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication

SCHEME_ENV = "BATCHGRID_COLOR_SCHEME"

LIGHT = {
    "window": "#f6f7f9", "surface": "#ffffff", "border": "#dde2e8", "text": "#1f2933",
    "title": "#3b4652", "muted": "#5b6672", "faint": "#8a939c",
    "accent": "#2f6fde", "problem": "#b3261e", "problem_border": "#d93a3a",
    "error_bg": "#fdecec", "error_border": "#f3b8b8", "error_text": "#7a1616",
    "warning_bg": "#fff8e5", "warning_border": "#f0d08a", "warning_text": "#5a4200",
    "ok_bg": "#e9f7ef", "ok_border": "#a8dcbc", "ok_text": "#16492c",
    "preview_bg": "#f3f6fa", "preview_border": "#e1e6ec",
    "card": "#ffffff", "card_selected": "#eef4ff", "card_border": "#d3d9e0",
    "header_bg": "#eef1f5", "grid": "#e6e9ee", "selection_bg": "#cfe0fc", "selection_text": "#1f2933",
    "code_bg": "#f5f7fa",
}

DARK = {
    "window": "#1f2226", "surface": "#292d32", "border": "#3d434b", "text": "#e8eaed",
    "title": "#c9d1d9", "muted": "#aab3bd", "faint": "#8f99a3",
    "accent": "#8ab4f8", "problem": "#ff8a80", "problem_border": "#e57373",
    "error_bg": "#4a2323", "error_border": "#7a3535", "error_text": "#ffdad6",
    "warning_bg": "#433818", "warning_border": "#7a6330", "warning_text": "#ffe8b0",
    "ok_bg": "#1d3a29", "ok_border": "#3f7a55", "ok_text": "#c8f0d6",
    "preview_bg": "#25292e", "preview_border": "#3d434b",
    "card": "#2b3036", "card_selected": "#2c3a51", "card_border": "#454c55",
    "header_bg": "#2c3137", "grid": "#373d44", "selection_bg": "#35507a", "selection_text": "#ffffff",
    "code_bg": "#25292e",
}


def is_dark(palette: QPalette) -> bool:
    """A dark palette draws light text on a dark window."""
    return (palette.color(QPalette.ColorRole.Window).lightness()
            < palette.color(QPalette.ColorRole.WindowText).lightness())


def colors(palette: QPalette | None = None) -> dict[str, str]:
    """The colour set for `palette` (the application's by default)."""
    return DARK if is_dark(palette or QGuiApplication.palette()) else LIGHT


def luminance(color: QColor) -> float:
    """WCAG relative luminance."""
    def channel(c: float) -> float:
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
    return 0.2126 * channel(color.redF()) + 0.7152 * channel(color.greenF()) + 0.0722 * channel(color.blueF())


def contrast(a: QColor, b: QColor) -> float:
    """WCAG contrast ratio, 1 (none) to 21 (black on white); body text needs 4.5."""
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def dark_palette() -> QPalette:
    """A dark palette for Fusion, for platforms that have none."""
    c = DARK
    p = QPalette()
    role, group = QPalette.ColorRole, QPalette.ColorGroup
    for r, value in ((role.Window, c["window"]), (role.WindowText, c["text"]), (role.Base, "#181b1f"),
                     (role.AlternateBase, "#22262b"), (role.Text, c["text"]), (role.Button, "#30353b"),
                     (role.ButtonText, c["text"]), (role.BrightText, "#ffffff"), (role.Highlight, "#3d6fb8"),
                     (role.HighlightedText, "#ffffff"), (role.ToolTipBase, "#30353b"), (role.ToolTipText, c["text"]),
                     (role.PlaceholderText, c["faint"]), (role.Link, c["accent"]), (role.LinkVisited, "#c58af9"),
                     (role.Light, "#454c55"), (role.Midlight, "#3a4047"), (role.Mid, "#2c3137"),
                     (role.Dark, "#15181b"), (role.Shadow, "#000000")):
        p.setColor(r, QColor(value))
    for r in (role.WindowText, role.Text, role.ButtonText):
        p.setColor(group.Disabled, r, QColor("#7d8690"))
    p.setColor(group.Disabled, role.Base, QColor("#202327"))
    return p


def light_palette() -> QPalette:
    return QApplication.style().standardPalette()


def wanted_scheme() -> str:
    """'dark' or 'light': the override in BATCHGRID_COLOR_SCHEME, else the system's scheme, else
    what the current palette looks like."""
    forced = os.environ.get(SCHEME_ENV, "").strip().lower()
    if forced in ("dark", "light"):
        return forced
    scheme = QGuiApplication.styleHints().colorScheme()
    if scheme == Qt.ColorScheme.Dark:
        return "dark"
    if scheme == Qt.ColorScheme.Light:
        return "light"
    return "dark" if is_dark(QGuiApplication.palette()) else "light"


def apply_scheme(scheme: str | None = None) -> str:
    """Give the application a palette of `scheme` (the wanted one by default) unless the platform's
    palette already is one, and restyle every window for it. Returns the scheme."""
    scheme = scheme or wanted_scheme()
    if (scheme == "dark") != is_dark(QGuiApplication.palette()):
        QApplication.setPalette(dark_palette() if scheme == "dark" else light_palette())
    # Qt tells only child widgets of a palette change, and only while its loop runs: tell the windows.
    for window in QApplication.topLevelWidgets():
        restyle = getattr(window, "restyle", None)
        if callable(restyle):
            restyle()
    return scheme


def _scheme_changed(scheme: Qt.ColorScheme) -> None:
    if os.environ.get(SCHEME_ENV, "").strip().lower() not in ("dark", "light"):
        apply_scheme("dark" if scheme == Qt.ColorScheme.Dark else "light")


_following: list[object] = []  # the style hints already followed (connect once per application)


def follow_system_scheme() -> None:
    """Restyle when the system switches between light and dark (unless the environment forces one);
    windows restyle on the palette change this makes."""
    hints = QGuiApplication.styleHints()
    if hints not in _following:
        _following.append(hints)
        hints.colorSchemeChanged.connect(_scheme_changed)


def inspector_css() -> str:
    """The row inspector's HTML style, for the application's scheme (its text is the palette's)."""
    c = colors()
    done, error = ("#6fd69b", "#ff8a80") if c is DARK else ("#147040", "#c62828")
    return f"""
<style>
 h3 {{ margin: 0 0 4px 0; }}
 .status-done {{ color: {done}; }} .status-error {{ color: {error}; }} .status-cancelled {{ color: {c["muted"]}; }}
 .error {{ background: {c["error_bg"]}; color: {c["error_text"]}; padding: 6px; }}
 .key {{ color: {c["muted"]}; padding-right: 10px; vertical-align: top; white-space: nowrap; }}
 .blank {{ color: {c["muted"]}; }}
 .step {{ margin-top: 10px; font-weight: bold; }}
 .meta {{ color: {c["muted"]}; }}
 pre {{ background: {c["code_bg"]}; color: {c["text"]}; padding: 6px; white-space: pre-wrap; }}
</style>
"""


def style_sheet(palette: QPalette | None = None) -> str:
    """The main window's style sheet for `palette`'s scheme: every text colour with its background."""
    return STYLE_TEMPLATE.format_map(colors(palette))


STYLE_TEMPLATE = """
QMainWindow, #panel {{ background: {window}; color: {text}; }}
QToolBar#mainToolbar {{ spacing: 4px; border: none; background: {window}; }}
QToolBar#mainToolbar QToolButton {{ color: {text}; }}
QToolBar#mainToolbar QToolButton:disabled {{ color: {faint}; }}
QStatusBar {{ background: {window}; color: {text}; }}
QStatusBar QLabel {{ color: {text}; }}
QLabel#panelTitle {{ font-weight: 600; color: {title}; padding: 2px 2px 4px 2px; }}
QLabel#help, QLabel#emptyHint {{ color: {muted}; }}
QLabel#emptyHint {{ padding: 18px 30px 6px 30px; }}
QLabel#formTitle {{ font-size: 15px; font-weight: 600; color: {text}; }}
QLabel#fieldProblem {{ color: {problem}; }}
QLabel#blocker {{ color: {problem}; }}
QLabel#runStats {{ color: {title}; }}
QLabel#preview {{ background: {preview_bg}; border: 1px solid {preview_border}; border-radius: 4px;
                 padding: 4px 6px; color: {title}; }}
QLabel#preview[bad="true"] {{ background: {error_bg}; border-color: {error_border}; color: {error_text}; }}
*[problem="true"] {{ border: 1px solid {problem_border}; border-radius: 3px; }}
QListView#pipelineCards {{ background: {window}; border: 1px solid {border}; border-radius: 6px; }}
QWidget#runBar {{ background: {surface}; border: 1px solid {border}; border-radius: 6px; }}
QWidget#runBar QLabel {{ color: {text}; }}
QWidget#runBar QLabel#help {{ color: {muted}; }}
QWidget#runBar QLabel#blocker {{ color: {problem}; }}
QWidget#runBar QLabel#runStats {{ color: {title}; }}
QWidget#runBar QPushButton {{ padding: 3px 8px; }}
QPushButton#runButton {{ font-weight: 600; padding: 3px 12px; }}
QPushButton#primaryButton {{ font-weight: 600; padding: 6px 14px; }}
QPushButton#backLink {{ color: {accent}; background: transparent; text-align: left; padding: 6px 14px 0 14px;
                       border: none; }}
QFrame#messageBar {{ border-radius: 6px; border: 1px solid {error_border}; background: {error_bg}; }}
QFrame#messageBar QLabel {{ color: {error_text}; background: transparent; }}
QFrame#messageBar[kind="info"], QFrame#messageBar[kind="warning"] {{ border-color: {warning_border};
                                                                     background: {warning_bg}; }}
QFrame#messageBar[kind="info"] QLabel, QFrame#messageBar[kind="warning"] QLabel {{ color: {warning_text}; }}
QFrame#messageBar[kind="ok"] {{ border-color: {ok_border}; background: {ok_bg}; }}
QFrame#messageBar[kind="ok"] QLabel {{ color: {ok_text}; }}
QFrame#messageBar QToolButton {{ color: {text}; }}
QWidget#welcome {{ background: {surface}; border: 1px solid {border}; border-radius: 6px; }}
QLabel#welcomeTitle {{ font-size: 20px; font-weight: 600; color: {text}; }}
QLabel#welcomeText {{ color: {muted}; font-size: 13px; }}
QTableView {{ gridline-color: {grid}; selection-background-color: {selection_bg};
             selection-color: {selection_text}; }}
QHeaderView::section {{ background: {header_bg}; border: none; border-right: 1px solid {border};
                       border-bottom: 1px solid {border}; padding: 3px 6px; font-weight: 600; color: {title}; }}
"""
