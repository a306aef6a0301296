"""The selected step's form, generated from its declared parameters, with problems inline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from batchgrid.core.pipeline.file import SETTINGS
from batchgrid.core.run import cluster as dask_run
from batchgrid.core.steps import Step, step_types_by_group
from batchgrid.core.steps import base as b
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QMenu,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from .condition_editor import ConditionEditor
from .document import PipelineDocument
from .fields import Field, FormContext, OutputField, make_field
from .icons import icon, step_icon
from .list_editors import field_for
from .output_preview import OutputPreview
from .settings import AppSettings
from .step_list import StepListModel, StepListView


def mark_problem(widget: QWidget, bad: bool) -> None:
    """Red outline on a field with a problem (the style sheet draws it)."""
    if bool(widget.property("problem")) != bad:
        widget.setProperty("problem", bad)
        widget.style().unpolish(widget)
        widget.style().polish(widget)


def caption(text: str, name: str) -> QLabel:
    label = QLabel(text)
    label.setObjectName(name)
    label.setWordWrap(True)
    label.setTextFormat(Qt.TextFormat.PlainText)
    return label


def add_step_menu(parent: QWidget, on_choose) -> QMenu:
    """Every step type, grouped as in the palette."""
    menu = QMenu(parent)
    for group, classes in step_types_by_group().items():
        sub = menu.addMenu(icon(f"group-{group.lower()}"), group)
        for cls in classes:
            sub.addAction(step_icon(cls), cls.title, lambda t=cls.type: on_choose(t))
    return menu


class BranchesEditor(QWidget):
    """A parallel step's branches: a list of branch names, and the selected branch's steps."""

    openStep = Signal(object)

    def __init__(self, doc: PipelineDocument, step: Step, param: b.Param, parent=None):
        super().__init__(parent)
        self.doc, self.step, self.param = doc, step, param
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)

        top = QHBoxLayout()
        self.names = QListWidget()
        self.names.setFixedHeight(92)
        self.names.currentRowChanged.connect(self._branch_chosen)
        buttons = QVBoxLayout()
        for text, slot in (("Add branch", self.add_branch), ("Rename…", self.rename_branch),
                           ("Remove", self.remove_branch)):
            button = QPushButton(text)
            button.clicked.connect(slot)
            buttons.addWidget(button)
        buttons.addStretch(1)
        top.addWidget(self.names, 1)
        top.addLayout(buttons)
        layout.addLayout(top)

        self.model = StepListModel(doc, self._branch_steps, self)
        self.cards = StepListView(self.model)
        self.cards.setMinimumHeight(160)
        self.cards.stepActivated.connect(self.openStep)
        bar = QHBoxLayout()
        self.add_button = QToolButton()
        self.add_button.setText("Add step")
        self.add_button.setIcon(icon("add"))
        self.add_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.add_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.add_button.setMenu(add_step_menu(self, self.add_step))
        edit = QPushButton("Edit step")
        edit.clicked.connect(lambda: self.cards.current_step() and self.openStep.emit(self.cards.current_step()))
        delete = QToolButton()
        delete.setIcon(icon("delete"))
        delete.setToolTip("Delete the selected step from this branch")
        delete.clicked.connect(lambda: self.cards.current_step() and doc.remove_step(self.cards.current_step()))
        bar.addWidget(self.add_button)
        bar.addWidget(edit)
        bar.addStretch(1)
        bar.addWidget(delete)
        layout.addWidget(caption("Steps of the selected branch (double-click to edit):", "help"))
        layout.addWidget(self.cards)
        layout.addLayout(bar)
        self.refresh()

    def branches(self) -> dict[str, list[Step]]:
        return self.step.config[self.param.name]

    def current_branch(self) -> str:
        item = self.names.currentItem()
        return item.text() if item else ""

    def _branch_steps(self) -> list[Step]:
        return self.branches().get(self.current_branch(), [])

    def refresh(self) -> None:
        keep = self.current_branch()
        names = list(self.branches())
        self.names.blockSignals(True)
        self.names.clear()
        self.names.addItems(names)
        row = names.index(keep) if keep in names else (0 if names else -1)
        self.names.setCurrentRow(row)
        self.names.blockSignals(False)
        self._branch_chosen(row)

    def _branch_chosen(self, _row: int) -> None:
        self.model._reset()
        self.add_button.setEnabled(bool(self.current_branch()))

    def _set(self, branches: dict[str, list[Step]]) -> None:
        self.doc.set_param(self.step, self.param.name, branches)

    def add_branch(self) -> None:
        existing = self.branches()
        n = len(existing) + 1
        while f"branch_{n}" in existing:
            n += 1
        self._set({**existing, f"branch_{n}": []})
        self.names.setCurrentRow(self.names.count() - 1)

    def rename_branch(self) -> None:
        old = self.current_branch()
        if not old:
            return
        new, ok = QInputDialog.getText(self, "Rename branch", "Branch name:", text=old)
        new = new.strip()
        if ok and new and new != old and new not in self.branches():
            self._set({(new if k == old else k): v for k, v in self.branches().items()})
            self.names.setCurrentRow(list(self.branches()).index(new))

    def remove_branch(self) -> None:
        old = self.current_branch()
        if old:
            self._set({k: v for k, v in self.branches().items() if k != old})

    def add_step(self, step_type: str) -> None:
        branch = self.current_branch()
        if branch:
            step = self.doc.add_step(step_type, self.branches()[branch])
            self.cards.select_step(step)


class StepForm(QWidget):
    """The form of one step: its name, on/off, and one field per declared parameter."""

    openStep = Signal(object)

    def __init__(self, doc: PipelineDocument, step: Step, ctx: FormContext, parent=None):
        super().__init__(parent)
        self.doc, self.step, self.ctx = doc, step, ctx
        cls = type(step)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(14, 12, 14, 12)
        layout.setSpacing(8)

        head = QHBoxLayout()
        logo = QLabel()
        logo.setPixmap(step_icon(cls).pixmap(32, 32))
        head.addWidget(logo, 0, Qt.AlignmentFlag.AlignTop)
        titles = QVBoxLayout()
        title = caption(cls.title, "formTitle")
        titles.addWidget(title)
        titles.addWidget(caption(cls.description, "help"))
        head.addLayout(titles, 1)
        layout.addLayout(head)

        self.step_problems = caption("", "fieldProblem")
        self.step_problems.hide()
        layout.addWidget(self.step_problems)
        self.output_preview = OutputPreview(doc, step)  # what it writes on the selected row
        layout.addWidget(self.output_preview)

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignTop)
        form.setHorizontalSpacing(12)
        form.setVerticalSpacing(10)
        self.name_edit = QLineEdit(step.name)
        self.name_edit.setPlaceholderText(cls.title)
        self.name_edit.textEdited.connect(lambda text: doc.set_name(step, text))
        self.name_edit.editingFinished.connect(doc.end_typing)
        self.enabled_check = QCheckBox("Run this step")
        self.enabled_check.setChecked(step.enabled)
        self.enabled_check.toggled.connect(lambda on: doc.set_enabled(step, on))
        form.addRow("Label", self.name_edit)
        form.addRow("", self.enabled_check)

        self.fields: dict[str, Field] = {}
        self.branches: BranchesEditor | None = None
        self.problem_labels: dict[str, QLabel] = {}
        for param in cls.params:
            form.addRow(self._label(param), self._row(param))
        layout.addLayout(form)
        self.condition = ConditionEditor(doc, step, ctx.columns)  # "Run only when…" (the step's `when`)
        layout.addWidget(self.condition)
        self.condition_problems = caption("", "fieldProblem")
        self.condition_problems.hide()
        layout.addWidget(self.condition_problems)
        layout.addStretch(1)

        doc.stepChanged.connect(self._step_changed)
        doc.problemsChanged.connect(self.show_problems)
        doc.structureChanged.connect(self._structure_changed)
        self.show_problems()
        self.output_preview.set_row(ctx.preview_row, ctx.preview_label)

    def _label(self, param: b.Param) -> QLabel:
        text = param.title + (" *" if param.required else "")
        label = QLabel("" if param.kind == b.BOOL else text)
        label.setToolTip(param.help)
        return label

    def _row(self, param: b.Param) -> QWidget:
        box = QWidget()
        column = QVBoxLayout(box)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(3)
        if param.kind == b.BRANCHES:
            self.branches = BranchesEditor(self.doc, self.step, param)
            self.branches.openStep.connect(self.openStep)
            column.addWidget(self.branches)
        else:
            field = field_for(self.step, param, self.ctx) or make_field(param, self.ctx,
                                                                         self.step.default_output(param.name))
            field.setObjectName(f"field_{param.name}")
            field.set_value(self.step.config.get(param.name))
            field.edited.connect(lambda value, typing, p=param: self._edited(p, value, typing))
            field.typingFinished.connect(self.doc.end_typing)
            field.undoRequested.connect(self._undo)
            field.watch_focus()
            field.setToolTip(param.help)
            self.fields[param.name] = field
            column.addWidget(field)
        if param.help and param.kind != b.BRANCHES:
            column.addWidget(caption(param.help, "help"))
        problem = caption("", "fieldProblem")
        problem.hide()
        self.problem_labels[param.name] = problem
        column.addWidget(problem)
        return box

    def _undo(self, redo: bool) -> None:
        """Ctrl+Z in a text box: the pipeline's last edit (that box's last word, as it was typed)."""
        self.doc.end_typing()
        if redo:
            self.doc.undo_stack.redo()
        else:
            self.doc.undo_stack.undo()

    def _edited(self, param: b.Param, value: Any, typing: bool) -> None:
        if param.kind == b.PROVIDER:
            self.doc.set_provider(self.step, param.name, value, self.ctx.profile_lookup(value), typing)
        else:
            self.doc.set_param(self.step, param.name, value, typing)

    # ---- following the document ---------------------------------------------------------
    def _step_changed(self, step: Step, what: str) -> None:
        if step is not self.step:
            return
        if what in self.fields:
            self.fields[what].set_value(step.config.get(what))
        elif self.branches is not None and what == self.branches.param.name:
            self.branches.refresh()
        elif what == "name" and self.name_edit.text() != step.name:
            self.name_edit.setText(step.name)
        elif what == "when":
            self.condition.refresh()
        elif what == "enabled":
            self.enabled_check.blockSignals(True)
            self.enabled_check.setChecked(step.enabled)
            self.enabled_check.blockSignals(False)
        for field in self.fields.values():  # a lookup's pickers follow its file and sheet
            field.step_changed(what)
        for name, field in self.fields.items():  # "blank: review_trimmed" follows the source
            if isinstance(field, OutputField):
                default = step.default_output(name)
                field.edit.setPlaceholderText(f"blank: {default}" if default else "name of the new column")

    def _structure_changed(self, _container) -> None:
        if self.branches is not None:
            self.branches.model._all_changed()

    def show_problems(self) -> None:
        for name, label in self.problem_labels.items():
            problems = self.doc.problems_for(self.step, name)
            label.setText("\n".join(p.message for p in problems))
            label.setVisible(bool(problems))
            if name in self.fields:
                mark_problem(self.fields[name].main_widget(), bool(problems))
        whole = [p for p in self.doc.problems_for(self.step, "") if p.problem.param != "when"]
        self.step_problems.setText("\n".join(p.message for p in whole))
        self.step_problems.setVisible(bool(whole))
        when = [p for p in self.doc.problems_for(self.step, "") if p.problem.param == "when"]  # under its editor
        self.condition_problems.setText("\n".join(p.message for p in when))
        self.condition_problems.setVisible(bool(when))

    def set_preview_row(self, row: dict[str, Any] | None, label: str) -> None:
        self.ctx.preview_row, self.ctx.preview_label = row, label
        for field in self.fields.values():
            field.set_preview_row(row, label)
        self.output_preview.set_row(row, label)


CLUSTER_PLACEHOLDER = "local:2 or tcp://scheduler:8786"
CLUSTER_HELP = ("The rows go to the cluster's workers in partitions; max concurrency and the providers' rate limits "
                "are shared by all the workers; each worker reads the keys from its own environment or keyring. "
                "local:N starts N worker processes on this computer for each run.")


class RunOnField(QWidget):
    """Run on: this computer or a Dask cluster at an address, checked as it is typed. This computer's
    choice, kept in the app's settings (never in the pipeline file, which other people open)."""

    def __init__(self, settings: AppSettings, parent=None):
        super().__init__(parent)
        self.settings = settings
        column = QVBoxLayout(self)
        column.setContentsMargins(0, 0, 0, 0)
        line = QHBoxLayout()
        self.choice = QComboBox()
        self.choice.addItems(["This computer", "Dask cluster"])
        self.choice.setCurrentIndex(1 if settings.runs_on_cluster() else 0)
        self.address = QLineEdit(settings.cluster_address())
        self.address.setPlaceholderText(CLUSTER_PLACEHOLDER)
        self.address.setToolTip("A Dask scheduler's address (tcp://host:8786, tls://host:8786 or host:8786), "
                                "or local:N for N worker processes here")
        line.addWidget(self.choice)
        line.addWidget(self.address, 1)
        column.addLayout(line)
        self.problem = caption("", "fieldProblem")
        column.addWidget(self.problem)
        install = "" if dask_run.installed() else f"{dask_run.INSTALL}, then start Batchgrid again. "
        self.help = caption(install + CLUSTER_HELP, "help")
        column.addWidget(self.help)
        self.choice.currentIndexChanged.connect(self._changed)
        self.address.textChanged.connect(self._changed)
        self._show()

    def on_cluster(self) -> bool:
        return self.choice.currentIndex() == 1

    def _changed(self) -> None:
        self.settings.set_run_on(self.on_cluster(), self.address.text())
        self._show()

    def _show(self) -> None:
        on_cluster = self.on_cluster()
        problem = dask_run.address_problem(self.address.text()) if on_cluster else ""
        self.problem.setText(problem)
        self.problem.setVisible(bool(problem))
        mark_problem(self.address, bool(problem))
        self.address.setVisible(on_cluster)
        self.help.setVisible(on_cluster)
        # The form keeps a row's height for its width until told: the caption shown needs its room.
        self.layout().invalidate()
        self.updateGeometry()


