"""Per-frame geometry and augmentations on uint8 ``[3, H, W]`` tensors.

:class:`FrameTransform` turns one decoded frame into a square ``size x size``
uint8 frame. Geometry (always): take the centred square of side
``min(H, W)`` (the shorter side); with augmentation on, take instead a random
square sub-crop covering ``crop_scale`` of that square's area (so the aspect
ratio is never distorted). Then resize to ``size`` (bilinear, antialiased;
the same kernel as ``v2.functional.resize``, called on a channels-last view).

Photometric augmentations, each frame with its own random parameters: colour
jitter (brightness, contrast, saturation, hue; random order, like
``v2.ColorJitter``; ``transforms.v2.functional``'s definitions computed in float
in place, see :meth:`FrameTransform._apply`), grayscale, Gaussian
blur, and an optional horizontal flip (off by default: driving scenes are not
mirror-symmetric — traffic drives on one side). Hue is 0 by default so traffic
lights and signs keep their colours.

Random parameters come from an explicit ``random.Random`` (never the global
torch RNG), so a run is reproducible for a seed. Every slot gets its
own draws: ``t``, ``t:aug`` and the temporal partners are augmented
independently. One config serves every objective; per-objective
augmentation is future work (``docs/views.md``).
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch

from ssltk.data.stream import photometric, photometric_torch
from ssltk.errors import UnknownNameError, UsageError

__all__ = ["AugmentConfig", "FrameTransform", "resize_uint8", "resize_many", "crop_resize", "mirror_camera", "rig_mirror", "MIRRORED_EGO"]

# Ego fields whose sign flips when the world is mirrored about the ego's forward axis
# (world y and heading too: (x, y, heading) -> (x, -y, -heading) is the mirrored drive).
MIRRORED_EGO = ("yaw_rate", "steering", "lane_offset", "curvature", "y", "heading")


def mirror_camera(name: str) -> str:
    """The camera that sees the mirrored view: ``left`` and ``right`` swapped in the name."""
    return re.sub("left|right", lambda m: "right" if m.group() == "left" else "left", name)


def rig_mirror(cameras: list[str]) -> list[int]:
    """Index of each camera's mirror partner in ``cameras``; UsageError if a partner is missing."""
    missing = [c for c in cameras if mirror_camera(c) not in cameras]
    if missing:
        raise UsageError(
            f"augment rig_flip_p needs both cameras of each left/right pair in the views; "
            f"{', '.join(missing)} {'has' if len(missing) == 1 else 'have'} no mirror partner "
            f"({', '.join(mirror_camera(c) for c in missing)}); set rig_flip_p: 0 or add the cameras"
        )
    return [cameras.index(mirror_camera(c)) for c in cameras]


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation settings (driving-safe defaults). ``enabled=False`` = centre square + resize only."""

    enabled: bool = True
    crop_scale: tuple[float, float] = (0.6, 1.0)  # area fraction of the centred square kept by the random crop
    brightness: float = 0.3  # factor drawn from [1 - b, 1 + b]
    contrast: float = 0.3
    saturation: float = 0.2
    hue: float = 0.0  # shift drawn from [-h, h], h <= 0.5; 0 keeps traffic-light colours
    jitter_p: float = 0.8  # probability of applying colour jitter to a frame
    grayscale_p: float = 0.05
    blur_p: float = 0.1
    blur_sigma: tuple[float, float] = (0.1, 1.5)  # pixels, at the output size
    hflip_p: float = 0.0
    # One crop box for every frame of a sample (all its slots and cameras of one shape), so a
    # temporal pair differs only by the ego motion, not by where each crop sits; photometric
    # draws stay per frame.
    shared_crop: bool = False
    # Rig-aware mirror of a whole sample with this probability: every frame flipped left-right,
    # left/right cameras swapped (front_left <-> front_right), yaw-like ego fields negated
    # (MIRRORED_EGO). Unlike hflip_p this keeps the sample a physically possible drive.
    rig_flip_p: float = 0.0

    def __post_init__(self) -> None:
        lo, hi = self.crop_scale
        if not (0 < lo <= hi <= 1):
            raise UsageError(f"augment crop_scale {self.crop_scale} must satisfy 0 < lo <= hi <= 1")
        for name in ("brightness", "contrast", "saturation"):
            if getattr(self, name) < 0:
                raise UsageError(f"augment {name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.hue <= 0.5:
            raise UsageError(f"augment hue must be in [0, 0.5], got {self.hue}")
        for name in ("jitter_p", "grayscale_p", "blur_p", "hflip_p", "rig_flip_p"):
            if not 0 <= getattr(self, name) <= 1:
                raise UsageError(f"augment {name} is a probability in [0, 1], got {getattr(self, name)}")
        if not (0 < self.blur_sigma[0] <= self.blur_sigma[1]):
            raise UsageError(f"augment blur_sigma {self.blur_sigma} must satisfy 0 < lo <= hi")

    @classmethod
    def coerce(cls, value: "AugmentConfig | bool | dict[str, Any] | None", default: bool = True) -> "AugmentConfig":
        """Accept a config, ``True``/``False``, a dict of fields (unknown keys suggest close ones) or ``None``."""
        if isinstance(value, cls):
            return value
        if value is None:
            return cls(enabled=default)
        if isinstance(value, bool):
            return cls(enabled=value)
        if isinstance(value, dict):
            known = {f.name for f in fields(cls)}
            for key in value:
                if key not in known:
                    raise UnknownNameError("augment option", key, known)
            kw = {k: tuple(v) if isinstance(v, list) else v for k, v in value.items()}
            return cls(**kw)
        raise UsageError(f"augment must be an AugmentConfig, a bool or a dict, not {type(value).__name__}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resize_uint8(img: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear, antialiased resize of uint8 ``[3, h, w]`` to ``[3, size, size]``.

    Runs on a channels-last view (the decoder's HWC memory), which uses
    torch's fast uint8 kernel: about 2.5x ``v2.functional.resized_crop`` on
    a CHW-strided tensor (measured at 135x135 -> 128x128).
    """
    x = img.unsqueeze(0).contiguous(memory_format=torch.channels_last)
    return torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]


