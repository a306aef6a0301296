"""Icons from resources/icons (simple SVGs), cached; steps fall back to their group's icon.
The line icons' grey ink follows the palette: light on a dark window."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import batchgrid.resources as _resources
from PySide6.QtCore import QByteArray, QRect, QRectF, QSize, Qt
from PySide6.QtGui import QGuiApplication, QIcon, QIconEngine, QPainter, QPixmap
from PySide6.QtSvg import QSvgRenderer

from .style import is_dark

ICON_DIR = Path(_resources.__file__).resolve().parent / "icons"
INK = "#3b4652"  # the line icons' grey: drawn in the palette's scheme, dimmed when disabled
INKS = {(False, False): INK, (False, True): "#a9b1ba", (True, False): "#c9d1d9", (True, True): "#626b75"}


@cache
def icon(name: str) -> QIcon:
    """The icon called `name` (file name without .svg); an empty icon if there is none."""
    path = ICON_DIR / f"{name}.svg"
    if not path.is_file():
        return QIcon()
    svg = path.read_text(encoding="utf-8")
    return QIcon(InkIconEngine(svg)) if INK in svg else QIcon(str(path))


@cache
def _renderer(svg: str, ink: str) -> QSvgRenderer:
    return QSvgRenderer(QByteArray(svg.replace(INK, ink).encode()))


class InkIconEngine(QIconEngine):
    """A line icon whose ink follows the palette at each paint: light on a dark window, so a
    switch between light and dark needs no icon set again."""

    def __init__(self, svg: str):
        super().__init__()
        self.svg = svg

    def paint(self, painter: QPainter, rect: QRect, mode: QIcon.Mode, state: QIcon.State) -> None:
        ink = INKS[(is_dark(QGuiApplication.palette()), mode == QIcon.Mode.Disabled)]
        _renderer(self.svg, ink).render(painter, QRectF(rect))

    def pixmap(self, size: QSize, mode: QIcon.Mode, state: QIcon.State) -> QPixmap:
        pixmap = QPixmap(size)
        pixmap.fill(Qt.GlobalColor.transparent)
        painter = QPainter(pixmap)
        self.paint(painter, QRect(0, 0, size.width(), size.height()), mode, state)
        painter.end()
        return pixmap

    def clone(self) -> QIconEngine:
        return InkIconEngine(self.svg)


def step_icon(step_class) -> QIcon:
    """A step's own icon if it names one that exists, else its palette group's."""
    own = getattr(step_class, "icon", "")
    if own and (ICON_DIR / f"{own}.svg").is_file():
        return icon(own)
    return icon(f"group-{step_class.group.lower()}")


def status_icon(status: str) -> QIcon:
    """A row status's icon: "not run" is status-not-run.svg (a dashed ring in the palette's ink)."""
    return icon(f"status-{status.replace(' ', '-')}")
