"""Text steps: cheap, in-process, one value in, one value (or a few) out."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from batchgrid.core.util import template as tpl
from batchgrid.core.util.errors import StepError
from batchgrid.core.util.patterns import Pattern, PatternError, compile_pattern

from .base import BOOL, CHOICE, INT, OUTPUT, SOURCE, TEMPLATE, TEXT, Param, Step, register

SOURCE_HELP = "A column name, or a template such as \"{title} {body}\"."


def source_param(help: str = SOURCE_HELP) -> Param:
    return Param("source", SOURCE, "", help, required=True, label="Read from")


def output_param(help: str = "Name of the new column.") -> Param:
    return Param("output", OUTPUT, "", help, label="Write to")


def shown(value: Any, limit: int = 60) -> str:
    """A value quoted for an error message, "12,x"; long text is cut short."""
    text = tpl.as_text(value)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return json.dumps(text, ensure_ascii=False)


def compile_regex(pattern: str, ignore_case: bool = False) -> Pattern:
    """The compiled pattern, run under a time limit (core/util/patterns.py), or a StepError
    saying in words what is wrong with it."""
    return compile_pattern(pattern, ignore_case)


class TextStep(Step):
    """A step that reads `source` and writes `output`; subclasses define `transform` or `apply`."""

    suffix = "result"

    def source_name(self) -> str:
        """The source column's name, or "text" when the source is a template."""
        source = self.config.get("source") or ""
        return source if source and "{" not in source else "text"

    def default_output(self, param_name: str) -> str:
        return f"{self.source_name()}_{self.suffix}"

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


# A word for title case: starts with a letter or digit, may hold apostrophes ("don't").
_WORD = re.compile(r"[^\W_][\w']*")
# A sentence starts the text or follows . ! or ? and a space; quotes and brackets may come first.
_SENTENCE_START = re.compile(r"(^|[.!?]\s+)(\W*?)([^\W\d_])")


def title_case(text: str) -> str:
    # Not str.title(), which writes "Don'T" and "3Rd".
    return _WORD.sub(lambda m: m[0][:1].upper() + m[0][1:].lower(), text)


def sentence_case(text: str) -> str:
    return _SENTENCE_START.sub(lambda m: m[1] + m[2] + m[3].upper(), text.lower())


CASES: dict[str, Callable[[str], str]] = {
    "upper": str.upper, "lower": str.lower, "title": title_case, "sentence": sentence_case,
}


@register
class ChangeCase(TextStep):
    type = "change_case"
    title = "Change case"
    group = "Text"
    description = "UPPER CASE, lower case, Title Case or Sentence case."
    params = (
        source_param(),
        Param("case", CHOICE, "upper", "upper: ALL CAPITALS; lower: all small letters; title: Each Word Capitalised; "
              "sentence: the first letter of each sentence capitalised, the rest small.", choices=tuple(CASES)),
        output_param(),
    )

    def default_output(self, param_name: str) -> str:
        return f"{self.source_name()}_{self.config['case']}"

    def transform(self, text: str) -> str:
        return CASES[self.config["case"]](text)


@register
class FindReplace(TextStep):
    type = "find_replace"
    title = "Find and replace"
    group = "Text"
    description = "Replace text, or a regular expression, with other text."
    suffix = "replaced"
    params = (
        source_param(),
        Param("find", TEXT, "", "The text to look for, or a regular expression when that box is ticked.", required=True),
        Param("replace", TEXT, "", "What to put in its place; blank removes it. With a regular expression, "
              "\\1 or \\g<name> puts back what a group matched.", label="Replace with"),
        Param("regex", BOOL, False, "Read 'find' as a regular expression.", label="Regular expression"),
        Param("case_sensitive", BOOL, True, "Upper and lower case must match exactly."),
        Param("count", INT, 0, "Replace at most this many occurrences in each value; 0 replaces them all.", minimum=0),
        output_param(),
    )

    def pattern(self) -> Pattern:
        find = self.config["find"]
        return compile_regex(find if self.config["regex"] else re.escape(find), not self.config["case_sensitive"])

    def check(self) -> list[tuple[str, str]]:
        try:
            pattern = self.pattern()
        except StepError as exc:
            return [("find", str(exc))]
        if self.config["regex"]:
            # Fill the replacement in once against an empty match, so a bad group
            # reference is reported now rather than failing every row.
            probe = re.compile(pattern.pattern + "\n|", 0 if self.config["case_sensitive"] else re.IGNORECASE)
            try:
                probe.sub(self.config["replace"], "", count=1)
            except re.error as exc:
                return [("replace", f"cannot be used with this pattern: {exc}")]
        return []

    def transform(self, text: str) -> str:
        replace = self.config["replace"]
        if not self.config["regex"]:
            literal = replace
            replace = lambda _match: literal  # noqa: E731  (no backslash escapes in literal mode)
        try:
            return self.pattern().sub(replace, text, count=self.config["count"])
        except PatternError as exc:
            raise StepError(f"cannot use the replacement {shown(self.config['replace'])}: {exc}") from None