def crop_resize(imgs: list[torch.Tensor], boxes: list[tuple[int, int, int]], size: int) -> list[torch.Tensor]:
    """Each uint8 ``[3, H, W]`` frame cropped to its ``(top, left, side)`` square and resized to ``size``.

    The same values as :func:`resize_uint8` of each crop alone; crops of one side (any frame,
    any position) are resized in one kernel call. On the CPU the crops are cut and stacked in
    numpy (~4 us per frame less than torch's slicing and ``stack``, measured at 128 px).
    """
    out: list[torch.Tensor | None] = [None] * len(imgs)
    by_side: dict[int, list[int]] = {}
    for n, (_, _, side) in enumerate(boxes):
        by_side.setdefault(side, []).append(n)
    numpy_path = all(img.device.type == "cpu" and img.dtype == torch.uint8 for img in imgs)
    for side, idx in by_side.items():
        if numpy_path and side != size:
            buf = np.empty((len(idx), side, side, 3), dtype=np.uint8)  # the crops, NHWC: what the kernel reads fastest
            for j, n in enumerate(idx):
                top, left, _ = boxes[n]
                buf[j] = imgs[n].numpy().transpose(1, 2, 0)[top : top + side, left : left + side]
            resized = _resize_nhwc(torch.from_numpy(buf).permute(0, 3, 1, 2), size)
        else:
            crops = []
            for n in idx:
                top, left, _ = boxes[n]
                crops.append(imgs[n][:, top : top + side, left : left + side])
            resized = crops if side == size else resize_many(crops, size)
        for n, img in zip(idx, resized):
            out[n] = img
    return out  # type: ignore[return-value]


