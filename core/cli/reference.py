"""The step reference in Markdown, generated from the steps' own declarations (README, `batchgrid steps`)."""

from __future__ import annotations

import json

from batchgrid.core.pipeline.file import SETTINGS
from batchgrid.core.steps import step_types_by_group


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
    lines.append("### Run settings (`settings`)\n")
    lines.append("| setting | default | meaning |")
    lines.append("|---|---|---|")
    for p in SETTINGS:
        lines.append(f"| `{p.name}` | {_default(p.default)} | {p.help} |")
    return "\n".join(lines) + "\n"
