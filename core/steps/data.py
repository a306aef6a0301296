"""Data steps: numbers, JSON, splitting, lookups."""
