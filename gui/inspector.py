"""The row inspector: what each step of the selected row read, wrote, how long it took, and why
it failed; for model steps, the request sent and the raw reply (never a key).

Each trace names the step that made it by its path in the pipeline that ran. The pipeline may
have been edited since: a trace is shown against a step only if its path still names a step
with the label it ran under; otherwise it is shown under that label alone, never against
another step.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from typing import Any

from batchgrid.core.run import events as ev
from batchgrid.core.steps import Step
from batchgrid.core.steps.base import all_writes
from batchgrid.core.steps.tree import step_at
from batchgrid.core.util import secrets
from batchgrid.core.util.display import display_text
from PySide6.QtGui import QTextOption
from PySide6.QtWidgets import QTextBrowser

from .results_model import status_word
from .style import inspector_css

VALUE_LIMIT = 2000


def step_of(trace: ev.StepTrace, steps: Sequence[Step]) -> Step | None:
    """The step that made `trace`, found by its path; None if the pipeline no longer has a step
    there that ran under the trace's label (a step was inserted, deleted, moved or renamed)."""
    step = step_at(steps, trace.path) if trace.path else None
    if step is None:
        return None
    # The engine labels a step "<n>. <its label>", after its branch's prefix ("2. Parallel › x › ").
    same = trace.step == step.label or trace.step.endswith(f". {step.label}")
    return step if same else None


def shown(value: Any) -> str:
    if value is None or value == "":
        return '<span class="blank">(blank)</span>'
    if isinstance(value, (dict, list)):
        text = json.dumps(value, ensure_ascii=False, indent=2, default=str)
    else:
        text = display_text(value)
    text = secrets.redact_known(text)  # a cell may hold a key a step echoed (core/util/secrets.py)
    if len(text) > VALUE_LIMIT:
        text = text[:VALUE_LIMIT] + f" … ({len(text):,} characters)"
    return html.escape(text).replace("\n", "<br>")


def pairs_table(pairs: Sequence[tuple[str, Any]]) -> str:
    if not pairs:
        return '<p class="blank">—</p>'
    rows = "".join(f'<tr><td class="key">{html.escape(k)}</td><td>{shown(v)}</td></tr>' for k, v in pairs)
    return f"<table cellspacing='0' cellpadding='3'>{rows}</table>"


class RowInspector(QTextBrowser):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.setOpenLinks(False)
        # Long lines (a request's prompt, a reply without spaces) wrap inside the panel.
        self.setLineWrapMode(QTextBrowser.LineWrapMode.WidgetWidth)
        self.setWordWrapMode(QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere)
        self.clear_row()

    def clear_row(self) -> None:
        self.setHtml(inspector_css() + '<p class="blank">Select a row in the results to see what each step did with it.</p>')

    def show_hidden(self, number: int) -> None:
        """The selected row left the table's view (a filter hid it): say so, never show it stale."""
        self.setHtml(inspector_css() + f'<p class="blank">Row {number + 1} is hidden by the filter. '
                     "Clear the filters to see it, or select another row.</p>")

    def show_row(self, number: int, inputs: dict[str, Any], result: ev.RowResult | None, status: str,
                 steps: Sequence[Step], note: str = "") -> None:
        """`number` is 0-based; `steps` are the pipeline's steps as they are now (perhaps edited
        since the run: each trace is matched to its step by path)."""
        parts = [inspector_css(), f'<h3>Row {number + 1} · <span class="status-{status}">{html.escape(status_word(status))}</span></h3>']
        if note:
            parts.append(f'<p class="meta">{html.escape(note)}</p>')
        if result is not None and result.status == ev.ERROR:
            where = f" in step <b>{html.escape(result.failed_step)}</b>" if result.failed_step else ""
            kind = f"{html.escape(result.error_type)}: " if result.error_type else ""
            parts.append(f'<p class="error">Failed{where}:<br>{kind}{shown(secrets.redact(result.error))}</p>')
        if result is not None:
            meta = f"{result.attempts} attempt{'s' if result.attempts != 1 else ''}, {result.latency:.3f} s"
            if result.tokens:
                meta += f", {result.tokens_in:,} tokens in, {result.tokens_out:,} out"
            if result.cost:
                meta += f", cost {result.cost:.6f}"
            if result.cached:
                meta += f", {result.cached} answered from the cache"
            parts.append(f'<p class="meta">{meta}</p>')
        parts.append("<p class='step'>Input</p>" + pairs_table(list(inputs.items())))
        if result is not None:
            values = {**inputs, **result.outputs}
            for trace in result.trace:
                parts.append(self._step_html(trace, step_of(trace, steps), values))
            if not result.trace and result.status != ev.ERROR:
                parts.append("<p class='blank'>Trace not kept for this row: traces are kept for failed rows "
                             "and a sample of done rows.</p>")
        else:
            parts.append("<p class='blank'>This row has not finished in this run.</p>")
        self.setHtml("".join(parts))

    def _step_html(self, trace: ev.StepTrace, step: Step | None, values: dict[str, Any]) -> str:
        attempts = f", {trace.attempts} attempts" if trace.attempts > 1 else ""
        parts = [f"<p class='step'>{html.escape(trace.step)} "
                 f"<span class='meta'>({trace.seconds * 1000:.1f} ms{attempts})</span></p>"]
        if step is not None:
            reads = [(c, values.get(c)) for c in step.reads()]
            writes = [(c, values.get(c)) for c in all_writes(step)]
            parts.append("<p class='meta'>read</p>" + pairs_table(reads))
            if not trace.error:
                parts.append("<p class='meta'>wrote</p>" + pairs_table(writes))
        elif trace.path:
            parts.append("<p class='blank'>This step has changed since the run (or is gone), "
                         "so what it read and wrote is not shown.</p>")
        if trace.error:
            parts.append(f"<p class='error'>{shown(secrets.redact(trace.error))}</p>")
        for key, value in secrets.redact_value(trace.details or {}).items():
            label = {"request": "request sent", "response": "raw reply", "raw": "raw reply"}.get(key, key)
            text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, indent=2, default=str)
            if len(text) > VALUE_LIMIT * 4:
                text = text[:VALUE_LIMIT * 4] + " …"
            parts.append(f"<p class='meta'>{html.escape(label)}</p><pre>{html.escape(text)}</pre>")
        return "".join(parts)
