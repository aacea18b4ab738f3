"""Fine-tune a pretrained ssltk backbone to predict future ego waypoints.

    python examples/waypoint_finetune.py runs/tmc/ shards/ --steps 200

The backbone comes from the bundle through plain timm (``local-dir:``); a small
head regresses the ego's displacement ``(dx, dy)`` at +0.5 s, +1 s and +2 s
from frame ``t``, in the ego frame at ``t`` (x forward, y left), computed from
the segments' ego ``x``, ``y`` and ``heading``. Episodes are rebuilt from their
segments, so horizons may exceed the segment length. A quarter of the episodes
is held out; the script prints the loss and the average displacement error
(ADE, metres) on them before and after fine-tuning.

Also importable: ``main(bundle, data, steps)`` returns those numbers.

With ``--frames 2`` the policy sees frames ``t - 1`` and ``t`` (one backbone, shared): its head gets
``[f(t), f(t-1), f(t) - f(t-1)]``, so speed and turning, which one frame does not show, are visible.

A label-fraction curve compares several backbones on the same held-out episodes:

    python examples/waypoint_finetune.py runs/new/ shards/ --compare per-frame=runs/pf/ \
        --random-init --fractions 0.1,1 --seeds 0,1 --steps 300

fine-tunes each backbone (and a random init of the same architecture) with 10 %
and 100 % of the training episodes' labels and prints ADE at each horizon,
mean [min, max] over seeds, as a markdown table (``curve(...)`` returns it).
"""

from __future__ import annotations

import argparse
import io
import math
import random
from dataclasses import dataclass, field

import numpy as np
import timm
import torch
from PIL import Image
from torch import nn

from ssltk.data.shards import iter_segments, resolve_shards

HORIZONS_S = (0.5, 1.0, 2.0)


def waypoints_in_ego_frame(x, y, heading, t: int, offsets: list[int]) -> np.ndarray:
    """Displacements ``[(dx, dy)] * len(offsets)`` from timestep ``t`` to ``t + k``, rotated into the ego frame at ``t``."""
    dx = np.array([x[t + k] - x[t] for k in offsets])
    dy = np.array([y[t + k] - y[t] for k in offsets])
    c, s = math.cos(heading[t]), math.sin(heading[t])
    return np.stack([c * dx + s * dy, -s * dx + c * dy], axis=1)  # forward, left


@dataclass
class Episode:
    """One episode stitched from its segments: ego track and one camera's encoded frames by timestep."""

    fps: float
    ego: dict[str, dict[int, float]] = field(default_factory=lambda: {"x": {}, "y": {}, "heading": {}})
    images: dict[int, bytes] = field(default_factory=dict)


def read_episodes(data: str, camera: str | None) -> tuple[dict[str, Episode], str]:
    """All episodes in ``data`` that have ego x/y/heading, keyed by name; and the camera used."""
    episodes: dict[str, Episode] = {}
    for _, meta, images in iter_segments(resolve_shards(data)):
        camera = camera or ("front" if "front" in meta.cameras else meta.cameras[0])
        if not {"x", "y", "heading"} <= set(meta.ego) or camera not in meta.cameras:
            continue
        fps = meta.fps or (len(meta.timestamps) - 1) / max(1e-9, meta.timestamps[-1] - meta.timestamps[0])
        ep = episodes.setdefault(meta.episode, Episode(fps))
        for i in range(meta.length):
            t = meta.start + i
            for key in ("x", "y", "heading"):
                if meta.ego[key][i] is not None:
                    ep.ego[key][t] = float(meta.ego[key][i])
            if (i, camera) in images:
                ep.images[t] = images[(i, camera)]
    if not episodes:
        raise SystemExit(f"no segments with ego x/y/heading and camera {camera!r} in {data}")
    return episodes, camera


def decode(data: bytes, size: tuple[int, int]) -> np.ndarray:
    """JPEG/PNG bytes -> ``HxWx3`` uint8 at ``size`` (simplejpeg when installed, else PIL)."""
    try:
        import simplejpeg

        image = Image.fromarray(simplejpeg.decode_jpeg(data, colorspace="RGB"))
    except Exception:  # not installed, or not a JPEG
        image = Image.open(io.BytesIO(data)).convert("RGB")
    return np.array(image.resize((size[1], size[0]), Image.BICUBIC))


