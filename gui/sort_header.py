"""The results table's column header: sorting as in a spreadsheet.

A click sorts on that column (ascending, then descending, then the sheet's order again);
Shift+click adds the column as a further sort key (or turns its order, or drops it). Each key
shows an arrow pointing the way Excel and LibreOffice draw it, up for ascending, with its
rank when there are several. Qt's own indicator draws Fusion's down arrow for ascending, so
the header paints its sections itself from the model's `sort_keys`.
"""

from __future__ import annotations

from PySide6.QtCore import QRect, Qt, Signal
from PySide6.QtGui import QPainter
from PySide6.QtWidgets import QHeaderView, QStyle, QStyleOptionHeader, QStyleOptionHeaderV2

ASC, DESC = Qt.SortOrder.AscendingOrder, Qt.SortOrder.DescendingOrder
RANKS = "¹²³⁴⁵⁶⁷⁸⁹"


def next_keys(keys: list[tuple[int, Qt.SortOrder]], column: int, add: bool) -> list[tuple[int, Qt.SortOrder]]:
    """The sort keys after a click on `column` (Shift held: `add`). Each click goes
    ascending → descending → not sorted on it."""
    orders = dict(keys)
    if not add:
        if len(keys) == 1 and column in orders:  # the only key: turn it, then drop it
            return [(column, DESC)] if orders[column] == ASC else []
        return [(column, ASC)]
    if column not in orders:
        return [*keys, (column, ASC)]
    if orders[column] == ASC:
        return [(c, DESC if c == column else o) for c, o in keys]
    return [(c, o) for c, o in keys if c != column]


class SortHeader(QHeaderView):
    sortClicked = Signal(int, bool)  # the column clicked, whether Shift was held (add a key)

    def __init__(self, parent=None):
        super().__init__(Qt.Orientation.Horizontal, parent)
        self.keys: list[tuple[int, Qt.SortOrder]] = []  # what to draw: set by the view from the model
        self._shift = False
        self.setSectionsClickable(True)
        self.setSortIndicatorShown(False)  # drawn by paintSection, the conventional way
        self.sectionClicked.connect(lambda section: self.sortClicked.emit(section, self._shift))

    def show_keys(self, keys: list[tuple[int, Qt.SortOrder]]) -> None:
        self.keys = list(keys)
        self.viewport().update()

    def mouseReleaseEvent(self, event) -> None:
        # sectionClicked carries no modifiers: remember Shift for the click it ends
        self._shift = bool(event.modifiers() & Qt.KeyboardModifier.ShiftModifier)
        super().mouseReleaseEvent(event)

    def paintSection(self, painter: QPainter, rect: QRect, logical: int) -> None:
        if not rect.isValid():
            return
        option = QStyleOptionHeaderV2()
        self.initStyleOption(option)
        self.initStyleOptionForIndex(option, logical)
        option.rect = rect
        option.sortIndicator = QStyleOptionHeader.SortIndicator.None_
        for rank, (column, order) in enumerate(self.keys):
            if column == logical:
                # Fusion draws SortUp as an up arrow: ascending, as Excel and LibreOffice show it
                option.sortIndicator = (QStyleOptionHeader.SortIndicator.SortUp if order == ASC
                                        else QStyleOptionHeader.SortIndicator.SortDown)
                if len(self.keys) > 1:
                    option.text = f"{option.text} {RANKS[rank] if rank < len(RANKS) else rank + 1}"
        painter.save()
        painter.setBrushOrigin(rect.topLeft())
        self.style().drawControl(QStyle.ControlElement.CE_Header, option, painter, self)
        painter.restore()
