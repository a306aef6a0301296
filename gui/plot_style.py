"""Small, quiet pyqtgraph plots for the window's panels (column summaries, the run chart), in the
colours of the widget's palette, light or dark.

pyqtgraph is imported when the first plot is made (about 0.15 s), not when the window starts.
The plots are pictures, not instruments: no panning, zooming or context menu.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtGui import QColor, QFont, QPalette
from PySide6.QtWidgets import QWidget


def is_dark(palette: QPalette) -> bool:
    """A dark palette draws light text on a dark window."""
    return palette.color(QPalette.ColorRole.Window).lightness() < palette.color(QPalette.ColorRole.WindowText).lightness()


def bar_colour(palette: QPalette, picked: bool = False) -> QColor:
    """Bars in the palette's highlight colour; a picked bar stronger than the others."""
    colour = QColor(palette.color(QPalette.ColorRole.Highlight))
    if not picked:
        colour.setAlpha(150 if is_dark(palette) else 120)
    return colour


def small_plot(parent: QWidget | None = None) -> Any:
    """A pyqtgraph PlotWidget that draws and nothing else, styled from `parent`'s palette."""
    import pyqtgraph as pg

    plot = pg.PlotWidget(parent)
    item = plot.getPlotItem()
    item.setMouseEnabled(False, False)
    item.setMenuEnabled(False)
    item.hideButtons()
    item.getViewBox().setDefaultPadding(0.02)
    plot.setMinimumSize(60, 50)
    restyle(plot)
    return plot


def restyle(plot: Any) -> None:
    """Background, axes and ticks in the plot's palette (again when the palette changes)."""
    import pyqtgraph as pg

    palette = plot.palette()
    text = palette.color(QPalette.ColorRole.WindowText)
    plot.setBackground(palette.color(QPalette.ColorRole.Base))
    font = QFont(plot.font())
    font.setPointSizeF(max(7.0, font.pointSizeF() * 0.85))
    axis_pen = pg.mkPen(palette.color(QPalette.ColorRole.Mid) if not is_dark(palette) else QColor("#6b7580"))
    for name in ("left", "bottom"):
        axis = plot.getPlotItem().getAxis(name)
        axis.setPen(axis_pen)
        axis.setTextPen(pg.mkPen(text))
        axis.setTickFont(font)
        axis.setStyle(tickLength=-4)