def build_examples(episodes: dict[str, Episode], names: list[str], cfg: dict, horizons=HORIZONS_S, frames: int = 1):
    """Normalised images ``[N, 3, H, W]`` (``[N, frames, 3, H, W]`` with ``frames > 1``: frames ``t - frames + 1 .. t``)
    and targets ``[N, K, 2]`` (metres) for every usable anchor frame."""
    size = tuple(cfg["input_size"][1:])
    mean = torch.tensor(cfg["mean"]).view(3, 1, 1)
    std = torch.tensor(cfg["std"]).view(3, 1, 1)
    xs, ys = [], []
    for name in names:
        ep = episodes[name]
        offsets = [round(h * ep.fps) for h in horizons]
        track = ep.ego
        for t, data in sorted(ep.images.items()):
            needed = [t] + [t + k for k in offsets]
            if not all(s in track["x"] and s in track["y"] and s in track["heading"] for s in needed):
                continue
            steps = list(range(t - frames + 1, t + 1))
            if not all(s in ep.images for s in steps):
                continue
            x = torch.stack([torch.from_numpy(decode(ep.images[s], size)).permute(2, 0, 1).float() / 255 for s in steps])
            x = (x - mean) / std
            xs.append(x if frames > 1 else x[0])
            ys.append(torch.from_numpy(waypoints_in_ego_frame(track["x"], track["y"], track["heading"], t, offsets)))
    if not xs:
        raise SystemExit(f"no frame has ego data {max(horizons)} s ahead; use longer episodes or shorter horizons")
    return torch.stack(xs), torch.stack(ys).float()


class WaypointModel(nn.Module):
    """Backbone features -> MLP -> ``K`` future ``(dx, dy)`` in units of ``scale`` metres.

    ``frames = 2``: images ``[N, 2, 3, H, W]`` (``t - 1``, ``t``); the head gets ``[f(t), f(t-1), f(t) - f(t-1)]``.
    """

    def __init__(self, backbone: nn.Module, horizons: int, scale: float, frames: int = 1) -> None:
        super().__init__()
        if frames not in (1, 2):
            raise SystemExit(f"frames must be 1 or 2, got {frames}")
        self.backbone = backbone
        self.frames = frames
        width = backbone.num_features * (3 if frames == 2 else 1)
        self.head = nn.Sequential(nn.Linear(width, 128), nn.GELU(), nn.Linear(128, 2 * horizons))
        self.scale = scale

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.frames == 1:
            feats = self.backbone(images)
        else:
            f = self.backbone(images.flatten(0, 1)).view(images.shape[0], 2, -1)
            feats = torch.cat([f[:, 1], f[:, 0], f[:, 1] - f[:, 0]], dim=1)
        return self.head(feats).view(images.shape[0], -1, 2)


@torch.no_grad()
def evaluate(model: WaypointModel, images: torch.Tensor, targets: torch.Tensor, batch: int = 64,
             per_horizon: bool = False):
    """(loss, ADE in metres): loss is the MSE of the scaled displacements, ADE the mean endpoint distance.

    ``per_horizon=True`` adds a third value: the displacement error at each horizon (list, metres).
    """
    model.eval()
    preds = torch.cat([model(images[i : i + batch]) for i in range(0, len(images), batch)]) * model.scale
    loss = float(((preds - targets) / model.scale).pow(2).mean())
    dist = (preds - targets).norm(dim=-1)  # [N, K]
    if per_horizon:
        return loss, float(dist.mean()), [float(d) for d in dist.mean(dim=0)]
    return loss, float(dist.mean())


def split_episodes(names: list[str], label_fraction: float = 1.0, seed: int = 0) -> tuple[list[str], list[str]]:
    """(train, held-out) episode names: the last quarter (sorted) is held out; ``label_fraction`` of the rest
    (at least one episode, chosen with ``seed``) keeps its labels for training."""
    if not 0 < label_fraction <= 1:
        raise SystemExit(f"label fraction must be in (0, 1], got {label_fraction}")
    names = sorted(names)
    n_val = len(names) // 4 if len(names) >= 2 else 0
    val, train = (names[-n_val:], names[:-n_val]) if n_val else (names, names)
    if label_fraction < 1:
        keep = max(1, math.ceil(label_fraction * len(train)))
        train = sorted(random.Random(seed).sample(train, keep))
    return train, val


