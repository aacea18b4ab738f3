"""``pretrain()``: one linear training loop, readable top to bottom.

``pretrain`` owns the run folder: it checks names, options and paths, decides whether the
run continues an interrupted one (``ssltk.train.resume``), writes ``run_config.yaml``, trains
and writes the bundle, whoever calls it (``ssltk pretrain``, ``ssltk.pretrain``, a test).

Per step (:func:`train_step`): fetch a batch (streamed, uint8), move it to the device, run
the backbone on every valid cell of the batch, sum the weighted objective losses (stopping
on a non-finite one, :func:`check_finite`), backward, clip, step AdamW and the cosine
schedule, update the EMA targets (``ssltk.EMA``) from the new weights. Checkpoints are
written every ``checkpoint_every`` steps; the data stream is reseeded at the same
boundaries so a resumed run sees exactly the batches an uninterrupted run sees.
"""

from __future__ import annotations

import hashlib
import math
import shutil
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import yaml

from ssltk.data.stream.pipeline import DataInfo, probe_data
from ssltk.distributed import all_gather_object, mean_over_ranks, on_main_then_sync
from ssltk.errors import SsltkError, UsageError, one_line
from ssltk.options import parse_options
from ssltk.registry import Registry
from ssltk.train.build import build_run, make_loader, make_optimizer, resolve_augment, write_run_bundle
from ssltk.train.config import TrainConfig
from ssltk.train.failures import (
    TrainingFailed, check_local_path, check_writable, culprit, kept_line, remove_run_files, remove_staging,
    run_failure, suspects_of,
)  # fmt: skip
from ssltk.train.metrics import MetricsLog
from ssltk.train.model import SSLModel
from ssltk.train.progress import eta_seconds, log_line, logger
from ssltk.train.resume import RUN_CONFIG, STATE_DIR, decide_resume
from ssltk.train.runtime import Runtime, make_runtime, seed_everything, set_cpu_threads
from ssltk.train.trackers import check_installed, open_trackers, selected_loggers
from ssltk.views import ViewPlan

__all__ = ["RUN_CONFIG", "RunResult", "TrainingDiverged", "build_run", "make_optimizer", "pretrain", "resolve_augment"]


class TrainingDiverged(SsltkError):
    """A loss became NaN or inf; the last good checkpoint is kept."""

    exit_code = 1


@dataclass
class RunResult:
    """What ``pretrain`` returns (and the CLI summarises)."""

    out: Path
    steps: int
    final: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    samples_per_s: float = 0.0
    plan: dict[str, Any] = field(default_factory=dict)
    data_fingerprints: list[str | None] = field(default_factory=list)  # per rank, first batch
    data_wait: float | None = None  # share of step time spent waiting for batches (this process, whole run)


def pretrain(
    cfg: TrainConfig,
    *,
    registry: Registry | None = None,
    resume: bool | None = None,
    overwrite: bool = False,
    progress: Callable[[int, int, dict], Any] | None = None,
    say: Callable[[str], Any] | None = None,
    on_start: Callable[[], Any] | None = None,
) -> RunResult:
    """Train ``cfg`` and write the bundle into ``cfg.out``; ``progress`` is a callback ``(step, total, row)``.

    ``resume``: True continues the run in ``cfg.out``; None (default) continues it only when
    ``cfg.out`` holds an interrupted run of the same config (another config is refused, see
    :mod:`ssltk.train.resume`); False refuses to start over an interrupted run unless ``overwrite``.
    ``say`` tells the user that an interrupted run is continued (default: the log);
    ``on_start`` is called once every check has passed, before anything is written.

    Nothing is written to ``cfg.out`` before every check that can fail before training has
    passed (names, options, the folder, the data, ``--init``, the view plan, the resumed state).
    A run that fails later leaves its last checkpoint (the error says how to resume) or nothing.
    """
    registry = registry if registry is not None else Registry()
    run_config = cfg.to_dict()  # as given (data None = the built-in episodes), for run_config.yaml
    out = Path(cfg.out)
    with plugin_named(registry, cfg):  # names and options, before touching the folder, data or devices
        check_names(cfg, registry)
    resume = decide_resume(out, run_config, resume=resume, overwrite=overwrite, say=say or logger.info)
    check_writable(out)
    check_local_path("--init", cfg.init)
    check_local_path("--data", cfg.data)
    loggers = selected_loggers(cfg)
    check_installed(loggers)
    rt = make_runtime(cfg.device, cfg.precision, cfg.channels_last)
    if rt.device.type == "cpu":
        set_cpu_threads(cfg.threads)
    if cfg.data is None:
        from ssltk.data.synth.cache import default_synthetic_shards

        cfg.data = str(default_synthetic_shards("train"))
    data = probe_data(cfg.data, strict=cfg.strict_data)  # once: the loaders of every chunk reuse it
    with plugin_named(registry, cfg):  # a plugin's create/from_options/views raised: name it (nothing written yet)
        model, plan = build_run(cfg, registry, rt, data)
    optimizer, scheduler = make_optimizer(model, cfg)
    step, skipped = restore(out, cfg, model, optimizer, scheduler) if resume else (0, {})
    if not resume:
        seed_everything(cfg.seed)
    if on_start is not None:
        on_start()
    # Every check passed: from here on the run writes into `out`.
    state = {"step": step, "checkpoint": step if resume else None}  # the last checkpoint this run can resume from
    created_dir, log = not out.exists(), None
    try:
        if rt.is_main:
            log = open_run_folder(out, run_config, loggers, resume=resume, overwrite=overwrite, step=step)
        result = train(cfg, rt, data, model, plan, optimizer, scheduler, log, skipped, state, progress)
        state["step"] = cfg.steps  # training done: a failure from here on is the bundle's

        def finish() -> None:
            log.close()
            write_run_bundle(cfg, model, plan, data, rt, result, registry)

        on_main_then_sync(rt, "writing the bundle", finish)
        return result
    except BaseException as exc:
        if log is not None:
            log.close(ok=False)
        if rt.is_main and not isinstance(exc, (SystemExit, GeneratorExit)):
            explain_failure(exc, cfg, registry, model, state, created_dir)
        raise


