"""``ssltk demo``: the README's main job — a short pretraining on synthetic episodes, then the probe."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from ssltk.cli._util import AppState, console, friendly


def demo_config_path() -> Path:
    return Path(str(resources.files("ssltk.configs").joinpath("demo.yaml")))


def register(app: typer.Typer, state: AppState) -> None:
    @app.command("demo")
    @friendly
    def demo_cmd(
        out: str = typer.Option("runs/demo", "--out", help="Where the demo bundle goes (replaced on each run)."),
        steps: Optional[int] = typer.Option(None, "--steps", help="Override the demo's number of steps."),
        probe: bool = typer.Option(True, "--probe/--no-probe", help="Probe the bundle after training."),
    ) -> None:
        """Pretrain on built-in synthetic driving episodes, then probe what the backbone learned."""

        from ssltk.api import run_pretrain
        from ssltk.cli.pretrain import summary_panel
        from ssltk.train.config import resolve_config

        cfg = resolve_config(demo_config_path(), overrides={"out": out, "steps": steps})

        def intro() -> None:  # once pretrain's checks passed (a --out that is a file is a one-line error)
            console.print(f"[bold]ssltk demo[/]: {cfg.steps} steps of {', '.join(s.name for s in cfg.objectives)} "
                          f"on {cfg.backbone} at {cfg.image_size}px, built-in synthetic episodes")

        result = run_pretrain(cfg, state.registry, resume=False, overwrite=True, on_start=intro)
        console.print(summary_panel(result))
        if probe:
            from ssltk.cli.probe import run_and_show_probe

            run_and_show_probe(Path(cfg.out))
        console.print(f"\nBundle: [bold green]{escape(str(Path(cfg.out).resolve()))}[/]")
        console.print(f"Load it anywhere with: timm.create_model('local-dir:{Path(cfg.out).resolve()}', pretrained=True)",
                      markup=False, soft_wrap=True)
