"""FrameTransform geometry and augmentations; AugmentConfig validation."""

from __future__ import annotations

import math
import random

import pytest
import torch
from torchvision.transforms.v2 import functional as F

from ssltk.data.stream.augment import AugmentConfig, FrameTransform, resize_uint8
from ssltk.errors import UnknownNameError, UsageError


def ramp(h=30, w=50):
    """uint8 [3, h, w] with distinct values per pixel (so crops are identifiable)."""
    y, x = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return torch.stack([x * 5 % 256, y * 8 % 256, (x + y) * 3 % 256]).to(torch.uint8)


def test_no_augment_is_center_square_then_resize():
    img = ramp(30, 50)
    out = FrameTransform(20)(img, random.Random(0))
    ref = F.resize(F.center_crop(img, [30, 30]), [20, 20], antialias=True)
    assert out.shape == (3, 20, 20) and out.dtype == torch.uint8
    assert (out.int() - ref.int()).abs().max() <= 1  # same bilinear antialiased kernel


def test_no_resize_when_square_is_already_the_size():
    img = ramp(16, 24)
    out = FrameTransform(16)(img, random.Random(0))
    assert torch.equal(out, img[:, :, 4:20])


def test_channels_last_input_from_decoder_gives_the_same_result():
    img = ramp(30, 50)
    hwc = img.permute(1, 2, 0).contiguous().permute(2, 0, 1)  # how decode_jpeg returns frames
    assert torch.equal(FrameTransform(20)(hwc, random.Random(0)), FrameTransform(20)(img, random.Random(0)))


def test_random_crop_is_square_inside_the_center_square_with_scale_in_range():
    t = FrameTransform(16, AugmentConfig(crop_scale=(0.6, 1.0)))
    rng = random.Random(0)
    areas = []
    for _ in range(500):
        top, left, side = t.crop_box(40, 100, rng)
        assert 0 <= top and top + side <= 40 and 30 <= left and left + side <= 70  # inside the centred 40x40
        areas.append(side * side / 1600)
    assert min(areas) >= 0.6 - 0.05 and max(areas) <= 1.0 and max(areas) - min(areas) > 0.3


def test_augmented_frames_are_independent_and_reproducible():
    img = ramp(32, 48)
    t = FrameTransform(16, AugmentConfig())
    rng = random.Random(1)
    a, b = t(img, rng), t(img, rng)
    assert a.shape == b.shape == (3, 16, 16) and a.dtype == torch.uint8
    assert not torch.equal(a, b)
    rng2 = random.Random(1)
    assert torch.equal(t(img, rng2), a) and torch.equal(t(img, rng2), b)


def test_no_horizontal_flip_by_default():
    img = ramp(16, 16)
    t = FrameTransform(16, AugmentConfig(crop_scale=(1.0, 1.0), jitter_p=0.0, grayscale_p=0.0, blur_p=0.0))
    for seed in range(20):
        assert torch.equal(t(img, random.Random(seed)), img)
    flip = FrameTransform(16, AugmentConfig(crop_scale=(1.0, 1.0), jitter_p=0.0, grayscale_p=0.0, blur_p=0.0, hflip_p=1.0))
    assert torch.equal(flip(img, random.Random(0)), img.flip(-1))


def test_grayscale_and_jitter_change_colours_only():
    img = ramp(16, 16)
    gray = FrameTransform(16, AugmentConfig(crop_scale=(1.0, 1.0), jitter_p=0.0, grayscale_p=1.0, blur_p=0.0))
    out = gray(img, random.Random(0))
    assert torch.equal(out[0], out[1]) and torch.equal(out[1], out[2])
    bright = FrameTransform(16, AugmentConfig(crop_scale=(1.0, 1.0), brightness=0.5, contrast=0, saturation=0,
                                              jitter_p=1.0, grayscale_p=0.0, blur_p=0.0))  # fmt: skip
    out = bright(img, random.Random(3)).float()
    ratio = out.sum() / img.float().sum()
    assert 0.5 <= ratio <= 1.5 and not math.isclose(ratio, 1.0, abs_tol=1e-3)


