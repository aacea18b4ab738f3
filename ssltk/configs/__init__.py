"""Packaged run configs (the demo recipe)."""