def check_names(cfg: TrainConfig, registry: Registry) -> None:
    """Every objective name and its options, and the backbone name (UsageError with close matches)."""
    for spec in cfg.objectives:
        parse_options(registry.objective(spec.name).obj, spec.options)
    registry.backbone(cfg.backbone)


@contextmanager
def plugin_named(registry: Registry, cfg: TrainConfig) -> Iterator[None]:
    """A plugin's code that raises inside (create, from_options, views) is named on the error."""
    try:
        yield
    except Exception as exc:
        who = None if isinstance(exc, SsltkError) else culprit(exc, suspects_of(registry, cfg))
        if who is not None:
            exc.ssltk_failure = TrainingFailed(f"{who.describe()} failed while building the run: {one_line(exc)}")
        raise


def restore(out: Path, cfg: TrainConfig, model: SSLModel, optimizer, scheduler) -> tuple[int, dict[str, int]]:
    """The step and bad-data counts of the saved state in ``out``, loaded into model, optimizer and schedule."""
    from ssltk.checkpoint import load_train_state

    try:
        step, extra = load_train_state(out / STATE_DIR, modules={"model": model}, optimizer=optimizer,
                                       scheduler=scheduler)
    except (RuntimeError, ValueError) as exc:  # shapes changed: another backbone or head options
        raise UsageError(f"--resume {out}: the saved state does not fit this run's model or optimizer "
                         f"({one_line(exc)[:200]}); resume with the run's own config") from None
    scheduler.t_initial = cfg.steps  # timm's scheduler restores its saved length; --steps may extend the run
    return step, dict(extra.get("skipped", {}))


def open_run_folder(out: Path, run_config: dict[str, Any], loggers: list[str], *, resume: bool, overwrite: bool,
                    step: int) -> MetricsLog:
    """Rank 0: the folder, ``run_config.yaml`` (what ``--resume`` reads), the trackers and the metrics log."""
    out.mkdir(parents=True, exist_ok=True)
    remove_staging(out)  # left by a run killed mid-write
    if overwrite and not resume:  # starting again: the old run's state must not be resumed later
        shutil.rmtree(out / STATE_DIR, ignore_errors=True)
    (out / RUN_CONFIG).write_text(yaml.safe_dump(run_config, sort_keys=False))
    trackers = open_trackers(loggers, out, run_config, resume=resume)
    return MetricsLog(out, resume_step=step if resume else None, trackers=trackers)


def explain_failure(exc: BaseException, cfg: TrainConfig, registry: Registry, model: SSLModel,
                    state: dict[str, Any], created_dir: bool) -> None:
    """Rank 0, on a failed run: remove what cannot be resumed; attach the one line the CLI prints."""
    out = Path(cfg.out)
    if state["checkpoint"] is None:  # nothing resumable: leave nothing behind
        remove_run_files(out, created_dir)
    where = f"at step {state['step'] + 1}" if state["step"] < cfg.steps else "while writing the bundle"
    err = run_failure(exc, where=where, suspects=suspects_of(registry, cfg, model), out=out,
                      checkpoint_step=state["checkpoint"])
    if err is not exc:  # the CLI prints this line; Python callers still get the original exception
        exc.ssltk_failure = err


