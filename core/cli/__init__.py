"""The command line: `batchgrid-cli run|check|steps`, a thin shell over core."""

from .main import main

__all__ = ["main"]
