"""How a training run shows its progress: a rich bar on a terminal, plain log lines otherwise.

On a terminal the bar fits the console width (80 columns included) whatever the objectives:
the step, a bar, the loss, lr, samples/s, the data-wait share and the ETA; per-objective losses
are in the log lines and ``metrics.jsonl``. Without a terminal (CI, SLURM, ``nohup``,
``| tee``) each logged step is one full line on stderr through the ``ssltk.train`` logger
(:mod:`ssltk.train.progress`), never cut.
"""

from __future__ import annotations

import logging
import sys
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Column

from ssltk.train.progress import LOGGER_NAME

INFO_WIDTH = 36  # "loss 12.35 lr 1.0e-03 12345/s wait 12%"
MIN_BAR, MAX_BAR = 4, 30


def bar_info(row: dict[str, Any]) -> str:
    """The short metrics text next to the bar (at most about :data:`INFO_WIDTH` characters)."""
    if not row:
        return ""
    text = f"loss {row['loss']:.4g} lr {row['lr']:.1e} {row['samples_per_s']:.0f}/s"
    if "data_wait" in row:
        text += f" wait {100 * row['data_wait']:.0f}%"
    return text


def make_bar(console: Console, total: int) -> Progress:
    """A progress bar whose line fits ``console.width``."""
    step_width = len(f"step {total}/{total}")
    eta_width = len("eta -:--:--")
    fixed = step_width + INFO_WIDTH + eta_width + 3  # three column gaps
    bar_width = max(MIN_BAR, min(MAX_BAR, console.width - fixed - 1))
    info_width = max(8, console.width - step_width - bar_width - eta_width - 4)
    columns = [
        TextColumn("step {task.completed}/{task.total}", table_column=Column(no_wrap=True, min_width=step_width)),
        BarColumn(bar_width=bar_width),
        TextColumn("{task.fields[info]}", table_column=Column(no_wrap=True, overflow="ellipsis", max_width=info_width)),
        TextColumn("eta", table_column=Column(no_wrap=True)),
        TimeRemainingColumn(compact=True),
    ]
    return Progress(*columns, console=console, expand=False)


class _PlainFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(message)s", datefmt="%Y-%m-%d %H:%M:%S")


@contextmanager
def log_lines_to_stderr(log: logging.Logger | None = None) -> Iterator[None]:
    """While the block runs, INFO lines of ``log`` (default: the ``ssltk.train`` logger) go to stderr in full."""
    log = log if log is not None else logging.getLogger(LOGGER_NAME)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_PlainFormatter())
    old_level, old_propagate = log.level, log.propagate
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False  # a root handler configured elsewhere would print each line twice
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(old_level)
        log.propagate = old_propagate


@contextmanager
def training_progress(console: Console, *, enabled: bool = True) -> Iterator[Callable[[int, int, dict], None]]:
    """A ``progress(step, total, row)`` callback for :func:`ssltk.train.loop.pretrain`: the bar on a
    terminal, the log lines otherwise (nothing at all with ``enabled=False``)."""
    if not enabled:
        yield lambda step, total, row: None
        return
    if not console.is_terminal:
        with log_lines_to_stderr():
            yield lambda step, total, row: None
        return
    bar: Progress | None = None
    task = None

    def on_step(step: int, total: int, row: dict) -> None:
        nonlocal bar, task
        if bar is None:  # started on the first step: setup errors print without a bar
            bar = make_bar(console, total)
            bar.start()
            task = bar.add_task("train", total=total, info="")
        bar.update(task, completed=step, info=bar_info(row))

    try:
        yield on_step
    finally:
        if bar is not None:
            bar.stop()
