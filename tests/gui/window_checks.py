"""Checks a user would make by looking at the window: does it fit the screen, can every label be read.

`settle` lets pending layout requests run (a label's new text reaches the window's minimum size
one layout level per request) without running the event loop, so it is safe between qasync scenarios.
"""

from __future__ import annotations

from collections import Counter

import pytest
from batchgrid.gui import style
from PySide6.QtCore import QCoreApplication, QEvent, QSize
from PySide6.QtGui import QColor, QImage, QPalette
from PySide6.QtWidgets import QAbstractButton, QAbstractScrollArea, QApplication, QLabel, QWidget, QWidgetItem

WCAG_TEXT = 4.5  # contrast ratio body text needs (WCAG 2.x, level AA)


@pytest.fixture
def app_palette(qapp, monkeypatch):
    """Put the application's palette back after the test (the QApplication outlives it)."""
    monkeypatch.delenv(style.SCHEME_ENV, raising=False)
    before = QPalette(qapp.palette())
    yield qapp
    QApplication.setPalette(before)


def settle(window: QWidget) -> None:
    for _ in range(12):  # each round lets one more level of nested layouts recompute
        QCoreApplication.sendPostedEvents(None, QEvent.Type.LayoutRequest)
    window.layout().activate()


def _in_scroll_area(widget: QWidget) -> bool:
    """Inside a scroll area's viewport its minimum size scrolls; it does not widen the window."""
    parent = widget.parentWidget()
    while parent is not None:
        if isinstance(parent, QAbstractScrollArea) and parent.viewport().isAncestorOf(widget):
            return True
        parent = parent.parentWidget()
    return False


def minimum(widget: QWidget) -> QSize:
    """The smallest size a layout gives the widget (its explicit minimum, else its hint, by policy)."""
    return QWidgetItem(widget).minimumSize()


def too_big(window: QWidget, screen: QSize) -> list[str]:
    """Every shown widget whose minimum size exceeds `screen`, named with its text."""
    settle(window)
    found = []
    for widget in [window, *window.findChildren(QWidget)]:
        if not widget.isVisibleTo(window) or _in_scroll_area(widget):
            continue
        size = minimum(widget)
        if size.width() > screen.width() or size.height() > screen.height():
            text = widget.text()[:60] if callable(getattr(widget, "text", None)) else ""
            found.append(f"{type(widget).__name__} {widget.objectName()!r} {text!r}: "
                         f"{size.width()}×{size.height()}")
    return found


contrast = style.contrast  # the window's own WCAG contrast (gui/style.py)


def label_like(window: QWidget) -> list[QWidget]:
    """Shown, enabled widgets that carry text: labels, buttons, check boxes, tool buttons."""
    found = []
    for widget in window.findChildren(QWidget):
        if not isinstance(widget, (QLabel, QAbstractButton)) or not widget.isVisible() or not widget.isEnabled():
            continue
        if widget.text().strip() and not widget.visibleRegion().isEmpty():
            found.append(widget)
    return found


def background(image: QImage, widget: QWidget, window: QWidget) -> QColor:
    """The colour most of the widget's visible pixels have, as drawn in the window."""
    box = widget.visibleRegion().boundingRect()
    top_left = widget.mapTo(window, box.topLeft())
    ratio = image.devicePixelRatio()
    counts: Counter[int] = Counter()
    step = max(1, int(min(box.width(), box.height()) * ratio) // 12)
    for y in range(int(top_left.y() * ratio), int((top_left.y() + box.height()) * ratio), step):
        for x in range(int(top_left.x() * ratio), int((top_left.x() + box.width()) * ratio), max(1, step // 2)):
            if 0 <= x < image.width() and 0 <= y < image.height():
                counts[image.pixel(x, y)] += 1
    return QColor.fromRgb(counts.most_common(1)[0][0])


def unreadable(window: QWidget) -> list[str]:
    """Every label-like widget whose text colour (from its palette, which style sheets set) has a
    contrast below 4.5 with the background drawn behind it."""
    settle(window)
    image = window.grab().toImage()
    found = []
    for widget in label_like(window):
        text = widget.palette().color(widget.foregroundRole())
        behind = background(image, widget, window)
        ratio = contrast(text, behind)
        if ratio < WCAG_TEXT:
            found.append(f"{type(widget).__name__} {widget.objectName()!r} {widget.text()[:40]!r}: "
                         f"{text.name()} on {behind.name()} = {ratio:.2f}")
    return found
