"""The step palette. Importing this package registers every step type in REGISTRY."""

from . import code, control, data, embeddings, formula, models, text, web  # noqa: F401  (each registers its steps)
from .base import GROUPS, REGISTRY, Param, Step, register  # noqa: F401


def step_types_by_group() -> dict[str, list[type[Step]]]:
    """The palette as a front end shows it: groups in order, steps by title."""
    groups: dict[str, list[type[Step]]] = {g: [] for g in GROUPS}
    for cls in REGISTRY.values():
        groups[cls.group].append(cls)
    return {g: sorted(v, key=lambda c: c.title) for g, v in groups.items() if v}


def new_step(step_type: str, **config) -> Step:
    """A step of `step_type` with default parameters, overridden by `config`."""
    return REGISTRY[step_type](config)
