"""A list of steps drawn as cards: the pipeline itself, or one branch of a parallel step.

Cards can be dragged to reorder, ticked on and off, and a step type dragged from the
palette drops in as a new step. Every change goes through the document (undoable).
"""

from __future__ import annotations

from collections.abc import Callable

from batchgrid.core.steps import Step, conditions
from batchgrid.core.steps.base import all_writes
from PySide6.QtCore import QAbstractListModel, QByteArray, QMimeData, QModelIndex, QRect, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QPainter, QPen
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QListView,
    QMenu,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionButton,
    QStyleOptionViewItem,
)

from .document import PipelineDocument
from .icons import step_icon
from .style import colors

STEP_TYPE_MIME = "application/x-batchgrid-step-type"
STEP_ROW_MIME = "application/x-batchgrid-step-row"

StepRole = Qt.ItemDataRole.UserRole + 1
SummaryRole = Qt.ItemDataRole.UserRole + 2
ProblemRole = Qt.ItemDataRole.UserRole + 3


def summary(step: Step) -> str:
    """One line saying what a step reads and writes, and when it runs ("only when rating < 3")."""
    when = conditions.describe(step.when)
    only = f"  ·  only when {when}" if when else ""
    branches = step.children()
    if branches:
        names = ", ".join(branches) or "none yet"
        return f"{len(branches)} branch{'es' if len(branches) != 1 else ''}: {names}{only}"
    reads = ", ".join(dict.fromkeys(c for _, c in step.column_refs())) or "—"  # the condition's: in `only`
    writes = ", ".join(all_writes(step)) or "—"
    return f"{reads}  →  {writes}{only}"


class StepListModel(QAbstractListModel):
    def __init__(self, doc: PipelineDocument, container: Callable[[], list[Step]], parent=None):
        super().__init__(parent)
        self.doc = doc
        self.container = container  # a getter: the top-level list is replaced when a file opens
        doc.structureChanged.connect(self._structure_changed)
        doc.pipelineReplaced.connect(self._reset)
        doc.stepChanged.connect(self._step_changed)
        doc.problemsChanged.connect(self._all_changed)

    def steps(self) -> list[Step]:
        return self.container()

    def step_at(self, row: int) -> Step | None:
        steps = self.steps()
        return steps[row] if 0 <= row < len(steps) else None

    def row_of(self, step: Step) -> int:
        for i, s in enumerate(self.steps()):
            if s is step:
                return i
        return -1

    # ---- keeping up with the document ----------------------------------------------------
    def _reset(self):
        self.beginResetModel()
        self.endResetModel()

    def _structure_changed(self, container):
        if container is self.steps():
            self._reset()
        else:
            self._all_changed()  # a nested branch changed: cards' summaries may have too

    def _step_changed(self, step, _what):
        row = self.row_of(step)
        if row >= 0:
            self.dataChanged.emit(self.index(row), self.index(row))
        else:
            self._all_changed()

    def _all_changed(self):
        if self.rowCount():
            self.dataChanged.emit(self.index(0), self.index(self.rowCount() - 1))

    # ---- model ---------------------------------------------------------------------------
    def rowCount(self, parent=QModelIndex()):
        return 0 if parent.isValid() else len(self.steps())

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        step = self.step_at(index.row()) if index.isValid() else None
        if step is None:
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return f"{index.row() + 1}. {step.label}"
        if role == Qt.ItemDataRole.DecorationRole:
            return step_icon(type(step))
        if role == Qt.ItemDataRole.CheckStateRole:
            return Qt.CheckState.Checked if step.enabled else Qt.CheckState.Unchecked
        if role == Qt.ItemDataRole.ToolTipRole:
            lines = [type(step).title, type(step).description]
            lines += [p.message for p in self.doc.problems_within(step)]
            return "\n".join(line for line in lines if line)
        if role == StepRole:
            return step
        if role == SummaryRole:
            return summary(step)
        if role == ProblemRole:
            problems = self.doc.problems_within(step)
            if not problems:
                return ""
            first = problems[0]
            where = f"{first.step.param(first.param).title}: " if first.param else ""
            more = f"  (+{len(problems) - 1} more)" if len(problems) > 1 else ""
            return f"{where}{first.message}{more}"
        return None

    def setData(self, index, value, role=Qt.ItemDataRole.EditRole):
        step = self.step_at(index.row()) if index.isValid() else None
        if step is None or role != Qt.ItemDataRole.CheckStateRole:
            return False
        self.doc.set_enabled(step, Qt.CheckState(value) == Qt.CheckState.Checked)
        return True

    def flags(self, index):
        if not index.isValid():
            return Qt.ItemFlag.ItemIsDropEnabled
        return (Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsUserCheckable
                | Qt.ItemFlag.ItemIsDragEnabled)

    # ---- drag and drop -------------------------------------------------------------------
    def supportedDropActions(self):
        return Qt.DropAction.MoveAction | Qt.DropAction.CopyAction

    def mimeTypes(self):
        return [STEP_ROW_MIME, STEP_TYPE_MIME]

    def mimeData(self, indexes):
        data = QMimeData()
        rows = sorted({i.row() for i in indexes})
        if rows:
            data.setData(STEP_ROW_MIME, QByteArray(f"{id(self.steps())}:{rows[0]}".encode()))
        return data

    def canDropMimeData(self, data, action, row, column, parent):
        if data.hasFormat(STEP_TYPE_MIME):
            return True
        if data.hasFormat(STEP_ROW_MIME):
            owner, _, _ = bytes(data.data(STEP_ROW_MIME)).decode().partition(":")
            return owner == str(id(self.steps()))  # reorder within one list only
        return False

    def dropMimeData(self, data, action, row, column, parent):
        if not self.canDropMimeData(data, action, row, column, parent):
            return False
        target = row if row >= 0 else (parent.row() if parent.isValid() else self.rowCount())
        if data.hasFormat(STEP_TYPE_MIME):
            step = self.doc.add_step(bytes(data.data(STEP_TYPE_MIME)).decode(), self.steps(), target)
            self.stepDropped(step)
            return False  # the document already changed; the view must not remove anything
        source = int(bytes(data.data(STEP_ROW_MIME)).decode().partition(":")[2])
        step = self.step_at(source)
        if step is not None:
            self.doc.move_step(step, target - 1 if target > source else target)
            self.stepDropped(step)
        return False

    def stepDropped(self, step: Step) -> None:
        """Overridden by the view to select what was dropped."""


