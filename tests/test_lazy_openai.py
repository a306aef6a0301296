"""The openai SDK (about 0.3 s to import) is imported only when a run builds a model client:
checking a pipeline, listing steps and importing the engine never import it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "resources" / "examples"

# Runs the CLI in a fresh interpreter, then says which of the modules were imported.
PROBE = """
import sys
from batchgrid.core.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print(sorted(m for m in ("openai", "batchgrid.core.providers.client") if m in sys.modules), code)
"""


def imported_by(*args: str) -> str:
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("pipeline", ["reviews-offline.batchgrid.json", "reviews-llm.batchgrid.json"])
def test_check_does_not_import_openai(pipeline):
    assert imported_by("check", str(EXAMPLES / pipeline), str(EXAMPLES / "reviews.xlsx")) == \
        "['batchgrid.core.providers.client'] 0"


def test_steps_does_not_import_openai():
    assert imported_by("steps") == "['batchgrid.core.providers.client'] 0"


def test_importing_the_engine_does_not_import_openai():
    code = "import sys, batchgrid.core.run.engine; print('openai' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "False"
