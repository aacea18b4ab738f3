"""``ssltk pretrain``: a thin wrapper over :func:`ssltk.train.loop.pretrain`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer
import yaml
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from ssltk.cli._util import AppState, console, friendly
from ssltk.errors import UsageError

if TYPE_CHECKING:  # the config module imports torch: loaded when a command runs, not for --help
    from ssltk.train.config import TrainConfig

RUN_CONFIG = "run_config.yaml"  # written by ssltk.train.loop.pretrain once every check has passed


def resolve_config(
    config: Path | None,
    objectives: list[str] | None,
    sets: list[str] | None,
    overrides: dict[str, Any],
) -> TrainConfig:
    """Defaults < YAML file < ``--objective`` / options < ``--set`` pairs."""
    from ssltk.train.config import ObjectiveSpec, apply_objective_overrides, load_config, parse_objective_arg, validate

    cfg = load_config(config, overrides, check=False)
    if objectives:
        keep = {s.name: s for s in cfg.objectives}
        specs = []
        for text in objectives:
            name, weight = parse_objective_arg(text)
            base = keep.get(name)
            specs.append(ObjectiveSpec(name, weight, dict(base.options) if base else {}))
        cfg.objectives = specs
    apply_objective_overrides(cfg, sets or [])
    validate(cfg)
    return cfg


def run_pretrain(cfg: TrainConfig, registry, *, resume: bool, overwrite: bool, show_progress: bool = True):
    """Run with a rich progress bar (``pretrain`` writes ``run_config.yaml`` next to the bundle)."""
    from ssltk.train.loop import pretrain

    columns = [
        TextColumn("[bold]step"),
        MofNCompleteColumn(),
        BarColumn(bar_width=20),
        TextColumn("{task.fields[info]}"),
        TextColumn("eta"),
        TimeRemainingColumn(compact=True),
    ]
    bar = Progress(*columns, console=console, disable=not show_progress)
    task = None

    def on_step(step: int, total: int, row: dict) -> None:
        nonlocal task
        if task is None:  # started on the first step: setup errors print without a bar
            bar.start()
            task = bar.add_task("train", total=total, info="")
        info = ""
        if row:
            parts = [f"{k[5:]} {v:.3f}" for k, v in row.items() if k.startswith("loss/")]
            losses = f" ({' '.join(parts)})" if len(parts) > 1 else ""  # per objective when composed
            info = f"loss {row['loss']:.3f}{losses} lr {row['lr']:.1e} {row['samples_per_s']:.0f}/s"
        bar.update(task, completed=step, info=info)

    try:
        return pretrain(cfg, registry=registry, resume=resume, overwrite=overwrite, progress=on_step)
    finally:
        bar.stop()


def summary_panel(result) -> Panel:
    table = Table.grid(padding=(0, 2))
    table.add_row("bundle", f"[bold green]{result.out}[/]")
    table.add_row("steps", str(result.steps))
    table.add_row("throughput", f"{result.samples_per_s:.1f} samples/s")
    for k, v in result.final.items():
        table.add_row(k, f"{v:.4f}")
    table.add_row("skipped samples", ", ".join(f"{k}={v}" for k, v in result.skipped.items() if v) or "none")
    return Panel(table, title="pretraining finished", expand=False)


def register(app: typer.Typer, state: AppState) -> None:
    @app.command("pretrain")
    @friendly
    def pretrain_cmd(
        objective: Optional[list[str]] = typer.Option(
            None, "--objective", "-o", help="Objective NAME or NAME=WEIGHT; repeat to compose (weighted sum)."
        ),
        backbone: Optional[str] = typer.Option(None, "--backbone", "-b", help="Backbone, e.g. resnet50 or timm:convnext_tiny."),
        data: Optional[str] = typer.Option(None, "--data", help="Shards: folder, glob or brace pattern. Default: built-in synthetic episodes."),
        config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML config file; command-line options override it."),
        out: Optional[str] = typer.Option(None, "--out", help="Output folder for the bundle (default runs/pretrain)."),
        steps: Optional[int] = typer.Option(None, "--steps", help="Optimizer steps."),
        batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Samples per step per process."),
        image_size: Optional[int] = typer.Option(None, "--image-size", help="Training image size (square)."),
        lr: Optional[float] = typer.Option(None, "--lr", help="Peak learning rate."),
        precision: Optional[str] = typer.Option(None, "--precision", help="auto (bf16 where fast), bf16 or fp32."),
        device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N."),
        num_workers: Optional[int] = typer.Option(None, "--num-workers", help="DataLoader worker processes."),
        seed: Optional[int] = typer.Option(None, "--seed", help="Random seed."),
        init: Optional[str] = typer.Option(None, "--init", help="Initial weights: a local file or an ssltk bundle."),
        sets: Optional[list[str]] = typer.Option(
            None, "--set", help="Override any config key: KEY=VALUE or OBJECTIVE.OPTION=VALUE (repeatable)."
        ),
        compile_model: Optional[bool] = typer.Option(None, "--compile/--no-compile", help="torch.compile the model."),
        tensorboard: Optional[bool] = typer.Option(None, "--tensorboard/--no-tensorboard", help="Write TensorBoard events."),
        strict: Optional[bool] = typer.Option(None, "--strict/--lenient", help="Stop at the first bad sample (default: skip and count)."),
        resume: Optional[Path] = typer.Option(None, "--resume", help="Continue the interrupted run in this folder."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace a bundle already in --out."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Print the resolved config and exit."),
    ) -> None:
        """Pretrain a backbone with one or more objectives and write a bundle."""
        overrides = {
            "backbone": backbone, "data": data, "out": out, "steps": steps, "batch_size": batch_size,
            "image_size": image_size, "lr": lr, "precision": precision, "device": device,
            "num_workers": num_workers, "seed": seed, "init": init, "compile": compile_model,
            "tensorboard": tensorboard, "strict_data": None if strict is None else strict,
        }
        main_rank = int(os.environ.get("RANK", "0")) == 0  # under torchrun only rank 0 writes and prints
        if resume is not None:
            saved = resume / RUN_CONFIG
            if not saved.is_file():
                raise UsageError(f"--resume {resume}: no {RUN_CONFIG} there; is it an ssltk run folder?")
            if objective or sets or backbone or data or config or init or image_size or batch_size or seed is not None:
                raise UsageError("--resume continues a run with its own config; only --steps and run-time options "
                                 "(--device, --precision, --num-workers, --compile, --tensorboard) may change")
            runtime = {"steps": steps, "out": str(resume), "device": device, "precision": precision,
                       "num_workers": num_workers, "compile": compile_model, "tensorboard": tensorboard}
            cfg = resolve_config(saved, None, None, runtime)  # pretrain() saves it: a later --resume keeps --steps
        else:
            cfg = resolve_config(config, objective, sets, overrides)
        registry = state.registry
        for spec in cfg.objectives:  # validate names and options before any work
            entry = registry.objective(spec.name)
            from ssltk.objectives import parse_options

            parse_options(entry.obj, spec.options)
        registry.backbone(cfg.backbone)
        if dry_run:
            console.print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="", markup=False)
            return
        result = run_pretrain(cfg, registry, resume=resume is not None, overwrite=overwrite, show_progress=main_rank)
        if main_rank:
            console.print(summary_panel(result))