@register
class RegexExtract(TextStep):
    type = "regex_extract"
    title = "Extract with a pattern"
    group = "Text"
    description = "Pick out what a regular expression matches: the first match, all of them, or named groups."
    params = (
        source_param(),
        Param("pattern", TEXT, "", "A regular expression, e.g. \\d+ or (?P<year>\\d{4})-(?P<month>\\d\\d). "
              "If it has a group ( ), the first group is taken instead of the whole match.", required=True),
        Param("mode", CHOICE, "first", "first: the first match (blank if none); all: a list of every match; "
              "groups: each named group (?P<name>...) of the first match into a column called name.",
              choices=("first", "all", "groups")),
        Param("case_sensitive", BOOL, True, "Upper and lower case must match exactly."),
        output_param("Name of the new column (first and all modes; in groups mode the groups name the columns)."),
    )

    def pattern(self) -> Pattern:
        return compile_regex(self.config["pattern"], not self.config["case_sensitive"])

    def group_names(self) -> list[str]:
        try:
            index = self.pattern().groupindex
        except StepError:
            return []
        return sorted(index, key=lambda name: index[name])

    def default_output(self, param_name: str) -> str:
        return f"{self.source_name()}_{'matches' if self.config['mode'] == 'all' else 'match'}"

    def writes(self) -> list[str]:
        return self.group_names() if self.config["mode"] == "groups" else [self.output_name()]

    def check(self) -> list[tuple[str, str]]:
        try:
            self.pattern()
        except StepError as exc:
            return [("pattern", str(exc))]
        if self.config["mode"] == "groups" and not self.group_names():
            return [("pattern", "groups mode needs named groups, such as (?P<year>\\d{4}); this pattern has none")]
        return []

    def apply(self, row: Mapping[str, Any]) -> dict[str, Any]:
        text = self.source_text(row)
        pattern = self.pattern()
        mode = self.config["mode"]
        if mode == "groups":
            match = pattern.search(text) if text else None
            return {name: match.group(name) if match else None for name in self.group_names()}
        if not text:
            return {self.output_name(): None}
        which = 1 if pattern.groups else 0
        if mode == "all":
            return {self.output_name(): [m.group(which) for m in pattern.finditer(text)]}
        match = pattern.search(text)
        return {self.output_name(): match.group(which) if match else None}


