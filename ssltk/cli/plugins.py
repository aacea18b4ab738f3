"""``ssltk list-plugins``: what is installed, who provided it, and what is broken."""

from __future__ import annotations

from enum import Enum

import typer
from rich.table import Table

from ssltk.cli._util import AppState, console, friendly, print_json
from ssltk.registry import Registry


class Kind(str, Enum):
    objective = "objective"
    backbone = "backbone"


def list_plugins(registry: Registry, kind: str | None = None) -> dict:
    """Registered items and broken plugins as plain data (what ``--json`` prints)."""
    items = [e.as_dict() for e in registry.entries(kind)]
    broken = [
        {"plugin": b.name, "dist": b.dist, "version": b.version, "module": b.module, "error": b.error}
        for b in registry.pm.broken
    ]
    return {"items": items, "broken": broken}


def register(app: typer.Typer, state: AppState) -> None:
    @app.command("list-plugins")
    @friendly
    def list_plugins_cmd(
        kind: Kind = typer.Option(None, "--kind", help="Only objectives or only backbones."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON for machines."),
    ) -> None:
        """List registered objectives and backbones with the distribution that provides each."""
        data = list_plugins(state.registry, kind.value if kind else None)
        if as_json:
            print_json(data)
            return
        table = Table(title="ssltk plugins", show_lines=False)
        for col in ("kind", "name", "provided by", "summary"):
            table.add_column(col, overflow="fold")
        for it in data["items"]:
            table.add_row(it["kind"], it["name"], f"{it['dist']} {it['version']}", it["summary"])
        for b in data["broken"]:
            table.add_row("[red]broken[/]", b["plugin"], f"{b['dist']} {b['version']}", f"[red]{b['error']}[/]")
        console.print(table)
        if data["broken"]:
            console.print(
                "[yellow]Broken plugins are skipped. Disable one with SSLTK_DISABLE_PLUGINS=NAME "
                "or uninstall it; see docs/plugins.md.[/]"
            )