def train(cfg: TrainConfig, rt: Runtime, data: DataInfo, model: SSLModel, plan: ViewPlan, optimizer, scheduler,
          log: MetricsLog | None, skipped: dict[str, int], state: dict[str, Any], progress: Any) -> RunResult:
    """The steps, chunk by chunk (a reseeded loader and a checkpoint each); ``state`` tracks step and checkpoint."""
    from ssltk.checkpoint import save_train_state
    from ssltk.data.shards.skips import mark_warned

    out = Path(cfg.out)
    train_model = wrap_model(model, cfg, rt)
    meter, fingerprint, last_row = Meter(cfg.log_every, state["step"]), None, {}
    model.train()
    while state["step"] < cfg.steps:
        step = state["step"]
        chunk = step // cfg.checkpoint_every
        chunk_end = min((chunk + 1) * cfg.checkpoint_every, cfg.steps)
        loader = make_loader(cfg, data, plan, rt, chunk, (chunk_end - step) * cfg.accum_steps)
        batches, skipped_before = iter(loader), dict(skipped)
        while step < chunk_end:
            t0 = time.perf_counter()
            done = train_step(train_model, model, batches, optimizer, cfg, rt, step, state["checkpoint"],
                              fingerprint is None)
            fingerprint = fingerprint or done.fingerprint
            step = state["step"] = step + 1
            scheduler.step_update(step)
            # EMA targets follow the weights just stepped (identical on every rank: no communication).
            momenta = model.update_targets(step, cfg.steps)
            # Bad-data counts of this chunk's loader (all its workers), on top of earlier chunks'.
            skipped = {k: skipped_before.get(k, 0) + int(v) for k, v in loader.skipped.items()}
            meter.add(done.samples, time.perf_counter() - t0, done.waited)
            if rt.is_main and (step % cfg.log_every == 0 or step == cfg.steps):
                last_row = {"step": step, "loss": done.loss, "lr": optimizer.param_groups[0]["lr"],
                            "grad_norm": float(done.grad_norm), **meter.row(step, cfg.steps),
                            **_scalar_metrics(done.outputs, done.losses),
                            **{f"{t}/ema_momentum": momenta[f"targets.{t}"] for t in model.targets},
                            **{f"skipped/{k}": v for k, v in skipped.items()}}
                log.write(last_row)
                logger.info(log_line(last_row, cfg.steps))
            if progress is not None and rt.is_main:
                progress(step, cfg.steps, last_row)
        batches = None  # release this chunk's workers; the next chunk starts a reseeded stream
        loader.close()
        mark_warned(k for k, v in skipped.items() if v)  # the next chunk's workers warn only about new kinds
        # checkpoint at every chunk boundary and at the end (rank 0 writes; a failure stops every rank)
        on_main_then_sync(rt, f"saving the checkpoint at step {step}", lambda: save_train_state(
            out / STATE_DIR, step=step, modules={"model": model}, optimizer=optimizer, scheduler=scheduler,
            extra={"skipped": skipped},
        ))  # fmt: skip
        state["checkpoint"] = step
    fingerprints, skipped = rank_statistics(fingerprint, skipped)
    return RunResult(out, state["step"], {k: v for k, v in last_row.items() if k.startswith("loss")},
                     skipped, meter.samples_per_s(), plan.describe(), fingerprints, meter.data_wait())


def wrap_model(model: SSLModel, cfg: TrainConfig, rt: Runtime) -> torch.nn.Module:
    """The module the steps call: compiled (``compile``), then wrapped by DDP under torchrun."""
    train_model: torch.nn.Module = model
    if cfg.compile:  # compile before the DDP wrap, as timm's train.py does
        train_model = torch.compile(train_model)
    if rt.distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        train_model = DDP(train_model, device_ids=[rt.device.index] if rt.device.type == "cuda" else None)
    return train_model


@dataclass
class StepDone:
    """What one optimizer step leaves for the log."""

    loss: float  # weighted sum, mean over micro-batches (and ranks)
    losses: dict[str, float]  # per objective, the same means
    outputs: dict[str, Any]  # the last micro-batch's LossOutputs (their metrics are logged)
    grad_norm: torch.Tensor
    waited: float  # seconds blocked on the loader (and the copy to the device)
    samples: int  # over all micro-batches and ranks
    fingerprint: str | None


