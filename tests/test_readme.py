"""The README tells the truth: its step reference is the one the code declares."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def section(text: str, name: str) -> str:
    begin, end = f"<!-- {name}:begin -->\n", f"<!-- {name}:end -->"
    return text[text.index(begin) + len(begin):text.index(end)]


def test_step_reference_is_current():
    generated = subprocess.run([sys.executable, "-m", "batchgrid.core.cli", "steps"], capture_output=True,
                               text=True, timeout=60, check=True).stdout
    assert section(README.read_text(encoding="utf-8"), "steps").strip() == generated.strip(), \
        "README step reference is stale: run `python tools/update_readme.py`"


def test_readme_has_exactly_two_commands_near_the_top():
    top = README.read_text(encoding="utf-8").split("\n## ")[0]  # the first screen: before the first section
    blocks = top.split("```sh")[1:]
    assert len(blocks) == 2
    assert "batchgrid --example" in blocks[0] and "pytest" in blocks[1]
    ci = (README.parent / ".ci" / "run").read_text()
    assert blocks[1].split("```")[0].strip().splitlines()[-1] in ci  # CI runs the README's test command
