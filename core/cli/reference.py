"""The step reference in Markdown, generated from the steps' own declarations (README, `batchgrid steps`)."""

from __future__ import annotations

import json

from batchgrid.core.pipeline.file import SETTINGS
from batchgrid.core.steps import conditions, step_types_by_group


def _default(value) -> str:
    if value in (None, "", [], {}):
        return ""
    return f"`{json.dumps(value, ensure_ascii=False)}`"


def steps_markdown() -> str:
    lines = []
    for group, classes in step_types_by_group().items():
        lines.append(f"### {group}\n")
        for cls in classes:
            flags = []
            if cls.external:
                flags.append("calls out: takes a concurrency slot per call")
            if cls.runs_code:
                flags.append("runs code: needs `--trust`")
            lines.append(f"#### `{cls.type}` — {cls.title}\n")
            lines.append(cls.description + (f" ({'; '.join(flags)})" if flags else "") + "\n")
            lines.append("| parameter | kind | default | meaning |")
            lines.append("|---|---|---|---|")
            for p in cls.params:
                kind = p.kind + (f": {', '.join(p.choices)}" if p.choices else "")
                req = " **required**" if p.required else ""
                lines.append(f"| `{p.name}` | {kind} | {_default(p.default)} | {p.help}{req} |")
            lines.append("")
    lines.append("### Run conditions (`when`, on any step)\n")
    lines.append('Any step can carry `"when": {"all": [rules]}` (every rule holds) or `{"any": [rules]}` (at least '
                 'one does), each rule `{"column": ..., "op": ..., "value": ...}`. Rows that do not meet it skip the '
                 "step: its outputs stay blank and the row inspector says why (`skipped: rating is not < 3`); the "
                 "cost projection counts only the rows that meet it. Numbers compare as numbers when both sides "
                 'read as numbers (`"1,234.50"`, `"$12"`, `"12%"`), dates as dates (`2024-01-31`), other text '
                 "without regard to case.\n")
    lines.append("| op | the rule holds when |")
    lines.append("|---|---|")
    for op in conditions.OPS:
        lines.append(f"| `{op}` | {conditions.OP_HELP[op]} |")
    lines.append("")
    lines.append("### Run settings (`settings`)\n")
    lines.append("| setting | default | meaning |")
    lines.append("|---|---|---|")
    for p in SETTINGS:
        lines.append(f"| `{p.name}` | {_default(p.default)} | {p.help} |")
    return "\n".join(lines) + "\n"
