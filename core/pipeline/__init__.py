"""Pipeline files: the declaration a user edits, loads, checks and saves (never a secret)."""

from batchgrid.core.steps.base import all_writes, walk

from .file import CURRENT_VERSION, SETTINGS, Pipeline, check_values, find_secrets

__all__ = ["CURRENT_VERSION", "SETTINGS", "Pipeline", "all_writes", "check_values", "find_secrets", "walk"]
