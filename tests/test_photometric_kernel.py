"""The compiled CPU kernel of the photometric augmentations against torchvision and the torch path."""

from __future__ import annotations

import random
import subprocess
import sys

import numpy as np
import pytest
import torch
from torchvision.transforms.v2 import functional as F

from ssltk.data.stream import photometric
from ssltk.data.stream.augment import AugmentConfig, FrameTransform
from test_augment import _torchvision_chain  # torchvision's float chain, rounded once

pytest.importorskip("numba")

WILD = AugmentConfig(brightness=0.6, contrast=0.6, saturation=0.6, jitter_p=0.9, grayscale_p=0.2, blur_p=0.4,
                     blur_sigma=(0.3, 2.0), hflip_p=0.3)  # fmt: skip


def _frames(n: int, size: int, seed: int) -> list[torch.Tensor]:
    """uint8 frames with saturated bands (clamps that matter), in the decoder's channels-last memory."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        img = torch.randint(0, 256, (size, size, 3), generator=g, dtype=torch.uint8)
        img[: 3 + i % 7] = 250
        img[-2:, : size // 2] = 3
        out.append(img.permute(2, 0, 1))
    return out


def test_the_kernel_is_what_cpu_frames_use(monkeypatch):
    # numba is installed (importorskip above) and SSLTK_PHOTOMETRIC is not "torch" in the test run
    assert photometric.warm() and photometric.AVAILABLE
    img = _frames(1, 16, 0)[0]
    plan = {"flip": False, "jitter": [("brightness", 1.2)], "gray": False, "blur": None}
    out = FrameTransform._apply([img], [plan])[0]
    assert out.is_contiguous()  # planar CHW from the kernel
    calls, real = [], photometric.apply
    monkeypatch.setattr(photometric, "apply", lambda *a: calls.append(a) or real(*a))
    again = FrameTransform._apply([img], [plan])[0]
    assert len(calls) == 1 and torch.equal(again, out)  # the kernel made it


@pytest.mark.parametrize("size", [24, 37])
def test_kernel_matches_torchvision_on_random_plans(size):
    """Random op orders, factors on both sides of 1, grayscale, blur (k up to 11) and flips: every
    channel of every pixel within 1 of torchvision's chain."""
    t = FrameTransform(size, WILD)
    rng = random.Random(size)
    for n, img in enumerate(_frames(150, size, size)):
        plan = t._draw(rng)
        assert photometric.encode(plan) is not None  # no hue in WILD: all of these ran the kernel
        out = FrameTransform._apply([img], [plan])[0]
        assert out.shape == (3, size, size) and out.dtype == torch.uint8
        assert (out.float() - _torchvision_chain(img, plan)).abs().max() <= 1.0, (n, plan)


def test_kernel_matches_the_torch_path(monkeypatch):
    t = FrameTransform(32, WILD)
    rng = random.Random(7)
    frames = _frames(60, 32, 7)
    plans = [t._draw(rng) for _ in frames]
    fast = FrameTransform._apply(frames, plans)
    monkeypatch.setattr(photometric, "AVAILABLE", False)
    slow = FrameTransform._apply(frames, plans)
    for a, b, plan in zip(fast, slow, plans):
        assert (a.int() - b.int()).abs().max() <= 1, plan


@pytest.mark.parametrize("jitter, gray, stages", [
    ([("brightness", 0.8), ("contrast", 0.7), ("saturation", 0.9)], False, 1),  # no clamp: one stage
    ([("brightness", 1.3), ("contrast", 0.7)], False, 2),  # contrast's pivot after one clamped stage
    ([("brightness", 1.3), ("saturation", 1.4), ("contrast", 0.8)], False, 3),  # pivot after two stages
    ([("saturation", 1.4), ("brightness", 1.3), ("contrast", 1.2)], True, 4),  # gray follows: a third clamp
])  # fmt: skip
def test_every_stage_count_matches_torchvision(jitter, gray, stages):
    """The kernel has one loop per stage count (1-4) and per contrast-pivot depth: each against torchvision."""
    plan = {"flip": False, "jitter": jitter, "gray": gray, "blur": None}
    ops, _ = photometric.encode(plan)
    assert int((ops[:, 0] == photometric.CLAMP).sum()) == stages - 1
    for img in _frames(6, 29, stages):
        out = FrameTransform._apply([img], [plan])[0]
        assert (out.float() - _torchvision_chain(img, plan)).abs().max() <= 1.0


