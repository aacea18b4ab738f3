"""`ssltk probe` commands (being written)."""

from __future__ import annotations

import typer

from ssltk.cli._util import AppState


def register(app: typer.Typer, state: AppState) -> None:
    """Add this group's commands to `app`."""
