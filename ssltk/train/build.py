"""What a run is made of: the model, the optimizer and schedule, the loader of each chunk, the bundle.

``pretrain`` (``ssltk.train.loop``) calls these in order; benchmarks call them to time
the same pieces without the loop.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import torch

from ssltk.data.stream.device_decode import resolve_decode
from ssltk.data.stream.pipeline import DataInfo, build_loader
from ssltk.data.stream.sampling import check_plan_fits
from ssltk.objectives import resolve_lr
from ssltk.registry import Registry
from ssltk.train.config import TrainConfig
from ssltk.train.metrics import MetricsLog, plot_loss_curve
from ssltk.train.model import SSLModel
from ssltk.train.runtime import Runtime, is_conv_net
from ssltk.views import ViewPlan


def build_run(cfg: TrainConfig, registry: Registry, rt: Runtime, data: DataInfo):
    """Backbone, objectives, view plan and the SSLModel (the plan checked against the data, once)."""
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

    lr = resolve_lr(cfg.lr, model.objectives.values())
    optimizer = create_optimizer_v2(model, "adamw", lr=lr, weight_decay=cfg.weight_decay)
    scheduler = CosineLRScheduler(
        optimizer,
        t_initial=cfg.steps,
        lr_min=cfg.min_lr,
        warmup_t=cfg.warmup_steps,
        warmup_lr_init=lr * 0.01,
        warmup_prefix=True,
        t_in_epochs=False,
    )
    scheduler.step_update(0)
    return optimizer, scheduler


def chunk_seed(seed: int, chunk: int, rank: int) -> int:
    """The data seed of checkpoint chunk ``chunk`` on ``rank``: a resumed run reseeds at the same boundaries."""
    return int.from_bytes(hashlib.blake2b(f"{seed}/{chunk}/{rank}".encode(), digest_size=4).digest(), "little")


def make_loader(cfg: TrainConfig, data: DataInfo, plan: ViewPlan, rt: Runtime, chunk: int, n_batches: int):
    """The loader of one checkpoint chunk: ``n_batches`` batches, seeded by :func:`chunk_seed`."""
    return build_loader(
        data,
        plan,
        batch_size=cfg.batch_size,
        image_size=cfg.image_size,
        steps_per_epoch=n_batches,
        num_workers=cfg.num_workers,
        seed=chunk_seed(cfg.seed, chunk, rt.rank),
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


def write_run_bundle(cfg: TrainConfig, model: SSLModel, plan: ViewPlan, data: DataInfo, rt: Runtime,
                     result, registry: Registry) -> None:
    """The bundle of a finished run (``result``: its ``RunResult``), with the metrics and the loss curve."""
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
