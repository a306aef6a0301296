"""The pipeline being edited: core's Pipeline, the sheet's columns, undoable edits, problems.

Every edit is a QUndoCommand that changes core objects directly (a step's config, a list
of steps) and then tells the views what changed. The document never decides what a
valid pipeline is: problems come from core (the same checks the CLI makes).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

from batchgrid.core.pipeline.file import Pipeline
from batchgrid.core.steps import REGISTRY, Step, new_step
from batchgrid.core.steps.base import BRANCHES
from batchgrid.core.steps.tree import Problem, StepVisit, iter_steps, step_at
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoCommand, QUndoStack


@dataclass(frozen=True)
class LocatedProblem:
    """One of core's problems, tied to the step object its path names (and the field to show it on)."""

    problem: Problem     # core's: message, step path, parameter
    step: Step | None    # None: about the pipeline as a whole
    param: str = ""      # the step's parameter to show it on; "": the step as a whole

    @property
    def text(self) -> str:
        """Core's own line, e.g. 'steps[2].template: unknown column "reveiw" ...'."""
        return str(self.problem)

    @property
    def message(self) -> str:
        """What a step's card or field says (its place is shown by where it is drawn)."""
        return self.problem.message if self.step is not None else str(self.problem)


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def locate(problem: Problem, steps: list[Step]) -> LocatedProblem:
    """The step a problem's path names, and the declared parameter its `param` starts with
    ("paths.bad" or "fields[1].type" is shown on "paths" or "fields")."""
    step = step_at(steps, problem.path) if problem.path is not None else None
    if step is None:
        return LocatedProblem(problem, None)
    name = _NAME.match(problem.param)
    param = name.group(0) if name and name.group(0) in {p.name for p in step.params} else ""
    return LocatedProblem(problem, step, param)


