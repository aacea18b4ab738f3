"""``ssltk pretrain``: flags to a config, then :func:`ssltk.train.loop.pretrain` (which owns the run folder)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer
import yaml
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ssltk.cli._util import AppState, console, friendly


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
        from ssltk.api import run_pretrain
        from ssltk.train.config import resolve_config
        from ssltk.train.resume import resume_config

        main_rank = int(os.environ.get("RANK", "0")) == 0  # under torchrun only rank 0 writes and prints
        loggers = None
        if logger:
            from ssltk.train.trackers import normalize_loggers

            loggers = normalize_loggers([x for item in logger for x in item.split(",") if x.strip()], "--logger")
        runtime = {"steps": steps, "device": device, "precision": precision, "decode": decode,
                   "num_workers": num_workers, "compile": compile_model, "tensorboard": tensorboard, "loggers": loggers}
        learning = {"backbone": backbone, "data": data, "image_size": image_size, "batch_size": batch_size,
                    "lr": lr, "seed": seed, "init": init, "strict_data": strict}
        if resume is not None:  # --resume RUN, or alone (""): the last run in --out
            given = [k for k, v in learning.items() if v is not None] + (["objective"] if objective else []) + \
                (["set"] if sets else []) + (["config"] if config else [])
            cfg = resume_config(resume, out=out, runtime=runtime, given=given)
        else:
            cfg = resolve_config(config, objective, sets, {**runtime, **learning, "out": out})
        if dry_run:
            from ssltk.train.loop import check_names

            check_names(cfg, state.registry)
            console.print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="", markup=False)
            return
        result = run_pretrain(cfg, state.registry, resume=True if resume is not None else None, overwrite=overwrite,
                              progress=main_rank)
        if main_rank:
            console.print(summary_panel(result))