def test_config_validation_and_coerce():
    with pytest.raises(UsageError, match="crop_scale"):
        AugmentConfig(crop_scale=(0.0, 1.0))
    with pytest.raises(UsageError, match="hue"):
        AugmentConfig(hue=0.7)
    with pytest.raises(UsageError, match="blur_p is a probability"):
        AugmentConfig(blur_p=2)
    with pytest.raises(UnknownNameError, match="did you mean 'grayscale_p'"):
        AugmentConfig.coerce({"greyscale_p": 0.1})
    assert AugmentConfig.coerce({"crop_scale": [0.8, 1.0]}).crop_scale == (0.8, 1.0)
    assert AugmentConfig.coerce(False).enabled is False
    assert AugmentConfig.coerce(None, default=False).enabled is False
    assert AugmentConfig().hflip_p == 0.0 and AugmentConfig().hue == 0.0
    with pytest.raises(UsageError, match="image_size"):
        FrameTransform(0)


def test_many_without_augmentation_equals_one_at_a_time():
    """Batched resizing (frames grouped by shape) gives exactly the per-frame values."""
    imgs = [ramp(30, 50), ramp(24, 40).flip(-1), ramp(30, 50).flip(-2), ramp(20, 20), ramp(36, 20)]
    imgs.append(imgs[0].permute(1, 2, 0).contiguous().permute(2, 0, 1))  # decoder (channels-last) strides
    t = FrameTransform(20)
    got = t.many(imgs, random.Random(0))
    for img, out in zip(imgs, got):
        assert out.shape == (3, 20, 20) and out.dtype == torch.uint8
        assert torch.equal(out, t(img, random.Random(0)))


def test_many_with_augmentation_makes_the_same_draws():
    imgs = [ramp(30, 50), ramp(30, 50).flip(-1), ramp(24, 40)]
    t = FrameTransform(16, AugmentConfig())
    rng_a, rng_b = random.Random(5), random.Random(5)
    batched = t.many(imgs, rng_a)
    single = [t(img, rng_b) for img in imgs]
    assert all(torch.equal(a, b) for a, b in zip(batched, single))
    assert rng_a.random() == rng_b.random()  # the generator advanced identically


def test_crops_of_one_side_resized_together_match_one_at_a_time():
    """Crops that share a side (any position, any source frame) go through one resize call: same values."""
    imgs = [ramp(30, 50), ramp(30, 50).flip(-1), ramp(24, 40), ramp(40, 30).permute(1, 2, 0).contiguous().permute(2, 0, 1)]
    t = FrameTransform(16, AugmentConfig(crop_scale=(0.5, 0.5), jitter_p=0.5))  # one side per frame shape
    draws = t.plan_many([tuple(i.shape[-2:]) for i in imgs], random.Random(3))
    sides = [side for (_, _, side), _ in draws]
    assert len(set(sides)) < len(sides)  # some crops share a side, so a batched call happens
    ref = [resize_uint8(img[:, top : top + side, left : left + side], 16) for img, ((top, left, side), _) in zip(imgs, draws)]
    ref = FrameTransform._apply(ref, [plan for _, plan in draws])
    got = t.many(imgs, random.Random(3))
    assert all(torch.equal(a, b) for a, b in zip(got, ref))


def test_photometric_ops_in_float_match_torchvision():
    """The in-place float ops give torchvision's adjust_* / grayscale / flip results (within rounding)."""
    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (4, 3, 12, 12), generator=g, dtype=torch.uint8)
    plans = [
        {"flip": True, "jitter": [("brightness", 1.3), ("contrast", 0.7), ("saturation", 1.2)], "gray": False, "blur": None},
        {"flip": False, "jitter": [("saturation", 0.6), ("brightness", 0.8), ("hue", 0.1)], "gray": False, "blur": None},
        {"flip": False, "jitter": [("contrast", 1.25)], "gray": True, "blur": (5, 0.8)},
        {"flip": False, "jitter": [], "gray": False, "blur": None},
    ]
    got = FrameTransform._apply(frames, plans)
    ops = {"brightness": F.adjust_brightness, "contrast": F.adjust_contrast, "saturation": F.adjust_saturation,
           "hue": F.adjust_hue}  # fmt: skip
    for img, plan, out in zip(frames, plans, got):
        ref = img.float().unsqueeze(0) / 255  # torchvision on float in [0, 1]: no rounding between ops
        if plan["flip"]:
            ref = F.horizontal_flip(ref)
        for name, factor in plan["jitter"]:
            ref = ops[name](ref, factor)
        if plan["gray"]:
            ref = F.rgb_to_grayscale(ref, num_output_channels=3)
        if plan["blur"]:
            k, sigma = plan["blur"]
            ref = F.gaussian_blur(ref, [k, k], [sigma, sigma])
        ref = (ref[0] * 255).round().clamp(0, 255)
        assert (out.float() - ref).abs().max() <= 1.0
    assert torch.equal(got[3], frames[3])  # no op: unchanged


