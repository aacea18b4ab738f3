"""The ``ssltk`` command line: a Typer app composed from command-group modules and plugins."""

from __future__ import annotations

import importlib

import typer

from ssltk.cli._errors import SsltkGroup
from ssltk.cli._util import AppState, err_console, friendly, set_debug  # friendly: public, for plugin commands
from ssltk.plugins import SsltkPluginManager, call_each, get_plugin_manager

# Each module has ``register(app, state)``; one module per command group.
_GROUPS = (
    "ssltk.cli.plugins",
    "ssltk.cli.data",
    "ssltk.cli.pretrain",
    "ssltk.cli.bundle",
    "ssltk.cli.probe",
    "ssltk.cli.embed",
    "ssltk.cli.demo",
)


def _version_callback(value: bool) -> None:
    if value:
        from ssltk._version import __version__

        typer.echo(f"ssltk {__version__}")
        raise typer.Exit()


def build_app(pm: SsltkPluginManager | None = None) -> typer.Typer:
    """The CLI for plugin manager ``pm`` (a fresh default one if None)."""
    state = AppState(pm if pm is not None else get_plugin_manager())
    app = typer.Typer(
        name="ssltk",
        help="Self-supervised pretraining of vision backbones on driving video.",
        no_args_is_help=True,
        add_completion=True,  # --install-completion / --show-completion (docs/cli.md#shell-completion)
        pretty_exceptions_enable=False,
        rich_markup_mode="rich",
        cls=SsltkGroup,
    )

    @app.callback()
    def _root(
        version: bool = typer.Option(
            False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
        ),
        debug: bool = typer.Option(
            False, "--debug", help="On failure also print the traceback (same as SSLTK_DEBUG=1)."
        ),
    ) -> None:
        """Self-supervised pretraining of vision backbones on driving video."""
        set_debug(debug)

    for mod in _GROUPS:
        importlib.import_module(mod).register(app, state)
    call_each(state.pm, "register_commands", app=app)
    return app


def main() -> None:
    """Console-script entry point."""
    from ssltk.data import PARALLEL

    PARALLEL["generation"] = True  # this entry point's __main__ is safe to re-import in spawned workers
    app = build_app()
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover
        err_console.print("interrupted")
        raise SystemExit(130) from None
