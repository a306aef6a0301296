"""Icons from resources/icons (simple SVGs), cached; steps fall back to their group's icon."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import batchgrid.resources as _resources
from PySide6.QtGui import QIcon

ICON_DIR = Path(_resources.__file__).resolve().parent / "icons"


@cache
def icon(name: str) -> QIcon:
    """The icon called `name` (file name without .svg); an empty icon if there is none."""
    path = ICON_DIR / f"{name}.svg"
    return QIcon(str(path)) if path.is_file() else QIcon()


def step_icon(step_class) -> QIcon:
    """A step's own icon if it names one that exists, else its palette group's."""
    own = getattr(step_class, "icon", "")
    if own and (ICON_DIR / f"{own}.svg").is_file():
        return icon(own)
    return icon(f"group-{step_class.group.lower()}")


def status_icon(status: str) -> QIcon:
    return icon(f"status-{status}")
