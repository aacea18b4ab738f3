"""Shared CLI plumbing: the app state, friendly errors, console output."""

from __future__ import annotations

import errno
import functools
import json
import os
import sys
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

import typer
from rich.console import Console
from rich.markup import escape

from ssltk.errors import SsltkError, one_line
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
        from ssltk.plugins import check_load_names
        from ssltk.registry import Registry

        if self._registry is None:
            check_load_names(self.pm)
            self._registry = Registry(self.pm)
        return self._registry


DEBUG_ENV = "SSLTK_DEBUG"
_debug = [False]  # set by the root ``--debug`` option for the current invocation


def set_debug(on: bool) -> None:
    _debug[0] = bool(on)


def debug_enabled() -> bool:
    """True with ``ssltk --debug ...`` or ``SSLTK_DEBUG=1``: failures also print their traceback."""
    return _debug[0] or os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def fail(message: str, code: int = 2) -> "typer.Exit":
    """Print one line to stderr (the text as written: never read as rich markup) and return the Exit to raise."""
    _print(message)
    return typer.Exit(code)


def _print(message: str) -> None:
    err_console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True, highlight=False)


def describe_failure(exc: BaseException) -> tuple[str, int]:
    """The one line and exit code for any exception a command raised.

    ``SsltkError``: its message and ``exit_code`` (2 = bad input, 1 = runtime).
    ``OSError`` (a read-only or full disk, a permission): what failed and on which path, exit 1.
    Anything else is a bug or a plugin's fault: its type and first line, exit 1.
    An exception that carries ``ssltk_failure`` (an SsltkError that ``pretrain`` attached,
    naming the plugin and what was kept) is described by that error instead.
    """
    exc = getattr(exc, "ssltk_failure", None) or exc
    if isinstance(exc, SsltkError):
        return str(exc).strip() or type(exc).__name__, exc.exit_code
    if isinstance(exc, OSError):
        name = str(exc.filename or "")
        where = f": {name if len(name) <= 200 else name[:180] + '...'}" if name else ""
        what = exc.strerror or one_line(exc)
        return f"{what}{where}", 2 if exc.errno == errno.ENAMETOOLONG else 1  # a too-long name is bad input
    hint = "" if debug_enabled() else f" (rerun with --debug or {DEBUG_ENV}=1 for the traceback)"
    return f"unexpected {one_line(exc)}{hint}", 1


def report_failure(exc: BaseException) -> int:
    """Print ``exc`` as one line (and the traceback first under ``--debug``); return the exit code."""
    if debug_enabled():
        traceback.print_exception(exc, file=sys.stderr)
    message, code = describe_failure(exc)
    _print(message)
    return code


def friendly(fn: Callable) -> Callable:
    """Turn any exception into one line and an exit code, never a traceback (unless ``--debug``)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except KeyboardInterrupt as exc:
            if getattr(exc, "ssltk_failure", None) is not None:  # what a training run kept
                raise typer.Exit(report_failure(exc)) from None
            raise fail("interrupted", 130) from None
        except Exception as exc:  # noqa: BLE001 - every failure ends in one line
            raise typer.Exit(report_failure(exc)) from None

    wrapper.ssltk_friendly = True  # type: ignore[attr-defined]
    return wrapper


def print_json(obj: Any) -> None:
    """Machine-readable output on stdout (no rich markup)."""
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def print_key_values(title: str, rows) -> None:
    """A two-column key/value table (the human form of a command's ``--json`` summary); plain text, never markup."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(title), show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in rows:
        table.add_row(Text(str(key)), Text(str(value)))
    console.print(table)
