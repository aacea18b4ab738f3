"""Objective ``layout-prediction``: decode a coarse thumbnail, edge map and colour of a frame from the embedding.

Contrastive objectives are free to throw away *where* things are in the image:
an embedding that tells episodes or instants apart needs no lane position, and
global average pooling makes that the easy way. This objective asks the pooled
embedding of frame ``t`` to predict a ``side × side`` thumbnail (area-downsampled,
per-channel standardised pixels) and/or a ``edge_side × edge_side`` map of where
the grey image has edges, a ``colour_side`` grid of RGB means on a fixed
scale, and a wide ``near_rows × near_cols`` edge map of the frame's lower half,
where the lane markings next to the car are (``target``; by default all four,
8, 16, 2 px and 8 × 32, the colour weighted 16 per number), of frame ``t`` itself (``dt = 0``) or of the frame ``Δt``
later of the same camera (``dt`` a range in frames). The colour keeps which
scene a frame shows, which the per-image parts drop. The future
version can only be solved by knowing how the image will move: how the car
turns and where it sits in its lane. The decoder is linear by default
(``hidden_dim = 0``), so whatever layout it needs is *linearly* readable from
the embedding, which is what a linear probe or a small policy head sees.

In the spirit of autoencoding and pixel-space future prediction (e.g. MAE's
pixel targets, He et al., CVPR 2022; video prediction as pretraining), kept to
a thumbnail so that it costs one small matrix product per frame. Meant to be
composed with a contrastive objective, e.g. ``-o temporal-infonce -o
layout-prediction=1``. See ``docs/objectives/layout-prediction.md``.

This module uses only the public ``ssltk`` API.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

import ssltk
from ssltk.contrastive import parse_cameras

__all__ = ["LayoutPrediction", "edge_maps", "near_edges", "thumbnails"]

# Fixed per-channel standardisation of [0, 1] pixels (the targets' scale does not depend on the batch).
PIXEL_MEAN = 0.45
PIXEL_STD = 0.25
PER_IMAGE_EPS = 0.02  # added to a thumbnail channel's std (a flat channel stays near 0, not noise blown up)
EDGE_EPS = 1e-3  # added to an edge map's std (edge magnitudes of [0, 1] pixels are ~0.01-0.05)
PARTS = ("pixels", "edges", "colour", "near")  # what ``target`` may join with '+'


def target_parts(text: str) -> tuple[str, ...]:
    """``'pixels+edges'`` -> ``('pixels', 'edges')``; unknown, repeated or no parts are a UsageError."""
    parts = tuple(p.strip() for p in str(text).split("+"))
    bad = [p for p in parts if p not in PARTS]
    if bad or not parts or len(set(parts)) != len(parts):
        raise ssltk.UsageError(
            f"layout-prediction.target must join distinct parts of {', '.join(PARTS)} with '+' (e.g. pixels+edges), got {text!r}"
        )
    return parts


def thumbnails(frames: torch.Tensor, side: int, gray: bool = False, per_image: bool = False) -> torch.Tensor:
    """``uint8 [..., C, H, W]`` frames -> standardised ``float [..., C', side, side]`` thumbnails (area mean).

    ``per_image``: standardise each thumbnail channel by its own mean and std (MAE's normalised
    pixels), which removes global colour and brightness and keeps the layout; otherwise a fixed
    ``(x - 0.45) / 0.25``.
    """
    lead, (C, H, W) = frames.shape[:-3], frames.shape[-3:]
    x = frames.reshape(-1, C, H, W).float() / 255.0
    if gray:
        x = x.mean(dim=1, keepdim=True)
    x = F.adaptive_avg_pool2d(x, side)
    if per_image:
        mu = x.mean(dim=(-2, -1), keepdim=True)
        sd = x.std(dim=(-2, -1), keepdim=True)
        x = (x - mu) / (sd + PER_IMAGE_EPS)
    else:
        x = (x - PIXEL_MEAN) / PIXEL_STD
    return x.reshape(*lead, x.shape[1], side, side)


def edge_maps(frames: torch.Tensor, side: int) -> torch.Tensor:
    """``uint8 [..., C, H, W]`` -> ``float [..., 2, side, side]``: where the grey image has edges.

    The absolute horizontal and vertical differences of neighbouring grey pixels, area-averaged
    to ``side × side`` and standardised per image over both maps together (mean 0, std ~1): lane
    markings, the road border and the horizon, whatever their colour or contrast. On the built-in
    probe split an 8 × 8 edge map (128 numbers) holds more of yaw rate, steering and lane offset
    for a linear probe than a 16 × 16 RGB thumbnail (768): docs/objectives/layout-prediction.md.
    """
    return _grey_edges(frames, (side, side), lower_half=False)


def near_edges(frames: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """``uint8 [..., C, H, W]`` -> ``float [..., 2, rows, cols]``: the edge map of the frame's lower half.

    The same grey edge magnitudes as :func:`edge_maps`, but only of the bottom half of the frame
    (the road just ahead of the car, where the lane markings are) and on a wide grid
    (``cols`` > ``rows``): lateral position is a horizontal quantity. Standardised per image.
    """
    return _grey_edges(frames, (rows, cols), lower_half=True)


def _grey_edges(frames: torch.Tensor, grid: tuple[int, int], lower_half: bool) -> torch.Tensor:
    """|horizontal| and |vertical| grey differences, area-averaged to ``grid``, standardised per image."""
    lead, (C, H, W) = frames.shape[:-3], frames.shape[-3:]
    g = frames.reshape(-1, C, H, W).float().mean(dim=1, keepdim=True) / 255.0
    if lower_half:
        g = g[..., H // 2 :, :]
    gx = (g[..., :, 1:] - g[..., :, :-1]).abs()
    gy = (g[..., 1:, :] - g[..., :-1, :]).abs()
    e = torch.cat([F.adaptive_avg_pool2d(gx, grid), F.adaptive_avg_pool2d(gy, grid)], dim=1)
    mu = e.mean(dim=(-3, -2, -1), keepdim=True)
    sd = e.std(dim=(-3, -2, -1), keepdim=True)
    return ((e - mu) / (sd + EDGE_EPS)).reshape(*lead, 2, *grid)


@dataclass
class LayoutOptions:
    """Options of ``layout-prediction``."""

    dt: str = field(default="0", metadata={"help": "Δt of the predicted frame in frames ('0' = the frame itself, '2-6' = a future one)"})
    side: int = field(default=8, metadata={"help": "thumbnail side in pixels (the target is side × side × channels)"})
    gray: bool = field(default=False, metadata={"help": "predict a grey thumbnail instead of RGB"})
    camera: str = field(default="anchor", metadata={"help": "'anchor', 'all' or comma-separated names; each camera predicts its own frame"})
    hidden_dim: int = field(default=0, metadata={"help": "decoder hidden width (0 = a linear decoder)"})
    normalize: str = field(default="image", metadata={"help": "target pixels: 'image' = each thumbnail standardised by its own mean/std, 'fixed' = (x-0.45)/0.25"})
    target: str = field(default="pixels+edges+colour+near", metadata={"help": "what is decoded, parts joined with '+': 'pixels' (the thumbnail), 'edges' (grey edge magnitudes), 'colour' (coarse RGB means, not standardised per image), 'near' (edges of the frame's lower half on a wide grid)"})
    edge_side: int = field(default=16, metadata={"help": "side of the edge map (0 = the same as side)"})
    colour_side: int = field(default=2, metadata={"help": "side of the 'colour' part: RGB area means with a fixed scale, so scene colour survives"})
    colour_weight: float = field(default=16.0, metadata={"help": "weight of each 'colour' number in the MSE relative to the other parts' (1 = a plain mean over all numbers)"})
    near_rows: int = field(default=8, metadata={"help": "rows of the 'near' part's grid (over the frame's lower half)"})
    near_cols: int = field(default=32, metadata={"help": "columns of the 'near' part's grid"})

    def validate(self) -> None:
        if str(self.dt).strip() not in ("0", ""):
            delta = ssltk.DeltaRange.parse(self.dt)
            if delta.unit != "frames":
                raise ssltk.UsageError(f"layout-prediction.dt must be '0' or frames (e.g. 2-6), got {self.dt!r}")
        if not 2 <= self.side <= 64:
            raise ssltk.UsageError(f"layout-prediction.side must be 2..64 pixels, got {self.side}")
        if self.hidden_dim < 0:
            raise ssltk.UsageError(f"layout-prediction.hidden_dim must be >= 0, got {self.hidden_dim}")
        parse_cameras(self.camera)
        if self.normalize not in ("image", "fixed"):
            raise ssltk.UsageError(f"layout-prediction.normalize must be 'image' or 'fixed', got {self.normalize!r}")
        target_parts(self.target)
        if self.edge_side and not 2 <= self.edge_side <= 64:
            raise ssltk.UsageError(f"layout-prediction.edge_side must be 0 or 2..64 pixels, got {self.edge_side}")
        if not 1 <= self.colour_side <= 64:
            raise ssltk.UsageError(f"layout-prediction.colour_side must be 1..64 pixels, got {self.colour_side}")
        for name in ("near_rows", "near_cols"):
            if not 1 <= getattr(self, name) <= 64:
                raise ssltk.UsageError(f"layout-prediction.{name} must be 1..64 cells, got {getattr(self, name)}")
        if not self.colour_weight > 0:
            raise ssltk.UsageError(f"layout-prediction.colour_weight must be > 0, got {self.colour_weight}")


class LayoutPrediction(ssltk.Objective):
    """Decode a coarse thumbnail of the frame (or of a future frame) from its embedding."""

    name = "layout-prediction"
    Options = LayoutOptions
    # lr: auto. 6e-3 beat 4e-3 on every motion row of seed 2 at batch 64, 96 px, 1300 steps (docs/recipe.md);
    # the contrastive objectives keep the 2e-3 they were measured with.
    lr = 6e-3

    def __init__(self, embed_dim: int, options: LayoutOptions | None = None) -> None:
        super().__init__(embed_dim, options)
        o = self.options
        self.future = str(o.dt).strip() not in ("0", "")
        out = self.target_size()
        inp = embed_dim + (1 if self.future else 0)  # the future version is told Δt (seconds)
        if o.hidden_dim:
            self.decoder: nn.Module = nn.Sequential(nn.Linear(inp, o.hidden_dim), nn.GELU(), nn.Linear(o.hidden_dim, out))
        else:
            self.decoder = nn.Linear(inp, out)

    def target_size(self) -> int:
        """Numbers per decoded target: the thumbnail's, the two edge maps' and the colour means'."""
        return sum(self._part_sizes().values())

    def _part_sizes(self) -> dict[str, int]:
        o = self.options
        sizes = {
            "pixels": (1 if o.gray else 3) * o.side * o.side,
            "edges": 2 * (o.edge_side or o.side) ** 2,
            "colour": 3 * o.colour_side * o.colour_side,
            "near": 2 * o.near_rows * o.near_cols,
        }
        return {p: sizes[p] for p in target_parts(o.target)}

    def number_weights(self) -> torch.Tensor | None:
        """Per-number MSE weights ``[target_size()]`` (mean 1), or None when all weigh the same."""
        sizes = self._part_sizes()
        if self.options.colour_weight == 1.0 or "colour" not in sizes:
            return None
        w = torch.cat([torch.full((n,), self.options.colour_weight if p == "colour" else 1.0) for p, n in sizes.items()])
        return w / w.mean()

    def targets(self, frames: torch.Tensor) -> torch.Tensor:
        """``uint8 [..., C, H, W]`` frames -> the flattened targets ``[..., target_size()]``."""
        o = self.options
        make = {
            "pixels": lambda: thumbnails(frames, o.side, o.gray, o.normalize == "image"),
            "edges": lambda: edge_maps(frames, o.edge_side or o.side),
            "colour": lambda: thumbnails(frames, o.colour_side, per_image=False),
            "near": lambda: near_edges(frames, o.near_rows, o.near_cols),
        }
        parts = [make[p]().flatten(-3) for p in target_parts(o.target)]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)

    def views(self) -> ssltk.ViewRequest:
        # augment=True: with augmentation on auto the run uses the geometry-safe views, which
        # doubled lane-offset R² at the demo budget (docs/recipe.md).
        cams = parse_cameras(self.options.camera)
        if not self.future:
            return ssltk.ViewRequest(cameras=cams, augment=True)
        return ssltk.ViewRequest(cameras=cams, deltas=(ssltk.DeltaRange.parse(self.options.dt),), augment=True)

    def forward(self, emb: torch.Tensor, batch: dict) -> ssltk.LossOutput:
        mask = batch["mask"]  # [B, T, V]
        src = emb[:, 0]  # [B, V, D]
        tgt_slot = 1 if self.future else 0
        valid = mask[:, 0] & mask[:, tgt_slot]  # [B, V]
        target = self.targets(batch["frames"][:, tgt_slot])  # [B, V, P]
        if self.future:
            dt = batch["dt"][:, tgt_slot].to(src.dtype)[:, None, None].expand(*src.shape[:2], 1)
            src = torch.cat([src, dt], dim=-1)
        pred = self.decoder(src)
        sq = (pred.float() - target.to(pred.device)).pow(2)
        w = self.number_weights()
        err = (sq if w is None else sq * w.to(sq.device)).mean(-1)  # [B, V]
        n = valid.sum()
        loss = (err * valid).sum() / n.clamp(min=1)
        with torch.no_grad():
            var = target[valid].var(dim=0).mean() if n > 1 else torch.ones((), device=err.device)
            plain = sq.mean(-1) if w is not None else err  # R² of the unweighted numbers
            r2 = 1.0 - ((plain * valid).sum() / n.clamp(min=1)) / var.clamp(min=1e-8)
        return ssltk.LossOutput(loss, {"mse": float(loss.detach()), "r2": float(r2)})
