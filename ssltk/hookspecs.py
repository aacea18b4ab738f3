"""The whole plugin contract of ssltk: hook markers and hook specifications.

Plugins implement these with ``@ssltk.hookimpl``. Registration hooks hand the
plugin a ``register`` callback so that naming, collisions and attribution stay
in the host (see ``ssltk.registry``). Prose and examples: ``docs/plugins.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import pluggy

if TYPE_CHECKING:  # pragma: no cover
    import typer

PROJECT = "ssltk"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_objectives(register: Callable[..., None]) -> None:
    """Register objectives: ``register(name, cls, *, aliases=())`` with ``cls`` an ``ssltk.Objective``."""


@hookspec
def register_backbones(register: Callable[..., None]) -> None:
    """Register backbone families: ``register(family)`` with ``family`` an ``ssltk.BackboneFamily``."""


@hookspec
def register_commands(app: "typer.Typer") -> None:
    """Add commands or command groups to the ``ssltk`` Typer app."""


@hookspec
def bundle_metadata(manifest: dict[str, Any]) -> dict[str, Any] | None:
    """Return extra JSON-serialisable metadata stored in the bundle manifest under the plugin's name."""