def test_many_of_nothing_is_nothing():
    assert FrameTransform(16, AugmentConfig()).many([], random.Random(0)) == []
    assert FrameTransform(16).many([], random.Random(0)) == []


def test_shared_crop_gives_every_frame_of_a_sample_the_same_box():
    # no photometric ops: the output is the crop alone; frames are a horizontal ramp, so a crop's left edge shows
    cfg = AugmentConfig(crop_scale=(0.3, 0.5), jitter_p=0.0, grayscale_p=0.0, blur_p=0.0, shared_crop=True)
    ramp = torch.arange(64, dtype=torch.uint8).repeat(3, 64, 1) * 3
    t = FrameTransform(16, cfg)
    out = t.many([ramp, ramp, ramp, ramp], random.Random(0), samples=[0, 0, 1, 1])
    assert torch.equal(out[0], out[1]) and torch.equal(out[2], out[3])
    assert not torch.equal(out[0], out[2])  # another sample, another box
    unshared = FrameTransform(16, AugmentConfig(**{**cfg.to_dict(), "shared_crop": False}))
    o = unshared.many([ramp, ramp], random.Random(0), samples=[0, 0])
    assert not torch.equal(o[0], o[1])  # independent boxes by default


def _torchvision_chain(img: torch.Tensor, plan: dict) -> torch.Tensor:
    """torchvision v2's functional ops on float in [0, 1] (no rounding between ops), rounded once."""
    ops = {"brightness": F.adjust_brightness, "contrast": F.adjust_contrast, "saturation": F.adjust_saturation,
           "hue": F.adjust_hue}  # fmt: skip
    ref = img.float().unsqueeze(0) / 255
    if plan["flip"]:
        ref = F.horizontal_flip(ref)
    for name, factor in plan["jitter"]:
        ref = ops[name](ref, factor)
    if plan["gray"]:
        ref = F.rgb_to_grayscale(ref, num_output_channels=3)
    if plan["blur"]:
        k, sigma = plan["blur"]
        ref = F.gaussian_blur(ref, [k, k], [sigma, sigma])
    return (ref[0] * 255).round().clamp(0, 255)


def test_fused_photometric_ops_match_torchvision_on_random_plans():
    """Random op orders and factors on both sides of 1 (clamps that matter and clamps that don't),
    grayscale and blur, on frames with saturated regions and decoder (channels-last) strides: every
    output within 1 of torchvision's chain per channel."""
    g = torch.Generator().manual_seed(1)
    t = FrameTransform(24, AugmentConfig(brightness=0.6, contrast=0.6, saturation=0.6, hue=0.1, jitter_p=0.9,
                                         grayscale_p=0.2, blur_p=0.3, blur_sigma=(0.3, 2.0), hflip_p=0.3))  # fmt: skip
    rng = random.Random(3)
    for n in range(120):
        img = torch.randint(0, 256, (24, 24, 3), generator=g, dtype=torch.uint8)
        img[: 8 + n % 8] = 250  # a bright band: brightness/contrast/saturation > 1 clamp there
        img = img.permute(2, 0, 1)  # HWC memory viewed as CHW, as decode_jpeg returns
        plan = t._draw(rng)
        out = FrameTransform._apply([img], [plan])[0]
        assert out.shape == (3, 24, 24) and out.dtype == torch.uint8
        assert (out.float() - _torchvision_chain(img, plan)).abs().max() <= 1.0, plan


@pytest.mark.parametrize("k, sigma", [(3, 0.5), (5, 0.8), (7, 1.2), (11, 1.5)])
def test_blur_matches_torchvision_gaussian_blur(k, sigma):
    from ssltk.data.stream.photometric_torch import gaussian_blur as _gaussian_blur

    x = torch.rand(3, 16, 20, generator=torch.Generator().manual_seed(k)) * 255
    ref = F.gaussian_blur(x.unsqueeze(0), [k, k], [sigma, sigma])[0]
    assert torch.allclose(_gaussian_blur(x, k, sigma), ref, atol=1e-3)


def test_crop_resize_keeps_a_non_uint8_dtype():
    """The numpy fast path is for uint8 frames only; other dtypes keep torch's resize (and their dtype)."""
    from ssltk.data.stream.augment import crop_resize

    img = torch.rand(3, 40, 40) * 255
    out = crop_resize([img, img], [(0, 0, 30), (5, 5, 30)], 16)
    ref = resize_uint8(img[:, 5:35, 5:35], 16)
    assert out[0].dtype == torch.float32 and torch.allclose(out[1], ref)