def resize_many(imgs: list[torch.Tensor], size: int) -> list[torch.Tensor]:
    """:func:`resize_uint8` of several same-shape uint8 ``[3, h, w]`` frames in one kernel call.

    Same values as resizing each frame alone. Returns ``[3, size, size]`` views
    with channels-last strides (one ``[n, size, size, 3]`` buffer underneath).
    Batching matters for small frames: at 135x135 -> 128x128 one call per frame
    costs ~0.15 ms, one call for 64 frames ~0.06 ms per frame (measured, 1 thread).
    """
    if len(imgs) == 1:
        return [resize_uint8(imgs[0], size)]
    return _resize_nhwc(torch.stack([img.permute(1, 2, 0) for img in imgs]).permute(0, 3, 1, 2), size)  # one NHWC copy


def _resize_nhwc(x: torch.Tensor, size: int) -> list[torch.Tensor]:
    """``[n, 3, h, w]`` uint8 frames in NHWC memory, each resized to ``size`` (one kernel call)."""
    out = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return list(out.unbind(0))


class FrameTransform:
    """``uint8 [3, H, W]`` -> ``uint8 [3, size, size]`` with :class:`AugmentConfig` applied."""

    def __init__(self, size: int, config: AugmentConfig | None = None) -> None:
        if not isinstance(size, int) or size <= 0:
            raise UsageError(f"image_size must be a positive int, got {size!r}")
        self.size = size
        self.config = config or AugmentConfig(enabled=False)
        if self.config.enabled:
            photometric.warm()  # compile the CPU kernel here, before any DataLoader worker forks

    def crop_box(self, height: int, width: int, rng: random.Random) -> tuple[int, int, int]:
        """``(top, left, side)`` of the square crop taken from an ``height x width`` frame."""
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        if not self.config.enabled:
            return top, left, side
        scale = rng.uniform(*self.config.crop_scale)
        crop = max(1, min(side, int(round(side * math.sqrt(scale)))))
        return top + rng.randrange(side - crop + 1), left + rng.randrange(side - crop + 1), crop

    def __call__(self, img: torch.Tensor, rng: random.Random) -> torch.Tensor:
        return self.many([img], rng)[0]

    def many(self, imgs: list[torch.Tensor], rng: random.Random, samples: list[int] | None = None) -> list[torch.Tensor]:
        """``[self(img, rng) for img in imgs]``: the same values and the same random draws.

        ``samples`` (one id per image) says which images belong to one sample:
        with ``shared_crop`` they share one crop box per frame shape, drawn when
        the sample's first image of that shape comes.

        Without augmentation every frame gets the centred square, so frames of
        one shape are resized together (:func:`resize_many`). With augmentation
        each frame draws its crop and photometric parameters in turn, crops of one side
        are resized in one call, then the photometric ops run per frame, fused (:meth:`_apply`).
        """
        if not imgs:
            return []
        if self.config.enabled:
            draws = self.plan_many([(img.shape[-2], img.shape[-1]) for img in imgs], rng, samples)
            crops = crop_resize(imgs, [box for box, _ in draws], self.size)
            return self._apply(crops, [plan for _, plan in draws])
        out: list[torch.Tensor | None] = [None] * len(imgs)
        by_shape: dict[tuple[int, int], list[int]] = {}
        for i, img in enumerate(imgs):
            by_shape.setdefault((img.shape[-2], img.shape[-1]), []).append(i)
        for (h, w), idx in by_shape.items():
            top, left, side = self.crop_box(h, w, rng)
            crops = [imgs[i][:, top : top + side, left : left + side] for i in idx]
            resized = crops if side == self.size else resize_many(crops, self.size)
            for i, img in zip(idx, resized):
                out[i] = img
        return out  # type: ignore[return-value]

    def plan_many(
        self, shapes: list[tuple[int, int]], rng: random.Random, samples: list[int] | None = None
    ) -> list[tuple[tuple[int, int, int], dict[str, Any]]]:
        """The random draws of :meth:`many` for frames of these ``(H, W)``: ``(crop box, photometric plan)``.

        The same draws in the same order as :meth:`many` makes, so a caller that decodes the
        frames elsewhere (the device-decode path, :mod:`ssltk.data.stream.device_decode`) gets the
        same crops and augmentations for the same generator state.
        """
        out = []
        boxes: dict[tuple, tuple[int, int, int]] = {}
        share = self.config.shared_crop and samples is not None
        for n, (h, w) in enumerate(shapes):
            if not self.config.enabled:
                out.append((self.crop_box(h, w, rng), {"flip": False, "jitter": [], "gray": False, "blur": None}))
                continue
            if share:
                key = (samples[n], h, w)
                if key not in boxes:
                    boxes[key] = self.crop_box(h, w, rng)
                box = boxes[key]
            else:
                box = self.crop_box(h, w, rng)
            out.append((box, self._draw(rng)))
        return out

    def _draw(self, rng: random.Random) -> dict[str, Any]:
        """One frame's photometric parameters (flip, jitter ops in their random order, grayscale, blur)."""
        c = self.config
        plan: dict[str, Any] = {"flip": False, "jitter": [], "gray": False, "blur": None}
        if c.hflip_p and rng.random() < c.hflip_p:
            plan["flip"] = True
        if c.jitter_p and rng.random() < c.jitter_p:
            ops = []
            if c.brightness:
                ops.append(("brightness", rng.uniform(max(0.0, 1 - c.brightness), 1 + c.brightness)))
            if c.contrast:
                ops.append(("contrast", rng.uniform(max(0.0, 1 - c.contrast), 1 + c.contrast)))
            if c.saturation:
                ops.append(("saturation", rng.uniform(max(0.0, 1 - c.saturation), 1 + c.saturation)))
            if c.hue:
                ops.append(("hue", rng.uniform(-c.hue, c.hue)))
            rng.shuffle(ops)  # random order per frame, as v2.ColorJitter
            plan["jitter"] = ops
        if c.grayscale_p and rng.random() < c.grayscale_p:
            plan["gray"] = True
        if c.blur_p and rng.random() < c.blur_p:
            sigma = rng.uniform(*c.blur_sigma)
            k = min(2 * math.ceil(3 * sigma) + 1, self.size - (1 - self.size % 2))
            if k >= 3:
                plan["blur"] = (k, sigma)
        return plan

    @staticmethod
    def _apply(frames: "torch.Tensor | list[torch.Tensor]", plans: list[dict[str, Any]]) -> list[torch.Tensor]:
        """Photometric ops of ``plans`` on uint8 ``[3, S, S]`` frames; uint8 ``[3, S, S]`` out (any device).

        Each op has torchvision's definition (``v2.functional`` adjust_brightness/contrast/saturation,
        rgb_to_grayscale, gaussian_blur, adjust_hue on float) with its clamp to [0, 255]. CPU frames
        go through the compiled kernel (:mod:`ssltk.data.stream.photometric`); frames on a GPU,
        plans with hue, and CPUs without the kernel through the torch path
        (:mod:`ssltk.data.stream.photometric_torch`). A frame without ops is passed through untouched.
        """
        return [_apply_one(img, p) for img, p in zip(frames, plans)]


def _apply_one(img: torch.Tensor, p: dict[str, Any]) -> torch.Tensor:
    if not (p["jitter"] or p["gray"] or p["blur"]):
        return img.flip(-1) if p["flip"] else img
    if img.device.type == "cpu" and photometric.warm():
        encoded = photometric.encode(p)
        if encoded is not None:  # the compiled one-pass kernel (not for hue)
            hwc = img.numpy().transpose(1, 2, 0)  # the resize kernel's channels-last memory: no copy
            hwc = np.ascontiguousarray(hwc[:, ::-1] if p["flip"] else hwc)
            return torch.from_numpy(photometric.apply(hwc, *encoded))
    return photometric_torch.apply(img, p)