class RunSettingsForm(QWidget):
    """The pipeline's run settings (retries, cache, budget), from core's declarations; with the app's
    settings, where runs go first (Run on: this computer's choice, not the pipeline's)."""

    def __init__(self, doc: PipelineDocument, settings: AppSettings | None = None, parent=None):
        super().__init__(parent)
        self.doc = doc
        layout = QVBoxLayout(self)
        layout.setContentsMargins(14, 12, 14, 12)
        layout.addWidget(caption("Run settings", "formTitle"))
        layout.addWidget(caption("Saved with the pipeline" + (" (Run on stays on this computer)" if settings else "")
                                 + ". Rows at once is set in the run bar.", "help"))
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignTop)
        self.run_on = RunOnField(settings) if settings is not None else None
        if self.run_on is not None:
            form.addRow("Run on", self.run_on)
        self.fields: dict[str, Field] = {}
        for param in SETTINGS:
            if param.name == "max_concurrency":
                continue
            field = make_field(param, FormContext())
            field.set_value(doc.pipeline.settings.get(param.name))
            field.edited.connect(lambda value, _typing, name=param.name: doc.set_setting(name, value))
            field.setToolTip(param.help)
            self.fields[param.name] = field
            box = QWidget()
            column = QVBoxLayout(box)
            column.setContentsMargins(0, 0, 0, 0)
            column.addWidget(field)
            column.addWidget(caption(param.help, "help"))
            form.addRow("" if param.kind == b.BOOL else param.title, box)
        layout.addLayout(form)
        layout.addStretch(1)
        doc.settingsChanged.connect(self._changed)

    def _changed(self) -> None:
        for name, field in self.fields.items():
            field.set_value(self.doc.pipeline.settings.get(name))