class StepCardDelegate(QStyledItemDelegate):
    HEIGHT = 70
    CHECK = 18

    def sizeHint(self, option, index):
        return QSize(200, self.HEIGHT)

    def _check_rect(self, rect: QRect) -> QRect:
        return QRect(rect.right() - self.CHECK - 12, rect.top() + 12, self.CHECK, self.CHECK)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index):
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        rect = option.rect.adjusted(2, 2, -2, -2)
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        problem = index.data(ProblemRole)
        enabled = index.data(Qt.ItemDataRole.CheckStateRole) == Qt.CheckState.Checked
        c = colors()  # light or dark (the application's scheme), each text colour with its card colour
        border = QColor(c["accent"]) if selected else QColor(c["problem_border"]) if problem else QColor(c["card_border"])
        painter.setPen(QPen(border, 2 if selected else 1))
        painter.setBrush(QColor(c["card_selected"]) if selected else QColor(c["card"]))
        painter.drawRoundedRect(rect, 6, 6)

        index.data(Qt.ItemDataRole.DecorationRole).paint(painter, QRect(rect.left() + 10, rect.top() + 10, 26, 26))
        text_left = rect.left() + 46
        text_width = rect.width() - 46 - self.CHECK - 24
        title_font = QFont(option.font)
        title_font.setBold(True)
        painter.setFont(title_font)
        painter.setPen(QColor(c["text"]) if enabled else QColor(c["faint"]))
        title = index.data(Qt.ItemDataRole.DisplayRole) + ("" if enabled else "  (off)")
        metrics = painter.fontMetrics()
        painter.drawText(QRect(text_left, rect.top() + 7, text_width, 20), Qt.AlignmentFlag.AlignVCenter,
                         metrics.elidedText(title, Qt.TextElideMode.ElideRight, text_width))
        painter.setFont(option.font)
        metrics = painter.fontMetrics()
        painter.setPen(QColor(c["muted"]) if enabled else QColor(c["faint"]))
        painter.drawText(QRect(text_left, rect.top() + 27, text_width, 18), Qt.AlignmentFlag.AlignVCenter,
                         metrics.elidedText(index.data(SummaryRole), Qt.TextElideMode.ElideRight, text_width))
        if problem:
            painter.setPen(QColor(c["problem"]))
            painter.drawText(QRect(text_left, rect.top() + 45, rect.width() - 56, 18), Qt.AlignmentFlag.AlignVCenter,
                             metrics.elidedText("⚠ " + problem, Qt.TextElideMode.ElideRight, rect.width() - 56))

        check = QStyleOptionButton()
        check.rect = self._check_rect(rect)
        check.state = QStyle.StateFlag.State_Enabled | (QStyle.StateFlag.State_On if enabled else QStyle.StateFlag.State_Off)
        style = option.widget.style() if option.widget else QApplication.style()
        style.drawPrimitive(QStyle.PrimitiveElement.PE_IndicatorCheckBox, check, painter, option.widget)
        painter.restore()

    def editorEvent(self, event, model, option, index):
        # A click on the card's check box turns the step on or off.
        if event.type() == event.Type.MouseButtonRelease:
            if self._check_rect(option.rect.adjusted(2, 2, -2, -2)).adjusted(-4, -4, 4, 4).contains(event.position().toPoint()):
                current = index.data(Qt.ItemDataRole.CheckStateRole) == Qt.CheckState.Checked
                model.setData(index, (Qt.CheckState.Unchecked if current else Qt.CheckState.Checked).value,
                              Qt.ItemDataRole.CheckStateRole)
                return True
        return super().editorEvent(event, model, option, index)


