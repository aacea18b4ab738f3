"""``pretrain()``: one linear training loop, readable top to bottom.

Per step: fetch a batch (streamed, uint8), move it to the device, run the
backbone on every valid cell of the batch, sum the weighted objective losses,
backward, clip, step AdamW and the cosine schedule, update the EMA targets
(``ssltk.EMA``) from the new weights. Checkpoints are written
every ``checkpoint_every`` steps; the data stream is reseeded at the same
boundaries so a resumed run sees exactly the batches an uninterrupted run sees.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from ssltk.data.stream.pipeline import DataInfo, build_loader, probe_data
from ssltk.data.stream.device_decode import resolve_decode
from ssltk.data.stream.sampling import check_plan_fits
from ssltk.distributed import all_gather_object, mean_over_ranks, on_main_then_sync
from ssltk.errors import SsltkError, UsageError, one_line
from ssltk.registry import Registry
from ssltk.train.config import TrainConfig
from ssltk.train.failures import (
    TrainingFailed, check_local_path, check_writable, culprit, kept_line, remove_run_files, remove_staging,
    run_failure, suspects_of,
)  # fmt: skip
from ssltk.train.metrics import MetricsLog, plot_loss_curve
from ssltk.train.progress import eta_seconds, log_line, logger
from ssltk.train.resume import should_resume
from ssltk.train.trackers import check_installed, open_trackers, selected_loggers
from ssltk.train.model import SSLModel
from ssltk.train.runtime import Runtime, is_conv_net, make_runtime, seed_everything, set_cpu_threads
from ssltk.views import ViewPlan


RUN_CONFIG = "run_config.yaml"  # the resolved config, next to the bundle (what --resume reads)


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


def _chunk_seed(seed: int, chunk: int, rank: int) -> int:
    return int.from_bytes(hashlib.blake2b(f"{seed}/{chunk}/{rank}".encode(), digest_size=4).digest(), "little")


def build_run(cfg: TrainConfig, registry: Registry, rt: Runtime, data: DataInfo):
    """Backbone, objectives, view plan and the SSLModel (checked against the data)."""
    fam, model_name = registry.backbone(cfg.backbone)
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    backbone = fam.obj.create(model_name, img_size=cfg.image_size, init=cfg.init, **cfg.backbone_kwargs)
    objectives, weights = {}, {}
    for spec in cfg.objectives:
        entry = registry.objective(spec.name)
        objectives[spec.name] = entry.obj.from_options(backbone.num_features, **spec.options)
        weights[spec.name] = spec.weight
    plan = ViewPlan.build({n: o.views() for n, o in objectives.items()}, data.cameras, cfg.anchor_camera)
    check_plan_fits(plan, data.first, cameras=data.cameras, segment_length=data.segment_length, where=data.where)
    if rt.distributed and rt.device.type == "cuda":
        # Per-rank BatchNorm statistics leak batch identity into contrastive losses; sync them.
        backbone = torch.nn.SyncBatchNorm.convert_sync_batchnorm(backbone)
    cl = rt.channels_last and is_conv_net(backbone)
    dc = backbone.data_config
    model = SSLModel(backbone, objectives, weights, plan, dc["mean"], dc["std"], channels_last=cl)
    model.to(rt.device)
    if cl:
        model.backbone.to(memory_format=torch.channels_last)
        model.targets.to(memory_format=torch.channels_last)
    return model, plan


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig):
    """timm AdamW (no weight decay on norms and biases) and timm's cosine schedule with warmup."""
    from timm.optim import create_optimizer_v2
    from timm.scheduler import CosineLRScheduler

    optimizer = create_optimizer_v2(model, "adamw", lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = CosineLRScheduler(
        optimizer,
        t_initial=cfg.steps,
        lr_min=cfg.min_lr,
        warmup_t=cfg.warmup_steps,
        warmup_lr_init=cfg.lr * 0.01,
        warmup_prefix=True,
        t_in_epochs=False,
    )
    scheduler.step_update(0)
    return optimizer, scheduler


def _loader(cfg: TrainConfig, data: DataInfo, plan: ViewPlan, rt: Runtime, chunk: int, n_batches: int):
    return build_loader(
        data.urls,
        plan,
        batch_size=cfg.batch_size,
        image_size=cfg.image_size,
        steps_per_epoch=n_batches,
        num_workers=cfg.num_workers,
        seed=_chunk_seed(cfg.seed, chunk, rt.rank),
        shuffle_buffer=cfg.shuffle_buffer,
        samples_per_segment=cfg.samples_per_segment,
        augment=resolve_augment(cfg, plan),
        strict=cfg.strict_data,
        rank=rt.rank,
        world_size=rt.world_size,
        pin_memory=rt.device.type == "cuda",
        decode_device=resolve_decode(cfg.decode, rt.device),
    )


def resolve_augment(cfg: TrainConfig, plan: ViewPlan):
    """The run's augmentation: as configured, or auto.

    Auto: the default augmentation if an objective needs ``t:aug`` (per-frame); else the
    geometry-safe views (one crop box per sample, rig-aware mirror when every camera's mirror
    partner is in the views) if an objective's ViewRequest has ``augment=True``; else off.
    """
    from ssltk.data.stream.augment import AugmentConfig, mirror_camera

    if cfg.augment is not None:
        return cfg.augment
    if plan.augmented_copy_slot is not None:
        return AugmentConfig(enabled=True)
    if plan.augment_requested:
        mirrorable = all(mirror_camera(c) in plan.cameras for c in plan.cameras)
        return AugmentConfig(enabled=True, shared_crop=True, rig_flip_p=0.5 if mirrorable else 0.0)
    return AugmentConfig(enabled=False)


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


def pretrain(
    cfg: TrainConfig,
    *,
    registry: Registry | None = None,
    resume: bool | None = None,
    overwrite: bool = False,
    progress: Any = None,
) -> RunResult:
    """Train ``cfg`` and write the bundle into ``cfg.out``; ``progress`` is a callback ``(step, total, row)``.

    ``resume``: True continues the run in ``cfg.out``; None (default) continues it only when
    ``cfg.out`` holds an interrupted run of the same config (another config is refused, see
    :mod:`ssltk.train.resume`); False refuses to start over an interrupted run unless ``overwrite``.

    Nothing is written to ``cfg.out`` before every check that can fail before training has
    passed (names, the folder, the data, ``--init``, the view plan, the resumed state). A run
    that fails later leaves its last checkpoint (the error says how to resume) or nothing.
    """
    from ssltk.bundle import check_out_dir
    from ssltk.checkpoint import find_train_state, load_train_state, save_train_state

    registry = registry if registry is not None else Registry()
    for spec in cfg.objectives:  # fail on names before touching data or devices
        registry.objective(spec.name)
    registry.backbone(cfg.backbone)
    run_config = cfg.to_dict()  # as given (data None = the built-in episodes), for run_config.yaml
    out = Path(cfg.out)
    state_dir = out / "train_state"
    if not resume:
        check_out_dir(out, overwrite)
        found = should_resume(out, run_config, overwrite=overwrite)
        if found is not None and resume is False:
            raise UsageError(f"{out} holds an interrupted run (step {found}); pass --resume {out} to continue it "
                             "or --overwrite to start again")
        if found is not None:
            logger.info("resuming the interrupted run in %s from step %d", out, found)
        resume = found is not None
    if resume and find_train_state(state_dir) is None:
        raise UsageError(f"--resume: {out} has no complete train_state/ to resume from")
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
    data = probe_data(cfg.data, strict=cfg.strict_data)
    try:
        model, plan = build_run(cfg, registry, rt, data)
    except Exception as exc:  # a plugin's create/from_options/views raised: name it (nothing written yet)
        who = None if isinstance(exc, SsltkError) else culprit(exc, suspects_of(registry, cfg))
        if who is None:
            raise
        exc.ssltk_failure = TrainingFailed(f"{who.describe()} failed while building the run: {one_line(exc)}")
        raise
    optimizer, scheduler = make_optimizer(model, cfg)

    step, skipped = 0, {}
    if resume:
        try:
            step, extra = load_train_state(state_dir, modules={"model": model}, optimizer=optimizer, scheduler=scheduler)
        except (RuntimeError, ValueError) as exc:  # shapes changed: another backbone or head options
            raise UsageError(f"--resume {out}: the saved state does not fit this run's model or optimizer "
                             f"({one_line(exc)[:200]}); resume with the run's own config") from None
        # timm's scheduler restores its saved length; a resume may extend the run with --steps.
        scheduler.t_initial = cfg.steps
        skipped = dict(extra.get("skipped", {}))
    else:
        seed_everything(cfg.seed)
    # Every check passed: from here on the run writes into `out`.
    state = {"step": step, "checkpoint": step if resume else None}  # the last checkpoint this run can resume from
    created_dir = not out.exists()
    log = None
    try:
        if rt.is_main:
            out.mkdir(parents=True, exist_ok=True)
            remove_staging(out)  # left by a run killed mid-write
            if overwrite and not resume:  # starting again: the old run's state must not be resumed later
                shutil.rmtree(state_dir, ignore_errors=True)
            (out / RUN_CONFIG).write_text(yaml.safe_dump(run_config, sort_keys=False))
            trackers = open_trackers(loggers, out, run_config, resume=resume)
            log = MetricsLog(out, resume_step=step if resume else None, trackers=trackers)
        return _train(cfg, registry, rt, data, model, plan, optimizer, scheduler, log, skipped, state, progress)
    except BaseException as exc:
        if log is not None:
            log.close(ok=False)
        if not rt.is_main or isinstance(exc, (SystemExit, GeneratorExit)):
            raise
        if state["checkpoint"] is None:  # nothing resumable: leave nothing behind
            remove_run_files(out, created_dir)
        where = f"at step {state['step'] + 1}" if state["step"] < cfg.steps else "while writing the bundle"
        err = run_failure(exc, where=where, suspects=suspects_of(registry, cfg, model), out=out,
                          checkpoint_step=state["checkpoint"])
        if err is not exc:  # the CLI prints this line; Python callers still get the original exception
            exc.ssltk_failure = err
        raise


def _train(cfg: TrainConfig, registry: Registry, rt: Runtime, data: DataInfo, model: SSLModel, plan: ViewPlan,
           optimizer, scheduler, log: MetricsLog | None, skipped: dict[str, int], state: dict[str, Any],
           progress: Any) -> RunResult:
    """The training loop and the bundle; ``state`` tracks the step and the last checkpoint for error messages."""
    from ssltk.checkpoint import save_train_state
    from ssltk.data.shards.skips import mark_warned

    out = Path(cfg.out)
    state_dir = out / "train_state"
    step = state["step"]

    train_model: torch.nn.Module = model
    if cfg.compile:  # compile before the DDP wrap, as timm's train.py does
        train_model = torch.compile(train_model)
    if rt.distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [rt.device.index] if rt.device.type == "cuda" else None
        train_model = DDP(train_model, device_ids=ids)

    from ssltk.batch import to_device

    t_start, samples_seen, window = time.perf_counter(), 0, []  # window: (samples, step s, data-wait s) per step
    first_step, wait_total, busy_total = step, 0.0, 0.0
    fingerprint = None  # of this rank's first batch: lets users (and tests) see that ranks read different data
    last_row: dict[str, float] = {}
    micro = cfg.accum_steps
    model.train()
    while step < cfg.steps:
        chunk = step // cfg.checkpoint_every
        chunk_end = min((chunk + 1) * cfg.checkpoint_every, cfg.steps)
        loader = _loader(cfg, data, plan, rt, chunk, (chunk_end - step) * micro)
        batches, skipped_before = iter(loader), dict(skipped)
        while step < chunk_end:
            t0 = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            total_loss, outputs, losses = 0.0, {}, {}
            waited = 0.0  # blocked on the loader (and the copy to the device): the data-wait share
            for m in range(micro):
                t_wait = time.perf_counter()
                batch = to_device(next(batches), rt.device)
                waited += time.perf_counter() - t_wait
                if fingerprint is None:
                    fingerprint = _fingerprint(batch)
                sync = nullcontext() if (m == micro - 1 or not rt.distributed) else train_model.no_sync()
                with sync:
                    with rt.autocast():
                        loss, outputs = train_model(batch)
                    # One host sync per micro-batch for all objectives' losses; under DDP the
                    # values are summed over ranks so every rank stops together on NaN/inf
                    # (a rank raising alone would leave the others waiting in all-reduce).
                    values = mean_over_ranks(torch.stack([o.loss.detach().float() for o in outputs.values()])).tolist()
                    for name, v in zip(outputs, values):
                        if not math.isfinite(v):
                            raise TrainingDiverged(
                                f"objective {name!r} gave a non-finite loss ({v}) at step {step + 1}; "
                                f"{kept_line(out, state['checkpoint'])}; try a lower --lr"
                            )
                    (loss / micro).backward()
                total_loss += sum(model.weights[n] * v for n, v in zip(outputs, values)) / micro
                for n, v in zip(outputs, values):
                    losses[n] = losses.get(n, 0.0) + v / micro
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            step += 1
            state["step"] = step
            scheduler.step_update(step)
            # EMA targets follow the weights just stepped (identical on every rank: no communication).
            momenta = model.update_targets(step, cfg.steps)
            # Bad-data counts of this chunk's loader (all its workers), on top of earlier chunks'.
            skipped = {k: skipped_before.get(k, 0) + int(v) for k, v in loader.skipped.items()}
            n = batch["frames"].shape[0] * micro * rt.world_size
            samples_seen += n
            window.append((n, time.perf_counter() - t0, waited))
            wait_total += waited
            busy_total += window[-1][1]
            del window[:-cfg.log_every]
            if rt.is_main and (step % cfg.log_every == 0 or step == cfg.steps):
                busy = max(1e-9, sum(b for _, b, _ in window))
                elapsed = time.perf_counter() - t_start
                row = {
                    "step": step,
                    "loss": total_loss,
                    "lr": optimizer.param_groups[0]["lr"],
                    "grad_norm": float(grad_norm),
                    "samples_per_s": sum(a for a, _, _ in window) / busy,
                    "data_wait": min(1.0, sum(w for _, _, w in window) / busy),
                    "elapsed_s": round(elapsed, 3),
                    "eta_s": eta_seconds(elapsed, step - first_step, cfg.steps - step),
                    **_scalar_metrics(outputs, losses),
                    **{f"{t}/ema_momentum": momenta[f"targets.{t}"] for t in model.targets},
                    **{f"skipped/{k}": v for k, v in skipped.items()},
                }
                log.write(row)
                logger.info(log_line(row, cfg.steps))
                last_row = row
            if progress is not None and rt.is_main:
                progress(step, cfg.steps, last_row)
        batches = None  # release this chunk's workers; the next chunk starts a reseeded stream
        loader.close()
        mark_warned(k for k, v in skipped.items() if v)  # the next chunk's workers warn only about new kinds
        # checkpoint at every chunk boundary and at the end (rank 0 writes; a failure stops every rank)
        on_main_then_sync(rt, f"saving the checkpoint at step {step}", lambda: save_train_state(
            state_dir, step=step, modules={"model": model}, optimizer=optimizer, scheduler=scheduler,
            extra={"skipped": skipped},
        ))  # fmt: skip
        state["checkpoint"] = step

    elapsed = max(1e-9, time.perf_counter() - t_start)
    fingerprints = all_gather_object(fingerprint)
    if rt.distributed:
        per_rank = all_gather_object(skipped)  # every rank's bad-data counts
        skipped = {k: sum(int(r.get(k, 0)) for r in per_rank) for k in skipped}
    result = RunResult(out, step, {k: v for k, v in last_row.items() if k.startswith("loss")}, skipped,
                       samples_seen / elapsed, plan.describe(), fingerprints,
                       wait_total / busy_total if busy_total > 0 else None)

    state["step"] = cfg.steps  # training done: a failure from here on is the bundle's

    def finish() -> None:
        log.close()
        _write_bundle(cfg, model, plan, data, rt, result, registry)

    on_main_then_sync(rt, "writing the bundle", finish)
    return result


def _write_bundle(cfg: TrainConfig, model: SSLModel, plan: ViewPlan, data: DataInfo, rt: Runtime,
                  result: RunResult, registry: Registry) -> None:
    from ssltk.bundle import describe_data, write_bundle
    from ssltk.options import options_dict

    names = ", ".join(f"{n}×{model.weights[n]:g}" if len(model.objectives) > 1 else n for n in model.objectives)
    curve = plot_loss_curve(MetricsLog.rows_of(cfg.out), Path(cfg.out), title=f"{names} on {cfg.backbone}")
    manifest = {
        "objectives": [
            {
                "name": name,
                "weight": model.weights[name],
                "options": options_dict(obj.options),
                "plugin": registry.objective(name).plugin.dist,
            }
            for name, obj in model.objectives.items()
        ],
        "views": {**plan.describe(), "deltas": [d.label if d else None for d in plan.deltas]},
        "augment": dataclasses.asdict(resolve_augment(cfg, plan)),
        "data": {**describe_data(data.urls), "spec": cfg.data, "cameras": data.cameras},
        "seed": cfg.seed,
        "steps": result.steps,
        "world_size": rt.world_size,
        "data_fingerprints": result.data_fingerprints,
        "global_batch": cfg.batch_size * cfg.accum_steps * rt.world_size,
        "precision": rt.precision,
        "device": str(rt.device),
        "final_metrics": result.final,
        "skipped": result.skipped,
        "config": cfg.to_dict(),
    }
    extra = {"metrics.jsonl": Path(cfg.out) / "metrics.jsonl"}
    if curve is not None:
        extra["loss_curve.png"] = curve
    write_bundle(Path(cfg.out), backbone=model.backbone, heads=dict(model.objectives), manifest=manifest, extra_files=extra,
                 pm=registry.pm)
