"""Text steps: cheap, in-process, one value in, one value out."""

from __future__ import annotations

from typing import Any, Mapping

from .. import template as tpl
from .base import OUTPUT, SOURCE, TEMPLATE, Param, Step, register

SOURCE_HELP = "A column name, or a template such as \"{title} {body}\"."


def source_param(help: str = SOURCE_HELP) -> Param:
    return Param("source", SOURCE, "", help, required=True, label="Read from")


def output_param(help: str = "Name of the new column.") -> Param:
    return Param("output", OUTPUT, "", help, label="Write to")


class TextStep(Step):
    """A step that reads `source` and writes one `output`; subclasses define `transform`."""

    suffix = "result"

    def default_output(self, param_name: str) -> str:
        source = self.config.get("source") or ""
        base = source if source and not ("{" in source) else "text"
        return f"{base}_{self.suffix}"

    def transform(self, text: str) -> Any:
        raise NotImplementedError

    def apply(self, row: Mapping[str, Any]) -> dict[str, Any]:
        return {self.output_name(): self.transform(self.source_text(row))}


@register
class Trim(TextStep):
    type = "trim"
    title = "Trim whitespace"
    group = "Text"
    description = "Remove spaces at both ends and collapse runs of spaces inside."
    suffix = "trimmed"
    params = (
        source_param(),
        Param("collapse_inner", "bool", True, "Also turn runs of spaces, tabs and line breaks inside into one space."),
        output_param(),
    )

    def transform(self, text: str) -> str:
        return " ".join(text.split()) if self.config["collapse_inner"] else text.strip()


@register
class Template(Step):
    type = "template"
    title = "Template"
    group = "Text"
    description = "Build text from columns: \"Summarise: {review}\"."
    params = (
        Param("template", TEMPLATE, "", "Text with {column} placeholders; {{ and }} are literal braces.", required=True),
        Param("output", OUTPUT, "text", "Name of the new column.", label="Write to"),
    )

    def apply(self, row: Mapping[str, Any]) -> dict[str, Any]:
        return {self.output_name(): tpl.render(self.config["template"], row)}
