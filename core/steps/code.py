"""Code steps: Python expressions from the pipeline file (run only when trusted)."""
