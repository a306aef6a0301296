"""Regenerate the README's step reference from the steps' declarations: `python tools/update_readme.py`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def replace_section(text: str, name: str, body: str) -> str:
    begin, end = f"<!-- {name}:begin -->\n", f"<!-- {name}:end -->"
    start, stop = text.index(begin) + len(begin), text.index(end)
    return text[:start] + body.rstrip() + "\n" + text[stop:]


if __name__ == "__main__":
    steps = subprocess.run([sys.executable, "-m", "batchgrid.core.cli", "steps"], capture_output=True, text=True,
                           check=True).stdout
    README.write_text(replace_section(README.read_text(encoding="utf-8"), "steps", steps), encoding="utf-8")
    print("README step reference updated")
