"""Pipeline files: the declaration a user edits, loads, checks and saves (never a secret)."""

from batchgrid.core.steps.base import all_writes, walk
from batchgrid.core.steps.tree import Problem, StepPath, iter_steps, step_at

from .file import CURRENT_VERSION, SETTINGS, Pipeline, check_values, find_secrets

__all__ = ["CURRENT_VERSION", "SETTINGS", "Pipeline", "Problem", "StepPath", "all_writes", "check_values",
           "find_secrets", "iter_steps", "step_at", "walk"]