class StepListView(QListView):
    """Cards for one list of steps. `stepSelected` follows the current card. A right-click on a
    card offers what the toolbar buttons do, and "Run up to here" (`runUpToRequested`)."""

    stepSelected = Signal(object)   # Step or None
    stepActivated = Signal(object)  # double-click
    runUpToRequested = Signal(int)  # a top-level step's index: run the pipeline up to it

    def __init__(self, model: StepListModel, parent=None):
        super().__init__(parent)
        self.setModel(model)
        model.stepDropped = self.select_step
        self.setItemDelegate(StepCardDelegate(self))
        self.setUniformItemSizes(True)
        self.setSpacing(2)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setDragDropMode(QAbstractItemView.DragDropMode.DragDrop)
        self.setDefaultDropAction(Qt.DropAction.MoveAction)
        self.setDragEnabled(True)
        self.setAcceptDrops(True)
        self.setDropIndicatorShown(True)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.selectionModel().currentChanged.connect(self._current_changed)
        # A reset (a step added, moved or deleted) keeps the same step selected if it still exists.
        # The step is remembered when it is selected: by the time a reset begins the list has
        # already changed, and the selected row may hold another step (the one a move displaced).
        self._selected: Step | None = None
        self._kept: Step | None = None
        model.modelAboutToBeReset.connect(self._remember)
        model.modelReset.connect(self._restore)
        self.doubleClicked.connect(lambda index: self.stepActivated.emit(model.step_at(index.row())))
        self.card_menu: QMenu | None = None  # the last right-click menu (tests trigger its actions)
        # Run up to here needs a window that can run: top-level lists only, where one listens.
        self.can_run_up_to: Callable[[], bool] = lambda: False

    def _current_changed(self, _current, _previous) -> None:
        self._selected = self.current_step()
        self.stepSelected.emit(self._selected)

    def _remember(self):
        self._kept = self._selected

    def _restore(self):
        kept, self._kept = self._kept, None
        self.select_step(kept)
        if self.current_step() is None:
            self.stepSelected.emit(None)

    empty_text = ""

    def paintEvent(self, event) -> None:
        super().paintEvent(event)
        if self.empty_text and self.model().rowCount() == 0:
            painter = QPainter(self.viewport())
            painter.setPen(QColor(colors()["muted"]))
            painter.drawText(self.viewport().rect().adjusted(20, 20, -20, -20),
                             Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self.empty_text)

    def list_model(self) -> StepListModel:
        return self.model()

    def current_step(self) -> Step | None:
        index = self.currentIndex()
        return self.list_model().step_at(index.row()) if index.isValid() else None

    def select_step(self, step: Step | None) -> None:
        row = self.list_model().row_of(step) if step is not None else -1
        if row >= 0:
            self.setCurrentIndex(self.list_model().index(row))
        else:
            self.clearSelection()
            self.setCurrentIndex(QModelIndex())

    # ---- right-click menu ------------------------------------------------------------------
    def contextMenuEvent(self, event) -> None:
        index = self.indexAt(event.pos())
        step = self.list_model().step_at(index.row()) if index.isValid() else None
        if step is None:
            return
        self.select_step(step)
        if self.card_menu is not None:
            self.card_menu.deleteLater()  # one menu at a time, not one more child per right-click
        self.card_menu = self.menu_for(step)
        self.card_menu.popup(event.globalPos())  # never exec(): no nested loop

    def menu_for(self, step: Step) -> QMenu:
        """Duplicate, Disable/Enable, Delete, Move up/down, Run up to here, for `step`'s card."""
        doc, steps = self.list_model().doc, self.list_model().steps()
        row = self.list_model().row_of(step)
        menu = QMenu(self)
        menu.setToolTipsVisible(True)
        menu.addAction("Duplicate", lambda: self.select_step(doc.duplicate_step(step)))
        menu.addAction("Disable" if step.enabled else "Enable", lambda: doc.set_enabled(step, not step.enabled))
        menu.addSeparator()
        up = menu.addAction("Move up", lambda: doc.move_step(step, row - 1))
        up.setEnabled(row > 0)
        down = menu.addAction("Move down", lambda: doc.move_step(step, row + 1))
        down.setEnabled(row < len(steps) - 1)
        menu.addSeparator()
        run = menu.addAction("Run up to here", lambda: self.runUpToRequested.emit(row))
        top_level = steps is doc.pipeline.steps
        run.setEnabled(top_level and self.can_run_up_to())
        run.setToolTip("Run the selected rows (or the preview rows) through the steps up to this one"
                       if top_level else "Open the parallel step's card to run up to it")
        menu.addSeparator()
        menu.addAction("Delete", lambda: doc.remove_step(step))
        return menu