def test_each_stage_and_clamp_by_closed_form():
    """Brightness 2 then contrast 0.5 on a two-level frame: the clamp between them matters."""
    img = torch.zeros(3, 4, 4, dtype=torch.uint8)
    img[:, :2] = 200  # half the pixels at 200, half at 0
    plan = {"flip": False, "jitter": [("brightness", 2.0), ("contrast", 0.5)], "gray": False, "blur": None}
    out = FrameTransform._apply([img], [plan])[0]
    # brightness: 400 -> clamped to 255, 0 -> 0; contrast pivot = mean grey of the clamped frame = 127.5
    # (luma weights sum to 0.9999); 0.5 * 255 + 0.5 * 127.49 = 191.2, 0.5 * 0 + 63.7 = 63.7
    assert out[:, :2].unique().tolist() == [191] and out[:, 2:].unique().tolist() == [64]


def test_frames_without_hue_are_encoded_and_hue_falls_back():
    plan = {"flip": False, "jitter": [("saturation", 1.3), ("brightness", 0.8)], "gray": True, "blur": (5, 1.0)}
    ops, weights = photometric.encode(plan)
    codes = ops[:, 0].astype(int).tolist()
    assert codes == [photometric.SATURATION, photometric.CLAMP, photometric.BRIGHTNESS, photometric.GRAY, photometric.BLUR]
    impulse = torch.zeros(1, 1, 1, 9)
    impulse[..., 4] = 1.0
    ref = F.gaussian_blur(impulse, [5, 1], [1.0, 1.0])[0, 0, 0, 2:7]  # torchvision's 1-D kernel, along x
    assert np.allclose(weights, ref.numpy(), atol=1e-6)
    hue = {**plan, "jitter": [("hue", 0.1)]}
    assert photometric.encode(hue) is None
    img = _frames(1, 16, 3)[0]
    out = FrameTransform._apply([img], [hue])[0]  # the torch path: hue matches v2.functional.adjust_hue
    ref = F.adjust_hue(img.float().unsqueeze(0) / 255, 0.1)
    ref = F.gaussian_blur(F.rgb_to_grayscale(ref, num_output_channels=3), [5, 5], [1.0, 1.0])
    assert (out.float() - (ref[0] * 255).round()).abs().max() <= 1.0


def test_a_kernel_that_fails_to_compile_falls_back_with_one_warning(monkeypatch):
    monkeypatch.setattr(photometric, "_warmed", False)
    monkeypatch.setattr(photometric, "AVAILABLE", True)

    def broken(*args):
        raise RuntimeError("no LLVM target")

    monkeypatch.setattr(photometric, "_photometric", broken)
    with pytest.warns(RuntimeWarning, match="torch path"):
        assert photometric.warm() is False
    assert photometric.AVAILABLE is False
    img = _frames(1, 16, 1)[0]
    plan = {"flip": False, "jitter": [("contrast", 1.2)], "gray": False, "blur": None}
    out = FrameTransform._apply([img], [plan])[0]  # the torch path, no error
    assert (out.float() - _torchvision_chain(img, plan)).abs().max() <= 1.0


def test_environment_switch_selects_the_torch_path():
    code = "from ssltk.data.stream import photometric as p; print(p.AVAILABLE, p.warm())"
    env = {"SSLTK_PHOTOMETRIC": "torch", "PATH": ""}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split() == ["False", "False"]