class StepFormPanel(QScrollArea):
    """Shows the form of the selected step (or of a step inside a branch, with a way back)."""

    def __init__(self, doc: PipelineDocument, parent=None):
        super().__init__(parent)
        self.doc = doc
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.step: Step | None = None
        self.form: StepForm | None = None
        self.preview_row: dict[str, Any] | None = None
        self.preview_label = ""
        self.app_providers: list[str] = []   # profile names from the app's settings
        self.profile_lookup = lambda name: None
        self.settings_form: RunSettingsForm | None = None
        self._shown: Step | None = None  # the step whose form is shown (None: the run settings)
        self.app_settings: AppSettings | None = None  # the window's: its Run on
        doc.pipelineReplaced.connect(self.rebuild)
        doc.structureChanged.connect(self._structure_changed)
        self.show_step(None)

    def show_step(self, step: Step | None) -> None:
        if step is not None and self.doc.container_of(step) is None:
            step = None  # deleted
        self.step = step
        self.rebuild()

    def rebuild(self) -> None:
        step = self.step if self.step is not None and self.doc.container_of(self.step) is not None else None
        self.step = step
        old = self.takeWidget()
        if old is not None:
            # Keep it owned by Qt (a parent) until deleteLater removes it on this thread: a Python
            # garbage collection in a worker thread must never be the one to delete a widget.
            old.hide()
            old.setParent(self)
            old.deleteLater()
        self.form = None
        if step is None:
            holder = QWidget()
            column = QVBoxLayout(holder)
            empty = caption("Select a step to edit it here. Add steps from the palette on the left: "
                            "double-click one, or drag it onto the pipeline.", "emptyHint")
            empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
            column.addWidget(empty)
            self.settings_form = RunSettingsForm(self.doc, self.app_settings)
            column.addWidget(self.settings_form, 1)
            self._show_widget(holder, step)
            return
        holder = QWidget()
        column = QVBoxLayout(holder)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        owner, branch = self.doc.parent_of(self.doc.container_of(step))
        if owner is not None:
            back = QPushButton(f"‹ Back to {owner.label}  (branch “{branch}”)")
            back.setObjectName("backLink")
            back.setFlat(True)
            back.clicked.connect(lambda: self.show_step(owner))
            column.addWidget(back, 0, Qt.AlignmentFlag.AlignLeft)
        self.form = StepForm(self.doc, step, self._context(step))
        self.form.openStep.connect(self.show_step)
        self.form.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Minimum)
        column.addWidget(self.form)
        self._show_widget(holder, step)

    def lay_out_now(self) -> None:
        """Lay the shown form out now (its widgets' places are needed before the next paint)."""
        holder = self.widget()
        if holder is not None and holder.layout() is not None:
            holder.layout().activate()

    def _show_widget(self, holder: QWidget, step: Step | None) -> None:
        """Show the new form; another step's (or the run settings) from its top, the same step's
        where the user was."""
        self.setWidget(holder)
        if step is not self._shown:
            self.verticalScrollBar().setValue(0)
        self._shown = step

    def _context(self, step: Step) -> FormContext:
        path = self.doc.pipeline.path
        providers = list(dict.fromkeys(self.doc.provider_names() + self.app_providers))
        return FormContext(columns=self.doc.columns_before(step), preview_row=self.preview_row,
                           preview_label=self.preview_label, providers=providers,
                           profile_lookup=self.profile_lookup, base_dir=Path(path).parent if path else None)

    def _structure_changed(self, _container) -> None:
        # Earlier steps changed: the column pickers list other columns now.
        if self.step is not None:
            if self.form is not None and self.form.ctx.columns == self.doc.columns_before(self.step) \
                    and self.doc.container_of(self.step) is not None:
                return
            self.rebuild()

    def set_preview_row(self, row: dict[str, Any] | None, label: str) -> None:
        self.preview_row, self.preview_label = row, label
        if self.form is not None:
            self.form.set_preview_row(row, label)
