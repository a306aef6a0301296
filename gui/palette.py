"""The step palette: every registered step type, grouped, searchable; double-click or drag to add."""

from __future__ import annotations

from batchgrid.core.steps import step_types_by_group
from PySide6.QtCore import QByteArray, QEvent, QMimeData, QObject, QRect, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QPainter, QPalette
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QLineEdit,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from .icons import icon, step_icon
from .step_list import STEP_TYPE_MIME
from .style import colors

TypeRole = Qt.ItemDataRole.UserRole + 1
DescriptionRole = Qt.ItemDataRole.UserRole + 2


class PaletteDelegate(QStyledItemDelegate):
    """A step as a title over a grey one-line description; group headings as they are."""

    def sizeHint(self, option, index):
        size = super().sizeHint(option, index)
        if index.data(TypeRole):
            size.setHeight(option.fontMetrics.height() * 2 + 10)
        return size

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index) -> None:
        if not index.data(TypeRole):
            super().paint(painter, option, index)
            return
        painter.save()
        style = option.widget.style() if option.widget else QApplication.style()
        style.drawPrimitive(QStyle.PrimitiveElement.PE_PanelItemViewItem, option, painter, option.widget)
        rect = option.rect
        index.data(Qt.ItemDataRole.DecorationRole).paint(painter, QRect(rect.left() + 4, rect.top() + 6, 22, 22))
        left, width = rect.left() + 34, rect.width() - 38
        line = option.fontMetrics.height()
        painter.setPen(option.palette.color(QPalette.ColorRole.Text))
        painter.drawText(QRect(left, rect.top() + 4, width, line), Qt.AlignmentFlag.AlignVCenter,
                         index.data(Qt.ItemDataRole.DisplayRole))
        small = QFont(option.font)
        small.setPointSizeF(max(6.0, option.font.pointSizeF() * 0.9))
        painter.setFont(small)
        painter.setPen(QColor(colors()["muted"]))  # readable in light and dark
        metrics = painter.fontMetrics()
        painter.drawText(QRect(left, rect.top() + 5 + line, width, line), Qt.AlignmentFlag.AlignVCenter,
                         metrics.elidedText(index.data(DescriptionRole), Qt.TextElideMode.ElideRight, width))
        painter.restore()


class PaletteTree(QTreeWidget):
    """Drags carry the step type, which a step list turns into a new step."""

    def mimeData(self, items):
        data = QMimeData()
        kinds = [i.data(0, TypeRole) for i in items if i.data(0, TypeRole)]
        if kinds:
            data.setData(STEP_TYPE_MIME, QByteArray(kinds[0].encode()))
        return data

    def mimeTypes(self):
        return [STEP_TYPE_MIME]


class StepPalette(QWidget):
    """Typing in the search box highlights the first match; ↑/↓ move through the matches (from the
    search box too) and Enter adds the highlighted step, so a step is added without the mouse."""

    stepChosen = Signal(str)  # a step type, on double-click or Enter

    def __init__(self, parent=None):
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(6)
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search steps…")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(self.filter)
        self.search.installEventFilter(self)  # ↑/↓ and Enter act on the results
        self.tree = PaletteTree()
        self.tree.setHeaderHidden(True)
        self.tree.setItemDelegate(PaletteDelegate(self.tree))
        self.tree.setIconSize(QSize(22, 22))
        self.tree.setRootIsDecorated(False)
        self.tree.setIndentation(8)
        self.tree.setDragEnabled(True)
        self.tree.setDragDropMode(QAbstractItemView.DragDropMode.DragOnly)
        self.tree.itemActivated.connect(self._activated)
        layout.addWidget(self.search)
        layout.addWidget(self.tree, 1)
        self.populate()

    def populate(self) -> None:
        self.tree.clear()
        for group, classes in step_types_by_group().items():
            head = QTreeWidgetItem([group])
            head.setIcon(0, icon(f"group-{group.lower()}"))
            head.setFlags(Qt.ItemFlag.ItemIsEnabled)
            font = head.font(0)
            font.setBold(True)
            head.setFont(0, font)
            self.tree.addTopLevelItem(head)
            for cls in classes:
                item = QTreeWidgetItem([cls.title])
                item.setIcon(0, step_icon(cls))
                item.setData(0, TypeRole, cls.type)
                item.setData(0, DescriptionRole, cls.description)
                item.setToolTip(0, f"{cls.title}: {cls.description}\nDouble-click or drag onto the pipeline to add it.")
                item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsDragEnabled)
                head.addChild(item)
            head.setExpanded(True)

    def items(self) -> list[QTreeWidgetItem]:
        """Every step item (not the group headings)."""
        return [self.tree.topLevelItem(g).child(i) for g in range(self.tree.topLevelItemCount())
                for i in range(self.tree.topLevelItem(g).childCount())]

    def item_for(self, step_type: str) -> QTreeWidgetItem | None:
        return next((i for i in self.items() if i.data(0, TypeRole) == step_type), None)

    def filter(self, text: str) -> None:
        words = text.lower().split()
        for g in range(self.tree.topLevelItemCount()):
            head = self.tree.topLevelItem(g)
            shown = 0
            for i in range(head.childCount()):
                item = head.child(i)
                haystack = f"{head.text(0)} {item.text(0)} {item.data(0, DescriptionRole)} {item.data(0, TypeRole)}".lower()
                hide = not all(w in haystack for w in words)
                item.setHidden(hide)
                shown += not hide
            head.setHidden(shown == 0)
        shown_items = self.shown_items()
        current = self.tree.currentItem()
        if words and shown_items and current not in shown_items:
            self.tree.setCurrentItem(shown_items[0])  # the first match is the one Enter adds
        elif not shown_items:
            self.tree.setCurrentItem(None)

    def shown_items(self) -> list[QTreeWidgetItem]:
        """The step items the search leaves visible, in order."""
        return [i for i in self.items() if not i.isHidden() and not i.parent().isHidden()]

    def highlighted_type(self) -> str:
        item = self.tree.currentItem()
        if item is None or item.isHidden():
            return ""
        return item.data(0, TypeRole) or ""

    def move_highlight(self, delta: int) -> None:
        """The next (or previous) shown step; group headings are skipped."""
        shown = self.shown_items()
        if not shown:
            return
        current = self.tree.currentItem()
        index = shown.index(current) + delta if current in shown else (0 if delta > 0 else len(shown) - 1)
        item = shown[max(0, min(index, len(shown) - 1))]
        self.tree.setCurrentItem(item)
        self.tree.scrollToItem(item)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.search and event.type() == QEvent.Type.KeyPress:
            key = event.key()
            if key in (Qt.Key.Key_Down, Qt.Key.Key_Up):
                self.move_highlight(1 if key == Qt.Key.Key_Down else -1)
                return True
            if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
                step_type = self.highlighted_type()
                if step_type:
                    self.stepChosen.emit(step_type)
                return True
        return super().eventFilter(watched, event)

    def _activated(self, item: QTreeWidgetItem, _column: int) -> None:
        step_type = item.data(0, TypeRole)
        if step_type:
            self.stepChosen.emit(step_type)
