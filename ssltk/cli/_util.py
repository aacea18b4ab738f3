"""Shared CLI plumbing: the app state, friendly errors, console output."""

from __future__ import annotations

import functools
import json
import sys
from dataclasses import dataclass, field
from typing import Any, Callable

import typer
from rich.console import Console

from ssltk.errors import SsltkError
from ssltk.plugins import SsltkPluginManager, get_plugin_manager

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


@dataclass
class AppState:
    """What every command needs: the plugin manager (built once per app) and the registry."""

    pm: SsltkPluginManager | None = None
    _registry: Any = field(default=None, repr=False)

    @property
    def registry(self):
        from ssltk.registry import Registry

        if self._registry is None:
            self._registry = Registry(self.pm)
        return self._registry


def fail(message: str, code: int = 2) -> "typer.Exit":
    """Print one line to stderr and return the Exit to raise."""
    err_console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    return typer.Exit(code)


def friendly(fn: Callable) -> Callable:
    """Turn ``SsltkError`` (and Ctrl-C) into one line and an exit code, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SsltkError as exc:
            raise fail(str(exc), exc.exit_code) from None
        except KeyboardInterrupt:
            raise fail("interrupted", 130) from None

    return wrapper


def print_json(obj: Any) -> None:
    """Machine-readable output on stdout (no rich markup)."""
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def print_key_values(title: str, rows) -> None:
    """A two-column key/value table (the human form of a command's ``--json`` summary)."""
    from rich.table import Table

    table = Table(title=title, show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)
