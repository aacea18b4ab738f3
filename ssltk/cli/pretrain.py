"""``ssltk pretrain``: a thin wrapper over :func:`ssltk.train.loop.pretrain`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer
import yaml
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

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


def run_pretrain(cfg: TrainConfig, registry, *, resume: bool | None, overwrite: bool, show_progress: bool = True):
    """Run with progress (a bar on a terminal, log lines otherwise); ``pretrain`` writes ``run_config.yaml``."""
    from ssltk.cli.progress import training_progress
    from ssltk.train.loop import pretrain

    if resume is None and show_progress:
        from ssltk.train.resume import should_resume

        found = should_resume(cfg.out, cfg.to_dict(), overwrite=overwrite)  # refused here in one line if it differs
        if found is not None:
            console.print(f"resuming the interrupted run in {escape(str(cfg.out))} from step {found}", soft_wrap=True)
    with training_progress(console, enabled=show_progress) as on_step:
        return pretrain(cfg, registry=registry, resume=resume, overwrite=overwrite, progress=on_step)


def summary_panel(result) -> Panel:
    table = Table.grid(padding=(0, 2))
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")  # a long path wraps, never cut
    table.add_row("bundle", Text(str(result.out), style="bold green"))
    table.add_row("steps", str(result.steps))
    table.add_row("throughput", f"{result.samples_per_s:.1f} samples/s")
    for k, v in result.final.items():
        table.add_row(Text(k), f"{v:.4f}")
    table.add_row("skipped samples", Text(", ".join(f"{k}={v}" for k, v in result.skipped.items() if v) or "none"))
    if result.data_wait is not None:
        table.add_row("data wait", f"{100 * result.data_wait:.0f}% of step time")
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
        decode: Optional[str] = typer.Option(None, "--decode", help="JPEG decode: auto (on the GPU for CUDA runs), cpu (loader workers) or gpu."),
        num_workers: Optional[int] = typer.Option(None, "--num-workers", help="DataLoader worker processes."),
        seed: Optional[int] = typer.Option(None, "--seed", help="Random seed."),
        init: Optional[str] = typer.Option(None, "--init", help="Initial weights: a local file or an ssltk bundle."),
        sets: Optional[list[str]] = typer.Option(
            None, "--set", help="Override any config key: KEY=VALUE or OBJECTIVE.OPTION=VALUE (repeatable)."
        ),
        compile_model: Optional[bool] = typer.Option(None, "--compile/--no-compile", help="torch.compile the model."),
        logger: Optional[list[str]] = typer.Option(
            None, "--logger", help="Experiment tracker: tensorboard, mlflow or wandb (repeatable; config key loggers)."
        ),
        tensorboard: Optional[bool] = typer.Option(None, "--tensorboard/--no-tensorboard", help="Write TensorBoard events (same as --logger tensorboard)."),
        strict: Optional[bool] = typer.Option(None, "--strict/--lenient", help="Stop at the first bad sample (default: skip and count)."),
        resume: Optional[str] = typer.Option(
            None, "--resume", metavar="[RUN]",
            help="Continue the interrupted run in this folder; alone, the last run in --out.",
        ),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace a bundle already in --out."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Print the resolved config and exit."),
    ) -> None:
        """Pretrain a backbone with one or more objectives and write a bundle."""
        main_rank = int(os.environ.get("RANK", "0")) == 0  # under torchrun only rank 0 writes and prints
        loggers = None
        if logger:
            from ssltk.train.trackers import normalize_loggers

            loggers = normalize_loggers([x for item in logger for x in item.split(",") if x.strip()], "--logger")
        overrides = {
            "backbone": backbone, "data": data, "out": out, "steps": steps, "batch_size": batch_size,
            "image_size": image_size, "lr": lr, "precision": precision, "device": device,
            "decode": decode, "num_workers": num_workers, "seed": seed, "init": init, "compile": compile_model,
            "tensorboard": tensorboard, "loggers": loggers, "strict_data": None if strict is None else strict,
        }
        if resume == "":  # --resume alone: the last run in --out
            from ssltk.train.resume import find_last_run

            resume = str(find_last_run(out or "runs/pretrain"))
            out = None
        if resume is not None:
            resume = Path(resume)
            saved = resume / RUN_CONFIG
            if not saved.is_file():
                raise UsageError(f"--resume {resume}: no {RUN_CONFIG} there; is it an ssltk run folder?")
            if out is not None and Path(out).resolve() != resume.resolve():
                raise UsageError(f"--resume {resume} continues that folder; leave out --out {out}, or use --out to start a new run")
            if objective or sets or backbone or data or config or init or image_size or batch_size or seed is not None \
                    or lr is not None or strict is not None:  # not run-time: they were dropped silently
                raise UsageError("--resume continues a run with its own config; only --steps and run-time options "
                                 "(--device, --precision, --num-workers, --compile, --logger, --tensorboard) may change")
            runtime = {"steps": steps, "out": str(resume), "device": device, "precision": precision, "decode": decode,
                       "num_workers": num_workers, "compile": compile_model, "tensorboard": tensorboard, "loggers": loggers}
            cfg = resolve_config(saved, None, None, runtime)  # pretrain() saves it: a later --resume keeps --steps
            from ssltk.train.resume import check_not_finished

            check_not_finished(resume, cfg.steps)
        else:
            cfg = resolve_config(config, objective, sets, overrides)
        registry = state.registry
        for spec in cfg.objectives:  # validate names and options before any work
            entry = registry.objective(spec.name)
            from ssltk.options import parse_options

            parse_options(entry.obj, spec.options)
        registry.backbone(cfg.backbone)
        if dry_run:
            console.print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="", markup=False)
            return
        result = run_pretrain(cfg, registry, resume=True if resume is not None else None, overwrite=overwrite,
                              show_progress=main_rank)
        if main_rank:
            console.print(summary_panel(result))