def train_step(train_model: torch.nn.Module, model: SSLModel, batches, optimizer, cfg: TrainConfig, rt: Runtime,
               step: int, checkpoint: int | None, fingerprint: bool) -> StepDone:
    """One optimizer step over ``cfg.accum_steps`` micro-batches (DDP syncs gradients on the last one)."""
    from ssltk.batch import to_device

    micro, total, losses, waited, first = cfg.accum_steps, 0.0, {}, 0.0, None
    optimizer.zero_grad(set_to_none=True)
    for m in range(micro):
        t_wait = time.perf_counter()
        batch = to_device(next(batches), rt.device)
        waited += time.perf_counter() - t_wait
        if fingerprint and first is None:
            first = _fingerprint(batch)
        with nullcontext() if (m == micro - 1 or not rt.distributed) else train_model.no_sync():
            with rt.autocast():
                loss, outputs = train_model(batch)
            # One host sync per micro-batch for all objectives' losses; under DDP the values are
            # averaged over ranks so every rank stops together on NaN/inf (a rank raising alone
            # would leave the others waiting in all-reduce).
            values = mean_over_ranks(torch.stack([o.loss.detach().float() for o in outputs.values()])).tolist()
            check_finite(dict(zip(outputs, values)), step + 1, Path(cfg.out), checkpoint)
            (loss / micro).backward()
        total += sum(model.weights[n] * v for n, v in zip(outputs, values)) / micro
        for n, v in zip(outputs, values):
            losses[n] = losses.get(n, 0.0) + v / micro
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    optimizer.step()
    samples = batch["frames"].shape[0] * micro * rt.world_size
    return StepDone(total, losses, outputs, grad_norm, waited, samples, first)


def check_finite(losses: dict[str, float], step: int, out: Path, checkpoint: int | None) -> None:
    """:class:`TrainingDiverged` naming the objective whose loss is NaN or inf at ``step``."""
    for name, v in losses.items():
        if not math.isfinite(v):
            raise TrainingDiverged(
                f"objective {name!r} gave a non-finite loss ({v}) at step {step}; "
                f"{kept_line(out, checkpoint)}; try a lower --lr"
            )


def rank_statistics(fingerprint: str | None, skipped: dict[str, int]) -> tuple[list[str | None], dict[str, int]]:
    """Every rank's first-batch fingerprint, and the bad-data counts summed over ranks."""
    fingerprints = all_gather_object(fingerprint)
    per_rank = all_gather_object(skipped)
    return fingerprints, {k: sum(int(r.get(k, 0)) for r in per_rank) for k in skipped}


class Meter:
    """Throughput and data-wait share over the last ``window`` steps and over the whole run."""

    def __init__(self, window: int, first_step: int) -> None:
        self.window, self.first_step, self.t_start = window, first_step, time.perf_counter()
        self.steps: list[tuple[int, float, float]] = []  # (samples, step s, data-wait s)
        self.samples, self.wait_total, self.busy_total = 0, 0.0, 0.0

    def add(self, samples: int, seconds: float, waited: float) -> None:
        self.steps.append((samples, seconds, waited))
        del self.steps[:-self.window]
        self.samples += samples
        self.wait_total += waited
        self.busy_total += seconds

    def row(self, step: int, total: int) -> dict[str, float]:
        busy = max(1e-9, sum(b for _, b, _ in self.steps))
        elapsed = time.perf_counter() - self.t_start
        return {
            "samples_per_s": sum(a for a, _, _ in self.steps) / busy,
            "data_wait": min(1.0, sum(w for _, _, w in self.steps) / busy),
            "elapsed_s": round(elapsed, 3),
            "eta_s": eta_seconds(elapsed, step - self.first_step, total - step),
        }

    def samples_per_s(self) -> float:
        return self.samples / max(1e-9, time.perf_counter() - self.t_start)

    def data_wait(self) -> float | None:
        return self.wait_total / self.busy_total if self.busy_total > 0 else None


def _fingerprint(batch) -> str:
    ids = torch.stack([batch["episode"][:, 0], batch["frame_index"][:, 0]], 1).cpu().numpy().tobytes()
    return hashlib.sha1(ids).hexdigest()[:16]


def _scalar_metrics(outputs, losses: dict[str, float]) -> dict[str, float]:
    """Per-objective losses (``losses``: averaged over micro-batches, and over ranks under DDP) and rank 0's metrics."""
    row: dict[str, float] = {}
    for name, out in outputs.items():
        row[f"loss/{name}"] = losses[name]
        for k, v in out.metrics.items():
            row[f"{name}/{k}"] = float(v.detach()) if isinstance(v, torch.Tensor) else float(v)
    return row
