"""Helpers for testing ssltk plugins (objective contract checks, tiny shards)."""
