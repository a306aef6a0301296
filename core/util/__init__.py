"""Helpers every layer may use: errors, templates, JSON paths, HTTP, paths, how values read as text."""
