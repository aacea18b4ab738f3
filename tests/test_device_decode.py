"""The device-decode path (--decode gpu): workers send JPEG bytes, the main process decodes in batches.

Everything but the CUDA comparison runs on CPU: the same code path with ``decode_device="cpu"``.
"""

from __future__ import annotations

import pytest
import torch

from ssltk.data.stream.augment import AugmentConfig
from ssltk.data.stream.device_decode import resolve_decode
from ssltk.data.stream.pipeline import build_loader
from ssltk.errors import UsageError
from ssltk.testing.shards import write_tiny_shards
from ssltk.views import DeltaRange, ViewPlan, ViewRequest

CAMS = ("front_left", "front_right")


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    d = tmp_path_factory.mktemp("dd")
    # 48x80 frames to 24 px: the CPU path decodes at 1/2 scale in the DCT domain (24x40), the device
    # path at full size and resizes; crops and draws must line up for the batches to agree.
    write_tiny_shards(d, episodes=3, length=16, cameras=CAMS, image_size=(48, 80), segment_length=8, quality=95)
    return d


def _batches(data, decode_device, augment, n=3):
    plan = ViewPlan.build({"o": ViewRequest(cameras="all", deltas=(DeltaRange.parse("1-3"),))}, list(CAMS))
    loader = build_loader(data, plan, batch_size=8, image_size=24, steps_per_epoch=n, samples_per_segment=2,
                          augment=augment, seed=3, decode_device=decode_device)  # fmt: skip
    return list(loader)


def _assert_same(a_batches, b_batches, mean_tol, max_tol):
    assert len(a_batches) == len(b_batches) > 0
    for a, b in zip(a_batches, b_batches):
        assert a["keys"] == b["keys"]
        assert torch.equal(a["mask"], b["mask"]) and torch.equal(a["frame_index"], b["frame_index"])
        assert a["ego"].keys() == b["ego"].keys() and all(torch.allclose(a["ego"][k], b["ego"][k], equal_nan=True) for k in a["ego"])
        assert a["frames"].shape == b["frames"].shape and b["frames"].dtype == torch.uint8
        diff = (a["frames"].float() - b["frames"].cpu().float()).abs()
        assert diff.mean() <= mean_tol and diff.max() <= max_tol, (float(diff.mean()), float(diff.max()))


@pytest.mark.parametrize("augment", [
    False,
    AugmentConfig(shared_crop=True, rig_flip_p=0.5, blur_p=0.3, grayscale_p=0.2),
], ids=["plain", "augmented"])  # fmt: skip
def test_bytes_path_on_cpu_matches_cpu_decode(shards, augment):
    """Same samples, crops, draws, mirrors and ego; frames within JPEG tolerance (full decode +
    antialiased resize vs DCT-domain 1/2 downscale)."""
    _assert_same(_batches(shards, None, augment), _batches(shards, "cpu", augment), mean_tol=1.5, max_tol=40)


def test_bytes_path_batches_carry_no_raw_bytes(shards):
    batch = _batches(shards, "cpu", False, n=1)[0]
    assert not {"sources", "cells", "plans"} & batch.keys()
    assert isinstance(batch["frames"], torch.Tensor) and batch["frames"].shape[-3:] == (3, 24, 24)


def test_auto_and_cpu_decode_in_the_workers_on_a_cpu_run():
    cpu = torch.device("cpu")
    assert resolve_decode("auto", cpu) is None
    assert resolve_decode("cpu", cpu) is None
    assert resolve_decode(None, cpu) is None
    assert resolve_decode("auto", torch.device("cuda")) == torch.device("cuda")  # no CUDA call needed to decide
    with pytest.raises(UsageError, match="use auto, cpu or gpu"):
        resolve_decode("nvjpeg", cpu)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_gpu_without_cuda_is_a_usage_error():
    with pytest.raises(UsageError) as info:
        resolve_decode("gpu", torch.device("cpu"))
    assert "CUDA is not available" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CLI message on a machine without CUDA")
def test_cli_decode_gpu_without_cuda_exits_2_with_one_line(tmp_path):
    from typer.testing import CliRunner

    from ssltk.cli import build_app

    write_tiny_shards(tmp_path / "d", episodes=2, length=12, cameras=("front",), image_size=16, segment_length=8)
    res = CliRunner().invoke(build_app(), ["pretrain", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "run"),
                                   "--steps", "1", "--batch-size", "4", "--image-size", "16", "--decode", "gpu"])  # fmt: skip
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "--decode gpu" in lines[0] and "CUDA is not available" in lines[0]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("augment", [False, AugmentConfig(shared_crop=True, rig_flip_p=0.5)], ids=["plain", "augmented"])
def test_gpu_decode_matches_cpu_decode(shards, augment):
    gpu = _batches(shards, "cuda", augment)
    assert all(b["frames"].device.type == "cuda" for b in gpu)
    _assert_same(_batches(shards, None, augment), gpu, mean_tol=1.5, max_tol=40)