@register
class Split(TextStep):
    type = "split"
    title = "Split"
    group = "Text"
    description = "Cut text at a delimiter: into a list, into numbered columns, or keep one part."
    params = (
        source_param(),
        # Not `required`: a file may leave out the default, and to_dict leaves out defaults.
        Param("delimiter", TEXT, ",", "Cut at this text, e.g. , or ; or | (or a regular expression such as \\s+).",
              label="Split at"),
        Param("regex", BOOL, False, "Read the delimiter as a regular expression; write groups as (?:...) so they "
              "are not kept as parts.", label="Regular expression"),
        Param("mode", CHOICE, "list", "list: one column holding the list of parts; columns: the parts into columns "
              "<name>_1 … <name>_N, the last one keeping the rest of the text; part: only the part at 'part'.",
              choices=("list", "columns", "part")),
        Param("columns", INT, 2, "How many columns, in columns mode.", minimum=1, maximum=100),
        Param("part", INT, 1, "Which part to keep, in part mode: 1 is the first, 2 the second, -1 the last.",
              minimum=-1000, maximum=1000),
        Param("trim", BOOL, True, "Remove spaces around each part."),
        Param("drop_empty", BOOL, False, "Leave out empty parts (list and part modes)."),
        output_param("Name of the new column; in columns mode, the start of each column's name."),
    )

    def default_output(self, param_name: str) -> str:
        mode = self.config["mode"]
        return self.source_name() if mode == "columns" else f"{self.source_name()}_{'part' if mode == 'part' else 'parts'}"

    def writes(self) -> list[str]:
        if self.config["mode"] == "columns":
            return [f"{self.output_name()}_{i}" for i in range(1, self.config["columns"] + 1)]
        return [self.output_name()]

    def check(self) -> list[tuple[str, str]]:
        if not self.config["delimiter"]:
            return [("delimiter", "must not be empty; write the text to cut at, e.g. ,")]
        if self.config["regex"]:
            try:
                compile_regex(self.config["delimiter"])
            except StepError as exc:
                return [("delimiter", str(exc))]
        if self.config["mode"] == "part" and self.config["part"] == 0:
            return [("part", "0 is not a position; 1 is the first part, -1 the last")]
        return []

    def parts(self, text: str, maxsplit: int = 0) -> list[str]:
        delimiter = self.config["delimiter"]
        if self.config["regex"]:
            parts = [p or "" for p in compile_regex(delimiter).split(text, maxsplit=maxsplit)]
        else:
            parts = text.split(delimiter, maxsplit or -1)
        return [p.strip() for p in parts] if self.config["trim"] else parts

    def apply(self, row: Mapping[str, Any]) -> dict[str, Any]:
        text = self.source_text(row)
        mode = self.config["mode"]
        if mode == "columns":
            names = self.writes()
            parts = self.parts(text, maxsplit=len(names) - 1) if text else []
            return {name: parts[i] if i < len(parts) else None for i, name in enumerate(names)}
        if not text:
            return {self.output_name(): None}
        parts = self.parts(text)
        if self.config["drop_empty"]:
            parts = [p for p in parts if p]
        if mode == "list":
            return {self.output_name(): parts}
        k = self.config["part"]
        index = k - 1 if k > 0 else k
        return {self.output_name(): parts[index] if -len(parts) <= index < len(parts) else None}


def word_count(text: str) -> int:
    return len(text.split())


def line_count(text: str) -> int:
    return len(text.splitlines())


@register
class TextLength(TextStep):
    type = "length"
    title = "Length and word count"
    group = "Text"
    description = "Count characters, words and lines; a blank counts 0."
    # (parameter that switches it on, column name ending, how to count)
    MEASURES: tuple[tuple[str, str, Callable[[str], int]], ...] = (
        ("characters", "chars", len), ("words", "words", word_count), ("lines", "lines", line_count),
    )
    params = (
        source_param(),
        Param("characters", BOOL, True, "Count characters, into <prefix>_chars."),
        Param("words", BOOL, True, "Count words (runs of text between spaces), into <prefix>_words."),
        Param("lines", BOOL, False, "Count lines, into <prefix>_lines."),
        Param("prefix", TEXT, "", "How the new columns' names start; blank uses the source column's name.",
              label="Column name prefix"),
    )

    def writes(self) -> list[str]:
        prefix = self.config["prefix"] or self.source_name()
        return [f"{prefix}_{ending}" for name, ending, _ in self.MEASURES if self.config[name]]

    def check(self) -> list[tuple[str, str]]:
        if not any(self.config[name] for name, _, _ in self.MEASURES):
            return [("", "tick at least one of characters, words or lines")]
        return []

    def apply(self, row: Mapping[str, Any]) -> dict[str, Any]:
        text = self.source_text(row)
        counts = [count(text) for name, _, count in self.MEASURES if self.config[name]]
        return dict(zip(self.writes(), counts, strict=True))