def main(bundle: str, data: str, steps: int = 200, *, batch_size: int = 16, lr: float = 1e-3,
         backbone_lr: float = 1e-4, camera: str | None = None, seed: int = 0, device: str = "cpu",
         label_fraction: float = 1.0, random_init: bool = False, episodes=None, frames: int = 1) -> dict:
    """Fine-tune and return ``{"loss_before", "loss_after", "ade_before", "ade_after", "ade_horizons", "train", "val"}``.

    ``label_fraction``: share of the training episodes whose labels are used; ``random_init``: the
    bundle's architecture with random weights (the baseline); ``episodes``: ``read_episodes``' result,
    to reuse it across calls; ``frames``: 1 (frame ``t``) or 2 (``t - 1`` and ``t``). ``ade_horizons`` maps each horizon (s) to its held-out error (m).
    """
    random.seed(seed)
    torch.manual_seed(seed)
    # pretrained=True loads the bundle's weights (without it timm builds random ones).
    backbone = timm.create_model(f"local-dir:{bundle}", pretrained=not random_init)
    cfg = timm.data.resolve_model_data_config(backbone)  # the bundle's input size, mean, std

    episodes, camera = episodes or read_episodes(data, camera)
    train_names, val_names = split_episodes(list(episodes), label_fraction, seed)
    train_x, train_y = build_examples(episodes, train_names, cfg, frames=frames)
    val_x, val_y = build_examples(episodes, val_names, cfg, frames=frames)
    scale = float(train_y.abs().mean()) or 1.0  # targets in metres -> about unit size

    model = WaypointModel(backbone, train_y.shape[1], scale, frames).to(device)
    train_x, train_y, val_x, val_y = (t.to(device) for t in (train_x, train_y, val_x, val_y))
    optimizer = torch.optim.AdamW(
        [{"params": model.backbone.parameters(), "lr": backbone_lr}, {"params": model.head.parameters(), "lr": lr}],
        weight_decay=0.01,
    )
    loss_before, ade_before = evaluate(model, val_x, val_y)
    print(f"{len(train_x)} train / {len(val_x)} held-out frames from camera {camera!r}; "
          f"horizons {', '.join(f'+{h:g}s' for h in HORIZONS_S)}")
    print(f"before: loss {loss_before:.4f}, ADE {ade_before:.2f} m")
    for step in range(steps):
        model.train()
        idx = torch.randint(len(train_x), (min(batch_size, len(train_x)),), device=train_x.device)
        loss = (model(train_x[idx]) - train_y[idx] / scale).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    loss_after, ade_after, by_horizon = evaluate(model, val_x, val_y, per_horizon=True)
    print(f"after {steps} steps: loss {loss_after:.4f}, ADE {ade_after:.2f} m "
          f"({', '.join(f'+{h:g}s {d:.2f}' for h, d in zip(HORIZONS_S, by_horizon))})")
    return {"loss_before": loss_before, "loss_after": loss_after, "ade_before": ade_before,
            "ade_after": ade_after, "ade_horizons": dict(zip(HORIZONS_S, by_horizon)),
            "train": len(train_x), "val": len(val_x), "train_episodes": len(train_names)}


def curve(models: dict[str, str], data: str, *, fractions=(0.1, 1.0), seeds=(0,), random_init: str | None = None,
          **kwargs) -> dict:
    """A label-fraction curve: ``{model: {fraction: {horizon: [ADE per seed]}}}`` on the same held-out episodes.

    ``models`` maps a column name to a bundle folder; ``random_init`` names a bundle whose architecture
    is also fine-tuned from random weights (column ``random init``). Other ``kwargs`` go to ``main``.
    """
    episodes = read_episodes(data, kwargs.pop("camera", None))
    runs = [(name, path, False) for name, path in models.items()]
    if random_init:
        runs.append(("random init", random_init, True))
    out: dict = {}
    for name, path, rand in runs:
        for fraction in fractions:
            for seed in seeds:
                print(f"== {name}, {fraction:g} of the labels, seed {seed}")
                r = main(path, data, seed=seed, label_fraction=fraction, random_init=rand, episodes=episodes, **kwargs)
                cell = out.setdefault(name, {}).setdefault(fraction, {})
                for h, d in r["ade_horizons"].items():
                    cell.setdefault(h, []).append(d)
    return out


def markdown(table: dict) -> str:
    """The curve as a markdown table: ADE (m) at each horizon, mean [min, max] over seeds."""
    lines = ["| model | labels | " + " | ".join(f"ADE +{h:g} s" for h in HORIZONS_S) + " |",
             "|---|---|" + "---|" * len(HORIZONS_S)]
    for name, by_fraction in table.items():
        for fraction, by_h in by_fraction.items():
            cells = [f"{np.mean(v):.2f} [{min(v):.2f}, {max(v):.2f}]" for v in (by_h[h] for h in HORIZONS_S)]
            lines.append(f"| {name} | {fraction:.0%} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", help="an ssltk bundle folder (a pretrain --out)")
    parser.add_argument("data", help="episode shards: a folder, glob or brace pattern")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--camera", default=None, help="camera to use (default: front, else the first)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--frames", type=int, default=1, help="1: the policy sees frame t; 2: frames t-1 and t")
    parser.add_argument("--label-fraction", type=float, default=1.0, help="share of training episodes with labels")
    parser.add_argument("--random-init", action="store_true", help="also (or, alone: only) a random init of the bundle's architecture")
    parser.add_argument("--compare", action="append", default=[], metavar="NAME=BUNDLE", help="another bundle for the curve")
    parser.add_argument("--fractions", default=None, help="label fractions for a curve, e.g. 0.1,1")
    parser.add_argument("--seeds", default="0", help="fine-tuning seeds for a curve, e.g. 0,1")
    args = parser.parse_args()
    common = dict(steps=args.steps, batch_size=args.batch_size, camera=args.camera, device=args.device,
                  frames=args.frames)
    if args.fractions or args.compare:
        models = {"bundle": args.bundle}
        for spec in args.compare:
            name, sep, path = spec.partition("=")
            if not sep or not name or not path:
                raise SystemExit(f"--compare takes NAME=BUNDLE, got {spec!r}")
            models[name] = path
        fractions = [float(f) for f in (args.fractions or str(args.label_fraction)).split(",")]
        seeds = [int(x) for x in args.seeds.split(",")]
        table = curve(models, args.data, fractions=fractions, seeds=seeds,
                      random_init=args.bundle if args.random_init else None, **common)
        print(markdown(table))
    else:
        main(args.bundle, args.data, label_fraction=args.label_fraction, random_init=args.random_init, **common)
