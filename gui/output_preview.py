"""The step form's "Writes on row 3" line: what the step writes on the selected row.

Cheap steps (text and data steps) are run on that row, with the cheap steps before them, in a
worker thread (core/pipeline/preview.py); a model or web step says it runs when you press Run
(or Run up to here) instead of calling anything. Worked out again, a moment after the last edit,
when any step or the selected row changes."""

from __future__ import annotations

from typing import Any

from batchgrid.core.pipeline import preview
from batchgrid.core.steps import Step
from batchgrid.core.util.display import display_text
from PySide6.QtCore import QTimer, Signal

from . import background
from .document import PipelineDocument
from .fields import PreviewLabel

DELAY_MS = 150     # edits come in bursts: work the preview out once they pause
VALUE_CHARS = 300  # of each value shown


def describe(result: preview.OutputPreview, label: str, sheet_columns=()) -> str:
    """The preview's text; an output that writes over one of `sheet_columns` says so."""
    where = f"on {label}" if label else "on the row"
    if result.outputs is None:
        note = result.note[:1].lower() + result.note[1:]
        return f"Writes {where}: {note}"
    if not result.outputs:
        return f"Writes nothing {where}."
    lines = []
    for name, value in result.outputs.items():
        text = display_text(value)
        over = " (over the sheet's column)" if name in sheet_columns else ""
        lines.append(f"{name}{over}: {text[:VALUE_CHARS] + ' …' if len(text) > VALUE_CHARS else text}")
    return f"Writes {where}:\n" + "\n".join(lines)


class OutputPreview(PreviewLabel):
    """What the step writes on the preview row; `shown` says each new text (tests wait for it)."""

    shown = Signal(str)

    def __init__(self, doc: PipelineDocument, step: Step):
        super().__init__()
        self.doc, self.step = doc, step
        self.row: dict[str, Any] | None = None
        self.label = ""
        self._generation = 0
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DELAY_MS)
        self._timer.timeout.connect(self.refresh)
        # Bound methods, not lambdas: Qt drops them with this label when the form is rebuilt.
        doc.stepChanged.connect(self._step_changed)  # an earlier step's edit counts too
        doc.structureChanged.connect(self._structure_changed)
        self.setText("")
        self.hide()

    def set_row(self, row: dict[str, Any] | None, label: str) -> None:
        self.row, self.label = (dict(row) if row is not None else None), label
        self.schedule()

    def schedule(self) -> None:
        self._timer.start()

    def _step_changed(self, _step, _what) -> None:
        self.schedule()

    def _structure_changed(self, _container) -> None:
        self.schedule()

    def refresh(self) -> None:
        self._generation += 1
        plan = preview.plan(self.doc.pipeline.steps, self.step)
        if plan is None or self.row is None:
            self.hide()
            return
        generation, row = self._generation, self.row
        if plan.target is None or not plan.enabled:  # a model or web step, or one turned off: nothing to run
            self._done(generation, plan.outputs(row), None)
            return
        if self.doc.problems_within(self.step):  # a missing column would read blank: say why instead
            self._done(generation, preview.OutputPreview(None, "Nothing until the problem shown here is fixed."), None)
            return
        background.submit(self, lambda: plan.outputs(row), lambda result, error: self._done(generation, result, error))

    def _done(self, generation: int, result, error) -> None:
        if generation != self._generation:
            return  # a newer edit asked again
        if error is not None:
            result = preview.OutputPreview(None, f"Fails on this row: {error}")
        text = describe(result, self.label, self.doc.columns or ())
        self.setProperty("bad", result.outputs is None and "fails" in result.note.lower())
        self.setText(text)
        self.style().unpolish(self)
        self.style().polish(self)
        self.show()
        self.shown.emit(text)
