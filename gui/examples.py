"""The bundled examples: each pipeline in resources/examples with the sheet it runs on.

A pipeline `reviews-offline.batchgrid.json` runs on the sheet named like the start of its
file name (`reviews.xlsx`, `reviews.csv`, ...) in the same folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import batchgrid.resources as _resources

EXAMPLES_DIR = Path(_resources.__file__).resolve().parent / "examples"
SHEET_SUFFIXES = (".xlsx", ".xlsm", ".xlsb", ".xls", ".ods", ".csv", ".tsv", ".parquet")


@dataclass
class Example:
    title: str
    pipeline: Path
    sheet: Path
    description: str = ""


def sheet_for(pipeline: Path) -> Path | None:
    sheets = sorted(p for p in pipeline.parent.iterdir() if p.suffix.lower() in SHEET_SUFFIXES)
    stem = pipeline.name.split(".")[0]
    # the longest sheet name that starts the pipeline's name: "reviews" for "reviews-offline"
    matches = [s for s in sheets if stem == s.stem or stem.startswith(s.stem + "-") or stem.startswith(s.stem + "_")]
    return max(matches, key=lambda s: len(s.stem)) if matches else None


def bundled_examples(folder: Path = EXAMPLES_DIR) -> list[Example]:
    if not folder.is_dir():
        return []
    found = []
    for pipeline in sorted(folder.glob("*.json")):
        sheet = sheet_for(pipeline)
        if sheet is None:
            continue
        try:
            data = json.loads(pipeline.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        title = data.get("name") or pipeline.name.split(".")[0].replace("-", " ").capitalize()
        found.append(Example(str(title), pipeline, sheet, str(data.get("description", ""))))
    return found


def offline_example(folder: Path = EXAMPLES_DIR) -> Example | None:
    """The example that runs with no network and no keys (`batchgrid --example`)."""
    examples = bundled_examples(folder)
    for example in examples:
        if "offline" in example.pipeline.name:
            return example
    return examples[0] if examples else None