class PipelineDocument(QObject):
    """Holds the pipeline under edit. Views listen; edits go through `push` (undoable)."""

    structureChanged = Signal(object)     # a list of steps whose membership or order changed
    stepChanged = Signal(object, str)     # a step and the parameter (or "name"/"enabled") edited
    settingsChanged = Signal()
    problemsChanged = Signal()
    pipelineReplaced = Signal()           # a new or opened pipeline: rebuild everything

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.pipeline = Pipeline()
        self.columns: list[str] | None = None  # the open sheet's columns; None before a sheet
        self.problems: list[LocatedProblem] = []
        self.undo_stack = QUndoStack(self)
        self.typing_session = 0  # edits typed in one go (until the field loses focus) undo together

    # ---- whole pipeline ----------------------------------------------------------
    def replace(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.undo_stack.clear()
        self.undo_stack.setClean()
        self.pipelineReplaced.emit()
        self.refresh_problems()

    def set_columns(self, columns: list[str] | None) -> None:
        self.columns = list(columns) if columns is not None else None
        self.pipelineReplaced.emit()  # pickers list other columns now
        self.refresh_problems()

    def refresh_problems(self) -> None:
        """What core says is wrong: the pipeline on its own and, once a sheet is open, its columns."""
        steps = self.pipeline.steps
        self.problems = [locate(p, steps) for p in self.pipeline.problems(self.columns)]
        self.problemsChanged.emit()

    def problems_for(self, step: Step, param: str | None = None) -> list[LocatedProblem]:
        """Problems of `step` (of one parameter if given; '' = the step as a whole)."""
        return [p for p in self.problems if p.step is step and (param is None or p.param == param)]

    def problems_within(self, step: Step) -> list[LocatedProblem]:
        """Problems of a step and of every step nested in it (a card shows them all)."""
        inside = {id(v.step) for v in iter_steps([step])}
        return [p for p in self.problems if p.step is not None and id(p.step) in inside]

    # ---- where things are ----------------------------------------------------------
    def visit_of(self, step: Step) -> StepVisit | None:
        """Where `step` is in the pipeline and what it may read, or None if it is not in it."""
        return next((v for v in iter_steps(self.pipeline.steps, self.columns or ()) if v.step is step), None)

    def container_of(self, step: Step) -> list[Step] | None:
        """The list of steps that holds `step` (the pipeline's, or a branch's)."""
        visit = self.visit_of(step)
        if visit is None:
            return None
        if len(visit.path) == 1:
            return self.pipeline.steps
        owner = step_at(self.pipeline.steps, visit.path[:-2])
        return owner.children()[visit.path[-2]] if owner is not None else None

    def parent_of(self, container: list[Step]) -> tuple[Step | None, str]:
        """The parallel step and branch name owning `container`, or (None, '') at top level."""
        for visit in iter_steps(self.pipeline.steps):
            for name, branch in visit.step.children().items():
                if branch is container:
                    return visit.step, name
        return None, ""

    def columns_before(self, step: Step) -> list[str]:
        """What `step` may read: the sheet's columns plus what enabled earlier steps write
        (inside a branch: what exists before its parallel step, plus the branch's earlier steps)."""
        visit = self.visit_of(step)
        return list(visit.available) if visit is not None else list(self.columns or [])

    def provider_names(self) -> list[str]:
        return list(self.pipeline.providers)

    # ---- edits (each one undoable) ----------------------------------------------------
    def push(self, command: QUndoCommand) -> None:
        self.undo_stack.push(command)

    def add_step(self, step_type: str, container: list[Step] | None = None, index: int | None = None) -> Step:
        container = self.pipeline.steps if container is None else container
        step = new_step(step_type)
        index = len(container) if index is None else max(0, min(index, len(container)))
        self.push(InsertSteps(self, container, index, [step], f"Add {step.title}"))
        return step

    def duplicate_step(self, step: Step) -> Step:
        container = self.container_of(step)
        clone = clone_step(step)
        self.push(InsertSteps(self, container, container.index(step) + 1, [clone], f"Duplicate {step.label}"))
        return clone

    def remove_step(self, step: Step) -> None:
        container = self.container_of(step)
        self.push(RemoveStep(self, container, container.index(step)))

    def move_step(self, step: Step, to_index: int) -> None:
        container = self.container_of(step)
        start = container.index(step)
        to_index = max(0, min(to_index, len(container) - 1))
        if to_index != start:
            self.push(MoveStep(self, container, start, to_index))

    def set_param(self, step: Step, name: str, value: Any, typing: bool = False) -> None:
        """`typing`: the value comes from a text box, so consecutive edits merge into one undo."""
        if step.config.get(name) != value:
            self.push(SetParam(self, step, name, value, typing))

    def set_provider(self, step: Step, name: str, value: str, profile: dict[str, Any] | None,
                     typing: bool = False) -> None:
        """Point a model step at a provider; a profile from the app's settings that the pipeline
        lacks is copied into it (where the key lives, never the key), as one undoable edit."""
        if profile is None or not value or value in self.pipeline.providers:
            self.set_param(step, name, value, typing)
            return
        self.undo_stack.beginMacro(f"Use provider {value}")
        self.push(SetProviders(self, {**self.pipeline.providers, value: dict(profile)}))
        self.set_param(step, name, value)
        self.undo_stack.endMacro()

    def end_typing(self) -> None:
        """The user left a text field: the next keystrokes start a new undo step."""
        self.typing_session += 1

    def set_enabled(self, step: Step, enabled: bool) -> None:
        if step.enabled != enabled:
            self.push(SetAttribute(self, step, "enabled", enabled,
                                   f"{'Enable' if enabled else 'Disable'} {step.label}"))

    def set_name(self, step: Step, name: str) -> None:
        if step.name != name:
            self.push(SetAttribute(self, step, "name", name, f"Rename {step.label}"))

    def set_setting(self, name: str, value: Any) -> None:
        if self.pipeline.settings.get(name) != value:
            self.push(SetSetting(self, name, value))

    # ---- called by the commands -------------------------------------------------------
    def _structure_edited(self, container: list[Step]) -> None:
        self.structureChanged.emit(container)
        self.refresh_problems()

    def _step_edited(self, step: Step, what: str) -> None:
        self.stepChanged.emit(step, what)
        self.refresh_problems()


def clone_step(step: Step) -> Step:
    """A deep copy made the way a file would: its type, name, enabled and configuration."""
    config = {}
    for p in step.params:
        if p.kind == BRANCHES:
            config[p.name] = {b: [clone_step(s) for s in steps] for b, steps in step.children().items()}
        else:
            config[p.name] = copy.deepcopy(step.config.get(p.name))
    return REGISTRY[step.type](config, name=step.name, enabled=step.enabled, when=copy.deepcopy(step.when))


# ---- undo commands ------------------------------------------------------------------------
class InsertSteps(QUndoCommand):
    def __init__(self, doc: PipelineDocument, container: list[Step], index: int, steps: list[Step], text: str):
        super().__init__(text)
        self.doc, self.container, self.index, self.steps = doc, container, index, steps

    def redo(self):
        self.container[self.index:self.index] = self.steps
        self.doc._structure_edited(self.container)

    def undo(self):
        del self.container[self.index:self.index + len(self.steps)]
        self.doc._structure_edited(self.container)


class RemoveStep(QUndoCommand):
    def __init__(self, doc: PipelineDocument, container: list[Step], index: int):
        super().__init__(f"Delete {container[index].label}")
        self.doc, self.container, self.index = doc, container, index
        self.step = container[index]

    def redo(self):
        del self.container[self.index]
        self.doc._structure_edited(self.container)

    def undo(self):
        self.container.insert(self.index, self.step)
        self.doc._structure_edited(self.container)


class MoveStep(QUndoCommand):
    def __init__(self, doc: PipelineDocument, container: list[Step], start: int, end: int):
        super().__init__(f"Move {container[start].label}")
        self.doc, self.container, self.start, self.end = doc, container, start, end

    def _move(self, a: int, b: int):
        step = self.container.pop(a)
        self.container.insert(b, step)
        self.doc._structure_edited(self.container)

    def redo(self):
        self._move(self.start, self.end)

    def undo(self):
        self._move(self.end, self.start)


class SetParam(QUndoCommand):
    """One parameter's new value. Typing in one field merges into one undo step."""

    ID = 1001

    def __init__(self, doc: PipelineDocument, step: Step, name: str, value: Any, typing: bool = False):
        super().__init__(f"Edit {step.label}: {step.param(name).title}")
        self.doc, self.step, self.name, self.typing = doc, step, name, typing
        self.session = doc.typing_session
        self.old = step.config.get(name)
        self.new = value

    def id(self) -> int:
        return self.ID

    def mergeWith(self, other: QUndoCommand) -> bool:
        # Only typing into one field merges; choices and checkboxes stay separate edits.
        if not (isinstance(other, SetParam) and other.step is self.step and other.name == self.name
                and self.typing and other.typing and other.session == self.session):
            return False
        self.new = other.new
        return True

    def redo(self):
        self.step.config[self.name] = self.new
        self.doc._step_edited(self.step, self.name)

    def undo(self):
        self.step.config[self.name] = self.old
        self.doc._step_edited(self.step, self.name)


class SetAttribute(QUndoCommand):
    """A step's `name` or `enabled`."""

    def __init__(self, doc: PipelineDocument, step: Step, attribute: str, value: Any, text: str):
        super().__init__(text)
        self.doc, self.step, self.attribute = doc, step, attribute
        self.old, self.new = getattr(step, attribute), value

    def id(self) -> int:
        return 1002 if self.attribute == "name" else -1

    def mergeWith(self, other: QUndoCommand) -> bool:
        if isinstance(other, SetAttribute) and other.step is self.step and other.attribute == self.attribute == "name":
            self.new = other.new
            return True
        return False

    def _set(self, value):
        setattr(self.step, self.attribute, value)
        if self.attribute == "enabled":  # later steps' pickers and column checks change too
            self.doc.structureChanged.emit(self.doc.container_of(self.step))
        self.doc._step_edited(self.step, self.attribute)

    def redo(self):
        self._set(self.new)

    def undo(self):
        self._set(self.old)


class SetSetting(QUndoCommand):
    def __init__(self, doc: PipelineDocument, name: str, value: Any):
        super().__init__(f"Change {name.replace('_', ' ')}")
        self.doc, self.name = doc, name
        self.old, self.new = doc.pipeline.settings.get(name), value

    def id(self) -> int:
        return 1003

    def mergeWith(self, other: QUndoCommand) -> bool:
        if isinstance(other, SetSetting) and other.name == self.name:
            self.new = other.new
            return True
        return False

    def _set(self, value):
        self.doc.pipeline.settings[self.name] = value
        self.doc.settingsChanged.emit()
        self.doc.refresh_problems()

    def redo(self):
        self._set(self.new)

    def undo(self):
        self._set(self.old)


class SetProviders(QUndoCommand):
    def __init__(self, doc: PipelineDocument, providers: dict[str, dict[str, Any]]):
        super().__init__("Change providers")
        self.doc = doc
        self.old, self.new = doc.pipeline.providers, providers

    def _set(self, value):
        self.doc.pipeline.providers = value
        self.doc.settingsChanged.emit()
        self.doc.refresh_problems()

    def redo(self):
        self._set(self.new)

    def undo(self):
        self._set(self.old)
